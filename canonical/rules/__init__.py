"""Segmentation and lifecycle rules: derived canonical fields from canonical data, declared in a YAML file.

A rules file (``mappings/rules.yaml``, JSON Schema ``mappings/rules.schema.json``) lists rules; each derives one
classified field (:class:`DerivedFields`: ``segment``, ``lifecycle_stage``, ``churn_risk``) by the first of its
cases whose condition holds. Conditions are validated trees of ``all`` / ``any`` / ``not`` and comparisons of named
facts (:data:`FACTS`: AUM band, band drop over a window of the snapshot history, open holdings and their families,
days since a holding was opened or closed…), ``party.<canonical path>`` or ``derived.<field>`` of an earlier rule.
There is no ``eval`` and no embedded code. The reference is docs/rules.md.

Public API::

    rules = load_rules("mappings/rules.yaml")       # RulesLoadError: every problem, file:line: key.path: message
    d = derive(party, holdings, history, rules, as_of=date(2025, 6, 30))
    d.fields            # {"segment": "WEALTH", "lifecycle_stage": "GROWTH", "churn_risk": False}
    d.trace             # [RuleTrace(rule, case, depth, test, value (masked by class), result, note), ...]
    d.rules_version     # SHA-256 of the rules file, to ledger with the derived fields
    rules, problems = check_rules_file(path)         # what ``crmbridge rules validate`` reports
"""

from __future__ import annotations

from crmbridge.canonical.rules._engine import (
    Derivation,
    Rules,
    RulesLoadError,
    RuleTrace,
    check_rules_file,
    derive,
    load_rules,
)
from crmbridge.canonical.rules._language import (
    BAND_ORDER,
    FACTS,
    Case,
    Condition,
    CustomerLifecycle,
    DerivedFields,
    Fact,
    HistoryPoint,
    Rule,
    RulesSpec,
    derived_policies,
    rules_json_schema,
)

__all__ = [
    "BAND_ORDER",
    "Case",
    "Condition",
    "CustomerLifecycle",
    "Derivation",
    "DerivedFields",
    "FACTS",
    "Fact",
    "HistoryPoint",
    "Rule",
    "RuleTrace",
    "Rules",
    "RulesLoadError",
    "RulesSpec",
    "check_rules_file",
    "derive",
    "derived_policies",
    "load_rules",
    "rules_json_schema",
]
