"""The composition root: builds every part of a run from the validated configuration.

Adapters, mappings, the state store, the cipher, the blind indexer and the ledger signer are built here and
nowhere else; tests build the same graph from their own configuration (simulators on loopback, a temporary
database) and may inject an HTTP session factory or a clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from crmbridge.adapters.base import Adapter
from crmbridge.adapters.registry import adapter_class, target_profile
from crmbridge.canonical.mapping import Mapping, load_mapping
from crmbridge.config import CrmBridgeConfig, load_config
from crmbridge.core.errors import ConfigurationError, FatalSyncError, SystemUnavailableError
from crmbridge.sync.security.blindindex import BlindIndexer
from crmbridge.sync.security.crypto import FieldCipher, load_key_provider
from crmbridge.sync.state.ledger import LedgerSigner
from crmbridge.sync.state.store import StateStore, StoreTx, unreachable

__all__ = ["Runtime", "archive_mapping", "bootstrap"]

_ALGORITHMS = {"aes-256-gcm": "AES-256-GCM", "sm4-gcm": "SM4-GCM"}


@dataclass
class Runtime:
    """Everything a command needs, built once from one configuration."""

    config: CrmBridgeConfig
    store: StateStore
    cipher: FieldCipher
    signer: LedgerSigner | None
    session_factory: Callable[[], requests.Session] = requests.Session
    _adapters: dict[str, Adapter] = field(default_factory=dict)
    _mappings: dict[str, Mapping] = field(default_factory=dict)
    _indexer: BlindIndexer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def adapter(self, system: str) -> Adapter:
        """The adapter of a configured system (one instance per runtime, so its token cache is shared)."""
        with self._lock:
            if system not in self._adapters:
                try:
                    cfg = self.config.systems[system]
                except KeyError:
                    raise ConfigurationError(f"no system {system!r} in the configuration; known: "
                                             f"{', '.join(sorted(self.config.systems)) or '(none)'}") from None
                cls = adapter_class(cfg.adapter)
                self._adapters[system] = cls(cfg, system=system, session=self.session_factory(),
                                             base_dir=self.config.base_dir)
            return self._adapters[system]

    def mapping(self, ref: str) -> Mapping:
        """The loaded mapping a job references (loaded once per runtime). Its text is archived in the state store
        the first time (:func:`archive_mapping`), so every version a run used can be shown later."""
        with self._lock:
            if ref not in self._mappings:
                m = load_mapping(self.config.mapping_path(ref), profile=target_profile)
                # the database was opened at bootstrap: a connection dropped here is the store's own "state
                # database unavailable ... the transaction did not complete", not "cannot open"
                with self.store.transaction() as tx:
                    archive_mapping(tx, m)
                self._mappings[ref] = m
            return self._mappings[ref]

    def indexer(self) -> BlindIndexer:
        if self._indexer is None:
            with self.store.transaction() as tx:
                self._indexer = tx.blind_indexer(self.cipher)
        return self._indexer

    def close(self) -> None:
        for a in self._adapters.values():
            a.close()
        self._adapters.clear()
        self.store.dispose()



def archive_mapping(tx: StoreTx, mapping: Mapping) -> bool:
    """Archive the text of ``mapping``'s version (its ``version_hash``) in the state store, in ``tx``; idempotent.
    Whether the version was new. :meth:`Runtime.mapping` calls it when a run (or any command) first loads a
    mapping; call it at run start for a mapping built another way."""
    text = mapping.text if mapping.text is not None else Path(mapping.path).read_text(encoding="utf-8")
    return tx.archive_mapping(content_hash=mapping.version_hash, system=mapping.system, obj=mapping.object,
                              file_name=Path(mapping.path).name, text=text)


@contextmanager
def _state_database(url: str) -> Iterator[None]:
    """Opening the state database: a server that cannot be reached (refused, unknown host, timed out, password
    refused) is one clear error naming where it was looked for (host and port, never the password), not
    ``internal error: OperationalError``."""
    try:
        yield
    except (OperationalError, InterfaceError, DisconnectionError) as exc:
        raise unreachable(url, exc) from None
    except FatalSyncError as exc:      # the store's own translation of the same failure
        cause = exc.__cause__
        if isinstance(exc, SystemUnavailableError) or not isinstance(cause, Exception):
            raise
        raise unreachable(url, cause) from None


def bootstrap(config: CrmBridgeConfig | str | Path | None = None, *,
              session_factory: Callable[[], requests.Session] | None = None,
              migrate: bool = True) -> Runtime:
    """Build the runtime from a configuration (object, path, or the default file).

    Args:
        config: the configuration or its file; default ``CRMBRIDGE_CONFIG`` or ``config/crmbridge.yaml``.
        session_factory: makes the ``requests.Session`` each adapter uses (tests inject their own).
        migrate: bring the state database schema up to date first (``crmbridge db upgrade``).
    """
    cfg = config if isinstance(config, CrmBridgeConfig) else load_config(config)
    store = StateStore.from_url(cfg.state.url)   # a URL no driver serves: a ConfigurationError
    with _state_database(cfg.state.url):
        if migrate:
            from crmbridge.sync.state.migrate import upgrade

            upgrade(store.engine)
    algorithm = _ALGORITHMS[cfg.keys.algorithm]
    provider = load_key_provider(cfg.keys.master_key, provider=cfg.keys.provider, algorithm=algorithm,
                                 base_dir=cfg.base_dir)
    cipher = FieldCipher(provider, algorithm=algorithm)
    with _state_database(cfg.state.url), store.transaction() as tx:
        cipher.init(tx.keys)
    signer = (LedgerSigner.load(cfg.keys.signing_key, base_dir=cfg.base_dir, where="keys.signing_key")
              if cfg.keys.signing_key else None)
    return Runtime(cfg, store, cipher, signer, session_factory or requests.Session)
