"""``framework package APP``: the deployment zip of an app for AWS Lambda.

The zip holds, at its root (where Lambda's Python runtime looks):

- the app's code: the top-level package (or module) that ``APP`` is imported from;
- the framework itself, from where it is imported now;
- their dependencies, installed by pip **for Lambda's platform**, not this machine's:
  ``--platform manylinux2014_x86_64`` (or ``_aarch64`` for ``arm64``), ``--only-binary=:all:``,
  ``--python-version`` and ``--implementation cp``, so compiled wheels (pydantic-core,
  cryptography, aiohttp) match Lambda's Amazon Linux and Python whatever this machine runs.
  They are the framework's core dependencies, its ``aws`` extra, and the requirements file
  given (``requirements.txt`` beside the app by default, if there is one).

What is left out, and listed: tests (``tests/``, ``test/``), virtual environments, VCS and
tool caches (``.git``, ``.mypy_cache``, ``.pytest_cache``, ``.ruff_cache``), ``__pycache__``
and ``*.pyc`` (Lambda compiles on import; stale bytecode of another Python would be ignored
anyway), build output (``dist/``, ``build/``, ``*.egg-info``) and pip's console scripts
(``bin/``), none of which a Lambda function imports.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from framework.exceptions import ConfigError, FrameworkError

__all__ = ["LEFT_OUT", "Package", "PackageError", "build", "framework_requirements"]

# Directory and file names never packaged; each is reported with how often it was skipped.
LEFT_OUT = (
    "tests",
    "test",
    "__pycache__",
    "*.pyc",
    ".git",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "node_modules",
    "dist",
    "build",
    "*.egg-info",
    ".DS_Store",
)
# Lambda's limits for a zip: 50 MB uploaded directly, 250 MB unzipped (layers included).
MAX_ZIPPED = 50 * 1024 * 1024
MAX_UNZIPPED = 250 * 1024 * 1024
_PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}


class PackageError(FrameworkError):
    """The deployment zip could not be built."""


@dataclass(frozen=True, slots=True)
class Package:
    """A built deployment zip.

    Attributes:
        path: The zip.
        size: Its size in bytes.
        unzipped: The bytes of its files.
        files: How many files it holds.
        left_out: What was skipped: pattern -> how many files or folders matched it.
        requirements: What pip installed for Lambda's platform.
    """

    path: Path
    size: int
    unzipped: int
    files: int
    left_out: dict[str, int] = field(default_factory=dict)
    requirements: tuple[str, ...] = ()

    def warnings(self) -> list[str]:
        """Lambda's size limits this zip exceeds, one line each."""
        out = []
        if self.size > MAX_ZIPPED:
            out.append(
                f"{self.size / 1e6:.1f} MB zipped is over Lambda's 50 MB for a direct upload: "
                "upload it to S3 (sam deploy does)"
            )
        if self.unzipped > MAX_UNZIPPED:
            out.append(f"{self.unzipped / 1e6:.1f} MB unzipped is over Lambda's 250 MB")
        return out


def _skipped(name: str) -> str | None:
    """The LEFT_OUT pattern ``name`` matches, if any."""
    for pattern in LEFT_OUT:
        if fnmatch.fnmatch(name, pattern):
            return pattern
    return None


