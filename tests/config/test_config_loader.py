"""The configuration loader: every problem found at once, each located by file, line and key path."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from crmbridge.adapters import registry
from crmbridge.config import (
    PACKAGE_ROOT,
    CrmBridgeConfig,
    check_secrets,
    config_json_schema,
    default_config_path,
    load_config,
    parse_config,
    resolve_mapping_path,
)
from crmbridge.core.errors import ConfigurationError

EXAMPLE = PACKAGE_ROOT / "config" / "crmbridge.yaml"

VALID = """\
state:
  url: sqlite:///var/test.db
keys:
  master_key: env:CRMBRIDGE_TEST_MASTER_KEY
systems:
  core:
    adapter: memory
    base_url: http://127.0.0.1:8900
    client_id: core-client
    client_secret: env:CRMBRIDGE_TEST_CORE_SECRET
  crm:
    adapter: memory
    base_url: http://127.0.0.1:8901
    client_id: crm-client
    client_secret: file:secrets/crm_secret
jobs:
  core_to_crm:
    source: core.Customer
    target: crm.Contacts
    source_mapping: mappings/core.yaml
    target_mapping: mappings/crm.yaml
    schedule: "*/15 * * * *"
    match_rules: [[CN_RIC], [mobile, name]]
    consent_purpose: SHARE_WITH_CRM_VENDOR
"""


def write(tmp_path: Path, text: str, name: str = "crmbridge.yaml") -> Path:
    (tmp_path / "mappings").mkdir(exist_ok=True)
    for m in ("core.yaml", "crm.yaml"):
        (tmp_path / "mappings" / m).write_text("# stub mapping\n", encoding="utf-8")
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    first, *rest = str(info.value).splitlines()
    assert re.search(r"\d+ configuration errors?$", first)
    assert int(first.rsplit(":", 1)[1].split()[0]) == len(rest)
    return [r.strip() for r in rest]


def line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


def replace(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


# ------------------------------------------------------------------------------------------------ valid
def test_valid_config_parses_into_models(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, VALID))
    assert isinstance(cfg, CrmBridgeConfig)
    assert cfg.state.url == "sqlite:///var/test.db"
    assert cfg.keys.algorithm == "aes-256-gcm" and cfg.keys.effective_provider == "env"
    assert type(cfg.systems["core"]).__name__ == "MemoryConfig"
    assert cfg.systems["core"].client_id == "core-client"  # type: ignore[attr-defined]
    job = cfg.jobs["core_to_crm"]
    assert (job.source_system, job.source_object, job.target_system, job.target_object) == (
        "core", "Customer", "crm", "Contacts")
    assert job.match_rules == [["CN_RIC"], ["mobile", "name"]]
    assert job.direction == "one_way" and job.delete_policy == "ignore" and job.enabled
    assert cfg.mapping_path(job.source_mapping) == tmp_path / "mappings" / "core.yaml"
    assert cfg.source_file == tmp_path / "crmbridge.yaml"
    path = tmp_path / "crmbridge.yaml"
    assert cfg.where(("jobs", "core_to_crm", "schedule")) == f"{path}:{line_of(path, 'schedule:')}"
    assert cfg.retry.max_attempts == 6


def test_top_level_retry_is_the_systems_default(tmp_path: Path) -> None:
    text = VALID.replace("state:\n", "retry:\n  max_attempts: 9\n  initial_wait: 0.1\nstate:\n", 1)
    text = replace(text, "    client_id: crm-client\n", "    client_id: crm-client\n    retry: {max_attempts: 2}\n")
    cfg = load_config(write(tmp_path, text))
    assert cfg.retry.max_attempts == 9
    assert cfg.systems["core"].retry.max_attempts == 9 and cfg.systems["core"].retry.initial_wait == 0.1
    assert cfg.systems["crm"].retry.max_attempts == 2 and cfg.systems["crm"].retry.initial_wait == 0.5


def test_secret_values_never_in_repr(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, VALID))
    assert "env:CRMBRIDGE_TEST_MASTER_KEY" in repr(cfg)      # the reference, never a value


def test_parse_config_without_file() -> None:
    data = yaml.safe_load(VALID)
    del data["jobs"]
    cfg = parse_config(data)
    assert set(cfg.systems) == {"core", "crm"} and cfg.jobs == {}
    with pytest.raises(ConfigurationError, match=r"keys\.master_key: required key is missing"):
        parse_config({"keys": {}})


def test_default_path_honours_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CRMBRIDGE_CONFIG", raising=False)
    assert default_config_path() == Path("config/crmbridge.yaml")
    path = write(tmp_path, VALID)
    monkeypatch.setenv("CRMBRIDGE_CONFIG", str(path))
    assert default_config_path() == path
    assert set(load_config().jobs) == {"core_to_crm"}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not found .*--config"):
        load_config(tmp_path / "nope.yaml")


# ------------------------------------------------------------------------------------------------ example
def test_documented_example_loads(tmp_path: Path) -> None:
    """The shipped example is valid as shipped: every adapter it names imports, every mapping it names exists."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    folder = tmp_path / "config"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "crmbridge.yaml")
    for job in data["jobs"].values():
        for key in ("source_mapping", "target_mapping"):
            assert resolve_mapping_path(job[key], folder) is not None, f"the example names a missing {job[key]}"
    cfg = load_config(folder / "crmbridge.yaml")
    assert set(cfg.systems) == {"corebank", "core_accounts", "corebank_rest", "zoho_cn", "fxiaoke", "complaints"}
    assert {"core_to_zoho_contacts", "core_to_fxiaoke_accounts", "fxiaoke_contacts_two_way",
            "zoho_campaign_responses", "core_holdings_to_zoho", "zoho_cases_to_complaints",
            "complaints_status_to_zoho"} <= set(cfg.jobs)
    assert cfg.jobs["core_to_zoho_contacts"].rules is not None
    assert resolve_mapping_path(cfg.jobs["core_to_zoho_contacts"].rules, folder) is not None
    assert cfg.jobs["core_holdings_to_zoho"].parent is not None


