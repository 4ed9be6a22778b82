"""The "memory" system: a small generic JSON-over-HTTP record store, served on loopback.

It exists to exercise the adapter base class and to prove the contract suite on something simple. The
wire shape is that of a plain REST CRM:

=========================================================== ===================================================
``POST /token``                                              ``{client_id, client_secret}`` → ``{access_token,
                                                             token_type, expires_in}``; 401 ``invalid_client``
``GET /records/{object}?since=&cursor=&limit=``              keyset pages ascending by ``(modified_at, id)``:
                                                             ``{records: [...], next_cursor}``
``GET /records/{object}?key_field=F&key=K``                  ``{records: [...]}`` (records whose ``F`` is ``K``)
``GET /records/{object}/{id}``                               one record, or 404 ``not_found``
``POST /records/{object}/upsert``                            ``{key_field, items: [{id?, fields, expected_version?}]}``
                                                             (≤ 50 items) → ``{results: [{status, id, version,
                                                             modified_at, error?}]}`` per item, in order
``DELETE /records/{object}/{id}``                            204, or 404 ``not_found``
``GET /deleted/{object}?since=&cursor=&limit=``              tombstones ``{records: [{id, deleted_at}], next_cursor}``
=========================================================== ===================================================

Every ``/records`` and ``/deleted`` call needs ``Authorization: Bearer <token>``; an expired token gives
401 ``token_expired``, an unknown one 401 ``invalid_token``. Errors are ``{"error": {"code", "message"},
"request_id"}``; throttling is 429 with ``Retry-After``; server errors are 503.

A record is its fields plus the system fields ``id``, ``version`` (an integer that grows with each change)
and ``modified_at`` (ISO-8601 UTC with microseconds).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import random
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from crmbridge.adapters.simulator import Fault, Knobs, Request, Response, Simulator

__all__ = ["DEFAULT_CLIENT_ID", "DEFAULT_CLIENT_SECRET", "MAX_BATCH", "MemorySimulator"]

DEFAULT_CLIENT_ID = "crm-client"
DEFAULT_CLIENT_SECRET = "crm-secret"  # noqa: S105 - the simulator's documented demo credential
MAX_BATCH = 50
MAX_LIMIT = 200
DEFAULT_LIMIT = 100
SYSTEM_FIELDS = ("id", "version", "modified_at")
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_ts(value: str) -> datetime:
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    rid = secrets.token_hex(6)
    return Response.json({"error": {"code": code, "message": message}, "request_id": rid}, status,
                         {"X-Request-Id": rid, **(headers or {})})


class MemorySimulator(Simulator):
    """The memory record store.

    Knobs used: ``seed``, ``records`` (seeded into the first object), ``token_lifetime`` (seconds, default
    3600), ``rate_limit``/``concurrency_limit`` (429), and ``extra``: ``objects`` (default
    ``["Contact", "Account"]``), ``client_id``/``client_secret``, ``retry_after`` (seconds sent with 429,
    default 1), ``required`` (fields every upserted record must have, default ``[]``).

    Test helpers (direct access, no HTTP): :meth:`seed`, :meth:`count`, :meth:`ids`, :meth:`record`,
    :meth:`records`, :meth:`expire_tokens`; ``throttled`` counts 429 answers and ``peak_inflight`` the
    most requests seen in progress at once.
    """

    vendor = "memory"

    def __init__(self, knobs: Knobs | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(knobs, host=host, port=port)
        extra = self.knobs.extra
        self.objects: list[str] = list(extra.get("objects", ["Contact", "Account"]))
        self.client_id: str = extra.get("client_id", DEFAULT_CLIENT_ID)
        self.client_secret: str = extra.get("client_secret", DEFAULT_CLIENT_SECRET)
        self.retry_after: float = float(extra.get("retry_after", 1))
        self.required: list[str] = list(extra.get("required", []))
        self.store: dict[str, dict[str, dict[str, Any]]] = {o: {} for o in self.objects}
        self.tombstones: dict[str, dict[str, datetime]] = {o: {} for o in self.objects}
        self.tokens: dict[str, float] = {}
        self.tokens_issued = 0
        self.throttled = 0
        self.peak_inflight = 0
        self._ids = itertools.count(1)
        self._last_ts = datetime.min.replace(tzinfo=UTC)
        self.seed(self.objects[0], self.knobs.records)

    # ---------------------------------------------------------------- direct access for tests
    def seed(self, obj: str, n: int) -> None:
        """Replace ``obj``'s records with ``n`` deterministic ones (modification times spread over 2024)."""
        rng = random.Random(f"{self.knobs.seed}:{obj}")
        with self.lock:
            self.store[obj] = {}
            self.tombstones[obj] = {}
            for i in range(n):
                rid = self._new_id(obj)
                ts = _EPOCH + timedelta(days=i // 4, minutes=rng.randrange(0, 1440), microseconds=i)
                self.store[obj][rid] = {
                    "id": rid, "version": 1, "modified_at": ts,
                    "external_key": f"seed-{i:06d}", "name": f"Customer {i:06d}",
                    "email": f"c{i:06d}@example.com", "tier": rng.choice(["gold", "silver", "bronze"]),
                }

    def count(self, obj: str) -> int:
        with self.lock:
            return len(self.store.get(obj, {}))

    def ids(self, obj: str) -> set[str]:
        with self.lock:
            return set(self.store.get(obj, {}))

    def record(self, obj: str, rid: str) -> dict[str, Any] | None:
        with self.lock:
            rec = self.store.get(obj, {}).get(rid)
            return None if rec is None else self._render(rec)

    def records(self, obj: str) -> list[dict[str, Any]]:
        with self.lock:
            return [self._render(r) for r in self.store.get(obj, {}).values()]

    def expire_tokens(self) -> None:
        """Expire every access token issued so far (the next call with one gets 401 ``token_expired``)."""
        with self.lock:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    def banner(self) -> list[str]:
        return [
            f"memory record store serving {self.url}",
            f"  token:   POST {self.url}/token  (client_id={self.client_id})",
            f"  objects: {', '.join(f'{self.url}/records/{o}' for o in self.objects)}",
            f"  seeded {self.count(self.objects[0])} {self.objects[0]} records (seed {self.knobs.seed})",
        ]

    # ---------------------------------------------------------------- vendor hooks
    def fault_response(self, fault: Fault, req: Request) -> Response:
        if fault is Fault.THROTTLE:
            with self.lock:
                self.throttled += 1
            return _error(429, "rate_limited", "too many requests",
                          {"Retry-After": f"{self.retry_after:g}"})
        if fault is Fault.TOKEN_EXPIRED:
            if req.path.rstrip("/") == "/token":
                return self.handle(req)  # only calls that carry a token can be told it expired
            return _error(401, "token_expired", "access token expired")
        return _error(503, "unavailable", "service temporarily unavailable")

    def handle(self, req: Request) -> Response:
        with self.lock:
            self.peak_inflight = max(self.peak_inflight, self._inflight)
        parts = [p for p in req.path.split("/") if p]
        if parts == ["token"] and req.method == "POST":
            return self._token(req)
        if len(parts) < 2 or parts[0] not in ("records", "deleted"):
            return _error(404, "no_route", f"no route {req.method} {req.path}")
        denied = self._check_token(req)
        if denied is not None:
            return denied
        obj = parts[1]
        if obj not in self.store:
            return _error(404, "unknown_object", f"unknown object {obj!r}")
        if parts[0] == "deleted":
            return self._list_deleted(req, obj) if len(parts) == 2 and req.method == "GET" else \
                _error(405, "method_not_allowed", "method not allowed")
        if len(parts) == 2 and req.method == "GET":
            return self._find(req, obj) if req.q("key_field") is not None else self._list(req, obj)
        if len(parts) == 3 and parts[2] == "upsert" and req.method == "POST":
            return self._upsert(req, obj)
        if len(parts) == 3 and req.method == "GET":
            rec = self.record(obj, parts[2])
            return _error(404, "not_found", "no such record") if rec is None else Response.json(rec)
        if len(parts) == 3 and req.method == "DELETE":
            return self._delete(obj, parts[2])
        return _error(405, "method_not_allowed", f"{req.method} not allowed on {req.path}")

    # ---------------------------------------------------------------- endpoints
    def _token(self, req: Request) -> Response:
        try:
            body = req.json() or {}
        except ValueError:
            return _error(400, "invalid_request", "body must be JSON")
        if body.get("client_id") != self.client_id or body.get("client_secret") != self.client_secret:
            return _error(401, "invalid_client", "client authentication failed")
        lifetime = self.knobs.token_lifetime if self.knobs.token_lifetime is not None else 3600.0
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.monotonic() + lifetime
            self.tokens_issued += 1
        return Response.json({"access_token": token, "token_type": "Bearer", "expires_in": lifetime})

    def _check_token(self, req: Request) -> Response | None:
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _error(401, "invalid_token", "bearer token required")
        with self.lock:
            expiry = self.tokens.get(token)
        if expiry is None:
            return _error(401, "invalid_token", "unknown access token")
        if time.monotonic() >= expiry:
            return _error(401, "token_expired", "access token expired")
        return None

    def _page_args(self, req: Request) -> tuple[datetime | None, tuple[datetime, str] | None, int] | Response:
        try:
            since = _parse_ts(req.q("since")) if req.q("since") else None
        except ValueError:
            return _error(400, "invalid_since", "since must be an ISO-8601 timestamp")
        cursor = None
        if req.q("cursor"):
            try:
                ts, _, rid = base64.urlsafe_b64decode(req.q("cursor", "")).decode().partition("|")
                cursor = (_parse_ts(ts), rid)
            except (ValueError, binascii.Error, UnicodeDecodeError):
                return _error(400, "invalid_cursor", "cursor is not one this server issued")
        try:
            limit = int(req.q("limit") or DEFAULT_LIMIT)
        except ValueError:
            return _error(400, "invalid_limit", "limit must be an integer")
        if not 1 <= limit <= MAX_LIMIT:
            return _error(400, "invalid_limit", f"limit must be between 1 and {MAX_LIMIT}")
        return since, cursor, limit

    @staticmethod
    def _cursor(ts: datetime, rid: str) -> str:
        return base64.urlsafe_b64encode(f"{_iso(ts)}|{rid}".encode()).decode()

    def _list(self, req: Request, obj: str) -> Response:
        args = self._page_args(req)
        if isinstance(args, Response):
            return args
        since, cursor, limit = args
        with self.lock:
            rows = sorted(self.store[obj].values(), key=lambda r: (r["modified_at"], r["id"]))
            rows = [r for r in rows if (since is None or r["modified_at"] >= since)
                    and (cursor is None or (r["modified_at"], r["id"]) > cursor)]
            page = rows[:limit]
            out = [self._render(r) for r in page]
        nxt = self._cursor(page[-1]["modified_at"], page[-1]["id"]) if len(rows) > limit else None
        return Response.json({"records": out, "next_cursor": nxt})

    def _list_deleted(self, req: Request, obj: str) -> Response:
        args = self._page_args(req)
        if isinstance(args, Response):
            return args
        since, cursor, limit = args
        with self.lock:
            rows = sorted(((ts, rid) for rid, ts in self.tombstones[obj].items()))
        rows = [r for r in rows if (since is None or r[0] >= since) and (cursor is None or r > cursor)]
        page = rows[:limit]
        nxt = self._cursor(*page[-1]) if len(rows) > limit else None
        return Response.json({"records": [{"id": rid, "deleted_at": _iso(ts)} for ts, rid in page],
                              "next_cursor": nxt})

    def _find(self, req: Request, obj: str) -> Response:
        field, key = req.q("key_field", ""), req.q("key")
        if not field or key is None or field in SYSTEM_FIELDS:
            return _error(400, "invalid_key_field", "key_field and key are required")
        with self.lock:
            out = [self._render(r) for r in self.store[obj].values() if str(r.get(field)) == key]
        return Response.json({"records": out})

    def _upsert(self, req: Request, obj: str) -> Response:
        try:
            body = req.json()
        except ValueError:
            return _error(400, "invalid_json", "body must be JSON")
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            return _error(400, "invalid_body", "body must be {key_field, items: [...]}")
        items, key_field = body["items"], body.get("key_field")
        if len(items) > MAX_BATCH:
            return _error(400, "batch_too_large", f"at most {MAX_BATCH} items per upsert, got {len(items)}")
        if key_field is not None and (not isinstance(key_field, str) or key_field in SYSTEM_FIELDS):
            return _error(400, "invalid_key_field", "key_field must name a non-system field")
        with self.lock:
            return Response.json({"results": [self._upsert_one(obj, key_field, it) for it in items]})

    def _upsert_one(self, obj: str, key_field: str | None, item: Any) -> dict[str, Any]:
        def fail(code: str, message: str, field: str | None = None) -> dict[str, Any]:
            return {"status": "error", "error": {"code": code, "message": message, "field": field}}

        if not isinstance(item, dict) or not isinstance(item.get("fields"), dict):
            return fail("invalid_item", "item must be {id?, fields, expected_version?}")
        fields: dict[str, Any] = item["fields"]
        for name, value in fields.items():
            if name in SYSTEM_FIELDS:
                return fail("read_only_field", f"{name} is read-only", name)
            if isinstance(value, dict | list):
                return fail("invalid_value", "values must be scalars", name)
        missing = [f for f in self.required if fields.get(f) in (None, "")]
        if missing:
            return fail("required_field_missing", f"{missing[0]} is required", missing[0])
        table = self.store[obj]
        current: dict[str, Any] | None = None
        if item.get("id") is not None:
            current = table.get(str(item["id"]))
            if current is None:
                return fail("not_found", "no record with that id")
        elif key_field is not None:
            key = fields.get(key_field)
            if key in (None, ""):
                return fail("key_missing", f"key field {key_field} is empty", key_field)
            current = next((r for r in table.values() if r.get(key_field) == key), None)
        expected = item.get("expected_version")
        if current is None:
            if expected is not None:
                return {"status": "conflict", "version": None,
                        "error": {"code": "version_conflict", "message": "record does not exist"}}
            rid = self._new_id(obj)
            rec = {**fields, "id": rid, "version": 1, "modified_at": self._now()}
            table[rid] = rec
            self.tombstones[obj].pop(rid, None)
            return {"status": "created", **self._sys(rec)}
        if expected is not None and str(expected) != str(current["version"]):
            return {"status": "conflict", "id": current["id"], "version": str(current["version"]),
                    "error": {"code": "version_conflict", "message": "record changed since that version"}}
        if all(current.get(k) == v for k, v in fields.items()):
            return {"status": "unchanged", **self._sys(current)}
        current.update(fields)
        current["version"] += 1
        current["modified_at"] = self._now()
        return {"status": "updated", **self._sys(current)}

    def _delete(self, obj: str, rid: str) -> Response:
        with self.lock:
            if self.store[obj].pop(rid, None) is None:
                return _error(404, "not_found", "no such record")
            self.tombstones[obj][rid] = self._now()
        return Response.empty(204)

    # ---------------------------------------------------------------- helpers
    def _new_id(self, obj: str) -> str:
        return f"{obj[:3].lower()}-{next(self._ids):07d}"

    def _now(self) -> datetime:
        """Strictly increasing UTC time (two writes never share a timestamp)."""
        now = datetime.now(UTC)
        if now <= self._last_ts:
            now = self._last_ts + timedelta(microseconds=1)
        self._last_ts = now
        return now

    @staticmethod
    def _sys(rec: dict[str, Any]) -> dict[str, Any]:
        return {"id": rec["id"], "version": str(rec["version"]), "modified_at": _iso(rec["modified_at"])}

    @staticmethod
    def _render(rec: dict[str, Any]) -> dict[str, Any]:
        return {**rec, "version": str(rec["version"]), "modified_at": _iso(rec["modified_at"])}
