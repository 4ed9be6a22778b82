"""Data classification of canonical fields (JR/T 0171-2020) and how each is protected (docs/canonical.md §3, §8).

Every leaf field of the canonical model declares, next to its type, its class and treatments with
:func:`classified`::

    legal_zh: str | None = classified(None, cls="C2", treat="EBM", mask="name", crm="masked")

The declaration lands in the field's ``json_schema_extra["pii"]`` (so the published JSON Schema shows it too). Code
that protects data reads it, never a hand-written field list:

- :func:`field_policies` maps every leaf of a model class, by dotted canonical path with ``[]`` for list items
  (``identifiers[].value``, ``name.legal_zh``, ``aum.amount``), to a :class:`FieldPolicy`;
- :func:`policy_for` finds the policy of one path (indices such as ``[0]`` allowed);
- :func:`iter_classified_values` walks a party instance and yields ``(path, value, policy)`` for every value present,
  with the policy *resolved* for that value (an identifier's mask kind follows its scheme, a contact point's its type):
  the crypto layer encrypts and blind-indexes from it;
- :func:`masked_dump` gives a JSON-able copy of a party with every C2 value masked, for logs, ledger diffs and
  dead letters.

Treatments (docs/canonical.md §3): ``E`` encrypt at rest, ``B`` blind index (equality lookup), ``M`` keep a masked
copy for display, ``P`` plain. C3 data is never carried (see :mod:`crmbridge.canonical.c3`), so it has no class here.

A parent field may declare a policy too; it then applies to every leaf below it (used where a shared sub-model, such
as :class:`~crmbridge.canonical.model.Money`, is less sensitive in one place than another). A leaf with no policy
is *unclassified*: :func:`unclassified_fields` lists them and a test keeps the list empty, so no field can be added
to the model silently.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any

from pydantic import BaseModel, Field
from pydantic_core import PydanticUndefined

from crmbridge.core.masking import mask

__all__ = [
    "DataClass",
    "FieldPolicy",
    "Projection",
    "Treatment",
    "classified",
    "field_policies",
    "iter_classified_values",
    "masked_dump",
    "policy_for",
    "template_path",
    "unclassified_fields",
]


class DataClass(StrEnum):
    """JR/T 0171-2020 class. C3 (authentication data) is refused at ingestion and never modelled."""

    C1 = "C1"
    C2 = "C2"


class Treatment(StrEnum):
    """How a value is kept at rest."""

    ENCRYPT = "E"
    BLIND_INDEX = "B"
    MASK = "M"
    PLAIN = "P"


class Projection(StrEnum):
    """What the default CRM projection does with the field (docs/canonical.md §3, last column)."""

    PUSH = "push"          # pushed as is
    MASKED = "masked"      # pushed masked (full only when a documented purpose / consent allows it)
    DERIVED = "derived"    # not pushed itself; a derived value is (aum.amount -> aum.band)
    NEVER = "never"        # never leaves crmbridge towards a CRM
    INTERNAL = "internal"  # crmbridge bookkeeping


@dataclass(frozen=True, slots=True)
class FieldPolicy:
    """Classification and treatment of one canonical field.

    Attributes:
        path: canonical dotted path, ``[]`` for list items (``identifiers[].value``).
        data_class: C1 or C2.
        treatments: subset of E, B, M, P (P alone for plain fields).
        mask_kind: a :data:`crmbridge.canonical.masking.MASK_KINDS` key used to display the value (every C2 field
            has one); ``None`` when the kind depends on a sibling field (see ``mask_by``) and is not resolved yet.
        mask_by: name of the sibling field whose value selects the mask kind (``scheme`` for identifiers, ``type``
            for contact points).
        index_by: name of the sibling field prefixed to the value in the blind index (``scheme|value``).
        crm: the default CRM projection of the field.
    """

    path: str
    data_class: DataClass
    treatments: frozenset[Treatment]
    mask_kind: str | None = None
    mask_by: str | None = None
    index_by: str | None = None
    crm: Projection = Projection.PUSH

    @property
    def encrypt(self) -> bool:
        return Treatment.ENCRYPT in self.treatments

    @property
    def blind_index(self) -> bool:
        return Treatment.BLIND_INDEX in self.treatments

    @property
    def keep_masked(self) -> bool:
        return Treatment.MASK in self.treatments

    @property
    def plain(self) -> bool:
        return not (self.encrypt or self.blind_index)

    @property
    def is_personal(self) -> bool:
        return self.data_class is DataClass.C2

    def resolve(self, sibling: Any) -> FieldPolicy:
        """This policy with ``mask_kind`` chosen from the sibling value named by ``mask_by``."""
        if self.mask_by is None:
            return self
        kind = _mask_by_tables()[self.mask_by].get(str(getattr(sibling, "value", sibling)), "generic")
        return dataclasses.replace(self, mask_kind=kind)

    def mask(self, value: Any) -> str:
        """Display form of ``value`` (C1 values are shown as they are)."""
        if value is None:
            return ""
        if self.data_class is DataClass.C1 and Treatment.MASK not in self.treatments:
            return str(value)
        return mask(self.mask_kind or "generic", value)


@cache
def _mask_by_tables() -> dict[str, dict[str, str]]:
    """Sibling value -> mask kind, for ``mask_by="scheme"`` (identifiers) and ``mask_by="type"`` (contact points)."""
    from crmbridge.canonical.identifiers import SCHEME_MASK_KIND

    return {
        "scheme": {k.value: v for k, v in SCHEME_MASK_KIND.items()},
        "type": {"MOBILE": "mobile", "LANDLINE": "landline", "EMAIL": "email", "WECHAT_OPENID": "generic"},
    }


_TREATMENTS = {t.value: t for t in Treatment}


def classified(default: Any = PydanticUndefined, *, cls: str, treat: str = "P", mask: str | None = None,
               mask_by: str | None = None, index_by: str | None = None, crm: str = "push", **field_kw: Any) -> Any:
    """A pydantic ``Field`` carrying a classification (read back by :func:`field_policies`).

    Args:
        default: the field default (omit for a required field).
        cls: ``"C1"`` or ``"C2"``.
        treat: letters among ``E``, ``B``, ``M``, ``P`` (``"EBM"``, ``"E"``, ``"P"``).
        mask: display mask kind (required for C2 unless ``mask_by`` is given).
        mask_by: sibling field selecting the mask kind per value.
        index_by: sibling field prefixed to the value in its blind index.
        crm: default CRM projection (:class:`Projection` value).
        **field_kw: passed to ``pydantic.Field`` (``default_factory``, ``pattern``, ``description``...).
    """
    DataClass(cls)
    Projection(crm)
    letters = set(treat)
    if not letters or not letters <= set(_TREATMENTS) or ("P" in letters and len(letters) > 1):
        raise ValueError(f"treatment {treat!r}: use letters E, B, M, or P alone")
    if cls == "C2" and mask is None and mask_by is None:
        raise ValueError("a C2 field needs a display mask kind (mask=...) or mask_by=...")
    pii = {"class": cls, "treat": "".join(sorted(letters)), "crm": crm}
    if mask is not None:
        pii["mask"] = mask
    if mask_by is not None:
        pii["mask_by"] = mask_by
    if index_by is not None:
        pii["index_by"] = index_by
    extra = dict(field_kw.pop("json_schema_extra", None) or {})
    extra["pii"] = pii
    return Field(default, json_schema_extra=extra, **field_kw)


def _policy(path: str, meta: Mapping[str, str]) -> FieldPolicy:
    return FieldPolicy(
        path=path,
        data_class=DataClass(meta["class"]),
        treatments=frozenset(_TREATMENTS[c] for c in meta["treat"]),
        mask_kind=meta.get("mask"),
        mask_by=meta.get("mask_by"),
        index_by=meta.get("index_by"),
        crm=Projection(meta.get("crm", "push")),
    )


def _meta(finfo: Any) -> Mapping[str, str] | None:
    extra = finfo.json_schema_extra
    if isinstance(extra, dict):
        pii = extra.get("pii")
        if isinstance(pii, dict):
            return pii
    return None


def _unwrap(annotation: Any) -> tuple[Any, int]:
    """The innermost type of ``annotation`` and how many list levels wrap it (Optional/Annotated removed)."""
    depth = 0
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            annotation = models[0] if models else members[0]
        elif origin in (list, tuple, set, frozenset):
            args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
            annotation = args[0] if args else Any
            depth += 1
        else:
            return annotation, depth


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _walk_class(model_cls: type[BaseModel], prefix: str, inherited: Mapping[str, str] | None,
                out: dict[str, FieldPolicy | None]) -> None:
    for name, finfo in model_cls.model_fields.items():
        meta = inherited or _meta(finfo)
        inner, depth = _unwrap(finfo.annotation)
        path = f"{prefix}{name}" + "[]" * depth
        if _is_model(inner):
            _walk_class(inner, path + ".", meta, out)
        else:
            out[path] = _policy(path, meta) if meta else None


@cache
def _class_policies(model_cls: type[BaseModel]) -> dict[str, FieldPolicy | None]:
    out: dict[str, FieldPolicy | None] = {}
    _walk_class(model_cls, "", None, out)
    return out


def unclassified_fields(model_cls: type[BaseModel]) -> list[str]:
    """Leaf paths of ``model_cls`` that declare no classification (should always be empty)."""
    return sorted(p for p, pol in _class_policies(model_cls).items() if pol is None)


def field_policies(model_cls: type[BaseModel]) -> dict[str, FieldPolicy]:
    """Every leaf field of ``model_cls`` by canonical path (``identifiers[].value``) with its policy.

    Raises:
        TypeError: a leaf field has no classification (names them all).
    """
    missing = unclassified_fields(model_cls)
    if missing:
        raise TypeError(f"{model_cls.__name__} has unclassified fields: {', '.join(missing)}")
    return {p: pol for p, pol in _class_policies(model_cls).items() if pol is not None}


_INDEX = re.compile(r"\[\d+\]")


def template_path(path: str) -> str:
    """``identifiers[0].value`` → ``identifiers[].value``."""
    return _INDEX.sub("[]", path)


def policy_for(path: str, model_cls: type[BaseModel] | tuple[type[BaseModel], ...]) -> FieldPolicy:
    """The policy of one canonical path (indices allowed) in ``model_cls``, or in the first of several classes that
    has it (``crmbridge.canonical.model.PARTY_CLASSES``: Individual, then Organisation).

    Raises:
        KeyError: the path is not a leaf of the model(s).
    """
    tpl = template_path(path)
    if tpl.startswith("extensions."):
        return _extension_policy(tpl)
    classes = model_cls if isinstance(model_cls, tuple) else (model_cls,)
    for c in classes:
        pol = field_policies(c).get(tpl)
        if pol is not None:
            return pol
    raise KeyError(f"no canonical field {tpl!r}")


def _extension_policy(tpl: str) -> FieldPolicy:
    """The policy of a declared extension ``extensions.<name>`` (:mod:`crmbridge.canonical.extensions`)."""
    from crmbridge.canonical.extensions import declared_extensions, extension_policy_meta

    ext = declared_extensions().get(tpl.removeprefix("extensions."))
    if ext is None:
        raise KeyError(f"no canonical field {tpl!r} (not a declared extension)")
    return _policy(tpl, extension_policy_meta(ext))


def _walk_instance(obj: BaseModel, prefix: str, policies: Mapping[str, FieldPolicy]
                   ) -> Iterator[tuple[str, Any, FieldPolicy]]:
    for name in type(obj).model_fields:
        value = getattr(obj, name)
        yield from _walk_value(obj, f"{prefix}{name}", f"{template_path(prefix)}{name}", value, policies)


def _walk_value(parent: BaseModel, path: str, tpl: str, value: Any, policies: Mapping[str, FieldPolicy]
                ) -> Iterator[tuple[str, Any, FieldPolicy]]:
    if value is None:
        return
    if tpl == "extensions" and isinstance(value, Mapping):
        for name, v in value.items():
            if v is not None:
                try:
                    pol = _extension_policy(f"extensions.{name}")
                except KeyError:    # no longer declared: fail closed (personal, masked, never pushed)
                    pol = _policy(f"extensions.{name}", {"class": "C2", "treat": "E", "mask": "generic",
                                                         "crm": "never"})
                yield f"{path}.{name}", v, pol
        return
    if isinstance(value, BaseModel):
        yield from _walk_instance(value, path + ".", policies)
    elif isinstance(value, list | tuple | set | frozenset):
        for i, item in enumerate(value):
            yield from _walk_value(parent, f"{path}[{i}]", tpl + "[]", item, policies)
    else:
        pol = policies[tpl]
        if pol.mask_by is not None:
            pol = pol.resolve(getattr(parent, pol.mask_by, None))
        yield path, value, pol


def iter_classified_values(party: BaseModel) -> Iterator[tuple[str, Any, FieldPolicy]]:
    """Every value present in ``party`` as ``(concrete path, value, resolved policy)``.

    ``None`` values and empty lists yield nothing. The path carries indices (``identifiers[0].value``);
    ``policy.path`` is the template (``identifiers[].value``). For fields whose mask kind depends on a sibling
    (identifier ``scheme``, contact-point ``type``) the yielded policy has ``mask_kind`` resolved.
    """
    yield from _walk_instance(party, "", field_policies(type(party)))


def masked_dump(party: BaseModel) -> dict[str, Any]:
    """JSON-able dict of ``party`` in which every C2 value is replaced by its masked form (for logs, ledgers)."""
    data: dict[str, Any] = party.model_dump(mode="json")
    for path, value, pol in iter_classified_values(party):
        if pol.is_personal:
            _set(data, path, pol.mask(value if not isinstance(value, BaseModel) else str(value)))
    return data


_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _set(data: Any, path: str, value: Any) -> None:
    steps: list[str | int] = [m.group(1) if m.group(1) is not None else int(m.group(2))
                              for m in _STEP.finditer(path)]
    target = data
    for step in steps[:-1]:
        target = target[step]
    target[steps[-1]] = value
