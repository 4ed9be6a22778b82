"""Field-level envelope encryption: a master key (KEK), versioned data keys (DEKs) and self-describing tokens.

How the keys fit together (docs/canonical.md §9)::

    KeyProvider (env:/file: master key, or a KMS/HSM plugin)     wraps/unwraps ─┐
        └── crypto_data_keys rows: (kid, scope, version, algorithm, wrapped) ◄──┘
              scope "system"           one key per version; values not tied to a party
              scope "party:<id>"       one key per party and version; destroying them erases the party
              scope "blind-index"      the root key blind indexes are derived from (never rotated)

Every ciphertext is an envelope: a 10-byte header (format, algorithm id, data key id ``kid``, key version), a
96-bit random nonce and the AEAD ciphertext + tag. It is stored as a text token ``cb1:<base64url of the envelope>``
(String/JSON/Text columns) or, in binary columns, as the raw bytes ``0xCB 0x01 <envelope>`` (a quarter smaller).
The format byte says what was sealed: 1 the value itself, 2 the value deflated first with the preset dictionary
of :mod:`crmbridge.sync.security._zdict` (``compress=True``: sealed JSON of a canonical party shrinks ~7×; a value
deflate would not shrink is sealed as format 1). Both forms and both formats are read everywhere, so rows written
before compression still decrypt. (Compression leaks a value's compressibility through its length; sealed values
here are records the bank already holds, never attacker-chosen text beside a secret the attacker probes for.)
The associated data is the header plus ``table``, ``column`` and ``record``, so a token copied into another
row, column or table fails to decrypt. AES-256-GCM (algorithm id 1) is the default; SM4-GCM (id 2) is the
national-algorithm alternative. Both coexist: each token names its algorithm and key.

Rotation (:meth:`FieldCipher.rotate`) adds a new key version: new values use it, old versions keep
decrypting. :func:`crmbridge.sync.security.protect.reencrypt` (``crmbridge keys rotate --reencrypt``) rewrites stored
tokens under the newest version. Key providers are pluggable through the entry-point group
``crmbridge.key_providers`` (a factory taking the text after ``<name>:``), so a KMS or HSM needs no caller change.

All database work runs through the caller's :class:`crmbridge.sync.state.keys.KeyRepository` (the engine commits
ledger, cursor and keys in one transaction); nothing here runs SQL or commits.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
import threading
import time
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from crmbridge.core.errors import ConfigurationError, CrmBridgeError, SecretError
from crmbridge.core.secrets import resolve_secret
from crmbridge.sync.security._zdict import DICTIONARIES
from crmbridge.sync.state.keys import KeyRepository, as_connection
from crmbridge.sync.state.tables import DataKey

__all__ = [
    "ALGORITHMS",
    "Conn",
    "DataKey",
    "DecryptionError",
    "EnvelopeHeader",
    "FieldCipher",
    "KeyDestroyedError",
    "KeyRepository",
    "KeyProvider",
    "Keys",
    "KeyStatus",
    "LocalKeyProvider",
    "RAW_TOKEN_PREFIX",
    "TOKEN_PREFIX",
    "Token",
    "as_connection",
    "generate_master_key",
    "hash_bytes",
    "hmac_bytes",
    "is_token",
    "load_key_provider",
    "parse_header",
    "party_scope",
]

TOKEN_PREFIX = "cb1:"
#: a token in a binary column: these two bytes, then the envelope itself (no base64); never valid UTF-8
RAW_TOKEN_PREFIX = b"\xcb\x01"
FORMAT_VERSION = 1   # the envelope seals the value as it is
FORMAT_DEFLATE = 2   # the envelope seals the value raw-deflated with preset dictionary 1 (_zdict)
_FORMATS = (FORMAT_VERSION, FORMAT_DEFLATE)
_ZDICT = DICTIONARIES[1]
#: a deflated value is never inflated past this (a sealed value is authenticated, so this is only a backstop)
_MAX_INFLATED = 64 * 1024 * 1024
_HEADER = struct.Struct(">BBII")  # format version, algorithm id, kid, key version
_NONCE = 12
_TAG = 16
SYSTEM_SCOPE = "system"
BIDX_SCOPE = "blind-index"


@dataclass(frozen=True)
class _Algorithm:
    ident: int
    name: str
    key_bytes: int
    hash_name: str  # the matching hash / HMAC for blind indexes and the ledger


#: algorithm name → description; the id is what tokens carry
ALGORITHMS: dict[str, _Algorithm] = {
    "AES-256-GCM": _Algorithm(1, "AES-256-GCM", 32, "sha256"),
    "SM4-GCM": _Algorithm(2, "SM4-GCM", 16, "sm3"),
}
_BY_ID = {a.ident: a for a in ALGORITHMS.values()}


class DecryptionError(CrmBridgeError):
    """A token cannot be decrypted: wrong record/column (AAD), tampered bytes, wrong master key, unknown key."""


class KeyDestroyedError(DecryptionError):
    """The data key a token needs was destroyed (the party was erased): the value is gone for good."""


def _algorithm(name: str) -> _Algorithm:
    try:
        return ALGORITHMS[name.upper()]
    except KeyError:
        raise ConfigurationError(
            f"unknown encryption algorithm {name!r}; known: {', '.join(ALGORITHMS)}", where="keys.algorithm"
        ) from None


def _hash_algo(name: str) -> hashes.HashAlgorithm:
    if name == "sha256":
        return hashes.SHA256()
    if name == "sm3":
        return hashes.SM3()
    raise ConfigurationError(f"unknown hash algorithm {name!r}; known: sha256, sm3")


def hash_bytes(data: bytes, algorithm: str = "sha256") -> bytes:
    """SHA-256 or SM3 of ``data``."""
    h = hashes.Hash(_hash_algo(algorithm))
    h.update(data)
    return h.finalize()


def hmac_bytes(key: bytes, data: bytes, algorithm: str = "sha256") -> bytes:
    """HMAC-SHA256 or HMAC-SM3."""
    h = _hmac.HMAC(key, _hash_algo(algorithm))
    h.update(data)
    return h.finalize()


def _seal(alg: _Algorithm, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    if alg.ident == 1:
        return AESGCM(key).encrypt(nonce, plaintext, aad)
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    return enc.update(plaintext) + enc.finalize() + enc.tag


def _open(alg: _Algorithm, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Raises InvalidTag on any mismatch."""
    if alg.ident == 1:
        return AESGCM(key).decrypt(nonce, sealed, aad)
    if len(sealed) < _TAG:
        raise InvalidTag()
    dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, sealed[-_TAG:])).decryptor()
    dec.authenticate_additional_data(aad)
    return dec.update(sealed[:-_TAG]) + dec.finalize()


