"""Hostile files and replies (issue 14 item 4): every case ends in a crmbridge error with a message, or is used;
never an unhandled exception, a hang, a RecursionError, a traceback in the log or a NULL version.

Behaviour tests, each failing on the code before the fix:

* an unreachable PostgreSQL state database: ``run``, ``ledger verify`` and ``scheduler status`` print one line
  naming host and port (no password), exit 4 (was ``internal error: OperationalError``);
* a vendor JSON reply nested thousands of levels deep (Zoho, Fxiaoke, the REST core): a BadResponseError naming
  the vendor and the call (was RecursionError, and the run stayed ``running``);
* a SOAP core answering ``MODNO`` "abc": the record carries a record error naming MODNO and no version, with no
  zeep traceback in the log (was: a traceback per record and a stored NULL version); the same for a REST core's
  non-integer ``version``;

and the generated bad-input suite (:func:`test_generated_bad_input_suite`): 10,000+ seeded cases over configuration
files, mapping files and vendor replies for every adapter (Zoho, Fxiaoke, the REST core, the SOAP core) -> 0
unhandled errors. It prints ``[hostile] cases: N in S s`` (run with -rP or -s to see it).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from crmbridge.adapters.base import RawRecord
from crmbridge.canonical.mapping import load_mapping
from crmbridge.config import load_config
from crmbridge.core.errors import AdapterError, BadResponseError, ConfigurationError, CrmBridgeError, MappingError
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap

pytestmark = pytest.mark.slow   # slow tier: the hostile-input fault suite

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = sorted(p for p in (REPO / "mappings").glob("*.yaml") if p.name != "rules.yaml")   # not a mapping
CLI = [sys.executable, "-m", "crmbridge"]


# ============================================================================== a raw vendor on loopback
class _Raw(BaseHTTPRequestHandler):
    """Answers every call with the queued body, except token calls (a valid token for each vendor)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # headers and body in two writes would wait for a delayed ACK (40 ms)
    body: bytes = b"{}"
    status: int = 200

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        url = self.server.url  # type: ignore[attr-defined]
        if self.path.startswith("/oauth"):
            body = json.dumps({"access_token": "t", "expires_in": 3600, "api_domain": url,
                               "token_type": "Bearer"}).encode()
        elif "corpAccessToken" in self.path:
            body = json.dumps({"errorCode": 0, "errorMessage": "success", "corpAccessToken": "t",
                               "corpId": "c", "expiresIn": 7200}).encode()
        else:
            body = type(self).body
        self.send_response(type(self).status if body is type(self).body else 200)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer  # noqa: N815


@pytest.fixture(scope="module")
def raw_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Raw)
    server.daemon_threads = True
    server.url = f"http://127.0.0.1:{server.server_port}"  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.url  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


NO_RETRY = {"max_attempts": 1, "initial_wait": 0.0, "max_wait": 0.0}


