"""Blind indexes: keyed, truncated HMACs of normalised values, for equality matching without decryption.

``index = HMAC(k_field, normalise(value))`` truncated to ``bits`` (64 by default, 32-64 allowed; docs/canonical.md
§9), with ``k_field = HKDF(root_key, info="blind-index|<field>")`` so each field has its own key and an index
of one field says nothing about another. The root key is a data key kept (wrapped) in ``crypto_data_keys``;
:meth:`BlindIndexer.from_cipher` loads it. HMAC-SHA256 by default, HMAC-SM3 for national-algorithm deployments;
the output carries the algorithm (``b1:`` SHA-256, ``b2:`` SM3) so both can coexist.

Normalisation is per kind: identifiers are upper-cased with spaces and hyphens removed (``11010519491231002x`` and
``11010519491231002X `` index the same), phones are brought to E.164, e-mails are lower-cased, names are NFKC with
single spaces. Identity resolution indexes ``scheme|value`` (:meth:`BlindIndexer.identifier`).
An index leaks equality (and frequency); truncation adds rare false positives, filtered after decryption.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

import phonenumbers
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crmbridge.core.errors import ConfigurationError
from crmbridge.sync.security.crypto import FieldCipher, Keys, hmac_bytes

__all__ = [
    "BlindIndexer",
    "SCHEME_KINDS",
    "normalise",
]

_SPACES = re.compile(r"[\s\-]+")


def _nfkc(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip()


def _norm_id(value: str) -> str:
    return _SPACES.sub("", _nfkc(value)).upper()


def _norm_phone(value: str) -> str:
    raw = _nfkc(value)
    try:
        n = phonenumbers.parse(raw, "CN")
    except phonenumbers.NumberParseException:
        n = None
    if n is not None and phonenumbers.is_valid_number(n):
        return phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)
    return "+" + re.sub(r"\D", "", raw) if raw.startswith("+") else re.sub(r"\D", "", raw)


def _norm_email(value: str) -> str:
    return _nfkc(value).lower()


def _norm_name(value: str) -> str:
    return " ".join(_nfkc(value).split()).upper()


_NORMALISERS: dict[str, Callable[[str], str]] = {
    "id": _norm_id,
    "phone": _norm_phone,
    "email": _norm_email,
    "name": _norm_name,
    "text": lambda v: " ".join(_nfkc(v).split()),
    "date": lambda v: _nfkc(v).replace("/", "-"),
    "raw": lambda v: v,  # the caller normalised already (composite match keys)
}

#: identifier and contact-point schemes (docs/canonical.md §2) → normalisation kind
SCHEME_KINDS: dict[str, str] = {
    **dict.fromkeys(["CN_RIC", "CN_TEMP_RIC", "PASSPORT", "HK_MO_PERMIT", "TW_PERMIT", "HMT_RESIDENCE_PERMIT",
                     "FOREIGN_PR_ID", "CN_USCC", "ORG_CODE", "BUSINESS_LICENCE", "ACCOUNT"], "id"),
    **dict.fromkeys(["MOBILE", "LANDLINE", "PHONE"], "phone"),
    "EMAIL": "email",
    "WECHAT_OPENID": "text",
    "NAME": "name",
}

#: field names (or mask kinds) commonly indexed → normalisation kind
_FIELD_KINDS = {"ric": "id", "uscc": "id", "passport": "id", "permit": "id", "account": "id", "mobile": "phone",
                "landline": "phone", "phone": "phone", "email": "email", "name": "name"}


def normalise(kind: str, value: str) -> str:
    """Normalise ``value`` as ``kind`` (id, phone, email, name, text, date, raw, or a scheme such as CN_RIC/MOBILE)."""
    k = SCHEME_KINDS.get(kind.upper(), _FIELD_KINDS.get(kind.lower(), kind.lower()))
    try:
        return _NORMALISERS[k](value)
    except KeyError:
        raise ValueError(f"unknown normalisation kind {kind!r}; known: {', '.join(sorted(_NORMALISERS))} "
                         f"or a scheme ({', '.join(sorted(SCHEME_KINDS))})") from None


class BlindIndexer:
    """Computes blind indexes with one derived key per field.

    Args:
        root_key: at least 32 bytes of key material (the ``blind-index`` data key).
        algorithm: ``sha256`` (HMAC-SHA256) or ``sm3`` (HMAC-SM3).
        bits: truncation, 32 to 64 bits in steps of 8.
    """

    def __init__(self, root_key: bytes, *, algorithm: str = "sha256", bits: int = 64) -> None:
        if len(root_key) < 32:
            raise ConfigurationError("the blind-index root key must be at least 32 bytes")
        if algorithm not in ("sha256", "sm3"):
            raise ConfigurationError(f"unknown blind-index algorithm {algorithm!r}; known: sha256, sm3")
        if bits % 8 or not 32 <= bits <= 64:
            raise ConfigurationError("blind-index length must be 32 to 64 bits, a multiple of 8")
        self._root = root_key
        self.algorithm = algorithm
        self.bits = bits
        self._prefix = "b1:" if algorithm == "sha256" else "b2:"
        self._field_keys: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"BlindIndexer(algorithm={self.algorithm!r}, bits={self.bits})"

    @classmethod
    def from_cipher(cls, keys: Keys, cipher: FieldCipher, *, bits: int = 64) -> BlindIndexer:
        """The indexer whose root key is the database's ``blind-index`` data key (created on first use); ``keys``
        is the unit of work (``StoreTx``) or its key repository (``tx.keys``)."""
        return cls(cipher.blind_index_root(keys), algorithm=cipher.hash_algorithm, bits=bits)

    def field_key(self, field: str) -> bytes:
        key = self._field_keys.get(field)
        if key is None:
            algo = hashes.SHA256() if self.algorithm == "sha256" else hashes.SM3()
            key = HKDF(algo, 32, None, f"blind-index|{field}".encode()).derive(self._root)
            self._field_keys[field] = key
        return key

    def index(self, field: str, value: str, *, kind: str | None = None) -> str:
        """The blind index of ``value`` for ``field`` (normalised as ``kind``, default: inferred from ``field``).

        ``field`` is the canonical path or name (``identifiers.CN_RIC``, ``contact_points.MOBILE``, ``name``);
        its last segment picks the normalisation when ``kind`` is not given.
        """
        norm = normalise(kind or field.rsplit(".", 1)[-1], value)
        mac = hmac_bytes(self.field_key(field), norm.encode("utf-8"), self.algorithm)
        return self._prefix + mac[: self.bits // 8].hex()

    def identifier(self, scheme: str, value: str) -> str:
        """Identity-resolution index over ``scheme|value`` (e.g. ``CN_RIC``, ``CN_USCC``, ``MOBILE``).

        The scheme is case-insensitive (``mobile`` = ``MOBILE``); a scheme without a known normalisation (a custom
        match key such as ``DATE_OF_BIRTH``) is normalised as text (NFKC, single spaces).
        """
        scheme = scheme.upper()
        known = scheme in SCHEME_KINDS or scheme.lower() in _FIELD_KINDS
        norm = normalise(scheme if known else "text", value)
        mac = hmac_bytes(self.field_key(f"identifier.{scheme}"), f"{scheme}|{norm}".encode(), self.algorithm)
        return self._prefix + mac[: self.bits // 8].hex()