def test_example_documents_every_top_level_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for key in CrmBridgeConfig.model_fields:
        assert re.search(rf"^{key}:", text, re.M), key


# ------------------------------------------------------------------------------------------------ error kinds
def test_unknown_key_located(tmp_path: Path) -> None:
    path = write(tmp_path, replace(VALID, "    schedule:", "    schedul: '0 * * * *'\n    schedule:"))
    [err] = errors_of(path)
    assert err == f"{path}:{line_of(path, 'schedul:')}: jobs.core_to_crm.schedul: unknown key (not allowed here)"


def test_missing_required_key_located_at_parent(tmp_path: Path) -> None:
    path = write(tmp_path, replace(VALID, "  master_key: env:CRMBRIDGE_TEST_MASTER_KEY\n", "  algorithm: sm4-gcm\n"))
    [err] = errors_of(path)
    assert err == f"{path}:{line_of(path, 'keys:')}: keys.master_key: required key is missing"


def test_literal_secret_refused_and_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, replace(VALID, "env:CRMBRIDGE_TEST_CORE_SECRET", "Sup3rS3cretValue!"))
    [err] = errors_of(path)
    assert err.startswith(f"{path}:{line_of(path, 'Sup3rS3cretValue!')}: systems.core.client_secret: ")
    assert "secret reference" in err and "literal" in err
    assert "Sup3rS3cretValue" not in err and "hidden" in err


def test_literal_master_key_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, replace(VALID, "env:CRMBRIDGE_TEST_MASTER_KEY", "q83vEjRWeJq83vEjRWeJq83vEjRWeJ=="))
    [err] = errors_of(path)
    assert "keys.master_key" in err and "q83vEj" not in err


def test_unset_env_and_unreadable_file_reported_by_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRMBRIDGE_TEST_MASTER_KEY", raising=False)
    monkeypatch.setenv("CRMBRIDGE_TEST_CORE_SECRET", "value-not-to-leak")
    path = write(tmp_path, VALID)
    cfg = load_config(path)                              # references are well formed: loading succeeds
    problems = check_secrets(cfg)
    assert problems == [
        f"{path}:{line_of(path, 'master_key')}: keys.master_key: environment variable CRMBRIDGE_TEST_MASTER_KEY "
        "is not set (reference 'env:CRMBRIDGE_TEST_MASTER_KEY')",
        f"{path}:{line_of(path, 'file:secrets')}: systems.crm.client_secret: cannot read secret file "
        f"{tmp_path / 'secrets' / 'crm_secret'}: No such file or directory (reference 'file:secrets/crm_secret')",
    ]
    monkeypatch.setenv("CRMBRIDGE_TEST_MASTER_KEY", "k")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "crm_secret").write_text("s\n", encoding="utf-8")
    assert check_secrets(cfg) == []
    assert all("value-not-to-leak" not in p for p in problems)


