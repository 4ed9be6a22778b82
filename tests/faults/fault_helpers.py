"""Helpers of the fault suite: ground truth of the seeded core, invariant checks, and the kill loop.

The invariants every fault test ends on (issue 9):

* every valid, consented record of the job's scope is in the target exactly once (by the crmbridge key), and the
  target holds nothing else;
* no record is lost: every bad record is a dead letter, every other one has a committed outcome;
* the ledger verifies (hash chain and signed checkpoints);
* the cursor is not ahead of the work done: every source record at or before the stored watermark has a committed
  outcome (a ledger entry, a dead letter, or, for records out of the job's scope, its cross-reference);
* with the relationship-manager workload (:class:`RmEdits`, two-way job): no RM edit is lost, in Fxiaoke or in
  core banking.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crmbridge.adapters.base import WriteItem
from crmbridge.adapters.corebank_soap.simulator import CORE_TZ, CustomerStore
from crmbridge.canonical.synthetic import customer_at
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import Runtime
from crmbridge.sync.report import COMPLETED, EXIT_CODES
from crmbridge.sync.state.ledger import Ledger
from crmbridge.sync.state.store import write_intents

#: exit codes of a run that went to its end (partial: the generated bad records are dead letters)
COMPLETED_EXITS = {EXIT_CODES[s] for s in COMPLETED}

REPO = Path(__file__).resolve().parents[2]
CLI = [str(REPO / ".venv" / "bin" / "python"), "-m", "crmbridge"]
CORE = ("corebank", "Customer")
TARGETS = {"core_to_zoho": ("zoho_cn", "Contacts"), "core_fxiaoke": ("fxiaoke", "AccountObj")}


# ============================================================================== ground truth
def share_granted(c: Any) -> bool:
    records = sorted((x for x in c.consents if x.purpose == "SHARE_WITH_CRM_VENDOR"), key=lambda x: x.captured_at)
    return bool(records) and records[-1].status == "GRANTED" and records[-1].withdrawn_at is None


@dataclass
class Truth:
    """What the seeded core holds, by customer number, for one job."""

    expected: set[str]               # must be in the target exactly once
    rejected: set[str]               # must be dead letters
    other: set[str]                  # valid but out of scope or without consent: in no target
    modified: dict[str, datetime]    # customer number -> modified time (UTC)


def truth(n: int, seed: int, bad: float, job: str) -> Truth:
    expected, rejected, other, modified = set(), set(), set(), {}
    store = CustomerStore(0, seed, bad)
    for i in range(n):
        c, no = customer_at(i, seed, bad), CustomerStore.custno(i)
        local = store.base_time + store.step * i
        modified[no] = local.replace(tzinfo=CORE_TZ).astimezone(UTC)
        if not c.should_validate:
            rejected.add(no)
        elif share_granted(c) and (job != "core_to_zoho" or c.is_individual):
            expected.add(no)
        else:
            other.add(no)
    return Truth(expected, rejected, other, modified)


# ============================================================================== target state
def target_keys(env: DemoEnvironment, job: str) -> list[tuple[str, str | None]]:
    """(target record id, crmbridge key) of every live record of the job's target."""
    if job == "core_to_zoho":
        return [(rid, r.get("Party_ID")) for rid, r in env.zoho.stores["Contacts"].records.items()]
    return [(r["_id"], r.get("party_id__c")) for r in env.fxiaoke.records("AccountObj")]


# ============================================================================== invariants
@dataclass
class StateView:
    """What the state database says, read from the test process."""

    cursor: datetime | None
    committed: set[str]          # source ids with a committed outcome
    letters: dict[str, str]      # source id -> dead letter status (latest)
    party_of: dict[str, str]     # core customer number -> party id
    custno_of: dict[str, list[str]]  # party id -> core customer numbers
    target_xref: dict[str, str]  # target id -> party id
    pending_intents: int
    ledger_ok: bool
    ledger_detail: str


