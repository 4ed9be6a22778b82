"""Erasure (crypto-shredding + row deletion) and the consent gate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from crmbridge.sync.security.crypto import FieldCipher, KeyDestroyedError
from crmbridge.sync.security.privacy import consent_gate, erase_party, ledger_changes
from crmbridge.sync.security.protect import unseal
from crmbridge.sync.state.db import import_models
from crmbridge.sync.state.ledger import Action, Ledger, LedgerEntryIn, LedgerSigner


def _count(engine: Engine, table: str, party_id: str) -> int:
    t = import_models().tables[table]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t).where(t.c.party_id == party_id)).scalar_one())


def test_erasure_shreds_deletes_records_and_keeps_the_ledger_verifiable(  # type: ignore[no-untyped-def]
        engine: Engine, cipher: FieldCipher, signer: LedgerSigner, seed_party, make_party) -> None:
    gone, kept = str(uuid.uuid4()), str(uuid.uuid4())
    seed_party(make_party(gone), n=2)
    seed_party(make_party(kept, ric="360426199101010071", mobile="13900001111", email="li@example.com"))
    with engine.connect() as conn:
        gone_entries = list(Ledger(conn).iter_entries(party_ids=[gone]))
        snap = dict(conn.execute(select(import_models().tables["snapshots"]).where(
            import_models().tables["snapshots"].c.party_id == gone)).mappings().one())
    assert len(gone_entries) == 2

    with engine.begin() as conn:
        ledger = Ledger(conn, signer, cipher=cipher)
        report = erase_party(conn, cipher, gone, ledger=ledger, reason="withdrawn consent", actor="user")
        ledger.checkpoint()
    assert report.keys_destroyed == 1
    assert report.rows_deleted == {"conflicts": 1, "dead_letters": 1, "identity_index": 4, "snapshots": 1}
    for table in ("snapshots", "conflicts", "identity_index"):
        assert _count(engine, table, gone) == 0
        assert _count(engine, table, kept) >= 1
    assert _count(engine, "xref", gone) == 2  # kept (C1) so the deletion can reach the CRMs

    fresh = FieldCipher(cipher.provider)  # another process: nothing cached
    with engine.connect() as conn:
        ledger = Ledger(conn, cipher=fresh)
        # every ciphertext of the party is unreadable, including the ledger diffs that cannot be deleted
        for entry in gone_entries:
            with pytest.raises(KeyDestroyedError):
                ledger.decrypt_diff(entry)
        with pytest.raises(KeyDestroyedError):
            unseal(conn, fresh, "snapshots", "blob", row=snap, token=snap["blob"])
        kept_entry = next(iter(ledger.iter_entries(party_ids=[kept])))
        assert ledger.decrypt_diff(kept_entry)["identifiers[0].value"] == [None, "360426199101010071"]
        result = ledger.verify(signer.public_key, require_signed=True)
        erased = [e for e in ledger.iter_entries(party_ids=[gone]) if e["action"] == "erased"]
    assert result.ok, result.problems
    assert len(erased) == 1 and erased[0]["reason"] == "withdrawn consent" and erased[0]["seq"] == report.ledger_seq
    assert erased[0]["changed_fields"] == ["conflicts", "dead_letters", "identity_index", "snapshots"]
    with engine.connect() as conn:
        assert fresh.status(conn).destroyed_party_keys == 1


def test_erasure_drop_xref_and_idempotence(engine: Engine, cipher: FieldCipher, seed_party, make_party) -> None:  # type: ignore[no-untyped-def]
    pid = str(uuid.uuid4())
    seed_party(make_party(pid))
    with engine.begin() as conn:
        erase_party(conn, cipher, pid, drop_xref=True)
    assert _count(engine, "xref", pid) == 0
    with engine.begin() as conn:
        again = erase_party(conn, cipher, pid)
    assert again.keys_destroyed == 0 and again.rows_deleted == {}


# ------------------------------------------------------------------------------------------------ consent

AT = datetime(2025, 6, 1, tzinfo=UTC)


def test_consent_gate(make_party) -> None:  # type: ignore[no-untyped-def]
    granted = make_party(str(uuid.uuid4()))
    assert consent_gate(granted, "SHARE_WITH_CRM_VENDOR", at=AT) == (True, "consent in force for SHARE_WITH_CRM_VENDOR")
    assert consent_gate(granted, None, at=AT)[0] is True
    allowed, reason = consent_gate(granted, ["SHARE_WITH_CRM_VENDOR", "MARKETING_SMS"], at=AT)
    assert not allowed and reason == "no consent in force for MARKETING_SMS"
    withdrawn = make_party(str(uuid.uuid4()), consents=[
        {"purpose": "SHARE_WITH_CRM_VENDOR", "status": "WITHDRAWN", "captured_at": "2024-01-01T00:00:00Z",
         "withdrawn_at": "2025-01-01T00:00:00Z"}])
    assert consent_gate(withdrawn, "SHARE_WITH_CRM_VENDOR", at=AT)[0] is False
    # before the withdrawal it was in force
    assert consent_gate(withdrawn, "SHARE_WITH_CRM_VENDOR", at=datetime(2024, 6, 1, tzinfo=UTC))[0] is True
    denied = make_party(str(uuid.uuid4()), consents=[
        {"purpose": "SHARE_WITH_CRM_VENDOR", "status": "DENIED", "captured_at": "2024-01-01T00:00:00Z"}])
    assert consent_gate(denied, "SHARE_WITH_CRM_VENDOR", at=AT)[0] is False
    # plain mappings work too (a party not yet validated into the model)
    assert consent_gate({"consents": [{"purpose": "PROFILING", "status": "GRANTED",
                                       "captured_at": "2024-01-01T00:00:00Z"}]}, "PROFILING", at=AT)[0] is True
    assert consent_gate({"consents": []}, "PROFILING", at=AT)[0] is False
    withdrawn_map = {"purpose": "PROFILING", "status": "WITHDRAWN", "captured_at": "2024-01-01T00:00:00Z",
                     "withdrawn_at": "2025-01-01T00:00:00Z"}
    assert consent_gate({"consents": [withdrawn_map]}, "PROFILING", at=AT)[0] is False


def test_no_consent_is_recorded_in_the_ledger(engine: Engine, cipher: FieldCipher, make_party) -> None:  # type: ignore[no-untyped-def]
    party = make_party(str(uuid.uuid4()), consents=[])
    allowed, reason = consent_gate(party, "SHARE_WITH_CRM_VENDOR")
    assert not allowed
    with engine.begin() as conn:
        Ledger(conn, cipher=cipher).append([LedgerEntryIn(
            action=Action.SKIPPED_NO_CONSENT, party_id=str(party.party_id), job="core_to_zoho", reason=reason)])
    with engine.connect() as conn:
        (e,) = list(Ledger(conn).iter_entries())
    assert e["action"] == "skipped-no-consent" and e["reason"] == "no consent in force for SHARE_WITH_CRM_VENDOR"


def test_ledger_changes_are_masked_by_classification(make_party) -> None:  # type: ignore[no-untyped-def]
    pid = str(uuid.uuid4())
    before = make_party(pid)
    after = make_party(pid, mobile="13900001111")
    ch = ledger_changes(before, after)
    assert ch.changed_fields == ["contact_points[0].value"]
    assert ch.before == {"contact_points[0].value": "+86138****5678"}
    assert ch.after == {"contact_points[0].value": "+86139****1111"}
    assert ch.diff == {"contact_points[0].value": ["+8613812345678", "+8613900001111"]}
    created = ledger_changes(None, before)
    assert created.after["identifiers[0].value"] == "1*************002X"
    assert created.after["name.legal_zh"] == "张**"
    assert created.after["lifecycle_stage"] == "ACTIVE"  # C1 shown as is
