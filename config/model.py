"""crmbridge's configuration: one YAML file, validated once at load into pydantic models.

Where the file is: ``--config FILE``, else the environment variable ``CRMBRIDGE_CONFIG``, else
``config/crmbridge.yaml`` (relative to the current directory). See that file for every key, documented.

:func:`load_config` collects EVERY problem before it raises one :class:`ConfigurationError` listing them,
one per line, as ``file:line: key.path: what was expected (got <value>)``. Line numbers come from the YAML
itself (:func:`crmbridge.core.safeyaml.load_with_lines` records where each key path starts); a value that looks
secret or personal is masked, and a secret's value is never shown.

Systems are validated by their adapter's own ``Config`` model (``crmbridge.adapters.registry``), so each
vendor owns its keys; the top-level ``retry`` policy is the default of every system that sets none. Jobs are
checked across fields: their systems exist, their mapping files exist, the schedule is a valid crontab, owners
in a source-of-truth policy are the job's own systems.

Secrets are references (``env:NAME`` / ``file:PATH``); loading only checks their form.
:func:`check_secrets` (run by ``crmbridge config check``) resolves every one and reports the unset or
unreadable ones, again with file, line and key path.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    PrivateAttr,
    SerializeAsAny,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic.json_schema import models_json_schema

from crmbridge.adapters.base import AdapterConfig
from crmbridge.canonical.c3 import c3_rule
from crmbridge.canonical.extensions import EXTENSION_NAME, ExtensionField, declare_extensions
from crmbridge.core.errors import ConfigurationError, SecretError, UnknownAdapterError
from crmbridge.core.masking import mask
from crmbridge.core.retry import RetryPolicy
from crmbridge.core.safeyaml import BoundedLoader, YamlProblem, load_with_lines, read_bounded, size_problem
from crmbridge.core.secrets import SecretRef, is_secret_reference, resolve_secret

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "MATCH_KEYS",
    "MAX_BATCH_SIZE",
    "PACKAGE_ROOT",
    "ConflictPolicy",
    "CrmBridgeConfig",
    "DistributedConfig",
    "JobConfig",
    "KeysConfig",
    "LoggingConfig",
    "MetricsConfig",
    "NotificationsConfig",
    "StateConfig",
    "WebhookConfig",
    "check_secrets",
    "config_json_schema",
    "default_config_path",
    "load_config",
    "parse_config",
    "resolve_mapping_path",
]

CONFIG_ENV = "CRMBRIDGE_CONFIG"
DEFAULT_CONFIG_PATH = Path("config/crmbridge.yaml")
DEFAULT_STATE_URL = "sqlite:///var/crmbridge.db"
#: the package root (the repository root in a checkout); ``mappings/`` lives under it
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
MAX_BATCH_SIZE = 5000

#: canonical keys a match rule may combine: identifier schemes (docs/canonical.md §2), contact point types, name fields
MATCH_KEYS = frozenset({
    "CN_RIC", "CN_TEMP_RIC", "PASSPORT", "HK_MO_PERMIT", "TW_PERMIT", "HMT_RESIDENCE_PERMIT", "FOREIGN_PR_ID",
    "CN_USCC", "ORG_CODE", "BUSINESS_LICENCE",
    "mobile", "landline", "email", "wechat_openid", "name", "date_of_birth",
})

_NAME = r"^[a-z][a-z0-9_]{0,63}$"
_SECRET_VALIDATOR = typing.get_args(SecretRef)[1]


def default_config_path() -> Path:
    """``$CRMBRIDGE_CONFIG`` if set, else ``config/crmbridge.yaml``."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


@dataclass
class _Source:
    path: Path | None
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.path) if self.path else "<config>"

    def line(self, loc: tuple[str | int, ...]) -> int | None:
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.lines:
                return self.lines[loc[:n]]
        return None

    def where(self, loc: tuple[str | int, ...]) -> str:
        line = self.line(loc)
        return f"{self.name}:{line}" if line else self.name



