"""``framework package``: a zip with the app, the framework and Lambda-platform dependencies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.aws_lambda.shapes import http_event
from tests.cli.conftest import framework

ROOT = Path(__file__).resolve().parents[2]
# pip installs the dependencies for Lambda's platform (from its cache, or PyPI): ~20 s.
pytestmark = pytest.mark.timeout(300)

APP = """
from framework import App

app = App("packed")


@app.route("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "lambda"}
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Package an app folder holding tests, caches and a virtualenv, with a requirements file."""
    project = tmp_path_factory.mktemp("project")
    package = project / "packed_app"
    (package / "tests").mkdir(parents=True)
    (package / "__pycache__").mkdir()
    (package / ".venv" / "lib").mkdir(parents=True)
    (package / "__init__.py").write_text(APP)
    (package / "tests" / "test_it.py").write_text("def test_it() -> None: ...\n")
    (package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\x00")
    (package / ".venv" / "lib" / "junk.py").write_text("")
    (project / "requirements.txt").write_text("iniconfig>=2.0\n")
    result = framework(
        "package",
        "packed_app:app",
        "--out",
        str(project / "dist"),
        cwd=project,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    return project / "dist" / "packed.zip", result.stdout + result.stderr


def test_zip_holds_the_app_the_framework_and_linux_wheels(built: tuple[Path, str]) -> None:
    """The app's code, the framework, the app's requirements and manylinux x86_64 binaries."""
    path, _ = built
    names = set(zipfile.ZipFile(path).namelist())
    assert "packed_app/__init__.py" in names
    assert "framework/aws/handler.py" in names
    assert "framework/aws/entry.py" in names
    assert any(n.startswith("aiobotocore/") for n in names)
    assert any(n.startswith("iniconfig/") for n in names)  # from requirements.txt
    binaries = [n for n in names if n.startswith("pydantic_core/_pydantic_core.")]
    assert binaries == ["pydantic_core/_pydantic_core.cpython-311-x86_64-linux-gnu.so"]


def test_tests_caches_and_virtualenvs_are_left_out_and_listed(built: tuple[Path, str]) -> None:
    """Nothing from tests/, __pycache__ or .venv is in the zip; the report lists them."""
    path, report = built
    names = zipfile.ZipFile(path).namelist()
    assert not [n for n in names if "/tests/" in n and n.startswith("packed_app/")]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if ".venv" in n]
    assert "left out: " in report
    for pattern in ("tests (1)", "__pycache__ (1)", ".venv (1)"):
        assert pattern in report
    assert f"built {path}: " in report
    assert " MB (" in report


def test_the_zip_alone_serves_an_invocation(built: tuple[Path, str], tmp_path: Path) -> None:
    """Unzipped and imported with nothing else on the path, the entry point answers an event."""
    path, _ = built
    root = tmp_path / "task"
    zipfile.ZipFile(path).extractall(root)
    event = json.dumps(http_event("GET", "/hello"))
    script = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(root)!r}]\n"
        "from framework.aws.entry import handler\n"
        f"print(json.dumps(handler(json.loads({event!r}), None)))\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "FRAMEWORK_APP": "packed_app:app",
        "FRAMEWORK_BACKEND": "memory://",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    # -S -I: no site-packages and no PYTHONPATH, so only the zip's contents can be imported.
    result = subprocess.run(
        [sys.executable, "-S", "-I", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"hello": "lambda"}


def test_the_shop_example_is_packaged(tmp_path: Path) -> None:
    """examples/shop, as CI packages it: the examples package and the framework are in it."""
    result = framework("package", "examples.serverless:app", "--out", str(tmp_path), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert f"built {tmp_path / 'shop.zip'}: " in result.stdout
    names = set(zipfile.ZipFile(tmp_path / "shop.zip").namelist())
    assert {"examples/shop/__init__.py", "examples/serverless/__init__.py"} <= names
    assert "framework/aws/handler.py" in names
    assert not [n for n in names if n.startswith("tests/")]
