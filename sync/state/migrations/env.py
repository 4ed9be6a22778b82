"""Alembic environment for the state store, run programmatically by :mod:`crmbridge.sync.state.migrate`.

``target_metadata`` is every table module's metadata (:func:`crmbridge.sync.state.db.import_models`). The
connection comes from ``config.attributes["connection"]`` when the caller passes one, else an engine is
made from ``sqlalchemy.url``. SQLite migrations render as batch operations (ALTER TABLE is limited there).
"""

from __future__ import annotations

from alembic import context

from crmbridge.sync.state.db import import_models, make_engine

config = context.config
target_metadata = import_models()


def _render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    """Autogenerate renders crmbridge's UTCDateTime as the plain type it is in the database."""
    if type_ == "type" and type(obj).__name__ == "UTCDateTime":
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )


def run_migrations_offline() -> None:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=bool(url and url.startswith("sqlite")),
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
