"""The change list's records read with lxml (issue 19): the same reply as zeep's, call for call; anything the
compiled reader does not read exactly as zeep (an undeclared element, an attribute, a schema it does not compile)
goes to zeep whole, so a malformed change list is a clear error and no record is dropped."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import pytest

from crmbridge.adapters.corebank_soap import CorebankSoapAdapter
from crmbridge.adapters.corebank_soap.client import get_path, set_path
from crmbridge.adapters.corebank_soap.simulator import CorebankSoapSimulator
from crmbridge.core.errors import BadResponseError, RequestError


def _list_body(adapter: CorebankSoapAdapter) -> dict[str, Any]:
    """A change-list request as the adapter builds it (the replies below are queued, so its values do not matter)."""
    op = adapter.config.operations.list
    pg = op.paging
    body = adapter._body(op.name, op.static)
    for path, value in op.since_static.items():
        set_path(body, path, value)
    set_path(body, op.since, datetime(2000, 1, 1).strftime(op.since_format))
    if pg.size:
        set_path(body, pg.size, 30)
    if pg.mode in ("page_number", "keyset"):
        set_path(body, pg.page, pg.first_page)
    return body


def _first_page_bytes(adapter: CorebankSoapAdapter) -> bytes:
    page = next(adapter.extract("Customer"))
    assert len(page.records) >= 10
    last = adapter.client.transport.last()
    assert last is not None
    return bytes(last.content)


def _both(sim: Any, adapter: CorebankSoapAdapter, raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """The reply to ``raw`` read with the records path (lxml when plain) and without it (zeep only)."""
    op = adapter.config.operations.list
    body = _list_body(adapter)
    sim.queue_raw(raw)
    fast = adapter.client.call(op.operation, body, records=op.records)
    sim.queue_raw(raw)
    slow = adapter.client.call(op.operation, body)
    return fast, slow


@pytest.mark.parametrize("system", ["fcubs", "t24"])
def test_a_change_list_reads_the_same_with_lxml_as_with_zeep(request: pytest.FixtureRequest, system: str) -> None:
    sim, adapter = request.getfixturevalue(f"{system}_sim"), request.getfixturevalue(system)
    raw = _first_page_bytes(adapter)
    bulk = adapter.client.bulk
    before = (bulk.read_here, bulk.left_to_zeep)
    fast, slow = _both(sim, adapter, raw)
    assert json.dumps(fast, ensure_ascii=False) == json.dumps(slow, ensure_ascii=False)   # order included
    if system == "fcubs":   # FLEXCUBE's records are read here; T24's path crosses a repeated group: zeep
        assert (bulk.read_here, bulk.left_to_zeep) == (before[0] + 1, before[1])
        assert bulk.read_here >= 2   # the page read by extract() above was read here too
    else:
        assert (bulk.read_here, bulk.left_to_zeep) == (before[0], before[1] + 1)


def _records(raw: bytes) -> list[tuple[int, int]]:
    """The byte spans of the Customer-Full elements of a FLEXCUBE reply."""
    text = raw
    return [(m.start(), m.end()) for m in re.finditer(rb"<(\w+:)?Customer-Full>.*?</(\w+:)?Customer-Full>", text,
                                                      re.S)]


def _prefix(raw: bytes) -> bytes:
    m = re.search(rb"<(\w+):Customer-Full>", raw)
    return m.group(1) if m else b""


def test_an_undeclared_element_in_one_record_fails_the_page_clearly(fcubs_sim: CorebankSoapSimulator,
                                                                   fcubs: CorebankSoapAdapter) -> None:
    raw = _first_page_bytes(fcubs)
    spans = _records(raw)
    p = _prefix(raw)
    start, end = spans[3]
    close = raw.rindex(b"</", start, end)
    bad = raw[:close] + b"<" + p + b":SURPRISE>1</" + p + b":SURPRISE>" + raw[close:]
    left = fcubs.client.bulk.left_to_zeep
    fcubs_sim.queue_raw(bad)
    with pytest.raises(BadResponseError) as err:
        next(fcubs.extract("Customer"))
    assert fcubs.client.bulk.left_to_zeep == left + 1   # zeep read it (and refused it), as before
    assert "SURPRISE" in str(err.value) or "reply" in str(err.value)
    assert fcubs.stats.retries == 0


def test_a_change_list_cut_inside_a_record_is_a_bad_response(fcubs_sim: CorebankSoapSimulator,
                                                             fcubs: CorebankSoapAdapter) -> None:
    raw = _first_page_bytes(fcubs)
    start, end = _records(raw)[5]
    read = fcubs.client.bulk.read_here
    fcubs_sim.queue_raw(raw[:(start + end) // 2])
    with pytest.raises(BadResponseError, match="truncated|not well-formed"):
        next(fcubs.extract("Customer"))
    assert fcubs.client.bulk.read_here == read and fcubs.stats.retries == 0


def test_a_record_the_reader_does_not_know_exactly_goes_to_zeep_with_every_other(fcubs_sim: CorebankSoapSimulator,
                                                                                 fcubs: CorebankSoapAdapter) -> None:
    """An attribute (here ``xsi:nil`` on a value) is read by zeep, with the whole page: nothing lost or
    reordered, and the same records as a reply without the attribute, but for that value."""
    raw = _first_page_bytes(fcubs)
    p = _prefix(raw).decode()
    m = re.search(rf"<{p}:FULLNAME>[^<]*</{p}:FULLNAME>".encode(), raw[_records(raw)[2][0]:])
    assert m is not None
    at = _records(raw)[2][0] + m.start()
    nil = (f'<{p}:FULLNAME xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:nil="true"/>').encode()
    odd = raw[:at] + nil + raw[at + len(m.group(0)):]
    bulk = fcubs.client.bulk
    left = bulk.left_to_zeep
    fast, slow = _both(fcubs_sim, fcubs, odd)
    assert bulk.left_to_zeep == left + 1 and fast == slow   # (the second read is zeep's on purpose)
    plain, _ = _both(fcubs_sim, fcubs, raw)
    path = fcubs.config.operations.list.records
    got, want = get_path(fast, path), get_path(plain, path)
    assert [r["CUSTNO"] for r in got] == [r["CUSTNO"] for r in want]
    assert "FULLNAME" not in got[2] and "FULLNAME" in want[2]   # zeep reads a nil value as absent
    assert got[:2] == want[:2] and got[3:] == want[3:]


def test_a_fault_on_a_change_list_is_zeep_s(fcubs_sim: CorebankSoapSimulator, fcubs: CorebankSoapAdapter) -> None:
    _first_page_bytes(fcubs)
    soap = "http://schemas.xmlsoap.org/soap/envelope/"
    fcubs_sim.queue_raw(f'<s:Envelope xmlns:s="{soap}"><s:Body><s:Fault><faultcode>s:Client</faultcode>'
                        f"<faultstring>bad request</faultstring></s:Fault></s:Body></s:Envelope>", status=500)
    read = fcubs.client.bulk.read_here
    with pytest.raises(RequestError, match="bad request"):
        next(fcubs.extract("Customer"))
    assert fcubs.client.bulk.read_here == read and fcubs.stats.retries == 0
