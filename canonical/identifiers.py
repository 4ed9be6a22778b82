"""Validation and normalisation of party identifiers (docs/canonical.md §2, §5).

One entry point, :func:`normalise_identifier`, takes a scheme name and a raw value as it came from a source system and
returns the normalised value plus data-quality flags, or raises :class:`crmbridge.core.errors.ValidationError` with a
short machine-readable ``code``. Error messages show the value **masked** (``1*************002X``), never in clear.

Every value is first normalised the same way: Unicode NFKC (full-width ``１２３``/``ＡＢＣ`` and the ideographic space
become ASCII), whitespace removed, letters upper-cased. Then, per scheme:

===================== ====================================================================== ======================
scheme                rule                                                                    flags it may set
===================== ====================================================================== ======================
CN_RIC, CN_TEMP_RIC   18 chars, 17 digits + ``[0-9X]``; ISO 7064 MOD 11-2 check; a calendar       ``legacy15``,
                      birth date, not in the future (China's date), holder at most 150 years      ``hmt_area``,
                      old; area code (digits 1-6) a GB/T 2260 division, current OR historical     ``area_retired_
                      (:mod:`crmbridge.canonical.gb2260`: a number keeps its issuing year's       before_birth``
                      code, so any code ever valid passes). Legacy 15-digit numbers (YYMMDD)
                      become 18 by inserting ``19`` and computing the check digit, same checks.
HMT_RESIDENCE_PERMIT  RIC format and checksum, area code 810000 / 820000 / 830000
CN_USCC               GB 32100-2015: 18 chars over ``0-9A-HJ-NPQRTUWXY``, positions 3-8 digits,
                      own MOD 31 check (python-stdnum rejects valid ``N…``/``Y…`` codes)
ORG_CODE              GB 11714: 8 chars ``[0-9A-Z]`` + check ``[0-9X]`` (MOD 11; ``-`` dropped)
BUSINESS_LICENCE      an 18-char USCC (validated as such) or a legacy 15-digit registration      ``legacy_regno``
                      number (format only)
PASSPORT              5-20 chars ``[A-Z0-9]``, stored as issued (no checksum outside the MRZ)
HK_MO_PERMIT          ``H``/``M`` + 8 digits (+ 2-digit issue count) (unverified)
TW_PERMIT             8 digits (2015 card) or 10 digits + optional letter (older) (unverified)
FOREIGN_PR_ID         2017: 3 letters + 12 digits; 2023: 18 digits starting with 9 (length and
                      charset only, docs/canonical.md §5)
CIF                   1-32 chars ``[A-Z0-9-_]`` (a core-banking customer number)
===================== ====================================================================== ======================

Error codes: ``unknown_scheme``, ``empty_value``, ``invalid_format``, ``invalid_checksum``, ``invalid_birth_date``
(not a calendar date), ``birth_date_in_future``, ``implausible_age`` (over :data:`MAX_AGE_YEARS`),
``invalid_area_code`` (never a GB/T 2260 division, or a residence permit outside 810000/820000/830000). The checks
run in that order, so a number with a wrong check character is ``invalid_checksum`` whatever its area code.

python-stdnum traps avoided here (docs/canonical.md §5): ``ric.calc_check_digit`` wants 18 chars (we use our own
:func:`ric_check_digit` over the 17-digit body); ``ric.validate`` raises ``KeyError('county')`` for city-level codes
and only accepts a code in use in the *birth* year (a 1949 birth registered under a 1983 county code is legitimate),
so the area check uses :mod:`crmbridge.canonical.gb2260` instead; ``uscc.validate`` rejects letter-prefixed codes (we
use our own :func:`uscc_check_digit`).
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from crmbridge.canonical.gb2260 import area_code
from crmbridge.canonical.masking import mask
from crmbridge.core.errors import ValidationError

__all__ = [
    "HMT_AREA_CODES",
    "IdentifierScheme",
    "MAX_AGE_YEARS",
    "NormalisedId",
    "ORGANISATION_SCHEMES",
    "PERSON_SCHEMES",
    "SCHEME_MASK_KIND",
    "clean_identifier",
    "is_valid_identifier",
    "normalise_identifier",
    "org_code_check_digit",
    "ric_birth_date",
    "ric_check_digit",
    "ric_gender",
    "uscc_check_digit",
]


class IdentifierScheme(StrEnum):
    """Identifier schemes of docs/canonical.md §2 (plus ``CIF``, a core-banking customer number)."""

    CN_RIC = "CN_RIC"                              # 居民身份证
    CN_TEMP_RIC = "CN_TEMP_RIC"                    # 临时居民身份证 (same number as the RIC)
    PASSPORT = "PASSPORT"
    HK_MO_PERMIT = "HK_MO_PERMIT"                  # 港澳居民来往内地通行证
    TW_PERMIT = "TW_PERMIT"                        # 台湾居民来往大陆通行证
    HMT_RESIDENCE_PERMIT = "HMT_RESIDENCE_PERMIT"  # 港澳台居民居住证
    FOREIGN_PR_ID = "FOREIGN_PR_ID"                # 外国人永久居留身份证
    CN_USCC = "CN_USCC"                            # 统一社会信用代码
    ORG_CODE = "ORG_CODE"                          # 组织机构代码 (GB 11714)
    BUSINESS_LICENCE = "BUSINESS_LICENCE"          # 营业执照注册号
    CIF = "CIF"                                    # core-banking customer information file number


PERSON_SCHEMES: frozenset[IdentifierScheme] = frozenset({
    IdentifierScheme.CN_RIC, IdentifierScheme.CN_TEMP_RIC, IdentifierScheme.PASSPORT,
    IdentifierScheme.HK_MO_PERMIT, IdentifierScheme.TW_PERMIT, IdentifierScheme.HMT_RESIDENCE_PERMIT,
    IdentifierScheme.FOREIGN_PR_ID, IdentifierScheme.CIF,
})
"""Schemes an :class:`~crmbridge.canonical.model.Individual` may carry."""

ORGANISATION_SCHEMES: frozenset[IdentifierScheme] = frozenset({
    IdentifierScheme.CN_USCC, IdentifierScheme.ORG_CODE, IdentifierScheme.BUSINESS_LICENCE, IdentifierScheme.CIF,
})
"""Schemes an :class:`~crmbridge.canonical.model.Organisation` may carry."""

SCHEME_MASK_KIND: dict[IdentifierScheme, str] = {
    IdentifierScheme.CN_RIC: "ric",
    IdentifierScheme.CN_TEMP_RIC: "ric",
    IdentifierScheme.HMT_RESIDENCE_PERMIT: "ric",
    IdentifierScheme.FOREIGN_PR_ID: "ric",
    IdentifierScheme.PASSPORT: "passport",
    IdentifierScheme.HK_MO_PERMIT: "permit",
    IdentifierScheme.TW_PERMIT: "permit",
    IdentifierScheme.CN_USCC: "uscc",
    IdentifierScheme.ORG_CODE: "uscc",
    IdentifierScheme.BUSINESS_LICENCE: "uscc",
    IdentifierScheme.CIF: "generic",
}
"""Mask kind (:data:`crmbridge.canonical.masking.MASK_KINDS`) used to display a value of each scheme."""

HMT_AREA_CODES = frozenset({"810000", "820000", "830000"})
"""Area codes of 港澳台居民居住证 numbers (Hong Kong, Macao, Taiwan)."""

_RIC_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RIC_CHECK = "10X98765432"
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)

_RIC18 = re.compile(r"\d{17}[0-9X]")
_RIC15 = re.compile(r"\d{15}")
_USCC = re.compile(r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}")
_ORG = re.compile(r"[0-9A-Z]{8}[0-9X]")
_PASSPORT = re.compile(r"[A-Z0-9]{5,20}")
_HK_MO = re.compile(r"[HM]\d{8}(?:\d{2})?")
_TW = re.compile(r"\d{8}|\d{10}[A-Z]?")
_FOREIGN_PR = re.compile(r"[A-Z]{3}\d{12}|9\d{16}[0-9X]")
_CIF = re.compile(r"[A-Z0-9_-]{1,32}")
_REGNO15 = re.compile(r"\d{15}")
_WS = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class NormalisedId:
    """A normalised identifier value and its data-quality flags (e.g. ``("legacy15",)``)."""

    value: str
    flags: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------------- check digits


def ric_check_digit(body17: str) -> str:
    """ISO 7064 MOD 11-2 check character of a 17-digit RIC body (GB 11643-1999).

    >>> ric_check_digit("11010519491231002")
    'X'
    """
    if len(body17) != 17 or not body17.isascii() or not body17.isdigit():
        raise ValueError("a RIC body is exactly 17 ASCII digits")
    return _RIC_CHECK[sum(int(c) * w for c, w in zip(body17, _RIC_WEIGHTS, strict=True)) % 11]


def uscc_check_digit(body17: str) -> str:
    """GB 32100-2015 check character of a 17-character USCC body.

    >>> uscc_check_digit("91110000600037341")
    'L'
    """
    body = body17.upper()
    if len(body) != 17 or any(c not in _USCC_ALPHABET for c in body):
        raise ValueError("a USCC body is exactly 17 characters of 0-9A-HJ-NPQRTUWXY")
    total = sum(_USCC_ALPHABET.index(c) * w for c, w in zip(body, _USCC_WEIGHTS, strict=True))
    return _USCC_ALPHABET[(31 - total % 31) % 31]


def org_code_check_digit(body8: str) -> str:
    """GB 11714 organisation-code check character of an 8-character body (``60003734`` → ``1``)."""
    body = body8.upper()
    if len(body) != 8 or not re.fullmatch(r"[0-9A-Z]{8}", body):
        raise ValueError("an organisation-code body is exactly 8 characters of 0-9A-Z")
    total = sum((int(c) if c.isdigit() else ord(c) - 55) * w for c, w in zip(body, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


# --------------------------------------------------------------------------------------------------- RIC helpers


def ric_birth_date(value: str) -> _dt.date:
    """Birth date encoded in an 18-digit RIC (digits 7-14). Raises ``ValueError`` if it is not a date."""
    v = clean_identifier(value)
    if len(v) == 15:
        v = v[:6] + "19" + v[6:]
    return _dt.date(int(v[6:10]), int(v[10:12]), int(v[12:14]))


def ric_gender(value: str) -> str:
    """``"MALE"`` (odd sequence digit 17) or ``"FEMALE"`` (even) for an 18- or 15-digit RIC."""
    v = clean_identifier(value)
    digit = v[16] if len(v) >= 18 else v[14]
    return "MALE" if int(digit) % 2 else "FEMALE"


# --------------------------------------------------------------------------------------------------- normalisation


def clean_identifier(raw: str) -> str:
    """NFKC (full-width → ASCII), drop all whitespace, upper-case."""
    return _WS.sub("", unicodedata.normalize("NFKC", raw)).upper()


def _fail(scheme: IdentifierScheme, value: str, code: str, what: str, field: str | None) -> ValidationError:
    kind = SCHEME_MASK_KIND.get(scheme, "generic")
    if kind == "ric" and len(value) == 15:
        kind = "generic"  # the "ric" mask keeps the last 4, which on a legacy 15-digit number ends the birth date
    shown = mask(kind, value)
    return ValidationError(f"{scheme.value} {shown!r}: {what}", field=field, code=code)


_CN_TZ = _dt.timezone(_dt.timedelta(hours=8), "Asia/Shanghai")  # China has no DST: a fixed +08:00
MAX_AGE_YEARS = 150
"""A birth date more than this many years ago is refused (``implausible_age``)."""


def _today() -> _dt.date:
    """Today's date in China, where the numbers are issued (a server on UTC is up to 8 hours behind)."""
    return _dt.datetime.now(_CN_TZ).date()


