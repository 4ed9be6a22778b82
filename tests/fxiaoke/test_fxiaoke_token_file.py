"""Fxiaoke's corpAccessToken shared by a system's processes through the encrypted token file (``token_cache``).

The token endpoint allows 10 calls a minute and no concurrent calls (docs/vendors/fxiaoke.md §2.1, §10); the simulator
enforces both (14001). A token cached per process breaks that as soon as more than ten runs, restarts or workers
start within a minute: these tests start real processes against the simulator.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from crmbridge.adapters.fxiaoke import auth
from crmbridge.adapters.fxiaoke.simulator import FxiaokeSimulator
from crmbridge.adapters.simulator import Knobs

TOKEN = "POST /cgi/corpAccessToken/get/V2"
PROCESSES = 12

# one "run": a fresh interpreter builds the adapter from configuration and reads every account
SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from crmbridge.adapters.fxiaoke import FxiaokeAdapter, FxiaokeConfig
    url, app_id, user, cache, go = sys.argv[1:6]
    settings = dict(base_url=url, app_id=app_id, app_secret="env:FXT_SECRET", permanent_code="env:FXT_CODE",
                    open_user_id=user, rate_per_second=None, timeout=10.0,
                    retry={"max_attempts": 2, "initial_wait": 0.05, "max_wait": 0.2, "jitter": 0.0})
    if cache != "-" and "token_cache" in FxiaokeConfig.model_fields:   # (a version without it: one per process)
        settings["token_cache"] = cache
    adapter = FxiaokeAdapter(FxiaokeConfig(**settings))
    Path(go + f".ready.{os.getpid()}").touch()
    while not os.path.exists(go):      # every process starts its run at the same moment
        time.sleep(0.01)
    try:
        n = sum(len(p.records) for p in adapter.extract("AccountObj"))
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        sys.exit(1)
    print(json.dumps({"read": n, "fetches": adapter.client.tokens.fetches}))
""")


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FXT_SECRET", FxiaokeSimulator.APP_SECRET)
    monkeypatch.setenv("FXT_CODE", FxiaokeSimulator.PERMANENT_CODE)


@pytest.fixture
def sim() -> Iterator[FxiaokeSimulator]:
    # the simulator's real token limits: 10 calls a minute, none concurrent (14001)
    with FxiaokeSimulator(Knobs(records=12, extra={"contacts": 0, "token_calls_per_minute": 10})) as s:
        yield s


def _runs(sim: FxiaokeSimulator, tmp_path: Path, cache: Path | None, n: int) -> list[dict[str, object]]:
    """Start ``n`` processes, let them all start reading at once, and return what each printed."""
    script = tmp_path / "run_one.py"
    script.write_text(SCRIPT, encoding="utf-8")
    go = tmp_path / f"go.{time.monotonic_ns()}"
    procs = [subprocess.Popen([sys.executable, str(script), sim.url, sim.app_id, sim.ADMIN_OPEN_USER_ID,
                               str(cache) if cache else "-", str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
             for _ in range(n)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob(go.name + ".ready.*"))) < n:
        if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.02)
    go.touch()
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        lines = stdout.strip().splitlines()
        out.append(json.loads(lines[-1]) if lines else {"error": stderr.strip()[-500:]})
    return out