@pytest.fixture(scope="module")
def vendors(raw_server: str) -> Iterator[dict[str, Callable[[], list[RawRecord]]]]:
    """Each HTTP adapter pointed at the raw vendor; calling an entry reads one page of the object."""
    from crmbridge.adapters.corebank_rest import CorebankRestAdapter, CorebankRestConfig
    from crmbridge.adapters.fxiaoke import FxiaokeAdapter
    from crmbridge.adapters.zoho import ZohoAdapter

    os.environ["CRMBRIDGE_HOSTILE_SECRET"] = "s"
    secret = "env:CRMBRIDGE_HOSTILE_SECRET"
    zoho = ZohoAdapter(ZohoAdapter.Config.model_validate({
        "adapter": "zoho", "accounts_url": raw_server, "api_domain": raw_server, "client_id": "c",
        "client_secret": secret, "refresh_token": secret, "timeout": 2.0, "retry": NO_RETRY}))
    fx = FxiaokeAdapter(FxiaokeAdapter.Config.model_validate({
        "adapter": "fxiaoke", "base_url": raw_server, "app_id": "FSAID_1", "app_secret": secret,
        "permanent_code": secret, "open_user_id": "FSUID_1", "timeout": 2.0, "retry": NO_RETRY,
        "rate_per_second": None}))
    rest = CorebankRestAdapter(CorebankRestConfig.model_validate({
        "adapter": "corebank_rest", "base_url": raw_server, "timeout": 2.0, "retry": NO_RETRY,
        "auth": {"type": "basic", "username": "u", "password": secret}, "timezone": "Asia/Shanghai",
        "resources": {"Client": {
            "list_path": "/v1/clients", "item_path": "/v1/clients/{id}", "write_path": "/v1/clients/{id}",
            "pagination": {"style": "offset", "page_size": 10, "total_path": "totalFilteredRecords"},
            "paths": {"list": "pageItems", "item": "", "id": "id", "version": "version"},
            "version_in": "body"}}}))

    def first_page(adapter: Any, obj: str) -> Callable[[], list[RawRecord]]:
        def read() -> list[RawRecord]:
            for page in adapter.extract(obj):
                return list(page.records)
            return []
        return read

    yield {"zoho": first_page(zoho, "Contacts"), "fxiaoke": first_page(fx, "AccountObj"),
           "corebank_rest": first_page(rest, "Client")}
    for a in (zoho, fx, rest):
        a.close()


def _deep(n: int, kind: str = "[") -> bytes:
    if kind == "[":
        return b"[" * n + b"]" * n
    return b'{"a":' * n + b"1" + b"}" * n


# ============================================================================== behaviour: deep JSON
@pytest.mark.parametrize("vendor", ["zoho", "fxiaoke", "corebank_rest"])
@pytest.mark.parametrize("depth", [150, 100_000])
def test_a_deeply_nested_json_reply_is_a_bad_response_naming_the_call(vendors: dict[str, Any], vendor: str,
                                                                      depth: int) -> None:
    envelope = {"zoho": (b'{"data":', b'}'), "fxiaoke": (b'{"errorCode":0,"data":', b'}'),
                "corebank_rest": (b'{"pageItems":', b',"totalFilteredRecords":1}')}[vendor]
    _Raw.body, _Raw.status = envelope[0] + _deep(depth, "{") + envelope[1], 200
    with pytest.raises(BadResponseError) as info:
        vendors[vendor]()
    text = str(info.value)
    assert "deeper than 100 levels" in text and info.value.vendor == vendor, text
    assert "/" in (info.value.where or ""), info.value.where   # the call (method and path) is named


def test_a_run_whose_crm_answers_deep_json_ends_and_is_not_left_running(tmp_path: Path, raw_server: str) -> None:
    """The review's run: Zoho answering JSON nested 100,000 deep died with RecursionError, the run left `running`."""
    from crmbridge.sync.engine import run_job

    _Raw.body, _Raw.status = b'{"data":' + _deep(100_000, "{") + b"}", 200
    with DemoEnvironment(tmp_path / "demo", customers=5, seed=7) as env:
        cfg = yaml.safe_load(env.config_path.read_text())
        cfg["systems"]["zoho_cn"].update(accounts_url=raw_server, api_domain=raw_server)
        env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        rt = bootstrap(env.config_path)
        try:
            report = run_job(rt, "core_to_zoho")
            assert report.status in ("failed", "partial"), report.status
            assert "deeper than 100 levels" in (report.error or "") or report.outcomes.get("dead_lettered"), report
            with rt.store.transaction() as tx:
                runs = tx.list_runs("core_to_zoho")
            assert runs and all(r["status"] != "running" for r in runs), runs
        finally:
            rt.close()


