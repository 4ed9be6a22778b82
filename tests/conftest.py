"""Shared fixtures: state databases on SQLite and on the machine's PostgreSQL, fast retry policies."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmbridge.testing import memory

#: the contract suite's assert rewriting and fixtures (the same plugin the pytest11 entry point loads)
pytest_plugins = ["crmbridge.testing.plugin"]

# the in-repo test adapter is known as "memory" in this test session only (it is no production entry point)
memory.register()

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("CRMBRIDGE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _pg_engine(url: str):  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    return create_engine(url, isolation_level="AUTOCOMMIT")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    from sqlalchemy import text

    name = f"crmbridge_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_engine(PG_ADMIN_URL)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """The state database URL, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def fast_retry():  # type: ignore[no-untyped-def]
    from crmbridge.core.retry import RetryPolicy

    return RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.05, jitter=0.0)
