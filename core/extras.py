"""What this installation has: crmbridge's own version and the optional extras.

The core install runs the one-machine product (SQLite, scheduler, every adapter, the simulators). Two extras
add what a larger deployment needs (docs/install.md):

- ``postgres``: psycopg 3, for ``state.url: postgresql+psycopg://…`` (SQLAlchemy's ``postgresql+psycopg``
  dialect);
- ``distributed``: Celery, redis and kombu, for ``crmbridge worker``, ``dispatch`` and ``run --distributed``.

Nothing of an extra is imported at module level anywhere in crmbridge: a command that needs one calls
:func:`require_extra` first and gets one clear :class:`MissingExtraError` (exit code 2) naming the extra to
install, not an ``ImportError``.
"""

from __future__ import annotations

import importlib.util
import sys

from crmbridge.core.errors import ConfigurationError

__all__ = ["EXTRAS", "MissingExtraError", "installed_version", "missing_modules", "require_extra",
           "resolve_database_driver"]

#: extra name -> the modules it provides (import names)
EXTRAS: dict[str, tuple[str, ...]] = {
    "postgres": ("psycopg",),
    "distributed": ("celery", "kombu", "redis"),
    "console": ("starlette", "jinja2", "uvicorn", "multipart", "argon2"),
}


class MissingExtraError(ConfigurationError):
    """A command needs an optional part of crmbridge that is not installed; the message names the extra.

    Attributes:
        extra: the extra to install (``pip install 'crmbridge[EXTRA]'``).
        missing: the import names that were not found.
    """

    def __init__(self, message: str, *, extra: str, missing: tuple[str, ...], where: str | None = None) -> None:
        super().__init__(message, where=where)
        self.extra = extra
        self.missing = missing


def installed_version() -> str:
    """crmbridge's version, from the installed distribution's metadata (``unknown`` when run from a source tree
    that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("crmbridge")
    except PackageNotFoundError:
        return "unknown"


def missing_modules(*modules: str) -> tuple[str, ...]:
    """The names among ``modules`` that cannot be imported here (found without importing them)."""
    out = []
    for name in modules:
        if sys.modules.get(name) is not None:   # imported already (kombu replaces itself by a lazy module whose
            continue                            # __spec__ is None: find_spec would raise ValueError)
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:
            found = False
        except ValueError:   # in sys.modules without a spec: it is there
            found = True
        if not found:
            out.append(name)
    return tuple(out)


def require_extra(extra: str, *modules: str, purpose: str | None = None, where: str | None = None) -> None:
    """Fail with :class:`MissingExtraError` unless the modules of ``extra`` (default: all of :data:`EXTRAS`'s
    for it) are installed.

    Args:
        extra: ``postgres``, ``distributed`` or ``console``.
        modules: the import names needed (default: every module of the extra).
        purpose: what needs them, for the message (e.g. ``"crmbridge worker"``).
        where: the configuration key concerned, if any.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}")
    missing = missing_modules(*(modules or EXTRAS[extra]))
    if missing:
        raise MissingExtraError(
            f"{purpose or 'this'} needs crmbridge's {extra!r} extra, which is not installed "
            f"({', '.join(missing)} not found): pip install 'crmbridge[{extra}]' (docs/install.md)",
            extra=extra, missing=missing, where=where)


def resolve_database_driver(url: str) -> str:
    """``url`` with the PostgreSQL driver this installation has, or :class:`MissingExtraError`.

    - ``postgresql+psycopg://`` needs psycopg 3 (the ``postgres`` extra);
    - ``postgresql+psycopg2://`` (older configurations) keeps working where psycopg2 is installed; crmbridge no
      longer installs it, so without it the message says to use ``postgresql+psycopg://`` and the extra;
    - a bare ``postgresql://`` (SQLAlchemy's default driver is psycopg2) gets psycopg 3 when it is installed,
      else psycopg2 when that is.

    Any other URL (SQLite, …) comes back unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    backend, _, driver = scheme.partition("+")
    if backend != "postgresql":
        return url
    if driver == "psycopg2":
        if missing_modules("psycopg2"):
            raise MissingExtraError(
                "postgresql+psycopg2:// needs the psycopg2 driver, which is not installed and which "
                "crmbridge no longer installs: write postgresql+psycopg://… and pip install 'crmbridge[postgres]' "
                "(or install psycopg2 yourself) (docs/install.md)",
                extra="postgres", missing=("psycopg2",), where="state.url")
        return url
    if driver == "":
        if not missing_modules("psycopg"):
            return f"postgresql+psycopg://{rest}"
        if not missing_modules("psycopg2"):
            return url
        require_extra("postgres", purpose="a PostgreSQL state database", where="state.url")
    if driver == "psycopg":
        require_extra("postgres", purpose="a PostgreSQL state database (postgresql+psycopg)", where="state.url")
    return url
