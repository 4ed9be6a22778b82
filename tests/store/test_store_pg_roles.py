"""PostgreSQL roles (``crmbridge db grant``): migrations and archive run as the owner; the service role appends to
the ledger but cannot disable its triggers, delete, update or truncate an entry."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from crmbridge.sync.state.db import make_engine
from crmbridge.sync.state.ledger import Action, Ledger, LedgerEntryIn, generate_signing_key
from crmbridge.sync.state.ledger_archive import archive
from crmbridge.sync.state.ledger_trust import verify_database
from crmbridge.sync.state.migrate import upgrade

pytestmark = pytest.mark.postgres
CRMBRIDGE = Path(sys.executable).with_name("crmbridge")
ADMIN = os.environ.get("CRMBRIDGE_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def roles() -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:10]
    db, owner, service = f"crmbridge_roles_{tag}", f"cb_owner_{tag}", f"cb_service_{tag}"
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {owner} LOGIN"))
        conn.execute(text(f"CREATE ROLE {service} LOGIN"))
        conn.execute(text(f'CREATE DATABASE "{db}" OWNER {owner}'))
    base = ADMIN.rsplit("/", 1)[0].split("://", 1)
    host = base[1].split("@", 1)[1]
    try:
        yield {"owner": owner, "service": service, "owner_url": f"{base[0]}://{owner}@{host}/{db}",
               "service_url": f"{base[0]}://{service}@{host}/{db}"}
    finally:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": db})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}"'))
            conn.execute(text(f"DROP ROLE IF EXISTS {service}"))
            conn.execute(text(f"DROP ROLE IF EXISTS {owner}"))
        admin.dispose()


def _entry(i: int) -> LedgerEntryIn:
    return LedgerEntryIn(action=Action.UPDATED, run_id=None, job="core_to_zoho", source_system="corebank",
                         source_object="Customer", source_id=f"CIF{i:06d}", changed_fields=["kyc.risk_rating"],
                         before={"kyc.risk_rating": "low"}, after={"kyc.risk_rating": "high"})


def test_service_role_appends_but_cannot_rewrite_the_ledger(roles: dict[str, str], tmp_path: Path) -> None:
    assert upgrade(roles["owner_url"])   # migrations as the owner
    printed = subprocess.run([str(CRMBRIDGE), "db", "grant", "--owner", roles["owner"], "--service",
                              roles["service"], "--url", roles["owner_url"]], capture_output=True, text=True,
                             timeout=60)
    assert printed.returncode == 0, printed.stderr
    assert f"GRANT SELECT, INSERT ON public.ledger_entries TO {roles['service']};" in printed.stdout
    applied = subprocess.run([*printed.args, "--apply"], capture_output=True, text=True, timeout=60)
    assert applied.returncode == 0, applied.stdout + applied.stderr

    signer = generate_signing_key(tmp_path / "ledger.pem")
    service = make_engine(roles["service_url"])
    try:
        with service.begin() as conn:   # the service appends and signs
            ledger = Ledger(conn, signer)
            ledger.append([_entry(i) for i in range(3)])
            ledger.checkpoint()
        refused = [
            "ALTER TABLE ledger_entries DISABLE TRIGGER USER",
            "ALTER TABLE ledger_checkpoints DISABLE TRIGGER ALL",
            "DROP TRIGGER ledger_entries_no_update_delete ON ledger_entries",
            "CREATE OR REPLACE FUNCTION crmbridge_ledger_immutable() RETURNS trigger AS $$ BEGIN RETURN OLD; END; "
            "$$ LANGUAGE plpgsql",
            "DELETE FROM ledger_entries WHERE seq = 3",
            "UPDATE ledger_entries SET actor = 'someone else' WHERE seq = 1",
            "TRUNCATE ledger_entries",
            "DELETE FROM ledger_checkpoints",
            "UPDATE ledger_anchor SET seq = 3",
            "INSERT INTO ledger_anchor (id, seq, entry_hash, hash_alg, frontier, segment, archived_at) "
            "VALUES (1, 3, 'x', 'sha256', '[]', 's', 'now')",
            "CREATE TABLE ledger_shadow (seq int)",
        ]
        for sql in refused:
            with pytest.raises(DBAPIError) as exc, service.begin() as conn:
                conn.execute(text("SET LOCAL crmbridge.ledger_archive = 'on'"))   # the archive marker is no key
                conn.execute(text(sql))
            assert "permission denied" in str(exc.value.orig) or "must be owner" in str(exc.value.orig), sql
        # archive is the owner's: as the service it is refused, as the owner it works
        with pytest.raises(DBAPIError), service.begin() as conn:
            archive(conn, signer, before=datetime.now(UTC) + timedelta(days=1), to=tmp_path / "refused")
        owner = make_engine(roles["owner_url"])
        try:
            with owner.begin() as conn:
                res = archive(conn, signer, before=datetime.now(UTC) + timedelta(days=1), to=tmp_path / "archive")
            assert res is not None and res.last_seq == 3
            with owner.begin() as conn:   # even the owner deletes nothing beyond the anchor
                Ledger(conn, signer).append([_entry(9)])
            with pytest.raises(DBAPIError, match="append-only"), owner.begin() as conn:
                conn.execute(text("SET LOCAL crmbridge.ledger_archive = 'on'"))
                conn.execute(text("DELETE FROM ledger_entries WHERE seq = 4"))
        finally:
            owner.dispose()
        with service.begin() as conn:
            Ledger(conn, signer).checkpoint()
        with service.connect() as conn:
            rep = verify_database(conn, public_keys=[signer.public_key], require_signed=True,
                                  archive=tmp_path / "archive")
        assert rep.ok and rep.entries == 4, rep.problems
    finally:
        service.dispose()
