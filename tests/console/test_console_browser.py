"""The console in a real browser: Debian's Chromium, headless, driven by Playwright's sync API (never a downloaded
browser). Each step leaves a screenshot as a test artefact under ``$CRMBRIDGE_SCREENSHOTS`` (default
``var/screenshots``): the README's console pictures come from there.

Slow tier: ``make test`` (``.ci/run``) runs it; ``.ci/run`` installs ``chromium`` with apt when it is missing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="the console's browser tests need playwright (make installs it)")

from console_world import PASSWORD  # noqa: E402
from pages_world import World, world  # noqa: E402
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CRMBRIDGE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1200, "height": 760}


@pytest.fixture(scope="module")
def shots() -> Path:
    out = Path(os.environ.get("CRMBRIDGE_SCREENSHOTS") or ROOT / "var" / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with world(tmp_path_factory.mktemp("browser")) as wd:
        yield wd


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium (apt-get install chromium), as .ci/run "
                    "does; a browser is never downloaded")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _page(browser: Browser) -> Page:
    ctx = browser.new_context(viewport=VIEWPORT, accept_downloads=True, locale="en-GB", timezone_id="UTC")
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    return page


def _sign_in(page: Page, w: World, user: str, password: str = PASSWORD) -> None:
    page.goto(w.url + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def _shot(page: Page, shots: Path, name: str, *, full: bool = False, height: int | None = None) -> Path:
    path = shots / f"{name}.png"
    clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height} if height else None
    page.screenshot(path=str(path), full_page=full or bool(height), clip=clip)  # type: ignore[arg-type]
    assert path.stat().st_size > 5_000        # something was drawn
    return path


def test_sign_in_and_a_wrong_password(w: World, browser: Browser, shots: Path) -> None:
    page = _page(browser)
    page.goto(w.url + "/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    _shot(page, shots, "01-sign-in")
    _sign_in(page, w, "audrey", PASSWORD + "!")
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    _shot(page, shots, "02-wrong-password")
    _sign_in(page, w, "audrey")
    expect(page.locator("h1")).to_contain_text("Dashboard")
    expect(page.locator("header form.who")).to_contain_text("audrey · auditor")
    page.context.close()


def test_the_dashboard_draws_its_charts(w: World, browser: Browser, shots: Path) -> None:
    page = _page(browser)
    _sign_in(page, w, "audrey")
    expect(page.locator("table#jobs tr[data-job]")).to_have_count(len(w.served.runtime.config.jobs))   # every job
    charts = page.locator("svg.chart")
    expect(charts).to_have_count(4)
    box = charts.first.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 100      # drawn, not collapsed by a stylesheet
    assert page.locator("svg.chart rect title").count() > 10
    expect(page.locator("tr[data-job=core_fxiaoke] .lag")).to_have_text(re.compile(r"^\d"))
    _shot(page, shots, "03-dashboard", full=True)
    page.context.close()


def test_a_runs_records_with_payload_and_answer(w: World, browser: Browser, shots: Path) -> None:
    page = _page(browser)
    _sign_in(page, w, "oscar")
    page.click("nav >> text=Runs")
    expect(page.locator("table#runs tr[data-run]")).to_have_count(3)
    _shot(page, shots, "04-runs")
    page.click("table#runs a[href='/runs/2']")
    expect(page.locator("h1")).to_contain_text("Run #2 of core_fxiaoke")
    first = page.locator("details.payload").first
    first.locator("summary").click()
    expect(first).to_contain_text("mobile_masked__c")
    expect(page.locator(".answer").first).to_contain_text("status created")
    assert w.ric not in page.content()
    _shot(page, shots, "05-run-records", height=1000)   # the first record whole: payload, answer, mappings
    page.context.close()


def test_a_customers_lineage_found_by_resident_id_number(w: World, browser: Browser, shots: Path) -> None:
    page = _page(browser)
    _sign_in(page, w, "audrey")
    page.click("nav >> text=Customers")
    page.select_option("#by-identifier select[name=scheme]", "CN_RIC")
    page.fill("#by-identifier input[name=value]", w.ric)
    page.click("#by-identifier button")
    expect(page.locator("h1")).to_contain_text("Customer")
    expect(page).to_have_url(re.compile(r"/customers/[0-9a-f-]{36}$"))   # no identifier in the URL
    expect(page.locator("table#systems")).to_contain_text(w.custno)
    expect(page.locator("table#systems")).to_contain_text("zoho_cn")
    expect(page.locator("table.entries")).to_contain_text("created")
    assert w.ric not in page.content()
    _shot(page, shots, "06-customer-lineage", full=True)
    page.context.close()


def test_a_conflict_refused_for_an_auditor_then_resolved_by_a_steward(w: World, browser: Browser,
                                                                     shots: Path) -> None:
    page = _page(browser)
    _sign_in(page, w, "audrey")
    page.goto(w.url + "/conflicts/1")
    expect(page.locator("#target .value")).to_have_text("张**")
    page.fill("#resolve textarea[name=reason]", "I think the CRM is right")
    page.click("#resolve button")
    expect(page.locator("h1")).to_have_text("Not allowed")
    _shot(page, shots, "07-conflict-refused-for-auditor")
    page.context.close()

    page = _page(browser)
    _sign_in(page, w, "stella")
    page.click("nav >> text=Conflicts")
    expect(page.locator("table#conflicts tr[data-conflict]")).to_have_count(1)
    page.click("table#conflicts a[href='/conflicts/1']")
    _shot(page, shots, "08-conflict")
    page.check("#resolve input[value=source]")
    page.fill("#resolve textarea[name=reason]", "core banking owns legal names")
    page.click("#resolve button")
    expect(page.get_by_role("status")).to_contain_text("Resolved")
    expect(page.locator("dl.facts")).to_contain_text("stella@console")
    _shot(page, shots, "09-conflict-resolved")
    page.context.close()


def test_a_dead_letter_retry(w: World, browser: Browser, shots: Path) -> None:
    page = _page(browser)
    _sign_in(page, w, "oscar")
    page.click("nav >> text=Dead letters")
    expect(page.locator("table#reasons tr[data-reason]")).not_to_have_count(0)
    _shot(page, shots, "10-dead-letters")
    first = page.locator("table#letters tr[data-letter]").first
    letter = first.get_attribute("data-letter")
    first.locator("button").click()
    expect(page.get_by_role("status")).to_contain_text("1 letter(s) made due")
    expect(page.locator(f"table#retried tr[data-letter='{letter}']")).to_be_visible()
    expect(page.locator("table#retry-runs")).to_contain_text("#")
    _shot(page, shots, "11-dead-letter-retried")
    page.context.close()


def test_a_ledger_export_downloaded_then_verified_offline(w: World, browser: Browser, shots: Path,
                                                           tmp_path: Path) -> None:
    page = _page(browser)
    _sign_in(page, w, "audrey")
    page.click("nav >> text=Ledger")
    page.click("#verify button")
    expect(page.locator("#verdict")).to_contain_text("Verified")
    _shot(page, shots, "12-ledger")
    with page.expect_download() as dl:
        page.click("#export button")
    export = tmp_path / dl.value.suggested_filename
    dl.value.save_as(export)
    assert export.name.startswith("crmbridge-ledger-") and export.suffix == ".jsonl"
    with page.expect_download() as kd:
        page.click("a[href='/ledger/public-key.pem']")
    key = tmp_path / "ledger.pub.pem"
    kd.value.save_as(key)
    page.context.close()
    done = subprocess.run([sys.executable, str(ROOT / "sync/state/verify_ledger.py"), str(export), "--public-key",
                           str(key)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("OK: ")


def test_the_mappings_and_a_diff(w: World, browser: Browser, shots: Path) -> None:
    page = _page(browser)
    _sign_in(page, w, "stella")
    page.click("nav >> text=Mappings")
    tables = page.locator("table.mapping-versions")   # one per mapping file the jobs used (the demo's jobs: 7)
    expect(tables.first).to_be_visible()
    assert tables.count() >= 3
    used = page.locator("table.mapping-versions", has_text="= file now")   # the files a run has archived
    expect(used.first).to_be_visible()
    _shot(page, shots, "13-mappings")
    used.first.locator("a.mono").first.click()
    expect(page.locator("pre.block")).to_contain_text("steps")
    page.context.close()


def test_repeated_wrong_passwords_lock_the_user_out(w: World, browser: Browser, shots: Path) -> None:
    from console_world import add_users

    add_users(w.served.runtime, {"lena": ["auditor"]})
    page = _page(browser)
    from crmbridge.console.settings import ConsoleSettings

    for _ in range(ConsoleSettings().lockout_threshold):
        _sign_in(page, w, "lena", PASSWORD + "?")
    expect(page.get_by_role("alert")).to_contain_text("locked")
    _sign_in(page, w, "lena")                      # the right password too, while locked
    expect(page.get_by_role("alert")).to_contain_text("locked")
    _shot(page, shots, "14-locked-out")
    page.context.close()


def test_a_reveal_requested_by_an_auditor_and_approved_by_a_steward(w: World, browser: Browser, shots: Path) -> None:
    rt = w.served.runtime
    with rt.store.transaction(read_only=True) as tx:
        pid = tx.get_xref("corebank", "Customer", w.custno)
    assert pid
    asker = _page(browser)
    _sign_in(asker, w, "audrey")
    asker.goto(f"{w.url}/customers/{pid}/reveal")
    expect(asker.locator("#fields")).not_to_contain_text(w.ric)          # masked until a second person approves
    asker.click("text=Request a reveal")
    # the resident ID number is the party's first identifier
    ric_row = asker.locator("tr", has=asker.locator("code", has_text="identifiers[0].value"))
    ric_row.locator("input[type=checkbox]").check()
    asker.fill("textarea[name=reason]", "complaint 2026-1207: the customer disputes the ID on file")
    _shot(asker, shots, "15-reveal-request")
    asker.click("main button[type=submit]")
    expect(asker.locator("main")).to_contain_text("Pending")
    expect(asker.locator("main")).to_contain_text("filed")

    approver = _page(browser)
    _sign_in(approver, w, "stella")
    approver.goto(f"{w.url}/requests")
    row = approver.locator("tr", has=approver.locator("text=audrey")).first
    row.locator("input[name=reason]").fill("checked with the complaint desk")
    row.locator("button[value=approve]").click()
    expect(approver.locator("main")).to_contain_text("approved")
    _shot(approver, shots, "16-reveal-approved")
    approver.context.close()

    asker.goto(f"{w.url}/customers/{pid}/reveal")
    expect(asker.locator("p.notice")).to_contain_text("approved by stella")
    expect(asker.locator("#fields td.clear")).to_contain_text(w.ric)     # the clear value, to the requester only
    _shot(asker, shots, "17-revealed")
    asker.context.close()
    other = _page(browser)
    _sign_in(other, w, "steve")                    # another steward: still masked for them
    other.goto(f"{w.url}/customers/{pid}/reveal")
    expect(other.locator("#fields")).not_to_contain_text(w.ric)
    other.context.close()
