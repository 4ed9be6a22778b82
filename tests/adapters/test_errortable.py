"""The shared error-table building blocks every vendor's errors.py is made of."""

from __future__ import annotations

import pytest

from crmbridge.adapters.corebank_rest.errors import ERROR_TABLE as REST_TABLE
from crmbridge.adapters.corebank_soap.errors import ERROR_TABLE as SOAP_TABLE
from crmbridge.adapters.errortable import DEFAULT_ERRORS, RECORD_KINDS, ErrorKind, ErrorRule, ErrorTable
from crmbridge.adapters.fxiaoke.errors import CODE_TABLE as FXIAOKE_TABLE
from crmbridge.adapters.zoho.errors import ERROR_TABLE as ZOHO_TABLE
from crmbridge.core.errors import (
    AuthenticationError,
    ConflictError,
    CrmBridgeError,
    RecordRejectedError,
    RequestError,
    TransientServerError,
)

TABLE = ErrorTable(
    codes={"E-TOKEN": ErrorRule(ErrorKind.TOKEN_EXPIRED, "token"), 42: ErrorRule(ErrorKind.QUOTA, "quota")},
    rules=(
        ErrorRule(ErrorKind.CONFLICT, "stale", status=409),
        ErrorRule(ErrorKind.VALIDATION, "bad value", status=400, code=r"VAL-\d+"),
        ErrorRule(ErrorKind.AUTH, "tenant", status=400, text="tenant"),
        ErrorRule(ErrorKind.AUTH, "bearer refused", status=401, auth="bearer"),
        ErrorRule(ErrorKind.BAD_RESPONSE, "unsafe", channel="exception", exception=ValueError),
        ErrorRule(ErrorKind.TRANSIENT, "server", status="5xx"),
    ),
    errors={ErrorKind.CONFLICT: RequestError},
)


def test_exact_codes_come_first_then_the_first_matching_row() -> None:
    assert TABLE.lookup(code="E-TOKEN", status=409).kind is ErrorKind.TOKEN_EXPIRED
    assert TABLE.lookup(code=42).kind is ErrorKind.QUOTA
    assert TABLE.lookup(status=409).kind is ErrorKind.CONFLICT
    assert TABLE.lookup(status=400, code="VAL-12").kind is ErrorKind.VALIDATION
    assert TABLE.lookup(status=400, code="VAL-12x") is None              # a code is matched in full
    assert TABLE.lookup(status=400, text="Invalid TENANT id").kind is ErrorKind.AUTH
    assert TABLE.lookup(status=401, auth="basic") is None and TABLE.lookup(status=401, auth="bearer") is not None
    assert TABLE.lookup(status=503).kind is ErrorKind.TRANSIENT and TABLE.lookup(status=404) is None
    assert TABLE.lookup(channel="exception", exc=ValueError("x")).kind is ErrorKind.BAD_RESPONSE
    assert TABLE.lookup(channel="exception", exc=KeyError("x")) is None


def test_configured_rows_are_tried_before_the_table() -> None:
    mine = ErrorRule(ErrorKind.CONFLICT, "bank's stale code", status=400, code="ST-9")
    assert TABLE.lookup(extra=[mine], status=400, code="ST-9") is mine


def test_outcomes_map_to_crmbridge_errors_with_per_table_overrides() -> None:
    assert TABLE.error_class(ErrorKind.CONFLICT) is RequestError
    assert ErrorTable().error_class(ErrorKind.CONFLICT) is ConflictError
    assert TABLE.error_class(ErrorRule(ErrorKind.REQUEST, error=AuthenticationError)) is AuthenticationError
    assert set(DEFAULT_ERRORS) == set(ErrorKind)
    assert all(issubclass(DEFAULT_ERRORS[k], RecordRejectedError | ConflictError) for k in RECORD_KINDS)


@pytest.mark.parametrize("table", [ZOHO_TABLE, FXIAOKE_TABLE, SOAP_TABLE, REST_TABLE],
                         ids=["zoho", "fxiaoke", "corebank_soap", "corebank_rest"])
def test_every_vendor_table_is_made_of_the_shared_blocks(table: ErrorTable) -> None:
    rows = list(table)
    assert rows and all(isinstance(r, ErrorRule) and isinstance(r.kind, ErrorKind) for r in rows)
    assert all(issubclass(table.error_class(r), CrmBridgeError) for r in rows)


def test_vendor_tables_agree_on_what_a_server_error_is() -> None:
    assert ZOHO_TABLE.error_class(ZOHO_TABLE.lookup(status=502)) is TransientServerError
    assert REST_TABLE.error_class(REST_TABLE.lookup(status=502)) is TransientServerError
    assert SOAP_TABLE.error_class(SOAP_TABLE.lookup(channel="http", status=502)) is TransientServerError
