"""Shared helpers of the hand-run benchmarks (issue 9): machine description, child runs with clean peak RSS,
API-call accounting against the simulators, a table printer and ``bench/RESULTS.md``.

The simulators live in the benchmark's own process (a :class:`~crmbridge.demo.DemoEnvironment`); crmbridge
itself runs in a child process (``bench/_worker.py``) so that its peak RSS and CPU time are its own, not the
simulators'. The demo's vendor secrets reach the child through the environment, as in production.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "BENCH_DIR",
    "RESULTS",
    "Table",
    "append_results",
    "calls_by_kind",
    "command_line",
    "machine_description",
    "run_worker",
    "snapshot_calls",
]

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "RESULTS.md"
WORKER = BENCH_DIR / "_worker.py"


def machine_description() -> str:
    """CPU model, cores, RAM, OS and Python: one line."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, {ram} RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()} ({platform.python_implementation()})")


def command_line() -> str:
    """The exact command that ran this benchmark, relative to the repository root."""
    argv = [sys.argv[0]]
    try:
        argv[0] = str(Path(sys.argv[0]).resolve().relative_to(ROOT))
    except ValueError:
        pass
    return ".venv/bin/python " + " ".join(shlex.quote(a) for a in argv + sys.argv[1:])


class Table:
    """A small fixed-width table that also renders as Markdown."""

    def __init__(self, title: str, columns: list[str]) -> None:
        self.title, self.columns, self.rows = title, columns, []  # type: ignore[var-annotated]

    def add(self, *cells: Any) -> None:
        self.rows.append([_fmt(c) for c in cells])

    def text(self) -> str:
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c)
                  for i, c in enumerate(self.columns)]
        line = "  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True))
        out = [self.title, line, "-" * len(line)]
        out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in self.rows]
        return "\n".join(out)

    def markdown(self) -> str:
        out = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        out += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 1:
            return f"{v:.2f}"
        return f"{v:.3g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def append_results(title: str, tables: list[Table], notes: list[str] | None = None) -> None:
    """Print the tables and append them, with the machine and the exact command, to ``bench/RESULTS.md``."""
    for t in tables:
        print()
        print(t.text())
    for n in notes or []:
        print("note:", n)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"\n## {title} ({stamp})\n", f"- machine: {machine_description()}",
             f"- command: `{command_line()}`"]
    parts += [f"- {n}" for n in notes or []]
    for t in tables:
        parts += ["", f"**{t.title}**", "", t.markdown()]
    if not RESULTS.exists():
        RESULTS.write_text("# crmbridge benchmark results\n\nAppended by the scripts in bench/ (run by hand, not in "
                           "CI). Each section: the machine, the exact command, the tables.\n")
    with RESULTS.open("a") as fh:
        fh.write("\n".join(parts) + "\n")


def run_worker(args: list[str], *, timeout: float) -> dict[str, Any]:
    """Run ``bench/_worker.py`` with ``args`` in a child process; its JSON answer plus ``peak_rss_mib`` measured
    by the parent (children rusage) and ``process_seconds`` (the whole child)."""
    env = dict(os.environ)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=ROOT, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"worker {args} timed out after {timeout:.0f} s") from None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed ({proc.returncode}):\n{err[-4000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["process_seconds"] = time.monotonic() - started  # the whole child, start-up included
    result["children_maxrss_mib"] = usage.ru_maxrss / 1024
    return result


def snapshot_calls(*sims: Any) -> dict[str, Counter[str]]:
    """Copy of each simulator's ``requests_seen`` (by class name) to diff against later."""
    return {type(s).__name__: Counter(s.requests_seen) for s in sims}


def calls_by_kind(before: dict[str, Counter[str]], *sims: Any) -> dict[str, Counter[str]]:
    """Requests each simulator received since ``before``, by ``"METHOD /path"``."""
    return {type(s).__name__: Counter(s.requests_seen) - before.get(type(s).__name__, Counter()) for s in sims}


def ceil_div(a: int, b: int) -> int:
    return math.ceil(a / b) if a > 0 else 0