# ============================================================================== behaviour: versions
def _bad_modno_env(tmp_path: Path, value: str) -> tuple[DemoEnvironment, str]:
    env = DemoEnvironment(tmp_path / "demo", customers=6, seed=5)
    env.__enter__()
    st = env.core.store
    no = st.custno(2)
    st.touch(no)
    st._overrides[int(no) - 1]["modno"] = value   # the core's own data, as a broken core would send it
    return env, no


@pytest.mark.parametrize("value", ["abc", "1.5", "七", " ", "99999999999999999999999"])
def test_a_non_integer_modno_is_a_record_error_without_a_traceback(tmp_path: Path, value: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    env, no = _bad_modno_env(tmp_path, value)
    try:
        rt = bootstrap(env.config_path)
        try:
            caplog.set_level(logging.DEBUG)
            records = [r for page in rt.adapter("corebank").extract("Customer") for r in page.records]
            bad = [r for r in records if r.external_id == no]
            assert len(records) == 6 and len(bad) == 1
            if value.strip():
                assert bad[0].version is None and bad[0].error is not None
                assert bad[0].error.field == "MODNO" and bad[0].error.code == "bad_version"
                assert "MODNO" in str(bad[0].error) and value.strip() not in str(bad[0].error)
            else:   # an empty MODNO is an absent one (minOccurs=0): no version, no error
                assert bad[0].version is None and bad[0].error is None
            assert all(r.error is None and r.version is not None for r in records if r.external_id != no)
            assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
            assert value.strip() not in caplog.text or not value.strip()
            # the write path never writes without the version the core holds
            from crmbridge.adapters.base import WriteItem
            res = rt.adapter("corebank").write("Customer", [WriteItem(key="k", external_id=no,
                                                                      payload={"MOBILE": "13800000000"})])
            assert res[0].status == "failed" or not value.strip(), res
        finally:
            rt.close()
    finally:
        env.__exit__(None, None, None)


def test_a_run_dead_letters_a_record_whose_modno_is_not_an_integer(tmp_path: Path) -> None:
    from sqlalchemy import text

    from crmbridge.sync.engine import run_job

    env, no = _bad_modno_env(tmp_path, "abc")
    try:
        rt = bootstrap(env.config_path)
        try:   # one bad record of six: within a ratio of 50 %, the run is partial (the rest synced)
            rt.config.jobs["core_to_zoho"] = rt.config.jobs["core_to_zoho"].model_copy(update={"max_failed_ratio": 0.5})
            report = run_job(rt, "core_to_zoho")
            assert report.status == "partial", report.status
            with rt.store.transaction() as tx:
                letters = tx.connection.execute(text(
                    "select external_id, reason_code, message from dead_letters")).all()
                # the core's records as read (the target's snapshots carry no core version)
                versions = tx.connection.execute(text(
                    "select version from snapshots where version is null and system = 'corebank'")).all()
            assert [(x[0], x[1]) for x in letters] == [(no, "bad_version")] and "MODNO" in letters[0][2]
            assert not versions
        finally:
            rt.close()
    finally:
        env.__exit__(None, None, None)


@pytest.mark.parametrize(("value", "ok"), [(7, True), ("12", True), ("abc", False), (1.5, False), (True, False),
                                           ({"v": 1}, False), ([1], False), ("", False), (10**400, False)])
def test_a_rest_core_version_that_is_not_an_integer_is_a_record_error(vendors: dict[str, Any], value: Any,
                                                                      ok: bool) -> None:
    row = {"id": 1, "version": value, "displayName": "x"}
    _Raw.body, _Raw.status = json.dumps({"pageItems": [row], "totalFilteredRecords": 1}).encode(), 200
    (rec,) = vendors["corebank_rest"]()
    if ok:
        assert rec.error is None and rec.version == str(value)
    else:
        assert rec.version is None and rec.error is not None and rec.error.field == "version", rec
        assert rec.error.code == "bad_version"


# ============================================================================== behaviour: state database
@pytest.mark.parametrize("argv", [["run", "core_to_zoho"], ["ledger", "verify"], ["scheduler", "status"]])
def test_an_unreachable_state_database_is_one_line_naming_host_and_port(tmp_path: Path, argv: list[str]) -> None:
    with DemoEnvironment(tmp_path / "demo", customers=3) as env:
        cfg = yaml.safe_load(env.config_path.read_text())
        cfg["state"]["url"] = "postgresql+psycopg://crm@127.0.0.1:1/crmstate"
        path = env.config_path.parent / "unreachable.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        out = subprocess.run([*CLI, *argv], env={**os.environ, "CRMBRIDGE_CONFIG": str(path),
                                                 "PGPASSWORD": "pg-Secret-42"},
                             capture_output=True, text=True, timeout=60, cwd=env.config_path.parent)
    err = out.stderr.strip()
    assert out.returncode == 4, (out.returncode, err[-1500:])
    assert "127.0.0.1:1" in err and "state database" in err and "crmstate" in err, err
    assert "internal error" not in err and "Traceback" not in err and "pg-Secret-42" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err


