"""Fixtures of the privacy / crypto / ledger tests: a schema on SQLite and PostgreSQL, a cipher, a signer."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine

from crmbridge.sync.security.crypto import FieldCipher, LocalKeyProvider
from crmbridge.sync.state.db import Base, import_models, make_engine
from crmbridge.sync.state.ledger import LedgerSigner, generate_signing_key


@pytest.fixture(scope="session")
def privacy_pg_url() -> Iterator[str]:
    """One PostgreSQL database for this folder (creating one per test costs seconds); each test gets a fresh
    schema in it (see :func:`engine`)."""
    admin_url = os.environ.get("CRMBRIDGE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    name = f"crmbridge_privacy_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                         {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state database URL, once on SQLite and once on PostgreSQL (a fresh, empty schema each time)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url = request.getfixturevalue("privacy_pg_url")
    eng = create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    eng.dispose()
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """The full schema (every table module) on SQLite and on PostgreSQL."""
    eng = make_engine(db_url)
    import_models()
    Base.metadata.create_all(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def master_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def cipher(engine: Engine, master_key: bytes) -> FieldCipher:
    c = FieldCipher(LocalKeyProvider(master_key))
    with engine.begin() as conn:
        c.init(conn)
    return c


@pytest.fixture
def signer(tmp_path: Path) -> LedgerSigner:
    return generate_signing_key(tmp_path / "ledger.pem")


def raw_sql(conn: Connection, sql: str, **params: object) -> None:
    """Tamper like a DBA would: on PostgreSQL the append-only triggers are switched off around the statement."""
    pg = conn.dialect.name == "postgresql"
    if pg:
        conn.execute(text("ALTER TABLE ledger_entries DISABLE TRIGGER USER"))
        conn.execute(text("ALTER TABLE ledger_checkpoints DISABLE TRIGGER USER"))
    conn.execute(text(sql), params)
    if pg:
        conn.execute(text("ALTER TABLE ledger_entries ENABLE TRIGGER USER"))
        conn.execute(text("ALTER TABLE ledger_checkpoints ENABLE TRIGGER USER"))


@pytest.fixture
def tamper():  # type: ignore[no-untyped-def]
    """``tamper(conn, sql, **params)``: run SQL against the ledger tables past PostgreSQL's triggers."""
    return raw_sql


# ---------------------------------------------------------------------------------------------- seeding
RIC = "11010519491231002X"
MOBILE = "13812345678"
EMAIL = "zhang.san@example.com"
NAME = "张三丰"
STREET = "建国门外大街1号"


def make_party(party_id: str, *, ric: str = RIC, mobile: str = MOBILE, email: str = EMAIL, name: str = NAME,
               consents: list[dict[str, object]] | None = None):  # type: ignore[no-untyped-def]
    from crmbridge.canonical.model import Individual

    return Individual.model_validate({
        "party_id": party_id, "name": {"legal_zh": name},
        "identifiers": [{"scheme": "CN_RIC", "value": ric, "is_primary": True}],
        "contact_points": [{"type": "MOBILE", "value": mobile}, {"type": "EMAIL", "value": email}],
        "addresses": [{"type": "RESIDENTIAL", "province": "北京市", "city": "北京市", "district": "朝阳区",
                       "street": STREET, "adcode": "110105"}],
        "consents": consents if consents is not None else [
            {"purpose": "SHARE_WITH_CRM_VENDOR", "status": "GRANTED", "captured_at": "2024-01-01T00:00:00Z"}],
    })


@pytest.fixture
def seed_party(engine: Engine, cipher: FieldCipher, signer: LedgerSigner):  # type: ignore[no-untyped-def]
    """``seed_party(party, n=1)``: what the engine does for one synced record, through the public APIs and the
    state store: xref, identity index (blind indexes), encrypted snapshot, dead letter and conflict, ledger
    entry with masked values and encrypted diff, signed checkpoint, and a log line. Returns the run id."""
    import logging

    from crmbridge.core.logsafe import mask_text
    from crmbridge.sync.security.blindindex import BlindIndexer
    from crmbridge.sync.security.privacy import identity_keys, ledger_changes
    from crmbridge.sync.security.protect import seal
    from crmbridge.sync.state.ledger import Action, Ledger, LedgerEntryIn
    from crmbridge.sync.state.store import StateStore

    store = StateStore(engine)
    log = logging.getLogger("crmbridge.sync.engine")

    def seed(party, n: int = 1, job: str = "core_to_zoho") -> int:  # type: ignore[no-untyped-def]
        pid = str(party.party_id)
        with store.transaction() as tx:
            conn = tx.connection
            indexer = BlindIndexer.from_cipher(conn, cipher)
            run = tx.start_run(job, actor="scheduler")
            cif, crm_id = f"CIF-{pid[:8]}", f"4876876-{pid[:8]}"
            tx.put_xref("corebank", "Customer", cif, pid)
            tx.put_xref("zoho_cn", "Contacts", crm_id, pid)
            for scheme, bidx in identity_keys(indexer, party):
                tx.add_identity(scheme, bidx, pid)
            snap_row = {"party_id": pid, "system": "zoho_cn", "object": "Contacts"}
            tx.put_snapshot(pid, "zoho_cn", "Contacts",
                            content_hash=party.content_hash(indexer.field_key("content_hash")),
                            blob=seal(conn, cipher, "snapshots", "blob", row=snap_row, value=party.canonical_dict()))
            raw = {"CUSTNO": cif, "UNIQUE_ID_VALUE": party.identifiers[0].value,
                   "MOBILE": party.contact_points[0].value, "NAME": party.name.legal_zh}
            dl = {"source_system": "corebank", "source_object": "Customer", "external_id": cif}
            tx.add_dead_letter(job, stage="map_out", reason_code="unparsable_phone", run_id=run,
                               message=mask_text(f"mobile {raw['MOBILE']} of {raw['UNIQUE_ID_VALUE']} refused"),
                               payload=seal(conn, cipher, "dead_letters", "payload", row={"job": job, **dl}, value=raw),
                               **dl)
            crow = {"job": job, "party_id": pid}
            values = {"base_value": raw["MOBILE"], "source_value": raw["MOBILE"], "target_value": "+8613900000000"}
            tx.add_conflict(job, pid, ["contact_points[0].value"], run_id=run, **{
                col: seal(conn, cipher, "conflicts", col, row=crow, value=v) for col, v in values.items()})
            changes = ledger_changes(None, party)
            ledger = Ledger(conn, signer, cipher=cipher)
            ledger.append([LedgerEntryIn(
                action=Action.CREATED, run_id=run, job=job, source_system="corebank", source_object="Customer",
                source_id=cif, target_system="zoho_cn", target_object="Contacts", target_id=crm_id, party_id=pid,
                changed_fields=changes.changed_fields, before=changes.before, after=changes.after, diff=changes.diff,
                mapping_version="zoho.contacts@1") for _ in range(n)])
            ledger.checkpoint(run_id=run)
            tx.finish_run(run, "succeeded", counts={"created": n})
            log.warning("created party %s from %s (mobile %s, %s)", pid, raw["UNIQUE_ID_VALUE"], raw["MOBILE"],
                        party.contact_points[1].value)
        return run

    return seed


@pytest.fixture(name="make_party")
def _make_party_fixture():  # type: ignore[no-untyped-def]
    """``make_party(party_id, **values)``: a valid canonical Individual with known C2 values."""
    return make_party
