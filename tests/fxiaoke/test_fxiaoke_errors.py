"""The one errorCode table and response check (pure functions: every shape a gateway can answer)."""

from __future__ import annotations

import json

import pytest

from crmbridge.adapters.fxiaoke.errors import CODE_TABLE, ErrorKind, category_of, check_response, error_for
from crmbridge.core.errors import (
    AuthenticationError,
    BadResponseError,
    PermissionDeniedError,
    RecordRejectedError,
    RequestError,
    ThrottledError,
    TokenExpiredError,
    TransientServerError,
)


def body(**doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


@pytest.mark.parametrize(("code", "cls"), [
    (20016, TokenExpiredError), (20005, TokenExpiredError),
    (10006, AuthenticationError), (20006, AuthenticationError), (20015, AuthenticationError),
    (20017, AuthenticationError), (20012, AuthenticationError),
    (15003, PermissionDeniedError), (20022, PermissionDeniedError), (30003, PermissionDeniedError),
    (14001, ThrottledError), (30004, ThrottledError), (30002, RequestError),
    (-1, TransientServerError), (-2, TransientServerError), (50009, TransientServerError),
    (10013, RequestError), (15002, RequestError), (32000, RequestError),
    (424242, RequestError),  # unknown, on a read
])
def test_codes_classify(code: int, cls: type) -> None:
    raw = body(errorCode=code, errorMessage="张三 13812345678 x", traceId="E-O.1.2-3")
    with pytest.raises(cls) as info:
        check_response(200, raw, where="/cgi/crm/v2/data/query")
    exc = info.value
    assert exc.vendor_code == str(code) and exc.request_id == "E-O.1.2-3" and exc.status == 200
    assert "张三" not in str(exc) and "13812345678" not in str(exc)  # errorMessage is never echoed


def test_record_level_business_and_unknown_codes_reject_the_record() -> None:
    for code in (320002, 320003, 987654):
        with pytest.raises(RecordRejectedError) as info:
            check_response(200, body(errorCode=code, errorMessage="x", traceId="TRACE-9"), where="/c",
                           record_level=True)
        assert info.value.code == str(code) and "TRACE-9" in str(info.value)
    with pytest.raises(TransientServerError):  # system errors stay retryable on writes too
        check_response(200, body(errorCode=-1), where="/c", record_level=True)


def test_token_endpoint_rejections_are_authentication_errors() -> None:
    for code in (20016, 10006, 32000, 424242):
        assert category_of(code, token_endpoint=True) is ErrorKind.AUTH
    assert category_of(14001, token_endpoint=True) is ErrorKind.THROTTLED
    assert isinstance(error_for(-1, where="/t", token_endpoint=True), TransientServerError)


@pytest.mark.parametrize(("status", "raw", "cls"), [
    (200, b"<html>502</html>", BadResponseError),
    (200, b"\xff\xfe", BadResponseError),
    (200, b"", BadResponseError),
    (200, b"[1, 2]", BadResponseError),
    (200, body(errorMessage="OK"), BadResponseError),
    (200, body(errorCode="abc"), BadResponseError),
    (200, body(errorCode=True), BadResponseError),
    (302, b"", BadResponseError),  # www.fxiaoke.com redirects to HTML
    (404, b"not found", BadResponseError),
    (502, b"bad gateway", TransientServerError),
    (429, b"", ThrottledError),
])
def test_bad_shapes(status: int, raw: bytes, cls: type) -> None:
    with pytest.raises(cls):
        check_response(status, raw, where="/cgi/crm/v2/data/query")


def test_success_and_string_codes() -> None:
    assert check_response(200, body(errorCode=0, data={"dataList": []}), where="/q")["data"] == {"dataList": []}
    with pytest.raises(TokenExpiredError):
        check_response(200, body(errorCode="20016"), where="/q")


def test_the_table_covers_every_documented_throttling_code() -> None:
    assert {c for c, r in CODE_TABLE.codes.items() if r.kind in (ErrorKind.THROTTLED, ErrorKind.QUOTA)} == {
        14001, 30004, 30002}
    assert CODE_TABLE[30003].kind is ErrorKind.PERMISSION
