"""Fxiaoke field metadata: how an object ``describe`` reads as :class:`FieldInfo`, and the describes of the
preset objects and the bank's custom fields as the simulator serves them (docs/vendors/fxiaoke.md §8).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from crmbridge.adapters.base import FieldInfo

__all__ = ["CUSTOM_FIELDS", "DESCRIBES", "field_infos", "holding_describe"]

_READ_ONLY_TYPES = frozenset({"formula", "count", "quote", "auto_number"})
#: system fields a write may set (owner on create / through changeOwner; record_type on create)
_WRITABLE_SYSTEM_FIELDS = frozenset({"owner", "record_type"})


def field_infos(desc: Mapping[str, Any]) -> list[FieldInfo]:
    """The fields of an object ``describe`` reply, sorted by API name."""
    out = []
    for api, f in sorted(desc["fields"].items()):
        if not isinstance(f, Mapping):
            continue
        opts = f.get("options")
        picklist = tuple(str(o.get("value")) for o in opts if isinstance(o, Mapping)) \
            if isinstance(opts, list) and opts else None
        ftype = str(f.get("type") or "unknown")
        length = f.get("max_length")
        out.append(FieldInfo(
            name=str(f.get("api_name") or api), type=ftype,
            length=length if isinstance(length, int) and not isinstance(length, bool) else None,
            required=bool(f.get("is_required")),
            read_only=api not in _WRITABLE_SYSTEM_FIELDS and (
                bool(f.get("is_readonly")) or f.get("define_type") == "system"
                or ftype in _READ_ONLY_TYPES or api.endswith(("__r", "__l", "__o", "__v", "__p"))),
            picklist=picklist))
    return out


def _opts(*values: str) -> list[dict[str, str]]:
    return [{"label": v, "value": v} for v in values]


def _f(api: str, label: str, ftype: str, **kw: Any) -> dict[str, Any]:
    field = {"api_name": api, "label": label, "type": ftype, "is_required": False, "is_unique": False,
             "is_active": True, "define_type": "package"}
    field.update(kw)
    return field


_SYSTEM_FIELDS = [
    _f("_id", "ID", "text", define_type="system", max_length=64),
    _f("owner", "负责人", "employee", define_type="system", is_required=True),
    _f("created_by", "创建人", "employee", define_type="system"),
    _f("last_modified_by", "最后修改人", "employee", define_type="system"),
    _f("create_time", "创建时间", "date_time", define_type="system"),
    _f("last_modified_time", "最后修改时间", "date_time", define_type="system"),
    _f("life_status", "生命状态", "select_one", define_type="system",
       options=_opts("normal", "ineffective", "under_review", "in_change", "invalid")),
    _f("lock_status", "锁定状态", "select_one", define_type="system", options=_opts("0", "1")),
    _f("is_deleted", "is_deleted", "true_or_false", define_type="system"),
    _f("record_type", "业务类型", "record_type", define_type="system", options=_opts("default__c")),
    _f("version", "version", "text", define_type="system"),
    _f("object_describe_api_name", "object_describe_api_name", "text", define_type="system"),
    _f("tenant_id", "tenant_id", "text", define_type="system"),
    _f("data_own_department", "归属部门", "department", define_type="system"),
]

#: custom fields the bank's mappings use (declared on AccountObj and ContactObj)
CUSTOM_FIELDS = [
    _f("party_id__c", "Party ID", "text", define_type="custom", is_unique=True, max_length=64),
    _f("party_type__c", "客户类型", "select_one", define_type="custom", options=_opts("INDIVIDUAL", "ORGANISATION")),
    _f("uscc__c", "统一社会信用代码(掩码)", "text", define_type="custom", max_length=18),
    _f("id_masked__c", "证件号(掩码)", "text", define_type="custom", max_length=32),
    _f("mobile_masked__c", "手机号(掩码)", "text", define_type="custom", max_length=32),
    _f("segment__c", "客户分层", "select_one", define_type="custom",
       options=_opts("MASS", "AFFLUENT", "WEALTH", "PRIVATE", "MICRO", "SMALL", "MEDIUM", "LARGE", "STRATEGIC")),
    _f("aum_band__c", "AUM区间", "select_one", define_type="custom",
       options=_opts("<50K", "50K-500K", "500K-6M", "6M-30M", ">30M")),
    _f("rm__c", "客户经理", "employee", define_type="custom"),
    _f("branch__c", "归属网点", "text", define_type="custom", max_length=64),
    _f("risk_rating__c", "反洗钱风险等级", "select_one", define_type="custom",
       options=_opts("LOW", "MEDIUM", "HIGH", "PROHIBITED")),
    _f("lifecycle__c", "生命周期阶段", "select_one", define_type="custom",
       options=_opts("PROSPECT", "ONBOARDING", "ACTIVE", "DORMANT", "FROZEN", "CLOSED", "DECEASED", "DISSOLVED",
                     "MERGED")),
    _f("kyc_next_review__c", "下次KYC复核日", "date", define_type="custom"),
    # text: the relationship start date is personal data, the CRM receives its masked form (an extension field)
    _f("customer_since__c", "建立关系日期(掩码)", "text", define_type="custom", max_length=20),
    _f("consent_marketing__c", "营销同意", "true_or_false", define_type="custom"),
    _f("consent_sms__c", "短信营销同意", "true_or_false", define_type="custom"),
    _f("consent_call__c", "电话营销同意", "true_or_false", define_type="custom"),
    _f("consent_email__c", "邮件营销同意", "true_or_false", define_type="custom"),
]

_ACCOUNT_FIELDS = [
    _f("name", "客户名称", "text", is_required=True, max_length=100),
    _f("account_no", "客户编号", "auto_number"),
    _f("account_type", "客户分类", "select_one", options=_opts("1", "2", "3")),
    _f("account_level", "客户级别", "select_one", options=_opts("A", "B", "C", "D")),
    _f("account_source", "客户来源", "select_one", options=_opts("1", "2", "3", "other")),
    _f("deal_status", "成交状态", "select_one", options=_opts("1", "2", "3")),
    _f("tel", "电话", "phone_number", max_length=100),
    _f("email", "邮件", "email", max_length=100),
    _f("url", "网址", "url", max_length=256),
    _f("address", "详细地址", "text", max_length=300),
    _f("country", "国家", "country"),
    _f("province", "省", "province"),
    _f("city", "市", "city"),
    _f("district", "区", "district"),
    _f("industry_level1", "一级行业", "select_one", options=_opts("finance", "it", "manufacturing", "retail", "other")),
    _f("industry_level2", "二级行业", "select_one", options=_opts("bank", "software", "other")),
    _f("uniform_social_credit_code", "统一社会信用代码", "text", max_length=18),
    _f("parent_account_id", "上级客户", "object_reference", target_api_name="AccountObj"),
    _f("remark", "备注", "long_text", max_length=2000),
]

_CONTACT_FIELDS = [
    _f("name", "姓名", "text", is_required=True, max_length=100),
    _f("account_id", "客户名称", "object_reference", target_api_name="AccountObj"),
    _f("mobile", "手机", "phone_number", max_length=100),  # API name unverified (docs/vendors/fxiaoke.md §8)
    _f("tel", "电话", "phone_number", max_length=100),
    _f("email", "邮件", "email", max_length=100),
    _f("job_title", "职务", "text", max_length=100),
    _f("remark", "备注", "long_text", max_length=2000),
]

_PARTY_OBJECT_FIELDS = [_f("name", "主属性", "text", is_required=True, max_length=100)]


def _describe(api: str, label: str, fields: Iterable[dict[str, Any]], define_type: str) -> dict[str, Any]:
    return {"api_name": api, "display_name": label, "define_type": define_type, "is_active": True,
            "fields": {f["api_name"]: dict(f) for f in fields}}


DESCRIBES = {
    "AccountObj": _describe("AccountObj", "客户", [*_SYSTEM_FIELDS, *_ACCOUNT_FIELDS, *CUSTOM_FIELDS], "package"),
    "ContactObj": _describe("ContactObj", "联系人", [*_SYSTEM_FIELDS, *_CONTACT_FIELDS, *CUSTOM_FIELDS], "package"),
    "object_party__c": _describe("object_party__c", "客户主数据", [*_SYSTEM_FIELDS, *_PARTY_OBJECT_FIELDS,
                                                               *CUSTOM_FIELDS], "custom"),
}


# ------------------------------------------------------------------ beyond the party (docs/vendors/fxiaoke.md §12)
#: 工单 (work order / service case): preset, but its fields are largely tenant-configured; the preset fields here are
#: those a public tenant mapping used (name, owner, record_type, account_id → AccountObj), the rest are the bank's
_CASE_FIELDS = [
    _f("name", "工单编号", "text", is_required=True, max_length=100),
    _f("account_id", "公司名称", "object_reference", target_api_name="AccountObj"),
    _f("case_key__c", "案件键", "text", define_type="custom", is_unique=True, max_length=64),
    _f("contact_id__c", "联系人", "object_reference", define_type="custom", target_api_name="ContactObj"),
    _f("case_status__c", "工单状态", "select_one", define_type="custom",
       options=_opts("NEW", "IN_PROGRESS", "ESCALATED", "RESOLVED", "CLOSED")),
    _f("priority__c", "优先级", "select_one", define_type="custom", options=_opts("LOW", "MEDIUM", "HIGH", "URGENT")),
    _f("channel_code__c", "受理渠道", "text", define_type="custom", max_length=20),
    _f("business_code__c", "业务类别", "text", define_type="custom", max_length=20),
    _f("reason_code__c", "投诉原因", "text", define_type="custom", max_length=20),
    _f("summary__c", "问题描述", "long_text", define_type="custom", max_length=2000),
    _f("received_time__c", "受理时间", "date_time", define_type="custom"),
    _f("due_time__c", "办结时限", "date_time", define_type="custom"),
    _f("sla_breached__c", "超时", "true_or_false", define_type="custom"),
    _f("bank_complaint_id__c", "行内投诉编号", "text", define_type="custom", max_length=64),
    _f("bank_status__c", "行内处理状态", "text", define_type="custom", max_length=40),
]

#: 市场活动: field API names beyond name are unverified (read object/describe on the tenant)
_MARKETING_EVENT_FIELDS = [
    _f("name", "活动名称", "text", is_required=True, max_length=100),
    _f("begin_time", "开始日期", "date"),
    _f("end_time", "结束日期", "date"),
    _f("event_type", "活动类型", "select_one", options=_opts("1", "2", "3", "other")),
    _f("campaign_key__c", "活动键", "text", define_type="custom", is_unique=True, max_length=64),
]

#: 活动成员: the links and the status field's API names are unverified; no preset opt-out field is documented, so
#: the bank's opt_out__c stands for a tenant custom field
_CAMPAIGN_MEMBER_FIELDS = [
    _f("name", "成员编号", "text", max_length=100),
    _f("marketing_event_id", "市场活动", "object_reference", is_required=True, target_api_name="MarketingEventObj"),
    _f("contact_id", "联系人", "object_reference", target_api_name="ContactObj"),
    _f("campaign_members_status", "成员状态", "select_one",
       options=_opts("invited", "registered", "attended", "responded", "converted", "declined")),
    _f("member_key__c", "成员键", "text", define_type="custom", is_unique=True, max_length=64),
    _f("opt_out__c", "退订", "true_or_false", define_type="custom"),
]


def holding_describe(api: str = "object_holding__c") -> dict[str, Any]:
    """The bank's custom object for product holdings under the API name the tenant has (system-generated, e.g.
    ``object_Ab12c__c``), with lookups (``object_reference``) to AccountObj and ContactObj."""
    if not api.endswith("__c"):
        raise ValueError(f"a custom object's API name ends in __c, not {api!r}")
    fields = [
        _f("name", "持有产品", "text", is_required=True, max_length=100),
        _f("holding_key__c", "持有键", "text", define_type="custom", is_unique=True, max_length=64),
        _f("account_id__c", "客户", "object_reference", define_type="custom", target_api_name="AccountObj"),
        _f("contact_id__c", "联系人", "object_reference", define_type="custom", target_api_name="ContactObj"),
        _f("party_id__c", "Party ID", "text", define_type="custom", max_length=64),
        _f("product_type__c", "产品大类", "select_one", define_type="custom",
           options=_opts("DEPOSIT", "WEALTH", "FUND", "INSURANCE", "LOAN", "CARD")),
        _f("product_code__c", "产品代码", "text", define_type="custom", max_length=40),
        _f("product_name__c", "产品名称", "text", define_type="custom", max_length=100),
        _f("holding_status__c", "持有状态", "select_one", define_type="custom",
           options=_opts("ACTIVE", "DORMANT", "FROZEN", "MATURED", "CLOSED")),
        _f("account_no_masked__c", "账号(掩码)", "text", define_type="custom", max_length=40),
        _f("currency__c", "币种", "text", define_type="custom", max_length=3),
        _f("balance_band__c", "余额区间", "select_one", define_type="custom",
           options=_opts("<50K", "50K-500K", "500K-6M", "6M-30M", ">30M")),
        _f("open_date__c", "开立日期", "date", define_type="custom"),
        _f("close_date__c", "销户日期", "date", define_type="custom"),
    ]
    return _describe(api, "产品持有", [*_SYSTEM_FIELDS, *fields], "custom")


DESCRIBES.update({
    "CasesObj": _describe("CasesObj", "工单", [*_SYSTEM_FIELDS, *_CASE_FIELDS], "package"),
    "MarketingEventObj": _describe("MarketingEventObj", "市场活动", [*_SYSTEM_FIELDS, *_MARKETING_EVENT_FIELDS],
                                   "package"),
    "CampaignMembersObj": _describe("CampaignMembersObj", "活动成员", [*_SYSTEM_FIELDS, *_CAMPAIGN_MEMBER_FIELDS],
                                    "package"),
})
