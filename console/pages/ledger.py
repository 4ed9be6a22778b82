"""Ledger status: the chain head, the last signed checkpoint, the public key auditors verify with, the latest entries
(paginated on seq), a verification now (auditor) and an export to download (auditor): the JSON Lines export of
``crmbridge ledger export``, which verifies offline with ``crmbridge ledger verify --file`` or the standalone
``verify_ledger.py``."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime

from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from crmbridge.console.pages._view import entry_view, int_param, when
from crmbridge.console.web import ConsoleRequest, endpoint, render, route
from crmbridge.sync.state.console_views import ConsoleViews

__all__ = ["routes"]


def _status(req: ConsoleRequest, *, verdict: dict[str, object] | None = None, status_code: int = 200) -> Response:
    from crmbridge.sync.state.ledger_trust import fingerprint

    rt = req.state.runtime
    before = int_param(req.query, "before")
    page = req.state.settings.page_size
    with rt.store.transaction(read_only=True, refuse_writes=True) as tx:
        seq, head_hash = tx.ledger().head()
        views = ConsoleViews(tx)
        cp = views.last_checkpoint()
        entries = views.entries(before_seq=before or 0, limit=page)
    more = len(entries) > page
    entries = entries[:page]
    signer = rt.signer
    return render(req, "ledger.html", status_code=status_code, head={"seq": seq, "hash": head_hash},
                  checkpoint=cp and {**cp, "at": when(cp["created_at"])},
                  unsigned=seq - int(cp["tree_size"]) if cp else seq,
                  public_key=signer.public_pem() if signer is not None else None,
                  key_id=signer.key_id if signer is not None else None,
                  fingerprint=fingerprint(signer) if signer is not None else None,
                  pinned=list(rt.config.ledger.trusted_keys), verdict=verdict,
                  entries=[entry_view(e) for e in entries],
                  older=f"/ledger?before={entries[-1]['seq']}" if more else None, newest="/ledger" if before else None,
                  may_verify=req.principal.may("ledger.verify"), may_export=req.principal.may("ledger.export"))


@endpoint("view")
def status(req: ConsoleRequest) -> Response:
    return _status(req)


@endpoint("ledger.verify", methods=["POST"])
def verify(req: ConsoleRequest) -> Response:
    """Recompute the chain, Merkle roots and signatures from the database, as ``crmbridge ledger verify`` does."""
    from crmbridge.sync.state import verify_ledger as vl
    from crmbridge.sync.state.ledger_trust import verify_database

    rt = req.state.runtime
    pins = list(rt.config.ledger.trusted_keys)
    signer = rt.signer
    keys: list[object] = []
    known = [signer.public_key] if signer is not None else []
    unpinned = not pins and signer is not None
    if unpinned:   # nothing pinned: the configured key is all there is (said in a warning)
        keys, known = known, []
    with rt.store.transaction(read_only=True, refuse_writes=True) as tx:
        result = verify_database(tx, public_keys=keys, trusted=pins, known_keys=known)  # type: ignore[arg-type]
    if unpinned:
        result.warnings.append("no ledger.trusted_keys pinned: trusted the signing key the configuration points to, "
                               "so a replaced key and history re-signed with it would pass; pin its fingerprint in "
                               "ledger.trusted_keys")
    out = io.StringIO()
    vl.render(result, "database", out)
    verdict = {"ok": result.ok and result.anchored, "anchored": result.anchored, "text": out.getvalue(),
               "at": when(datetime.now(UTC)), "by": req.principal.actor}
    return _status(req, verdict=verdict)


@endpoint("ledger.export", methods=["POST"])
def export(req: ConsoleRequest) -> Response:
    """The whole ledger as JSON Lines (masked values only, checkpoints included: verifiable offline), streamed from
    a private temporary file so a large ledger never sits in memory."""
    from crmbridge.sync.state.ledger import export_ledger

    rt = req.state.runtime
    spool = tempfile.TemporaryFile(mode="w+b")   # noqa: SIM115 (closed by the stream below)
    text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
    with rt.store.transaction(read_only=True, refuse_writes=True) as tx:
        export_ledger(tx.ledger(), text, fmt="jsonl")
    text.flush()
    text.detach()
    spool.seek(0)

    def chunks() -> Iterator[bytes]:
        try:
            while block := spool.read(256 * 1024):
                yield block
        finally:
            spool.close()

    name = f"crmbridge-ledger-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.jsonl"
    return StreamingResponse(chunks(), media_type="application/x-ndjson", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff"})


@endpoint("view")
def public_key(req: ConsoleRequest) -> Response:
    signer = req.state.runtime.signer
    if signer is None:
        return render(req, "not_found.html", status_code=404, what="ledger signing key configured")
    return Response(signer.public_pem(), media_type="application/x-pem-file", headers={
        "Content-Disposition": f'attachment; filename="crmbridge-ledger-{signer.key_id}.pub.pem"'})


def routes() -> list[Route]:
    return [route("/ledger", status), route("/ledger/verify", verify), route("/ledger/export", export),
            route("/ledger/public-key.pem", public_key)]
