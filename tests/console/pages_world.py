"""The world the page tests look at: the demo environment's two jobs synced, a relationship manager's edit of a
legal name in Fxiaoke (owned by core banking) and the two-way job run again, so there is one open conflict; the
seeded bad records are dead letters; users of every role; the console on a real uvicorn on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from console_world import Served, add_users, serve

from crmbridge.adapters.base import WriteItem
from crmbridge.console.settings import ConsoleSettings
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap


@dataclass
class World:
    served: Served
    #: a synced customer's custno and resident ID number (clear: the test knows it, the console must not show it)
    custno: str
    ric: str

    @property
    def url(self) -> str:
        return self.served.url


@contextmanager
def world(tmp: Path, *, state_url: str | None = None, settings: ConsoleSettings | None = None) -> Iterator[World]:
    from crmbridge.sync.engine import run_job

    with DemoEnvironment(tmp / "demo", customers=30, bad_fraction=0.1, seed=11, state_url=state_url) as env:
        rt = bootstrap(env.config_path)
        try:
            run_job(rt, "core_to_zoho", actor="ops@test")
            run_job(rt, "core_fxiaoke", actor="ops@test")
            people = [r for r in env.fxiaoke.records("AccountObj")
                      if r.get("party_type__c") == "INDIVIDUAL" and r.get("email")]
            rt.adapter("fxiaoke").write("AccountObj", [WriteItem(key="rm-edit", payload={"name": "张三丰"},
                                                                 external_id=people[1]["_id"])])
            run_job(rt, "core_fxiaoke", actor="ops@test")
            add_users(rt)
            with rt.store.transaction() as tx:
                pid = tx.parties_in("zoho_cn", limit=1)[0]
                custno = [x for x in tx.xrefs_for_party(pid, "corebank", "Customer")][0][2]
            ric = str(env.core.store.get(custno)["id_number"])
            for url in serve(rt, settings):
                yield World(Served(url, rt, env), custno, ric)
        finally:
            rt.close()