def read_state(rt: Runtime, job: str) -> StateView:
    from sqlalchemy import select

    from crmbridge.sync.state.store import dead_letters, xref

    tsys, tobj = TARGETS[job]
    with rt.store.transaction() as tx:
        c = tx.get_cursor(job, "corebank.Customer")
        cursor = datetime.fromisoformat(c.value.replace("Z", "+00:00")) if c is not None and c.value else None
        ledger = Ledger(tx.connection, rt.signer, cipher=rt.cipher)
        committed = {e["source_id"] for e in ledger.iter_entries(job=job) if e.get("source_id")}
        verdict = ledger.verify(rt.signer.public_key)
        conn = tx.connection
        letters = {r.external_id: r.status for r in conn.execute(
            select(dead_letters.c.external_id, dead_letters.c.status).where(dead_letters.c.job == job)
            .order_by(dead_letters.c.id))}
        party_of: dict[str, str] = {}
        custno_of: dict[str, list[str]] = {}
        target_xref: dict[str, str] = {}
        for r in conn.execute(select(xref)).mappings():
            if (r["system"], r["object"]) == CORE:
                party_of[r["external_id"]] = r["party_id"]
                custno_of.setdefault(r["party_id"], []).append(r["external_id"])
            elif (r["system"], r["object"]) == (tsys, tobj):
                target_xref[r["external_id"]] = r["party_id"]
        pending = len(conn.execute(select(write_intents.c.id).where(
            write_intents.c.status == "pending", write_intents.c.target_system == tsys)).all())
    detail = "" if verdict.ok else str(verdict)
    return StateView(cursor, committed, letters, party_of, custno_of, target_xref, pending, verdict.ok, detail)


def refresh_modified(env: DemoEnvironment, t: Truth) -> None:
    """Customers' modified times as the core holds them now (a two-way job's write-backs restamp them)."""
    for no in t.modified:
        rec = env.core.store.get(no)
        if rec is not None:
            t.modified[no] = datetime.fromisoformat(rec["stamp"]).replace(tzinfo=CORE_TZ).astimezone(UTC)


def check_progress(env: DemoEnvironment, rt: Runtime, job: str, t: Truth) -> StateView:
    """Invariants that hold at every instant, in particular right after a kill."""
    refresh_modified(env, t)
    st = read_state(rt, job)
    assert st.ledger_ok, f"ledger does not verify: {st.ledger_detail}"
    keys = [k for _, k in target_keys(env, job)]
    assert None not in keys, "a target record without the crmbridge key"
    dup = [k for k, n in Counter(keys).items() if n > 1]
    assert not dup, f"{len(dup)} parties written twice to the target"
    by_custno = Counter(no for k in keys for no in st.custno_of.get(k or "", ["<unknown party>"]))
    assert by_custno.get("<unknown party>", 0) == 0, "a target record whose party is unknown to the state"
    twice = [no for no, n in by_custno.items() if n > 1]
    assert not twice, f"core customers present more than once in the target: {twice[:5]}"
    unexpected = set(by_custno) - t.expected
    assert not unexpected, f"records in the target that must not be there: {sorted(unexpected)[:5]}"
    if st.cursor is not None:
        committed = st.committed | set(st.letters) | (t.other & set(st.party_of))
        behind = [no for no, at in t.modified.items() if at <= st.cursor and no not in committed]
        assert not behind, (f"cursor {st.cursor.isoformat()} is ahead of the work done: "
                            f"{len(behind)} records at or before it have no committed outcome, e.g. {behind[:5]}")
        assert st.cursor <= max(t.modified[no] for no in committed if no in t.modified)
    return st


def check_final(env: DemoEnvironment, rt: Runtime, job: str, t: Truth) -> StateView:
    """Invariants once a run completed: all of the above, and nothing missing."""
    st = check_progress(env, rt, job, t)
    recs = target_keys(env, job)
    present = {no for _, k in recs for no in st.custno_of.get(k or "", [])}
    missing = t.expected - present
    assert not missing, f"{len(missing)} expected records missing from the target, e.g. {sorted(missing)[:5]}"
    open_letters = {no for no, s in st.letters.items() if s in ("open", "retrying")}
    lost = sorted(t.rejected - set(st.letters))
    assert not lost, f"bad records lost (no dead letter): {lost[:5]}"
    assert open_letters <= t.rejected, f"valid records dead-lettered: {sorted(open_letters - t.rejected)[:5]}"
    unlinked = [rid for rid, k in recs if st.target_xref.get(rid) != k]
    assert not unlinked, f"{len(unlinked)} target records not recorded in the cross-reference"
    assert st.pending_intents == 0, f"{st.pending_intents} write intents left pending after a completed run"
    assert st.cursor == max(t.modified.values()), "the cursor did not reach the newest record"
    return st


