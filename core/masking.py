"""Masking for display: one function per value kind, used by every display path (the primitives).

CLI output, logs, error messages, ledger diffs and exports all mask through :func:`mask`, so what an
operator or auditor sees follows one rule per kind (docs/canonical.md §8):

=========== ============================================ ========================
kind        rule                                          example
=========== ============================================ ========================
ric         first 1 + last 4 (3 if legacy 15 digits)      ``1*************002X``
passport    first 1 + last 3                              ``E*****678``
uscc        first 2 + last 4                              ``91************341L``
mobile      first 3 + last 4 (E.164 prefix kept)          ``+86138****5678``
landline    last 4                                        ``*********5678``
email       first character + ``***@domain``              ``z***@example.com``
name        family name only                              ``张*``, ``欧阳**``, ``Z*** S**``
address     province/city/district clear, street hidden   ``北京市朝阳区****``
account     first 6 + last 4 (or last 4 with ``short``)   ``622848******6789``
amount      hidden                                        ``***``
generic     first 1 + last 1                              ``a***z``
=========== ============================================ ========================

A value whose shape is not its kind's (a 12-digit mobile, a 6-character RIC, a short passport number) keeps fewer
characters, so that at least half of it is hidden: ``138******789``, ``1***56``.

Masking by a value's declared class (canonical paths, raw vendor records) builds on these in
:mod:`crmbridge.canonical.masking`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["MASK_KINDS", "mask", "mask_address", "mask_email", "mask_name"]

_STAR = "*"

# compound Chinese family names (复姓) that take two characters
_COMPOUND_SURNAMES = frozenset((
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 司空 夏侯 令狐 "
    "端木 轩辕 独孤 南宫 西门 呼延 赫连 澹台 公冶 宗政 濮阳 太史 申屠 钟离 闻人"
).split())
_CJK = re.compile(r"[\u3400-\u9fff]")
_ADMIN_SUFFIX = re.compile(r"^(.*?(?:省|自治区|特别行政区))?(.*?(?:市|自治州|地区|盟))?(.*?(?:区|县|旗|市))?")


def _keep(value: str, first: int, last: int) -> str:
    if len(value) <= first + last:
        return _STAR * len(value) if len(value) > 1 else _STAR
    return value[:first] + _STAR * (len(value) - first - last) + value[len(value) - last:]


def _keep_half(value: str, first: int, last: int) -> str:
    """:func:`_keep` for a value whose shape is not the kind's (a 12-digit mobile, a 6-character ID number): the
    kept characters shrink until at least half of the value is hidden, so a malformed value is never shown all
    but one character."""
    while first + last > 0 and len(value) - first - last < (len(value) + 1) // 2:
        if last >= first:
            last -= 1
        else:
            first -= 1
    return _keep(value, first, last)


def mask_name(value: str) -> str:
    """Chinese names keep the family name (``张*``, ``欧阳**``); Latin names keep initials (``Z*** S**``)."""
    v = value.strip()
    if not v:
        return v
    if _CJK.match(v):
        fam = 2 if v[:2] in _COMPOUND_SURNAMES and len(v) > 2 else 1
        return v[:fam] + _STAR * max(1, len(v) - fam)
    return " ".join(w[0] + _STAR * max(1, len(w) - 1) for w in v.split())


def mask_email(value: str) -> str:
    local, at, domain = value.strip().partition("@")
    if not at:
        return _keep(value, 1, 0)
    return f"{local[:1]}***@{domain}"


def mask_address(value: str) -> str:
    """Keep the administrative divisions (province, city, district), hide the street detail."""
    v = value.strip()
    m = _ADMIN_SUFFIX.match(v)
    head = "".join(g for g in (m.groups() if m else ()) if g)
    if not head:
        return "****"
    return head + "****"


def _mask_ric(value: str) -> str:
    # an 18-character number ends with 3 sequence digits + check; a legacy 15-digit one with 3 sequence digits
    # only, so its last 4 would show a birth-date digit: keep 3 there
    if len(value) not in (15, 18):
        return _keep_half(value, 1, 4)
    return _keep(value, 1, 3 if len(value) == 15 else 4)


def _mask_mobile(value: str) -> str:
    v = value.strip().replace(" ", "").replace("-", "")
    prefix = ""
    if v.startswith("+86"):
        prefix, v = "+86", v[3:]
    if not re.fullmatch(r"1\d{10}", v):   # malformed (12 digits, a letter): hide at least half
        return prefix + _keep_half(v, 3, 4)
    return prefix + _keep(v, 3, 4)


def _mask_account(value: str) -> str:
    v = re.sub(r"[\s-]", "", value)
    return _keep(v, 6, 4) if len(v) >= 12 else _keep(v, 0, 4)


MASK_KINDS: dict[str, Callable[[str], str]] = {
    "ric": lambda v: _mask_ric(v.strip().upper()),
    "passport": lambda v: _keep_half(v.strip().upper(), 1, 3),
    "permit": lambda v: _keep_half(v.strip().upper(), 1, 3),
    "uscc": lambda v: _keep(v.strip().upper(), 2, 4) if len(v.strip()) == 18 else _keep_half(v.strip().upper(), 2, 4),
    "mobile": _mask_mobile,
    "landline": lambda v: _keep(re.sub(r"[\s-]", "", v), 0, 4),
    "email": mask_email,
    "name": mask_name,
    "address": mask_address,
    "account": _mask_account,
    "account_short": lambda v: _keep(re.sub(r"[\s-]", "", v), 0, 4),
    "amount": lambda v: "***",
    "date": lambda v: "****-**-**",
    "generic": lambda v: _keep(v, 1, 1),
    "text": lambda v: f"***({len(v)} chars)",     # free text (a complaint summary): nothing of it, only its length
}


def mask(kind: str, value: object) -> str:
    """Mask ``value`` as a ``kind`` (see the module table). ``None`` gives ``""``; an unknown kind is an error.

    A value that is not a string is masked as its ``str`` form: masking never fails open.
    """
    if value is None:
        return ""
    try:
        fn = MASK_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown mask kind {kind!r}; known: {', '.join(sorted(MASK_KINDS))}") from None
    return fn(str(value))
