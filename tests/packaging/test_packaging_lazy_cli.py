"""The command line starts light (issue 19): importing it, and building its help, loads no database, SOAP,
cryptography or sync-engine code; each command imports those when it runs. A behaviour test on ``sys.modules`` in a
fresh interpreter, not a timing (bench/bench_cli.py times it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: pydantic is not here: typer itself (0.29) imports it to coerce a command's parameters
HEAVY = ("sqlalchemy", "zeep", "cryptography", "crmbridge.sync", "alembic", "requests", "crmbridge.canonical",
         "crmbridge.config", "crmbridge.demo")

PROBE = """
import json, sys
{body}
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after(body: str) -> list[str]:
    res = subprocess.run([sys.executable, "-c", PROBE.format(body=body)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _heavy(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_importing_the_cli_loads_nothing_heavy() -> None:
    modules = _modules_after("import crmbridge.cli.main")
    assert "crmbridge.cli.main" in modules and "crmbridge.cli.ledger_cmd" in modules   # every command registered
    assert _heavy(modules) == []


@pytest.mark.parametrize("argv", [["--help"], ["ledger", "--help"], ["keys", "--help"], ["simulate", "--help"],
                                  ["config", "schema", "--help"], ["mapping", "--help"]])
def test_help_loads_nothing_heavy(argv: list[str]) -> None:
    """Help builds every command's options (typer reads their annotations): those stay light too."""
    body = f"""
from crmbridge.cli.main import main
try:
    main({argv!r})
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
"""
    assert _heavy(_modules_after(body)) == []


def test_a_command_still_imports_what_it_needs() -> None:
    """The probe can fail: a command that needs the configuration model does load it when it runs."""
    body = """
from crmbridge.cli.main import main
try:
    main(["config", "schema"])
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
"""
    assert "crmbridge.config" in _heavy(_modules_after(body))