@pytest.mark.slow   # slow tier: processes started together
def test_processes_started_together_share_one_token_through_the_encrypted_file(
        sim: FxiaokeSimulator, tmp_path: Path) -> None:
    cache = tmp_path / "state" / "fxiaoke.token"
    results = _runs(sim, tmp_path, cache, PROCESSES)
    failed = [r for r in results if "error" in r]
    assert not failed, f"{len(failed)} of {PROCESSES} processes failed: {failed[:3]}"
    assert all(r["read"] == 12 for r in results)
    assert sim.requests_seen[TOKEN] <= 2 and sim.token_issued == 1, "the processes did not share the token"
    assert sum(int(r["fetches"]) for r in results) == sim.requests_seen[TOKEN]

    # the file: mode 0600, the token and the secrets never in clear, useless without the system's secrets
    raw = cache.read_bytes()
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    assert sim.tokens and not any(t.encode() in raw for t in sim.tokens)
    assert FxiaokeSimulator.APP_SECRET.encode() not in raw and FxiaokeSimulator.PERMANENT_CODE.encode() not in raw
    right = auth.token_file(cache, SecretStr(FxiaokeSimulator.APP_SECRET), SecretStr(FxiaokeSimulator.PERMANENT_CODE),
                       base_url=sim.url, app_id=sim.app_id)
    held = right.read()
    assert held is not None and held["token"] in sim.tokens and held["corp_id"] == sim.CORP_ID
    assert auth.token_file(cache, SecretStr("another secret"), SecretStr(FxiaokeSimulator.PERMANENT_CODE),
                      base_url=sim.url, app_id=sim.app_id).read() is None
    assert auth.token_file(cache, SecretStr(FxiaokeSimulator.APP_SECRET), SecretStr(FxiaokeSimulator.PERMANENT_CODE),
                      base_url=sim.url, app_id="FSAID_other").read() is None   # bound to its app

    # a token the server rejects (20016) is refreshed once and the file replaced; later processes use the new one
    sim.expire_tokens()
    before = sim.requests_seen[TOKEN]
    again = _runs(sim, tmp_path, cache, 3)
    assert all(r.get("read") == 12 for r in again), again
    assert sim.requests_seen[TOKEN] == before + 1
    assert cache.read_bytes() != raw
    replaced = right.read()
    assert replaced is not None and replaced["token"] != held["token"] and replaced["token"] in sim.tokens
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600


def _token_cache(file: Path, clock: list[float], fetched: list[float]) -> auth.TokenCache:
    """A TokenCache as a separate process builds it (its own memory), sharing ``file``; fake clocks."""
    def fetch() -> auth.CorpToken:
        fetched.append(clock[0])
        return auth.CorpToken(SecretStr(f"token-{len(fetched)}"), "FSCID_1", clock[0], 7200.0)

    def sleep(s: float) -> None:
        clock[0] += max(s, 1e-3)

    return auth.TokenCache(fetch, calls_per_minute=10, clock=lambda: clock[0], wall_clock=lambda: clock[0],
                      sleep=sleep, file=lambda: auth.token_file(file, SecretStr("s"), SecretStr("c"),
                                                           base_url="http://x", app_id="FSAID_1"))


def test_fetches_across_processes_never_exceed_the_endpoint_limit(tmp_path: Path) -> None:
    """A storm of rejected tokens in many processes: the fetches still keep to 10 in any 60 s, because the
    file keeps the recent fetch times for every process (each process's own limiter sees one fetch)."""
    clock, fetched = [1_000_000.0], []
    for _ in range(40):
        cache = _token_cache(tmp_path / "fx.token", clock, fetched)
        tok = cache.get()
        cache.invalidate(tok)      # the server rejected it: the next process must fetch
        clock[0] += 0.5
    assert len(fetched) == 40
    for t in fetched:
        assert sum(1 for u in fetched if t <= u < t + 60) <= 10


def test_the_same_token_is_used_until_its_refresh_point_then_one_process_renews_it(tmp_path: Path) -> None:
    """The documented rule kept: the token is reused until 6650 s of its 7200 s, then renewed once."""
    clock, fetched = [1_000_000.0], []
    first = _token_cache(tmp_path / "fx.token", clock, fetched).get()
    clock[0] += 6600
    assert _token_cache(tmp_path / "fx.token", clock, fetched).get().value.get_secret_value() == \
        first.value.get_secret_value()
    clock[0] += 60    # 6660 s: past the refresh point
    renewed = [_token_cache(tmp_path / "fx.token", clock, fetched).get() for _ in range(5)]
    assert len(fetched) == 2 and {t.value.get_secret_value() for t in renewed} == {"token-2"}


def test_an_unreadable_token_file_costs_one_fetch_and_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "fx.token"
    path.write_text("{not json", encoding="ascii")
    os.chmod(path, 0o644)
    clock, fetched = [1_000_000.0], []
    _token_cache(path, clock, fetched).get()
    _token_cache(path, clock, fetched).get()
    assert len(fetched) == 1
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
