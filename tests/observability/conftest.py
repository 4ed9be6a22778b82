"""The observability tests share the scheduler tests' helpers (tests/scheduler/scheduler_support.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scheduler"))
