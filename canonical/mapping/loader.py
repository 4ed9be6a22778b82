"""Loading and checking mapping files: every problem reported at once, located in the file."""

from __future__ import annotations

import hashlib
from pathlib import Path as FsPath
from typing import Any

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from crmbridge.canonical.mapping.engine import Mapping
from crmbridge.canonical.mapping.problems import MappingLoadError, MappingProblem
from crmbridge.canonical.mapping.profile import UNDECLARED, ProfileSource, TargetProfile
from crmbridge.canonical.mapping.spec import MappingSpec
from crmbridge.canonical.mapping.steps import (
    CodeStep,
    Step,
    UniqueMaskedStep,
    _canonical_leaf,
    _CompileContext,
    _ValueStep,
)
from crmbridge.canonical.mapping.yamlio import _align, _friendly, _load_yaml, keypath, line_for
from crmbridge.canonical.transforms import (
    CodeTransform,
    DropMasked,
)
from crmbridge.core.errors import UnknownAdapterError
from crmbridge.core.safeyaml import read_bounded, size_problem


def _sha256(text: str) -> str:
    """The content hash of a file read by :func:`read_text` (its UTF-8 bytes: strict decoding round-trips)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_text(path: FsPath, file: str) -> tuple[str | None, MappingProblem | None]:
    """A mapping or rules file's text, or the one located problem why it cannot be read (unreadable, too large,
    not UTF-8)."""
    try:
        raw = read_bounded(path)
    except OSError as exc:
        return None, MappingProblem(file, None, "", f"cannot read the file: {exc.strerror or exc}")
    if (too_big := size_problem(len(raw))) is not None:
        return None, MappingProblem(file, None, "", too_big)
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, MappingProblem(file, None, "", f"not UTF-8 ({exc.reason} at byte {exc.start})")


def _structural(data: Any, file: str, lines: dict[tuple[str | int, ...], int]
                ) -> tuple[MappingSpec | None, list[MappingProblem]]:
    if not isinstance(data, dict):
        return None, [MappingProblem(file, 1, "", "a mapping file is a YAML mapping with system, object, steps…")]
    try:
        return MappingSpec.model_validate(data), []
    except PydanticValidationError as exc:
        grouped: dict[tuple[str | int, ...], list[str]] = {}
        for err in exc.errors():
            aligned = _align(data, err["loc"])
            msg = _friendly(err, data, aligned)
            msgs = grouped.setdefault(aligned, [])
            if msg not in msgs:
                msgs.append(msg)
        problems = [MappingProblem(file, line_for(lines, path), keypath(path), " or ".join(msgs))
                    for path, msgs in grouped.items()]
        return None, problems


def _semantic(m: Mapping) -> list[tuple[tuple[str | int, ...], str, str]]:
    spec = m.spec
    out: list[tuple[tuple[str | int, ...], str, str]] = []
    # code tables: canonical values valid, inverse unambiguous where the out direction uses it, coverage
    ctx = _CompileContext(code_tables=spec.code_tables, party_type=m.model_key, system=spec.system,
                          profile=m.profile)
    # the canonical object: a Party mapping says its party type, another object has none
    if spec.canonical == "Party" and spec.party_type is None:
        out.append((("party_type",), "required key 'party_type' is missing (INDIVIDUAL, ORGANISATION or a rule: "
                                     "this file maps the canonical Party)", "error"))
    elif spec.canonical != "Party" and spec.party_type is not None:
        out.append((("party_type",), f"party_type applies to Party mappings; this file maps canonical "
                                     f"{spec.canonical} (remove party_type)", "error"))
    for name, table in spec.code_tables.items():
        if table.vendor_values is not None:
            for v in table.vendor_values:
                if v not in table.map:
                    out.append((("code_tables", name, "vendor_values"),
                                f"vendor value {v!r} is not covered by map", "error"))
    for i, step in enumerate(spec.steps):
        ctx.party_type = (step.party_type if spec.canonical == "Party" else None) or m.model_key
        table_name = step.table if isinstance(step, CodeStep) else None
        tables = [table_name] if table_name else []
        if isinstance(step, _ValueStep):
            tables += [t.table for t, _ in (*step._in_chain, *step._out_chain)
                       if isinstance(t, CodeTransform) and t.table != table_name]
        for tname in dict.fromkeys(tables):
            table = spec.code_tables.get(tname)
            if table is None or not isinstance(step, _ValueStep) or step._cpath is None:
                continue
            leaf = _canonical_leaf(ctx, step._cpath)
            allowed = leaf.allowed if leaf else None
            if allowed:
                for vendor, canon in table.map.items():
                    if canon not in allowed:
                        out.append((("code_tables", tname, "map", vendor),
                                    f"{canon!r} is not a valid {step._cpath.text} "
                                    f"(valid: {', '.join(sorted(allowed))})",
                                    "error"))
                for canon in table.out:
                    if canon not in allowed:
                        out.append((("code_tables", tname, "out", canon),
                                    f"{canon!r} is not a valid {step._cpath.text}", "error"))
            if step.runs("out"):
                inv, ambiguous = table.inverse()
                for canon in sorted(ambiguous):
                    out.append((("code_tables", tname, "map"),
                                f"{canon!r} comes from several vendor values; say which to write under out:", "error"))
                if allowed:
                    missing = sorted(a for a in allowed if a not in inv)
                    if missing:
                        out.append((("steps", i, "table"),
                                    f"code table {tname!r} does not cover {', '.join(missing)} for the out direction "
                                    f"({step._cpath.text} can hold them)", "error"))
    # a unique_masked value flowing back in must be dropped, never read as the canonical value
    for i, step in enumerate(spec.steps):
        if not isinstance(step, UniqueMaskedStep) or step._vpath is None:
            continue
        for j, other in enumerate(spec.steps):
            if not (isinstance(other, _ValueStep) and other.runs("in")):
                continue
            if step._vpath.text not in (p.text for p in other._vpaths):
                continue
            drops = any(isinstance(t, DropMasked) for t, _ in other._in_chain)
            if not (drops and step.carries_mask_marker):
                out.append((("steps", j), f"reads {step._vpath.text}, which steps[{i}] (unique_masked) writes: "
                                          "put drop_masked in its in: chain, and mask a part of that value "
                                          "(without last:) so it is recognised", "error"))
    # mandatory vendor fields
    mandatory = m.profile.mandatory_fields
    if mandatory and any(s.runs("out") for s in spec.steps):
        written = set(m.vendor_fields("out"))
        for f in mandatory:
            if f not in written:
                out.append((("steps",), f"mandatory {spec.system} {spec.object} field {f!r} is not mapped in the "
                                        "out direction", "error"))
    if m.profile.is_crm and spec.key_field is None and any(s.runs("out") for s in spec.steps):   # a read-only
        # mapping (every step in: CRM campaign members read for the core) upserts nothing
        out.append((("key_field",), f"a CRM mapping needs key_field (the vendor field holding {m.id_field}) for "
                                    "idempotent upserts", "error"))
    return out


def _resolve_profile(source: ProfileSource, spec: MappingSpec) -> tuple[TargetProfile, str | None]:
    """The profile for ``spec`` and, when the resolver does not know its system, the problem to report."""
    if source is None:
        return UNDECLARED, None
    if isinstance(source, TargetProfile):
        return source, None
    try:
        return source(spec.system, spec.object), None
    except UnknownAdapterError as exc:
        return UNDECLARED, (f"unknown system {spec.system!r}; known: {', '.join(exc.known)}")


def check_mapping_file(path: str | FsPath, *, display: str | None = None, profile: ProfileSource = None
                       ) -> tuple[Mapping | None, list[MappingProblem]]:
    """Load and check one mapping file, returning the mapping (None when it cannot be built) and every problem.

    ``profile`` describes the target system (or resolves it from the file's ``system`` and ``object``, e.g.
    ``crmbridge.adapters.registry.target_profile``); without one the system is treated as a CRM.
    """
    p = FsPath(path)
    file = display or str(path)
    text, problem = read_text(p, file)
    if text is None:
        return None, [problem]
    data, lines, problems = _load_yaml(text, file)
    if problems and data is None:
        return None, problems
    spec, structural = _structural(data, file, lines)
    problems += structural
    index_map: list[int] | None = None
    if spec is None:
        # keep going with the steps that are well-formed, so one run reports every problem
        spec, index_map = _partial_spec(data)
        if spec is None:
            return None, problems
    target, unknown = _resolve_profile(profile, spec)
    if unknown is not None:
        problems.append(MappingProblem(file, line_for(lines, ("system",)), "system", unknown))
    m = Mapping(spec, path=str(path), version_hash=_sha256(text), lines=lines, profile=target,
                text=text)
    for rel, msg, sev in (*m._compile(), *_semantic(m)):
        if index_map is not None and len(rel) >= 2 and rel[0] == "steps" and isinstance(rel[1], int):
            rel = ("steps", index_map[rel[1]], *rel[2:])
        problems.append(MappingProblem(file, line_for(lines, rel), keypath(rel), msg,
                                       "warning" if sev == "warning" else "error"))
    problems.sort(key=lambda pr: (pr.line or 0, pr.path))
    return (m if index_map is None else None), problems


def _partial_spec(data: Any) -> tuple[MappingSpec | None, list[int]]:
    """The spec with only its well-formed steps (and their original indices), or None if the header is broken."""
    if not isinstance(data, dict):
        return None, []
    step_adapter: TypeAdapter[Any] = TypeAdapter(Step)
    raw_steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    good: list[Any] = []
    index_map: list[int] = []
    for i, st in enumerate(raw_steps):
        try:
            step_adapter.validate_python(st)
        except PydanticValidationError:
            continue
        good.append(st)
        index_map.append(i)
    try:
        return MappingSpec.model_validate({**data, "steps": good}), index_map
    except PydanticValidationError:
        return None, []


def load_mapping(path: str | FsPath, *, profile: ProfileSource = None) -> Mapping:
    """Load, check and compile a mapping file for the target system ``profile`` describes (see
    :func:`check_mapping_file`; none given: a CRM, so personal data goes out minimised).

    Raises:
        MappingLoadError: (a MappingError) with every problem, each located ``file:line: key.path: message``.
    """
    m, problems = check_mapping_file(path, profile=profile)
    errors = [p for p in problems if p.severity == "error"]
    if errors or m is None:
        raise MappingLoadError(errors or problems)
    _ = m.plan   # compiled into per-record closures once, here
    return m