# ============================================================================== the generated suite
BOMB_LEVELS = "abcdefghij"


def _bomb(rng: random.Random) -> str:
    fan, levels = rng.randint(2, 12), rng.randint(3, 10)
    lines = [f"{BOMB_LEVELS[0]}0: &{BOMB_LEVELS[0]}0 [{','.join(['x'] * fan)}]"]
    for i in range(1, levels):
        p, c = f"{BOMB_LEVELS[i - 1]}0", f"{BOMB_LEVELS[i]}0"
        lines.append(f"{c}: &{c} [{','.join([f'*{p}'] * fan)}]")
    return "\n".join(lines) + "\n"


def _deep_yaml(rng: random.Random) -> str:
    n = rng.choice([65, 70, 200, 1000, 5000, 30_000])
    kind = rng.choice(["flow-list", "flow-map", "block"])
    if kind == "flow-list":
        return "[" * n + "]" * n
    if kind == "flow-map":
        return "{a: " * n + "1" + "}" * n
    n = min(n, 300)
    return "\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(n)) + "  " * (n + 1) + "v: 1"


def _junk_scalar(rng: random.Random) -> str:
    return rng.choice(["", "~", "null", "-1", "1e400", "0x1F", "!!binary aGk=", "!!python/object:os.system {}",
                       "!!set {a, b}", "'" + "x" * rng.randint(0, 300) + "'", "[1, [2, [3]]]", "{a: {b: c}}",
                       "\"\\ud800\"", "&x 1", "*undefined", "? complex key", "|\n  block", "2026-13-45",
                       str(rng.randint(-10**30, 10**30)), "true", "'@#$%'", "\t"])