# --------------------------------------------------------------------------------------------- providers


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps and unwraps data keys with a master key the caller never sees (local secret, KMS, HSM).

    ``key_id`` is a stable, non-secret fingerprint of the master key; it is stored with every wrapped data
    key so a wrong master key is reported as such instead of as a cryptic tag failure.
    """

    key_id: str

    def wrap(self, key: bytes, *, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes: ...


class LocalKeyProvider:
    """A 256-bit master key held in process memory, read from ``env:`` or ``file:`` (hex or base64).

    Data keys are wrapped with AES-256-GCM (or SM4-GCM under a key derived from the master key when the
    deployment uses the national algorithms), with the data key's identity as associated data.
    """

    def __init__(self, master_key: bytes, *, algorithm: str = "AES-256-GCM") -> None:
        if len(master_key) != 32:
            raise SecretError("the master key must be 32 bytes (64 hex characters or base64 of 32 bytes)")
        self._alg = _algorithm(algorithm)
        fp = hmac_bytes(master_key, b"crmbridge|kek-id", self._alg.hash_name)
        self.key_id = f"local:{fp[:8].hex()}"
        self._key = master_key if self._alg.ident == 1 else hmac_bytes(
            master_key, b"crmbridge|kek|sm4", "sm3")[:16]

    def __repr__(self) -> str:
        return f"LocalKeyProvider(key_id={self.key_id!r})"

    def wrap(self, key: bytes, *, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return bytes([self._alg.ident]) + nonce + _seal(self._alg, self._key, nonce, key, context)

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        alg = _BY_ID.get(wrapped[0]) if wrapped else None
        if alg is None or alg.ident != self._alg.ident:
            raise DecryptionError("wrapped data key uses a different wrapping algorithm than the master key provider")
        nonce, sealed = wrapped[1:1 + _NONCE], wrapped[1 + _NONCE:]
        try:
            return _open(alg, self._key, nonce, sealed, context)
        except InvalidTag:
            raise DecryptionError("the master key cannot unwrap this data key (wrong master key?)") from None


def _decode_master(text: str) -> bytes:
    t = text.strip()
    try:
        if len(t) == 64:
            return bytes.fromhex(t)
    except ValueError:
        pass
    try:
        raw = base64.b64decode(t + "=" * (-len(t) % 4), altchars=b"-_" if ("-" in t or "_" in t) else None,
                               validate=True)
    except (binascii.Error, ValueError):
        raise SecretError("the master key must be 64 hex characters or base64 of 32 bytes") from None
    return raw


def generate_master_key() -> str:
    """A new random master key, base64 of 32 bytes (for ``crmbridge keys init --new-master-key-file``)."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


