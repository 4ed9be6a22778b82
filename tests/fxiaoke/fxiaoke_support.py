"""Shared helpers of the Fxiaoke tests: the adapter configured against a simulator, with quick retries."""

from __future__ import annotations

from crmbridge.adapters.fxiaoke import FxiaokeAdapter, FxiaokeConfig
from crmbridge.adapters.fxiaoke.simulator import FxiaokeSimulator
from crmbridge.core.retry import RetryPolicy

FAST = RetryPolicy(max_attempts=4, initial_wait=0.001, max_wait=0.01, jitter=0.0)
#: environment the adapter's secret references read (set by conftest.py for every test here)
SECRETS = {"FXT_SECRET": FxiaokeSimulator.APP_SECRET, "FXT_CODE": FxiaokeSimulator.PERMANENT_CODE}


def make(sim: FxiaokeSimulator, **kw: object) -> FxiaokeAdapter:
    settings: dict[str, object] = dict(base_url=sim.url, app_id=sim.app_id, app_secret="env:FXT_SECRET",
                                       permanent_code="env:FXT_CODE", open_user_id=sim.ADMIN_OPEN_USER_ID,
                                       page_size=7, rate_per_second=None, retry=FAST, timeout=5.0)
    settings.update(kw)
    return FxiaokeAdapter(FxiaokeConfig(**settings))  # type: ignore[arg-type]
