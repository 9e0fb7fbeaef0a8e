"""Long operations show progress on stderr: redrive every 100 messages, purge its final count."""

from __future__ import annotations

import httpx

from .conftest import Served, framework


def _fill(served: Served, queue: str, count: int) -> None:
    with httpx.Client(base_url=served.url) as http:
        for n in range(count):
            r = http.post(f"/_framework/queues/{queue}/messages", json={"body": {"id": str(n)}})
            r.raise_for_status()


def test_redrive_prints_progress_to_stderr(served: Served) -> None:
    """Redriving 250 dead letters prints moved 100/250, 200/250, 250/250 on stderr, then a total."""
    _fill(served, "jobs-dlq", 250)
    result = framework("redrive", "jobs-dlq", "--server", served.url)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["moved 100/250", "moved 200/250", "moved 250/250"]
    assert result.stdout.strip() == "moved 250 messages from jobs-dlq"


def test_redrive_progress_stops_at_the_limit_and_keeps_json_clean(served: Served) -> None:
    """With --limit, the total is the limit; --json keeps stdout to the JSON answer."""
    _fill(served, "jobs-dlq", 150)
    result = framework("redrive", "jobs-dlq", "--limit", "120", "--json", "--server", served.url)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["moved 100/120", "moved 120/120"]
    assert result.stdout.strip() == '{"moved": 120}'


def test_purge_of_many_prints_the_final_count(served: Served) -> None:
    """Purging prints how many messages went."""
    _fill(served, "jobs-dlq", 120)
    result = framework("purge", "jobs-dlq", "--yes", "--server", served.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "purged 120 messages from jobs-dlq"
