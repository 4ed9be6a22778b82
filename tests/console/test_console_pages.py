"""Every page of the console over real HTTP (uvicorn on loopback) against a synced demo world: what each shows,
that nothing personal is in clear anywhere, and that lists page on indexed keys (no OFFSET in any query)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests
from console_world import csrf_of
from pages_world import World, world

from crmbridge.console.settings import ConsoleSettings

PAGES = ["/", "/runs", "/runs/1", "/runs/2", "/runs/3", "/customers", "/conflicts", "/conflicts/1",
         "/dead-letters", "/dead-letters?status=all", "/ledger", "/mappings"]


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with world(tmp_path_factory.mktemp("pages"), settings=ConsoleSettings(page_size=2)) as wd:
        yield wd


@pytest.fixture(scope="module")
def audrey(w: World) -> requests.Session:
    return w.served.session("audrey")


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _clear_values(w: World) -> list[str]:
    """The synced customer's personal data in clear, as the core holds it."""
    rec = w.served.env.core.store.get(w.custno)
    return [str(rec[k]) for k in ("id_number", "name", "mobile", "email", "street") if rec.get(k)]


def test_every_page_answers_for_every_role(w: World) -> None:
    for user in ("audrey", "oscar", "stella", "ada"):
        s = w.served.session(user)
        for page in PAGES:
            r = s.get(w.url + page)
            assert r.status_code == 200, (user, page, r.status_code, r.text[:300])
            assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")


def test_the_dashboard_shows_each_job_its_lag_and_charts(w: World, audrey: requests.Session) -> None:
    html = audrey.get(w.url + "/").text
    for job in ("core_to_zoho", "core_fxiaoke"):
        row = re.search(rf'<tr data-job="{job}">(.*?)</tr>', html, re.S)
        assert row, job
        assert "partial" in row.group(1)                                   # the seeded bad records
        assert re.search(r'class="lag"[^>]*>\s*\d', row.group(1)), row.group(1)   # a cursor: a lag in time
    svgs = re.findall(r"<svg .*?</svg>", html, re.S)
    assert len(svgs) == 4                                                  # two charts per job
    assert 'aria-label="core_fxiaoke: records per run"' in html
    assert "core_fxiaoke: API calls per system per run" in html
    # API calls per system: the two-way job's chart has a series for each of its systems
    calls = next(s for s in svgs if "core_fxiaoke: API calls" in s)
    assert ">corebank<" in calls and ">fxiaoke<" in calls
    # the first two-way run (#2) created 27 accounts: a bar says so
    assert re.search(r"#2 · written: 2\d<", html)
    # the dashboard links the open conflict
    assert 'href="/conflicts?job=core_fxiaoke">1<' in html


def test_runs_filter_and_page_on_the_run_id(w: World, audrey: requests.Session) -> None:
    first = audrey.get(w.url + "/runs").text
    ids = re.findall(r'<tr data-run="(\d+)">', first)
    assert ids == ["3", "2"]                                               # newest first, two per page
    older = re.search(r'rel="next" href="([^"]+)"', first)
    assert older and "before=2" in older.group(1)
    second = audrey.get(w.url + older.group(1).replace("&amp;", "&")).text
    assert re.findall(r'<tr data-run="(\d+)">', second) == ["1"]
    assert 'rel="next"' not in second
    only = audrey.get(w.url + "/runs", params={"job": "core_to_zoho"}).text
    assert re.findall(r'<tr data-run="(\d+)">', only) == ["1"]
    none = audrey.get(w.url + "/runs", params={"status": "succeeded"}).text
    assert not re.findall(r'<tr data-run="(\d+)">', none) and "no run matches" in none
    tomorrow = audrey.get(w.url + "/runs", params={"from": "2999-01-01"}).text
    assert "no run matches" in tomorrow
    # a hand-edited keyset is ignored, never an error
    assert audrey.get(w.url + "/runs?before=abc").status_code == 200


def test_a_runs_records_show_outcome_masked_payload_and_the_vendors_answer(w: World,
                                                                          audrey: requests.Session) -> None:
    html = audrey.get(w.url + "/runs/2").text
    assert "Run #2 of core_fxiaoke" in html
    seqs = [int(x) for x in re.findall(r'<tr class="entry" data-seq="(\d+)"', html)]
    assert len(seqs) == 2 and seqs == sorted(seqs)
    assert 'data-action="created"' in html
    assert "payload sent" in html and "vendor's answer" in html
    assert re.search(r"answer: .*id [0-9a-f]{24}", _text(html))           # Fxiaoke's record id
    assert "mappings: " in _text(html)
    # the masked resident ID number and mobile, as the ledger keeps them
    assert re.search(r"\d\*{13}[\dX]{4}", html) or re.search(r"\+86\d{3}\*{4}\d{4}", html)
    # the next page continues after the last seq shown, in seq order
    nxt = re.search(r'rel="next" href="([^"]+)"', html)
    assert nxt and nxt.group(1) == f"/runs/2?after={seqs[-1]}"
    more = [int(x) for x in re.findall(r'data-seq="(\d+)"', audrey.get(w.url + nxt.group(1)).text)]
    assert more and min(more) > seqs[-1]
    assert audrey.get(w.url + "/runs/999").status_code == 404


