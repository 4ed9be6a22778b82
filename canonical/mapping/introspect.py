"""The canonical model, by introspection: canonical paths checked against the model classes."""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel

from crmbridge.canonical.model import (
    Individual,
    Organisation,
)
from crmbridge.canonical.objects import CANONICAL_OBJECTS
from crmbridge.core.paths import Path, PathKey, PathSelect, plain_value

#: the canonical objects beside the party, by name (crmbridge.canonical.objects.CANONICAL_OBJECTS without Party)
_OTHER_OBJECTS: dict[str, tuple[type[BaseModel], ...]] = {
    k: v for k, v in CANONICAL_OBJECTS.items() if k != "Party"}

#: the model class of each party type
PARTY_CLASS: dict[str, type[BaseModel]] = {"INDIVIDUAL": Individual, "ORGANISATION": Organisation}


def _classes_for(party_type: str | None) -> list[type[BaseModel]]:
    """The model classes a path of a ``party_type`` party is looked up in (both when the type is not known).

    ``party_type`` may also name a canonical object other than the party (``Holding``, ``Interaction``,
    ``CampaignResponse``: what a mapping's ``canonical:`` declares, see :func:`model_key`): its class."""
    if party_type in PARTY_CLASS:
        return [PARTY_CLASS[party_type]]
    if party_type is not None and party_type in _OTHER_OBJECTS:
        return list(_OTHER_OBJECTS[party_type])
    return list(PARTY_CLASS.values())


def model_key(canonical: str, party_type: str | None) -> str | None:
    """What a mapping's paths are checked against: the party type for a Party mapping (``None``: either), else the
    canonical object's name (``Holding``...)."""
    return party_type if canonical == "Party" else canonical


def _unwrap(tp: Any) -> list[Any]:
    """Alternatives of a type with Optional/Annotated removed."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for a in typing.get_args(tp):
            if a is not type(None):
                out.extend(_unwrap(a))
        return out
    return [tp]


def _allowed_values(tp: Any) -> frozenset[str] | None:
    alts = _unwrap(tp)
    vals: set[str] = set()
    for a in alts:
        if typing.get_origin(a) is Literal:
            vals.update(str(plain_value(x)) for x in typing.get_args(a))
        elif isinstance(a, type) and issubclass(a, enum.Enum):
            vals.update(str(m.value) for m in a)
        else:
            return None
    return frozenset(vals) if vals else None


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


@dataclass(frozen=True)
class _Leaf:
    annotation: Any
    allowed: frozenset[str] | None


def resolve_canonical(model_cls: type[BaseModel], path: Path) -> _Leaf:
    """Check ``path`` against a pydantic model class; return the leaf type and its allowed values (enums).

    Raises:
        ValueError: the path does not exist, a selector names an unknown field or an impossible value.
    """
    if (path.ops and isinstance(path.ops[0], PathKey) and path.ops[0].name == "extensions"
            and "extensions" in model_cls.model_fields):
        return _extension_leaf(path)
    current: list[Any] = [model_cls]
    where = model_cls.__name__
    for op in path.ops:
        nxt: list[Any] = []
        if isinstance(op, PathKey):
            names: set[str] = set()
            for tp in current:
                if _is_model(tp):
                    names.update(tp.model_fields)
                    if op.name in tp.model_fields:
                        nxt.extend(_unwrap(tp.model_fields[op.name].annotation))
                elif typing.get_origin(tp) is dict or tp is dict:
                    args = typing.get_args(tp)
                    nxt.extend(_unwrap(args[1]) if len(args) == 2 else [Any])
                elif tp is Any:
                    nxt.append(Any)
            if not nxt:
                hint = f" (fields: {', '.join(sorted(names))})" if names else ""
                raise ValueError(f"{where} has no field {op.name!r}{hint}")
            where = f"{where}.{op.name}"
        else:
            items: list[Any] = []
            for tp in current:
                if typing.get_origin(tp) in (list, tuple, set, frozenset):
                    args = [a for a in typing.get_args(tp) if a is not Ellipsis]
                    items.extend(_unwrap(args[0]) if args else [Any])
                elif tp is Any:
                    items.append(Any)
            if not items:
                raise ValueError(f"{where} is not a list; [{'…'}] selectors apply to lists only")
            if isinstance(op, PathSelect):
                for k, v in op.conds:
                    ok_key = False
                    for it in items:
                        if it is Any:
                            ok_key = True
                        elif _is_model(it) and k in it.model_fields:
                            ok_key = True
                            allowed = _allowed_values(it.model_fields[k].annotation)
                            if allowed is not None and v not in allowed:
                                raise ValueError(f"{where}[{k}={v}]: {v!r} is not a valid {k} "
                                                 f"(valid: {', '.join(sorted(allowed))})")
                    if not ok_key:
                        raise ValueError(f"{where} items have no field {k!r} to select on")
            nxt = items
            where = f"{where}[]"
        current = nxt
    alts = current
    allowed: set[str] | None = set()
    for a in alts:
        av = _allowed_values(a)
        if av is None:
            allowed = None
            break
        assert allowed is not None
        allowed |= av
    if any(_is_model(a) for a in alts):
        raise ValueError(f"{where} is a structure, not a value; map one of its fields")
    return _Leaf(annotation=alts[0] if len(alts) == 1 else alts, allowed=frozenset(allowed) if allowed else None)


_EXTENSION_TYPES: dict[str, Any] = {"string": str, "date": dt.date, "datetime": dt.datetime, "decimal": Decimal,
                                    "integer": int, "boolean": bool, "enum": str}


def _extension_leaf(path: Path) -> _Leaf:
    """``extensions.<name>``: a declared extension field (crmbridge.canonical.extensions)."""
    from crmbridge.canonical.extensions import declared_extensions

    declared = declared_extensions()
    if len(path.ops) != 2 or not isinstance(path.ops[1], PathKey):
        raise ValueError("extensions.<name> names one declared extension field")
    name = path.ops[1].name
    ext = declared.get(name)
    if ext is None and not declared:
        raise ValueError(f"{name!r} is not a declared canonical extension (none are declared: validate with the "
                         "configuration that declares canonical.extensions, crmbridge mapping validate -c CONFIG)")
    if ext is None:
        raise ValueError(f"{name!r} is not a declared canonical extension (declared: "
                         f"{', '.join(sorted(declared)) or 'none'}); declare it under canonical.extensions in the "
                         "configuration, or remove this step")
    return _Leaf(annotation=_EXTENSION_TYPES[ext.type],
                 allowed=frozenset(ext.values) if ext.type == "enum" and ext.values else None)
