"""Make the repository's ``examples`` package importable from these tests.

``pip install -e .`` installs only ``framework``, and pytest's default import mode puts this
directory's parents on ``sys.path``, where ``tests/examples/`` would pass for a namespace package
named ``examples``. A regular package wins over a namespace one wherever it sits on the path,
so appending the repository root is enough.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.append(ROOT)
