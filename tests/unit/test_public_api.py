"""Tests for the public surface: ``__all__`` of framework, framework.testing, framework.backends,
framework.gateway and framework.smtp; the examples use nothing else."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
import types
from pathlib import Path

import pytest

import framework.exceptions
import framework.messages

PACKAGES = [
    "framework",
    "framework.aws",
    "framework.backends",
    "framework.gateway",
    "framework.smtp",
    "framework.smtp.scanners",
    "framework.testing",
]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def exported(package: str) -> list[str]:
    """Return ``package.__all__`` as a list."""
    names = importlib.import_module(package).__all__
    assert isinstance(names, list | tuple)
    return list(names)


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted_without_duplicates(package: str) -> None:
    """Each package's ``__all__`` is sorted (constants, classes, functions: ruff's order) and
    names every export once."""
    names = exported(package)

    def key(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)

    assert names == sorted(names, key=key)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("package", PACKAGES)
def test_every_listed_name_exists_and_is_documented(package: str) -> None:
    """Every name in ``__all__`` is defined, and each class or function has a docstring."""
    module = importlib.import_module(package)
    for name in exported(package):
        assert hasattr(module, name), f"{package}.__all__ lists {name!r}, which is not defined"
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{package}.{name} has no docstring"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_import_is_listed(package: str) -> None:
    """Every public class or function a package imports from the framework is in its ``__all__``.

    Errors are the exception: their public home is ``framework`` itself, so other packages
    may import them for their own use without re-exporting them.
    """
    module = importlib.import_module(package)
    unlisted = sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__.startswith("framework")
        and (package == "framework" or value.__module__ != "framework.exceptions")
        and name not in exported(package)
    )
    assert unlisted == []


@pytest.mark.parametrize("package", PACKAGES)
def test_star_import_works_in_a_fresh_interpreter(package: str) -> None:
    """``from PACKAGE import *`` succeeds on its own, with no optional backend library loaded."""
    code = (
        f"from {package} import *\n"
        "import sys\n"
        f"missing = [n for n in {exported(package)!r} if n not in globals()]\n"
        "assert not missing, missing\n"
        "loaded = [m for m in ('aio_pika', 'aiobotocore') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_top_level_exports_the_core_api() -> None:
    """``framework`` exports App, Context, Email, Message and the base error."""
    assert {"App", "Context", "Email", "Message", "FrameworkError"} <= set(exported("framework"))


def test_testing_exports_test_app_and_clocks() -> None:
    """``framework.testing`` exports TestApp, both clocks and the WebSocket client."""
    assert set(exported("framework.testing")) == {
        "HandshakeRefusedError",
        "RealClock",
        "TestApp",
        "VirtualClock",
        "WebSocketClient",
        "WebSocketClosedError",
    }


def test_every_exported_error_derives_from_framework_error() -> None:
    """Every error ``framework`` exports is a FrameworkError, so one except clause catches all."""
    import framework

    errors = [getattr(framework, n) for n in exported("framework") if n.endswith("Error")]
    assert errors
    assert all(issubclass(e, framework.FrameworkError) for e in errors)


def test_every_framework_error_is_exported_from_framework() -> None:
    """Every error in framework.exceptions is importable from ``framework``."""
    assert set(framework.exceptions.__all__) <= set(exported("framework"))


def test_backend_contract_types_are_exported_from_backends() -> None:
    """The backend protocols and every message value type are importable from
    ``framework.backends``."""
    values = {n for n in framework.messages.__all__ if not n.isupper()}
    protocols = {"Backend", "CanCheckDeclared", "CanDeclareMailRules"}
    assert values | protocols <= set(exported("framework.backends"))


@pytest.mark.parametrize("path", sorted(EXAMPLES.rglob("*.py")), ids=lambda p: p.stem)
def test_examples_import_only_public_modules(path: Path) -> None:
    """An example imports the framework only through its public packages."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    used = {
        name
        for node in ast.walk(tree)
        for name in (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else []
        )
        if name == "framework" or name.startswith("framework.")
    }
    assert used <= set(PACKAGES), f"{path.name} imports {sorted(used - set(PACKAGES))}"
