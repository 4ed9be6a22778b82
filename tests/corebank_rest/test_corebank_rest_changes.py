"""The change list against cores that break the convenient assumptions (issue 13, "changed customers skipped"):
a modified-since filter that EXCLUDES its boundary second, more records in one second than a page holds, and a
record edited while it is read (it moves to the end of a modification-ordered list). With the DEFAULT
configuration (``since_boundary: unknown``, ``resume: keyset``) no customer may be lost, with offset paging
(Fineract-shaped core with a change filter) and page paging (the second bank)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from corebank_rest_support import fineract_config, openbank_config, set_env

from crmbridge.adapters.corebank_rest import CorebankRestAdapter, CorebankRestConfig
from crmbridge.adapters.corebank_rest.simulator import CorebankRestSimulator
from crmbridge.adapters.simulator import Knobs
from crmbridge.core.errors import BadResponseError

N = 40


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch)


def changes_config(sim: CorebankRestSimulator, page_size: int = 10, **resource: Any) -> CorebankRestConfig:
    """A Fineract-shaped core with a modification-time filter, read with the adapter's defaults for the change
    list (nothing about the boundary is configured)."""
    if sim.dialect == "openbank":
        cfg = openbank_config(sim, style=sim.knobs.extra.get("style", "page"), page_size=page_size)
        name = "Customer"
    else:
        cfg = fineract_config(sim, page_size=page_size)
        name = "Client"
        res = cfg.resources[name]
        res.params = {"orderBy": "lastModifiedDate", "sortOrder": "ASC"}
        res.modified_since_param = "modifiedSince"
        res.modified_since_format = "iso"
        res.paths.modified = "lastModifiedDate"
    for k, v in resource.items():
        setattr(cfg.resources[name], k, v)
    return cfg


def read(adapter: CorebankRestAdapter, obj: str, since: datetime | None = None) -> list[str]:
    return [r.external_id for p in adapter.extract(obj, since=since) for r in p.records]


DIALECTS = [pytest.param("fineract", id="offset-paging"), pytest.param("openbank", id="page-paging"),
            pytest.param("openbank/next_link", id="link-paging")]


def make_sim(dialect: str, **extra: Any) -> CorebankRestSimulator:
    """A simulator; ``openbank/next_link`` is the second bank read by following its next links."""
    dialect, _, style = dialect.partition("/")
    return CorebankRestSimulator(Knobs(seed=4, records=N, extra={"dialect": dialect, "change_filter": True,
                                                                  "style": style or "page", **extra}))


def obj_of(sim: CorebankRestSimulator) -> str:
    return "Customer" if sim.dialect == "openbank" else "Client"


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("boundary", ["inclusive", "exclusive"])
def test_records_at_the_since_second_come_back_under_either_boundary(dialect: str, boundary: str) -> None:
    """Today's code asked modified-since = the watermark: an exclusive core dropped every record of that second."""
    with make_sim(dialect, since_boundary=boundary, same_second=3) as sim:
        adapter = CorebankRestAdapter(changes_config(sim))
        newest = max(sim.stamp(i) for i in sim.ids())
        at_newest = {i for i in sim.ids() if sim.stamp(i) == newest}
        assert len(at_newest) == 3
        got = read(adapter, obj_of(sim), since=newest)
        assert at_newest <= set(got), f"lost at the boundary second: {sorted(at_newest - set(got))}"
        assert len(got) == len(set(got)), "a record yielded twice in one read"


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("boundary", ["inclusive", "exclusive"])
def test_one_second_holding_more_records_than_a_page(dialect: str, boundary: str) -> None:
    with make_sim(dialect, since_boundary=boundary, same_second=25) as sim:
        adapter = CorebankRestAdapter(changes_config(sim, page_size=10))
        newest = max(sim.stamp(i) for i in sim.ids())
        at_newest = {i for i in sim.ids() if sim.stamp(i) == newest}
        assert len(at_newest) == 25
        got = read(adapter, obj_of(sim), since=newest)
        assert set(got) == at_newest and len(got) == 25
        full = read(adapter, obj_of(sim))
        assert set(full) == sim.ids() and len(full) == N


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_edit_during_the_read_shifts_no_record_out_of_reach(dialect: str) -> None:
    """Offset/page paging over a modification-ordered list: the record edited after page 1 moves to the end and
    every later record moves up one place, so page 2 began one record too far."""
    with make_sim(dialect, edit_during_read=3) as sim:
        adapter = CorebankRestAdapter(changes_config(sim))
        got = read(adapter, obj_of(sim))
        assert set(got) == sim.ids(), f"lost: {sorted(sim.ids() - set(got))}"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_edit_inside_a_crowded_second_loses_nothing(dialect: str) -> None:
    with make_sim(dialect, since_boundary="exclusive", same_second=25, edit_during_read=8) as sim:
        adapter = CorebankRestAdapter(changes_config(sim))
        got = read(adapter, obj_of(sim))
        assert set(got) == sim.ids(), f"lost: {sorted(sim.ids() - set(got))}"


