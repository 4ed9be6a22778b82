"""Gateway replies in front of Fxiaoke (issue 13): a load balancer's 502/503/504 with an HTML, empty or plain-text
body is transient (retried, Retry-After honoured) on every operation, the token endpoint included (never
"credentials refused"); an empty, truncated or HTML HTTP 200 is a BadResponseError that says which. Nothing the
gateway answers is applied, so a retried create lands exactly once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crmbridge.adapters.base import WriteItem, WriteStatus
from crmbridge.adapters.fxiaoke import FxiaokeAdapter, FxiaokeConfig
from crmbridge.adapters.fxiaoke.simulator import FxiaokeSimulator
from crmbridge.adapters.simulator import Knobs
from crmbridge.core.errors import AuthenticationError, BadResponseError, TransientServerError
from crmbridge.core.retry import RetryPolicy

TOKEN = "/cgi/corpAccessToken/get/V2"
QUERY = "/cgi/crm/v2/data/query"


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FXG_SECRET", FxiaokeSimulator.APP_SECRET)
    monkeypatch.setenv("FXG_CODE", FxiaokeSimulator.PERMANENT_CODE)


@pytest.fixture
def sim() -> Iterator[FxiaokeSimulator]:
    with FxiaokeSimulator(Knobs(records=20, extra={"contacts": 0})) as s:
        yield s


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make(sim: FxiaokeSimulator, sleeps: Sleeps | None = None, attempts: int = 4) -> FxiaokeAdapter:
    cfg = FxiaokeConfig(base_url=sim.url, app_id=sim.app_id, app_secret="env:FXG_SECRET",  # type: ignore[arg-type]
                        permanent_code="env:FXG_CODE", open_user_id=sim.ADMIN_OPEN_USER_ID, page_size=7,
                        rate_per_second=None, timeout=5.0,
                        retry=RetryPolicy(max_attempts=attempts, initial_wait=0.001, max_wait=30.0, jitter=0.0))
    return FxiaokeAdapter(cfg, sleep=sleeps if sleeps is not None else Sleeps())


def everyone(sim: FxiaokeSimulator) -> set[str]:
    return {r["_id"] for r in sim.records("AccountObj")}


@pytest.mark.parametrize("kind", ["502_html", "503_empty", "504_text"])
def test_list_survives_gateway_errors_mid_run(sim: FxiaokeSimulator, kind: str) -> None:
    adapter = make(sim)
    ids = []
    for n, page in enumerate(adapter.extract("AccountObj")):
        ids += [r.external_id for r in page.records]
        if n == 0:
            sim.inject_gateway(kind, times=2, path_suffix=QUERY)
    assert set(ids) == everyone(sim) and len(ids) == len(everyone(sim))
    assert adapter.stats.retries == 2 and adapter.stats.by_status[kind[:3]] == 2


def test_retry_after_from_the_gateway_is_honoured(sim: FxiaokeSimulator) -> None:
    sleeps = Sleeps()
    adapter = make(sim, sleeps)
    adapter.get("AccountObj", "warm-up")
    sim.inject_gateway("503_empty", path_suffix=QUERY, retry_after="7")
    assert len([r for p in adapter.extract("AccountObj") for r in p.records]) == 20
    assert sleeps == [7.0]


@pytest.mark.parametrize("kind", ["502_html", "503_empty", "504_text"])
def test_get_and_find_retry_gateway_errors(sim: FxiaokeSimulator, kind: str) -> None:
    adapter = make(sim)
    row = sim.records("AccountObj")[0]
    sim.inject_gateway(kind, path_suffix="/cgi/crm/v2/data/get")
    got = adapter.get("AccountObj", row["_id"])
    assert got is not None and got.external_id == row["_id"]
    sim.inject_gateway(kind, path_suffix=QUERY)
    found = adapter.find("AccountObj", "party_id__c", row["party_id__c"])
    assert found is not None and found.external_id == row["_id"]


@pytest.mark.parametrize("kind", ["502_html", "503_empty", "504_text"])
def test_create_and_update_retry_gateway_errors_and_land_once(sim: FxiaokeSimulator, kind: str) -> None:
    adapter = make(sim)
    adapter.get("AccountObj", "warm-up")
    sim.inject_gateway(kind, path_suffix="/cgi/crm/v2/data/create")
    res = adapter.write("AccountObj", [WriteItem(key="g-1", payload={"name": "网关客户"}, known_new=True)])
    assert res[0].status is WriteStatus.CREATED
    assert [r["_id"] for r in sim.records("AccountObj") if r.get("party_id__c") == "g-1"] == [res[0].external_id]
    sim.inject_gateway(kind, path_suffix="/cgi/crm/v2/data/update")
    upd = adapter.write("AccountObj", [WriteItem(key="g-1", payload={"name": "网关客户二"},
                                                 external_id=res[0].external_id)])
    assert upd[0].status is WriteStatus.UPDATED


@pytest.mark.parametrize("kind", ["502_html", "503_empty", "504_text"])
def test_a_gateway_error_on_the_token_endpoint_is_transient_not_refused_credentials(
        sim: FxiaokeSimulator, kind: str) -> None:
    adapter = make(sim)
    sim.inject_gateway(kind, times=2, path_suffix=TOKEN)
    assert adapter.get("AccountObj", sim.records("AccountObj")[0]["_id"]) is not None
    # persistent: the run stops on a transient error (system unreachable), never on AuthenticationError
    stuck = make(sim, attempts=2)
    sim.inject_gateway(kind, times=2, path_suffix=TOKEN)
    with pytest.raises(TransientServerError) as info:
        stuck.get("AccountObj", "x")
    assert not isinstance(info.value, AuthenticationError)
    assert f"HTTP {kind[:3]} from the token endpoint gateway" in str(info.value)


@pytest.mark.parametrize(("kind", "said"), [("200_empty", "an empty body"),
                                            ("200_truncated", "truncated or malformed JSON"),
                                            ("200_html", "an HTML page")])
@pytest.mark.parametrize("path", [QUERY, "/cgi/crm/v2/data/get", "/cgi/crm/v2/data/create", TOKEN])
def test_an_unreadable_200_is_a_bad_response_that_says_which(sim: FxiaokeSimulator, kind: str, said: str,
                                                              path: str) -> None:
    adapter = make(sim)
    if path != TOKEN:
        adapter.get("AccountObj", "warm-up")
    sim.inject_gateway(kind, path_suffix=path)
    if path == "/cgi/crm/v2/data/create":
        # a write's unreadable answer is that record's failure (the create may have been applied: "bad_response"
        # keeps its write intent pending, so it is looked up before it is written again), not the run's
        (result,) = adapter.write("AccountObj", [WriteItem(key="g-bad", payload={"name": "坏回应"}, known_new=True)])
        assert result.status is WriteStatus.FAILED and result.error is not None
        assert result.error.code == "bad_response"
        text = str(result.error)
    else:
        with pytest.raises(BadResponseError) as info:
            if path == QUERY:
                list(adapter.extract("AccountObj"))
            else:
                adapter.get("AccountObj", "x")
        text = str(info.value)
    assert "not a Fxiaoke JSON envelope" in text and said in text and path in text
    assert ("token endpoint" in text) is (path == TOKEN)
    assert not any(r.get("party_id__c") == "g-bad" for r in sim.records("AccountObj"))  # nothing applied
