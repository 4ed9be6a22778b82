"""Named value transforms for the mapping language, and their registry.

A mapping step converts one vendor value into one canonical value (direction ``in``) and back (direction
``out``) through a chain of named transforms. Each transform is a small pydantic model: its fields are its
parameters (``extra="forbid"``), :meth:`Transform.to_canonical` runs on the way in and
:meth:`Transform.to_vendor` on the way out. There is no ``eval`` and no embedded code: a mapping can only
name the transforms registered here (:data:`TRANSFORMS`).

A transform is written in a mapping in one of three forms::

    transform: [trim, upper]                       # bare name
    transform: ["date:%Y%m%d", "mask:ric"]         # name:shorthand (the transform's main parameter)
    transform: [{name: date, format: "%Y%m%d", formats: ["%Y-%m-%d"]}]   # full form with parameters

A transform that cannot convert a value raises :class:`TransformError` with a message that never contains
the value itself (the engine adds a masked copy and the field names). A name that is not registered is a
:class:`~crmbridge.core.errors.MappingError` that lists the known names.

=========================== =============================================== ==========================================
name (shorthand param)      in (vendor → canonical)                         out (canonical → vendor)
=========================== =============================================== ==========================================
trim                        strip surrounding whitespace (also U+3000)       same
upper / lower               upper/lower-case strings                         same
fullwidth_to_halfwidth      ＡＢＣ１２３ → ABC123                            unchanged
phone_e164 (region)         any CN/international form → ``+8613812345678``  E.164, national, international or digits
email                       trimmed, lower-cased, shape-checked              unchanged
date (format)               string in ``format``/``formats`` → date          date → string in ``format``
datetime (offset)           ISO 8601 with offset → aware UTC datetime        ISO 8601 at ``offset`` (Zoho ``+08:00``)
epoch_ms                    epoch milliseconds → aware UTC datetime          aware datetime → epoch ms (int or string)
date_array                  Fineract ``[yyyy, m, d]`` → date                 date → ``[yyyy, m, d]``
decimal (places)            number or numeric string → Decimal               Decimal → string or JSON number
money (places)              ``¥1,234.50`` → Decimal (2 places)               Decimal → string or JSON number
integer (output)            ``"0042"`` → 42 (a fraction is an error)         int → number, or text padded to ``width``
to_text (places)            number → text (``12.5`` → ``"12.50"``)           text → JSON number
bool                        true/false/Y/N/1/0/是/否 → bool                  bool → configured vendor values
first                       list → its first element                         value → one-element list
split_name (part)           ``张三`` → family ``张`` or given ``三``        unchanged
join_name                   [family, given] → ``张三`` / ``San Zhang``      full name → [family, given]
mask (kind)                 (not allowed on the way in)                      masked value (docs/canonical.md §8)
drop_masked                 a masked value (``张*``) → None (treated missing) unchanged
aum_band                    amount → band code                               amount → band code
default (value)             None/"" → value                                  None/"" → value
code (table)                vendor code → canonical via a code table         canonical → vendor code
=========================== =============================================== ==========================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from crmbridge.canonical.masking import MASK_KINDS, mask
from crmbridge.canonical.model import AUM_BANDS
from crmbridge.core.errors import MappingError

__all__ = [
    "CodeTable",
    "DEFAULT_AUM_BANDS",
    "TRANSFORMS",
    "Transform",
    "TransformContext",
    "TransformError",
    "build_transform",
    "parse_transform_spec",
    "register_transform",
    "run_chain",
    "transform_names",
]


class TransformError(ValueError):
    """A value cannot be converted. The message never contains the value."""


# --------------------------------------------------------------------------------------------------------------
# code tables (used by the ``code`` transform and the ``code`` step)


class CodeTable(BaseModel):
    """A named two-way value map, declared under ``code_tables:`` in a mapping.

    Example::

        code_tables:
          segment:
            description: Zoho picklist Segment__c ↔ canonical segment.code
            map:                 # vendor value → canonical value (the in direction)
              Mass: MASS
              Affluent: AFFLUENT
              Wealth: WEALTH
              Private: PRIVATE
              Private Banking: PRIVATE     # a second vendor spelling
            out:                 # canonical → vendor, where the inverse of ``map`` is ambiguous
              PRIVATE: Private
            vendor_values: [Mass, Affluent, Wealth, Private, Private Banking]   # every picklist value (checked)
            personal: false      # true: values are personal data and are masked in errors

    The out direction uses ``out`` first, then the inverse of ``map`` (a canonical value that several vendor
    values map to must be listed under ``out``).
    """

    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    map: dict[str, str] = Field(description="Vendor value → canonical value (the in direction).")
    out: dict[str, str] = Field(default_factory=dict,
                                description="Canonical value → vendor value (overrides the inverse of map).")
    vendor_values: list[str] | None = Field(
        default=None, description="Every value the vendor field can hold; each must be covered by map.")
    personal: bool = Field(default=False, description="Values are personal data: mask them in errors.")

    @field_validator("map", "out", mode="before")
    @classmethod
    def _stringify(cls, v: Any) -> Any:
        # YAML turns Y/N/yes/1 into bools and ints; code values are strings.
        if isinstance(v, Mapping):
            return {_code_str(k): _code_str(x) for k, x in v.items()}
        return v

    @field_validator("vendor_values", mode="before")
    @classmethod
    def _stringify_list(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [_code_str(x) for x in v]
        return v

    def inverse(self) -> tuple[dict[str, str], set[str]]:
        """The canonical → vendor map and the canonical values whose inverse is ambiguous (not in ``out``)."""
        inv: dict[str, str] = {}
        ambiguous: set[str] = set()
        for vendor, canon in self.map.items():
            if canon in inv and inv[canon] != vendor:
                ambiguous.add(canon)
            inv.setdefault(canon, vendor)
        inv.update(self.out)
        return inv, ambiguous - set(self.out)

    def to_canonical(self, value: Any) -> str:
        key = _code_str(value)
        if key not in self.map:
            raise KeyError(key)
        return self.map[key]

    def to_vendor(self, value: Any) -> str:
        key = _code_str(value)
        inv, ambiguous = self.inverse()
        if key not in inv or key in ambiguous:
            raise KeyError(key)
        return inv[key]


def _code_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if hasattr(v, "value") and not isinstance(v, str | int | float | Decimal):  # enums
        v = v.value
    return str(v)


@dataclass
class TransformContext:
    """What a transform may consult at run time: the mapping's code tables."""

    code_tables: Mapping[str, CodeTable] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------
