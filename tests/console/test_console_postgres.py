"""The console's accountability and four eyes on PostgreSQL (the production state database): ledgered sign-ins
and refusals, a reveal shown to the requester only, and an erasure approved by two users at the same instant that
runs once (the conditional update under PostgreSQL's row locks), the ledger verifying signed afterwards."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
import requests
from console_world import PASSWORD, csrf_of
from security_helpers import csrf, entries, head, served_world, verify


@pytest.mark.postgres
def test_accountability_and_four_eyes_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    with served_world(tmp_path, state_url=pg_url) as world:
        rt = world.runtime
        assert rt.store.engine.dialect.name == "postgresql"
        before = head(rt)
        anon = requests.Session()
        token = csrf_of(anon.get(f"{world.url}/login").text)
        assert anon.post(f"{world.url}/login", data={"username": "stella", "password": PASSWORD + "?",
                                                     "csrf_token": token}).status_code == 401
        users = {}
        for name in ("stella", "steve", "ada", "oscar"):
            s = world.session(name)
            users[name] = (s, csrf(s, world.url))

        def post(name: str, path: str, **data: str) -> requests.Response:
            s, tok = users[name]
            return s.post(f"{world.url}{path}", data={"csrf_token": tok, **data}, allow_redirects=False)

        with rt.store.transaction(read_only=True) as tx:
            pid, victim = tx.parties_in("zoho_cn", limit=2)
            ref = tx.xrefs_for_party(pid, "corebank", "Customer")[0][2]
        core = world.env.core.store.get(ref)
        assert post("oscar", "/requests/reveal", party_id=pid, reason="x", fields="name.legal_zh").status_code == 403
        r = post("stella", "/requests/reveal", party_id=pid, reason="ticket 7", fields="identifiers[].value")
        rid = int(re.search(r"filed-(\d+)", r.headers["location"]).group(1))  # type: ignore[union-attr]
        assert post("stella", f"/requests/reveal/{rid}/decide", decision="approve", reason="x").status_code == 403
        assert post("steve", f"/requests/reveal/{rid}/decide", decision="approve", reason="ok").status_code == 303
        assert core["id_number"] in users["stella"][0].get(f"{world.url}/customers/{pid}/reveal").text
        assert core["id_number"] not in users["steve"][0].get(f"{world.url}/customers/{pid}/reveal").text

        r = post("stella", "/requests/erasure", party_id=victim, reason="PIPL request")
        eid = int(re.search(r"filed-(\d+)", r.headers["location"]).group(1))  # type: ignore[union-attr]
        answers: list[int] = []
        threads = [threading.Thread(target=lambda n=n: answers.append(post(
            n, f"/requests/erasure/{eid}/decide", decision="approve", reason="verified").status_code))
            for n in ("steve", "ada")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(answers) == [303, 409]

        actions = [e["action"] for e in entries(rt, after=before)]
        assert actions[0] == "sign-in-refused" and actions.count("signed-in") == 4
        assert actions.count("refused") == 2 and actions.count("erased") == 1
        assert actions.count("four-eyes-approved") == 2 and actions.count("revealed") == 1
        result = verify(rt)
        assert result.ok, result.problems[:3]
