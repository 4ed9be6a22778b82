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
    serve: Annotated[bool, typer.Option("--serve", help="Keep the simulators running afterwards and serve the web "
                                                        "console with one demo user per role (Ctrl-C stops).")]
    = False,
    console_host: Annotated[str, typer.Option("--console-host", help="With --serve: the console's address.")]
    = "127.0.0.1",
    console_port: Annotated[int, typer.Option("--console-port", help="With --serve: the console's port (0: any "
                                                                     "free one).")] = 8470,
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
        step("2b · core accounts → Zoho Holdings (each after its Contact; accounts of customers not in Zoho wait)",
             "core_holdings_to_zoho")

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

        console.rule("7 · a campaign opt-out reaches core banking (Zoho campaign members → core consents)")
        with rt.store.transaction(refuse_writes=True) as tx:
            linked = [(cid, tx.xrefs_for_party(pid, "corebank", "Customer"))
                      for cid in list(env.zoho.stores["Contacts"].records)[:2]
                      if (pid := tx.get_xref("zoho_cn", "Contacts", str(cid))) is not None]
        linked = [(cid, refs[0][2]) for cid, refs in linked if refs]
        if linked:
            campaign = env.zoho.add("Campaigns", Campaign_Name="春季理财节", Status="Active", Type="Email")
            env.zoho.relate(campaign, str(linked[0][0]), "Opted Out")
            if len(linked) > 1:
                env.zoho.relate(campaign, str(linked[1][0]), "Responded")
            flag = (env.core.store.get(linked[0][1]) or {}).get("consent_email")
            console.print(f"Zoho: a customer opts out of the e-mail campaign {campaign}; core banking's e-mail "
                          f"marketing consent of customer {linked[0][1]} is {flag}")
            step("7 · the response job withdraws the consent at the core (legal basis ledgered)", "zoho_responses")
            flag = (env.core.store.get(linked[0][1]) or {}).get("consent_email")
            console.print(f"core banking: customer {linked[0][1]}'s e-mail marketing consent is now {flag}")
            step("7 · a second run: the opt-out is not applied twice", "zoho_responses")

        console.rule("8 · reconciliation: both sides compared record by record")
        for job in ("core_to_zoho", "core_fxiaoke"):
            rep = reconcile(rt, job)
            verdict = "[green]complete[/]" if rep.complete else "[red]NOT complete[/]"
            console.print(f"{job}: {rep.matched} matched, {len(rep.different)} different, {len(rep.missing)} "
                          f"missing, {len(rep.extra)} extra; not pushed by design: "
                          f"{sum(rep.not_pushed.values())} — {verdict}")

        console.rule("9 · the ledger")
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
            + f"{exe} demo --serve    (the simulators stay up, and the web console with demo users)",
            title="look deeper"))
        if serve:
            _serve_console(rt, console_host, console_port)
        rt.close()
    finally:
        env.stop()
    if failed:
        raise typer.Exit(1)


#: the demo's console users, one per role (their passwords are drawn afresh on every run, never fixed anywhere)
DEMO_USERS = {"auditor": ["auditor"], "operator": ["operator"], "steward": ["steward"], "admin": ["admin"]}


def demo_password() -> str:
    """A random password that passes the console's strength check (Argon2id-hashed like any other)."""
    import secrets

    from crmbridge.console.passwords import check_strength

    while True:
        password = secrets.token_urlsafe(15)
        if check_strength(password) is None:
            return password


def _serve_console(rt: object, host: str, port: int) -> None:
    """Add the demo users, print their sign-ins and serve the console until Ctrl-C (the simulators keep running
    meanwhile); without the console extra, keep the simulators only."""
    from crmbridge.core.errors import CrmBridgeError
    from crmbridge.core.extras import require_extra

    try:
        require_extra("console", purpose="the demo's console")
    except CrmBridgeError as exc:
        console.print(f"{exc}\nsimulators keep running; Ctrl-C to stop", highlight=False)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return
    import socket

    import uvicorn

    from crmbridge.console.app import create_app
    from crmbridge.console.passwords import hash_password
    from crmbridge.sync.state.console import ConsoleRepository
    from crmbridge.sync.state.ledger import Action, LedgerEntryIn

    store, signer, cipher = rt.store, rt.signer, rt.cipher  # type: ignore[attr-defined]
    passwords = {name: demo_password() for name in DEMO_USERS}
    with store.transaction() as tx:
        repo = ConsoleRepository(tx)
        ledger = tx.ledger(signer, cipher=cipher)
        for name, roles in DEMO_USERS.items():
            repo.add_user(name, hash_password(passwords[name]), roles, created_by=cli_actor("demo"), now=store.clock())
            ledger.append([LedgerEntryIn(action=Action.USER_CHANGED, actor=cli_actor("demo"), source_system="console",
                                         source_object="user", source_id=name,
                                         reason=f"console user {name}: added with roles {', '.join(roles)}")])
        ledger.checkpoint()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    url = f"http://{'[' + host + ']' if ':' in host else host}:{sock.getsockname()[1]}/"
    console.print(Panel.fit("\n".join(f"{name:<9} {passwords[name]}   ({', '.join(roles)})"
                                      for name, roles in DEMO_USERS.items()),
                            title="console sign-ins (passwords drawn for this run only)"), highlight=False)
    console.print(f"crmbridge console on {url} · the simulators keep running · Ctrl-C stops both", highlight=False)
    sys.stdout.flush()
    server = uvicorn.Server(uvicorn.Config(create_app(rt), log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