def framework_requirements() -> list[str]:
    """The framework's core dependencies and its ``aws`` extra, as requirement strings.

    From the ``pyproject.toml`` beside the imported ``framework`` package (a source checkout),
    else from the installed distribution's metadata.
    """
    import framework

    pyproject = Path(framework.__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == "framework":
            extras = project.get("optional-dependencies", {})
            return [*project.get("dependencies", []), *extras.get("aws", [])]
    from packaging.requirements import Requirement  # pip's own dependency: always there

    wanted: list[str] = []
    for text in importlib.metadata.requires("framework") or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": "aws"}):
            requirement.marker = None
            wanted.append(str(requirement))
    return wanted


def _pip_install(
    requirements: Sequence[str],
    requirement_files: Sequence[Path],
    target: Path,
    *,
    python_version: str,
    architecture: str,
) -> None:
    platform = _PLATFORMS.get(architecture)
    if platform is None:
        raise ConfigError(f"architecture {architecture!r} must be x86_64 or arm64")
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
        "--platform",
        platform,
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
        *requirements,
    ]
    for path in requirement_files:
        command += ["--requirement", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise PackageError(
            f"pip could not install the dependencies for Lambda ({platform}, Python "
            f"{python_version}): {' / '.join(detail[-3:])}; a dependency without a wheel for "
            "that platform must be built elsewhere (sam build --use-container)"
        )


def _copy_tree(source: Path, target: Path, left_out: Counter[str]) -> None:
    """Copy ``source`` (a folder or a file) to ``target``, without what LEFT_OUT names."""
    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        return
    for root, dirs, files in os.walk(source):
        kept_dirs = []
        for name in dirs:
            pattern = _skipped(name)
            if pattern is None:
                kept_dirs.append(name)
            else:
                left_out[pattern] += 1
        dirs[:] = sorted(kept_dirs)
        destination = target / Path(root).relative_to(source)
        destination.mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            pattern = _skipped(name)
            if pattern is not None:
                left_out[pattern] += 1
                continue
            shutil.copy2(Path(root) / name, destination / name)


def _app_source(module_name: str) -> tuple[Path, str]:
    """The file or folder of the top-level package of ``module_name``, and its name there."""
    top = module_name.partition(".")[0]
    module = sys.modules.get(top)
    location = getattr(module, "__file__", None)
    if location is None:
        raise ConfigError(f"cannot tell where module {top!r} lives: import the app first")
    path = Path(location).resolve()
    if path.name == "__init__.py":
        return path.parent, top
    return path, path.name


def build(
    target: str,
    out_dir: Path,
    *,
    name: str,
    requirement_files: Sequence[Path] = (),
    python_version: str = "3.11",
    architecture: str = "x86_64",
) -> Package:
    """Build ``out_dir/NAME.zip`` for the app ``target`` (``module:attribute``, imported).

    Args:
        target: The app, already imported (``load_app``).
        out_dir: Where the zip goes (created if missing).
        name: The zip's name without ``.zip`` (the app's name).
        requirement_files: The app's own requirements files.
        python_version: Lambda's Python, such as ``3.11``.
        architecture: ``x86_64`` or ``arm64``.

    Raises:
        PackageError: If pip cannot install a dependency for Lambda's platform.
        ConfigError: For an unknown architecture or an app whose module cannot be found.
    """
    import framework

    module_name = target.partition(":")[0]
    app_path, app_name = _app_source(module_name)
    requirements = framework_requirements()
    left_out: Counter[str] = Counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{name}.zip"
    with tempfile.TemporaryDirectory(prefix="framework-package-") as staging_dir:
        staging = Path(staging_dir)
        _pip_install(
            requirements,
            requirement_files,
            staging,
            python_version=python_version,
            architecture=architecture,
        )
        if (staging / "bin").is_dir():
            shutil.rmtree(staging / "bin")
            left_out["bin"] += 1
        # pip may have installed a "framework" distribution: the one imported now replaces it.
        shutil.rmtree(staging / "framework", ignore_errors=True)
        _copy_tree(Path(framework.__file__).resolve().parent, staging / "framework", left_out)
        if app_name != "framework":
            _copy_tree(app_path, staging / app_name, left_out)
        for pattern in ("__pycache__", "*.pyc"):
            for found in list(staging.rglob(pattern)):
                left_out[pattern] += 1
                if found.is_dir():
                    shutil.rmtree(found, ignore_errors=True)
                else:
                    found.unlink(missing_ok=True)
        files = 0
        unzipped = 0
        partial = zip_path.with_suffix(".zip.partial")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(p for p in staging.rglob("*") if p.is_file()):
                archive.write(path, path.relative_to(staging).as_posix())
                files += 1
                unzipped += path.stat().st_size
        partial.replace(zip_path)
    return Package(
        path=zip_path,
        size=zip_path.stat().st_size,
        unzipped=unzipped,
        files=files,
        left_out=dict(sorted(left_out.items())),
        requirements=tuple(requirements),
    )