def _years_before(day: _dt.date, years: int) -> _dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _check_birth_date(scheme: IdentifierScheme, v: str, field: str | None, shown: str | None = None) -> _dt.date:
    try:
        born = ric_birth_date(v)
    except ValueError:
        raise _fail(scheme, shown or v, "invalid_birth_date", "the birth-date digits are not a calendar date",
                    field) from None
    today = _today()
    if born > today:
        raise _fail(scheme, shown or v, "birth_date_in_future", "the birth date is in the future", field)
    if born < _years_before(today, MAX_AGE_YEARS):
        raise _fail(scheme, shown or v, "implausible_age",
                    f"the birth date makes the holder older than {MAX_AGE_YEARS} years", field)
    return born


def _check_area(scheme: IdentifierScheme, v: str, field: str | None, shown: str | None = None) -> list[str]:
    """GB/T 2260 area check: a code that was EVER a division passes (the number keeps its issuing year's code).

    Returns data-quality flags: ``area_retired_before_birth`` when the division was abolished before the birth
    year (the issuing office may have kept using the old code; not a rejection).
    """
    entry = area_code(v[:6])
    if entry is None:
        raise _fail(scheme, shown or v, "invalid_area_code",
                    "the first 6 digits are not a GB/T 2260 division code (current or historical)", field)
    if entry.until is not None and int(v[6:10]) > entry.until:
        return ["area_retired_before_birth"]
    return []