def load_key_provider(reference: str, *, provider: str | None = None, algorithm: str = "AES-256-GCM",
                      base_dir: Path | None = None, where: str = "keys.master_key") -> KeyProvider:
    """Build the key provider configuration names.

    With ``provider`` unset, ``env`` or ``file``, ``reference`` (``env:NAME`` / ``file:PATH``) holds the master key
    itself: a :class:`LocalKeyProvider`. Any other ``provider`` name loads the factory registered under that name in
    the entry-point group ``crmbridge.key_providers`` and calls it as ``factory(reference, base_dir=...)``; the
    plugin decides what the reference means (a key id, a token reference...). A reference ``<name>:<argument>``
    whose ``<name>`` is a plugin works the same without ``provider``.
    """
    if provider in (None, "env", "file") and reference.startswith(("env:", "file:")):
        secret = resolve_secret(reference, where=where, base_dir=base_dir)
        return LocalKeyProvider(_decode_master(secret.get_secret_value()), algorithm=algorithm)
    name = provider if provider not in (None, "env", "file") else reference.partition(":")[0]
    plugins = {ep.name: ep for ep in entry_points(group="crmbridge.key_providers")}
    if name not in plugins:
        raise ConfigurationError(
            f"unknown key provider {name!r}; use env:NAME, file:PATH or one of the installed "
            f"crmbridge.key_providers plugins: {', '.join(sorted(plugins)) or '(none installed)'}", where=where)
    try:
        instance = plugins[name].load()(reference, base_dir=base_dir)
    except CrmBridgeError:
        raise
    except Exception as exc:  # a plugin's own failure, reported without its (possibly secret) arguments
        raise ConfigurationError(f"key provider plugin {name!r} failed to start: {type(exc).__name__}",
                                 where=where) from exc
    if not isinstance(instance, KeyProvider):
        raise ConfigurationError(f"key provider plugin {name!r} does not implement wrap/unwrap/key_id", where=where)
    return instance


# --------------------------------------------------------------------------------------------- table


#: what every method accepts as "the caller's transaction": a unit of work (``StoreTx``), its ``keys``
#: repository, or (tests, the ledger) a Connection or Session, wrapped in a :class:`KeyRepository`
Keys = Any
Conn = Connection | Session
#: a ciphertext token as text (String/JSON columns) or ASCII bytes (LargeBinary columns)
Token = str | bytes


def party_scope(party_id: object) -> str:
    return f"party:{party_id}"


