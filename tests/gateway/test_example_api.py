"""examples/api: the gateway features as the docs show them, driven through the gateway."""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import jwt
import pytest

from framework.exceptions import ConfigError
from tests.gateway.helpers import FakeClock, client

NOW = 1_800_000_000.0
SECRET = "a-test-secret-that-is-32-bytes-long!"
PUBLISHED = "change-me-to-32-bytes-or-more!!!"  # what the example once fell back to


def load_example(secret: str | None) -> ModuleType:
    """Import examples.api afresh with FRAMEWORK_API_JWT_SECRET set to ``secret`` (or unset)."""
    with pytest.MonkeyPatch.context() as env:
        if secret is None:
            env.delenv("FRAMEWORK_API_JWT_SECRET", raising=False)
        else:
            env.setenv("FRAMEWORK_API_JWT_SECRET", secret)
        sys.modules.pop("examples.api", None)
        return importlib.import_module("examples.api")


app = load_example(SECRET).app


def signed(secret: str = SECRET, **claims: object) -> dict[str, str]:
    body = {"sub": "u-1", "iss": "https://auth.example.com", "aud": "api", "exp": NOW + 60}
    body.update(claims)
    return {"Authorization": "Bearer " + jwt.encode(body, secret, algorithm="HS256")}


async def test_without_a_secret_no_token_verifies_and_a_warning_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Unset FRAMEWORK_API_JWT_SECRET: a loud warning, and a token signed with the once
    published default secret is refused."""
    with caplog.at_level(logging.WARNING):
        unset = load_example(None).app
    [warning] = [r for r in caplog.records if r.getMessage() == "jwt.unconfigured"]
    assert "FRAMEWORK_API_JWT_SECRET is not set" in warning.__dict__["fields"]["detail"]
    profile = {"name": "Ann", "email": "ann@example.com"}
    async with client(unset, FakeClock(NOW)) as c:
        r = await c.put("/me", json=profile, headers=signed(PUBLISHED))
    assert r.status_code == 403


def test_a_short_secret_is_refused() -> None:
    """A secret under 32 bytes is refused with one clear error."""
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load_example("short")


async def test_api_key_route_answers_per_key_and_caches() -> None:
    """A key's owner and claims reach the handler, and the answer is cached per key."""
    async with client(app) as c:
        first = await c.get("/reports/1", headers={"X-API-Key": "demo-key-partner"})
        again = await c.get("/reports/1", headers={"X-API-Key": "demo-key-partner"})
        other = await c.get("/reports/1", headers={"X-API-Key": "demo-key-internal"})
    assert first.json() == {"report": 1, "for": "partner", "tier": "gold"}
    assert again.headers["x-cache"] == "hit"
    assert other.json()["for"] == "ops"


async def test_free_key_is_held_to_its_usage_plan() -> None:
    """The free key's burst of 5 is followed by 429 with Retry-After."""
    async with client(app) as c:
        codes = [
            (await c.get(f"/reports/{i}", headers={"X-API-Key": "demo-key-free"})).status_code
            for i in range(6)
        ]
    assert codes == [200] * 5 + [429]


async def test_jwt_route_takes_the_claims_and_refuses_expired_tokens() -> None:
    """A valid token's claims reach the handler; an expired one is 403."""
    profile = {"name": "Ann", "email": "ann@example.com"}
    async with client(app, FakeClock(NOW)) as c:
        ok = await c.put("/me", json=profile, headers=signed(scope="profile"))
        expired = await c.put("/me", json=profile, headers=signed(exp=NOW - 10))
    assert ok.json() == {"sub": "u-1", "scope": "profile", "name": "Ann"}
    assert expired.status_code == 403


async def test_custom_authorizer_reads_the_session_store() -> None:
    """A known session token is accepted, an unknown one refused."""
    async with client(app) as c:
        ok = await c.get("/tickets", headers={"Authorization": "Bearer session-1"})
        bad = await c.get("/tickets", headers={"Authorization": "Bearer session-2"})
    assert ok.json() == {"user": "erin", "roles": ["support"]}
    assert bad.status_code == 403


async def test_search_is_throttled_per_client_and_cached() -> None:
    """Cached answers still count against the client's bucket of 10."""
    async with client(app) as c:
        codes = [(await c.get("/search", params={"q": "x"})).status_code for _ in range(11)]
    assert codes == [200] * 10 + [429]


async def test_versions_serve_side_by_side() -> None:
    """v1 is open at /prices, v2 needs a key at /v2/catalog/prices."""
    async with client(app) as c:
        v1 = await c.get("/prices/a")
        v2_open = await c.get("/v2/catalog/prices/a")
        v2 = await c.get("/v2/catalog/prices/a", headers={"X-API-Key": "demo-key-internal"})
    assert v1.json()["price"] == 10
    assert v2_open.status_code == 401
    assert v2.json()["price"] == {"amount": "10.00", "currency": "EUR"}


def test_the_missing_secret_warning_is_a_start_line_of_framework_run() -> None:
    """Under `framework run --log-json` the warning is one JSON event like the others."""
    env = {k: v for k, v in os.environ.items() if k != "FRAMEWORK_API_JWT_SECRET"}
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "framework.cli", "run", "examples.api:app", "--log-json"),
            *("--http-port", "0", "--backend", "memory://", "--no-smtp", "--grace", "1"),
        ],
        cwd=Path(__file__).parents[2],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:  # up to app.started, or the end if it fails to start
        lines.append(line)
        if '"app.started"' in line:
            break
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=15)
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}")
    warning = next(e for e in events if "FRAMEWORK_API_JWT_SECRET" in e.get("detail", ""))
    assert warning["level"] == "warning"
    assert warning["event"] == "jwt.unconfigured"
