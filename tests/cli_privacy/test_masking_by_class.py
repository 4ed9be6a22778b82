"""Issue 14 item 5: a value the mapping classifies as personal (C2) is masked by its class in every view, whatever
its shape: a 12-digit mobile, a mobile with letters, a 6-character ID number. Pattern masking is only the second
line, for free text; a field nobody classified is masked unless it is clearly not personal (fail closed)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmbridge.adapters.corebank_soap.simulator import CustomerStore
from crmbridge.adapters.registry import target_profile
from crmbridge.canonical.mapping import load_mapping
from crmbridge.canonical.masking import mask_canonical, mask_vendor_record
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.security.protect import seal
from crmbridge.sync.state.ledger import Action, Ledger, LedgerEntryIn

CRMBRIDGE = Path(sys.executable).with_name("crmbridge")
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"

MOBILE_12 = "138123456789"        # one digit too many: no mobile pattern matches it
MOBILE_LETTERS = "1381234567O"    # 11 characters, the last a letter O
SHORT_ID = "123456"               # a truncated RIC
AUM = "17103.39"
PHONE_UNMAPPED = "075512345678"   # a field no step maps (TELEPHNO)
PIN, CVV = "2468", "913"          # C3: never shown, not even masked (a masked 4-digit PIN shows half of it)


def _cli(env: DemoEnvironment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CRMBRIDGE), "--config", str(env.config_path), *args], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, COLUMNS="200"))


def _fcubs(**personal: str) -> dict[str, object]:
    return {"CUSTNO": "000000042", "CTYPE": "I", "NAME": "张三", "RECORD_STAT": "O", "MODNO": "3",
            "CHECKERSTAMP": "2025-06-02T09:00:00", "UIDNAME": "RIC", "UIDVAL": SHORT_ID,
            "Custpersonal": {"NATIONID": SHORT_ID, "MOBNUM": MOBILE_12, "TELEPHNO": PHONE_UNMAPPED,
                             "EMAILID": "zhang.san@example.com", "SEX": "M", **personal},
            "UDFDETAILS": [{"FLDNAM": "AUM_AMOUNT", "FLDVAL": AUM},
                           {"FLDNAM": "CUSTOMER_SEGMENTATION", "FLDVAL": "WEALTH"},
                           {"FLDNAM": "FAVOURITE_NOTE", "FLDVAL": "call after 6pm, wife 张丽"}]}


def test_a_vendor_record_is_masked_by_the_class_of_the_canonical_field_each_field_feeds() -> None:
    mapping = load_mapping(MAPPINGS / "corebank_soap_customer.yaml", profile=target_profile)
    for mobile in (MOBILE_12, MOBILE_LETTERS, "1381234"):
        rows = dict(mask_vendor_record(_fcubs(MOBNUM=mobile), mapping))
        text = "\n".join(rows.values())
        for clear in (mobile, SHORT_ID, AUM, PHONE_UNMAPPED, "zhang.san", "张丽", "张三"):
            assert clear not in text, (clear, rows)
        assert rows["Custpersonal.MOBNUM"] != mobile and "*" in rows["Custpersonal.MOBNUM"]
        assert rows["UDFDETAILS.0.FLDVAL"] == "***"             # aum.amount, by class
        # what is clearly not personal stays readable: the record's id, its type, codes
        assert rows["CUSTNO"] == "000000042" and rows["CTYPE"] == "I" and rows["UDFDETAILS.1.FLDVAL"] == "WEALTH"
    # without a mapping (job gone) every field falls back, still closed
    text = "\n".join(v for _, v in mask_vendor_record(_fcubs()))
    assert all(c not in text for c in (MOBILE_12, SHORT_ID, AUM, PHONE_UNMAPPED, "张丽"))


def test_canonical_values_are_masked_by_class_including_parents_and_unknown_paths() -> None:
    assert mask_canonical("contact_points[type=MOBILE].value", MOBILE_12) == "138******789"
    assert MOBILE_12 not in mask_canonical("contact_points[type=MOBILE]", {"type": "MOBILE", "value": MOBILE_12})
    assert "张三丰" not in mask_canonical("name.aliases", ["张三丰"])
    assert "长安街" not in mask_canonical("addresses[type=HOME].adr_lines", ["长安街1号"])
    assert MOBILE_LETTERS not in mask_canonical("extensions.mobile_backup", MOBILE_LETTERS)   # unknown: closed
    assert mask_canonical("segment.code", "WEALTH") == "WEALTH"                              # C1: clear
    # a malformed value keeps fewer characters: at least half of it is hidden
    assert mask_canonical("identifiers[scheme=CN_RIC].value", SHORT_ID) == "1***56"
    assert mask_canonical("contact_points[type=MOBILE].value", MOBILE_LETTERS) == "138******7O"
    assert mask_canonical("contact_points[type=MOBILE].value", "13812345678") == "138****5678"   # as ever


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnvironment]:
    with DemoEnvironment(tmp_path / "demo", customers=4, bad_fraction=0.0, seed=3) as e:
        yield e


@pytest.mark.slow   # a command-line run over a full sync: the slow tier
def test_deadletters_conflicts_and_ledger_show_nothing_in_clear(env: DemoEnvironment) -> None:
    env.core.store.touch(CustomerStore.custno(0), mobile=MOBILE_12)
    env.core.store.touch(CustomerStore.custno(2), id_number=SHORT_ID)
    assert _cli(env, "run", "core_to_zoho").returncode in (1, 3)
    shown = [_cli(env, "deadletters", "show", str(i)) for i in (1, 2)]
    assert all(s.returncode == 0 for s in shown), [s.stderr for s in shown]
    out = "\n".join(s.stdout for s in shown)
    assert "record (masked)" in out and "138******789" in out
    for clear in (MOBILE_12, SHORT_ID):
        assert clear not in out
    assert _cli(env, "deadletters", "list").stdout.count(MOBILE_12) == 0

    # a conflict on a whole contact point and a ledger entry holding a list of aliases (C2 whatever the writer did)
    rt = bootstrap(env.config_path)
    pid = str(uuid.uuid4())
    try:
        with rt.store.transaction() as tx:
            row = {"job": "core_to_zoho", "party_id": pid}
            values = {"contact_points[type=MOBILE]": {"type": "MOBILE", "value": MOBILE_LETTERS},
                      "name.aliases": ["张三丰"]}
            tx.add_conflict("core_to_zoho", pid, list(values), run_id=None, **{
                f"{side}_value": seal(tx.connection, rt.cipher, "conflicts", f"{side}_value", row=row, value=values)
                for side in ("base", "source", "target")})
            # a record refused for C3 keeps its payload (sealed) in its dead letter, as the engine writes it
            letter = {"job": "core_to_zoho", "source_system": "corebank", "source_object": "Customer",
                      "external_id": "000000099"}
            pin_letter = tx.add_dead_letter(
                "core_to_zoho", stage="map_in", reason_code="c3_data", message="record carries C3 data: CARD_PIN",
                source_system="corebank", source_object="Customer", external_id="000000099",
                payload=seal(tx.connection, rt.cipher, "dead_letters", "payload", row=letter, value={
                    **_fcubs(), "CUSTNO": "000000099", "CARD_PIN": PIN,
                    "UDFDETAILS": [{"FLDNAM": "CVV2", "FLDVAL": CVV}]}))
            Ledger(tx.connection, rt.signer, cipher=rt.cipher).append([LedgerEntryIn(
                action=Action.UPDATED, run_id="77", job="core_to_zoho", party_id=pid,
                changed_fields=["name.aliases"], after={"name.aliases": "['张三丰']"})])
    finally:
        rt.close()
    shown = _cli(env, "deadletters", "show", str(pin_letter))
    assert shown.returncode == 0, shown.stderr
    assert PIN not in shown.stdout and CVV not in shown.stdout and shown.stdout.count("[C3 data withheld]") == 2
    conflict = _cli(env, "conflicts", "show", "1")
    assert conflict.returncode == 0, conflict.stderr
    assert MOBILE_LETTERS not in conflict.stdout and "张三丰" not in conflict.stdout
    assert "138" in conflict.stdout     # masked, not dropped
    for args in (("ledger", "show", "77", "--values"), ("ledger", "history", pid, "--values")):
        led = _cli(env, *args)
        assert led.returncode == 0, led.stderr
        assert "张三丰" not in led.stdout and "name.aliases" in led.stdout
