"""Refusal of C3 authentication data (JR/T 0171-2020; docs/canonical.md §3, §8).

crmbridge never carries C3 data: passwords, PINs, card security codes, track or chip data, card expiry, one-time
codes that alone authenticate, and biometric templates. :func:`refuse_c3` scans a raw record (nested mappings and
lists) **by key name** and raises :class:`~crmbridge.core.errors.ForbiddenDataError` (``code="c3_data"``,
``field`` = the key path such as ``contacts[2].loginPassword``) at the first C3 key that carries a value. The
message names the key path and the rule, never the value.

A key is normalised before matching: NFKC, lower-case, then split into *tokens* at ``_ - . space``, at camelCase
boundaries and at letter/digit changes (``loginPwd`` → ``login pwd``; ``CVV2`` → ``cvv 2``; ``field_pwd__c`` →
``field pwd c``); the *squashed* form is the key with all separators removed (``pin_block`` → ``pinblock``).

======================== =========================================================== ===========================
rule                     matches                                                     examples
======================== =========================================================== ===========================
token (exact)            pin, pwd, passwd, password, passcode, passphrase, pinblock, ``pin``, ``loginPwd``,
                         pincode, cvv, cvv2, cvc, cvc2, cvn, cvn2, icvv, pvv, otp,   ``card_cvv2``, ``otp``,
                         totp, hotp, smscode, smsotp, track1, track2, track3,        ``Track2``
                         trackdata, magstripe, arqc, faceprint, voiceprint,
                         iristemplate
squashed substring       password, passwd, passcode, pinblock, pincode, cardpin,     ``newPassword``,
                         cvv, cvc2, cvn2, cardsecuritycode, securitycode,            ``pin_block``,
                         track1data, track2data, track3data, trackdata, magstripe,   ``track2_data``,
                         emvdata, iccdata, chipdata, field55, cardexpiry,            ``card_exp_date``,
                         cardexpdate, cardexpirationdate, cardexpiration,            ``sms_code``,
                         cardvalidthru, expirydatecard, smscode, smsverifycode,      ``verification_code``,
                         verifycode, verificationcode, otpcode, dynamiccode,         ``fingerprint_template``
                         fingerprinttemplate, facetemplate, facefeature,
                         biometrictemplate, voiceprint
Chinese substring        密码 (交易/查询/登录/支付密码), 口令, 验证码, 动态码,        ``交易密码``, ``短信验证码``
                         安全码, 磁道, 磁条, 芯片数据, 卡有效期, 指纹模板,
                         指纹特征, 声纹, 虹膜模板, 虹膜特征, 人脸特征,
                         生物特征模板
======================== =========================================================== ===========================

**Name/value pairs.** Core banking systems carry bank-specific fields as pairs (FLEXCUBE ``UDFDETAILS[]{FLDNAM,
FLDVAL}``, ``{name, value}``, ``{key, value}``): a pair whose *name* is a C3 key and whose *value* carries data is
refused at the value's path (``UDFDETAILS[3].FLDVAL``), the rule naming the pair (``pair FLDNAM=CARD_PIN:
substring:cardpin``).

Not refused (no data is carried): a value that is ``None``, ``""`` or a boolean (``otp_verified: true``,
``has_pin: false``). Keys that merely look alike are not matched: ``pinyin``, ``shipping``, ``opinion``,
``expires_on`` / ``证件有效期至`` (identifier expiry), ``postcode``, ``spin``, ``cid``, ``device_fingerprint``,
``biometric_consent`` (a consent flag, not a template). Deliberately broad in one place: a key such as
``email_verification_code`` is refused even if the code has expired; such keys have no business in a customer record.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from crmbridge.core.errors import ForbiddenDataError

__all__ = ["C3_SUBSTRINGS", "C3_TOKENS", "C3_WITHHELD", "c3_rule", "find_c3", "mapping_c3_fields", "path_c3_rule",
           "refuse_c3", "without_c3"]

C3_TOKENS: frozenset[str] = frozenset("""
pin pwd passwd password passcode passphrase pinblock pincode
cvv cvv2 cvc cvc2 cvn cvn2 icvv pvv
otp totp hotp smscode smsotp
track1 track2 track3 trackdata magstripe arqc
faceprint voiceprint iristemplate
""".split())
"""Tokens that mark a key as C3 when they appear as a whole token (after splitting the key)."""

C3_SUBSTRINGS: tuple[str, ...] = (
    # passwords, PINs
    "password", "passwd", "passcode", "pinblock", "pincode", "cardpin",
    # card security codes
    "cvv", "cvc2", "cvn2", "cardsecuritycode", "securitycode",
    # track / chip data
    "track1data", "track2data", "track3data", "trackdata", "magstripe", "emvdata", "iccdata", "chipdata", "field55",
    # card expiry
    "cardexpiry", "cardexpdate", "cardexpirationdate", "cardexpiration", "cardvalidthru", "expirydatecard",
    # one-time codes
    "smscode", "smsverifycode", "verifycode", "verificationcode", "otpcode", "dynamiccode",
    # biometric templates
    "fingerprinttemplate", "facetemplate", "facefeature", "biometrictemplate", "voiceprint",
    # Chinese
    "密码", "口令", "验证码", "动态码", "安全码", "磁道", "磁条", "芯片数据", "卡有效期",
    "指纹模板", "指纹特征", "声纹", "虹膜模板", "虹膜特征", "人脸特征", "生物特征模板",
)
"""Substrings that mark a key as C3 when found in its squashed (separator-free, lower-case) form."""

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")
_SEP = re.compile(r"[\s_.\-:/]+")


def _tokens(key: str) -> list[str]:
    parts = _SEP.split(_CAMEL.sub(" ", key))
    return [p.lower() for p in parts if p]


@lru_cache(maxsize=65536)  # the same vendor keys come back in every record: a hot path of every run
def c3_rule(key: str) -> str | None:
    """The rule that marks ``key`` as C3 (``token:pwd``, ``substring:password``), or ``None``."""
    k = unicodedata.normalize("NFKC", str(key))
    tokens = _tokens(k)
    # join digit tokens to the word before them so "cvv 2" / "track 2" match "cvv2" / "track2"
    joined = [a + b for a, b in zip(tokens, tokens[1:], strict=False) if b.isdigit()]
    for tok in (*tokens, *joined):
        if tok in C3_TOKENS:
            return f"token:{tok}"
    squashed = _SEP.sub("", k).lower()
    for sub in C3_SUBSTRINGS:
        if sub in squashed:
            return f"substring:{sub}"
    return None


#: what stands in for a C3 value crmbridge withheld (it carries no data)
C3_WITHHELD = "[C3 data withheld]"


def _carries_data(value: Any) -> bool:
    return not (value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip())
                or value == C3_WITHHELD)


#: keys that name the field of a name/value pair, and keys that hold its value (compared lower-case)
PAIR_NAME_KEYS = frozenset({"fldnam", "fld_name", "fieldname", "field_name", "field", "name", "key", "attrname",
                            "attr_name", "attribute", "udfname", "udf_name", "paramname", "code"})
PAIR_VALUE_KEYS = frozenset({"fldval", "fld_val", "fieldvalue", "field_value", "value", "val", "attrvalue",
                             "attr_value", "udfvalue", "udf_value", "paramvalue"})


@lru_cache(maxsize=4096)  # a record's nodes come in a few shapes (the same keys): classified once per shape
def _shape(keys: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str | None, ...]]:
    """What the keys alone say of a node: its pair-name keys, its pair-value keys, each key's C3 rule."""
    return (tuple(k for k in keys if k.lower() in PAIR_NAME_KEYS),
            tuple(k for k in keys if k.lower() in PAIR_VALUE_KEYS),
            tuple(c3_rule(k) for k in keys))


