"""PostgreSQL roles for crmbridge: an owner that migrates, a service role that cannot rewrite the ledger.

``crmbridge db grant --owner OWNER --service SERVICE [--apply]`` prints (or applies) :func:`grant_sql`:

* every crmbridge table (and its sequences, and the ledger's trigger function) is owned by OWNER; migrations and
  ``crmbridge ledger archive`` run as OWNER;
* SERVICE (what ``crmbridge run``, the scheduler and the workers connect as) may only SELECT and INSERT the
  append-only ledger tables (``ledger_entries``, ``ledger_checkpoints``), SELECT the archive anchor, read and
  move the chain head and the publishing progress, and read/write every other table;
* SERVICE owns nothing and cannot create in the schema: it cannot disable the append-only triggers (that needs
  ownership), nor UPDATE, DELETE or TRUNCATE a ledger row (no such privilege, and the triggers refuse it anyway).

Run it again after each ``crmbridge db upgrade`` (new tables get their grants then).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["APPEND_ONLY", "apply_grants", "existing_tables", "grant_sql"]

#: tables the service role may only append to and read (the mapping archive too: versions are never rewritten, nor
#: the sets of them ledger entries and snapshots name by key)
APPEND_ONLY = ("ledger_entries", "ledger_checkpoints", "mapping_versions", "mapping_version_sets")
#: tables the service role may only read
READ_ONLY = ("ledger_anchor", "alembic_version")
#: tables the service role reads and updates but never deletes from
NO_DELETE = ("ledger_head", "ledger_published")

_ROLE = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")


def _ident(name: str, what: str) -> str:
    if not _ROLE.match(name):
        raise ValueError(f"{what} {name!r} is not a plain PostgreSQL role name (lower case, digits, _)")
    return name


def grant_sql(owner: str, service: str, tables: Iterable[str], *, schema: str = "public") -> list[str]:
    """The statements that give ``tables`` to ``owner`` and ``service`` only what it needs."""
    owner, service, schema = _ident(owner, "owner"), _ident(service, "service"), _ident(schema, "schema")
    if owner == service:
        raise ValueError("the owner and the service role must differ: an owner can disable the ledger's triggers")
    out = [
        f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC",
        f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {owner}",
        f"GRANT USAGE ON SCHEMA {schema} TO {service}",
        f"REVOKE CREATE ON SCHEMA {schema} FROM {service}",
    ]
    for t in sorted(set(tables)):
        t = _ident(t, "table")
        out.append(f"ALTER TABLE {schema}.{t} OWNER TO {owner}")
        out.append(f"REVOKE ALL ON {schema}.{t} FROM PUBLIC, {service}")
        if t in APPEND_ONLY:
            privs = "SELECT, INSERT"
        elif t in READ_ONLY:
            privs = "SELECT"
        elif t in NO_DELETE:
            privs = "SELECT, INSERT, UPDATE"
        else:
            privs = "SELECT, INSERT, UPDATE, DELETE"
        out.append(f"GRANT {privs} ON {schema}.{t} TO {service}")
    out += [
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {service}",
        f"ALTER FUNCTION {schema}.crmbridge_ledger_immutable() OWNER TO {owner}",
        f"REVOKE ALL ON FUNCTION {schema}.crmbridge_ledger_immutable() FROM PUBLIC",
    ]
    return out


def existing_tables(engine: Any) -> set[str]:
    """The tables the database holds now (the grants name only those)."""
    from sqlalchemy import inspect

    return set(inspect(engine).get_table_names())


def apply_grants(engine: Any, statements: Iterable[str]) -> int:
    """Run the statements of :func:`grant_sql` in one transaction (as the owner); the number run."""
    from sqlalchemy import text

    n = 0
    with engine.begin() as conn:
        for s in statements:
            conn.execute(text(s))
            n += 1
    return n