def test_env_reference_in_a_literal_key(tmp_path: Path) -> None:
    path = write(tmp_path, replace(VALID, "client_id: core-client", "client_id: env:CORE_CLIENT_ID"))
    [err] = errors_of(path)
    assert err == (f"{path}:{line_of(path, 'env:CORE_CLIENT_ID')}: systems.core.client_id: this key takes a literal "
                   "value; 'env:' references are resolved only in secret keys (got 'env:CORE_CLIENT_ID')")


def test_unknown_adapter_lists_known(tmp_path: Path) -> None:
    path = write(tmp_path, replace(VALID, "    adapter: memory\n    base_url: http://127.0.0.1:8901",
                                   "    adapter: salesforce\n    base_url: http://127.0.0.1:8901"))
    [err] = errors_of(path)
    assert err.startswith(f"{path}:{line_of(path, 'salesforce')}: systems.crm.adapter: unknown adapter 'salesforce'")
    assert "known adapters: complaints, corebank_rest, corebank_soap, fxiaoke, memory, zoho" in err


def test_registered_adapter_that_cannot_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._BUILTIN_ADAPTERS, "ghost", "crmbridge.adapters.ghost_not_written:GhostAdapter")
    path = write(tmp_path, replace(VALID, "    adapter: memory\n    base_url: http://127.0.0.1:8901",
                                   "    adapter: ghost\n    base_url: http://127.0.0.1:8901"))
    [err] = errors_of(path)
    assert err.startswith(f"{path}:{line_of(path, 'ghost')}: systems.crm.adapter: adapter 'ghost' is registered "
                          "but its module cannot be imported (ModuleNotFoundError")


def test_adapter_settings_validated_by_the_adapter(tmp_path: Path) -> None:
    path = write(tmp_path, replace(VALID, "    client_id: crm-client\n", "    page_size: 5000\n    color: red\n"))
    errs = errors_of(path)
    assert f"{path}:{line_of(path, 'page_size')}: systems.crm.page_size: Input should be less than or equal " \
           "to 200 (got 5000)" in errs
    assert f"{path}:{line_of(path, 'color')}: systems.crm.color: unknown key (not allowed here)" in errs
    assert f"{path}:{line_of(path, '  crm:')}: systems.crm.client_id: required key is missing" in errs
    assert len(errs) == 3


def test_missing_adapter_name(tmp_path: Path) -> None:
    path = write(tmp_path, replace(VALID, "    adapter: memory\n    base_url: http://127.0.0.1:8901",
                                   "    base_url: http://127.0.0.1:8901"))
    [err] = errors_of(path)
    assert err == (f"{path}:{line_of(path, '  crm:')}: systems.crm.adapter: "
                   "required: the adapter name (zoho, fxiaoke, ...)")


def test_bad_cron(tmp_path: Path) -> None:
    path = write(tmp_path, replace(VALID, '"*/15 * * * *"', '"*/15 * * *"'))
    [err] = errors_of(path)
    assert err.startswith(f"{path}:{line_of(path, 'schedule')}: jobs.core_to_crm.schedule: must be a 5-field crontab")
    assert err.endswith("(got '*/15 * * *')")
    path = write(tmp_path, replace(VALID, '"*/15 * * * *"', '"61 * * * *"'))
    assert "jobs.core_to_crm.schedule: must be a 5-field crontab" in errors_of(path)[0]


def test_unknown_system_in_job(tmp_path: Path) -> None:
    path = write(tmp_path, replace(VALID, "target: crm.Contacts", "target: zoho.Contacts"))
    [err] = errors_of(path)
    assert err == (f"{path}:{line_of(path, 'target: zoho')}: jobs.core_to_crm.target: unknown system 'zoho'; "
                   "configured: core, crm (got 'zoho.Contacts')")