def _shape_of(node: Mapping[Any, Any]) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[str | None, ...]]:
    keys = tuple(node)
    if all(type(k) is str for k in keys):
        return _shape(keys)   # type: ignore[arg-type]
    return (tuple(k for k in keys if str(k).lower() in PAIR_NAME_KEYS),   # odd keys (1 and True hash alike)
            tuple(k for k in keys if str(k).lower() in PAIR_VALUE_KEYS),
            tuple(c3_rule(str(k)) for k in keys))


def _pair(node: Mapping[Any, Any], shape: tuple[tuple[Any, ...], tuple[Any, ...], Any] | None = None,
          ) -> tuple[str, str, str] | None:
    """``(value key, pair name, rule)`` when ``node`` is a name/value pair whose name is a C3 key."""
    name_keys, values, _ = shape or _shape_of(node)
    if not name_keys or not values:
        return None
    names = [k for k in name_keys if isinstance(node[k], str)]
    for n in names:
        rule = c3_rule(node[n])
        if rule is None:
            continue
        for v in values:
            if _carries_data(node[v]):
                return str(v), f"{n}={node[n]}", rule
    return None


def find_c3(record: Any, where: str = "") -> list[tuple[str, str]]:
    """Every ``(key path, rule)`` in ``record`` (mappings and lists, recursively) holding C3 data."""
    found: list[tuple[str, str]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            shape = _shape_of(node)
            pair = _pair(node, shape)
            if pair is not None:
                vkey, name, rule = pair
                found.append((f"{path}.{vkey}" if path else vkey, f"pair {name}: {rule}"))
            for (key, value), rule in zip(node.items(), shape[2], strict=True):
                if rule is not None and _carries_data(value):
                    found.append((f"{path}.{key}" if path else str(key), rule))
                elif type(value) is not str and value is not None and (
                        isinstance(value, Mapping) or isinstance(value, Sequence) and not isinstance(
                            value, str | bytes | bytearray)):   # a leaf holds nothing to walk
                    walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, Sequence) and not isinstance(node, str | bytes | bytearray):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")

    walk(record, where)
    return found


