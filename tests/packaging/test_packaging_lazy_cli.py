"""The command line starts light (issue 19): importing it, and building its help, loads no database, SOAP,
cryptography or sync-engine code; each command imports those when it runs. A behaviour test on ``sys.modules`` in a
fresh interpreter, not a timing (bench/bench_cli.py times it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    modules = _modules_after(body)
    assert "crmbridge.config" in _heavy(modules)
    # every built-in adapter's settings are in the schema, read from its configuration model alone (issue 19)
    assert "crmbridge.adapters.corebank_soap.config" in modules and "zeep" not in modules


VENDORS = ("corebank_soap", "corebank_rest", "zoho", "fxiaoke", "complaints")
#: what reading a configuration and the ledger must not load: the adapters' transports (SOAP, HTTP) and classes
TRANSPORTS = ("zeep", "lxml", "requests", "urllib3", "sqlalchemy.dialects.postgresql",
              *(f"crmbridge.adapters.{v}.{m}" for v in VENDORS for m in ("adapter", "client", "auth", "errors")))

SYSTEMS = """
systems:
  corebank:
    adapter: corebank_soap
    wsdl: package:fcubs_customer.wsdl
    username: CRMBRIDGE
    password: env:CRMBRIDGE_TEST_CORE_PASSWORD
  zoho_cn:
    adapter: zoho
    client_id: 1000.CRMBRIDGETEST
    client_secret: env:CRMBRIDGE_TEST_ZOHO_SECRET
    refresh_token: env:CRMBRIDGE_TEST_ZOHO_REFRESH
  fxiaoke:
    adapter: fxiaoke
    app_id: FSAID_test
    app_secret: env:CRMBRIDGE_TEST_FX_SECRET
    permanent_code: env:CRMBRIDGE_TEST_FX_CODE
    open_user_id: FSUID_0123456789abcdef
  complaints:
    adapter: complaints
    base_url: https://complaints.bank.local/api/v1
    api_key: env:CRMBRIDGE_TEST_COMPLAINTS_KEY
  fineract:
    adapter: corebank_rest
    base_url: https://fineract.bank.local/fineract-provider/api
    auth: {type: basic, username: crmbridge, password: env:CRMBRIDGE_TEST_FINERACT_PASSWORD}
"""


def _run_cli(argv: list[str]) -> list[str]:
    body = f"""
from crmbridge.cli.main import main
try:
    main({argv!r})
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
"""
    return _modules_after(body)


@pytest.mark.parametrize("systems", [True, False], ids=["every-built-in-adapter", "no-systems"])
def test_ledger_runs_does_not_load_the_adapters_transports(tmp_path: Path, systems: bool) -> None:
    """``crmbridge ledger runs`` reads a configuration naming every built-in adapter (each system validated by its
    adapter's configuration model) and a migrated SQLite ledger, without importing zeep, lxml, requests or an
    adapter class: a built-in adapter's model lives in its light ``config`` module (issue 19)."""
    cfg = tmp_path / "crmbridge.yaml"
    cfg.write_text(f"state:\n  url: sqlite:///{tmp_path / 'state.db'}\nkeys:\n  master_key: file:master.key\n"
                   f"  signing_key: file:ledger.pem\n" + (SYSTEMS if systems else ""), encoding="utf-8")
    _run_cli(["keys", "init", "-c", str(cfg), "--new-master-key-file", str(tmp_path / "master.key")])
    modules = _run_cli(["ledger", "runs", "-c", str(cfg)])
    assert "crmbridge.sync.state.ledger" in modules   # the command ran and read the ledger
    if systems:   # every system was validated through its adapter's own model
        assert {f"crmbridge.adapters.{v}.config" for v in VENDORS} <= set(modules)
    loaded = sorted(m for m in modules if any(m == t or m.startswith(t + ".") for t in TRANSPORTS))
    assert loaded == []


def test_the_adapter_class_still_imports_its_transport() -> None:
    """The probe can fail: asking the registry for the SOAP adapter class loads zeep; its package still offers the
    class and the configuration model under the names it always had."""
    modules = _modules_after("""
from crmbridge.adapters.corebank_soap import CorebankSoapAdapter, CorebankSoapConfig
from crmbridge.adapters.corebank_soap.adapter import CorebankSoapConfig as again, ModifyOperation
from crmbridge.adapters.registry import adapter_class, adapter_config_class
assert adapter_class("corebank_soap") is CorebankSoapAdapter
assert CorebankSoapAdapter.Config is CorebankSoapConfig is again is adapter_config_class("corebank-soap")
""")
    assert "zeep" in modules and "crmbridge.adapters.corebank_soap.adapter" in modules
