"""The layers of ``framework/``: imports point one way, and every module imports on its own.

The graph is read from the source (module-level, ``TYPE_CHECKING`` and function-local imports
alike: a type-only or a lazy import back up is still an arrow back up). Importing a submodule
runs its packages' ``__init__`` first, so ``import framework.runtime.events`` from outside the
package is an arrow to ``framework.runtime`` too; the root package, which only re-exports, is
left out.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "framework"

# What each lower layer must never import (prefixes of module names).
FORBIDDEN = {
    "framework.semantics": (
        "framework.runtime",
        "framework.backends",
        "framework.gateway",
        "framework.smtp",
        "framework.app",
        "framework.cli",
        "framework.testing",
    ),
    "framework.messages": ("framework.",),
    "framework.runtime": ("framework.app", "framework.cli", "framework.testing"),
    "framework.gateway": ("framework.app", "framework.cli", "framework.testing"),
    "framework.smtp": ("framework.app", "framework.cli", "framework.testing", "framework.runtime"),
    "framework.backends": (
        "framework.app",
        "framework.cli",
        "framework.testing",
        "framework.runtime",
        "framework.gateway",
    ),
    "framework.registry": ("framework.app", "framework.runtime", "framework.gateway"),
    "framework.context": ("framework.app", "framework.runtime", "framework.gateway"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """Every framework module ``name``'s source imports, with the packages that run first."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            parts = target.split(".")
            for end in range(2, len(parts) + 1):  # the packages on the way, not the root
                candidate = ".".join(parts[:end])
                # A module's own packages are already importing when it runs: no arrow.
                if (
                    candidate in known
                    and candidate != name
                    and not name.startswith(candidate + ".")
                ):
                    yield candidate


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: set(imported(name, path, known)) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    # About a hundred modules: far below the recursion limit, which is left as it is (other
    # tests depend on it).
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return out


def test_framework_has_no_import_cycle() -> None:
    """No group of modules imports each other, not even for types or lazily."""
    assert cycles(graph()) == []


def test_no_lower_layer_imports_upward() -> None:
    """semantics, runtime, gateway, smtp and backends never import the App, the CLI or tests'
    helpers; semantics imports neither runtime nor backends; messages imports nothing."""
    wrong = [
        f"{name} imports {target}"
        for name, targets in graph().items()
        for layer, forbidden in FORBIDDEN.items()
        if name == layer or name.startswith(layer + ".")
        for target in sorted(targets)
        if target.startswith(forbidden)
    ]
    assert wrong == []


def test_the_checker_sees_an_arrow_back_up() -> None:
    """The graph is real: it has the arrows the layers are built on, and would show a cycle."""
    edges = graph()
    assert "framework.runtime.lifecycle" in edges["framework.app"]
    assert "framework.messages" in edges["framework.backends.memory.queues"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.timeout(180)
def test_every_module_imports_on_its_own_in_a_fresh_interpreter() -> None:
    """Each module imports first in a new interpreter: no import order hides a cycle."""

    def load(name: str) -> tuple[str, int, str]:
        done = subprocess.run(
            [sys.executable, "-c", f"import {name}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        return name, done.returncode, done.stderr or "(no output)"

    # ``__main__`` modules run the CLI when imported: that is their job.
    names = sorted(name for name in modules() if not name.endswith(".__main__"))
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(load, names))
    failed = {name: err.strip().splitlines()[-1] for name, code, err in results if code != 0}
    assert failed == {}