def test_object_reference_needs_an_object(tmp_path: Path) -> None:
    path = write(tmp_path, replace(VALID, "source: core.Customer", "source: core."))
    [err] = errors_of(path)
    assert "jobs.core_to_crm.source: must be 'system.Object'" in err and f":{line_of(path, 'source: core.')}:" in err


def test_missing_mapping_file(tmp_path: Path) -> None:
    path = write(tmp_path, replace(VALID, "mappings/crm.yaml", "mappings/nope.yaml"))
    [err] = errors_of(path)
    assert err.startswith(f"{path}:{line_of(path, 'nope.yaml')}: jobs.core_to_crm.target_mapping: "
                          "mapping file not found")


def test_mapping_for_another_system_or_object(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    (tmp_path / "mappings" / "crm.yaml").write_text("system: zoho\nobject: Contacts\nversion: 1\n", encoding="utf-8")
    (tmp_path / "mappings" / "core.yaml").write_text("system: memory\nobject: Client\n", encoding="utf-8")
    errs = errors_of(path)
    assert errs == [
        f"{path}:{line_of(path, 'source_mapping')}: jobs.core_to_crm.source_mapping: this mapping is for object "
        "'Client', but the job names object 'Customer' (got 'mappings/core.yaml')",
        f"{path}:{line_of(path, 'target_mapping')}: jobs.core_to_crm.target_mapping: this mapping is for adapter "
        "'zoho', but the job's system uses adapter 'memory' (got 'mappings/crm.yaml')",
    ]


def test_yaml_syntax_error_located(tmp_path: Path) -> None:
    path = write(tmp_path, replace(VALID, "    source: core.Customer", "    source: [core.Customer"))
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    msg = str(info.value)
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+: YAML syntax error", msg)


def test_duplicate_key_reported(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "state:\n  url: sqlite:///other.db\n")
    [err] = errors_of(path)
    line = line_of(path, "url: sqlite:///other") - 1
    assert err == f"{path}:{line}: state: duplicate key (the later value would silently win)"


def test_every_error_at_once(tmp_path: Path) -> None:
    text = VALID
    text = replace(text, '"*/15 * * * *"', '"bad cron"')
    text = replace(text, "target: crm.Contacts", "target: nowhere.Contacts")
    text = replace(text, "env:CRMBRIDGE_TEST_CORE_SECRET", "plaintext")
    text = replace(text, "[[CN_RIC], [mobile, name]]", "[[CN_RIC], [shoe_size]]")
    text += "metrics:\n  port: 70000\nlogging:\n  level: LOUD\n"
    path = write(tmp_path, text)
    errs = errors_of(path)
    keys = sorted(e.split(": ", 2)[1] for e in errs)
    assert keys == ["jobs.core_to_crm.match_rules[1]", "jobs.core_to_crm.schedule", "jobs.core_to_crm.target",
                    "logging.level", "metrics.port", "systems.core.client_secret"]
    for e in errs:
        assert re.match(rf"{re.escape(str(path))}:\d+: ", e), e


def test_personal_values_masked_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, replace(VALID, "consent_purpose: SHARE_WITH_CRM_VENDOR", "consent_purpose: '13812345678'"))
    [err] = errors_of(path)
    assert "jobs.core_to_crm.consent_purpose" in err
    assert "13812345678" not in err and "138****5678" in err
    path = write(tmp_path, replace(VALID, "client_id: core-client", "client_id: [11010519491231002X]"))
    [err] = errors_of(path)
    assert "11010519491231002X" not in err