# base class and registry


class Transform(BaseModel):
    """A named value conversion. Subclasses declare parameters as fields and override the two directions.

    Class attributes:
        name: the registered name used in mappings.
        shorthand: the parameter filled by the ``name:value`` short form (None: no short form).
        handles_none: whether ``None`` is passed in (otherwise ``None`` passes through untouched).
        directions: where the transform may appear (``{"in", "out"}`` by default).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str] = ""
    shorthand: ClassVar[str | None] = None
    handles_none: ClassVar[bool] = False
    directions: ClassVar[frozenset[str]] = frozenset({"in", "out"})

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        """Vendor → canonical. Default: unchanged."""
        return value

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        """Canonical → vendor. Default: unchanged."""
        return value

    def describe(self) -> str:
        params = self.model_dump(exclude_defaults=True)
        if not params:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in params.items())})"


TRANSFORMS: dict[str, type[Transform]] = {}


def register_transform(cls: type[Transform]) -> type[Transform]:
    """Class decorator: register a transform under ``cls.name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    TRANSFORMS[cls.name] = cls
    return cls


def transform_names() -> list[str]:
    """Registered transform names, sorted."""
    return sorted(TRANSFORMS)


def parse_transform_spec(spec: Any) -> tuple[str, dict[str, Any]]:
    """Split a transform as written in a mapping into ``(name, params)``.

    Raises:
        MappingError: the spec is neither a string nor a mapping with a ``name``.
    """
    if isinstance(spec, str):
        name, sep, arg = spec.partition(":")
        name = name.strip()
        if not sep:
            return name, {}
        cls = TRANSFORMS.get(name)
        if cls is None:
            return name, {}
        if cls.shorthand is None:
            raise MappingError(f"transform {name!r} has no short form {name}:…; use {{name: {name}, …}}")
        return name, {cls.shorthand: arg}
    if isinstance(spec, Mapping):
        params = dict(spec)
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise MappingError("a transform written as a mapping needs a 'name' key")
        return name, params
    raise MappingError(f"a transform is a name or a mapping with 'name', not {type(spec).__name__}")