def without_c3(record: Any) -> Any:
    """A copy of ``record`` with every C3 value withheld (a C3 key's value, a C3 name/value pair's value), for
    what crmbridge keeps of a refused record: a dead letter must not store the PIN it was refused for."""
    if isinstance(record, Mapping):
        pair = _pair(record)
        out: dict[Any, Any] = {}
        for key, value in record.items():
            if (pair is not None and str(key) == pair[0]) or (c3_rule(str(key)) is not None and _carries_data(value)):
                out[key] = C3_WITHHELD
            else:
                out[key] = without_c3(value)
        return out
    if isinstance(record, Sequence) and not isinstance(record, str | bytes | bytearray):
        return [without_c3(item) for item in record]
    return record


def refuse_c3(record: Mapping[str, Any], where: str) -> None:
    """Raise if ``record`` carries C3 authentication data anywhere.

    Args:
        record: a raw vendor record or any nested mapping.
        where: where the record comes from (``zoho:Contacts/4150868000000224005``); becomes the error's ``where``.

    Raises:
        ForbiddenDataError: ``code="c3_data"``, ``field`` = the first offending key path; the message lists every
            offending key path (never a value).
    """
    found = find_c3(record)
    if found:
        paths = ", ".join(f"{p} ({r})" for p, r in found[:10])
        more = f" and {len(found) - 10} more" if len(found) > 10 else ""
        raise ForbiddenDataError(
            f"record carries C3 authentication data, which crmbridge never accepts: {paths}{more}",
            where=where, field=found[0][0], code="c3_data")


def path_c3_rule(path: Any) -> str | None:
    """The rule that marks a mapping path (parsed: ``.ops`` of keys and selectors) as reaching C3 data: a key
    (``Custpersonal.CARD_PIN``) or a selector naming a pair (``UDFDETAILS[FLDNAM=CVV2].FLDVAL``); else ``None``."""
    for op in getattr(path, "ops", ()):
        name = getattr(op, "name", None)
        if isinstance(name, str):
            rule = c3_rule(name)
            if rule is not None:
                return f"key {name}: {rule}"
        for _k, v in getattr(op, "conds", ()):
            rule = c3_rule(v)
            if rule is not None:
                return f"selector {v}: {rule}"
    return None


def mapping_c3_fields(mapping: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Every place a mapping (:class:`crmbridge.canonical.mapping.Mapping`) reads or writes a C3-looking vendor
    field, as ``(key path in the mapping file, message)``: crmbridge never carries C3 data, so such a mapping is an
    error however it transforms or masks the value."""
    from crmbridge.canonical.mapping import parse_path

    out: list[tuple[tuple[str | int, ...], str]] = []

    def check(rel: tuple[str | int, ...], text: Any) -> None:
        if not isinstance(text, str):
            return
        try:
            p = parse_path(text)
        except ValueError:
            return   # reported by the mapping's own checks
        rule = path_c3_rule(p)
        if rule is not None:
            out.append((rel, f"vendor field {text!r} is C3 authentication data ({rule}), which crmbridge never "
                             "carries (JR/T 0171-2020): remove the step"))

    spec = mapping.spec
    for i, step in enumerate(spec.steps):
        vendor = getattr(step, "vendor", None)
        if isinstance(vendor, list):
            for j, v in enumerate(vendor):
                check(("steps", i, "vendor", j), v)
        else:
            check(("steps", i, "vendor"), vendor)
        for j, part in enumerate(getattr(step, "parts", None) or []):
            check(("steps", i, "parts", j, "vendor"), getattr(part, "vendor", None))
    check(("external_id",), spec.external_id)
    check(("key_field",), spec.key_field)
    for key in ("modified_at", "deleted_when", "party_type"):
        check((key, "vendor"), getattr(getattr(spec, key), "vendor", None))
    return out