# ============================================================================== the kill loop
@dataclass
class KillStats:
    seed: int
    kills: int = 0
    runs: int = 0
    early_exits: list[int] = field(default_factory=list)   # return codes of runs that ended before their kill
    delays: list[float] = field(default_factory=list)
    progress: list[int] = field(default_factory=list)      # records with a committed outcome after each kill
    seconds: float = 0.0
    final: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return (f"seed={self.seed} kills={self.kills} runs={self.runs} early_exits={self.early_exits} "
                f"seconds={self.seconds:.1f} committed_after_each_kill={self.progress}")


def _calls(env: DemoEnvironment) -> int:
    return sum(sum(s.requests_seen.values()) for s in env.simulators)


def _target_writes(env: DemoEnvironment, job: str) -> int:
    sim = env.zoho if job == "core_to_zoho" else env.fxiaoke
    return sum(n for k, n in sim.requests_seen.items() if k.startswith("POST") and "token" not in k.lower()
               and "query" not in k)


def _wait_for_work(p: subprocess.Popen[bytes], env: DemoEnvironment, job: str, *, startup_kill: bool,
                   writes: int, delay: float) -> int:
    """Wait for the process, raising TimeoutExpired at the kill point: ``delay`` seconds after the process
    started (a kill during start-up: imports, migrations, lease, first reads), or ``delay`` seconds after its
    ``writes``-th write call to the target (a kill anywhere in the batch cycle: deciding, writing, recording).
    Returns the exit code if the process ended first."""
    if not startup_kill:
        before = _target_writes(env, job)
        deadline = time.monotonic() + 180
        while _target_writes(env, job) < before + writes:
            if p.poll() is not None:
                return p.returncode
            if time.monotonic() > deadline:
                raise AssertionError(f"the run made fewer than {writes} write calls within 180 s")
            time.sleep(0.005)
    return p.wait(timeout=delay)


def run_command(env: DemoEnvironment, job: str) -> list[str]:
    return [*CLI, "run", job, "--config", str(env.config_path), "--json"]


def kill_loop(env: DemoEnvironment, rt: Runtime, job: str, t: Truth, *, kills: int, seed: int,
              delay: tuple[float, float], max_writes: int, log_dir: Path, max_seconds: float = 480.0,
              between_runs: Callable[[], None] | None = None) -> KillStats:
    """Start the run as a subprocess, SIGKILL it after a random delay, check the invariants, repeat ``kills``
    times (or until a run completes its work before being killed), then run it to completion. ``between_runs``
    is called after each kill, before the next run starts (e.g. :class:`RmEdits`)."""
    rng = random.Random(seed)
    stats = KillStats(seed)
    started = time.monotonic()
    log_dir.mkdir(parents=True, exist_ok=True)
    env_vars = {**os.environ, "PYTHONUNBUFFERED": "1"}
    while stats.kills < kills and time.monotonic() - started < max_seconds:
        wait = rng.uniform(*delay)
        stats.delays.append(round(wait, 3))
        out = log_dir / f"run{stats.runs}.out"
        with out.open("wb") as fh:
            p = subprocess.Popen(run_command(env, job), stdout=fh, stderr=subprocess.STDOUT, env=env_vars,
                                 cwd=REPO)
            stats.runs += 1
            try:
                startup = rng.random() < 0.15
                rc = _wait_for_work(p, env, job, startup_kill=startup, writes=rng.randint(1, max_writes),
                                    delay=rng.uniform(0.5, 5.0) if startup else wait)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.wait()
                stats.kills += 1
            else:
                stats.early_exits.append(rc)
                text = out.read_text(errors="replace")
                assert rc in COMPLETED_EXITS, \
                    f"run {stats.runs} ended with {rc} before its kill ({stats.line()}):\n{text[-3000:]}"
                report = json.loads(text[text.index("{"):])
                assert report["status"] in COMPLETED, report
                check_progress(env, rt, job, t)
                break  # the work is done: more kills would only hit idle runs
        try:
            st = check_progress(env, rt, job, t)
            stats.progress.append(len(st.committed | set(st.letters)))
        except AssertionError as exc:
            raise AssertionError(f"after kill {stats.kills} ({stats.line()}): {exc}") from exc
        if between_runs is not None:
            between_runs()
    out = log_dir / "final.out"
    with out.open("wb") as fh:
        p = subprocess.run(run_command(env, job), stdout=fh, stderr=subprocess.STDOUT, env=env_vars, cwd=REPO,
                           timeout=600, check=False)
    stats.runs += 1
    text = out.read_text(errors="replace")
    assert p.returncode in COMPLETED_EXITS, f"the final run failed ({stats.line()}):\n{text[-3000:]}"
    stats.final = json.loads(text[text.index("{"):])
    assert stats.final["status"] in COMPLETED, stats.final
    stats.seconds = time.monotonic() - started
    print(f"\n[fault] {job}: {stats.line()}", file=sys.stderr)
    return stats


