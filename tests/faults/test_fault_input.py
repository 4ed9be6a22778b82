"""Bad input, generated (hypothesis) and hand-written (issue 9): every case ends in a clear, located error or a dead
letter; never an unhandled exception, a hang or a silent drop.

* mapping files: the shipped ones truncated at every kind of point, bytes corrupted (invalid UTF-8 included), and
  random YAML documents -> a mapping or a MappingError naming the file;
* configuration files: the same over a working crmbridge.yaml -> a config or a ConfigurationError naming the file;
* vendor records of random shape and types (missing keys, wrong types, huge values) through the source mapping ->
  a party or a RecordError (a dead letter in a run);
* vendor responses: random JSON and bytes as Zoho's answer to a list call -> records or an AdapterError;
* hostile XML from the core (entity expansion, external entities) during a run -> the run fails cleanly, nothing
  written anywhere.
The number of generated cases is printed (``[fault] input cases``); run with -rP to see it.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from crmbridge.adapters.registry import target_profile
from crmbridge.canonical.mapping import check_mapping_file, load_mapping
from crmbridge.config import load_config
from crmbridge.core.errors import AdapterError, ConfigurationError, CrmBridgeError, MappingError, RecordError
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.engine import run_job
from crmbridge.sync.report import COMPLETED

pytestmark = pytest.mark.slow   # slow tier: generated bad input (hypothesis) through mappings, configs and runs

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = sorted(p for p in (REPO / "mappings").glob("*.yaml") if p.name != "rules.yaml")   # not a mapping
CASES: Counter[str] = Counter()
FAST = settings(max_examples=60, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow], database=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
    | st.just("x" * 200_000) | st.just("\ud800") | st.just(10**400),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20)


@pytest.fixture(scope="module", autouse=True)
def _report_cases() -> Iterator[None]:
    yield
    print(f"\n[fault] input cases: {sum(CASES.values())} {dict(CASES)}")


def _located(exc: BaseException, name: str) -> None:
    text = str(exc)
    assert name in text, f"error does not say where: {text[:300]}"
    assert text.strip(), "an empty error message"


# ============================================================================== mapping files
@FAST
@given(which=st.sampled_from(MAPPINGS), cut=st.floats(0, 1), flips=st.lists(
    st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=3)), max_size=3))
def test_corrupted_mapping_files_load_or_fail_located(tmp_path_factory: pytest.TempPathFactory, which: Path,
                                                     cut: float, flips: list[tuple[float, bytes]]) -> None:
    CASES["mapping-corrupted"] += 1
    data = bytearray(which.read_bytes()[: max(1, int(len(which.read_bytes()) * cut))])
    for at, junk in flips:
        pos = int(len(data) * at)
        data[pos:pos + len(junk)] = junk
    path = tmp_path_factory.mktemp("m") / which.name
    path.write_bytes(bytes(data))
    try:
        load_mapping(path, profile=target_profile)
    except MappingError as exc:
        _located(exc, which.name)
    m, problems = check_mapping_file(path, profile=target_profile)
    assert m is not None or problems


@FAST
@given(doc=json_values)
def test_random_yaml_mapping_documents_fail_located(tmp_path_factory: pytest.TempPathFactory, doc: Any) -> None:
    CASES["mapping-random"] += 1
    path = tmp_path_factory.mktemp("m") / "random_mapping.yaml"
    path.write_text(json.dumps(doc, allow_nan=True) if not isinstance(doc, str) else doc, encoding="utf-8",
                    errors="surrogatepass")
    with pytest.raises(MappingError) as info:
        load_mapping(path, profile=target_profile)
    _located(info.value, "random_mapping.yaml")


# ============================================================================== configuration files
@pytest.fixture(scope="module")
def demo_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with DemoEnvironment(tmp_path_factory.mktemp("cfg") / "demo", customers=5) as env:
        load_config(env.config_path)   # the uncorrupted file is valid
        yield env.config_path


@FAST
@given(cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=3)),
                                            max_size=3))
@example(cut=1.0, flips=[])      # the intact file loads: the "loads" branch is checked on every run
def test_corrupted_configs_load_or_fail_located(demo_config: Path, cut: float,
                                                flips: list[tuple[float, bytes]]) -> None:
    CASES["config-corrupted"] += 1
    original = demo_config.read_bytes()
    data = bytearray(original[: max(1, int(len(original) * cut))])
    for at, junk in flips:
        pos = int(len(data) * at)
        data[pos:pos + len(junk)] = junk
    path = demo_config.parent / "corrupted.yaml"
    path.write_bytes(bytes(data))
    try:
        cfg = load_config(path)
    except ConfigurationError as exc:
        _located(exc, "corrupted.yaml")
    else:
        CASES["config-corrupted-loaded"] += 1
        _loaded_as_written(cfg, yaml.safe_load(bytes(data).decode("utf-8")))


@FAST
@given(patch=st.dictionaries(st.sampled_from(["state", "keys", "systems", "jobs", "logging", "extra"]), json_values,
                             min_size=1, max_size=3))
@example(patch={"logging": {}, "jobs": {}})   # sections that load: the "loads" branch is checked on every run
def test_configs_with_random_sections_fail_located(demo_config: Path, patch: dict[str, Any]) -> None:
    CASES["config-random"] += 1
    cfg = yaml.safe_load(demo_config.read_text())
    cfg.update(patch)
    path = demo_config.parent / "patched.yaml"
    path.write_text(json.dumps(cfg, allow_nan=True), encoding="utf-8", errors="surrogatepass")
    try:
        loaded = load_config(path)
    except ConfigurationError as exc:
        _located(exc, "patched.yaml")
    else:
        CASES["config-random-loaded"] += 1
        assert "extra" not in patch, "an unknown top-level section was accepted"
        _loaded_as_written(loaded, cfg)


def _loaded_as_written(cfg: Any, doc: Any) -> None:
    """A configuration that loads says what its file says: every system and job of the document, each job between
    the systems and objects written, each system with its adapter; nothing dropped, nothing invented."""
    assert isinstance(doc, dict), f"a {type(doc).__name__} document loaded as a configuration"
    systems, jobs = doc.get("systems") or {}, doc.get("jobs") or {}
    assert set(cfg.systems) == {str(k) for k in systems}
    assert set(cfg.jobs) == {str(k) for k in jobs}
    for name, system in cfg.systems.items():
        assert system.adapter == systems[name]["adapter"]
    for name, job in cfg.jobs.items():
        assert (job.source, job.target) == (jobs[name]["source"], jobs[name]["target"])
        assert {job.source_system, job.target_system} <= set(cfg.systems), "a job names a system not configured"
    assert cfg.state.url == ((doc.get("state") or {}).get("url") or cfg.state.url)
    assert cfg.keys.master_key == doc["keys"]["master_key"]


# ============================================================================== vendor records through mappings
@FAST
@given(which=st.sampled_from(MAPPINGS), data=st.dictionaries(st.text(max_size=12), json_values, max_size=8),
       keep=st.floats(0, 1))
def test_random_vendor_records_map_to_a_party_or_a_record_error(which: Path, data: dict[str, Any],
                                                                keep: float) -> None:
    CASES["vendor-record"] += 1
    m = load_mapping(which, profile=target_profile)
    fields = m.vendor_fields("in") or []
    record = {f: v for i, (f, v) in enumerate(zip(fields, list(data.values()) * 10, strict=False))
              if i < len(fields) * keep} | data
    try:
        m.to_party(record)
    except RecordError as exc:
        assert str(exc).strip()


# ============================================================================== vendor responses
class _Raw(BaseHTTPRequestHandler):
    body: bytes = b""

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        if self.path.startswith("/oauth"):
            body = json.dumps({"access_token": "t", "expires_in": 3600, "api_domain": self.server.url,
                               "token_type": "Bearer"}).encode()
        else:
            body = type(self).body
        self.send_response(200)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer  # noqa: N815


@pytest.fixture(scope="module")
def raw_zoho() -> Iterator[Any]:
    from crmbridge.adapters.zoho import ZohoAdapter

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Raw)
    server.url = f"http://127.0.0.1:{server.server_port}"  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    import os

    os.environ["CRMBRIDGE_FAULT_RAW_SECRET"] = "s"
    cfg = ZohoAdapter.Config.model_validate({
        "adapter": "zoho", "accounts_url": server.url, "api_domain": server.url,  # type: ignore[attr-defined]
        "client_id": "c", "client_secret": "env:CRMBRIDGE_FAULT_RAW_SECRET",
        "refresh_token": "env:CRMBRIDGE_FAULT_RAW_SECRET", "timeout": 2.0,
        "retry": {"max_attempts": 2, "initial_wait": 0.0, "max_wait": 0.0}})
    adapter = ZohoAdapter(cfg)
    yield adapter
    adapter.close()
    server.shutdown()
    server.server_close()


@FAST
@given(body=json_values.map(lambda v: json.dumps(v, allow_nan=True).encode("utf-8", "surrogatepass"))
       | st.binary(max_size=200) | st.builds(lambda rows: json.dumps({"data": rows, "info": {"more_records": False}})
                                             .encode("utf-8", "surrogatepass"),
                                             st.lists(st.dictionaries(st.sampled_from(
                                                 ["id", "Modified_Time", "Party_ID", "Email", "Last_Name"]),
                                                 json_values), max_size=3)))
def test_random_vendor_responses_give_records_or_an_adapter_error(raw_zoho: Any, body: bytes) -> None:
    CASES["vendor-response"] += 1
    _Raw.body = body
    try:
        for page in raw_zoho.extract("Contacts"):
            for rec in page.records:
                assert rec.external_id
    except AdapterError as exc:
        assert str(exc).strip()


# ============================================================================== hostile XML during a run
BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&lol4;</soapenv:Body>
</soapenv:Envelope>"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&x;</soapenv:Body>
</soapenv:Envelope>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, XXE, "<soapenv:Envelope", b"\xff\xfe<x/>"],
                         ids=["entity-expansion", "external-entity", "truncated", "invalid-utf8"])
def test_hostile_core_replies_fail_the_run_cleanly(tmp_path: Path, body: str | bytes) -> None:
    CASES["hostile-xml"] += 1
    with DemoEnvironment(tmp_path / "demo", customers=30, seed=11) as env:
        rt = bootstrap(env.config_path)
        try:
            env.core.queue_raw(body, times=1)
            report = run_job(rt, "core_to_zoho")
            if report.status == "failed":
                assert report.error and "corebank" in report.error, report.error
                assert "root:" not in report.error   # no entity was resolved into the message
                assert env.zoho.count("Contacts") == 0
                with rt.store.transaction() as tx:
                    assert tx.get_cursor("core_to_zoho", "corebank.Customer") is None
            else:   # judged transient (a truncated body): retried and done
                assert report.status in COMPLETED and report.retries > 0, report
            again = run_job(rt, "core_to_zoho")   # the next run, with the core sane again, does everything
            assert again.status in COMPLETED and again.read == 30
        finally:
            rt.close()


def test_errors_are_crmbridge_errors() -> None:
    assert issubclass(MappingError, CrmBridgeError) and issubclass(ConfigurationError, CrmBridgeError)
