"""The bank's complaint service on loopback: ``/api/v1/complaints`` as docs/vendors/complaints.md describes it.

* ``POST /api/v1/complaints`` with ``Idempotency-Key`` (mandatory): 201 and the new complaint; the same key with the
  same body within ``idempotency_ttl`` replays the first answer (200, ``Idempotent-Replayed: true``); the same key with
  another body is 422 ``IDEMPOTENCY_KEY_REUSED``. Past the TTL the key is forgotten: a repeated POST creates a second
  complaint (clients look a complaint up by ``source_case_id`` before creating it again).
* ``GET /api/v1/complaints/{id}``; ``GET /api/v1/complaints?updated_since=&source_case_id=&page_size=&cursor=``
  (ascending ``updated_at``, then id; an opaque cursor); ``PATCH /api/v1/complaints/{id}`` with ``If-Match`` (412
  ``VERSION_MISMATCH`` when stale), refused once the complaint is closed (409 ``INVALID_TRANSITION``).
* Errors are RFC 9457 problem documents with a ``code``; 401 without the API key; 429 with ``Retry-After``.

Knobs (``Knobs.extra``):

================== ========= ========================================================================
key                default   meaning
================== ========= ========================================================================
api_key            (class)   the accepted bearer API key
idempotency_ttl    86400     seconds an Idempotency-Key is remembered
party_must_exist   False     refuse complaints whose ``party_id`` the bank does not know yet (422
                             ``UNKNOWN_PARTY``; :meth:`ComplaintSimulator.know_party` adds one)
max_page_size      100       largest ``page_size`` (422 past it)
================== ========= ========================================================================

:meth:`ComplaintSimulator.advance` moves a complaint through the bank's handling (``ACCEPTED``, ``IN_PROGRESS``,
``RESOLVED``, ``CLOSED``, ``REJECTED``) as the complaint team would; each change bumps ``version`` and ``updated_at``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from crmbridge.adapters.simulator import Fault, Knobs, Request, Response, Simulator

__all__ = ["ComplaintSimulator", "PRIORITIES", "STATUSES"]

PRIORITIES = ("LOW", "MEDIUM", "HIGH", "URGENT")
STATUSES = ("RECEIVED", "ACCEPTED", "IN_PROGRESS", "RESOLVED", "CLOSED", "REJECTED")
_FINAL = ("CLOSED", "REJECTED")
#: fields a client sends on POST (``*`` mandatory) and may change on PATCH (``patchable``)
_FIELDS = {"source_system": True, "source_case_id": True, "party_id": True, "channel_code": False,
           "business_code": False, "reason_code": False, "priority": True, "summary": True, "received_at": True,
           "due_at": False, "sla_breached": False}
_PATCHABLE = ("priority", "summary", "due_at", "channel_code", "business_code", "reason_code", "sla_breached")
_PROBLEM = "https://complaints.bank.example/problems/"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo else None


def problem(status: int, code: str, title: str, detail: str = "", errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"type": _PROBLEM + code.lower().replace("_", "-"), "title": title, "status": status,
                            "code": code, "detail": detail or title, "request_id": uuid.uuid4().hex}
    if errors:
        body["errors"] = errors
    r = Response.json(body, status, headers)
    r.headers["Content-Type"] = "application/problem+json"
    return r


class ComplaintSimulator(Simulator):
    """The complaint service. Credentials: :attr:`api_key` (``Authorization: Bearer …``)."""

    vendor = "complaints"
    api_key = "cmp-simulator-api-key-0001"

    def __init__(self, knobs: Knobs | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(knobs, host=host, port=port)
        self.api_key = str(self.knobs.extra.get("api_key", type(self).api_key))
        #: wall clock (tests may replace it)
        self.clock: Callable[[], float] = time.time
        self.complaints: dict[str, dict[str, Any]] = {}
        #: Idempotency-Key -> (body hash, first answer status, complaint id, expiry epoch)
        self.keys: dict[str, tuple[str, int, str, float]] = {}
        self.parties: set[str] = set()
        self._seq = 0
        self.retry_after = 1.0
        self.seed(self.knobs.records)

    def banner(self) -> list[str]:
        return [f"complaint service simulator: {len(self.complaints)} complaints (seed {self.knobs.seed})",
                f"API root  {self.url}/api/v1/complaints",
                "API key   ComplaintSimulator.api_key (or Knobs.extra['api_key']), sent as Authorization: Bearer"]

    # ------------------------------------------------------------------ direct access (tests)
    def know_party(self, party_id: str) -> None:
        with self.lock:
            self.parties.add(party_id)

    def count(self) -> int:
        with self.lock:
            return len(self.complaints)

    def seed(self, n: int) -> None:
        """Replace the complaints with ``n`` synthetic ones."""
        with self.lock:
            self.complaints.clear()
            self.keys.clear()
            for i in range(n):
                now = self.clock()
                self._create({"source_system": "ZOHO", "source_case_id": f"seed-{i}", "party_id": f"party-{i}",
                              "priority": PRIORITIES[i % 4], "summary": f"投诉 {i}", "received_at": _iso(now),
                              "business_code": "B01", "reason_code": "C01", "channel_code": "A0101"}, now)

    def advance(self, complaint_id: str, status: str, *, resolution: str | None = None) -> dict[str, Any]:
        """The complaint team moves a complaint on (bumps version and updated_at)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self.lock:
            rec = self.complaints[complaint_id]
            now = self.clock()
            rec.update(status=status, version=rec["version"] + 1, updated_at=max(now, rec["updated_at"] + 0.001))
            if resolution is not None:
                rec["resolution"] = resolution
            if status in _FINAL:
                rec["closed_at"] = rec["updated_at"]
            return self._render(rec)

    # ------------------------------------------------------------------ faults and dispatch
    def fault_response(self, fault: Fault, req: Request) -> Response:
        if fault is Fault.THROTTLE:
            return problem(429, "RATE_LIMITED", "Too many requests", headers={"Retry-After": f"{self.retry_after:g}"})
        if fault is Fault.TOKEN_EXPIRED:
            return problem(401, "UNAUTHORIZED", "API key missing or not accepted")
        return problem(503, "MAINTENANCE", "Service temporarily unavailable")

    def handle(self, req: Request) -> Response:
        with self.lock:
            if req.headers.get("authorization", "") != f"Bearer {self.api_key}":
                return problem(401, "UNAUTHORIZED", "API key missing or not accepted",
                               headers={"WWW-Authenticate": 'Bearer realm="complaints"'})
            parts = [p for p in req.path.split("/") if p]
            if parts[:3] != ["api", "v1", "complaints"] or len(parts) > 4:
                return problem(404, "NOT_FOUND", "No such resource", req.path)
            if len(parts) == 3:
                if req.method == "POST":
                    return self._post(req)
                if req.method == "GET":
                    return self._list(req)
                return problem(405, "METHOD_NOT_ALLOWED", "Method not allowed", headers={"Allow": "GET, POST"})
            rec = self.complaints.get(parts[3])
            if rec is None:
                return problem(404, "NOT_FOUND", "No such complaint", f"complaint {parts[3]} does not exist")
            if req.method == "GET":
                return Response.json(self._render(rec), 200, {"ETag": f'"{rec["version"]}"'})
            if req.method == "PATCH":
                return self._patch(req, rec)
            return problem(405, "METHOD_NOT_ALLOWED", "Method not allowed", headers={"Allow": "GET, PATCH"})

    # ------------------------------------------------------------------ operations
    def _body(self, req: Request) -> tuple[dict[str, Any] | None, Response | None]:
        try:
            body = json.loads(req.body.decode("utf-8")) if req.body else None
        except (ValueError, UnicodeDecodeError):
            return None, problem(400, "MALFORMED_REQUEST", "Request body is not JSON")
        if not isinstance(body, dict):
            return None, problem(400, "MALFORMED_REQUEST", "Request body must be a JSON object")
        return body, None

    def _validate(self, body: dict[str, Any], *, creating: bool) -> list[dict[str, Any]]:
        errors = []
        for name in body:
            if name not in _FIELDS:
                errors.append({"field": name, "code": "UNKNOWN_FIELD", "message": "not a complaint field"})
            elif not creating and name not in _PATCHABLE:
                errors.append({"field": name, "code": "READ_ONLY", "message": "cannot be changed after creation"})
        if creating:
            for name, mandatory in _FIELDS.items():
                if mandatory and body.get(name) in (None, ""):
                    errors.append({"field": name, "code": "REQUIRED", "message": "is required"})
        for name in ("source_system", "source_case_id", "party_id", "channel_code", "business_code", "reason_code"):
            value = body.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > 64):
                errors.append({"field": name, "code": "INVALID", "message": "a string of at most 64 characters"})
        if "priority" in body and body["priority"] not in PRIORITIES:
            errors.append({"field": "priority", "code": "NOT_ALLOWED", "message": f"one of {', '.join(PRIORITIES)}"})
        summary = body.get("summary")
        if summary is not None and (not isinstance(summary, str) or len(summary) > 2000):
            errors.append({"field": "summary", "code": "INVALID", "message": "text of at most 2000 characters"})
        for name in ("received_at", "due_at"):
            if body.get(name) is not None and _parse(body[name]) is None:
                errors.append({"field": name, "code": "INVALID", "message": "an ISO 8601 time with offset"})
        if "sla_breached" in body and not isinstance(body["sla_breached"], bool):
            errors.append({"field": "sla_breached", "code": "INVALID", "message": "true or false"})
        return errors

    def _post(self, req: Request) -> Response:
        key = req.headers.get("idempotency-key", "").strip()
        if not key or len(key) > 255:
            return problem(400, "IDEMPOTENCY_KEY_MISSING", "Idempotency-Key header required (1-255 characters)")
        body, bad = self._body(req)
        if bad is not None or body is None:
            return bad or problem(400, "MALFORMED_REQUEST", "Request body must be a JSON object")
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        now = self.clock()
        seen = self.keys.get(key)
        if seen is not None and seen[3] > now:
            if seen[0] != digest:
                return problem(422, "IDEMPOTENCY_KEY_REUSED", "Idempotency-Key already used",
                               "the key was used with a different request body")
            rec = self.complaints[seen[2]]
            return Response.json(self._render(rec), 200, {"Idempotent-Replayed": "true",
                                                           "Location": f"/api/v1/complaints/{rec['complaint_id']}"})
        errors = self._validate(body, creating=True)
        if errors:
            return problem(422, "VALIDATION_FAILED", "Validation failed", f"{len(errors)} field(s) invalid", errors)
        if self.knobs.extra.get("party_must_exist") and body["party_id"] not in self.parties:
            return problem(422, "UNKNOWN_PARTY", "Customer unknown",
                           "the customer is not known to the bank yet; send the complaint again later",
                           [{"field": "party_id", "code": "UNKNOWN_PARTY", "message": "no such customer"}])
        rec = self._create(body, now)
        ttl = float(self.knobs.extra.get("idempotency_ttl", 86400))
        self.keys[key] = (digest, 201, rec["complaint_id"], now + ttl)
        return Response.json(self._render(rec), 201, {"Location": f"/api/v1/complaints/{rec['complaint_id']}"})

    def _create(self, body: dict[str, Any], now: float) -> dict[str, Any]:
        self._seq += 1
        cid = f"CMP{datetime.fromtimestamp(now, UTC):%Y%m%d}{self._seq:06d}"
        rec = {**{k: body.get(k) for k in _FIELDS}, "complaint_id": cid, "status": "RECEIVED", "version": 1,
               "created_at": now, "updated_at": now, "closed_at": None, "resolution": None}
        self.complaints[cid] = rec
        return rec

    def _patch(self, req: Request, rec: dict[str, Any]) -> Response:
        body, bad = self._body(req)
        if bad is not None or body is None:
            return bad or problem(400, "MALFORMED_REQUEST", "Request body must be a JSON object")
        match = req.headers.get("if-match")
        if match is not None and match.strip('"') != str(rec["version"]):
            return problem(412, "VERSION_MISMATCH", "Version mismatch",
                           f"the complaint is at version {rec['version']}")
        errors = self._validate(body, creating=False)
        if errors:
            return problem(422, "VALIDATION_FAILED", "Validation failed", f"{len(errors)} field(s) invalid", errors)
        changed = {k: v for k, v in body.items() if rec.get(k) != v}
        if changed and rec["status"] in _FINAL:   # repeating what it holds is fine; changing a final one is not
            return problem(409, "INVALID_TRANSITION", "Complaint closed", f"a {rec['status']} complaint is final")
        if changed:
            rec.update(changed, version=rec["version"] + 1, updated_at=max(self.clock(), rec["updated_at"] + 0.001))
        return Response.json(self._render(rec), 200, {"ETag": f'"{rec["version"]}"'})

    def _list(self, req: Request) -> Response:
        try:
            size = int(req.q("page_size", "50") or 50)
        except ValueError:
            size = -1
        limit = int(self.knobs.extra.get("max_page_size", 100))
        if not 1 <= size <= limit:
            return problem(422, "VALIDATION_FAILED", "Validation failed", "bad page_size",
                           [{"field": "page_size", "code": "OUT_OF_RANGE", "message": f"1 to {limit}"}])
        since_raw = req.q("updated_since")
        since = _parse(since_raw) if since_raw else None
        if since_raw and since is None:
            return problem(422, "VALIDATION_FAILED", "Validation failed", "bad updated_since",
                           [{"field": "updated_since", "code": "INVALID", "message": "an ISO 8601 time with offset"}])
        after: tuple[float, str] | None = None
        cursor = req.q("cursor")
        if cursor:
            try:
                t, cid = json.loads(base64.urlsafe_b64decode(cursor.encode()).decode())
                after = (float(t), str(cid))
            except (ValueError, TypeError):
                return problem(422, "VALIDATION_FAILED", "Validation failed", "bad cursor",
                               [{"field": "cursor", "code": "INVALID", "message": "not a cursor of this service"}])
        case = req.q("source_case_id")
        rows = sorted(self.complaints.values(), key=lambda r: (r["updated_at"], r["complaint_id"]))
        rows = [r for r in rows if (since is None or r["updated_at"] >= since)
                and (case is None or r["source_case_id"] == case)
                and (after is None or (r["updated_at"], r["complaint_id"]) > after)]
        chunk = rows[:size]
        nxt = None
        if len(rows) > size:
            last = chunk[-1]
            nxt = base64.urlsafe_b64encode(json.dumps([last["updated_at"], last["complaint_id"]]).encode()).decode()
        return Response.json({"items": [self._render(r) for r in chunk], "next_cursor": nxt})

    @staticmethod
    def _render(rec: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in rec.items() if k not in ("created_at", "updated_at", "closed_at")}
        out.update(created_at=_iso(rec["created_at"]), updated_at=_iso(rec["updated_at"]),
                   closed_at=_iso(rec["closed_at"]) if rec["closed_at"] else None)
        return out