def call_error(results: list[Any]) -> list[Any]:
    """A write whose call failed as a whole comes back as failed records (each a dead letter for the engine):
    raise the call's own error, as the adapter raised it, for a test of how that error was classified."""
    causes = [r.error.__cause__ for r in results if r.error is not None and r.error.__cause__ is not None]
    if causes and len(causes) == len(results):
        raise causes[0]
    return results


# ============================================================================== relationship managers at work
@dataclass
class RmEdits:
    """Relationship managers correcting customers' e-mails in Fxiaoke (a field the CRM owns) between the runs of
    the two-way job, through Fxiaoke's API (issue 14): after each kill, every account a dead run created without
    recording it (the case that lost edits), then recorded accounts, ``per_kill`` edits in all. An edit is lost
    if, once the job has settled, Fxiaoke or core banking does not hold the RM's latest value."""

    env: DemoEnvironment
    rt: Runtime
    seed: int
    per_kill: int = 4
    job: str = "core_fxiaoke"
    made: dict[str, tuple[str, str]] = field(default_factory=dict)   # party id -> (Fxiaoke id, latest e-mail)
    edits: int = 0
    unrecorded: int = 0          # edits of accounts a dead run created and did not record

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def __call__(self) -> None:
        st = read_state(self.rt, self.job)
        people = [a for a in self.env.fxiaoke.records("AccountObj") if a.get("party_type__c") == "INDIVIDUAL"]
        fresh = [a for a in people if a["_id"] not in st.target_xref]
        known = [a for a in people if a["_id"] in st.target_xref]
        picks = self.rng.sample(fresh, min(len(fresh), self.per_kill - 1))
        picks += self.rng.sample(known, min(len(known), self.per_kill - len(picks)))
        adapter = self.rt.adapter("fxiaoke")
        for a in picks:
            self.edits += 1
            email = f"rm.{self.edits}@example.com"
            (res,) = adapter.write("AccountObj", [WriteItem(key="rm", payload={"email": email},
                                                            external_id=a["_id"])])
            assert res.status.value == "updated", f"the RM's edit was refused: {res.error}"
            self.made[a["party_id__c"]] = (a["_id"], email)
            self.unrecorded += a in fresh

    def lost(self) -> list[str]:
        """Party ids whose RM e-mail is not what Fxiaoke (one account) and core banking hold."""
        st = read_state(self.rt, self.job)
        out = []
        accounts = Counter(a.get("party_id__c") for a in self.env.fxiaoke.records("AccountObj"))
        by_id = {a["_id"]: a for a in self.env.fxiaoke.records("AccountObj")}
        for pid, (fx_id, email) in sorted(self.made.items()):
            core = [self.env.core.store.get(no) or {} for no in st.custno_of.get(pid, [])]
            if (accounts[pid] != 1 or by_id.get(fx_id, {}).get("email") != email
                    or [c.get("email") for c in core] != [email]):
                out.append(pid)
        return out

    def line(self) -> str:
        return f"rm_edits={self.edits} of_unrecorded_accounts={self.unrecorded} parties={len(self.made)}"
