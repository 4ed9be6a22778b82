"""A customer's lineage: found by an identifier through the blind index (a resident ID number never travels in a
URL, so the search is a POST and lands on the party's page) or by party id; then every system's record, every
change with who made it and which mapping versions decided it (the ledger, masked; paginated on its seq)."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from crmbridge.console.pages._view import entry_view, int_param, when
from crmbridge.console.web import ConsoleRequest, endpoint, render, route
from crmbridge.core.errors import CrmBridgeError
from crmbridge.core.logsafe import mask_text
from crmbridge.sync.state.console_views import ConsoleViews

__all__ = ["routes"]

#: offered even when no job matches on it
_DEFAULT_SCHEMES = ("CN_RIC", "CN_USCC", "PASSPORT", "MOBILE")


def _schemes(req: ConsoleRequest) -> list[str]:
    out = dict.fromkeys(_DEFAULT_SCHEMES)
    for job in req.state.runtime.config.jobs.values():
        for rule in job.match_rules:
            out.update(dict.fromkeys(str(s).upper() for s in rule))
    return list(out)


def _party(text: str) -> str | None:
    try:
        return str(uuid.UUID(text.strip()))
    except (ValueError, AttributeError):
        return None


def _page(req: ConsoleRequest, *, error: str | None = None, matches: list[str] | None = None,
          status_code: int = 200, scheme: str = "CN_RIC") -> Response:
    return render(req, "customers.html", status_code=status_code, schemes=_schemes(req), error=error,
                  matches=matches, scheme=scheme)


@endpoint("view")
def search_page(req: ConsoleRequest) -> Response:
    return _page(req)


@endpoint("view", methods=["POST"])
def search(req: ConsoleRequest) -> Response:
    """By identifier (``scheme`` + ``value``, through the blind index) or by ``party_id``."""
    from crmbridge.sync.security.privacy import party_ids_for_identifier

    rt = req.state.runtime
    party_text = req.form.get("party_id", "").strip()
    if party_text:
        pid = _party(party_text)
        if pid is None:
            return _page(req, error="A party id is a UUID (8-4-4-4-12 hexadecimal digits).", status_code=400)
        return RedirectResponse(f"/customers/{pid}", status_code=303)
    scheme = req.form.get("scheme", "CN_RIC").strip().upper()
    value = req.form.get("value", "").strip()
    if scheme not in _schemes(req):
        return _page(req, error=f"Unknown identifier scheme {scheme[:32]!r}.", status_code=400)
    if not value:
        return _page(req, error="Give an identifier or a party id.", status_code=400, scheme=scheme)
    try:
        with rt.store.transaction() as tx:
            ids = party_ids_for_identifier(tx, rt.cipher, scheme, value)
    except (ValueError, CrmBridgeError):
        return _page(req, error=f"{scheme} {mask_text(value)} is not a valid identifier of that scheme.",
                     status_code=400, scheme=scheme)
    if len(ids) == 1:
        return RedirectResponse(f"/customers/{ids[0]}", status_code=303)
    if not ids:
        return _page(req, error=f"No customer is known by {scheme} {mask_text(value)}.", status_code=404,
                     scheme=scheme)
    return _page(req, matches=ids, scheme=scheme)


@endpoint("view")
def lineage(req: ConsoleRequest) -> Response:
    pid = _party(req.request.path_params["party_id"])
    if pid is None:
        return render(req, "not_found.html", status_code=404, what="such party id")
    page = req.state.settings.page_size
    after = int_param(req.query, "after") or 0
    with req.state.runtime.store.transaction(read_only=True, refuse_writes=True) as tx:
        records = tx.xrefs_for_party(pid)
        snaps = {(s["system"], s["object"]): s for s in tx.snapshots_of_party(pid)}
        identities = sorted({scheme for scheme, _bidx in tx.identities_of(pid)})
        erasure = tx.erasure_for_party(pid, in_force=False)
        conflicts = tx.list_conflicts(status=None, party_id=pid, limit=100)
        entries = ConsoleViews(tx).entries(party_ids=[pid], after_seq=after, limit=page)
    if not records and not entries and not snaps:
        return render(req, "not_found.html", status_code=404, what=f"party {pid}")
    more = len(entries) > page
    entries = entries[:page]
    systems: list[dict[str, Any]] = []
    for system, obj, ext in records:
        s = snaps.pop((system, obj), None)
        systems.append({"system": system, "object": obj, "id": ext,
                        "synced": when(s["synced_at"]) if s else None, "version": s["version"] if s else None,
                        "mappings": sorted((s.get("mapping_versions") or {}).items()) if s else []})
    for (system, obj), s in sorted(snaps.items()):   # synced state of a record whose link is gone (erased)
        systems.append({"system": system, "object": obj, "id": None, "synced": when(s["synced_at"]),
                        "version": s["version"], "mappings": sorted((s.get("mapping_versions") or {}).items())})
    return render(req, "customer.html", pid=pid, systems=systems, identities=identities,
                  erasure=erasure and {"at": when(erasure["erased_at"]), "by": erasure["actor"],
                                       "lifted": when(erasure["lifted_at"]) if erasure["lifted_at"] else None},
                  conflicts=[{"id": c["id"], "job": c["job"], "fields": c["field_paths"], "status": c["status"]}
                             for c in conflicts],
                  entries=[entry_view(e) for e in entries],
                  next_page=f"/customers/{pid}?after={entries[-1]['seq']}" if more else None,
                  first_page=f"/customers/{pid}" if after else None)


def routes() -> list[Route]:
    return [route("/customers", search_page), route("/customers/search", search),
            route("/customers/{party_id}", lineage)]
