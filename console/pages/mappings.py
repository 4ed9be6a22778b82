"""Mappings: every mapping the configured jobs use, each with the versions runs used (archived by content hash in
the state store, as ``crmbridge mapping history``), the text of any version, and the unified diff of two versions
or of a version against the file as it is now (as ``crmbridge mapping diff``)."""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from crmbridge.console.pages._view import when
from crmbridge.console.web import ConsoleRequest, endpoint, render, route
from crmbridge.core.errors import CrmBridgeError
from crmbridge.sync.state.console_views import ConsoleViews

__all__ = ["routes"]


def _files(req: ConsoleRequest) -> dict[str, dict[str, Any]]:
    """file name → {path, used by (job, role)} for every mapping a configured job references."""
    cfg = req.state.runtime.config
    out: dict[str, dict[str, Any]] = {}
    for name, job in sorted(cfg.jobs.items()):
        for role, ref in (("source", job.source_mapping), ("target", job.target_mapping)):
            try:
                path: Path | None = cfg.mapping_path(ref)
            except CrmBridgeError:
                path = None
            key = path.name if path is not None else Path(ref).name
            entry = out.setdefault(key, {"path": path, "used_by": []})
            entry["used_by"].append(f"{name} ({role})")
    return out


def _hash(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


@endpoint("view")
def overview(req: ConsoleRequest) -> Response:
    files = _files(req)
    with req.state.runtime.store.transaction(read_only=True, refuse_writes=True) as tx:
        versions = ConsoleViews(tx).all_mapping_versions()
    by_file: dict[str, list[dict[str, Any]]] = {}
    for v in versions:
        by_file.setdefault(v["file_name"], []).append(v)
    groups = []
    for name in sorted(set(files) | set(by_file)):
        now = _hash(files.get(name, {}).get("path"))
        rows, prev = [], None
        for v in by_file.get(name, []):
            rows.append({"hash": v["content_hash"], "seen": when(v["first_seen_at"]),
                         "where": f"{v['system']}/{v['object']}", "current": v["content_hash"] == now,
                         "prev": prev})
            prev = v["content_hash"]
        groups.append({"file": name, "used_by": files.get(name, {}).get("used_by", []), "now": now,
                       "now_unused": now is not None and all(r["hash"] != now for r in rows), "versions": rows})
    return render(req, "mappings.html", groups=groups)


@endpoint("view")
def version(req: ConsoleRequest) -> Response:
    ref = req.request.path_params["content_hash"]
    with req.state.runtime.store.transaction(read_only=True, refuse_writes=True) as tx:
        row = tx.mapping_version(ref)
    if row is None:
        return render(req, "not_found.html", status_code=404, what=f"archived mapping version {ref[:64]}")
    return render(req, "mapping_version.html", v={**row, "seen": when(row["first_seen_at"])})


def _text(req: ConsoleRequest, tx: Any, ref: str) -> tuple[str, str] | None:
    """(label, text) of ``ref``: an archived version's hash (or unique prefix), or ``file:NAME`` (the file now)."""
    if ref.startswith("file:"):
        entry = _files(req).get(ref[5:])
        path = entry["path"] if entry else None
        if path is None or not path.is_file():
            return None
        return f"{path.name} (the file now)", path.read_text(encoding="utf-8")
    row = tx.mapping_version(ref)
    return None if row is None else (f"{row['file_name']}@{row['content_hash'][:12]}", str(row["text"]))


@endpoint("view")
def diff(req: ConsoleRequest) -> Response:
    a, b = req.query.get("a", ""), req.query.get("b", "")
    with req.state.runtime.store.transaction(read_only=True, refuse_writes=True) as tx:
        ta, tb = _text(req, tx, a), _text(req, tx, b)
    missing = [x for x, t in ((a, ta), (b, tb)) if t is None]
    if ta is None or tb is None:
        return render(req, "not_found.html", status_code=404,
                      what=" or ".join(f"mapping version {m[:64]!r}" for m in missing))
    lines = list(difflib.unified_diff(ta[1].splitlines(), tb[1].splitlines(), ta[0], tb[0], lineterm=""))
    shown = [{"text": line, "kind": "hunk" if line.startswith("@@") else "add" if line.startswith("+")
              else "del" if line.startswith("-") else ""} for line in lines]
    return render(req, "mapping_diff.html", a=ta[0], b=tb[0], lines=shown)


def routes() -> list[Route]:
    return [route("/mappings", overview), route("/mappings/version/{content_hash}", version),
            route("/mappings/diff", diff)]