def build_transform(spec: Any, *, direction: str | None = None,
                    code_tables: Mapping[str, CodeTable] | None = None) -> Transform:
    """Build a transform from its mapping spec.

    Args:
        spec: ``"trim"``, ``"mask:ric"`` or ``{"name": "date", "format": "%Y%m%d"}``.
        direction: ``"in"`` or ``"out"`` when the transform is used in one direction only (checked against
            the transform's allowed directions); ``None`` for a both-ways chain.
        code_tables: the mapping's code tables, to check ``code`` references.

    Raises:
        MappingError: unknown name (listing the known ones), bad parameters, or wrong direction.
    """
    name, params = parse_transform_spec(spec)
    cls = TRANSFORMS.get(name)
    if cls is None:
        raise MappingError(f"unknown transform {name!r}; known transforms: {', '.join(transform_names())}")
    try:
        t = cls(**params)
    except PydanticValidationError as exc:
        msgs = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors())
        raise MappingError(f"transform {name!r}: {msgs}") from None
    except (TypeError, ValueError) as exc:
        raise MappingError(f"transform {name!r}: {exc}") from None
    if direction is not None and direction not in cls.directions:
        raise MappingError(f"transform {name!r} applies to the {'/'.join(sorted(cls.directions))} direction only")
    if code_tables is not None and isinstance(t, CodeTransform) and t.table not in code_tables:
        known = ", ".join(sorted(code_tables)) or "(none declared)"
        raise MappingError(f"transform 'code' refers to unknown code table {t.table!r}; declared tables: {known}")
    return t


def run_chain(chain: list[tuple[Transform, str]], value: Any, ctx: TransformContext) -> Any:
    """Run ``(transform, "in"|"out")`` pairs in order. ``None`` skips transforms that do not handle it."""
    for t, way in chain:
        if value is None and not t.handles_none:
            continue
        try:
            value = t.to_canonical(value, ctx) if way == "in" else t.to_vendor(value, ctx)
        except TransformError:
            raise
        except (TypeError, ValueError, AttributeError, LookupError, ArithmeticError, RecursionError) as exc:
            # a value of a type or shape the transform does not expect (a vendor sent a list, a bool, a number too
            # large): a record-level problem of this field, never a crash of the run. The value is not shown here.
            raise TransformError(f"{t.name}: cannot transform a {type(value).__name__} value") from exc
    return value


# --------------------------------------------------------------------------------------------------------------
# string transforms

_WS = " \t\r\n\u3000\u00a0"


def _strs(value: Any, fn: Any) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [fn(v) if isinstance(v, str) else v for v in value]
    return value


@register_transform
class Trim(Transform):
    """Strip surrounding whitespace, including the ideographic space U+3000. ``""`` becomes ``None``."""

    name: ClassVar[str] = "trim"
    empty_to_none: bool = True

    def _do(self, value: Any) -> Any:
        v = _strs(value, lambda s: s.strip(_WS))
        return None if (self.empty_to_none and v == "") else v

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        return self._do(value)

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        return self._do(value)


@register_transform
class Upper(Transform):
    """Upper-case strings (both directions)."""

    name: ClassVar[str] = "upper"

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        return _strs(value, str.upper)

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        return _strs(value, str.upper)


