"""Phone-number and e-mail normalisation (docs/canonical.md §6).

Phones are parsed with ``phonenumbers`` in the given default region and accepted only when
``phonenumbers.is_valid_number`` says so (``is_possible_number`` would accept ``12345678901``). The stored form is
E.164 (``+8613812345678``): ``13812345678``, ``+86 138 1234 5678``, ``008613812345678`` and full-width
``１３８１２３４５６７８`` all give the same value, and the blind index is computed over it.

``phonenumbers``' carrier and geocoder data describe the *number segment*, not the customer: they are never used as an
address and not exposed here.

Error codes: ``unparsable_phone`` (not a phone number at all), ``invalid_phone`` (parses but is not a valid number,
e.g. the bank hotline ``95566`` or ``12345678901``), ``invalid_email``. Messages show the value masked.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from crmbridge.canonical.masking import mask
from crmbridge.core.errors import ValidationError

__all__ = ["Phone", "PhoneKind", "normalise_email", "normalise_phone"]


class PhoneKind(StrEnum):
    """Kind of a valid number (from ``phonenumbers.number_type``)."""

    MOBILE = "MOBILE"
    LANDLINE = "LANDLINE"
    FIXED_LINE_OR_MOBILE = "FIXED_LINE_OR_MOBILE"
    SHARED_COST = "SHARED_COST"        # China: 400 numbers
    TOLL_FREE = "TOLL_FREE"            # China: 800 numbers
    PREMIUM_RATE = "PREMIUM_RATE"
    VOIP = "VOIP"
    PERSONAL_NUMBER = "PERSONAL_NUMBER"
    PAGER = "PAGER"
    UAN = "UAN"
    VOICEMAIL = "VOICEMAIL"
    UNKNOWN = "UNKNOWN"


# phonenumbers.PhoneNumberType values -> PhoneKind (one table; numbers are the library's enum values)
_KIND_BY_TYPE: dict[int, PhoneKind] = {
    0: PhoneKind.LANDLINE,
    1: PhoneKind.MOBILE,
    2: PhoneKind.FIXED_LINE_OR_MOBILE,
    3: PhoneKind.TOLL_FREE,
    4: PhoneKind.PREMIUM_RATE,
    5: PhoneKind.SHARED_COST,
    6: PhoneKind.VOIP,
    7: PhoneKind.PERSONAL_NUMBER,
    8: PhoneKind.PAGER,
    9: PhoneKind.UAN,
    10: PhoneKind.VOICEMAIL,
    99: PhoneKind.UNKNOWN,
}

_EMAIL = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)


@dataclass(frozen=True, slots=True)
class Phone:
    """A valid phone number: E.164 form, kind and the region it belongs to (``CN``, ``HK``...)."""

    e164: str
    kind: PhoneKind
    region: str | None = None

    @property
    def is_mobile(self) -> bool:
        return self.kind in (PhoneKind.MOBILE, PhoneKind.FIXED_LINE_OR_MOBILE)


def _shown(raw: str) -> str:
    return mask("mobile", raw)


#: E.164 text → its :class:`Phone`, for numbers the ``phone_e164`` transform has just parsed and validated: the
#: model's validator gets that E.164 text next and need not parse it a second time (bounded; values only, never
#: logged). An E.164 text parses the same whatever the default region, so the answer is the one parsing gives.
_PARSED: dict[str, Phone] = {}
_PARSED_MAX = 512


def remember_phone(number: object) -> str:
    """The E.164 form of a parsed, *valid* ``phonenumbers.PhoneNumber``, remembered for :func:`normalise_phone`."""
    import phonenumbers

    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)  # type: ignore[arg-type]
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[e164] = Phone(e164=e164, kind=_KIND_BY_TYPE.get(int(phonenumbers.number_type(number)),  # type: ignore[arg-type]
                                                            PhoneKind.UNKNOWN),
                          region=phonenumbers.region_code_for_number(number))  # type: ignore[arg-type]
    return e164


def normalise_phone(raw: str, region: str = "CN", *, field: str | None = "contact_points[].value") -> Phone:
    """Parse and validate a phone number; return its E.164 form and kind.

    Args:
        raw: as received (spaces, dashes, ``+86``/``0086`` prefixes and full-width digits are accepted).
        region: default region for numbers written without a country code.
        field: canonical path reported in the error's ``field``.

    Raises:
        ValidationError: ``unparsable_phone`` or ``invalid_phone``; the message shows the value masked.
    """
    known = _PARSED.get(raw) if type(raw) is str else None
    if known is not None:
        return known
    import phonenumbers  # lazy: loads its metadata on first use

    if not isinstance(raw, str):
        raise ValidationError(f"phone must be a string, got {type(raw).__name__}", field=field,
                              code="unparsable_phone")
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text:
        raise ValidationError("phone is empty", field=field, code="unparsable_phone")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise ValidationError(f"phone {_shown(text)!r} cannot be parsed as a phone number", field=field,
                              code="unparsable_phone") from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(f"phone {_shown(text)!r} is not a valid number (region {region})", field=field,
                              code="invalid_phone")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    kind = _KIND_BY_TYPE.get(int(phonenumbers.number_type(number)), PhoneKind.UNKNOWN)
    return Phone(e164=e164, kind=kind, region=phonenumbers.region_code_for_number(number))


def normalise_email(raw: str, *, field: str | None = "contact_points[].value") -> str:
    """Lower-case and syntax-check an e-mail address (NFKC, surrounding whitespace removed).

    The check is deliberately basic (local part of RFC 5322 atoms, a dotted domain with a 2-63 letter TLD);
    deliverability is not checked.

    Raises:
        ValidationError: ``invalid_email``; the message shows the value masked.
    """
    if not isinstance(raw, str):
        raise ValidationError(f"e-mail must be a string, got {type(raw).__name__}", field=field,
                              code="invalid_email")
    v = unicodedata.normalize("NFKC", raw).strip().lower()
    if len(v) > 254 or not _EMAIL.fullmatch(v):
        raise ValidationError(f"e-mail {mask('email', v)!r} is not a valid address", field=field,
                              code="invalid_email")
    return v
