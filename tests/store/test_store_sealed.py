"""The store is sealed: tables are defined in sync/state only, and no code outside sync/state holds a connection.

Scans the package's source with ``ast`` (attribute ``.connection``, calls ``.connect()`` / ``.begin()`` on an
engine, ``Table(...)`` / ``__tablename__`` definitions). Modules still being converted are listed by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import crmbridge

ROOT = Path(crmbridge.__file__).parent
#: modules not sealed yet (none: the engine, distributed, resolution and the CLI go through the store)
NOT_YET: set[str] = set()
#: the benchmark's baseline inlines the store's code from before a fix, on purpose; the console benchmark generates a
#: million synthetic ledger rows inside the database (INSERT ... SELECT), beneath the store on purpose
BASELINES = {"bench/bench_fixes.py", "bench/bench_console.py"}


def _sources() -> list[tuple[str, ast.AST]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("tests/", ".venv/", "sync/state/", "build/")) or "/migrations/" in rel:
            continue
        out.append((rel, ast.parse(path.read_text(encoding="utf-8"), filename=rel)))
    return out


def test_no_table_is_defined_outside_the_state_package() -> None:
    found = []
    for rel, tree in _sources():
        if rel in NOT_YET:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Table" \
                    and len(node.args) >= 2 and "metadata" in ast.unparse(node.args[1]).lower():
                # sqlalchemy's Table(name, metadata, ...), not rich's or the benchmarks' Table(title, ...)
                found.append(f"{rel}:{node.lineno} Table({ast.unparse(node.args[0])}, ...)")
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__tablename__"
                                                    for t in node.targets):
                found.append(f"{rel}:{node.lineno} __tablename__")
    assert found == [], "tables belong in crmbridge/sync/state/tables.py:\n" + "\n".join(found)


def test_no_connection_outside_the_state_package() -> None:
    found = []
    for rel, tree in _sources():
        if rel in NOT_YET or rel in BASELINES:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "connection":
                found.append(f"{rel}:{node.lineno} .connection")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("connect", "begin") and "engine" in ast.unparse(node.func.value).lower():
                found.append(f"{rel}:{node.lineno} {ast.unparse(node.func)}()")
    assert found == [], "use StateStore.transaction() and StoreTx repository methods:\n" + "\n".join(found)