def _ric(scheme: IdentifierScheme, v: str, field: str | None) -> NormalisedId:
    flags: list[str] = []
    shown: str | None = None
    if _RIC15.fullmatch(v):
        body = v[:6] + "19" + v[6:]
        shown = v
        _check_birth_date(scheme, body + "0", field, shown=v)
        v = body + ric_check_digit(body)
        flags.append("legacy15")
    elif not _RIC18.fullmatch(v):
        raise _fail(scheme, v, "invalid_format", "expected 18 characters (17 digits + digit or X) or 15 digits",
                    field)
    if ric_check_digit(v[:17]) != v[17]:
        raise _fail(scheme, v, "invalid_checksum", "check character does not match (ISO 7064 MOD 11-2)", field)
    _check_birth_date(scheme, v, field, shown=shown)
    area = v[:6]
    if scheme is IdentifierScheme.HMT_RESIDENCE_PERMIT:
        if area not in HMT_AREA_CODES:
            raise _fail(scheme, v, "invalid_area_code",
                        "residence-permit area code must be 810000, 820000 or 830000", field)
        return NormalisedId(v, tuple(flags))
    if area in HMT_AREA_CODES:
        flags.append("hmt_area")
    else:
        flags.extend(_check_area(scheme, v, field, shown=shown))
    return NormalisedId(v, tuple(flags))