def test_no_page_shows_personal_data_in_clear(w: World, audrey: requests.Session) -> None:
    clear = _clear_values(w)
    assert clear and w.ric in clear
    token = csrf_of(audrey.get(w.url + "/customers").text)
    found = audrey.post(w.url + "/customers/search", data={"csrf_token": token, "scheme": "CN_RIC", "value": w.ric})
    pages = [audrey.get(w.url + p).text for p in PAGES] + [found.text]
    # every page of every run's records, and the ledger's pages
    for start in ("/runs/1", "/runs/2", "/runs/3", "/ledger"):
        url: str | None = start
        while url:
            html = audrey.get(w.url + url.replace("&amp;", "&")).text
            pages.append(html)
            nxt = re.search(r'rel="next" href="([^"]+)"', html)
            url = nxt.group(1) if nxt else None
    for html in pages:
        for value in clear:
            assert value not in html, value[:2] + "…"


def test_a_customer_is_found_by_resident_id_number_through_the_blind_index(w: World,
                                                                           audrey: requests.Session) -> None:
    token = csrf_of(audrey.get(w.url + "/customers").text)
    r = audrey.post(w.url + "/customers/search", data={"csrf_token": token, "scheme": "CN_RIC", "value": w.ric},
                    allow_redirects=False)
    assert r.status_code == 303
    pid = r.headers["location"].rsplit("/", 1)[1]
    html = audrey.get(w.url + r.headers["location"]).text
    assert pid in html and w.ric not in html
    systems = re.search(r'<table class="grid" id="systems">(.*?)</table>', html, re.S).group(1)  # type: ignore[union-attr]
    assert w.custno in systems                                             # core banking's customer number
    for system in ("corebank", "zoho_cn", "fxiaoke"):
        assert f"<td>{system}</td>" in systems
    assert "CN_RIC" in html                                                # matched by, without its value
    # every change: created in both CRMs by the runs, with who and which mapping versions
    text = _text(html)
    assert text.count("created") >= 2 and "ops@test" in text
    assert re.search(r"zoho_contacts\.yaml @ [0-9a-f]{12}", text)
    # the same page by party id, and an unknown identifier or a malformed party id
    r = audrey.post(w.url + "/customers/search", data={"csrf_token": token, "party_id": pid}, allow_redirects=False)
    assert r.headers["location"] == f"/customers/{pid}"
    unknown = "11010519491231002X"
    r = audrey.post(w.url + "/customers/search", data={"csrf_token": token, "scheme": "CN_RIC", "value": unknown})
    assert r.status_code == 404 and "No customer is known by CN_RIC" in r.text and unknown not in r.text
    r = audrey.post(w.url + "/customers/search", data={"csrf_token": token, "party_id": "not-a-uuid"})
    assert r.status_code == 400
    # the search is a POST with the session's CSRF token: the identifier never travels in a URL
    r = audrey.post(w.url + "/customers/search", data={"scheme": "CN_RIC", "value": w.ric})
    assert r.status_code == 403


def test_the_conflict_shows_base_core_and_crm_masked_side_by_side(w: World, audrey: requests.Session) -> None:
    queue = audrey.get(w.url + "/conflicts").text
    assert '<tr data-conflict="1">' in queue and "name.legal_zh" in queue
    html = audrey.get(w.url + "/conflicts/1").text
    sides = {k: _text(re.search(rf'<div class="side" id="{k}">(.*?)</div>\s*</div>|<div class="side" id="{k}">'
                                rf'(.*?)</div></div>', html, re.S).group(0))  # type: ignore[union-attr]
             for k in ("base", "source", "target")}
    assert "张**" in sides["target"]                                        # the RM's edit, masked
    assert "张三丰" not in html
    assert "*" in sides["base"] and "*" in sides["source"]
    assert "corebank (source)" in html and "fxiaoke (target)" in html


def test_dead_letters_are_grouped_by_reason(w: World, audrey: requests.Session) -> None:
    html = audrey.get(w.url + "/dead-letters").text
    reasons = dict(re.findall(r'<tr data-reason="([^"]+)">.*?<td>(\d+)</td>', html, re.S))
    assert reasons.get("invalid_checksum") == "2" and reasons.get("mapping_failed") == "1"
    one = audrey.get(w.url + "/dead-letters", params={"reason": "invalid_checksum", "job": "core_fxiaoke"}).text
    letters = re.findall(r'<tr data-letter="(\d+)">', one)
    assert len(letters) == 2
    # messages are masked: the bad ID number shows as 1*************4694-like text only
    assert re.search(r"\d\*{6,}", one)


