"""The declarative mapping language: models, loader with line numbers, validation and the engine.

One YAML file per (system, object) says how a vendor record becomes a canonical party (direction ``in``) and how a
canonical party becomes a vendor payload (direction ``out``). The language is a small set of ``type:``-tagged steps,
each a pydantic model with one ``apply_in`` and one ``apply_out``; values are converted by named transforms
(:mod:`crmbridge.canonical.transforms`). There is no ``eval`` and no embedded code. The reference for the
integration team is ``mappings/README.md``; the JSON Schema (:func:`mapping_json_schema`) is published as
``mappings/mapping.schema.json`` so editors check ``mappings/*.yaml`` as you type.

Public API::

    m = load_mapping("mappings/zoho_contacts.yaml")     # MappingLoadError: every problem with file:line: key.path
    canon = m.map_in(raw, party_id=pid)                  # canonical dict (ValidationError on a bad record)
    party = m.to_party(raw, party_id=pid)                # Individual | Organisation
    payload = m.map_out(party)                           # vendor payload (minimised per docs/canonical.md §3/§4)
    m.external_id(raw); m.modified_at(raw); m.is_deleted(raw)
    m.vendor_fields("in"); m.owned_canonical_paths("in"); m.version_hash
    problems = check_mapping_file(path)                  # everything ``crmbridge mapping validate`` reports
    problems = validate_against(m, fields)               # against the vendor's field metadata

Paths:
    *canonical* ``name.legal_zh``, ``identifiers[scheme=CN_RIC].value``, ``contact_points[type=MOBILE].value``,
    ``addresses[type=RESIDENTIAL].city`` (a selector finds the list element on the way out and creates it on the way
    in); *vendor* ``Last_Name``, ``data.addresses[0].city``, ``owner[0]``,
    ``PhoneEmailInfo[PhoneEmailType=CELLPH].PhoneNum``, ``["SHORT.NAME"]`` (quoted names may contain dots).


Modules: ``profile`` (what the target system is), ``problems``, ``introspect`` (paths against the model),
``policy`` (classification of paths), ``steps`` (the language), ``spec`` (the file header and JSON Schema),
``yamlio`` (located reading), ``engine`` (:class:`Mapping`), ``loader`` (loading and checking), ``validate``
(against vendor field metadata).
"""

from __future__ import annotations

from crmbridge.canonical.mapping.engine import Mapping, path_get_loc
from crmbridge.canonical.mapping.introspect import resolve_canonical
from crmbridge.canonical.mapping.loader import check_mapping_file, load_mapping
from crmbridge.canonical.mapping.policy import mask_kind_for
from crmbridge.canonical.mapping.problems import MappingLoadError, MappingProblem
from crmbridge.canonical.mapping.profile import SYSTEM_OF_RECORD, UNDECLARED, ProfileSource, TargetProfile, VendorField
from crmbridge.canonical.mapping.spec import DeletedWhen, MappingSpec, PartyTypeRule, VendorValue, mapping_json_schema
from crmbridge.canonical.mapping.steps import (
    REQUIRED_MISSING,
    STEP_TYPES,
    CodeStep,
    ConsentStep,
    ConstantStep,
    ContactStep,
    FieldStep,
    FormatStep,
    IdentifierStep,
    SelectStep,
    StepCondition,
    TraceRow,
    TransformCall,
    UniqueMaskedStep,
    UniquePart,
)
from crmbridge.canonical.mapping.validate import validate_against
from crmbridge.canonical.mapping.yamlio import keypath, line_for
from crmbridge.core.paths import Path, parse_path, path_get, path_set

__all__ = [
    "CodeStep",
    "ConsentStep",
    "ConstantStep",
    "ContactStep",
    "DeletedWhen",
    "FieldStep",
    "FormatStep",
    "IdentifierStep",
    "Mapping",
    "MappingLoadError",
    "MappingProblem",
    "MappingSpec",
    "PartyTypeRule",
    "Path",
    "ProfileSource",
    "REQUIRED_MISSING",
    "STEP_TYPES",
    "SYSTEM_OF_RECORD",
    "SelectStep",
    "StepCondition",
    "TargetProfile",
    "TraceRow",
    "TransformCall",
    "UNDECLARED",
    "UniqueMaskedStep",
    "UniquePart",
    "VendorField",
    "VendorValue",
    "check_mapping_file",
    "keypath",
    "line_for",
    "load_mapping",
    "mapping_json_schema",
    "mask_kind_for",
    "parse_path",
    "path_get",
    "path_get_loc",
    "path_set",
    "resolve_canonical",
    "validate_against",
]