def _mutate_yaml(text: str, rng: random.Random) -> tuple[str, bytes | None]:
    """One hostile variant of a YAML document: (kind, bytes)."""
    kind = rng.choice(["bomb", "deep", "recursive", "aliases", "truncate", "flip", "scalar", "anchor-merge",
                       "dup-key", "tabs"])
    lines = text.splitlines()
    at = rng.randrange(len(lines) + 1)
    if kind == "bomb":
        out = "\n".join(lines[:at] + _bomb(rng).splitlines() + lines[at:]) if rng.random() < 0.5 \
            else text + "\nx_bomb:\n" + "".join("  " + ln + "\n" for ln in _bomb(rng).splitlines())
    elif kind == "deep":
        key_lines = [i for i, ln in enumerate(lines) if re.match(r"^\s*[A-Za-z_]+:\s*\S", ln)]
        if key_lines:
            i = rng.choice(key_lines)
            head = lines[i].split(":", 1)[0]
            lines[i] = head + ": " + _deep_yaml(rng).replace("\n", "\n" + " " * (len(head) - len(head.lstrip())))
        out = "\n".join(lines)
    elif kind == "recursive":
        out = text + rng.choice(["\nx_r: &r [*r]\n", "\nx_r: &r {a: {b: *r}}\n", "\nx_r: &r [1, [2, *r]]\n"])
    elif kind == "aliases":
        n = rng.randint(50, 400)
        out = text + "\nx_a: &a {k: [1, 2, 3]}\nx_b: [" + ", ".join(["*a"] * n) + "]\n"
    elif kind == "truncate":
        out = text[: rng.randrange(len(text) + 1)]
    elif kind == "flip":
        data = bytearray(text.encode("utf-8"))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data) or 1)
            data[pos:pos + 1] = bytes([rng.randrange(256)]) * rng.randint(1, 3)
        return kind, bytes(data)
    elif kind == "scalar":
        key_lines = [i for i, ln in enumerate(lines) if re.match(r"^\s*[A-Za-z_]+:\s*\S", ln)]
        for i in rng.sample(key_lines, min(len(key_lines), rng.randint(1, 3))):
            lines[i] = lines[i].split(":", 1)[0] + ": " + _junk_scalar(rng)
        out = "\n".join(lines)
    elif kind == "anchor-merge":
        out = "x_base: &base {a: 1, b: [1, 2]}\n" + text + "\nx_m: {<<: *base, c: 3}\n"
    elif kind == "dup-key":
        out = text + "\n" + (lines[0] if lines else "a: 1") + "\n"
    else:
        out = text.replace("  ", "\t", rng.randint(1, 3))
    return kind, out.encode("utf-8", "surrogatepass")


