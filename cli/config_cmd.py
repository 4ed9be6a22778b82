"""``crmbridge config check|schema``: validate the configuration file, print its JSON Schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from crmbridge.core.errors import ConfigurationError

__all__ = ["register"]

config_app = typer.Typer(help="Check the configuration file; print its JSON Schema.", no_args_is_help=True)

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="Configuration file (default: $CRMBRIDGE_CONFIG, else config/crmbridge.yaml).",
    envvar="CRMBRIDGE_CONFIG", show_envvar=True)]

#: config/schema.json of the package (its root is the parent of cli/; crmbridge.config, heavier, says the same)
SCHEMA_FILE = Path(__file__).resolve().parent.parent / "config" / "schema.json"


def _fail(lines: list[str]) -> None:
    for line in lines:
        typer.echo(line, err=True)
    raise SystemExit(2)


@config_app.command("check")
def check(config: ConfigOption = None) -> None:
    """Validate the file and resolve every secret reference; print OK or every error (exit 2)."""
    from crmbridge.config import check_secrets, load_config

    try:
        cfg = load_config(config)
    except ConfigurationError as exc:
        _fail(str(exc).splitlines())
    problems = check_secrets(cfg)
    if problems:
        _fail([f"{cfg.source_file}: {len(problems)} secret reference(s) cannot be resolved",
               *(f"  {p}" for p in problems)])
    problems = check_keys(cfg)
    if problems:
        _fail([f"{cfg.source_file}: {len(problems)} problem(s) with the keys", *(f"  {p}" for p in problems)])
    problems = check_job_mappings(cfg)
    if problems:
        _fail([f"{cfg.source_file}: {len(problems)} problem(s) in the jobs' mappings", *(f"  {p}" for p in problems)])
    n, m = len(cfg.systems), len(cfg.jobs)
    typer.echo(f"OK: {n} system{'s' if n != 1 else ''}, {m} job{'s' if m != 1 else ''} ({cfg.source_file})")


@config_app.command("schema")
def schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of printing.")]
    = None,
    write: Annotated[bool, typer.Option("--write", help=f"Write the shipped {SCHEMA_FILE.name} (config/).")]
    = False,
) -> None:
    """Print the JSON Schema of the configuration file (editors use it to check crmbridge.yaml)."""
    from crmbridge.config import config_json_schema

    text = json.dumps(config_json_schema(), indent=2, ensure_ascii=False) + "\n"
    target = SCHEMA_FILE if write else output
    if target is None:
        sys.stdout.write(text)
        return
    target.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {target}")


_ALGORITHMS = {"aes-256-gcm": "AES-256-GCM", "sm4-gcm": "SM4-GCM"}


def check_keys(cfg: Any) -> list[str]:
    """Load the master key and the ledger signing key as a run would, without touching the database: the master
    key decodes (64 hex characters or base64) to the 32 bytes the algorithm needs (AES-256-GCM uses them as its
    key; SM4-GCM derives its 16-byte key from them), a key-service plugin named is installed (it is not started),
    and the signing key is an Ed25519 private key. A reference that does not resolve is left to the secret check.
    Each problem is located (``file:line: keys.master_key: ...``) and never shows the key."""
    from importlib.metadata import entry_points

    from crmbridge.core.errors import SecretError
    from crmbridge.core.secrets import resolve_secret
    from crmbridge.sync.security.crypto import _decode_master, load_key_provider
    from crmbridge.sync.state.ledger import LedgerSigner

    keys, out = cfg.keys, []

    def located(key: str, message: str) -> str:
        return f"{cfg.where(('keys', key))}: keys.{key}: {message}"

    ref = keys.master_key
    local = keys.provider in (None, "env", "file") and ref.startswith(("env:", "file:"))
    if local:
        try:
            secret = resolve_secret(ref, base_dir=cfg.base_dir).get_secret_value()
        except SecretError:
            secret = None
        if secret is not None:
            try:
                load_key_provider(ref, provider=keys.provider, algorithm=_ALGORITHMS[keys.algorithm],
                                  base_dir=cfg.base_dir)
            except SecretError as exc:
                try:
                    size = f"; it decodes to {len(_decode_master(secret))} bytes"
                except SecretError:
                    size = ""
                out.append(located("master_key", f"{exc.message}{size} ({keys.algorithm} needs a 32-byte master key;"
                                                 f" reference {ref!r})"))
    else:
        name = keys.provider or ref.partition(":")[0]
        installed = {ep.name for ep in entry_points(group="crmbridge.key_providers")}
        if name not in installed:
            out.append(located("provider" if keys.provider else "master_key",
                               f"unknown key provider {name!r}; use env:NAME, file:PATH or an installed "
                               f"crmbridge.key_providers plugin: {', '.join(sorted(installed)) or '(none installed)'}"))
    if keys.signing_key:
        try:
            resolve_secret(keys.signing_key, base_dir=cfg.base_dir)
        except SecretError:
            pass
        else:
            try:
                LedgerSigner.load(keys.signing_key, base_dir=cfg.base_dir)
            except SecretError as exc:
                out.append(located("signing_key", f"{exc.message} (reference {keys.signing_key!r})"))
    return out


def check_job_mappings(cfg: Any) -> list[str]:
    """Load every job's mappings as ``crmbridge run`` does and check each fits its end of the job: a file that
    does not load, a source mapping that reads nothing, a target mapping that writes nothing (or, two-way, reads
    nothing back), a step reading or writing a C3-looking vendor field. Each problem names the job and the file."""
    from crmbridge.adapters.registry import target_profile
    from crmbridge.canonical.c3 import mapping_c3_fields
    from crmbridge.canonical.mapping import MappingLoadError, keypath, line_for, load_mapping

    out: list[str] = []
    for name, job in sorted(cfg.jobs.items()):
        ends = [("source_mapping", job.source_mapping, ("in",)),
                ("target_mapping", job.target_mapping, ("out", "in") if job.direction == "two_way" else ("out",))]
        for key, ref, directions in ends:
            try:
                mapping = load_mapping(cfg.mapping_path(ref), profile=target_profile)
            except MappingLoadError as exc:
                out.extend(f"jobs.{name}.{key}: {line}" for line in str(exc).splitlines())
                continue
            except ConfigurationError as exc:
                out.append(f"jobs.{name}.{key}: {exc}")
                continue
            for rel, msg in mapping_c3_fields(mapping):
                line = line_for(mapping.lines, rel)
                out.append(f"jobs.{name}.{key}: {mapping.path}:{line if line is not None else '?'}: "
                           f"{keypath(rel)}: {msg}")
            for d in directions:
                if not mapping.vendor_paths(d):    # type: ignore[arg-type]
                    verb = "reads nothing from" if d == "in" else "writes nothing to"
                    out.append(f"jobs.{name}.{key}: {mapping.path}: no step {verb} {mapping.spec.system} "
                               f"(steps need direction {d} or both)")
    return out


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
