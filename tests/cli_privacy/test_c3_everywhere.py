"""Issue 14 item 8: C3 authentication data (a card PIN, a CVV2) is refused at every entry point, not only by the
engine's map-in: ``mapping preview`` in and out, ``mapping validate`` and ``config check`` (a mapping that maps a
C3-looking vendor field), ``deadletters retry``, and ``run`` for a PIN carried as a FLEXCUBE name/value pair."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from crmbridge.adapters.corebank_soap.simulator import CustomerStore, fcubs_record
from crmbridge.canonical.c3 import find_c3
from crmbridge.cli import mapping_cmd
from crmbridge.demo import DemoEnvironment

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
SAMPLES = MAPPINGS / "samples"
CRMBRIDGE = Path(sys.executable).with_name("crmbridge")
PIN, CVV = "246810", "913"

app = typer.Typer()
mapping_cmd.register(app)


def _mapping(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["mapping", *args], catch_exceptions=False)


def _sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def test_preview_in_refuses_a_vendor_record_carrying_a_pin_or_cvv(tmp_path: Path) -> None:
    rec = _sample("corebank_soap_customer.json")
    rec["Custpersonal"]["CARD_PIN"] = PIN
    rec["CVV2"] = CVV
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(rec, ensure_ascii=False), encoding="utf-8")
    res = _mapping("preview", str(MAPPINGS / "corebank_soap_customer.yaml"), "--record", str(path))
    assert res.exit_code == 3, res.output
    assert "valid INDIVIDUAL" not in res.output
    assert "Custpersonal.CARD_PIN" in res.output and "CVV2" in res.output and "C3" in res.output
    assert PIN not in res.output and CVV not in res.output
    # the same record as a FLEXCUBE user-defined field (name/value pair)
    rec = _sample("corebank_soap_customer.json")
    rec["UDFDETAILS"].append({"FLDNAM": "CARD_PIN", "FLDVAL": PIN})
    path.write_text(json.dumps(rec, ensure_ascii=False), encoding="utf-8")
    res = _mapping("preview", str(MAPPINGS / "corebank_soap_customer.yaml"), "--record", str(path))
    assert res.exit_code == 3 and "FLDNAM=CARD_PIN" in res.output and PIN not in res.output, res.output


def test_preview_out_refuses_a_canonical_record_carrying_c3(tmp_path: Path) -> None:
    party = _sample("party_individual.json")
    party["card_pin"] = PIN
    path = tmp_path / "party.json"
    path.write_text(json.dumps(party, ensure_ascii=False), encoding="utf-8")
    res = _mapping("preview", str(MAPPINGS / "zoho_contacts.yaml"), "--record", str(path), "-d", "out")
    assert res.exit_code == 3, res.output
    assert "card_pin" in res.output and "C3" in res.output and PIN not in res.output


def _c3_mapping(tmp_path: Path) -> Path:
    text = (MAPPINGS / "corebank_soap_customer.yaml").read_text(encoding="utf-8")
    step = ("  - type: field\n    vendor: Custpersonal.CVV2\n    canonical: occupation\n    direction: in\n"
            "  - type: field\n    vendor: UDFDETAILS[FLDNAM=CARD_PIN].FLDVAL\n    canonical: employer\n"
            "    direction: in\n")
    assert "\nsteps:\n" in text
    path = tmp_path / "corebank_c3.yaml"
    path.write_text(text.replace("\nsteps:\n", "\nsteps:\n" + step, 1), encoding="utf-8")
    return path


def test_validate_refuses_a_mapping_that_maps_a_c3_vendor_field(tmp_path: Path) -> None:
    path = _c3_mapping(tmp_path)
    res = _mapping("validate", str(path))
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if "C3" in ln]
    assert len(lines) == 2, res.output
    assert any(f"{path}:" in ln and "steps[0].vendor" in ln and "CVV2" in ln for ln in lines), lines
    assert any("steps[1].vendor" in ln and "CARD_PIN" in ln for ln in lines), lines
    # the shipped mappings carry nothing of the kind
    assert _mapping("validate", str(MAPPINGS / "corebank_soap_customer.yaml")).exit_code == 0


def test_config_check_refuses_a_job_whose_mapping_maps_a_c3_field(tmp_path: Path) -> None:
    from crmbridge.cli.config_cmd import check_job_mappings
    from crmbridge.config import load_config

    path = _c3_mapping(tmp_path)
    (tmp_path / "master.key").write_text("x")
    cfg = tmp_path / "crmbridge.yaml"
    cfg.write_text(
        "keys: {master_key: file:master.key}\n"
        "systems:\n  corebank: {adapter: corebank_soap, wsdl: 'http://127.0.0.1:9/?wsdl', username: u,\n"
        "             password: 'env:X_P'}\n"
        "  zoho_cn: {adapter: zoho, client_id: c, client_secret: 'env:X_S', refresh_token: 'env:X_R'}\n"
        "jobs:\n  core_to_zoho: {source: corebank.Customer, target: zoho_cn.Contacts,\n"
        f"    source_mapping: {path}, target_mapping: zoho_contacts.yaml}}\n", encoding="utf-8")
    problems = check_job_mappings(load_config(cfg))
    assert any("jobs.core_to_zoho.source_mapping" in p and "CVV2" in p and "C3" in p for p in problems), problems


def test_find_c3_sees_a_pin_in_a_name_value_pair() -> None:
    rec = {"UDFDETAILS": [{"FLDNAM": "AUM_AMOUNT", "FLDVAL": "1"}, {"FLDNAM": "CARD_PIN", "FLDVAL": PIN}],
           "attrs": [{"name": "cvv2", "value": CVV}, {"name": "cvv2", "value": ""}, {"key": "pinyin", "value": "x"}]}
    found = find_c3(rec)
    assert [p for p, _ in found] == ["UDFDETAILS[1].FLDVAL", "attrs[0].value"]
    assert all(PIN not in r and CVV not in r for _, r in found)


# ---------------------------------------------------------------------------------------------- deadletters retry
@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnvironment]:
    with DemoEnvironment(tmp_path / "demo", customers=3, bad_fraction=0.0, seed=5) as e:
        yield e


def _cli(env: DemoEnvironment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CRMBRIDGE), "--config", str(env.config_path), *args], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, COLUMNS="200"))


@pytest.mark.slow   # a command-line run over a full sync: the slow tier
def test_deadletters_retry_refuses_a_record_that_now_carries_c3(env: DemoEnvironment) -> None:
    custno = CustomerStore.custno(0)
    env.core.store.touch(custno, mobile="138123456789")              # dead-lettered: not a valid mobile
    assert _cli(env, "run", "core_to_zoho").returncode in (1, 3)
    before = _cli(env, "deadletters", "list").stdout
    assert custno in before
    in_zoho = env.zoho.count("Contacts")
    # the record is fixed at the core, but a user-defined field now carries the card PIN
    env.core.store.touch(custno, mobile="13812345678")
    rec = copy.deepcopy(fcubs_record(env.core.store.get(custno)))
    rec["UDFDETAILS"].append({"FLDNAM": "CARD_PIN", "FLDVAL": PIN})
    reply = env.core.envelope(env.core._reply("QUERYCUSTOMER_IOFS_RES", {"FCUBS_HEADER": {"SOURCE": "CRM"}},
                                              {"Customer-Full": rec}))
    env.core.queue_raw(reply.body, times=2)     # what the retry reads (and the run would read again)
    res = _cli(env, "deadletters", "retry", "1")
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "not retried" in out and "CARD_PIN" in out and "C3" in out and PIN not in out
    assert env.zoho.count("Contacts") == in_zoho        # nothing was pushed
    assert custno in _cli(env, "deadletters", "list").stdout   # the letter stays open
