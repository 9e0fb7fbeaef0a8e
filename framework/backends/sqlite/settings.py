"""The ``sqlite:///PATH`` URL: which file, and how durable a commit is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from framework.exceptions import ConfigError

__all__ = ["SQLiteSettings"]

_SYNCHRONOUS = ("normal", "full", "extra")
_OPTIONS = {"synchronous", "busy_timeout", "lease_grace", "poll_max"}


@dataclass(frozen=True, slots=True)
class SQLiteSettings:
    """What ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` asks for.

    Options:

    - ``synchronous``: ``normal`` (the default: in WAL mode every commit survives a crash or
      ``kill -9`` of any process; a power loss or OS crash may take the last few), ``full``
      (a commit also survives a power loss: one fsync per commit) or ``extra``.
    - ``busy_timeout``: seconds a writer waits for another process's write lock before the
      call fails; default 10.
    - ``lease_grace``: seconds a lease in the file outlasts the visibility timeout; default
      0.5. The runtime cancels a handler at the timeout and settles its delivery; the grace
      lets it do so before another receive (in any process) can lease the message again.
    - ``poll_max``: the longest wait, in seconds, before a receiver sees another process's
      send once the file has been quiet; default 0.05. Shorter wakes faster and costs more
      idle CPU (see docs/backends/sqlite.md).
    """

    path: Path
    synchronous: str = "normal"
    busy_timeout: float = 10.0
    lease_grace: float = 0.5
    poll_max: float = 0.05

    @classmethod
    def from_url(cls, url: str) -> SQLiteSettings:
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
        busy = _seconds(options, "busy_timeout", "10", low=0.0, open_low=True)
        grace = _seconds(options, "lease_grace", "0.5", low=0.0, open_low=False)
        poll = _seconds(options, "poll_max", "0.05", low=0.0, open_low=True)
        return cls(
            path=Path(raw),
            synchronous=synchronous,
            busy_timeout=busy,
            lease_grace=grace,
            poll_max=max(poll, 0.001),
        )


def _seconds(
    options: dict[str, str], name: str, default: str, *, low: float, open_low: bool
) -> float:
    text = options.get(name, default)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value > low if open_low else value >= low) or value > 3600:
        bound = "above" if open_low else "from"
        raise ConfigError(
            f"sqlite:// option {name}={text!r} must be seconds {bound} {low:g} to 3600"
        )
    return value
