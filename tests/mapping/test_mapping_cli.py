"""``crmbridge mapping validate|preview|schema`` through the real typer app."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from crmbridge.cli import mapping_cmd

# the command group on its own app, as cli/main.py registers it (other groups are not needed here)
app = typer.Typer()
mapping_cmd.register(app)

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
SAMPLES = MAPPINGS / "samples"
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["mapping", *args], catch_exceptions=False)


@pytest.fixture
def broken(tmp_path):
    """A copy of zoho_contacts.yaml with one edit."""
    original = (MAPPINGS / "zoho_contacts.yaml").read_text(encoding="utf-8")

    def _make(old: str, new: str, name: str = "broken.yaml") -> Path:
        assert old in original
        path = tmp_path / name
        path.write_text(original.replace(old, new, 1), encoding="utf-8")
        return path
    return _make


def test_validate_passes_on_shipped_mappings(monkeypatch):
    monkeypatch.chdir(ROOT)
    res = run("validate")
    assert res.exit_code == 0, res.output
    for name in ("zoho_contacts", "zoho_accounts", "fxiaoke_accountobj", "fxiaoke_contactobj"):
        assert f"ok: mappings/{name}.yaml" in res.output


@pytest.mark.parametrize(("old", "new", "expected", "line_has"), [
    ("in: [drop_masked, trim, phone_e164]     # a masked echo",
     "in: [drop_masked, trim, phone_e146]     # a masked echo", "unknown transform 'phone_e146'", "phone_e146"),
    ("canonical: date_of_birth", "canonical: birth_date", "unknown canonical path 'birth_date'", "birth_date"),
    ("      Private: PRIVATE\n", "", "does not cover PRIVATE", "table: segment"),
])
def test_validate_reports_file_line_and_key(broken, old, new, expected, line_has):
    path = broken(old, new)
    res = run("validate", str(path))
    assert res.exit_code == 2
    lines = [x for x in res.output.splitlines() if expected in x]
    assert lines, res.output
    m = re.match(rf"{re.escape(str(path))}:(\d+): (steps\[\d+\]\S*): ", lines[0])
    assert m, lines[0]
    assert line_has in path.read_text(encoding="utf-8").splitlines()[int(m.group(1)) - 1]


def test_validate_yaml_syntax_error(broken):
    path = broken("  - type: field\n    vendor: Date_of_Birth", "  - type: field\n    vendor: [Date_of_Birth")
    res = run("validate", str(path))
    assert res.exit_code == 2
    assert re.search(rf"{re.escape(str(path))}:\d+: \(top\): YAML syntax error", res.output)


def test_validate_missing_mandatory_vendor_field(broken):
    path = broken("    vendor: Last_Name\n    canonical: name.legal_zh\n    out_mask: name",
                     "    vendor: Nickname\n    canonical: name.legal_zh\n    out_mask: name")
    res = run("validate", str(path))
    assert res.exit_code == 2
    assert "steps: mandatory zoho Contacts field 'Last_Name' is not mapped in the out direction" in res.output


def test_validate_reports_every_problem_of_every_file(broken, tmp_path):
    p1 = broken("canonical: date_of_birth", "canonical: birth_date", "a.yaml")
    text = p1.read_text(encoding="utf-8").replace("trim, email]", "trim, e_mail]")
    p1.write_text(text, encoding="utf-8")
    p2 = tmp_path / "ok.yaml"
    shutil.copy(MAPPINGS / "zoho_accounts.yaml", p2)
    res = run("validate", str(p1), str(p2))
    assert res.exit_code == 2
    assert "unknown transform 'e_mail'" in res.output and "unknown canonical path 'birth_date'" in res.output
    assert f"ok: {p2}" in res.output and "1 of 2 mapping file(s) have errors" in res.output


def test_preview_in_masks_unless_reveal(tmp_path):
    from crmbridge.core.errors import ConfigurationError
    from crmbridge.sync.state.db import make_engine
    from crmbridge.sync.state.ledger import Ledger, decode_entry
    from crmbridge.sync.state.migrate import upgrade

    # a reveal is ledgered: it needs the configuration's state database (and a reason)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    upgrade(url)
    cfg = tmp_path / "crmbridge.yaml"
    cfg.write_text(f"state:\n  url: {url}\nkeys:\n  master_key: file:master.key\n", encoding="utf-8")
    args = ["preview", str(MAPPINGS / "zoho_contacts.yaml"), "--record", str(SAMPLES / "zoho_contacts.json")]
    masked = run(*args)
    assert masked.exit_code == 0, masked.output
    assert "contact_points[type=MOBILE].value" in masked.output
    assert "+86138****5678" in masked.output and "+8613812345678" not in masked.output
    assert "张*" in masked.output and "张三" not in masked.output
    assert "valid INDIVIDUAL" in masked.output
    with pytest.raises(ConfigurationError, match="--reason"):
        run(*args, "--reveal", "-c", str(cfg))
    revealed = run(*args, "--reveal", "-c", str(cfg), "--reason", "mapping review, ticket 12")
    assert revealed.exit_code == 0
    assert "+8613812345678" in revealed.output and "张三" in revealed.output
    assert "zhang.san@example.com" in revealed.output
    engine = make_engine(url)
    with engine.connect() as conn:
        (entry,) = [decode_entry(e) for e in Ledger(conn).iter_entries()]
    engine.dispose()
    assert entry["action"] == "revealed" and entry["reason"].endswith("mapping review, ticket 12")
    assert "contact_points[type=MOBILE].value" in entry["changed_fields"]


def test_preview_out_shows_the_minimised_payload():
    res = run("preview", str(MAPPINGS / "zoho_contacts.yaml"), "--record", str(SAMPLES / "party_individual.json"),
              "--direction", "out")
    assert res.exit_code == 0, res.output
    assert "ID_Number_Masked" in res.output and "1*************002X" in res.output
    assert "11010519491231002X" not in res.output
    assert "masked (ric)" in res.output


def test_preview_bad_record_exits_3_with_located_error(tmp_path):
    bad = json.loads((SAMPLES / "zoho_contacts.json").read_text(encoding="utf-8"))
    bad["Mobile"] = "12345678901"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad, ensure_ascii=False), encoding="utf-8")
    res = runner.invoke(app, ["mapping", "preview", str(MAPPINGS / "zoho_contacts.yaml"), "--record", str(path)])
    assert res.exit_code == 3
    out = res.output + (res.stderr if res.stderr_bytes is not None else "")
    assert "Mobile → contact_points[type=MOBILE].value: not a valid phone number" in out
    assert "12345678901" not in out


def test_schema_command_outputs_json_schema():
    import jsonschema

    res = run("schema")
    assert res.exit_code == 0
    schema = json.loads(res.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] == "crmbridge mapping"


def test_exit_code_survives_the_console_entry_point(broken):
    """``crmbridge`` runs click with standalone_mode=False: the validate exit code must still reach the shell."""
    importlib.import_module("crmbridge.cli.main")   # the whole CLI imports: a missing module is a failure
    path = broken("canonical: date_of_birth", "canonical: birth_date")
    proc = subprocess.run([sys.executable, "-m", "crmbridge", "mapping", "validate", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "unknown canonical path 'birth_date'" in proc.stdout