@pytest.mark.parametrize(("old", "new", "where", "expect"), [
    ("    consent_purpose:", "    batch_size: 100000\n    consent_purpose:", "jobs.core_to_crm.batch_size",
     "less than or equal to 5000"),
    ("[[CN_RIC], [mobile, name]]", "[[]]", "jobs.core_to_crm.match_rules[0]", "at least one key"),
    ("    consent_purpose:", "    direction: both\n    consent_purpose:", "jobs.core_to_crm.direction",
     "'one_way' or 'two_way'"),
    ("target: crm.Contacts", "target: core.Customer", "jobs.core_to_crm.target", "must differ from source"),
    ("    consent_purpose:", "    conflict_policy: {owners: {'kyc.*': elsewhere}}\n    consent_purpose:",
     "jobs.core_to_crm.conflict_policy.owners.kyc.*", "owner must be this job's source or target system"),
    ("  master_key: env:CRMBRIDGE_TEST_MASTER_KEY\n",
     "  master_key: env:CRMBRIDGE_TEST_MASTER_KEY\n  provider: file\n", "keys.provider", "provider file needs"),
    ("  url: sqlite:///var/test.db", "  url: mysql://db/crm", "state.url", "sqlite:/// or postgresql://"),
    ("  url: sqlite:///var/test.db", "  url: postgresql://crm:hunter2@db/crm", "state.url",
     "must not carry a password"),
])
def test_field_checks(tmp_path: Path, old: str, new: str, where: str, expect: str) -> None:
    path = write(tmp_path, replace(VALID, old, new))
    [err] = errors_of(path)
    assert f": {where}: " in err and expect in err, err
    assert re.match(rf"{re.escape(str(path))}:\d+: ", err)
    assert "hunter2" not in err


def test_invalid_names(tmp_path: Path) -> None:
    text = replace(VALID, "  crm:\n", "  Crm.Main:\n")
    text = replace(text, "  core_to_crm:\n", "  Core To CRM:\n")
    path = write(tmp_path, text)
    errs = errors_of(path)
    assert errs == [
        f"{path}:{line_of(path, 'Crm.Main:')}: systems.Crm.Main: invalid name: lower-case letters, digits and _ only "
        "(no dots), starting with a letter (got 'Crm.Main')",
        f"{path}:{line_of(path, 'Core To CRM:')}: jobs.Core To CRM: invalid name: lower-case letters, digits, _ and - "
        "only, starting with a letter (got 'Core To CRM')",
        f"{path}:{line_of(path, 'target: crm.')}: jobs.Core To CRM.target: unknown system 'crm'; configured: Crm.Main, "
        "core (got 'crm.Contacts')",
    ]


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- just\n- a list\n")
    [err] = errors_of(path)
    assert err.startswith(f"{path}:1: (top level): the file must be a mapping")
    path = write(tmp_path, "")
    assert "must be a mapping" in errors_of(path)[0]


# ------------------------------------------------------------------------------------------------ schema
def test_json_schema_covers_adapters_and_jobs() -> None:
    schema = config_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(CrmBridgeConfig.model_fields)
    variants = next(iter(schema["properties"]["systems"]["patternProperties"].values()))["anyOf"]
    assert {v["title"] for v in variants} == set(registry.adapter_names())
    memory = next(v for v in variants if v["title"] == "memory")
    ref = memory["allOf"][0]["$ref"].rsplit("/", 1)[1]
    assert "client_secret" in schema["$defs"][ref]["properties"]
    assert "schedule" in schema["$defs"]["JobConfig"]["properties"]


def test_shipped_schema_file_is_current() -> None:
    """The whole committed schema, not a few sections of it, is what the models generate."""
    shipped = json.loads((PACKAGE_ROOT / "config" / "schema.json").read_text(encoding="utf-8"))
    with registry.unregistered("memory"):   # the shipped file is what a production install generates
        fresh = config_json_schema()
    stale = sorted(k for k in set(shipped.get("$defs", {})) | set(fresh.get("$defs", {}))
                   if shipped.get("$defs", {}).get(k) != fresh.get("$defs", {}).get(k))
    assert shipped == fresh, f"regenerate: crmbridge config schema --write (differs in $defs {stale} or the root)"


def test_example_validates_against_shipped_schema() -> None:
    """Editors using config/schema.json accept the documented example and flag a typo in it."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((PACKAGE_ROOT / "config" / "schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert [e.message for e in validator.iter_errors(data)] == []
    data["jobs"]["core_to_zoho_contacts"]["schedual"] = "* * * * *"
    data["systems"]["zoho_cn"]["edition"] = "platinum"
    assert len(list(validator.iter_errors(data))) == 2
