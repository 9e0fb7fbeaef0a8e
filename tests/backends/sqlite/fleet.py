"""Real ``framework run --workers-only`` processes sharing one SQLite file (``tests/fleet.py``).

``open_fleet`` gives a fleet on a fresh file and queue, whose workers run ``worker_app.py``;
the sender writes its jobs straight into the file.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from framework.registry import QueueSpec
from tests import fleet as shared
from tests.fleet import Fleet, until

__all__ = ["HERE", "Fleet", "open_fleet", "until"]

HERE = Path(__file__).parent


@contextlib.asynccontextmanager
async def open_fleet(folder: Path, **options: str) -> AsyncIterator[Fleet]:
    """An open fleet on a fresh file in ``folder``; on the way out every worker is killed.

    ``fifo="1"`` makes the queue FIFO; the other ``options`` are the worker app's environment.
    """
    tag = uuid.uuid4().hex[:8]
    fifo = options.pop("fifo", "") == "1"
    queue = f"sq-{tag}.fifo" if fifo else f"sq-{tag}"
    spec = QueueSpec.from_options(
        queue, visibility_timeout=float(options.get("FW_SQ_VISIBILITY", "5"))
    )
    fleet = Fleet(
        f"sqlite:///{folder / 'shared.db'}", folder, spec, app_dir=HERE, prefix="FW_SQ", **options
    )
    async with shared.open_fleet(fleet) as opened:
        yield opened