def _json_junk(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth > 3 or r < 0.45:
        return rng.choice([None, True, False, 0, -1, 1.5, 10**400, float("nan"), "", "x" * rng.randint(1, 50),
                           "\ud800", "七", "2026-13-45T99:00:00", "abc", "1" * 30, [], {}])
    if r < 0.7:
        return [_json_junk(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["id", "data", "version", "x", "", "七"]) + str(rng.randint(0, 3)): _json_junk(rng, depth + 1)
            for _ in range(rng.randint(0, 4))}


def _dumps(v: Any) -> bytes:
    return json.dumps(v, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _vendor_body(vendor: str, rng: random.Random) -> tuple[str, int, bytes]:
    """A hostile reply for ``vendor``'s list call: (kind, HTTP status, body)."""
    kind = rng.choice(["deep", "deep-in-record", "junk-json", "junk-record", "bytes", "truncated", "huge-number",
                       "bad-version", "wrong-envelope"])
    ids = {"zoho": "id", "fxiaoke": "_id", "corebank_rest": "id"}[vendor]

    def envelope(rows: Any) -> Any:
        if vendor == "zoho":
            return {"data": rows, "info": {"more_records": False, "per_page": 200}}
        if vendor == "fxiaoke":
            return {"errorCode": 0, "errorMessage": "OK", "data": {"dataList": rows, "total": 1}}
        return {"pageItems": rows, "totalFilteredRecords": 1}

    def record(**extra: Any) -> dict[str, Any]:
        base = {ids: str(rng.randint(1, 10**6)), "Modified_Time": "2026-01-01T00:00:00+08:00",
                "last_modified_time": 1767225600000, "version": 1, "Party_ID": None}
        return {**base, **extra}

    status = rng.choice([200] * 8 + [400, 500])
    if kind == "deep":
        return kind, status, _deep(rng.choice([101, 500, 3000, 200_000]), rng.choice("[{"))
    if kind == "deep-in-record":
        n = rng.choice([101, 900, 5000, 100_000])
        body = _dumps(envelope([record(x="__DEEP__")])).replace(b'"__DEEP__"', _deep(n, rng.choice("[{")))
        return kind, status, body
    if kind == "junk-json":
        return kind, status, _dumps(_json_junk(rng))
    if kind == "junk-record":
        rows = [record(**{k: _json_junk(rng) for k in rng.sample([ids, "Modified_Time", "version",
                                                                   "last_modified_time", "Email"], 2)})
                for _ in range(rng.randint(1, 3))]
        return kind, status, _dumps(envelope(rows))
    if kind == "bytes":
        return kind, status, bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    if kind == "truncated":
        full = _dumps(envelope([record()]))
        return kind, status, full[: rng.randrange(len(full))]
    if kind == "huge-number":
        return kind, status, _dumps(envelope([record()])).replace(b'"version": 1', b'"version": ' + b"9" * 5000)
    if kind == "bad-version":
        return kind, 200, _dumps(envelope([record(version=_json_junk(rng))]))
    return kind, status, _dumps(rng.choice([[], "x", 1, None, {"data": _json_junk(rng)}]))


SOAP_MUTATIONS = ["modno", "deep", "custno", "stamp", "truncate", "entity", "junk-text", "bytes"]


def _soap_body(template: str, rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(SOAP_MUTATIONS)
    text = template
    if kind == "modno":
        junk = rng.choice(["abc", "1.5", "七", "", " ", "-", "1e3", "9" * 40, "0x10", "<![CDATA[x]]>", "&amp;"])
        text = re.sub(r"<(\w+:)?MODNO>\d+</(\w+:)?MODNO>",
                      lambda m: f"<{m.group(1) or ''}MODNO>{junk}</{m.group(2) or ''}MODNO>", text,
                      count=rng.randint(1, 3))
    elif kind == "deep":
        n = rng.choice([50, 300, 3000])
        text = re.sub(r"(<(\w+:)?MODNO>)", lambda m: "<x>" * n + "</x>" * n + m.group(1), text, count=1)
    elif kind == "custno":
        text = re.sub(r"<(\w+:)?CUSTNO>[^<]*</(\w+:)?CUSTNO>", "", text, count=1)
    elif kind == "stamp":
        text = re.sub(r"(<(\w+:)?CHECKERSTAMP>)[^<]*", lambda m: m.group(1) + rng.choice(["x", "2026-99-99", ""]),
                      text, count=2)
    elif kind == "truncate":
        text = text[: rng.randrange(len(text))]
    elif kind == "entity":
        text = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "' + "x" * 100 + '">]>'
                + text.split("?>", 1)[-1].replace("<", "&a;<", 1))
    elif kind == "junk-text":
        text = re.sub(r">([^<]{3,})<", lambda m: ">" + "".join(rng.choice("<&>\"'x七\x01") for _ in range(3)) + "<",
                      text, count=1)
    else:
        return kind, bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    return kind, text.encode("utf-8")


@pytest.mark.slow
def test_generated_bad_input_suite(tmp_path: Path, vendors: dict[str, Any],
                                   caplog: pytest.LogCaptureFixture) -> None:
    """10,000+ seeded hostile inputs -> each a crmbridge error with a message, or used. 0 unhandled."""
    rng = random.Random(20261207)
    scale = float(os.environ.get("CRMBRIDGE_HOSTILE_SCALE", "1"))   # development only; CI runs the full count
    cases: Counter[str] = Counter()
    lap: dict[str, float] = {}
    unhandled: list[str] = []
    start = time.monotonic()

    def judge(what: str, fn: Callable[[], Any], *, name: str | None = None,
              expect: type[CrmBridgeError] = CrmBridgeError) -> None:
        cases[what.split(":")[0]] += 1
        try:
            fn()
        except expect as exc:
            text = str(exc)
            if not text.strip() or (name is not None and name not in text):
                unhandled.append(f"{what}: unlocated {type(exc).__name__}: {text[:200]}")
        except Exception as exc:  # noqa: BLE001 - the point: nothing else may come out
            unhandled.append(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")

    # --- configuration files (over a working demo configuration)
    with DemoEnvironment(tmp_path / "demo", customers=3) as env:
        full = env.config_path.read_text()
        # most cases over the configuration without its jobs (each job loads two mappings: 70 ms a case)
        cfg = yaml.safe_load(full)
        small = yaml.safe_dump({k: v for k, v in cfg.items() if k != "jobs"}, sort_keys=False, allow_unicode=True)
        cfg_file = env.config_path.parent / "hostile_config.yaml"
        for i in range(int(2600 * scale)):
            kind, data = _mutate_yaml(full if i % 10 == 0 else small, rng)
            cfg_file.write_bytes(data)
            judge(f"config:{kind}:{i}", lambda: load_config(cfg_file), name="hostile_config.yaml",
                  expect=ConfigurationError)
        cfg_file.write_bytes(b"# " + b"x" * (1 << 20) + b"\n")
        judge("config:huge", lambda: load_config(cfg_file), name="hostile_config.yaml", expect=ConfigurationError)

    # --- mapping files (over every shipped mapping)
    texts = {p.name: p.read_text() for p in MAPPINGS}
    mfile = tmp_path / "hostile_mapping.yaml"
    lap["config"] = time.monotonic() - start
    for i in range(int(2600 * scale)):
        name = rng.choice(sorted(texts))
        text = texts[name]
        if i % 5:   # most cases over a part of a shipped mapping (a whole one takes 15-35 ms to load)
            lines = text.splitlines()
            first = rng.randrange(len(lines))
            text = "\n".join(lines[first:first + rng.randint(5, 60)])
        kind, data = _mutate_yaml(text, rng)
        mfile.write_bytes(data)
        judge(f"mapping:{kind}:{i}", lambda: load_mapping(mfile), name="hostile_mapping.yaml", expect=MappingError)

    # --- vendor replies: Zoho, Fxiaoke, the REST core, each through its adapter's read of a page over HTTP
    for vendor in ("zoho", "fxiaoke", "corebank_rest"):
        lap[vendor] = time.monotonic() - start
        for i in range(int(1300 * scale)):
            kind, status, body = _vendor_body(vendor, rng)
            _Raw.body, _Raw.status = body, status

            def read(v: str = vendor) -> None:
                for rec in vendors[v]():
                    if rec.error is None and rec.version is not None:
                        int(rec.version) if v == "corebank_rest" else None
            judge(f"{vendor}:{kind}:{i}", read, expect=AdapterError)

    # --- the SOAP core: hostile variants of a real reply, through zeep, the guard and the adapter
    with DemoEnvironment(tmp_path / "soap", customers=4, seed=9) as env:
        rt = bootstrap(env.config_path)
        try:
            core = rt.adapter("corebank")
            list(core.extract("Customer"))
            template = core.client.transport.last().content.decode("utf-8")
            assert "MODNO" in template
            caplog.clear()
            caplog.set_level(logging.WARNING)
            lap["soap"] = time.monotonic() - start
            for i in range(int(1200 * scale)):
                kind, body = _soap_body(template, rng)
                env.core.queue_raw(body, times=1)

                def read_soap() -> None:
                    for page in core.extract("Customer"):
                        for rec in page.records:
                            if rec.error is None and rec.version is not None:
                                int(rec.version)
                        break
                judge(f"corebank_soap:{kind}:{i}", read_soap, expect=AdapterError)
            env.core._raw.clear()  # noqa: SLF001 - nothing left queued for the shutdown
            tracebacks = [r for r in caplog.records if r.exc_info]
            if tracebacks:
                unhandled.append(f"corebank_soap: {len(tracebacks)} tracebacks logged, e.g. {tracebacks[0].msg}")
        finally:
            rt.close()

    elapsed = time.monotonic() - start
    total = sum(cases.values())
    print(f"\n[hostile] cases: {total} in {elapsed:.1f} s {dict(cases)}; unhandled: {len(unhandled)}; laps {lap}")
    assert total >= 10_000 * scale
    assert not unhandled, "\n".join(unhandled[:30])
