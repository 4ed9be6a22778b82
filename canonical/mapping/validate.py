"""Checking a mapping against the vendor's field metadata (``crmbridge mapping validate --against SYSTEM``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from crmbridge.canonical.mapping.engine import Mapping
from crmbridge.canonical.mapping.problems import MappingProblem
from crmbridge.canonical.mapping.profile import VendorField
from crmbridge.canonical.mapping.steps import CodeStep
from crmbridge.canonical.mapping.yamlio import keypath, line_for
from crmbridge.core.paths import Path, PathKey


def validate_against(mapping: Mapping, fields: Iterable[VendorField], *,
                     filled: Iterable[str] = ()) -> list[MappingProblem]:
    """Check a mapping against the vendor's field metadata (``crmbridge mapping validate --against SYSTEM``).

    Reports vendor fields that do not exist, read-only fields written on the way out, vendor-required fields the out
    direction does not write (but those in ``filled``, which the adapter fills itself), and code-table values that
    are not in the vendor picklist (and picklist values the in direction cannot read).
    """
    by_name = {f.name: f for f in fields}
    file = mapping.path
    problems: list[MappingProblem] = []

    def add(rel: tuple[str | int, ...], msg: str) -> None:
        problems.append(MappingProblem(file, line_for(mapping.lines, rel), keypath(rel), msg))

    spec = mapping.spec
    for key, p in (("external_id", mapping._external), ("key_field", mapping._key),
                   ("modified_at", mapping._modified), ("deleted_when", mapping._deleted)):
        if p is not None and p.head not in by_name and p.head not in ("id", "_id"):
            add((key,), f"{spec.system} {spec.object} has no field {p.head!r}")
    writes_out = any(s.runs("out") for s in spec.steps)
    for i, step in enumerate(spec.steps):
        for p in [*step.vendor_paths(), *step.when_vendor_paths()]:
            info = by_name.get(p.head)
            if info is None:
                add(("steps", i, "vendor"), f"{spec.system} {spec.object} has no field {p.head!r}")
                continue
            nested, missing = _nested(p, by_name)
            if missing is not None:
                add(("steps", i, "vendor"), missing)
                continue
            info = nested or info
            if step.runs("out") and info.read_only:
                add(("steps", i, "vendor"), f"{p.head!r} is read-only in {spec.system}; use direction: in")
            table = spec.code_tables.get(step.table) if isinstance(step, CodeStep) else None
            if table is not None and info.picklist is not None and p in step.vendor_paths()[:1]:
                pick = set(info.picklist)
                if step.runs("out"):
                    inv, _ = table.inverse()
                    for canon, vendor in inv.items():
                        if vendor not in pick:
                            add(("code_tables", step.table),
                                f"{vendor!r} (for {canon}) is not a {p.head} picklist value")
                if step.runs("in"):
                    for v in info.picklist:
                        if v not in table.map:
                            add(("code_tables", step.table), f"{p.head} picklist value {v!r} is not covered by map")
    if writes_out:
        written = set(mapping.vendor_fields("out")) | set(filled)
        for f in fields:
            if f.required and not f.read_only and f.name not in written:
                add(("steps",), f"{spec.system} requires {f.name!r} but the out direction does not write it")
    return problems


_PLAIN = re.compile(r"^[^.\[\]\"=,\s][^.\[\]\"=,]*$")


def _join(names: Sequence[str]) -> str:
    """Names joined as the field metadata names nested members (``Custpersonal.MOBNUM``, ``["CURR.NO"]``)."""
    out = ""
    for n in names:
        out += ("." if out else "") + (n if _PLAIN.match(n) and n.strip() == n else f'["{n}"]')
    return out


def _nested(p: Path, by_name: dict[str, VendorField]) -> tuple[VendorField | None, str | None]:
    """Check a nested vendor path against metadata that names nested members (a SOAP record's
    ``Custpersonal.MOBNUM``): the deepest field found, or what is missing. Metadata that describes only top-level
    fields (Zoho ``owner[0]``) checks the head only."""
    names = [op.name for op in p.ops if isinstance(op, PathKey)]
    if len(names) < 2:
        return None, None
    found: VendorField | None = None
    for depth in range(2, len(names) + 1):
        parent = _join(names[:depth - 1])
        prefix = parent + "."
        members = sorted({n[len(prefix):].split(".", 1)[0] for n in by_name if n.startswith(prefix)})
        if not members:     # the metadata says nothing below this level
            return found, None
        name = _join(names[:depth])
        if name not in by_name:
            shown = ", ".join(members[:15]) + (", …" if len(members) > 15 else "")
            return None, f"{parent} has no member {names[depth - 1]!r} (members: {shown})"
        found = by_name[name]
    return found, None
