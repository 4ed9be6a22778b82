"""The Zoho configuration model and the one error table."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from crmbridge.adapters.zoho.adapter import EDITION_CONCURRENCY, ZohoAdapter, ZohoConfig
from crmbridge.adapters.zoho.errors import ERROR_TABLE, TOKEN_ERROR_TABLE, classify_item, request_error
from crmbridge.core.errors import (
    AuthenticationError,
    BadResponseError,
    PermissionDeniedError,
    RequestError,
    RetryableError,
    SecretError,
    ThrottledError,
    TokenExpiredError,
    TransientServerError,
)

CN = {"client_id": "1000.CN", "client_secret": "env:CRMBRIDGE_TEST_ZOHO_SECRET",
      "refresh_token": "env:CRMBRIDGE_TEST_ZOHO_REFRESH"}


def test_defaults_are_the_china_data_centre_and_no_workflows() -> None:
    cfg = ZohoConfig(**CN)
    assert (cfg.accounts_url, cfg.api_domain) == ("https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn")
    assert cfg.api_version == "v8" and cfg.trigger == [] and cfg.key_field == "Party_ID"
    assert cfg.edition == "enterprise" and cfg.overlap_seconds == 5


@pytest.mark.parametrize(("edition", "slots"), sorted(EDITION_CONCURRENCY.items()))
def test_edition_sets_the_concurrency(edition: str, slots: int) -> None:
    assert ZohoAdapter(ZohoConfig(**CN, edition=edition))._gate.concurrency == slots
    assert ZohoAdapter(ZohoConfig(**CN, edition=edition, max_concurrency=2))._gate.concurrency == 2


@pytest.mark.parametrize("change", [
    {"api_domain": "https://www.zohoapis.com"},           # US data centre: refused for a PRC bank
    {"accounts_url": "https://accounts.zoho.eu"},
    {"api_domain": "http://www.zohoapis.com.cn"},          # plain http off loopback
    {"client_secret": "s3cr3t"},                           # literal secret
    {"edition": "gold"},
    {"trigger": ["everything"]},
    {"key_field": "Party ID"},
    {"overlap_seconds": -1},
    {"page_size": 201},
    {"unknown_key": 1},
])
def test_bad_configuration_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ZohoConfig(**{**CN, **change})


def test_accounts_url_may_be_the_full_token_url() -> None:
    cfg = ZohoConfig(**CN, accounts_url="https://accounts.zoho.com.cn/oauth/v2/token")
    assert cfg.accounts_url == "https://accounts.zoho.com.cn"


def test_other_data_centre_allowed_only_explicitly() -> None:
    cfg = ZohoConfig(**CN, api_domain="https://www.zohoapis.com", accounts_url="https://accounts.zoho.com",
                     require_china_dc=False)
    assert cfg.api_domain == "https://www.zohoapis.com"


def test_file_secrets_are_relative_to_base_dir(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "zoho_secret").write_text("s3cret\n", encoding="utf-8")
    (tmp_path / "zoho_refresh").write_text("1000.r.r\n", encoding="utf-8")
    cfg = ZohoConfig(client_id="1000.CN", client_secret="file:zoho_secret", refresh_token="file:zoho_refresh")
    adapter = ZohoAdapter(cfg, base_dir=tmp_path)
    assert adapter._tokens._client_secret.get_secret_value() == "s3cret"
    with pytest.raises(SecretError):
        ZohoAdapter(cfg)  # relative to the working directory: not there


def test_unset_secret_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRMBRIDGE_TEST_ZOHO_SECRET")
    with pytest.raises(SecretError) as info:
        ZohoAdapter(ZohoConfig(**CN), system="zoho_cn")
    assert info.value.where == "systems.zoho_cn.client_secret"


# the codes the issue and docs/vendors/zoho.md §11 name, with what crmbridge must do next
EXPECTED = {
    "INVALID_TOKEN": TokenExpiredError, "AUTHENTICATION_FAILURE": AuthenticationError,
    "OAUTH_SCOPE_MISMATCH": PermissionDeniedError, "INVALID_URL_PATTERN": RequestError,
    "INVALID_MODULE": RequestError, "REQUIRED_PARAM_MISSING": RequestError,
    "DISCRETE_PAGINATION_LIMIT_EXCEEDED": RequestError, "PAGINATION_LIMIT_EXCEEDED": RequestError,
    "INVALID_DATA": RequestError, "MANDATORY_NOT_FOUND": RequestError, "DUPLICATE_DATA": RequestError,
    "LIMIT_EXCEEDED": RequestError, "TOO_MANY_REQUESTS": ThrottledError, "INTERNAL_ERROR": TransientServerError,
    "NO_PERMISSION": PermissionDeniedError, "AUTHORIZATION_FAILED": PermissionDeniedError,
    "ALREADY_MODIFIED": RequestError, "INVALID_HOST": RequestError, "INVALID_REQUEST_METHOD": RequestError,
    "EXPECTED_PARAM_MISSING": RequestError, "MULTIPLE_OR_MULTI_ERRORS": RequestError,
    "DEPENDENT_FIELD_MISSING": RequestError, "DEPENDENT_MISMATCH": RequestError,
    "DEPENDENT_SERVICE_ERROR": RequestError, "PATTERN_NOT_MATCHED": RequestError, "LIMIT_REACHED": RequestError,
    "TOKEN_BOUND_DATA_MISMATCH": RequestError, "EXPIRED_VALUE": RequestError,
    "AMBIGUITY_DURING_PROCESSING": RequestError, "INVALID_QUERY": RequestError, "SYNTAX_ERROR": RequestError,
    "RECORD_LOCKED": RequestError, "NOT_APPROVED": RequestError, "CANNOT_DELETE": RequestError,
    "ID_ALREADY_CONVERTED": RequestError, "RECORD_IN_BLUEPRINT": RequestError, "NOT_SUPPORTED": RequestError,
    "FEATURE_NOT_SUPPORTED": RequestError, "REQUEST_ENTITY_TOO_LARGE": RequestError,
    "UNSUPPORTED_MEDIA_TYPE": RequestError,
}


@pytest.mark.parametrize(("code", "cls"), sorted(EXPECTED.items(), key=lambda kv: kv[0]))
def test_every_documented_code_is_in_the_table(code: str, cls: type) -> None:
    assert code in ERROR_TABLE
    err = request_error(code, status=400, where="GET /crm/v8/Contacts", request_id="r-1")
    assert type(err) is cls
    assert (err.vendor, err.status, err.vendor_code, err.request_id) == ("zoho", 400, code, "r-1")
    assert isinstance(err, RetryableError) == (cls in (TokenExpiredError, ThrottledError, TransientServerError))


@pytest.mark.parametrize(("status", "cls"), [(500, TransientServerError), (503, TransientServerError),
                                             (429, ThrottledError), (401, AuthenticationError),
                                             (403, PermissionDeniedError), (404, RequestError)])
def test_unknown_codes_fall_back_by_status(status: int, cls: type) -> None:
    assert type(request_error("SOMETHING_NEW", status=status, where="x")) is cls


def test_details_keep_names_not_values() -> None:
    err = request_error("INVALID_DATA", status=400, where="x",
                        details={"api_name": "Mobile", "value": "13812345678", "json_path": "$.data[0].Mobile"})
    assert "Mobile" in str(err) and "13812345678" not in str(err) and "value" not in err.details


def test_per_record_items_are_classified_by_the_table() -> None:
    ok = {"code": "SUCCESS", "status": "success", "details": {"id": "1"}, "message": "record added"}
    assert classify_item(ok, index=0, where="w") == ("success", None)
    kind, err = classify_item({"code": "MULTIPLE_OR_MULTI_ERRORS", "status": "error", "message": "m", "details": {
        "errors": [{"code": "DUPLICATE_DATA", "details": {"api_name": "Email", "json_path": "$.data[0].Email"}},
                   {"code": "DUPLICATE_DATA", "details": {"api_name": "Mobile"}}]}}, index=0, where="w")
    assert kind == "record" and err is not None and err.field == "Email" and "DUPLICATE_DATA on Mobile" in str(err)
    kind, err = classify_item({"code": "ALREADY_MODIFIED", "status": "error", "message": "m", "details": {}},
                              index=0, where="w")
    assert kind == "conflict"
    with pytest.raises(PermissionDeniedError):  # wrapped in data[] on writes but concerns the whole call
        classify_item({"code": "AUTHORIZATION_FAILED", "status": "error", "message": "m",
                       "details": {"resource_path_index": 0}}, index=0, where="w")
    with pytest.raises(BadResponseError):
        classify_item("nonsense", index=3, where="w")


def test_token_errors_table() -> None:
    assert TOKEN_ERROR_TABLE.error_class(TOKEN_ERROR_TABLE["invalid_code"]) is AuthenticationError
    assert TOKEN_ERROR_TABLE.error_class(TOKEN_ERROR_TABLE["invalid_client"]) is AuthenticationError
    assert TOKEN_ERROR_TABLE.error_class(TOKEN_ERROR_TABLE["access denied"]) is ThrottledError
