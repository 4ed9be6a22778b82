"""What several pages show the same way: times, durations, one ledger entry (masked, as ``crmbridge ledger show
--values`` prints it), query parameters read defensively."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from crmbridge.canonical.masking import mask_canonical
from crmbridge.core.logsafe import mask_text
from crmbridge.sync.state.ledger import canonical_json, decode_entry

__all__ = ["day", "duration", "entry_view", "int_param", "shown", "when"]


def when(v: Any) -> str:
    """A UTC time as ``2026-12-07 09:30:00`` (a ledger's ISO text too); ``—`` for none."""
    if v is None or v == "":
        return "—"
    if isinstance(v, str):
        return v[:19].replace("T", " ")
    if isinstance(v, datetime):
        v = v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return str(v)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 120:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def int_param(params: dict[str, str], name: str) -> int | None:
    """A non-negative integer query parameter, or None (absent or not a number: a hand-edited URL)."""
    v = (params.get(name) or "").strip()
    return int(v) if v.isdigit() and len(v) < 19 else None


def day(value: str | None, *, end: bool = False) -> datetime | None:
    """A ``YYYY-MM-DD`` form field as the start of that UTC day (``end``: the start of the next), or None."""
    if not value:
        return None
    try:
        d = date.fromisoformat(value.strip())
    except ValueError:
        return None
    at = datetime.combine(d, time(), tzinfo=UTC)
    return at + timedelta(days=1) if end else at


def _by_class(path: str, value: Any) -> Any:
    """A stored value as shown: one carrying the mask character was masked by its class when written and is
    shown as stored; any other is masked now by its path's class (C1 values stay readable)."""
    if value is None or value in ("[]", "{}", "") or "*" in str(value):
        return value
    return mask_canonical(path, value)


def shown(value: Any) -> str:
    """A stored payload or answer value as JSON text (masked when it was written, shown as stored)."""
    return canonical_json(value) if isinstance(value, dict | list) else json.dumps(value, ensure_ascii=False)


def entry_view(rec: dict[str, Any]) -> dict[str, Any]:
    """One ledger entry as a page shows it: masked field changes, the masked payload sent, the vendor's answer,
    the mapping versions, who and why; nothing decrypted."""
    e = decode_entry(rec)
    before, after = e.get("masked_before") or {}, e.get("masked_after") or {}
    changes = [(p, _by_class(p, before.get(p)), _by_class(p, after.get(p))) for p in e["changed_fields"]]
    payload = e.get("payload")
    answer = e.get("answer")
    return {
        "seq": e["seq"], "at": when(e.get("recorded_at")), "action": e["action"], "run_id": e.get("run_id"),
        "job": e.get("job"), "party_id": e.get("party_id"),
        "source": "/".join(str(x) for x in (e.get("source_system"), e.get("source_object"), e.get("source_id"))
                           if x),
        "target": "/".join(str(x) for x in (e.get("target_system"), e.get("target_object"), e.get("target_id"))
                           if x),
        "actor": e.get("actor") or "", "actor_note": e.get("actor_note"),
        "reason": mask_text(e["reason"]) if e.get("reason") else None,
        "changes": changes,
        "payload": [(str(k), shown(v)) for k, v in payload.items()] if isinstance(payload, dict) else None,
        "answer": [(str(k), shown(v) if k == "message" else str(v)) for k, v in answer.items()]
        if isinstance(answer, dict) else None,
        "mapping_version": e.get("mapping_version"),
        "mapping_versions": sorted((e.get("mapping_versions") or {}).items()),
        "correlation_id": e.get("correlation_id"),
        "entry_hash": e.get("entry_hash"),
    }
