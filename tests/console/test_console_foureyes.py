"""Four eyes over real HTTP: a reveal requested by one user and approved by a different one shows the clear values
to the requester only, for the requested fields only, while it lasts (injected clock); the requester can never
approve their own request; a request is decided once; an approved erasure runs crmbridge's erasure once, with
the approver as actor and the requester recorded. The clear values are checked against the core-banking
simulator's own record, not against crmbridge's decryption."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from console_world import Served
from security_helpers import clock_of, csrf, entries, head, served_world, verify

from crmbridge.console.foureyes import revealed_fields
from crmbridge.console.settings import ConsoleSettings

SETTINGS = ConsoleSettings(reveal_minutes=10)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_world(Path(tmp_path_factory.mktemp("four")), SETTINGS) as w:
        yield w


def _party(world: Served, n: int) -> tuple[str, dict[str, str]]:
    """The ``n``-th party synced to Zoho with its core-banking record (the truth the clear values must match);
    each test takes its own (a reveal approved in one test is still active in the next)."""
    with world.runtime.store.transaction(read_only=True) as tx:
        pid = tx.parties_in("zoho_cn", limit=n + 1)[n]
        ref = tx.xrefs_for_party(pid, "corebank", "Customer")[0][2]
    return pid, world.env.core.store.get(ref)


def _request_id(resp: requests.Response) -> int:
    assert resp.status_code == 303, (resp.status_code, resp.text[:400])
    m = re.search(r"filed-(\d+)", resp.headers["location"])
    assert m, resp.headers["location"]
    return int(m.group(1))


class User:
    def __init__(self, world: Served, name: str) -> None:
        self.world, self.name = world, name
        self.s = world.session(name)
        self.token = csrf(self.s, world.url)

    def post(self, path: str, **data: str) -> requests.Response:
        return self.s.post(f"{self.world.url}{path}", data={"csrf_token": self.token, **data},
                           allow_redirects=False)

    def get(self, path: str) -> requests.Response:
        return self.s.get(f"{self.world.url}{path}", allow_redirects=False)


def test_reveal_needs_a_second_person_and_shows_clear_values_only_to_the_requester_while_active(
        world: Served) -> None:
    pid, core = _party(world, 0)
    stella, steve, audrey = User(world, "stella"), User(world, "steve"), User(world, "audrey")
    masked_page = stella.get(f"/customers/{pid}/reveal")
    assert masked_page.status_code == 200
    assert core["id_number"] not in masked_page.text and core["name"] not in masked_page.text

    with clock_of(world.runtime) as clock:
        before = head(world.runtime)
        form = stella.get(f"/requests/new?kind=reveal&party_id={pid}")
        assert "identifiers[0].value" in form.text and core["id_number"] not in form.text
        rid = _request_id(stella.post("/requests/reveal", party_id=pid, reason="customer disputes the ID on file",
                                      **{"field:identifiers[0].value": "1", "field:name.legal_zh": "1"}))
        # nothing in clear before approval
        assert core["id_number"] not in stella.get(f"/customers/{pid}/reveal").text

        # the requester may never approve their own request: refused and ledgered
        mark = head(world.runtime)
        r = stella.post(f"/requests/reveal/{rid}/decide", decision="approve", reason="me myself")
        assert r.status_code == 403
        (refused,) = entries(world.runtime, after=mark, actions=("refused",))
        assert refused["actor"] == "stella@console" and "requester may not decide" in refused["reason"]

        assert steve.post(f"/requests/reveal/{rid}/decide", decision="approve",
                          reason="dispute ticket 881 checked").status_code == 303
        # decided once: a second approval (another allowed user) is refused
        assert audrey.post(f"/requests/reveal/{rid}/decide", decision="approve",
                           reason="again").status_code == 409

        page = stella.get(f"/customers/{pid}/reveal")
        assert core["id_number"] in page.text and core["name"] in page.text
        # only the requested fields: the mobile and e-mail stay masked
        assert core["mobile"] not in page.text and core["email"] not in page.text
        # only the requester: the approver and a third user see masked values
        for other in (steve, audrey):
            text = other.get(f"/customers/{pid}/reveal").text
            assert core["id_number"] not in text and core["name"] not in text

        got = [(e["action"], e["actor"]) for e in entries(world.runtime, after=before)]
        assert got == [("four-eyes-requested", "stella@console"), ("refused", "stella@console"),
                       ("four-eyes-approved", "steve@console"), ("revealed", "stella@console")]
        approved = entries(world.runtime, after=before, actions=("four-eyes-approved",))[0]
        assert approved["actor_note"] == "requested by stella@console" and "ticket 881" in approved["reason"]
        (revealed,) = entries(world.runtime, after=before, actions=("revealed",))
        assert revealed["party_id"] == pid
        assert revealed["changed_fields"] == ["identifiers[0].value", "name.legal_zh"]
        assert core["id_number"] not in str(entries(world.runtime, after=before))

        # the reveal expires
        clock.advance(minutes=SETTINGS.reveal_minutes - 1)
        assert core["id_number"] in stella.get(f"/customers/{pid}/reveal").text
        clock.advance(minutes=2)
        mark = head(world.runtime)
        page = stella.get(f"/customers/{pid}/reveal")
        assert page.status_code == 200 and core["id_number"] not in page.text
        assert entries(world.runtime, after=mark, actions=("revealed",)) == []
        listing = stella.get("/requests").text
        assert f'id="request-{rid}"' in listing and "expired" in listing


def test_revealed_fields_is_empty_without_an_active_reveal_and_matches_templates(world: Served) -> None:
    pid, core = _party(world, 1)
    stella, ada = User(world, "stella"), User(world, "ada")
    from crmbridge.console.auth import Principal, Role

    who = Principal("stella", frozenset({Role.STEWARD}), "x", "y")
    assert revealed_fields(world.runtime, who, pid) == {}
    rid = _request_id(stella.post("/requests/reveal", party_id=pid, reason="template paths",
                                  fields="contact_points[].value"))
    # an admin may not approve reveals (PERMISSIONS): refused by role
    assert ada.post(f"/requests/reveal/{rid}/decide", decision="approve", reason="x").status_code == 403
    assert User(world, "audrey").post(f"/requests/reveal/{rid}/decide", decision="approve",
                                      reason="ok").status_code == 303
    clear = revealed_fields(world.runtime, who, pid, where="test")
    assert set(clear) == {"contact_points[0].value", "contact_points[1].value"}
    assert core["email"] in clear.values() and any(core["mobile"] in v for v in clear.values())


def test_a_request_needs_a_reason_and_known_personal_fields(world: Served) -> None:
    pid, _ = _party(world, 0)
    stella = User(world, "stella")
    assert stella.post("/requests/reveal", party_id=pid, reason=" ",
                       **{"field:name.legal_zh": "1"}).status_code == 400
    r = stella.post("/requests/reveal", party_id=pid, reason="why", fields="branch")
    assert r.status_code == 400 and "not among them: branch" in r.text
    assert stella.post("/requests/reveal", party_id="not-a-uuid", reason="why",
                       fields="name.legal_zh").status_code == 404
    # an operator may not ask at all
    assert User(world, "oscar").post("/requests/reveal", party_id=pid, reason="why",
                                     fields="name.legal_zh").status_code == 403


def test_a_rejected_reveal_shows_nothing(world: Served) -> None:
    pid, core = _party(world, 3)
    audrey, stella = User(world, "audrey"), User(world, "stella")
    rid = _request_id(audrey.post("/requests/reveal", party_id=pid, reason="curious",
                                  **{"field:identifiers[0].value": "1"}))
    before = head(world.runtime)
    assert stella.post(f"/requests/reveal/{rid}/decide", decision="reject",
                       reason="no ticket").status_code == 303
    assert core["id_number"] not in audrey.get(f"/customers/{pid}/reveal").text
    (e,) = entries(world.runtime, after=before)
    assert (e["action"], e["actor"]) == ("four-eyes-rejected", "stella@console") and "no ticket" in e["reason"]


def test_an_approved_erasure_runs_once_with_the_approver_as_actor(world: Served) -> None:
    pid, _ = _party(world, 2)
    stella, steve, ada = User(world, "stella"), User(world, "steve"), User(world, "ada")
    # an auditor may not request an erasure
    assert User(world, "audrey").post("/requests/erasure", party_id=pid, reason="x").status_code == 403
    rid = _request_id(stella.post("/requests/erasure", party_id=pid, reason="customer's PIPL art. 47 request"))
    assert stella.post(f"/requests/erasure/{rid}/decide", decision="approve", reason="mine").status_code == 403
    with world.runtime.store.transaction(read_only=True) as tx:
        assert tx.snapshots_of_party(pid)
    before = head(world.runtime)
    # two approvers at once: exactly one wins, the erasure runs once
    answers: list[int] = []

    def approve(u: User) -> None:
        answers.append(u.post(f"/requests/erasure/{rid}/decide", decision="approve",
                              reason="request verified").status_code)

    threads = [threading.Thread(target=approve, args=(u,)) for u in (steve, ada)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(answers) == [303, 409]
    got = entries(world.runtime, after=before)
    assert [e["action"] for e in got] == ["four-eyes-approved", "erased"]
    erased = got[1]
    assert erased["actor"] in ("steve@console", "ada@console") and erased["actor"] == got[0]["actor"]
    assert "requested by stella@console" in erased["actor_note"] and erased["party_id"] == pid
    with world.runtime.store.transaction(read_only=True) as tx:
        assert tx.snapshots_of_party(pid) == []
    assert 'class="status s-executed"' in stella.get("/requests").text
    # the erased party has nothing left to reveal
    assert stella.post("/requests/reveal", party_id=pid, reason="x",
                       fields="name.legal_zh").status_code == 404


def test_the_ledger_verifies_signed_after_the_four_eyes_flows(world: Served) -> None:
    result = verify(world.runtime)
    assert result.ok, result.problems[:3]