def test_a_list_not_sorted_by_modification_time_is_refused_in_keyset_mode() -> None:
    with make_sim("fineract") as sim:
        cfg = changes_config(sim)
        cfg.resources["Client"].params = {"orderBy": "id", "sortOrder": "ASC"}
        with pytest.raises(BadResponseError, match=r"not sorted by 'lastModifiedDate'.*resume: position"):
            read(CorebankRestAdapter(cfg), "Client")
        cfg.resources["Client"].resume = "position"
        assert set(read(CorebankRestAdapter(cfg), "Client")) == sim.ids()


@pytest.mark.parametrize("boundary", ["inclusive", "exclusive"])
def test_configured_boundary_asks_from_the_watermark_or_one_step_before(boundary: str) -> None:
    with make_sim("openbank", since_boundary=boundary, same_second=3) as sim:
        newest = max(sim.stamp(i) for i in sim.ids())
        at_newest = {i for i in sim.ids() if sim.stamp(i) == newest}
        right = CorebankRestAdapter(changes_config(sim, since_boundary=boundary))
        assert set(read(right, "Customer", since=newest)) == at_newest
        if boundary == "exclusive":  # configured wrongly as inclusive, an exclusive core loses the second
            wrong = CorebankRestAdapter(changes_config(sim, since_boundary="inclusive"))
            assert read(wrong, "Customer", since=newest) == []


def test_pinned_upper_bound_keeps_a_read_to_what_existed_when_it_began() -> None:
    with make_sim("openbank", edit_during_read=2) as sim:
        adapter = CorebankRestAdapter(changes_config(sim, until_param="updatedUntil"))
        got = read(adapter, "Customer")
        assert set(got) == sim.ids() and sim.edit_during_read == 0
        first, *rest = sim.list_queries
        assert "updatedUntil" not in first and rest
        assert {q["updatedUntil"] for q in rest} == {rest[0]["updatedUntil"]}, "one bound for the whole read"
        assert datetime.fromisoformat(rest[0]["updatedUntil"]).tzinfo is not None


def test_a_client_removed_during_a_full_scan_shifts_no_other_out_of_reach() -> None:
    """Stock Fineract (no change filter, id order): a pending client deleted behind the read moved every later
    client up one place, and the one at the page boundary was never read."""
    with CorebankRestSimulator(Knobs(seed=4, records=N)) as sim:
        adapter = CorebankRestAdapter(fineract_config(sim, page_size=10))
        pages = adapter.extract("Client")
        got = [r.external_id for r in next(pages).records]
        with sim.lock:
            del sim.records["3"]   # what DELETE /clients/3 does to a pending client
        got += [r.external_id for p in pages for r in p.records]
        assert set(got) == sim.ids() | {"3"} and len(got) == len(set(got))