def test_the_ledger_page_shows_the_signed_head_and_the_public_key(w: World, audrey: requests.Session) -> None:
    html = audrey.get(w.url + "/ledger").text
    with w.served.runtime.store.transaction(read_only=True) as tx:
        seq, head = tx.ledger().head()
    assert f"seq {seq}" in html and head in html
    assert "last signed checkpoint" in html and "BEGIN PUBLIC KEY" in html
    assert re.findall(r'data-seq="(\d+)"', html)[:2] == [str(seq), str(seq - 1)]   # newest first
    pem = audrey.get(w.url + "/ledger/public-key.pem")
    assert pem.status_code == 200 and pem.text == w.served.runtime.signer.public_pem()  # type: ignore[union-attr]


def test_mappings_list_their_versions_text_and_diffs(w: World, audrey: requests.Session) -> None:
    html = audrey.get(w.url + "/mappings").text
    for name in ("corebank_soap_customer.yaml", "zoho_contacts.yaml", "fxiaoke_accountobj.yaml"):
        assert name in html
    assert "= file now" in html
    version = re.search(r'href="/mappings/version/([0-9a-f]{64})"', html).group(1)  # type: ignore[union-attr]
    text = audrey.get(w.url + f"/mappings/version/{version}").text
    assert "steps" in text or "mapping" in text
    # an earlier version archived (as a run on another file would have): its diff against the one in use
    with w.served.runtime.store.transaction() as tx:
        row = tx.mapping_version(version)
        older = str(row["text"]).replace("steps:", "# an older version\nsteps:", 1)  # type: ignore[index]
        tx.archive_mapping(content_hash="0" * 63 + "1", system=row["system"], obj=row["object"],  # type: ignore[index]
                           file_name=row["file_name"], text=older)  # type: ignore[index]
    diff = audrey.get(w.url + "/mappings/diff", params={"a": "0" * 63 + "1", "b": version})
    assert diff.status_code == 200
    assert '<span class="del">-# an older version</span>' in diff.text
    assert audrey.get(w.url + "/mappings/diff", params={"a": "deadbeefdeadbeef", "b": version}).status_code == 404


def test_list_pages_never_use_offset(w: World, audrey: requests.Session) -> None:
    from sqlalchemy import event

    seen: list[str] = []
    offsets: list[object] = []

    def record(conn, cursor, statement, parameters, *args):  # type: ignore[no-untyped-def]
        seen.append(statement)
        if "OFFSET" in statement.upper():   # SQLite's dialect writes LIMIT ? OFFSET ? with an offset of 0
            offsets.append(parameters[-1] if isinstance(parameters, tuple | list) else parameters)

    engine = w.served.runtime.store.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        for page in ("/runs?before=3", "/runs/1?after=3", "/ledger?before=10", "/dead-letters?after=1",
                     "/conflicts?status=&after=0", "/"):
            assert audrey.get(w.url + page).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert any("ledger_entries" in s for s in seen) and any("FROM runs" in s for s in seen)
    assert all(o == 0 for o in offsets), offsets


@pytest.mark.postgres
def test_every_page_over_postgresql(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    with world(tmp_path_factory.mktemp("pg"), state_url=pg_url, settings=ConsoleSettings(page_size=2)) as wd:
        s = wd.served.session("audrey")
        for page in PAGES:
            r = s.get(wd.url + page)
            assert r.status_code == 200, (page, r.status_code, r.text[:300])
            assert wd.ric not in r.text
        token = csrf_of(s.get(wd.url + "/customers").text)
        r = s.post(wd.url + "/customers/search", data={"csrf_token": token, "scheme": "CN_RIC", "value": wd.ric},
                   allow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/customers/")
        assert wd.custno in s.get(wd.url + r.headers["location"]).text
        first = s.get(wd.url + "/runs").text
        assert re.findall(r'<tr data-run="(\d+)">', first) == ["3", "2"]
        html = s.get(wd.url + "/runs/2").text
        seqs = [int(x) for x in re.findall(r'<tr class="entry" data-seq="(\d+)"', html)]
        more = [int(x) for x in re.findall(r'data-seq="(\d+)"', s.get(wd.url + f"/runs/2?after={seqs[-1]}").text)]
        assert len(seqs) == 2 and more and min(more) > max(seqs)
        assert "OK: " in s.post(wd.url + "/ledger/verify", data={"csrf_token": token}).text
