"""``crmbridge demo``: the README's main job, a full sync on the built-in simulators and embedded SQLite.

It starts the core-banking, Zoho CRM and Fxiaoke simulators on free loopback ports, seeds the core with
synthetic customers (some realistically bad), then runs the example jobs: core banking → Zoho Contacts (one-way)
and core banking ⇄ Fxiaoke AccountObj (two-way). A relationship manager then edits records in Fxiaoke — one edit
the CRM owns (an e-mail address) and one it does not (a legal name, owned by core banking) — while the core
changes a customer; the next runs carry the edits back, raise the one deliberate conflict, and reconcile.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel

from crmbridge.cli._common import console
from crmbridge.cli.actor import cli_actor

__all__ = ["register"]


def demo(
    workdir: Annotated[Path, typer.Option(help="Folder for the demo's configuration, keys and SQLite state "
                                                "(emptied first).")] = Path("var/demo"),
    customers: Annotated[int, typer.Option(help="Customers seeded in the core-banking simulator.")] = 300,
    bad_fraction: Annotated[float, typer.Option(help="Fraction of customers with a realistic defect.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data.")] = 7,
    serve: Annotated[bool, typer.Option("--serve", help="Keep the simulators running afterwards (Ctrl-C stops).")]
    = False,
) -> None:
    """Start the simulators and run the example syncs end to end on embedded SQLite."""

    from crmbridge.adapters.base import WriteItem
    from crmbridge.demo import DemoEnvironment
    from crmbridge.sync.bootstrap import bootstrap
    from crmbridge.sync.engine import run_job
    from crmbridge.sync.reconcile import reconcile
    from crmbridge.sync.report import render_summary
    from crmbridge.sync.state.ledger import LedgerSigner

    env = DemoEnvironment(workdir.resolve(), customers=customers, bad_fraction=bad_fraction, seed=seed).start()
    failed = False
    try:
        console.print(Panel.fit(
            f"core banking (SOAP)  {env.core.wsdl_url}\nZoho CRM             {env.zoho.url}\n"
            f"Fxiaoke              {env.fxiaoke.url}\nconfiguration        {env.config_path}",
            title=f"simulators on loopback · {customers} synthetic customers, {bad_fraction:.0%} with a defect"))
        rt = bootstrap(env.config_path)

        def step(title: str, job: str) -> None:
            nonlocal failed
            console.rule(title)
            report = run_job(rt, job, actor=cli_actor("demo"))
            render_summary(report, console)
            failed = failed or report.failed

        step("1 · core banking → Zoho CRM Contacts (one-way, individuals with consent)", "core_to_zoho")
        step("2 · core banking ⇄ Fxiaoke AccountObj (two-way; the first run creates the accounts)", "core_fxiaoke")

        console.rule("3 · meanwhile: a relationship manager edits Fxiaoke, core banking changes a customer")
        fx = rt.adapter("fxiaoke")
        people = [r for r in env.fxiaoke.records("AccountObj")
                  if r.get("party_type__c") == "INDIVIDUAL" and r.get("email")]
        edits: list[WriteItem] = []
        if len(people) >= 2:
            edits = [WriteItem(key="rm-edit", payload={"email": "updated.by.rm@example.com"},
                               external_id=people[0]["_id"]),
                     WriteItem(key="rm-edit", payload={"name": "张三丰"}, external_id=people[1]["_id"])]
            fx.write("AccountObj", edits)
            console.print("Fxiaoke: an RM corrects a customer's e-mail address (the CRM owns contact details)")
            console.print("Fxiaoke: an RM retypes a customer's legal name (core banking owns names: "
                          "this must not overwrite the core)")
        with rt.store.transaction(refuse_writes=True) as tx:
            custnos = [ref[2] for pid in tx.parties_in("zoho_cn", limit=1)
                       for ref in tx.xrefs_for_party(pid, "corebank", "Customer")]
        if custnos:
            record = env.core.store.get(custnos[0]) or {}
            new_segment = "PRIVATE" if record.get("segment") != "PRIVATE" else "WEALTH"
            env.core.store.touch(custnos[0], segment=new_segment)
            console.print(f"core banking: customer {custnos[0]} moves to segment {new_segment} (its MODNO moves on)")
        time.sleep(0.01)

        step("4 · the two-way job carries the edits back (one deliberate conflict)", "core_fxiaoke")
        step("5 · the one-way job picks up the core's change", "core_to_zoho")
        step("6 · a second run with nothing new: no write calls", "core_to_zoho")

        console.rule("7 · reconciliation: both sides compared record by record")
        for job in ("core_to_zoho", "core_fxiaoke"):
            rep = reconcile(rt, job)
            verdict = "[green]complete[/]" if rep.complete else "[red]NOT complete[/]"
            console.print(f"{job}: {rep.matched} matched, {len(rep.different)} different, {len(rep.missing)} "
                          f"missing, {len(rep.extra)} extra; not pushed by design: "
                          f"{sum(rep.not_pushed.values())} — {verdict}")

        console.rule("8 · the ledger")
        with rt.store.transaction(refuse_writes=True) as tx:
            ledger = tx.ledger(rt.signer, cipher=rt.cipher)
            pub = rt.signer.public_key if isinstance(rt.signer, LedgerSigner) else None
            result = ledger.verify(pub)
            letters = tx.list_dead_letters(status=["open"], limit=100_000)
            conflicts = tx.list_conflicts(limit=1000)
        console.print(f"ledger: {result.entries} entries, {result.checkpoints} signed checkpoints — "
                      + ("[green]verifies[/]" if result.ok else f"[red]{result.problems[0]}[/]"))
        console.print(f"dead letters: {len(letters)} records rejected with their reasons; "
                      f"conflicts waiting for review: {len(conflicts)}")
        cfg = _short(env.config_path)
        exe = _short(Path(sys.executable).with_name("crmbridge"))
        console.print(Panel.fit(
            f"export CRMBRIDGE_CONFIG={cfg}\n"
            f"{exe} runs list           (every run: status, counts, refusal reasons)\n"
            f"{exe} doctor corebank     (what the live core does: change-filter boundary, page size, clock)\n"
            f"{exe} ledger verify\n"
            f"{exe} deadletters list\n"
            + (f"{exe} conflicts show {conflicts[0]['id']}\n" if conflicts else "")
            + f"{exe} demo --serve    (keeps the simulators up for run --dry-run, reconcile...)",
            title="look deeper"))
        rt.close()
        if serve:
            console.print("simulators keep running; Ctrl-C to stop")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    finally:
        env.stop()
    if failed:
        raise typer.Exit(1)


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
