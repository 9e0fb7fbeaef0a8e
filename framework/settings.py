"""Which backend and settings to run with: flags, environment, and ``[tool.framework]`` profiles.

Precedence, highest first: a command-line flag; the profile chosen with ``--env`` (or
``FRAMEWORK_ENV``) from ``[tool.framework.env.NAME]``; the ``FRAMEWORK_BACKEND`` variable; the
top-level ``[tool.framework]`` table; the default ``sqlite:///.framework/{app}.db``, a durable
file per app in the working directory (``{app}`` is the app's name, in any URL).

The SMTP receiver's table ``[tool.framework.smtp]`` is merged key by key with the profile's
``[tool.framework.env.NAME.smtp]``; an ``App(smtp=SMTPConfig(...))`` given in code replaces both.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framework.exceptions import ConfigError
from framework.redact import mask_text
from framework.smtp.config import SMTPConfig, SMTPTable

__all__ = ["Settings", "backend_for", "find_pyproject", "load_settings", "load_smtp_config"]

DEFAULT_BACKEND = "sqlite:///.framework/{app}.db"
APP_PLACEHOLDER = "{app}"
_KEYS = {"backend", "host", "http_port", "smtp_port", "grace", "log_level", "server"}


@dataclass(frozen=True, slots=True)
class Settings:
    """Resolved settings for ``framework run`` and the operations commands."""

    backend: str = DEFAULT_BACKEND
    host: str = "127.0.0.1"
    http_port: int = 8000
    smtp_port: int = 8025
    grace: float = 30.0
    log_level: str = "info"
    server: str | None = None
    smtp: SMTPTable | None = None  # [tool.framework.smtp] with the profile's; None without one

    def __repr__(self) -> str:
        # The backend URL may carry a password or a secret key: never in a repr, a log or a
        # traceback's locals.
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in ("backend", "server"):
            if values[name] is not None:
                values[name] = mask_text(values[name])
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in values.items())})"

    def backend_for(self, app_name: str | None = None) -> str:
        """Return the backend URL for the app named ``app_name`` (see ``backend_for``)."""
        return backend_for(self.backend, app_name)


def backend_for(url: str, app_name: str | None = None) -> str:
    """Return ``url`` with ``{app}`` replaced by ``app_name`` made fit for a file name.

    Without an app name (``framework send`` and the other operations commands that take no
    APP), a ``sqlite://`` URL's ``{app}`` stands for the one file that matches it, so
    ``framework redrive orders-dlq`` finds ``.framework/shop.db`` when it is the only one.

    Raises:
        ConfigError: If no app name is given and no file, or several, match the pattern.
    """
    if APP_PLACEHOLDER not in url:
        return url
    if app_name is not None:
        return url.replace(APP_PLACEHOLDER, re.sub(r"[^A-Za-z0-9._-]", "_", app_name))
    scheme, _, rest = url.partition(":///")
    pattern, _, query = rest.partition("?")
    if scheme != "sqlite":
        raise ConfigError(f"backend {url!r} needs an app name for {APP_PLACEHOLDER}: pass APP")
    folder = Path(pattern).parent
    stem = Path(pattern).name
    found = sorted(folder.glob(stem.replace(APP_PLACEHOLDER, "*"))) if folder.is_dir() else []
    if len(found) == 1:
        return f"sqlite:///{found[0]}" + (f"?{query}" if query else "")
    if not found:
        raise ConfigError(
            f"no app database matches {pattern!r} in {Path.cwd()}: run `framework run APP` "
            "here first, or pass --backend sqlite:///PATH (or --server URL)"
        )
    names = ", ".join(str(p) for p in found)
    raise ConfigError(
        f"several app databases match {pattern!r} ({names}): pass --backend sqlite:///PATH"
    )


def find_pyproject(start: Path | None = None) -> Path | None:
    """Return the nearest ``pyproject.toml`` at or above ``start`` (default: the cwd)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _table(pyproject: Path | None) -> Mapping[str, Any]:
    if pyproject is None:
        return {}
    try:
        data = tomllib.loads(pyproject.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {pyproject}: {exc}") from None
    table = data.get("tool", {}).get("framework", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{pyproject}: [tool.framework] must be a table")
    return table


def _checked(where: str, values: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(values) - _KEYS - {"env", "smtp"}
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(_KEYS))})"
        )
    return {k: v for k, v in values.items() if k in _KEYS}


def load_settings(
    *,
    env: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    pyproject: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve settings from flags (``overrides``, None values ignored), profile, env, pyproject.

    Raises:
        ConfigError: For an unknown profile or setting, naming the profiles that exist.
    """
    environ = os.environ if environ is None else environ
    path = pyproject if pyproject is not None else find_pyproject()
    table = _table(path)
    merged: dict[str, Any] = _checked("[tool.framework]", table)
    if environ.get("FRAMEWORK_BACKEND"):
        merged["backend"] = environ["FRAMEWORK_BACKEND"]
    if environ.get("FRAMEWORK_SERVER"):
        merged["server"] = environ["FRAMEWORK_SERVER"]
    env = env or environ.get("FRAMEWORK_ENV") or None
    if env is not None:
        profiles = table.get("env", {})
        if env not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(
                f"no profile {env!r} in [tool.framework.env] of {path or 'pyproject.toml'} "
                f"(profiles: {known})"
            )
        merged.update(_checked(f"[tool.framework.env.{env}]", profiles[env]))
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    merged["smtp"] = _smtp(table, env, path)
    try:
        return Settings(**merged)
    except TypeError as exc:
        raise ConfigError(f"invalid settings: {mask_text(str(exc))}") from None


def _smtp(table: Mapping[str, Any], env: str | None, path: Path | None) -> SMTPTable | None:
    where = "[tool.framework.smtp]"
    smtp = table.get("smtp", {})
    profile = table.get("env", {}).get(env, {}) if env is not None else {}
    override = profile.get("smtp", {}) if isinstance(profile, dict) else {}
    for name, part in ((where, smtp), (f"[tool.framework.env.{env}.smtp]", override)):
        if not isinstance(part, dict):
            raise ConfigError(f"{path or 'pyproject.toml'}: {name} must be a table")
    if not smtp and not override:
        return None
    if override:
        where = f"{where} with [tool.framework.env.{env}.smtp]"
    base = path.parent if path is not None else None
    return SMTPTable.read(
        {**smtp, **override}, where=f"{where} of {path or 'pyproject.toml'}", base=base
    )


def load_smtp_config(
    *,
    env: str | None = None,
    pyproject: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> SMTPConfig | None:
    """Return the SMTP receiver's config from ``[tool.framework.smtp]``, or None without one.

    This is what an ``App`` given no ``smtp=`` uses: the nearest ``pyproject.toml``'s table,
    merged with the profile's ``[tool.framework.env.NAME.smtp]`` when ``env`` (default:
    ``FRAMEWORK_ENV``) names a profile that exists.

    Args:
        env: The profile's name.
        pyproject: The file (default: the nearest one at or above the working directory).
        environ: The environment (default: ``os.environ``).

    Raises:
        ConfigError: For an unknown key (naming it and the allowed ones) or a bad value.
    """
    environ = os.environ if environ is None else environ
    path = pyproject if pyproject is not None else find_pyproject()
    table = _table(path)
    env = env or environ.get("FRAMEWORK_ENV") or None
    if env is not None and env not in table.get("env", {}):
        env = None  # `framework run` refuses an unknown profile; here it only has no table
    found = _smtp(table, env, path)
    return found.build() if found is not None else None
