"""The PyPI client ``fxiaoke-python`` (0.0.3) against FxiaokeSimulator.

The client hard-codes ``https://open.fxiaoke.com`` (token URL, ``FxiaokeApi.GRAPH``, the custom-object URL), so
a URL-rewriting ``requests`` transport adapter mounted on its session sends every call to the simulator
unchanged otherwise: whatever the real client sends, the simulator must understand.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from requests.adapters import HTTPAdapter

from crmbridge.adapters.fxiaoke.simulator import FxiaokeSimulator
from crmbridge.adapters.simulator import Knobs

pytestmark = [pytest.mark.thirdparty, pytest.mark.slow]   # slow tier: an independent vendor client

fx_api = pytest.importorskip("fxiaoke.api")
fx_query = pytest.importorskip("fxiaoke.op_query")
fx_create = pytest.importorskip("fxiaoke.op_create")
fx_get = pytest.importorskip("fxiaoke.op_get")
fx_base = pytest.importorskip("fxiaoke.baseObj")


class RewriteToSimulator(HTTPAdapter):
    """Sends ``https://open.fxiaoke.com/...`` to the simulator's ``http://127.0.0.1:PORT/...``."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = urlsplit(target)
        self.seen: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        self.seen.append(parts.path)
        request.url = urlunsplit((self.target.scheme, self.target.netloc, parts.path, parts.query, parts.fragment))
        return super().send(request, *args, **kwargs)


@pytest.fixture
def client() -> Iterator[tuple[Any, FxiaokeSimulator, RewriteToSimulator]]:
    logging.getLogger("fxiaoke").setLevel(logging.WARNING)
    with FxiaokeSimulator(Knobs(records=230, extra={"contacts": 0})) as sim:
        api = fx_api.FxiaokeApi.init(app_id=sim.app_id, app_secret=sim.app_secret,
                                     permanent_code=sim.permanent_code, open_user_id=sim.ADMIN_OPEN_USER_ID,
                                     timeout=10)
        rewrite = RewriteToSimulator(sim.url)
        api._session.requests.mount("https://open.fxiaoke.com", rewrite)
        try:
            yield api, sim, rewrite
        finally:
            api._session.requests.close()


def test_token_query_with_paging_and_create(client: tuple[Any, FxiaokeSimulator, RewriteToSimulator]) -> None:
    api, sim, rewrite = client
    cursor = fx_query.queryObj(api).execute(dataObjectApiName="AccountObj", limit=100)
    ids = [row["_id"] for row in cursor]
    assert cursor.total() == 230
    assert len(ids) == len(set(ids)) == 230
    assert rewrite.seen.count("/cgi/crm/v2/data/query") == 3  # offset 0, 100, 200 from data.total/offset/limit

    made = fx_create.createObj(api).execute(object_data={"name": "第三方客户端创建", "party_id__c": "TP-1"},
                                            dataObjectApiName="AccountObj")
    assert made["errorCode"] == 0 and made["dataId"]
    got = fx_get.getObj(api).execute(objectDataId=made["dataId"], dataObjectApiName="AccountObj")
    assert got["_id"] == made["dataId"] and got["owner"] == [sim.ADMIN_OPEN_USER_ID]
    assert sim.count("AccountObj") == 231
    assert rewrite.seen.count("/cgi/corpAccessToken/get/V2") == 1  # the client caches the token


def test_filtered_query_and_describe(client: tuple[Any, FxiaokeSimulator, RewriteToSimulator]) -> None:
    api, sim, _ = client
    rows = sim.records("AccountObj")
    pivot = sorted(r["last_modified_time"] for r in rows)[100]
    top = max(r["last_modified_time"] for r in rows)
    # what airflow-provider-fxiaoke sends: BETWEEN [start_ms, end_ms] with int values
    cursor = fx_query.queryObj(api).execute(
        dataObjectApiName="AccountObj", limit=100,
        filters=[{"field_name": "last_modified_time", "operator": "BETWEEN", "field_values": [pivot, top]}],
        orders=[{"fieldName": "last_modified_time", "isAsc": True}])
    got = [r["last_modified_time"] for r in cursor]
    assert got == sorted(got) and len(got) == sum(1 for r in rows if r["last_modified_time"] >= pivot)
    # baseObj, not queryObj: the client builds the describe path from the object's endpoint name
    desc = fx_base.baseObj(api).describe(dataObjectApiName="ContactObj")
    assert "party_id__c" in desc["describe"]["fields"]


def test_custom_object_through_the_hard_coded_custom_url(
        client: tuple[Any, FxiaokeSimulator, RewriteToSimulator]) -> None:
    api, sim, rewrite = client
    made = fx_create.createObj(api).execute(object_data={"name": "自定义对象记录"},
                                            dataObjectApiName="object_party__c")
    assert made["dataId"] and "/cgi/crm/custom/v2/data/create" in rewrite.seen
    cursor = fx_query.queryObj(api).execute(dataObjectApiName="object_party__c")
    assert [r["_id"] for r in cursor] == [made["dataId"]]