@dataclass(frozen=True)
class EnvelopeHeader:
    """What a token says about itself (no secret)."""

    format_version: int
    algorithm: str
    kid: int
    key_version: int


def is_token(value: object) -> bool:
    """True for a ``cb1:`` token, as text or as the same ASCII bytes, or a raw token (binary columns)."""
    if isinstance(value, bytes | bytearray | memoryview):
        head = bytes(value[:len(TOKEN_PREFIX)])
        return head == TOKEN_PREFIX.encode() or head[:len(RAW_TOKEN_PREFIX)] == RAW_TOKEN_PREFIX
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX)


def _split_token(token: str | bytes) -> tuple[bytes, EnvelopeHeader, bytes, bytes]:
    if not is_token(token):
        raise DecryptionError("not a crmbridge ciphertext (missing 'cb1:' envelope)")
    if not isinstance(token, str) and bytes(token[:len(RAW_TOKEN_PREFIX)]) == RAW_TOKEN_PREFIX:
        raw = bytes(token[len(RAW_TOKEN_PREFIX):])
    else:
        if not isinstance(token, str):
            token = bytes(token).decode("ascii", "replace")
        body = token[len(TOKEN_PREFIX):]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise DecryptionError("ciphertext envelope is not valid base64") from None
    if len(raw) < _HEADER.size + _NONCE + _TAG:
        raise DecryptionError("ciphertext envelope is truncated")
    fmt, alg_id, kid, version = _HEADER.unpack_from(raw)
    if fmt not in _FORMATS:
        raise DecryptionError(f"unsupported envelope format version {fmt}")
    alg = _BY_ID.get(alg_id)
    if alg is None:
        raise DecryptionError(f"unknown algorithm id {alg_id} in envelope")
    header = raw[:_HEADER.size]
    return header, EnvelopeHeader(fmt, alg.name, kid, version), raw[_HEADER.size:_HEADER.size + _NONCE], \
        raw[_HEADER.size + _NONCE:]


def parse_header(token: str | bytes) -> EnvelopeHeader:
    """Read a token's envelope header (format, algorithm, kid, key version) without decrypting."""
    return _split_token(token)[1]


def _aad(header: bytes, table: str, column: str, record: object) -> bytes:
    return header + b"\x00" + "\x1f".join((table, column, str(record))).encode("utf-8")


@dataclass
class KeyStatus:
    """``crmbridge keys status``: versions, algorithms and counts; never key material."""

    current_version: int | None
    algorithm: str
    kek_id: str
    system_versions: list[tuple[int, str, str, datetime]] = field(default_factory=list)
    party_keys: int = 0
    destroyed_party_keys: int = 0
    foreign_kek_keys: int = 0
    blind_index_key: bool = False


class _Lru(OrderedDict[Any, Any]):
    """A dict that forgets its least recently used entries past ``maxsize`` (per-party keys would otherwise grow
    the caches by one entry per customer ever synced: a memory leak at a bank's size). Forgetting is always safe
    here: a missing entry is read again from the database."""

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize

    def get(self, key: Any, default: Any = None) -> Any:  # type: ignore[override]
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.maxsize:
            self.popitem(last=False)


#: entries of each FieldCipher cache (unwrapped keys, current key of a scope): a few batches' worth of parties
CACHE_ENTRIES = 20_000


@dataclass
class _CurrentKey:
    kid: int
    version: int
    confirmed: bool
    txn: Any  # weakref to the transaction that created it (unconfirmed keys only)
    at: float