# ============================================================================================ models
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StateConfig(_Model):
    """Where crmbridge keeps its state (runs, cursors, cross-references, snapshots, ledger...).

    ``url`` is a SQLAlchemy URL. A relative SQLite path (``sqlite:///var/crmbridge.db``) is relative to the
    CURRENT directory of the process, not to the config file; use ``sqlite:////abs/path.db`` to pin it.
    """

    url: str = Field(DEFAULT_STATE_URL, description="SQLAlchemy URL: sqlite:///relative/to/cwd.db, "
                     "sqlite:////absolute.db or postgresql+psycopg://user@host/db")

    @field_validator("url")
    @classmethod
    def _known_database(cls, v: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", v):
            raise ValueError("must be a sqlite:/// or postgresql:// SQLAlchemy URL")
        if re.match(r"^postgresql(\+\w+)?://[^/@:]+:[^/@]+@", v):
            raise ValueError("must not carry a password; use a .pgpass file or PGPASSWORD")
        return v


def _provider_name(v: str) -> str:
    if not re.match(r"^[a-z][a-z0-9_.-]*$", v):
        raise ValueError("must be env, file or the name of a key-provider plugin")
    return v


class KeysConfig(_Model):
    """The master key (wraps the data keys that encrypt personal data at rest) and the ledger signing key."""

    master_key: SecretRef = Field(description="reference to the master key: env:NAME or file:PATH (base64, 32 bytes)")
    algorithm: Literal["aes-256-gcm", "sm4-gcm"] = "aes-256-gcm"
    provider: Annotated[str, AfterValidator(_provider_name)] | None = Field(
        None, description="env | file | a key-service plugin; default: the kind of master_key's reference")
    signing_key: SecretRef | None = Field(None, description="Ed25519 key signing ledger checkpoints")

    @field_validator("provider")
    @classmethod
    def _provider_matches(cls, v: str | None, info: Any) -> str | None:
        ref = info.data.get("master_key")
        if v in ("env", "file") and isinstance(ref, str) and not ref.startswith(v + ":"):
            raise ValueError(f"provider {v} needs master_key as '{v}:...'")
        return v

    @property
    def effective_provider(self) -> str:
        return self.provider or self.master_key.split(":", 1)[0]


class LedgerPublishTarget(_Model):
    """One place every signed ledger checkpoint is published to (exactly one of file, webhook, syslog)."""

    file: str | None = Field(None, description="append-only JSON-lines file, outside the state directory")
    webhook: HttpUrl | None = Field(None, description="URL each checkpoint is POSTed to as JSON")
    syslog: str | None = Field(None, description="syslog facility (e.g. local0, auth) the checkpoint is logged to")

    @model_validator(mode="after")
    def _exactly_one(self) -> LedgerPublishTarget:
        if sum(x is not None for x in (self.file, self.webhook, self.syslog)) != 1:
            raise ValueError("give exactly one of file, webhook, syslog")
        return self


class LedgerConfig(_Model):
    """Trust anchors and head publishing for the tamper-evident ledger (docs/auditor.md)."""

    trusted_keys: list[Annotated[str, Field(pattern=r"^(sha256:)?[0-9a-fA-F]{64}$")]] = Field(
        default_factory=list, description="pinned fingerprints of the signing keys verify trusts "
                                          "(`crmbridge ledger fingerprint`); keys handed over by "
                                          "`ledger rotate-signing-key` are followed from these")
    publish: list[LedgerPublishTarget] = Field(default_factory=list, description="where each signed checkpoint "
                                               "(the ledger head) is published: file, webhook or syslog")


class LoggingConfig(_Model):
    """How the scheduler, ``crmbridge run`` and ``crmbridge dispatch`` log (one place: sync/observe.py)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    file: str | None = Field(None, description="log file (reopened when logrotate moves it); default standard error")


class MetricsConfig(_Model):
    port: int | None = Field(None, ge=1, le=65535, description="Prometheus /metrics port; off if unset")
    host: str = "127.0.0.1"
    textfile: str | None = Field(
        None, description="Prometheus textfile-collector file that `crmbridge run`/`dispatch` rewrite atomically at "
                          "the end of each run (the same metric names as /metrics); '{job}' in it becomes the job "
                          "name; off if unset")


class PrivacyConfig(_Model):
    """Who may see personal data in clear."""

    reveal: Literal["allow", "deny"] = Field(
        "allow", description="allow: `--reveal` shows C2 values in clear to the operator, ledgered with who, what "
                             "and why (--reason); deny: `--reveal` is refused everywhere (clear values only through "
                             "a four-eyes review)")


class WebhookConfig(_Model):
    url: HttpUrl
    events: list[Literal["run_failed", "run_partial", "run_crashed", "run_overdue", "dead_letter", "conflict",
                         "lease_lost", "credential_expiring"]] = Field(
        default_factory=lambda: ["run_failed", "run_crashed"])
    secret: SecretRef | None = Field(None, description="HMAC key signing each notification")
    timeout: float = Field(5.0, gt=0, le=60)


class NotificationsConfig(_Model):
    webhooks: list[WebhookConfig] = Field(default_factory=list)


_BROKER_URL = re.compile(r"^(amqp|amqps|pyamqp|redis|rediss)://")


def _broker_url(v: str) -> str:
    if not _BROKER_URL.match(v):
        raise ValueError("must be an amqp://, amqps://, redis:// or rediss:// broker URL, or a secret reference "
                         "(env:NAME / file:PATH) to one")
    return _no_url_password(v)


def _no_url_password(v: str) -> str:
    if _URL_PASSWORD.search(v):
        raise ValueError("a URL carrying a password is a secret: put it in an environment variable or a file and "
                         "write env:NAME or file:PATH here")
    return v


class DistributedConfig(_Model):
    """Distributed mode (``crmbridge worker`` / ``crmbridge dispatch``): a job's batches run as Celery tasks.

    The state database must be PostgreSQL (workers serialise work on a party with advisory locks). Tasks carry
    only batch ids; the records of a batch wait in the state database, encrypted.
    """

    broker_url: SecretRef | Annotated[str, AfterValidator(_broker_url)] = Field(
        description="amqp://host:5672// or redis://host:6379/0; a URL with a password only as env:NAME or file:PATH")
    result_backend: SecretRef | Annotated[str, AfterValidator(_no_url_password)] | None = Field(
        None, description="Celery result backend (optional; crmbridge keeps batch outcomes in the state database)")
    queue: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")] = "crmbridge"
    prefetch_multiplier: int = Field(1, ge=1, le=64, description="tasks a worker reserves per process")
    acks_late: bool = Field(True, description="acknowledge a task after it ran, so a killed worker's batch is "
                            "delivered again")
    visibility_timeout_seconds: int = Field(3600, ge=1, le=86400 * 7,
                                            description="Redis: an unacknowledged task returns to the queue after this")
    batch_timeout_seconds: float = Field(300.0, gt=0, le=86400,
                                         description="a claimed batch whose worker stopped heart-beating for this "
                                         "long is dispatched again")
    lock_timeout_seconds: float = Field(300.0, gt=0, le=86400,
                                        description="longest wait for another worker to release a party")
    wait_timeout_seconds: float | None = Field(None, gt=0, description="the dispatcher gives up (run failed) "
                                               "after this long; default: no limit")

    def resolved_broker_url(self, base_dir: Path | None = None) -> str:
        """The broker URL, resolving a secret reference (keep the result out of logs and messages)."""
        if is_secret_reference(self.broker_url):
            return resolve_secret(self.broker_url, where="distributed.broker_url",
                                  base_dir=base_dir).get_secret_value()
        return self.broker_url


def _object_ref(v: str) -> str:
    system, dot, obj = v.partition(".")
    if not dot or not re.match(_NAME, system) or not obj.strip() or obj != obj.strip():
        raise ValueError("must be 'system.Object' (a configured system name, a dot, a non-empty object name)")
    return v


def _crontab(v: str) -> str:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(v, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"must be a 5-field crontab such as '*/15 * * * *' ({exc})") from None
    return v


def _match_rule(v: list[str]) -> list[str]:
    if not v:
        raise ValueError("a match rule needs at least one key")
    unknown = [k for k in v if k not in MATCH_KEYS]
    if unknown:
        raise ValueError(f"unknown match key(s) {', '.join(unknown)}; known: {', '.join(sorted(MATCH_KEYS))}")
    if len(set(v)) != len(v):
        raise ValueError("a key is repeated in the rule")
    return v


ObjectRef = Annotated[str, AfterValidator(_object_ref)]
Crontab = Annotated[str, AfterValidator(_crontab)]
MatchRule = Annotated[list[str], AfterValidator(_match_rule)]


class ConflictPolicy(_Model):
    """What happens when both sides changed a field (two-way jobs) or who owns a field.

    ``owners`` maps canonical path globs (``identifiers.*``, ``contact_points.*``) to the system that owns them
    under ``source_of_truth``, first match wins; unlisted fields belong to ``default_owner`` (the job's source).
    """

    # the one policy class: read from the configuration and used by the merge (crmbridge.sync.merge), which gets it
    # with each owner written as the job's side, "source" or "target" (sided())
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["source_of_truth", "last_writer_wins", "manual"] = "source_of_truth"
    owners: dict[str, str] = Field(default_factory=dict)
    clock_tolerance_seconds: float = Field(5.0, ge=0, le=3600,
                                           description="last_writer_wins: closer than this counts as a tie")
    default_owner: Literal["source", "target"] | None = Field("source", description=(
        "owner of the fields no owners glob matches: the job's source (default) or target; null: a conflict on "
        "such a field waits for review"))
    protect_owned: bool = Field(True, description=(
        "source_of_truth: a change made only by the side that does not own a field waits for review instead of "
        "being applied (golden fields are never changed from a CRM silently)"))

    def owner_of(self, path: str) -> str | None:
        """The owner of canonical ``path``: the first matching glob's, else ``default_owner``."""
        for pattern, owner in self.owners.items():
            if fnmatch.fnmatchcase(path, pattern):
                return owner
        return self.default_owner

    def sided(self, source_system: str) -> ConflictPolicy:
        """This policy with each owner written as the job's side: ``source_system`` → ``"source"``, any other
        system → ``"target"``."""
        owners = {glob: ("source" if owner in (source_system, "source") else "target")
                  for glob, owner in self.owners.items()}
        return self.model_copy(update={"owners": owners})


class ParentConfig(_Model):
    """Where an object job (holdings, cases) finds the party its records belong to: the party's cross-reference at
    the source (``source``: the system.Object whose ids the object's ``party_source`` carries, e.g. the core's
    Customer) and the target object holding the party (``target_object``: the one the lookup field points to)."""

    source: ObjectRef = Field(description="system.Object the object's owner id is a record of (e.g. corebank.Customer)")
    target_object: str | None = Field(None, min_length=1, description=(
        "the target's object holding the party (e.g. Contacts): its id there fills the lookup field; unset: the "
        "target knows parties by crmbridge's party id (the bank's complaint service), which fills it instead"))

    @property
    def source_system(self) -> str:
        return self.source.split(".", 1)[0]

    @property
    def source_object(self) -> str:
        return self.source.split(".", 1)[1]


class JobConfig(_Model):
    """One sync job: records of ``source`` go to ``target`` through the two mappings."""

    source: ObjectRef = Field(description="system.Object the records come from")
    target: ObjectRef = Field(description="system.Object they are written to")
    source_mapping: str = Field(description="mapping file source → canonical (under mappings/)")
    target_mapping: str = Field(description="mapping file canonical → target (under mappings/)")
    schedule: Crontab | None = Field(None, description="crontab, UTC; unset = run by hand only")
    direction: Literal["one_way", "two_way"] = "one_way"
    conflict_policy: ConflictPolicy = Field(default_factory=ConflictPolicy)
    delete_policy: Literal["propagate", "deactivate", "ignore"] = "ignore"
    consent_purpose: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]*$")] | None = Field(
        None, description="consent a party needs before being pushed to the target (e.g. SHARE_WITH_CRM_VENDOR)")
    batch_size: int = Field(100, ge=1, le=MAX_BATCH_SIZE, description=(
        "records per batch (one state transaction each); unset: enough to fill the target's concurrent write calls "
        "(vendor batch maximum × concurrency, at least 100: Zoho enterprise 2,000, Fxiaoke 100)"))
    rules: str | None = Field(None, description=(
        "segmentation and lifecycle rules file (under mappings/, e.g. rules.yaml; docs/rules.md): a one-way party job "
        "derives its fields after mapping in and pushes them through the target mapping; a changed file re-derives"))
    match_rules: list[MatchRule] = Field(default_factory=list,
                                         description="tried in order; each a list of canonical keys matched together")
    overlap_seconds: int = Field(60, ge=0, le=86400)
    dead_letter_max_attempts: int = Field(5, ge=1, le=100)
    max_failed_ratio: float = Field(0.1, ge=0, le=1, description=(
        "a run whose dead-lettered records exceed this share of the records it read ends 'failed', not 'partial'"))
    circuit_breaker_calls: int = Field(3, ge=1, le=1000, description=(
        "consecutive calls to one system failing after every retry that stop the run as 'unreachable' (the records "
        "of the batch under way are read again by the next run); fewer are the failing records' own dead letters"))
    duplicate_search: bool | None = Field(None, description=(
        "whether the target's own duplicate rules judge this job's creates (Fxiaoke); unset: the system's default"))
    enabled: bool = True
    expected_duration_seconds: int | None = Field(None, ge=1)
    parent: ParentConfig | None = Field(None, description=(
        "object jobs (mappings of Holding, Interaction...): where the owning party is found, at the source and in the "
        "target; a record whose party is not in the target yet waits as a retryable dead letter"))

    @model_validator(mode="after")
    def _rules_one_way(self) -> JobConfig:
        if self.rules is not None and self.direction == "two_way":
            raise ValueError("rules: derived fields are pushed by one-way party jobs (core → CRM); a two-way job "
                             "would merge them back into the core")
        return self

    @property
    def source_system(self) -> str:
        return self.source.split(".", 1)[0]

    @property
    def source_object(self) -> str:
        return self.source.split(".", 1)[1]

    @property
    def target_system(self) -> str:
        return self.target.split(".", 1)[0]

    @property
    def target_object(self) -> str:
        return self.target.split(".", 1)[1]


