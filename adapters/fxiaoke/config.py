"""The configuration model of a ``fxiaoke`` system, in a module of its own so that reading a configuration does
not import the adapter's transport (issue 19). Re-exported by :mod:`crmbridge.adapters.fxiaoke.adapter`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from crmbridge.adapters.base import AdapterConfig
from crmbridge.core.secrets import SecretRef

__all__ = ["MAX_LIMIT", "FxiaokeConfig"]

#: documented maximum ``limit`` of data/query (current docs; older pages say 200/1000)
MAX_LIMIT = 100



class FxiaokeConfig(AdapterConfig):
    """``adapter: fxiaoke`` configuration.

    Example (YAML)::

        adapter: fxiaoke
        base_url: https://open.fxiaoke.com
        app_id: FSAID_131a2f1
        app_secret: env:FXIAOKE_APP_SECRET
        permanent_code: env:FXIAOKE_PERMANENT_CODE
        open_user_id: FSUID_0123456789abcdef0123456789abcdef
        key_field: party_id__c
    """

    adapter: Literal["fxiaoke"] = "fxiaoke"
    base_url: str = Field("https://open.fxiaoke.com", pattern=r"^https?://[^/\s]+/?$",
                          description="the tenant cloud's open-* gateway host")
    app_id: str = Field(min_length=1)
    app_secret: SecretRef
    permanent_code: SecretRef
    open_user_id: str | None = Field(None, pattern=r"^FSUID_[0-9A-Za-z]+$",
                                     description="operator (CRM administrator) open user id")
    admin_mobile: str | None = Field(None, pattern=r"^1[3-9]\d{9}$",
                                     description="administrator mobile, resolved once with getByMobile")
    trigger_workflow: bool = False
    trigger_approval_flow: bool = False
    key_field: str = "party_id__c"
    objects: dict[str, str] = Field(default_factory=dict, description=(
        "object name used by jobs and mappings -> the tenant's object API name, e.g. {Holding: object_Ab12c__c} "
        "(custom objects get system-generated names: read them from object/list); unlisted names are used as they are"))
    default_owner: str | None = Field(None, pattern=r"^FSUID_[0-9A-Za-z]+$",
                                      description="owner of created records when the payload has none "
                                                  "(default: the operator)")
    page_size: int = Field(MAX_LIMIT, ge=1, le=MAX_LIMIT)
    overlap_seconds: float = Field(300.0, ge=0)
    token_calls_per_minute: int = Field(10, ge=1, le=10)
    token_cache: str | None = Field(None, description=(
        "file sharing the corpAccessToken among this system's processes (encrypted, mode 0600; relative to the "
        "configuration's folder). Unset: one token per process - the token endpoint allows 10 calls a minute"))
    hard_delete: bool = Field(False, description="after invalidating (作废), also delete from the recycle bin")
    #: per-interface window: 60 calls / 20 s by the juejin summary (100 / 20 s by the rate guide)
    rate_per_second: float | None = 3.0
    duplicate_search: bool = Field(
        False, description="default for jobs that do not say: whether the tenant's duplicate rules (查重规则) judge "
                           "crmbridge's creates and updates (optionInfo.isDuplicateSearch). false: crmbridge's key "
                           "lookup decides (a rule on minimised/masked names matches unrelated customers)")
    duplicate_rule_codes: list[int] = Field(
        default_factory=list, description="errorCodes this tenant answers for a duplicate-rule refusal (the live "
                                          "code is unpublished; the simulator's and message-recognised ones are "
                                          "always recognised)")
    duplicate_rule_fields: dict[str, list[str]] = Field(
        default_factory=dict, description="object → the fields of its duplicate rule, named in refusals (else "
                                          "derived from the duplicates the refusal lists)")
    since_boundary: Literal["inclusive", "exclusive", "unknown"] = Field(
        "unknown", description="whether the change filter's GTE includes records at the boundary millisecond; "
                               "unknown reads one millisecond earlier and drops what it does not need (safe "
                               "either way); crmbridge doctor detects it")

    @model_validator(mode="after")
    def _one_operator(self) -> FxiaokeConfig:
        if (self.open_user_id is None) == (self.admin_mobile is None):
            raise ValueError("set exactly one of open_user_id or admin_mobile")
        if "www.fxiaoke.com" in self.base_url:
            raise ValueError("www.fxiaoke.com is not the API gateway; use https://open.fxiaoke.com "
                             "or the tenant cloud's open-* host")
        return self
