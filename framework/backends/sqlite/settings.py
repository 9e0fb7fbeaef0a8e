"""The ``sqlite:///PATH`` URL: which file, and how durable a commit is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from framework.exceptions import ConfigError

__all__ = ["Settings"]

_SYNCHRONOUS = ("normal", "full", "extra")
_OPTIONS = {"synchronous", "busy_timeout"}


@dataclass(frozen=True, slots=True)
class Settings:
    """What ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` asks for.

    Options:

    - ``synchronous``: ``normal`` (the default: in WAL mode every commit survives a crash or
      ``kill -9`` of any process; a power loss or OS crash may take the last few), ``full``
      (a commit also survives a power loss: one fsync per commit) or ``extra``.
    - ``busy_timeout``: seconds a writer waits for another process's write lock before the
      call fails; default 10.
    """

    path: Path
    synchronous: str = "normal"
    busy_timeout: float = 10.0

    @classmethod
    def from_url(cls, url: str) -> Settings:
        """Read the file's path and the options from ``url``.

        Raises:
            ConfigError: For a URL that is not ``sqlite:///PATH``, or a bad option.
        """
        parts = urlsplit(url)
        if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/"):
            raise ConfigError(
                f"not a SQLite URL: {url!r} (expected sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db)"
            )
        raw = unquote(parts.path[1:])  # sqlite:///a.db -> "a.db"; sqlite:////a.db -> "/a.db"
        if not raw or raw.endswith("/"):
            raise ConfigError(f"sqlite URL {url!r} names no file (expected sqlite:///PATH.db)")
        if raw == ":memory:":
            raise ConfigError("sqlite:///:memory: keeps nothing: use memory:// instead")
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ConfigError(
                f"sqlite:// option(s) {', '.join(sorted(unknown))} unknown "
                f"(known: {', '.join(sorted(_OPTIONS))})"
            )
        synchronous = options.get("synchronous", "normal").lower()
        if synchronous not in _SYNCHRONOUS:
            raise ConfigError(
                f"sqlite:// option synchronous={synchronous!r} must be one of "
                f"{', '.join(_SYNCHRONOUS)}"
            )
        try:
            busy = float(options.get("busy_timeout", "10"))
        except ValueError:
            busy = -1.0
        if not 0 < busy <= 3600:
            raise ConfigError(
                f"sqlite:// option busy_timeout={options['busy_timeout']!r} must be seconds "
                "from 0 to 3600"
            )
        return cls(path=Path(raw), synchronous=synchronous, busy_timeout=busy)