class CanonicalConfig(_Model):
    """Additions to the canonical model: extension fields declared without code (crmbridge.canonical.extensions)."""

    extensions: dict[Annotated[str, Field(pattern=EXTENSION_NAME)], ExtensionField] = Field(
        default_factory=dict, description="extension fields of the canonical party, by name (extensions.<name> in "
                                          "mappings)")
    extensions_file: str | None = Field(None, description=(
        "a YAML file with more declarations under its own 'extensions:' key (relative to this file)"))

    _from_file: dict[str, ExtensionField] = PrivateAttr(default_factory=dict)

    def declared(self) -> dict[str, ExtensionField]:
        """Every extension declared here and in ``extensions_file``."""
        return {**self.extensions, **self._from_file}


class CrmBridgeConfig(_Model):
    """The whole configuration file."""

    state: StateConfig = Field(default_factory=StateConfig)
    keys: KeysConfig
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    systems: dict[Annotated[str, Field(pattern=_NAME)], SerializeAsAny[AdapterConfig]] = Field(default_factory=dict)
    jobs: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,127}$")], JobConfig] = Field(default_factory=dict)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    distributed: DistributedConfig | None = None
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    canonical: CanonicalConfig = Field(default_factory=CanonicalConfig)

    _source: _Source | None = PrivateAttr(None)

    @property
    def source_file(self) -> Path | None:
        """The file this configuration was loaded from."""
        return self._source.path if self._source else None

    @property
    def base_dir(self) -> Path:
        """The folder relative ``file:`` secrets and mapping paths start from."""
        return self._source.path.parent if self._source and self._source.path else Path.cwd()

    def where(self, loc: tuple[str | int, ...]) -> str:
        """``file:line`` of a key path, for messages about this configuration."""
        return self._source.where(loc) if self._source else "<config>"

    def mapping_path(self, ref: str) -> Path:
        """A job's mapping reference resolved to a file (see :func:`resolve_mapping_path`)."""
        found = resolve_mapping_path(ref, self.base_dir)
        if found is None:
            raise ConfigurationError(f"mapping file {ref} not found")
        return found


