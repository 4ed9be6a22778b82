"""Low-level Fxiaoke Open API calls: envelopes, paths, credentials (docs/vendors/fxiaoke.md §2–§7).

Every call is ``POST`` JSON with the legacy body-style credentials (``corpAccessToken``, ``corpId``,
``currentOpenUserId`` next to ``data``; §2.2), the style every public client uses, plus a fresh
``thirdTraceId`` query parameter (§1; optional on the server). Each response is judged by
:func:`crmbridge.adapters.fxiaoke.errors.check_response`. This module does no retrying: the adapter base
class wraps whole hook calls in the shared retry policy.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
from pydantic import SecretStr

from crmbridge.adapters.fxiaoke.auth import CorpToken, TokenCache, token_file
from crmbridge.adapters.fxiaoke.errors import VENDOR, check_response
from crmbridge.core.errors import AuthenticationError, BadResponseError

__all__ = ["FxiaokeClient", "data_path", "is_custom_object"]

TOKEN_PATH = "/cgi/corpAccessToken/get/V2"
GET_BY_MOBILE_PATH = "/cgi/user/getByMobile"
DESCRIBE_PATH = "/cgi/crm/v2/object/describe"


def is_custom_object(obj: str) -> bool:
    """Custom objects (and only they) end in ``__c`` and use the ``/cgi/crm/custom/v2`` paths (§3)."""
    return obj.endswith("__c")


def data_path(obj: str, action: str) -> str:
    """The v2 data path of ``action`` for ``obj`` (preset ``…Obj`` or custom ``…__c``)."""
    return f"/cgi/crm/custom/v2/data/{action}" if is_custom_object(obj) else f"/cgi/crm/v2/data/{action}"


class FxiaokeClient:
    """One tenant's API calls.

    Args:
        http: the adapter's counted, gated HTTP call (``Adapter._http``).
        base_url: the tenant's gateway host, e.g. ``https://open.fxiaoke.com``.
        app_id: ``FSAID_…``.
        app_secret: resolved secret.
        permanent_code: resolved secret.
        open_user_id: operator ``FSUID_…`` (or ``None`` with ``admin_mobile``).
        admin_mobile: mobile of the CRM administrator to resolve with getByMobile once.
        token_calls_per_minute: the token endpoint limit.
        sleep: sleep for the token-endpoint rate limit.
        token_cache: the file sharing the token with the system's other processes (None: this process only).
    """

    def __init__(self, http: Callable[..., requests.Response], *, base_url: str, app_id: str,
                 app_secret: Callable[[], SecretStr], permanent_code: Callable[[], SecretStr],
                 open_user_id: str | None, admin_mobile: str | None, token_calls_per_minute: int = 10,
                 sleep: Callable[[float], None] = time.sleep, duplicate_codes: Sequence[int] = (),
                 token_cache: Path | None = None) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        self._app_id = app_id
        self._app_secret = app_secret
        self._permanent_code = permanent_code
        self._open_user_id = open_user_id
        self._admin_mobile = admin_mobile
        self._user_lock = threading.Lock()
        shared = None if token_cache is None else (
            lambda: token_file(token_cache, app_secret(), permanent_code(), base_url=self.base_url, app_id=app_id))
        self.tokens = TokenCache(self._fetch_token, calls_per_minute=token_calls_per_minute, sleep=sleep,
                                 file=shared)
        self._last_token = threading.local()
        self._last = threading.local()
        self.duplicate_codes = frozenset(duplicate_codes)

    # ------------------------------------------------------------------ transport
    def _post(self, path: str, body: Mapping[str, Any], *, record_level: bool = False,
              token_endpoint: bool = False, sent: Mapping[str, Any] | None = None) -> dict[str, Any]:
        ours = str(uuid.uuid4())
        resp = self._http("POST", f"{self.base_url}{path}", json=body, params={"thirdTraceId": ours},
                          headers={"Content-Type": "application/json"})
        self._last.headers = dict(resp.headers)
        self._last.received = time.time()
        doc = check_response(resp.status_code, resp.content, where=path, record_level=record_level,
                             token_endpoint=token_endpoint, headers=resp.headers,
                             duplicate_codes=self.duplicate_codes, sent=sent)
        trace = doc.get("traceId")
        # the vendor's trace id names the request in its logs; our thirdTraceId when the answer carries none
        self._last.trace = trace if isinstance(trace, str) and trace.strip() else ours
        return doc

    def last_trace_id(self) -> str | None:
        """The trace id of this thread's last successful call (Fxiaoke's ``traceId``, else our ``thirdTraceId``)."""
        return getattr(self._last, "trace", None)

    def last_headers(self) -> tuple[dict[str, str], float | None]:
        """The headers of this thread's last response and when it arrived (epoch seconds), for doctor."""
        return dict(getattr(self._last, "headers", {})), getattr(self._last, "received", None)

    def _fetch_token(self) -> CorpToken:
        body = {"appId": self._app_id, "appSecret": self._app_secret().get_secret_value(),
                "permanentCode": self._permanent_code().get_secret_value()}
        doc = self._post(TOKEN_PATH, body, token_endpoint=True)
        token, corp_id, expires = doc.get("corpAccessToken"), doc.get("corpId"), doc.get("expiresIn")
        if not isinstance(token, str) or not token or not isinstance(corp_id, str):
            raise BadResponseError("token response lacks corpAccessToken/corpId", vendor=VENDOR,
                                   where=TOKEN_PATH)
        if not isinstance(expires, int | float) or isinstance(expires, bool) or expires <= 0:
            expires = 6600  # the documented same-token window; safe when expiresIn is missing
        return CorpToken(SecretStr(token), corp_id, time.monotonic(), float(expires))

    def token(self) -> CorpToken:
        tok = self.tokens.get()
        self._last_token.value = tok
        return tok

    def invalidate_token(self) -> None:
        """Drop the token this thread last used (the one the server just rejected)."""
        self.tokens.invalidate(getattr(self._last_token, "value", None))

    def _auth(self) -> dict[str, Any]:
        tok = self.token()
        return {"corpAccessToken": tok.value.get_secret_value(), "corpId": tok.corp_id}

    def open_user_id(self) -> str:
        """The operator's ``FSUID_…``: configured, or resolved once from ``admin_mobile`` (§2.4)."""
        with self._user_lock:
            if self._open_user_id is None:
                self._open_user_id = self._resolve_mobile()
            return self._open_user_id

    def _resolve_mobile(self) -> str:
        doc = self._post(GET_BY_MOBILE_PATH, {**self._auth(), "mobile": self._admin_mobile})
        emps = doc.get("empList")
        if not isinstance(emps, list):
            raise BadResponseError("getByMobile response lacks empList", vendor=VENDOR,
                                   where=GET_BY_MOBILE_PATH)
        ids = [e.get("openUserId") for e in emps if isinstance(e, Mapping) and e.get("openUserId")]
        if not ids:
            # the mobile is personal data: the message never repeats it
            raise AuthenticationError("no Fxiaoke employee has the configured admin_mobile", vendor=VENDOR,
                                      where="fxiaoke.admin_mobile")
        return str(ids[0])

    def call(self, path: str, data: Mapping[str, Any] | None = None, *, record_level: bool = False,
             sent: Mapping[str, Any] | None = None, **top: Any) -> dict[str, Any]:
        """A business call with body-style credentials; ``top`` adds top-level keys (trigger flags...)."""
        user = self.open_user_id()
        body: dict[str, Any] = {**self._auth(), "currentOpenUserId": user, **top}
        if data is not None:
            body["data"] = data
        return self._post(path, body, record_level=record_level, sent=sent)

    # ------------------------------------------------------------------ object data
    def query(self, obj: str, search_query_info: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One page of ``data/query`` (counting off: crmbridge pages by short page, never by total)."""
        doc = self.call(data_path(obj, "query"), {"dataObjectApiName": obj, "find_explicit_total_num": False,
                                                  "search_query_info": search_query_info})
        data = doc.get("data")
        rows = data.get("dataList") if isinstance(data, Mapping) else None
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) and "_id" in r for r in rows):
            raise BadResponseError("query response lacks data.dataList of records", vendor=VENDOR,
                                   where=data_path(obj, "query"))
        return [dict(r) for r in rows]

    def get(self, obj: str, object_id: str) -> dict[str, Any]:
        doc = self.call(data_path(obj, "get"), {"dataObjectApiName": obj, "objectDataId": object_id})
        rec = doc.get("data")
        if not isinstance(rec, Mapping) or "_id" not in rec:
            raise BadResponseError("get response lacks the record in data", vendor=VENDOR,
                                   where=data_path(obj, "get"))
        return dict(rec)

    def create(self, obj: str, fields: Mapping[str, Any], *, trigger_workflow: bool,
               trigger_approval_flow: bool, duplicate_search: bool = False) -> str:
        """Create one record. ``duplicate_search``: whether the tenant's duplicate rules (查重规则) judge it:
        ``optionInfo.isDuplicateSearch`` (§5), and for custom objects also the top-level ``checkDuplicateSearch``
        their create page documents."""
        top: dict[str, Any] = {"checkDuplicateSearch": duplicate_search} if is_custom_object(obj) else {}
        doc = self.call(data_path(obj, "create"),
                        {"object_data": {**fields, "dataObjectApiName": obj},
                         "optionInfo": {"isDuplicateSearch": duplicate_search, "useValidationRule": True}},
                        record_level=True, sent=fields, triggerWorkFlow=trigger_workflow,
                        triggerApprovalFlow=trigger_approval_flow, hasSpecifyTime=False,
                        hasSpecifyCreatedBy=False, **top)
        data = doc.get("data")
        new_id = doc.get("dataId") or (data.get("_id") if isinstance(data, Mapping) else None)
        if not isinstance(new_id, str) or not new_id:
            raise BadResponseError("create response lacks dataId", vendor=VENDOR, where=data_path(obj, "create"))
        return new_id

    def update(self, obj: str, object_id: str, fields: Mapping[str, Any], *, trigger_workflow: bool,
               trigger_approval_flow: bool, duplicate_search: bool = False) -> None:
        self.call(data_path(obj, "update"),
                  {"object_data": {**fields, "_id": object_id, "dataObjectApiName": obj},
                   "optionInfo": {"isDuplicateSearch": duplicate_search, "useValidationRule": True}},
                  record_level=True, sent=fields, triggerWorkFlow=trigger_workflow,
                  triggerApprovalFlow=trigger_approval_flow)

    def change_owner(self, obj: str, object_id: str, owner: Sequence[str]) -> None:
        # capital "Data" and a list ownerId (docs/vendors/fxiaoke.md §6; the string form "[1000]" is the other variant)
        self.call(data_path(obj, "changeOwner"),
                  {"dataObjectApiName": obj, "Data": [{"objectDataId": object_id, "ownerId": list(owner)}]},
                  record_level=True)

    def invalidate(self, obj: str, object_id: str) -> None:
        self.call(data_path(obj, "invalid"), {"dataObjectApiName": obj, "object_data_id": object_id},
                  record_level=True)

    def delete(self, obj: str, object_ids: Sequence[str]) -> None:
        self.call(data_path(obj, "delete"), {"dataObjectApiName": obj, "idList": list(object_ids)},
                  record_level=True)

    def describe(self, obj: str) -> dict[str, Any]:
        # the docs nest apiName in data; every public client sends it top-level. The simulator takes both;
        # send both so either gateway reading works (unverified which the live service prefers).
        doc = self.call(DESCRIBE_PATH, {"apiName": obj, "includeDetail": False}, apiName=obj,
                        includeDetail=False)
        data = doc.get("data")
        desc = data.get("describe") if isinstance(data, Mapping) else None
        if not isinstance(desc, Mapping) or not isinstance(desc.get("fields"), Mapping):
            raise BadResponseError("describe response lacks data.describe.fields", vendor=VENDOR,
                                   where=DESCRIBE_PATH)
        return dict(desc)
