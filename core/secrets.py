"""Secret references: ``env:NAME`` or ``file:PATH``, never literals.

Configuration holds references; :func:`resolve_secret` turns one into a :class:`pydantic.SecretStr`
at the moment it is needed, so a secret's value never lands in ``repr``, logs or error text.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, SecretStr

from crmbridge.core.errors import SecretError

__all__ = ["SecretRef", "is_secret_reference", "resolve_secret"]

_PREFIXES = ("env:", "file:")


def is_secret_reference(value: str) -> bool:
    """True if ``value`` is an ``env:NAME`` or ``file:PATH`` reference."""
    return isinstance(value, str) and value.startswith(_PREFIXES) and len(value.split(":", 1)[1]) > 0


def resolve_secret(reference: str, *, where: str | None = None, base_dir: Path | None = None) -> SecretStr:
    """Resolve a secret reference.

    Args:
        reference: ``env:NAME`` or ``file:PATH`` (a relative path is taken from ``base_dir``).
        where: the key path, for error messages.
        base_dir: folder relative file references start from (the config file's folder).

    Raises:
        SecretError: the reference is a literal, the variable is unset, or the file is unreadable.
    """
    if not is_secret_reference(reference):
        raise SecretError("secrets must be references such as 'env:NAME' or 'file:PATH', not literal values",
                          where=where)
    kind, name = reference.split(":", 1)
    if kind == "env":
        value = os.environ.get(name)
        if value is None:
            raise SecretError(f"environment variable {name} is not set", where=where)
        return SecretStr(value)
    path = Path(name)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise SecretError(f"cannot read secret file {path}: {exc.strerror}", where=where) from exc


def _check_reference(value: str) -> str:
    if not is_secret_reference(value):
        raise ValueError("must be a secret reference such as 'env:NAME' or 'file:PATH'; literal secrets are refused")
    return value


#: a configuration field holding a secret reference (``env:NAME`` / ``file:PATH``), never the secret itself
SecretRef = Annotated[str, AfterValidator(_check_reference)]