# ============================================================================================ YAML + marks
def _yaml_line(name: str, pr: YamlProblem) -> str:
    where = f"{name}:{pr.line}:{pr.column}" if pr.line is not None and pr.column is not None else name
    if pr.kind == "refused":
        return f"{where}: {pr.message}"
    if pr.kind == "syntax":
        return f"{where}: YAML syntax error: {' '.join(p for p in (pr.context, pr.message) if p)}"
    if pr.kind == "error":
        return f"{name}: YAML error: {pr.message}"
    return f"{name}:{pr.line}: {_dotted(pr.path)}: {pr.message}"


def _load_yaml(text: str, source: _Source) -> tuple[Any, list[str]]:
    """Parse YAML, recording line numbers in ``source``; returns (data, error lines).

    The document is bounded (size, nesting, aliases: core/safeyaml.py); a refusal is an error line naming the
    file, line and column."""
    doc = load_with_lines(text)
    source.lines.update(doc.lines)
    return doc.data, [_yaml_line(source.name, pr) for pr in doc.problems]


# ============================================================================================ errors
_SECRETISH_KEY = re.compile(r"(pass(word|wd)?|secret|token|key|credential|code|private|auth|pin)$", re.I)
_RIC = re.compile(r"^\d{15}$|^\d{17}[\dXx]$")
_MOBILE = re.compile(r"^(\+?86)?1[3-9]\d{9}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL_PASSWORD = re.compile(r"(://[^/:@\s]*:)[^@/\s]+@")
_USCC = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _shown(value: Any, loc: tuple[str | int, ...], *, secret: bool = False) -> str:
    """The offending value as it may be shown: secrets and personal-looking values masked."""
    last = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    if value is None:
        return "nothing"
    text = str(value)
    if secret or _SECRETISH_KEY.search(last):
        return "*** (hidden)"
    if isinstance(value, str):
        text = _URL_PASSWORD.sub(r"\1***@", text)
        if _RIC.match(text):
            return repr(mask("ric", text))
        if _USCC.match(text):
            return repr(mask("uscc", text))
        if _MOBILE.match(text):
            return repr(mask("mobile", text))
        if _EMAIL.match(text):
            return repr(mask("email", text))
        return repr(text if len(text) <= 80 else text[:77] + "...")
    return repr(value)


def _line(source: _Source, loc: tuple[str | int, ...], message: str, value: Any = ..., *,
          secret: bool = False) -> str:
    got = "" if value is ... else f" (got {_shown(value, loc, secret=secret)})"
    return f"{source.where(loc)}: {_dotted(loc)}: {message}{got}"


def _pydantic_lines(exc: PydanticValidationError, source: _Source, prefix: tuple[str | int, ...]) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if loc and loc[-1] == "[key]":
            allowed = "digits, _ and -" if loc[:1] == ("jobs",) else "digits and _"
            loc, msg = loc[:-1], f"invalid name: lower-case letters, {allowed} only, starting with a letter"
        if err["type"] == "missing":
            out.append(_line(source, loc, "required key is missing"))
            continue
        if err["type"] == "extra_forbidden":
            out.append(_line(source, loc, "unknown key (not allowed here)"))
            continue
        secret = "secret reference" in msg
        out.append(_line(source, loc, msg, err.get("input"), secret=secret))
    return out


class _Collected(list[str]):
    def raise_if_any(self, source: _Source) -> None:
        if self:
            head = f"{source.name}: {len(self)} configuration error{'s' if len(self) != 1 else ''}"
            raise ConfigurationError(head + "\n" + "\n".join(f"  {e}" for e in self))


# ============================================================================================ loading
def load_config(path: str | Path | None = None) -> CrmBridgeConfig:
    """Load and validate the configuration file.

    Args:
        path: the YAML file; default :func:`default_config_path`.

    Raises:
        ConfigurationError: listing every problem found, each with file, line and key path.
    """
    p = Path(path) if path is not None else default_config_path()
    source = _Source(p)
    try:
        raw = read_bounded(p)
    except FileNotFoundError:
        raise ConfigurationError(f"configuration file {p} not found (use --config FILE or set {CONFIG_ENV})") \
            from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read configuration file {p}: {exc}") from None
    if (too_big := size_problem(len(raw))) is not None:
        raise ConfigurationError(f"{p}: {too_big}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"cannot read configuration file {p}: {exc}") from None
    data, errors = _load_yaml(text, source)
    if errors and data is None:
        _Collected(errors).raise_if_any(source)
    return _parse(data, source, _Collected(errors))


def parse_config(data: Mapping[str, Any], *, path: str | Path | None = None) -> CrmBridgeConfig:
    """Validate an already-parsed configuration mapping (no line numbers). ``path`` anchors relative paths."""
    return _parse(data, _Source(Path(path) if path else None), _Collected())


def _parse(data: Any, source: _Source, errors: _Collected) -> CrmBridgeConfig:
    if not isinstance(data, Mapping):
        errors.append(_line(source, (), "the file must be a mapping of top-level keys (state, keys, systems, jobs...)",
                            data))
        errors.raise_if_any(source)
    data = dict(data)

    systems_raw = data.get("systems", {})
    systems: dict[str, AdapterConfig] = {}
    listed: dict[str, Any] = {}
    if not isinstance(systems_raw, Mapping):
        message, listed = _systems_not_a_mapping(systems_raw)
        errors.append(_line(source, ("systems",), message, systems_raw))
        systems_raw = {}
    try:        # the top-level retry policy is every system's default (errors in it are reported below)
        default_retry: RetryPolicy | None = RetryPolicy.model_validate(data.get("retry") or {})
    except PydanticValidationError:
        default_retry = None
    for name, body in systems_raw.items():
        if isinstance(body, Mapping) and "retry" not in body and default_retry is not None:
            body = {**body, "retry": default_retry}
        cfg = _validate_system(str(name), body, source, errors)
        if cfg is not None:
            systems[str(name)] = cfg

    rest = {k: v for k, v in data.items() if k != "systems"}
    config: CrmBridgeConfig | None = None
    try:
        config = CrmBridgeConfig.model_validate({**rest, "systems": systems})
    except PydanticValidationError as exc:
        errors.extend(_pydantic_lines(exc, source, ()))

    base_dir = source.path.parent if source.path else Path.cwd()
    # a job naming a system the malformed systems: list holds is not also "an unknown system"
    errors.extend(_cross_checks(data, dict(systems_raw) or listed, source, base_dir))
    if config is not None:
        errors.extend(_misplaced_references(config, source))
        errors.extend(_extensions_file(config, source, base_dir))
    errors.raise_if_any(source)
    assert config is not None
    config._source = source
    # the extension fields in force: parties validate their extensions and mappings resolve extensions.<name>
    declare_extensions(config.canonical.declared())
    return config


def _extensions_file(config: CrmBridgeConfig, source: _Source, base_dir: Path) -> list[str]:
    """Load ``canonical.extensions_file``: every problem located in that file (or at the reference)."""
    out: list[str] = []
    for name in config.canonical.extensions:
        if (rule := c3_rule(name)) is not None:
            out.append(_line(source, ("canonical", "extensions", name), f"the name looks like authentication data "
                                                                        f"(C3, {rule}), which is never carried"))
    ref = config.canonical.extensions_file
    if not ref:
        return out
    p = Path(ref) if Path(ref).is_absolute() else base_dir / ref
    here = ("canonical", "extensions_file")
    try:
        raw = read_bounded(p)
        text = raw.decode("utf-8")
    except FileNotFoundError:
        return [*out, _line(source, here, f"extensions file {p} not found")]
    except (OSError, UnicodeDecodeError) as exc:
        return [*out, _line(source, here, f"cannot read extensions file {p}: {exc}")]
    if (too_big := size_problem(len(raw))) is not None:
        return [*out, _line(source, here, too_big)]
    file_source = _Source(p)
    data, errors = _load_yaml(text, file_source)
    if errors:
        return [*out, *errors]
    if not isinstance(data, Mapping) or set(data) - {"extensions"} or not isinstance(data.get("extensions"), Mapping):
        return [*out, _line(file_source, (), "an extensions file is a mapping with one key, extensions: "
                                             "{name: {...}}")]
    found: dict[str, ExtensionField] = {}
    for name, body in data["extensions"].items():
        loc: tuple[str | int, ...] = ("extensions", name)
        if not isinstance(name, str) or not re.match(EXTENSION_NAME, name):
            out.append(_line(file_source, loc, "invalid name: lower-case letters, digits and _, starting with a "
                                               "letter"))
            continue
        if (rule := c3_rule(name)) is not None:
            out.append(_line(file_source, loc, f"the name looks like authentication data (C3, {rule}), which is "
                                               "never carried"))
            continue
        if name in config.canonical.extensions:
            twin = source.where(("canonical", "extensions", name))
            out.append(_line(file_source, loc, f"{name} is also declared in {twin}"))
            continue
        try:
            found[name] = ExtensionField.model_validate(body)
        except PydanticValidationError as exc:
            out.extend(_pydantic_lines(exc, file_source, loc))
    config.canonical._from_file = found
    return out


def _systems_not_a_mapping(value: Any) -> tuple[str, dict[str, Any]]:
    """What is wrong with a ``systems:`` that is not a mapping, and the system names it seems to hold (an item
    ``- corebank: {...}``, ``- name: corebank``, or ``- corebank``), so jobs naming them are not reported as naming
    an unknown system as well."""
    shape = "write each system as 'NAME:' with its settings indented under it (adapter: ...), without a leading '- '"
    if value is None:
        return f"is empty: give a mapping of system name → settings; {shape}", {}
    if not isinstance(value, list):
        return f"must be a mapping of system name → settings, not a {type(value).__name__}; {shape}", {}
    names: dict[str, Any] = {}
    for item in value:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            names[item["name"]] = dict(item)
        elif isinstance(item, Mapping) and len(item) == 1:
            key, body = next(iter(item.items()))
            names[str(key)] = body if isinstance(body, Mapping) else {}
        elif isinstance(item, str):
            names[item] = {}
    held = f" (its items name {', '.join(names)})" if names else ""
    return f"must be a mapping of system name → settings, not a list{held}; {shape}", names


def _validate_system(name: str, body: Any, source: _Source, errors: list[str]) -> AdapterConfig | None:
    from crmbridge.adapters.registry import adapter_config_class

    loc: tuple[str | int, ...] = ("systems", name)
    valid_name = bool(re.match(_NAME, name))
    if not valid_name:
        errors.append(_line(source, loc, "invalid name: lower-case letters, digits and _ only (no dots), "
                            "starting with a letter", name))
    if not isinstance(body, Mapping):
        errors.append(_line(source, loc, "must be a mapping with at least 'adapter: NAME'", body))
        return None
    adapter = body.get("adapter")
    if not isinstance(adapter, str) or not adapter:
        errors.append(_line(source, loc + ("adapter",), "required: the adapter name (zoho, fxiaoke, ...)",
                            *(() if adapter is None else (adapter,))))
        return None
    try:
        config_cls = adapter_config_class(adapter)   # a built-in's without its transport (issue 19)
    except UnknownAdapterError as exc:
        errors.append(_line(source, loc + ("adapter",), exc.message))
        return None
    except ImportError as exc:
        errors.append(_line(source, loc + ("adapter",),
                            f"adapter {adapter!r} is registered but its module cannot be imported "
                            f"({type(exc).__name__}: {exc})"))
        return None
    except AttributeError as exc:
        errors.append(_line(source, loc + ("adapter",),
                            f"adapter {adapter!r} is registered but its class is missing ({exc})"))
        return None
    try:
        validated = config_cls.model_validate(dict(body))
        return validated if valid_name else None
    except PydanticValidationError as exc:
        errors.extend(_pydantic_lines(exc, source, loc))
        return None


def resolve_mapping_path(ref: str, base_dir: Path) -> Path | None:
    """Find a mapping file: absolute; else relative to the config file's folder, the package (repository) root,
    or its ``mappings/`` folder. ``None`` if none exists."""
    p = Path(ref)
    if p.is_absolute():
        return p if p.is_file() else None
    for root in (base_dir, PACKAGE_ROOT, PACKAGE_ROOT / "mappings"):
        if (root / p).is_file():
            return root / p
    return None


def _mismatch_message(m_system: Any, m_object: Any, adapter: Any, obj: str) -> str | None:
    if isinstance(adapter, str) and isinstance(m_system, str) and m_system.replace("-", "_") != adapter:
        return f"this mapping is for adapter {m_system!r}, but the job's system uses adapter {adapter!r}"
    if isinstance(m_object, str) and m_object != obj:
        return f"this mapping is for object {m_object!r}, but the job names object {obj!r}"
    return None


_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_HEADER_KEYS = ("system", "object")


def _scalar_tag(ev: Any, resolve: Any) -> str:
    """A scalar event's tag as the composer settles it (explicit, else resolved from the value)."""
    tag = ev.tag
    if tag is None or tag == "!":
        tag = resolve(yaml.ScalarNode, ev.value, ev.implicit)
    return str(tag)


def _header_agrees(text: str, adapter: Any, obj: str) -> bool:
    """The fast path of :func:`_mapping_mismatch` (issue 19: reading every mapping of a configuration through the
    pure-Python composer took ~0.1 s of each command's start-up): True when libyaml's event stream (events only,
    nothing composed, so no alias is expanded) shows a header that agrees with the job end. Whatever it cannot
    read as plainly as the bounded loader would (an alias or a collection as a header value, a merge key, a complex
    key, several documents, a syntax error, no libyaml) and any disagreement return False: the caller then
    reads the file with :class:`BoundedLoader` exactly as before, so only an agreeing header is decided here."""
    if not getattr(yaml, "__with_libyaml__", False):
        return False
    resolve = yaml.resolver.Resolver().resolve
    found: dict[str, Any] = {}
    depth, docs, is_key, key = 0, 0, True, None
    try:
        for ev in yaml.parse(text, Loader=yaml.CSafeLoader):
            if isinstance(ev, yaml.DocumentStartEvent):
                docs += 1
                if docs > 1:
                    return False
            elif isinstance(ev, (yaml.ScalarEvent, yaml.AliasEvent, yaml.CollectionStartEvent)):
                if depth == 0 and not isinstance(ev, yaml.MappingStartEvent):
                    return False                 # the root is not a mapping
                if depth == 1:                   # a key or a value of the root mapping
                    if is_key:
                        if not isinstance(ev, yaml.ScalarEvent):
                            return False         # a complex key
                        tag = _scalar_tag(ev, resolve)
                        if tag == _MERGE_TAG:
                            return False
                        key = ev.value if tag == _STR_TAG else None
                    elif key in _HEADER_KEYS:
                        if not isinstance(ev, yaml.ScalarEvent):
                            return False
                        # the value the constructor would make a str of; the last one wins, as when constructed
                        found[key] = ev.value if _scalar_tag(ev, resolve) == _STR_TAG else None
                    is_key = not is_key
                if isinstance(ev, yaml.CollectionStartEvent):
                    depth += 1
            elif isinstance(ev, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return False
    return _mismatch_message(found.get("system"), found.get("object"), adapter, obj) is None


def _mapping_mismatch(path: Path, adapter: Any, obj: str) -> str | None:
    """Whether a mapping file's own ``system:``/``object:`` header disagrees with the job end it serves.

    Only the header is compared; ``crmbridge mapping validate`` checks the rest of the file.
    """
    try:
        raw = read_bounded(path)
        if size_problem(len(raw)) is not None:
            return None                  # reported by the mapping loader
        text = raw.decode("utf-8")
        if _header_agrees(text, adapter, obj):
            return None
        loader = BoundedLoader(text)
        try:
            head = loader.get_single_data()
        finally:
            loader.dispose()
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None                      # reported by the mapping loader, with its own line numbers
    if not isinstance(head, Mapping):
        return None
    return _mismatch_message(head.get("system"), head.get("object"), adapter, obj)


def _cross_checks(data: Mapping[str, Any], systems: Mapping[str, Any], source: _Source,
                  base_dir: Path) -> list[str]:
    """Checks across keys, on the raw data so they run even when other keys are wrong."""
    out: list[str] = []
    jobs = data.get("jobs")
    if not isinstance(jobs, Mapping):
        return out
    known = ", ".join(sorted(map(str, systems))) or "(none configured)"
    for name, job in jobs.items():
        if not isinstance(job, Mapping):
            continue
        loc: tuple[str | int, ...] = ("jobs", str(name))
        ends: dict[str, str] = {}
        for end in ("source", "target"):
            ref = job.get(end)
            if isinstance(ref, str) and "." in ref:
                system = ref.split(".", 1)[0]
                ends[end] = system
                if re.match(_NAME, system) and system not in systems:
                    out.append(_line(source, loc + (end,), f"unknown system {system!r}; configured: {known}", ref))
        if isinstance(job.get("source"), str) and job.get("source") == job.get("target"):
            out.append(_line(source, loc + ("target",), "target must differ from source", job.get("target")))
        for key, end in (("source_mapping", "source"), ("target_mapping", "target")):
            ref = job.get(key)
            if not isinstance(ref, str) or not ref:
                continue
            found = resolve_mapping_path(ref, base_dir)
            if found is None:
                out.append(_line(source, loc + (key,),
                                 f"mapping file not found (looked in {base_dir.resolve()}, {PACKAGE_ROOT} and "
                                 f"{PACKAGE_ROOT / 'mappings'})", ref))
                continue
            system_body = systems.get(ends.get(end, ""))
            adapter = system_body.get("adapter") if isinstance(system_body, Mapping) else None
            obj = str(job.get(end)).split(".", 1)[-1]
            problem = _mapping_mismatch(found, adapter, obj)
            if problem:
                out.append(_line(source, loc + (key,), problem, ref))
        policy = job.get("conflict_policy")
        owners = policy.get("owners") if isinstance(policy, Mapping) else None
        if isinstance(owners, Mapping) and ends:
            for glob, owner in owners.items():
                if isinstance(owner, str) and owner not in ends.values():
                    out.append(_line(source, loc + ("conflict_policy", "owners", str(glob)),
                                     f"owner must be this job's source or target system "
                                     f"({', '.join(sorted(set(ends.values())))})", owner))
    return out


# ============================================================================================ secrets
def _is_secret_annotation(annotation: Any, metadata: list[Any]) -> bool:
    if any(m is _SECRET_VALIDATOR for m in metadata):
        return True
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        args = typing.get_args(annotation)
        return any(m is _SECRET_VALIDATOR for m in args[1:]) or _is_secret_annotation(args[0], [])
    if origin in (typing.Union, types.UnionType):
        return any(_is_secret_annotation(a, []) for a in typing.get_args(annotation))
    return False


def _strings(obj: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str, bool]]:
    """Every (key path, string value, is it a secret-reference field) in a validated model tree."""
    if isinstance(obj, BaseModel):
        for name, info in type(obj).model_fields.items():
            value = getattr(obj, name)
            if isinstance(value, str):
                yield loc + (name,), value, _is_secret_annotation(info.annotation, list(info.metadata))
            else:
                yield from _strings(value, loc + (name,))
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            if isinstance(v, str):
                yield loc + (str(k),), v, False
            else:
                yield from _strings(v, loc + (str(k),))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            if isinstance(v, str):
                yield loc + (i,), v, False
            else:
                yield from _strings(v, loc + (i,))


def _secret_refs(obj: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every (key path, secret reference) in a validated model tree."""
    for where, value, secret in _strings(obj, loc):
        if secret and is_secret_reference(value):  # a plain value where a reference is optional
            yield where, value


def _misplaced_references(config: CrmBridgeConfig, source: _Source) -> list[str]:
    """``env:NAME`` written where a key takes a literal value: it would be used as the literal text."""
    return [_line(source, where, "this key takes a literal value; 'env:' references are resolved only in "
                                 "secret keys", value)
            for where, value, secret in _strings(config, ()) if not secret and value.startswith("env:")]


def check_secrets(config: CrmBridgeConfig) -> list[str]:
    """Resolve every secret reference in ``config``; one located line per unset variable or unreadable file.

    Values are resolved and dropped at once: nothing is kept or shown.
    """
    out = []
    source = config._source or _Source(None)
    for loc, ref in _secret_refs(config, ()):
        try:
            resolve_secret(ref, base_dir=config.base_dir)
        except SecretError as exc:
            out.append(f"{source.where(loc)}: {_dotted(loc)}: {exc.message} (reference {ref!r})")
    return out


# ============================================================================================ schema
def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the configuration file, with each importable adapter's settings under ``systems``.

    Adapters whose module cannot be imported appear as ``{"adapter": NAME}`` objects without further checks.
    """
    from crmbridge.adapters.registry import adapter_config_class, adapter_names

    classes: dict[str, type[AdapterConfig]] = {}
    for name in adapter_names():
        try:
            classes[name] = adapter_config_class(name)   # a built-in's without its transport (issue 19)
        except (ImportError, AttributeError):
            continue
    unique = list(dict.fromkeys(classes.values()))
    refs, schema = models_json_schema([(CrmBridgeConfig, "validation"), *[(c, "validation") for c in unique]],
                                      title="crmbridge configuration")
    defs = schema.setdefault("$defs", {})
    top_ref = refs[(CrmBridgeConfig, "validation")]["$ref"].rsplit("/", 1)[-1]
    top = defs.pop(top_ref)
    variants: list[dict[str, Any]] = []
    for name in adapter_names():
        if name in classes:
            ref = refs[(classes[name], "validation")]
            variants.append({"allOf": [ref, {"properties": {"adapter": {"const": name}}}], "title": name})
        else:
            variants.append({"type": "object", "title": name, "required": ["adapter"],
                             "properties": {"adapter": {"const": name}},
                             "description": f"adapter {name}: settings schema unavailable (module not importable)"})
    systems = top["properties"]["systems"]
    systems["patternProperties"] = {_NAME: {"anyOf": variants}}
    systems["additionalProperties"] = False
    systems["description"] = "system name → its adapter and the adapter's own settings"
    if '"#/$defs/AdapterConfig"' not in json.dumps([top, {k: v for k, v in defs.items() if k != "AdapterConfig"}]):
        defs.pop("AdapterConfig", None)
    out = {"$schema": "https://json-schema.org/draft/2020-12/schema", **top, "$defs": defs}
    out["title"] = "crmbridge configuration"
    return out
