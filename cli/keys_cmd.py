"""``crmbridge keys init|rotate|reencrypt|rewrap|status``: data keys, master key and the ledger signing key.

Keys never appear on screen: the commands show versions, algorithms, key ids (fingerprints) and counts.
The shared :class:`SecurityContext` (state URL, cipher, signer from the configuration) is also used by
``crmbridge ledger`` and ``crmbridge erase``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from crmbridge.core.errors import ConfigurationError

if TYPE_CHECKING:
    from crmbridge.config import CrmBridgeConfig
    from crmbridge.sync.security.crypto import FieldCipher
    from crmbridge.sync.state.ledger import LedgerSigner
    from crmbridge.sync.state.store import StateStore, StoreTx

__all__ = ["ConfigOption", "SecurityContext", "UrlOption", "register"]

keys_app = typer.Typer(help="Manage encryption keys (data keys, master key, ledger signing key).",
                       no_args_is_help=True)
console = Console()

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="Configuration file (default: $CRMBRIDGE_CONFIG, else config/crmbridge.yaml).",
    envvar="CRMBRIDGE_CONFIG", show_envvar=True)]
UrlOption = Annotated[str | None, typer.Option("--url", help="State database URL (overrides the configuration).")]


@dataclass
class SecurityContext:
    """What the key, ledger and erase commands need, built from the configuration."""

    config: CrmBridgeConfig
    url: str

    @classmethod
    def load(cls, config: Path | None, url: str | None) -> SecurityContext:
        from crmbridge.config import load_config

        cfg = load_config(config)
        return cls(cfg, url or cfg.state.url)

    def cipher(self, master_key: str | None = None) -> FieldCipher:
        from crmbridge.sync.security.crypto import FieldCipher, load_key_provider

        keys = self.config.keys
        provider = load_key_provider(master_key or keys.master_key,
                                     provider=None if master_key else keys.effective_provider,
                                     algorithm=keys.algorithm, base_dir=self.config.base_dir)
        return FieldCipher(provider, algorithm=keys.algorithm)

    def signer(self, *, required: bool = False) -> LedgerSigner | None:
        from crmbridge.sync.state.ledger import LedgerSigner

        ref = self.config.keys.signing_key
        if ref is None:
            if required:
                raise ConfigurationError("no ledger signing key configured", where="keys.signing_key")
            return None
        return LedgerSigner.load(ref, base_dir=self.config.base_dir)

    def signing_key_path(self) -> Path | None:
        ref = self.config.keys.signing_key
        if ref is None or not ref.startswith("file:"):
            return None
        path = Path(ref.split(":", 1)[1])
        return path if path.is_absolute() else self.config.base_dir / path

    @contextmanager
    def store(self) -> Iterator[StateStore]:
        """The state store, disposed of afterwards. Connected once: an unreachable state database is one clear
        error naming host and port (exit 4)."""
        from crmbridge.sync.state.store import StateStore, open_engine

        store = StateStore(open_engine(self.url))
        try:
            yield store
        finally:
            store.dispose()

    @contextmanager
    def transaction(self, *, refuse_writes: bool = False) -> Iterator[StoreTx]:
        """One unit of work of the state store (SQLite: BEGIN IMMEDIATE, so the ledger lock is taken up front);
        ``refuse_writes=True``: a read-only one the database refuses writes in (previews, reports)."""
        with self.store() as store, store.transaction(refuse_writes=refuse_writes) as tx:
            yield tx


def _write_secret_file(path: Path, content: str) -> None:
    from crmbridge.sync.state.store import open_private

    if path.exists():
        raise ConfigurationError(f"{path} already exists; refusing to overwrite a key file")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_private(path, exclusive=True, encoding="ascii") as fh:   # 0600 whatever the umask
        fh.write(content + "\n")


@keys_app.command("init")
def init(
    config: ConfigOption = None, url: UrlOption = None,
    new_master_key_file: Annotated[Path | None, typer.Option(
        "--new-master-key-file", help="First write a new random master key to this file (mode 0600) and use it; "
        "then point keys.master_key at file:PATH.")] = None,
    signing_key: Annotated[bool, typer.Option(
        "--signing-key/--no-signing-key", help="Create the ledger signing key file (keys.signing_key: file:PATH) "
        "if it does not exist.")] = True,
) -> None:
    """Create the schema if needed, the first data key version, the blind-index key and the signing key."""
    from crmbridge.sync.security.crypto import generate_master_key
    from crmbridge.sync.state.ledger import generate_signing_key
    from crmbridge.sync.state.migrate import upgrade

    ctx = SecurityContext.load(config, url)
    master_ref = None
    if new_master_key_file is not None:
        _write_secret_file(new_master_key_file, generate_master_key())
        master_ref = f"file:{new_master_key_file.resolve()}"
        console.print(f"wrote a new master key to {new_master_key_file} (0600); set keys.master_key: {master_ref}")
    cipher = ctx.cipher(master_ref)
    upgrade(ctx.url)
    with ctx.transaction() as tx:
        version = cipher.init(tx)
    console.print(f"data keys ready: version {version}, {cipher.algorithm.name}, master key {cipher.provider.key_id}")
    path = ctx.signing_key_path()
    if signing_key and path is not None:
        if path.exists():
            signer = ctx.signer(required=True)
            assert signer is not None
            console.print(f"ledger signing key present: {path} (key id {signer.key_id})")
        else:
            signer = generate_signing_key(path)
            from crmbridge.sync.state.ledger_trust import fingerprint

            console.print(f"wrote a new ledger signing key to {path} (0600), key id {signer.key_id}; "
                          f"give auditors `crmbridge ledger public-key` and pin its fingerprint "
                          f"{fingerprint(signer)} in ledger.trusted_keys", highlight=False)
    elif signing_key and ctx.config.keys.signing_key is None:
        console.print("[yellow]no keys.signing_key configured: ledger checkpoints will not be signed[/]")


@keys_app.command("rotate")
def rotate(
    config: ConfigOption = None, url: UrlOption = None,
    reencrypt_: Annotated[bool, typer.Option("--reencrypt", help="Then rewrite stored values under the new "
                                             "version (batches; resumable with `keys reencrypt`).")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per re-encryption batch.")] = 500,
) -> None:
    """Add a new data key version: new values use it, old versions keep decrypting."""
    from crmbridge.sync.state.ledger import Action, LedgerEntryIn

    ctx = SecurityContext.load(config, url)
    cipher = ctx.cipher()
    with ctx.transaction() as tx:
        version = cipher.rotate(tx)
        ledger = tx.ledger(ctx.signer(), cipher=cipher)
        from crmbridge.cli.actor import os_actor

        ledger.append([LedgerEntryIn(action=Action.KEY_ROTATED, actor=os_actor(),
                                     reason=f"data key version {version} ({cipher.algorithm.name})")])
        ledger.checkpoint()
    from crmbridge.cli.ledger_trust_cmd import publish_after

    publish_after(ctx)
    console.print(f"new data key version {version} ({cipher.algorithm.name}); older versions are decrypt-only")
    if reencrypt_:
        _reencrypt(ctx, cipher, batch_size, None)


def _reencrypt(ctx: SecurityContext, cipher: FieldCipher, batch_size: int, max_batches: int | None) -> None:
    from crmbridge.sync.security.protect import reencrypt

    with ctx.store() as store:
        report = reencrypt(store, cipher, batch_size=batch_size, max_batches=max_batches)
    for label, n in sorted(report.columns.items()):
        console.print(f"  {label}: {n} rewritten")
    state = "complete" if report.complete else "stopped early; run `crmbridge keys reencrypt` to resume"
    console.print(f"re-encryption {state}: {report.rewritten} rewritten, {report.current} already current, "
                  f"{report.shredded} erased (left as they are), {len(report.failed)} failed")
    for line in report.failed[:20]:
        console.print(f"  [red]failed[/] {line}")
    if report.failed:
        raise SystemExit(1)


@keys_app.command("reencrypt")
def reencrypt_cmd(
    config: ConfigOption = None, url: UrlOption = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per batch (one transaction each).")] = 500,
    max_batches: Annotated[int | None, typer.Option(min=1, help="Stop after this many batches.")] = None,
) -> None:
    """Rewrite stored values under the newest data key version (resumes an interrupted run)."""
    ctx = SecurityContext.load(config, url)
    _reencrypt(ctx, ctx.cipher(), batch_size, max_batches)


@keys_app.command("rewrap")
def rewrap(
    from_master_key: Annotated[str, typer.Option(
        "--from-master-key", help="Reference (env:NAME / file:PATH) to the PREVIOUS master key; the configured "
        "keys.master_key is the new one.")],
    config: ConfigOption = None, url: UrlOption = None,
) -> None:
    """Master key rotation: re-wrap every data key under the configured (new) master key."""
    ctx = SecurityContext.load(config, url)
    new = ctx.cipher()
    old = ctx.cipher(from_master_key)
    if old.provider.key_id == new.provider.key_id:
        raise ConfigurationError("the previous and the configured master keys are the same", where="--from-master-key")
    with ctx.transaction() as tx:
        n = old.rewrap(tx, new.provider)
    console.print(f"re-wrapped {n} data key(s) from {old.provider.key_id} to {new.provider.key_id}")


@keys_app.command("status")
def status(config: ConfigOption = None, url: UrlOption = None) -> None:
    """Show data key versions, algorithms, master key id, party keys and the signing key id."""
    ctx = SecurityContext.load(config, url)
    cipher = ctx.cipher()
    with ctx.transaction(refuse_writes=True) as tx:
        st = cipher.status(tx)
    table = Table(title="data keys (system scope)")
    for col in ("version", "algorithm", "master key", "created"):
        table.add_column(col)
    for version, alg, kek, created in st.system_versions:
        mark = " (current)" if version == st.current_version else ""
        table.add_row(f"{version}{mark}", alg, kek, f"{created:%Y-%m-%d %H:%M:%S}")
    console.print(table)
    console.print(f"configured: {st.algorithm}, master key {st.kek_id}")
    console.print(f"party keys: {st.party_keys} ({st.destroyed_party_keys} destroyed by erasure)")
    console.print(f"blind-index key: {'present' if st.blind_index_key else 'missing (run keys init)'}")
    if st.foreign_kek_keys:
        console.print(f"[red]{st.foreign_kek_keys} data key(s) are wrapped by another master key[/] "
                      f"(finish `crmbridge keys rewrap`)")
    signer = ctx.signer()
    console.print(f"ledger signing key: {signer.key_id if signer else 'not configured'}")
    if st.current_version is None:
        raise SystemExit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
