"""Console test fixtures (helpers in console_world.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the console extra is installed by make")

from console_world import Served, add_users, serve  # noqa: E402

from crmbridge.demo import DemoEnvironment  # noqa: E402
from crmbridge.sync.bootstrap import bootstrap  # noqa: E402


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The console over a demo environment whose two jobs have run once (SQLite state)."""
    from crmbridge.sync.engine import run_job

    with DemoEnvironment(tmp_path / "demo", customers=30, bad_fraction=0.1, seed=11) as env:
        rt = bootstrap(env.config_path)
        try:
            for job in ("core_to_zoho", "core_fxiaoke"):   # the two party jobs of the demo
                run_job(rt, job)
            add_users(rt)
            for url in serve(rt):
                yield Served(url, rt, env)
        finally:
            rt.close()
