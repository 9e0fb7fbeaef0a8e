"""`framework export cloudformation`, `framework provision` and `framework run --no-declare`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import framework, free_port


def test_export_cloudformation_prints_the_apps_resources() -> None:
    result = framework("export", "cloudformation", "sample_app:app")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    queues = {
        r["Properties"]["QueueName"]
        for r in doc["Resources"].values()
        if r["Type"] == "AWS::SQS::Queue"
    }
    topics = {
        r["Properties"]["TopicName"]
        for r in doc["Resources"].values()
        if r["Type"] == "AWS::SNS::Topic"
    }
    assert queues == {"jobs", "jobs-dlq"}
    assert topics == {"events"}


def test_export_cloudformation_writes_a_file(tmp_path: Path) -> None:
    target = tmp_path / "template.json"
    result = framework("export", "cloudformation", "sample_app:app", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert "wrote 3 resources" in result.stderr
    assert json.loads(target.read_text())["AWSTemplateFormatVersion"] == "2010-09-09"


def test_provision_refuses_the_memory_backend_in_one_line() -> None:
    result = framework("provision", "sample_app:app", env={"FRAMEWORK_BACKEND": "memory://"})
    assert result.returncode == 1
    assert result.stderr.startswith("error: memory:// lives inside one process")
    assert "Traceback" not in result.stderr


def test_run_no_declare_refuses_to_start_and_lists_what_is_missing() -> None:
    result = framework(
        "run",
        "sample_app:app",
        "--no-declare",
        "--http-port",
        str(free_port()),
        "--no-smtp",
        env={"FRAMEWORK_BACKEND": "memory://"},
    )
    assert result.returncode == 1
    assert "3 resource(s) the app declares do not exist" in result.stderr
    for line in ("  - queue 'jobs'", "  - queue 'jobs-dlq'", "  - topic 'events'"):
        assert line in result.stderr
    assert "Traceback" not in result.stderr