@register_transform
class Lower(Transform):
    """Lower-case strings (both directions)."""

    name: ClassVar[str] = "lower"

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        return _strs(value, str.lower)

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        return _strs(value, str.lower)


#: full-width ASCII forms U+FF01–U+FF5E → ASCII, the ideographic space U+3000 → " "
_HALF = {o: o - 0xFEE0 for o in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def _half(s: str) -> str:
    return s.translate(_HALF)


@register_transform
class FullwidthToHalfwidth(Transform):
    """Full-width ASCII forms (``１１０１０５…Ｘ``, ``＠``, U+3000) to their ASCII forms. Out: unchanged."""

    name: ClassVar[str] = "fullwidth_to_halfwidth"

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        return _strs(value, _half)


@lru_cache(maxsize=1024)  # a record's number is parsed once: two fields from one value, the same value again
def _parse_phone(text: str, region: str, mobile_only: bool) -> phonenumbers.PhoneNumber:
    """A valid number (never mutated by its users: the answer is shared); TransformError otherwise (not cached)."""
    raw = _half(text).strip(_WS)
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    try:
        n = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise TransformError("not a phone number") from None
    if not phonenumbers.is_valid_number(n):
        raise TransformError("not a valid phone number")
    if mobile_only and phonenumbers.number_type(n) not in (
            phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
        raise TransformError("not a mobile number")
    return n


@register_transform
class PhoneE164(Transform):
    """Parse a phone number (default region CN) into E.164; out in the chosen ``format``.

    ``mobile_only: true`` rejects numbers that are not mobile numbers (for ``contact_points[type=MOBILE]``).
    Parsing uses ``is_valid_number`` (not ``is_possible_number``): ``12345678901`` and ``95566`` are refused.
    """

    name: ClassVar[str] = "phone_e164"
    shorthand: ClassVar[str | None] = "region"
    region: str = "CN"
    format: Literal["e164", "national", "international", "digits"] = "e164"
    mobile_only: bool = False

    def _parse(self, value: Any) -> phonenumbers.PhoneNumber:
        return _parse_phone(str(value), self.region, self.mobile_only)

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        if value == "":
            return None
        from crmbridge.canonical.phones import remember_phone  # the model's validator then needs no second parse

        return remember_phone(self._parse(value))

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        if self.format == "e164":
            return value
        n = self._parse(value)
        if self.format == "digits":
            return phonenumbers.national_significant_number(n)
        fmt = (phonenumbers.PhoneNumberFormat.NATIONAL if self.format == "national"
               else phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        return phonenumbers.format_number(n, fmt)


_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")


@register_transform
class Email(Transform):
    """Trim, convert full-width characters, lower-case and check the shape of an e-mail address. Out: unchanged."""

    name: ClassVar[str] = "email"

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        v = _half(str(value)).strip(_WS).lower()
        if not v:
            return None
        if not _EMAIL_RE.fullmatch(v):
            raise TransformError("not an e-mail address")
        return v


# --------------------------------------------------------------------------------------------------------------
# dates and times


def _tz(spec: str) -> timezone | ZoneInfo:
    m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", spec.strip())
    if m:
        delta = timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
        return timezone(-delta if m.group(1) == "-" else delta)
    if spec.strip().upper() in ("Z", "UTC"):
        return UTC
    try:
        return ZoneInfo(spec)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone or offset {spec!r} (use +08:00 or Asia/Shanghai)") from None


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise TransformError("not a date") from None
    raise TransformError("not a date")


def _as_aware(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise TransformError("not a date-time") from None
    if not isinstance(value, datetime):
        raise TransformError("not a date-time")
    if value.tzinfo is None:
        raise TransformError("date-time without a UTC offset")
    return value


@register_transform
class DateTransform(Transform):
    """A calendar date. In: a string in ``format`` (or one of ``formats``) → ``date``; out: ``date`` → ``format``.

    Example: ``{name: date, format: "%Y%m%d"}`` for T24 ``DATE.OF.BIRTH`` (``19491231``).
    """

    name: ClassVar[str] = "date"
    shorthand: ClassVar[str | None] = "format"
    format: str = "%Y-%m-%d"
    formats: list[str] = Field(default_factory=list)

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        s = str(value).strip(_WS)
        if not s:
            return None
        for fmt in (self.format, *self.formats):
            try:
                return datetime.strptime(s, fmt).date()
            except ValueError:
                continue
        raise TransformError(f"not a date in the format {self.format}")

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        return _as_date(value).strftime(self.format)


@register_transform
class DateTimeTransform(Transform):
    """A point in time. In: ISO 8601 with an offset (Zoho ``2019-03-22T11:10:55+05:30``) → aware UTC datetime.

    ``assume_tz`` (``+08:00`` or ``Asia/Shanghai``) accepts naive values and places them in that zone; without it a
    naive value is an error. ``format`` (strptime) reads non-ISO strings. Out: ISO 8601 to the second at ``offset``
    (Zoho never accepts ``Z`` or milliseconds).
    """

    name: ClassVar[str] = "datetime"
    shorthand: ClassVar[str | None] = "offset"
    offset: str = "+00:00"
    assume_tz: str | None = None
    format: str | None = None

    @model_validator(mode="after")
    def _check_zones(self) -> DateTimeTransform:
        _tz(self.offset)
        if self.assume_tz:
            _tz(self.assume_tz)
        return self

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        if isinstance(value, str):
            s = value.strip(_WS)
            if not s:
                return None
            try:
                value = datetime.strptime(s, self.format) if self.format else datetime.fromisoformat(s)
            except ValueError:
                raise TransformError("not a date-time") from None
        if not isinstance(value, datetime):
            raise TransformError("not a date-time")
        if value.tzinfo is None:
            if not self.assume_tz:
                raise TransformError("date-time without a UTC offset")
            value = value.replace(tzinfo=_tz(self.assume_tz))
        return value.astimezone(UTC)

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        dt = _as_aware(value).astimezone(_tz(self.offset))
        return dt.isoformat(timespec="seconds")


@register_transform
class EpochMs(Transform):
    """Epoch milliseconds (Fxiaoke ``last_modified_time: 1610699820445``) ↔ aware UTC datetime.

    ``as_string: true`` writes ``"1610699820445"`` instead of a JSON number.
    """

    name: ClassVar[str] = "epoch_ms"
    as_string: bool = False

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        if isinstance(value, bool):
            raise TransformError("not an epoch-milliseconds value")
        if isinstance(value, str):
            if not value.strip():
                return None
            if not re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
                raise TransformError("not an epoch-milliseconds value")
            value = Decimal(value.strip())
        if not isinstance(value, int | float | Decimal):
            raise TransformError("not an epoch-milliseconds value")
        ms = int(value)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        try:
            return epoch + timedelta(milliseconds=ms)
        except OverflowError:
            raise TransformError("epoch-milliseconds value out of range") from None

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        if isinstance(value, date) and not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day, tzinfo=UTC)
        dt = _as_aware(value)
        ms = (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        return str(ms) if self.as_string else ms


@register_transform
class DateArray(Transform):
    """Apache Fineract dates ``[yyyy, m, d]`` ↔ ``date``."""

    name: ClassVar[str] = "date_array"

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        if not isinstance(value, list | tuple) or len(value) != 3 or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in value):
            raise TransformError("not a [yyyy, m, d] date array")
        try:
            return date(*value)
        except ValueError:
            raise TransformError("not a valid calendar date") from None

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        d = _as_date(value)
        return [d.year, d.month, d.day]


# --------------------------------------------------------------------------------------------------------------
# numbers


def _to_decimal(value: Any, *, strip_currency: bool = False) -> Decimal:
    if isinstance(value, bool):
        raise TransformError("not a number")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int | float):
        d = Decimal(str(value))
    elif isinstance(value, str):
        s = _half(value).strip(_WS).replace(",", "")
        if strip_currency:
            s = re.sub(r"^(CNY|RMB|¥|￥)\s*|\s*(CNY|RMB|元)$", "", s, flags=re.I)
        try:
            d = Decimal(s)
        except InvalidOperation:
            raise TransformError("not a number") from None
    else:
        raise TransformError("not a number")
    if not d.is_finite():
        raise TransformError("not a finite number")
    return d


def _emit_number(d: Decimal, output: str) -> Any:
    if output == "string":
        return format(d, "f")
    return int(d) if d == d.to_integral_value() and d.as_tuple().exponent >= 0 else float(d)


@register_transform
class DecimalTransform(Transform):
    """A number as ``Decimal``. ``places`` rounds half-up; ``output: string`` writes ``"100.01"`` (Fxiaoke)."""

    name: ClassVar[str] = "decimal"
    shorthand: ClassVar[str | None] = "places"
    places: int | None = Field(default=None, ge=0, le=12)
    output: Literal["number", "string"] = "number"

    def _q(self, d: Decimal) -> Decimal:
        return d if self.places is None else d.quantize(Decimal(1).scaleb(-self.places), ROUND_HALF_UP)

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        if value == "":
            return None
        return self._q(_to_decimal(value))

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        return _emit_number(self._q(_to_decimal(value)), self.output)


@register_transform
class MoneyTransform(DecimalTransform):
    """An amount: like ``decimal`` with 2 places, also reading ``¥1,234.50``, ``1234.50 CNY``, ``1,234元``."""

    name: ClassVar[str] = "money"
    places: int | None = Field(default=2, ge=0, le=12)

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        if value == "":
            return None
        return self._q(_to_decimal(value, strip_currency=True))


@register_transform
class IntegerTransform(Transform):
    """Text ↔ whole number. In: ``"0042"``, ``42``, ``"42.0"`` → ``42`` (a fraction is an error); out: the number,
    or with ``output: string`` its text, zero-padded to ``width`` (``{name: integer, output: string, width: 6}``
    writes ``000042``)."""

    name: ClassVar[str] = "integer"
    shorthand: ClassVar[str | None] = "output"
    output: Literal["number", "string"] = "number"
    width: int | None = Field(default=None, ge=1, le=40)

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        if value == "":
            return None
        d = _to_decimal(value)
        if d != d.to_integral_value():
            raise TransformError("not a whole number")
        return int(d)

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        n = self.to_canonical(value, ctx)
        if n is None or self.output == "number":
            return n
        text = str(abs(n)).zfill(self.width or 0)
        return f"-{text}" if n < 0 else text


@register_transform
class ToText(Transform):
    """Number ↔ text, for a vendor number held as text in the canonical model. In: ``12345`` → ``"12345"``
    (``places`` fixes the decimals: ``to_text:2`` gives ``"12.50"``); out: the text back to a JSON number (a text
    that is not a number is an error)."""

    name: ClassVar[str] = "to_text"
    shorthand: ClassVar[str | None] = "places"
    places: int | None = Field(default=None, ge=0, le=12)

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        if value == "":
            return None
        d = _to_decimal(value)
        if self.places is not None:
            d = d.quantize(Decimal(1).scaleb(-self.places), ROUND_HALF_UP)
        return format(d, "f")

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        if value == "":
            return None
        return _emit_number(_to_decimal(value), "number")


# --------------------------------------------------------------------------------------------------------------
# booleans, lists

_TRUE = (True, 1, "true", "t", "1", "y", "yes", "on", "是")
_FALSE = (False, 0, "false", "f", "0", "n", "no", "off", "否")


@register_transform
class BoolTransform(Transform):
    """Booleans. In accepts ``true_values``/``false_values`` (case-insensitive); out writes ``true``/``false``.

    Example for a FLEXCUBE Y/N flag: ``{name: bool, true: "Y", false: "N"}``.
    """

    name: ClassVar[str] = "bool"
    true: Any = True
    false: Any = False
    true_values: list[Any] = Field(default_factory=lambda: list(_TRUE))
    false_values: list[Any] = Field(default_factory=lambda: list(_FALSE))

    @staticmethod
    def _norm(v: Any) -> Any:
        return v.strip(_WS).lower() if isinstance(v, str) else v

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        v = self._norm(value)
        if v == "":
            return None
        trues = [self._norm(x) for x in (*self.true_values, self.true)]
        falses = [self._norm(x) for x in (*self.false_values, self.false)]
        # compare booleans by identity-ish type so 1 == True does not blur with other ints
        if any(v == t and type(v) is type(t) for t in trues):
            return True
        if any(v == f and type(v) is type(f) for f in falses):
            return False
        raise TransformError("not a boolean")

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        if not isinstance(value, bool):
            value = self.to_canonical(value, ctx)
        return self.true if value else self.false


@register_transform
class First(Transform):
    """In: the first element of a list (Fxiaoke ``owner: ["FSUID_…"]``); out: a one-element list."""

    name: ClassVar[str] = "first"

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        if isinstance(value, list | tuple):
            return value[0] if value else None
        return value

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        return [value]


# --------------------------------------------------------------------------------------------------------------
# names

_COMPOUND = frozenset(
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 司空 夏侯 令狐 "
    "端木 轩辕 独孤 南宫 西门 呼延 赫连 澹台 公冶 宗政 濮阳 太史 申屠 钟离 闻人".split())
_CJK = re.compile(r"[\u3400-\u9fff]")


def _split(full: str) -> tuple[str, str]:
    s = full.strip(_WS)
    if not s:
        return "", ""
    if _CJK.match(s):
        s = re.sub(r"[\s·]", "", s) if not re.search(r"·", s) else s
        n = 2 if s[:2] in _COMPOUND and len(s) > 2 else 1
        return s[:n], s[n:]
    words = s.split()
    if len(words) == 1:
        return words[0], ""
    if words[0].isupper() and not words[-1].isupper():  # "ZHANG San" (GB/T 28039 surname first)
        return words[0], " ".join(words[1:])
    return words[-1], " ".join(words[:-1])


@register_transform
class SplitName(Transform):
    """In: a full name → its family (``part: family``) or given (``part: given``) part. Out: unchanged.

    Chinese names split after the family name (two characters for 复姓 such as 欧阳); Latin names take the last
    word as the family name unless written surname-first in capitals (``ZHANG San``).
    """

    name: ClassVar[str] = "split_name"
    shorthand: ClassVar[str | None] = "part"
    part: Literal["family", "given"]

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        fam, given = _split(str(value))
        v = fam if self.part == "family" else given
        return v or None


@register_transform
class JoinName(Transform):
    """In: ``[family, given]`` (a field step with two vendor paths) → the full name; out: full → ``[family, given]``.

    Chinese: ``张`` + ``三`` → ``张三``; Latin: ``Zhang`` + ``San`` → ``San Zhang``.
    """

    name: ClassVar[str] = "join_name"
    handles_none: ClassVar[bool] = False

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise TransformError("join_name needs two values [family, given]")
        fam, given = ((v or "").strip(_WS) if isinstance(v, str) else (v or "") for v in value)
        if not fam and not given:
            return None
        if _CJK.match(fam or given):
            return f"{fam}{given}"
        return " ".join(p for p in (given, fam) if p)

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        fam, given = _split(str(value))
        return [fam or None, given or None]


# --------------------------------------------------------------------------------------------------------------
# minimisation, bands, defaults, code tables


@register_transform
class Mask(Transform):
    """Out only: push the masked form (docs/canonical.md §8), e.g. ``mask:ric`` → ``1*************002X``.

    Kinds: the keys of :data:`crmbridge.canonical.masking.MASK_KINDS`.
    """

    name: ClassVar[str] = "mask"
    shorthand: ClassVar[str | None] = "kind"
    directions: ClassVar[frozenset[str]] = frozenset({"out"})
    kind: str

    @field_validator("kind")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in MASK_KINDS:
            raise ValueError(f"unknown mask kind {v!r}; known: {', '.join(sorted(MASK_KINDS))}")
        return v

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        raise TransformError("mask applies to the out direction only")

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        return mask(self.kind, value)


@register_transform
class DropMasked(Transform):
    """In: a value that carries the mask character (``张*``, ``138****5678``) is treated as missing. Out: unchanged.

    A CRM shows masked values that crmbridge itself pushed; when such a record flows back (two-way jobs, echoes),
    this keeps ``张*`` from ever becoming a canonical name. Put it first in the ``in:`` chain of masked fields.
    """

    name: ClassVar[str] = "drop_masked"
    marker: str = Field(default="*", min_length=1)

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        if isinstance(value, str) and (self.marker in value or "＊" in value):
            return None
        if isinstance(value, list) and any(isinstance(v, str) and self.marker in v for v in value):
            return None
        return value


class Band(BaseModel):
    """One AUM band: amounts below ``below`` (exclusive; ``null`` = no upper bound) get ``code``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    below: Decimal | None = None
    code: str


DEFAULT_AUM_BANDS = (
    *(Band(below=limit, code=code) for limit, code in AUM_BANDS),
    Band(below=None, code="GE_30M"),
)


@register_transform
class AumBand(Transform):
    """An AUM amount → its band code (both directions: the CRM receives the band, never the amount).

    Default bands (CNY) are the canonical model's (:data:`crmbridge.canonical.model.AUM_BANDS`): ``LT_50K`` < 50,000 ≤
    ``50K_500K`` < 500,000 ≤ ``500K_6M`` < 6,000,000 ≤ ``6M_30M`` < 30,000,000 ≤ ``GE_30M``.
    Override with ``bands: [{below: 50000, code: A}, …, {below: null, code: D}]`` in ascending order.
    """

    name: ClassVar[str] = "aum_band"
    bands: list[Band] = Field(default_factory=lambda: list(DEFAULT_AUM_BANDS))

    @field_validator("bands")
    @classmethod
    def _ordered(cls, v: list[Band]) -> list[Band]:
        if not v or v[-1].below is not None:
            raise ValueError("the last band needs below: null")
        limits = [b.below for b in v[:-1]]
        if any(x is None for x in limits) or limits != sorted(limits):  # type: ignore[type-var]
            raise ValueError("bands must be in ascending order of 'below'")
        return v

    def _band(self, value: Any) -> str:
        d = _to_decimal(value, strip_currency=True)
        if d < 0:
            raise TransformError("negative AUM amount")
        for b in self.bands:
            if b.below is None or d < b.below:
                return b.code
        raise AssertionError("unreachable")  # pragma: no cover

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        return self._band(value)

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        return self._band(value)


@register_transform
class Default(Transform):
    """Replace ``None`` or ``""`` by ``value`` (both directions): ``default:CN`` or ``{name: default, value: 0}``."""

    name: ClassVar[str] = "default"
    shorthand: ClassVar[str | None] = "value"
    handles_none: ClassVar[bool] = True
    value: Any

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        return self.value if value is None or value == "" else value

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        return self.value if value is None or value == "" else value


@register_transform
class CodeTransform(Transform):
    """Look a value up in one of the mapping's ``code_tables`` (``code:segment``). An unmapped value is an error
    naming the table (the engine masks the value when the table or the canonical field is personal)."""

    name: ClassVar[str] = "code"
    shorthand: ClassVar[str | None] = "table"
    table: str

    def _table(self, ctx: TransformContext) -> CodeTable:
        try:
            return ctx.code_tables[self.table]
        except KeyError:
            raise TransformError(f"unknown code table {self.table!r}") from None

    def to_canonical(self, value: Any, ctx: TransformContext) -> Any:
        if value == "":
            return None
        try:
            return self._table(ctx).to_canonical(value)
        except KeyError:
            raise TransformError(f"value not in code table {self.table!r} (in direction)") from None

    def to_vendor(self, value: Any, ctx: TransformContext) -> Any:
        try:
            return self._table(ctx).to_vendor(value)
        except KeyError:
            raise TransformError(f"value not in code table {self.table!r} (out direction)") from None