def _uscc(scheme: IdentifierScheme, v: str, field: str | None) -> NormalisedId:
    if not _USCC.fullmatch(v):
        raise _fail(scheme, v, "invalid_format",
                    "expected 18 characters over 0-9A-HJ-NPQRTUWXY with digits in positions 3-8", field)
    if uscc_check_digit(v[:17]) != v[17]:
        raise _fail(scheme, v, "invalid_checksum", "check character does not match (GB 32100 MOD 31)", field)
    return NormalisedId(v)


def _org_code(scheme: IdentifierScheme, v: str, field: str | None) -> NormalisedId:
    v = v.replace("-", "")
    if not _ORG.fullmatch(v):
        raise _fail(scheme, v, "invalid_format", "expected 8 characters 0-9A-Z and a check character", field)
    if org_code_check_digit(v[:8]) != v[8]:
        raise _fail(scheme, v, "invalid_checksum", "check character does not match (GB 11714)", field)
    return NormalisedId(v)


def _business_licence(scheme: IdentifierScheme, v: str, field: str | None) -> NormalisedId:
    if len(v) == 18:
        return _uscc(scheme, v, field)
    if _REGNO15.fullmatch(v):
        return NormalisedId(v, ("legacy_regno",))
    raise _fail(scheme, v, "invalid_format", "expected an 18-character USCC or a 15-digit registration number",
                field)


