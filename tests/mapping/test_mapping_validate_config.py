"""Validation that catches what runs later refuse: job mappings from a configuration, adapter-filled fields,
extensions removed from the configuration, and preview notes that say what the vendor receives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from crmbridge.adapters.fxiaoke.simulator import FxiaokeSimulator
from crmbridge.adapters.simulator import Knobs
from crmbridge.canonical.extensions import declare_extensions
from crmbridge.cli import mapping_cmd

app = typer.Typer()
mapping_cmd.register(app)
runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
SAMPLES = MAPPINGS / "samples"


@pytest.fixture(autouse=True)
def _reset_extensions() -> Iterator[None]:
    yield
    declare_extensions({})


def run(*args: str):
    return runner.invoke(app, ["mapping", *args], catch_exceptions=False)


CONFIG = """\
keys:
  master_key: env:CRMBRIDGE_TEST_MASTER_KEY
systems:
  corebank:
    adapter: corebank_soap
    wsdl: http://127.0.0.1:9/fcubs?wsdl
  fx:
    adapter: fxiaoke
    base_url: {fx_url}
    app_id: {app_id}
    app_secret: env:FXV_SECRET
    permanent_code: env:FXV_CODE
    open_user_id: {user}
jobs:
  core_to_fx:
    source: corebank.Customer
    target: fx.AccountObj
    source_mapping: core.yaml
    target_mapping: {target}
canonical:
  extensions:
    relationship_start_date:
      type: date
      class: C2
      treatment: [encrypt, mask]
      mask: date
      description: Date the customer relationship began
"""


def _config(tmp_path: Path, *, target: str = str(MAPPINGS / "fxiaoke_accountobj.yaml"),
            fx_url: str = "http://127.0.0.1:9", app_id: str = "FSAID_x", user: str = "FSUID_x",
            core_extra: str = "") -> Path:
    core = (MAPPINGS / "corebank_soap_customer.yaml").read_text(encoding="utf-8") + core_extra
    (tmp_path / "core.yaml").write_text(core, encoding="utf-8")
    p = tmp_path / "crmbridge.yaml"
    p.write_text(CONFIG.format(target=target, fx_url=fx_url, app_id=app_id, user=user), encoding="utf-8")
    return p


EXTENSION_STEP = """\
  - type: field
    vendor: CIFCREATIONDT
    canonical: extensions.relationship_start_date
    transform: ["date:%Y-%m-%d"]
    direction: in
"""


def test_validate_with_a_config_checks_its_job_mappings(tmp_path: Path) -> None:
    cfg = _config(tmp_path, core_extra=EXTENSION_STEP)
    res = run("validate", "-c", str(cfg))
    assert res.exit_code == 0, res.output
    assert f"ok: jobs.core_to_fx.source_mapping: {tmp_path / 'core.yaml'}" in res.output
    assert "ok: jobs.core_to_fx.target_mapping:" in res.output


def test_an_extension_removed_from_the_config_is_an_error_at_the_mapping_line(tmp_path: Path) -> None:
    cfg = _config(tmp_path, core_extra=EXTENSION_STEP)
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(text[:text.index("canonical:")], encoding="utf-8")
    core = tmp_path / "core.yaml"
    line = next(i for i, ln in enumerate(core.read_text(encoding="utf-8").splitlines(), 1)
                if "extensions.relationship_start_date" in ln)
    res = run("validate", "-c", str(cfg))
    assert res.exit_code == 2
    assert (f"jobs.core_to_fx.source_mapping: {core}:{line}: steps[" in res.output
            and "'relationship_start_date' is not a declared canonical extension" in res.output), res.output


def test_against_fxiaoke_knows_the_adapter_fills_the_owner(tmp_path: Path, monkeypatch) -> None:
    with FxiaokeSimulator(Knobs(seed=3, records=2)) as sim:
        monkeypatch.setenv("FXV_SECRET", sim.APP_SECRET)
        monkeypatch.setenv("FXV_CODE", sim.PERMANENT_CODE)
        cfg = _config(tmp_path, fx_url=sim.url, app_id=sim.app_id, user=sim.ADMIN_OPEN_USER_ID)
        res = run("validate", str(MAPPINGS / "fxiaoke_accountobj.yaml"), "--against", "fx", "-c", str(cfg))
        assert res.exit_code == 0, res.output
        assert "owner" not in res.output
        # a typo in a field the shipped mapping writes is still caught against the live describe
        broken = tmp_path / "fx.yaml"
        broken.write_text((MAPPINGS / "fxiaoke_accountobj.yaml").read_text(encoding="utf-8").replace(
            "party_id__c", "party_idd__c"), encoding="utf-8")
        res = run("validate", str(broken), "--against", "fx", "-c", str(cfg))
        assert res.exit_code == 2 and "party_idd__c" in res.output


ADDRESS = """\
system: zoho
object: Contacts
version: 1
description: test
party_type: INDIVIDUAL
external_id: id
key_field: Party_ID
steps:
  - {type: field, vendor: Mailing_City, canonical: "addresses[type=RESIDENTIAL].city", direction: out}
  - {type: field, vendor: Last_Name, canonical: name.legal_zh, out_mask: name, direction: out}
"""


def test_preview_says_an_address_goes_out_in_clear(tmp_path: Path) -> None:
    m = tmp_path / "zoho.yaml"
    m.write_text(ADDRESS, encoding="utf-8")
    res = run("preview", str(m), "--record", str(SAMPLES / "party_individual.json"), "--direction", "out")
    assert res.exit_code == 0, res.output
    city_row = next(ln for ln in res.output.splitlines() if "Mailing_City" in ln)
    assert "sent in clear" in city_row and "shown masked (address)" in city_row
    name_row = next(ln for ln in res.output.splitlines() if "Last_Name" in ln)
    assert "sent masked (name)" in name_row and "in clear" not in name_row


def test_config_check_names_the_mapping_line_of_a_removed_extension(tmp_path: Path) -> None:
    from crmbridge.cli.config_cmd import check_job_mappings
    from crmbridge.config import load_config

    cfg_path = _config(tmp_path, core_extra=EXTENSION_STEP)
    assert check_job_mappings(load_config(cfg_path)) == []
    text = cfg_path.read_text(encoding="utf-8")
    cfg_path.write_text(text[:text.index("canonical:")], encoding="utf-8")
    core = tmp_path / "core.yaml"
    line = next(i for i, ln in enumerate(core.read_text(encoding="utf-8").splitlines(), 1)
                if "extensions.relationship_start_date" in ln)
    problems = check_job_mappings(load_config(cfg_path))
    assert len(problems) == 1 and problems[0].startswith(f"jobs.core_to_fx.source_mapping: {core}:{line}: steps[")
    assert "'relationship_start_date' is not a declared canonical extension" in problems[0]