class FieldCipher:
    """Encrypts and decrypts field values; manages data keys in ``crypto_data_keys``.

    Args:
        provider: the master key (KEK) provider.
        algorithm: ``AES-256-GCM`` (default) or ``SM4-GCM`` for new data keys.
        cache_seconds: how long an unwrapped key, or the newest key version of a scope, is used without re-reading
            it (so an erasure or rotation by another process takes effect here within that time).

    Every method takes the caller's unit of work (a ``StoreTx``, or its :class:`KeyRepository` ``tx.keys``) and
    works inside its transaction; the cipher never holds a connection.
    """

    def __init__(self, provider: KeyProvider, *, algorithm: str = "AES-256-GCM", cache_seconds: float = 60.0) -> None:
        self.provider = provider
        self.algorithm = _algorithm(algorithm)
        self.cache_seconds = cache_seconds
        self._keys: _Lru = _Lru(CACHE_ENTRIES)     # kid -> (alg, key, loaded at)
        self._current: _Lru = _Lru(CACHE_ENTRIES)  # scope -> _CurrentKey
        self._lock = threading.RLock()

    @property
    def hash_algorithm(self) -> str:
        """``sha256`` or ``sm3``, following the configured cipher (used by blind indexes and the ledger)."""
        return self.algorithm.hash_name

    # ----------------------------------------------------------------------------------- key management

    def init(self, keys: Keys) -> int:
        """Create the first system data key and the blind-index root key if missing. Returns the current version."""
        k = KeyRepository.of(keys)
        current = k.current_version()
        if current is None:
            self._create(k, SYSTEM_SCOPE, 1)
            current = 1
        if k.latest(BIDX_SCOPE) is None:
            self._create(k, BIDX_SCOPE, 1, alg=ALGORITHMS["AES-256-GCM"])  # 32-byte root, whatever the cipher
        return current

    def rotate(self, keys: Keys) -> int:
        """Add a new system key version (party keys follow lazily at their next write). Returns it."""
        k = KeyRepository.of(keys)
        current = k.current_version()
        if current is None:
            raise ConfigurationError("no data keys yet: run 'crmbridge keys init' first")
        self._create(k, SYSTEM_SCOPE, current + 1)
        with self._lock:
            self._current.clear()
        return current + 1

    def current_version(self, keys: Keys) -> int | None:
        return KeyRepository.of(keys).current_version()

    def status(self, keys: Keys) -> KeyStatus:
        k = KeyRepository.of(keys)
        rows = k.system_versions()
        counts = k.counts(self.provider.key_id)
        return KeyStatus(
            current_version=rows[-1][0] if rows else None, algorithm=self.algorithm.name,
            kek_id=self.provider.key_id, system_versions=rows,
            party_keys=counts["party"], destroyed_party_keys=counts["destroyed"], foreign_kek_keys=counts["foreign"],
            blind_index_key=k.latest(BIDX_SCOPE) is not None)

    def destroy_scope(self, keys: Keys, scope: str) -> int:
        """Destroy every data key of ``scope`` (crypto-shredding). Returns how many were destroyed."""
        destroyed, kids = KeyRepository.of(keys).destroy_scope(scope)
        with self._lock:
            self._current.pop(scope, None)
            for kid in kids:
                self._keys.pop(kid, None)
        return destroyed

    def destroy_party_keys(self, keys: Keys, party_id: object) -> int:
        return self.destroy_scope(keys, party_scope(party_id))

    def rewrap(self, keys: Keys, new_provider: KeyProvider) -> int:
        """Re-wrap every live data key wrapped by this cipher's master key under ``new_provider`` (master key
        rotation). Data ciphertexts are unchanged. Returns how many keys were re-wrapped."""
        k = KeyRepository.of(keys)
        rows = k.live_wrapped_by(self.provider.key_id)
        for row in rows:
            ctx = self._context(row["kid"], row["scope"], row["version"], row["algorithm"])
            key = self.provider.unwrap(row["wrapped"], context=ctx)
            k.rewrap(row["kid"], new_provider.wrap(key, context=ctx), new_provider.key_id)
        return len(rows)

    def blind_index_root(self, keys: Keys) -> bytes:
        """The root key blind indexes derive from (created on first use)."""
        k = KeyRepository.of(keys)
        row = k.latest(BIDX_SCOPE)
        kid = row.kid if row is not None else self._create(k, BIDX_SCOPE, 1, alg=ALGORITHMS["AES-256-GCM"])
        return self._load(k, kid)[1]

    def _context(self, kid: int, scope: str, version: int, alg: str) -> bytes:
        return f"crmbridge-dek|{kid}|{scope}|{version}|{alg}".encode()

    def _create(self, k: KeyRepository, scope: str, version: int, *, alg: _Algorithm | None = None) -> int:
        alg = alg or self.algorithm
        key = os.urandom(alg.key_bytes)
        for _ in range(8):
            kid = (int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF) or 1  # fits a signed 32-bit column
            if not k.kid_taken(kid):
                break
        else:  # pragma: no cover - 8 collisions in a 2^32 space
            raise CrmBridgeError("could not allocate a data key id")
        wrapped = self.provider.wrap(key, context=self._context(kid, scope, version, alg.name))
        # another transaction may be creating the same (scope, version) right now: it wins, we use its key
        stored, ours = k.insert({"kid": kid, "scope": scope, "version": version, "algorithm": alg.name,
                                 "kek_id": self.provider.key_id, "wrapped": wrapped, "created_at": datetime.now(UTC)})
        if ours:
            with self._lock:
                self._keys[kid] = (alg, key, time.monotonic())
        return stored

    def _load(self, k: KeyRepository, kid: int) -> tuple[_Algorithm, bytes]:
        with self._lock:
            hit = self._keys.get(kid)
        if hit is not None and time.monotonic() - hit[2] < self.cache_seconds:
            return hit[0], hit[1]  # re-read after cache_seconds: an erasure elsewhere takes effect here too
        row = k.get(kid)
        if row is None:
            raise DecryptionError(f"data key {kid} does not exist in this database")
        if row["wrapped"] is None:
            raise KeyDestroyedError(f"data key {kid} ({row['scope'].split(':')[0]}) was destroyed "
                                    f"on {row['destroyed_at']:%Y-%m-%d}: the value is erased")
        if row["kek_id"] != self.provider.key_id:
            raise DecryptionError(
                f"data key {kid} was wrapped by master key {row['kek_id']}, but the configured master key is "
                f"{self.provider.key_id}: wrong master key (check keys.master_key)")
        alg = _algorithm(row["algorithm"])
        key = self.provider.unwrap(row["wrapped"], context=self._context(kid, row["scope"], row["version"], alg.name))
        with self._lock:
            self._keys[kid] = (alg, key, time.monotonic())
        return alg, key

    def _fresh(self, cur: _CurrentKey | None, txn: Any, now: float) -> bool:
        if cur is None:
            return False
        same_txn = cur.txn is not None and txn is not None and cur.txn() is txn
        return (cur.confirmed and now - cur.at < self.cache_seconds) or same_txn

    def prepare_party_keys(self, keys: Keys, party_ids: Iterable[object]) -> int:
        """Make each party's current data key known, creating the missing ones, in a few statements for all of
        them instead of four per party: the sync engine calls this before sealing a batch's snapshots.

        Race-safe on PostgreSQL like :meth:`_create`: a key another transaction created for the same (scope,
        version) meanwhile wins and is used. Returns how many keys were created.
        """
        k = KeyRepository.of(keys)
        now, txn = time.monotonic(), k.transaction
        with self._lock:
            scopes = sorted({s for s in map(party_scope, party_ids) if not self._fresh(self._current.get(s), txn, now)})
        if not scopes:
            return 0
        version = k.current_version()
        if version is None:
            raise ConfigurationError("no data keys yet: run 'crmbridge keys init' first")
        latest = k.latest_of(scopes)
        known: dict[str, _CurrentKey] = {}
        wanted: list[dict[str, Any]] = []
        fresh_keys: dict[int, bytes] = {}
        alg = self.algorithm
        for scope in scopes:
            row = latest.get(scope)
            if row is not None and row.wrapped is not None and row.version >= version:
                known[scope] = _CurrentKey(row.kid, row.version, True, None, now)
                continue
            v = max(version, row.version + 1) if row is not None else version
            kid = (int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF) or 1
            if kid in fresh_keys:
                continue  # a collision inside the batch: that scope's key is created one at a time below
            key = os.urandom(alg.key_bytes)
            fresh_keys[kid] = key
            wanted.append({"kid": kid, "scope": scope, "version": v, "algorithm": alg.name,
                           "kek_id": self.provider.key_id, "created_at": datetime.now(UTC),
                           "wrapped": self.provider.wrap(key, context=self._context(kid, scope, v, alg.name))})
        created = 0
        if wanted:
            # a kid taken already, or a (scope, version) another transaction just created, is skipped here ...
            k.insert_many(wanted)
            ours = {w["scope"]: w for w in wanted}
            stored = {r.scope: r.kid for r in k.kids_of(ours) if r.version == ours[r.scope]["version"]}
            weak = weakref.ref(txn) if txn is not None else None
            with self._lock:
                for w in wanted:
                    if stored.get(w["scope"]) == w["kid"]:
                        self._keys[w["kid"]] = (alg, fresh_keys[w["kid"]], now)
                        self._current[w["scope"]] = _CurrentKey(w["kid"], w["version"], False, weak, now)
                        created += 1
            # ... and such a scope takes the winner's key, or (a kid collision) is created one at a time
        with self._lock:
            for scope, cur in known.items():
                self._current[scope] = cur
        for scope in scopes:
            with self._lock:
                done = scope in known or self._fresh(self._current.get(scope), txn, now)
            if not done:
                self._current_key(k, scope)
        return created

    def _current_key(self, k: KeyRepository, scope: str) -> tuple[int, int]:
        """(kid, version) of the key new values of ``scope`` are encrypted with; creates it if needed."""
        now = time.monotonic()
        txn = k.transaction
        with self._lock:
            cur = self._current.get(scope)
        if cur is not None and self._fresh(cur, txn, now):
            return cur.kid, cur.version
        # (re)read: an unconfirmed key may belong to a rolled-back transaction; a confirmed one may be stale
        version = k.current_version()
        if version is None:
            raise ConfigurationError("no data keys yet: run 'crmbridge keys init' first")
        row = k.latest(scope)
        if scope == SYSTEM_SCOPE:
            kid, created = row.kid, False
        elif row is not None and row.wrapped is not None and row.version >= version:
            kid, version, created = row.kid, row.version, False
        else:
            # no key yet, an older version, or destroyed (an erased party seen again: new data, new key)
            version = max(version, row.version + 1) if row is not None else version
            kid, created = self._create(k, scope, version), True
        with self._lock:
            self._current[scope] = _CurrentKey(kid, version, not created,
                                               weakref.ref(txn) if created and txn is not None else None, now)
        return kid, version

    # ----------------------------------------------------------------------------------- values

    def _envelope(self, keys: Keys, value: str | bytes, *, table: str, column: str, record: object,
                  party_id: object | None, compress: bool) -> bytes:
        """The envelope (header, nonce, ciphertext + tag) of one value, deflated first when ``compress`` and
        deflate shrinks it."""
        k = KeyRepository.of(keys)
        scope = party_scope(party_id) if party_id is not None else SYSTEM_SCOPE
        kid, version = self._current_key(k, scope)
        alg, key = self._load(k, kid)
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        fmt = FORMAT_VERSION
        if compress:
            z = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _ZDICT)
            packed = z.compress(data) + z.flush()
            if len(packed) < len(data):
                data, fmt = packed, FORMAT_DEFLATE
        header = _HEADER.pack(fmt, alg.ident, kid, version)
        nonce = os.urandom(_NONCE)
        return header + nonce + _seal(alg, key, nonce, data, _aad(header, table, column, record))

    def encrypt(self, keys: Keys, value: str | bytes, *, table: str, column: str, record: object,
                party_id: object | None = None, compress: bool = False) -> str:
        """Encrypt one value bound to ``table``/``column``/``record``.

        With ``party_id`` the value is encrypted under that party's key, so erasing the party shreds it; with
        ``compress`` it is deflated first (format 2) when that makes it smaller.
        Returns a text token ``cb1:...`` safe for String and JSON columns.
        """
        raw = self._envelope(keys, value, table=table, column=column, record=record, party_id=party_id,
                             compress=compress)
        return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def encrypt_raw(self, keys: Keys, value: str | bytes, *, table: str, column: str, record: object,
                    party_id: object | None = None, compress: bool = True) -> bytes:
        """As :meth:`encrypt`, deflated by default, as a raw token for binary columns (``0xCB 0x01`` + the
        envelope: no base64)."""
        return RAW_TOKEN_PREFIX + self._envelope(keys, value, table=table, column=column, record=record,
                                                 party_id=party_id, compress=compress)

    def decrypt(self, keys: Keys, token: Token, *, table: str, column: str, record: object) -> bytes:
        """Decrypt a token (text or raw, any format); the binding must be the one it was encrypted with.

        Raises:
            KeyDestroyedError: the party was erased.
            DecryptionError: wrong binding, tampering, wrong master key or unknown key (message says which).
        """
        header, info, nonce, sealed = _split_token(token)
        alg, key = self._load(KeyRepository.of(keys), info.kid)
        if alg.name != info.algorithm:
            raise DecryptionError(f"envelope says {info.algorithm} but data key {info.kid} is {alg.name}")
        try:
            plain = _open(alg, key, nonce, sealed, _aad(header, table, column, record))
        except InvalidTag:
            raise DecryptionError(
                f"ciphertext does not authenticate for {table}.{column} (moved from another record, or tampered)"
            ) from None
        if info.format_version == FORMAT_DEFLATE:
            try:
                z = zlib.decompressobj(-15, _ZDICT)
                plain, rest = z.decompress(plain, _MAX_INFLATED), z.unconsumed_tail
            except zlib.error:
                raise DecryptionError(f"the sealed value of {table}.{column} does not inflate") from None
            if rest or not z.eof:
                raise DecryptionError(f"the sealed value of {table}.{column} is incomplete or too large")
        return plain

    def decrypt_text(self, keys: Keys, token: Token, *, table: str, column: str, record: object) -> str:
        return self.decrypt(keys, token, table=table, column=column, record=record).decode("utf-8")

    def encrypt_json(self, keys: Keys, value: Any, *, table: str, column: str, record: object,
                     party_id: object | None = None, compress: bool = True) -> str:
        """Encrypt a JSON-serialisable value (a snapshot, a diff, a dead-letter payload), deflated first."""
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        return self.encrypt(keys, text, table=table, column=column, record=record, party_id=party_id,
                            compress=compress)

    def decrypt_json(self, keys: Keys, token: Token, *, table: str, column: str, record: object) -> Any:
        return json.loads(self.decrypt(keys, token, table=table, column=column, record=record))

    def reencrypt_token(self, keys: Keys, token: str | bytes, *, table: str, column: str,
                        record: object) -> Token | None:
        """The token under the newest key version of its scope, or None if it is already current. The new
        token keeps the old one's form (text, ASCII bytes or raw) and is deflated when the old one was.

        Raises KeyDestroyedError for a shredded value (the caller leaves it as it is).
        """
        k = KeyRepository.of(keys)
        info = parse_header(token)
        scope = k.scope_of(info.kid)
        if scope is None:
            raise DecryptionError(f"data key {info.kid} does not exist in this database")
        kid, _version = self._current_key(k, scope)
        if kid == info.kid:
            return None
        plain = self.decrypt(k, token, table=table, column=column, record=record)
        party = scope.split(":", 1)[1] if scope.startswith("party:") else None
        compress = info.format_version == FORMAT_DEFLATE
        if not isinstance(token, str) and bytes(token[:len(RAW_TOKEN_PREFIX)]) == RAW_TOKEN_PREFIX:
            return self.encrypt_raw(k, plain, table=table, column=column, record=record, party_id=party,
                                    compress=compress)
        text = self.encrypt(k, plain, table=table, column=column, record=record, party_id=party, compress=compress)
        return text if isinstance(token, str) else text.encode("ascii")