def _pattern(regex: re.Pattern[str], what: str, strip: str = "") -> Callable[
        [IdentifierScheme, str, str | None], NormalisedId]:
    def check(scheme: IdentifierScheme, v: str, field: str | None) -> NormalisedId:
        for ch in strip:
            v = v.replace(ch, "")
        if not regex.fullmatch(v):
            raise _fail(scheme, v, "invalid_format", f"expected {what}", field)
        return NormalisedId(v)

    return check


_RULES: dict[IdentifierScheme, Callable[[IdentifierScheme, str, str | None], NormalisedId]] = {
    IdentifierScheme.CN_RIC: _ric,
    IdentifierScheme.CN_TEMP_RIC: _ric,
    IdentifierScheme.HMT_RESIDENCE_PERMIT: _ric,
    IdentifierScheme.CN_USCC: _uscc,
    IdentifierScheme.ORG_CODE: _org_code,
    IdentifierScheme.BUSINESS_LICENCE: _business_licence,
    IdentifierScheme.PASSPORT: _pattern(_PASSPORT, "5-20 letters or digits"),
    IdentifierScheme.HK_MO_PERMIT: _pattern(_HK_MO, "H or M followed by 8 (or 10) digits"),
    IdentifierScheme.TW_PERMIT: _pattern(_TW, "8 digits, or 10 digits and an optional letter", strip="()"),
    IdentifierScheme.FOREIGN_PR_ID: _pattern(
        _FOREIGN_PR, "3 letters + 12 digits (2017) or 18 characters starting with 9 (2023)"),
    IdentifierScheme.CIF: _pattern(_CIF, "1-32 letters, digits, '-' or '_'"),
}


def normalise_identifier(scheme: str, raw: str, *, field: str | None = "identifiers[].value") -> NormalisedId:
    """Validate and normalise one identifier value.

    Args:
        scheme: an :class:`IdentifierScheme` value (``"CN_RIC"``...).
        raw: the value as received (full-width characters, spaces and a lower-case ``x`` are accepted).
        field: the canonical path reported in the error's ``field``.

    Returns:
        The normalised value and its flags (``legacy15``, ``hmt_area``, ``area_retired_before_birth``,
        ``legacy_regno``).

    Raises:
        ValidationError: ``code`` is one of ``unknown_scheme``, ``empty_value``, ``invalid_format``,
            ``invalid_checksum``, ``invalid_birth_date``, ``birth_date_in_future``, ``implausible_age``,
            ``invalid_area_code``; the message shows the value masked.
    """
    try:
        sch = IdentifierScheme(scheme)
    except ValueError:
        raise ValidationError(f"unknown identifier scheme {str(scheme)[:40]!r}; known: "
                              f"{', '.join(s.value for s in IdentifierScheme)}",
                              field=field, code="unknown_scheme") from None
    if not isinstance(raw, str):
        raise ValidationError(f"{sch.value}: value must be a string, got {type(raw).__name__}",
                              field=field, code="invalid_format")
    v = clean_identifier(raw)
    if not v:
        raise ValidationError(f"{sch.value}: empty value", field=field, code="empty_value")
    return _RULES[sch](sch, v, field)


def is_valid_identifier(scheme: str, raw: str) -> bool:
    """True when :func:`normalise_identifier` accepts the value (flags allowed)."""
    try:
        normalise_identifier(scheme, raw)
    except ValidationError:
        return False
    return True
