"""Deterministic synthetic customers for the simulators and tests (docs/canonical.md §4: no real personal data in test).

Every record is built from ``(seed, index)`` alone (``random.Random(f"crmbridge-synthetic:{seed}:{index}")``), so
:func:`customer_at` can page lazily and record *i* is the same whatever ``n`` is; :func:`generate_customers` just
iterates it. Records still pass the validators: resident ID numbers use real, current GB/T 2260 county codes
(:data:`COUNTIES`, each checked against :mod:`crmbridge.canonical.gb2260` and python-stdnum for the birth years
used; no defective record is made defective through its area code, so it fails only for its named reason) with
correct check digits and a sequence digit matching the gender; USCCs carry real admin codes, a correct GB 11714
organisation code and check character (some letter-prefixed, ``N2…``/``Y1…``); mobiles use prefixes that
``phonenumbers.is_valid_number`` accepts; e-mails use the reserved ``example.*`` domains.

Mix: 80 % individuals, 20 % organisations (:data:`INDIVIDUAL_SHARE`).

**Defects.** With ``bad_fraction`` = f, record *i* is defective when ``floor((i+1)·f) > floor(i·f)`` (exactly
``floor(n·f)`` defective records among the first n, evenly spread), and its defect kind cycles through
:data:`DEFECT_KINDS` (``floor(i·f) + seed`` modulo 6). Each defective record carries ONE defect and says what a
validator must do with it:

===================== =========================================== =================================================
``defect``            what the record carries                      expected
===================== =========================================== =================================================
``bad_ric_checksum``  RIC with a wrong check character            rejected, ``expected_code="invalid_checksum"``
``malformed_mobile``  truncated / too long / hotline / "n/a"      rejected, ``invalid_phone`` or ``unparsable_phone``
``missing_name``      no name at all                              rejected, ``expected_code="missing_name"``
``legacy15_ric``      15-digit pre-1999 RIC                       accepted, ``expected_flag="legacy15"``
``fullwidth_ric``     RIC written in full-width digits            accepted (normalised), no flag
``bad_uscc_check``    organisation with a wrong USCC check char   rejected, ``expected_code="invalid_checksum"``
===================== =========================================== =================================================

:class:`SyntheticCustomer` is a frozen dataclass of *source-shaped* values (the ID number and mobile as a source
system would hold them, defects included) plus :meth:`SyntheticCustomer.to_party_dict`, the input
:func:`crmbridge.canonical.model.parse_party` takes. :func:`mutate` returns a "record modified" version.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from crmbridge.canonical.identifiers import org_code_check_digit, ric_check_digit, uscc_check_digit

__all__ = [
    "COUNTIES",
    "DEFECT_KINDS",
    "INDIVIDUAL_SHARE",
    "SyntheticAddress",
    "SyntheticConsent",
    "SyntheticCustomer",
    "customer_at",
    "defect_for",
    "generate_customers",
    "mutate",
]

INDIVIDUAL_SHARE = 0.8

DEFECT_KINDS: tuple[str, ...] = (
    "bad_ric_checksum", "malformed_mobile", "missing_name", "legacy15_ric", "fullwidth_ric", "bad_uscc_check",
)

COUNTIES: tuple[tuple[str, str, str, str, str, int], ...] = (
    ("110101", "北京市", "北京市", "东城区", "100010", 1950),
    ("110102", "北京市", "北京市", "西城区", "100032", 1950),
    ("110105", "北京市", "北京市", "朝阳区", "100020", 1950),
    ("110106", "北京市", "北京市", "丰台区", "100071", 1950),
    ("110108", "北京市", "北京市", "海淀区", "100080", 1950),
    ("120101", "天津市", "天津市", "和平区", "300041", 1950),
    ("120104", "天津市", "天津市", "南开区", "300100", 1950),
    ("130102", "河北省", "石家庄市", "长安区", "050011", 1983),
    ("130123", "河北省", "石家庄市", "正定县", "050800", 1986),
    ("130202", "河北省", "唐山市", "路南区", "063000", 1983),
    ("140105", "山西省", "太原市", "小店区", "030032", 1997),
    ("140106", "山西省", "太原市", "迎泽区", "030001", 1997),
    ("150102", "内蒙古自治区", "呼和浩特市", "新城区", "010050", 1983),
    ("210102", "辽宁省", "沈阳市", "和平区", "110001", 1983),
    ("210202", "辽宁省", "大连市", "中山区", "116001", 1983),
    ("220102", "吉林省", "长春市", "南关区", "130022", 1983),
    ("230102", "黑龙江省", "哈尔滨市", "道里区", "150010", 1983),
    ("310101", "上海市", "上海市", "黄浦区", "200001", 1950),
    ("310104", "上海市", "上海市", "徐汇区", "200030", 1950),
    ("310110", "上海市", "上海市", "杨浦区", "200082", 1950),
    ("320102", "江苏省", "南京市", "玄武区", "210018", 1983),
    ("320106", "江苏省", "南京市", "鼓楼区", "210009", 1983),
    ("320303", "江苏省", "徐州市", "云龙区", "221007", 1983),
    ("320581", "江苏省", "苏州市", "常熟市", "215500", 1989),
    ("330102", "浙江省", "杭州市", "上城区", "310002", 1983),
    ("330106", "浙江省", "杭州市", "西湖区", "310013", 1983),
    ("330203", "浙江省", "宁波市", "海曙区", "315000", 1983),
    ("330782", "浙江省", "金华市", "义乌市", "322000", 1989),
    ("340102", "安徽省", "合肥市", "瑶海区", "230011", 1983),
    ("340103", "安徽省", "合肥市", "庐阳区", "230001", 1983),
    ("350102", "福建省", "福州市", "鼓楼区", "350001", 1983),
    ("350203", "福建省", "厦门市", "思明区", "361001", 1983),
    ("350583", "福建省", "泉州市", "南安市", "362300", 1993),
    ("360102", "江西省", "南昌市", "东湖区", "330006", 1983),
    ("360403", "江西省", "九江市", "浔阳区", "332000", 1983),
    ("370102", "山东省", "济南市", "历下区", "250014", 1983),
    ("370202", "山东省", "青岛市", "市南区", "266001", 1983),
    ("410102", "河南省", "郑州市", "中原区", "450007", 1983),
    ("410105", "河南省", "郑州市", "金水区", "450003", 1983),
    ("420102", "湖北省", "武汉市", "江岸区", "430014", 1983),
    ("420106", "湖北省", "武汉市", "武昌区", "430061", 1983),
    ("430102", "湖南省", "长沙市", "芙蓉区", "410011", 1983),
    ("430104", "湖南省", "长沙市", "岳麓区", "410006", 1983),
    ("440103", "广东省", "广州市", "荔湾区", "510170", 1983),
    ("440104", "广东省", "广州市", "越秀区", "510030", 1983),
    ("440106", "广东省", "广州市", "天河区", "510630", 1985),
    ("440303", "广东省", "深圳市", "罗湖区", "518001", 1983),
    ("440304", "广东省", "深圳市", "福田区", "518033", 1983),
    ("450102", "广西壮族自治区", "南宁市", "兴宁区", "530012", 1983),
    ("460105", "海南省", "海口市", "秀英区", "570311", 2002),
    ("500103", "重庆市", "重庆市", "渝中区", "400010", 1997),
    ("510104", "四川省", "成都市", "锦江区", "610021", 1990),
    ("510107", "四川省", "成都市", "武侯区", "610041", 1990),
    ("520102", "贵州省", "贵阳市", "南明区", "550001", 1983),
    ("530102", "云南省", "昆明市", "五华区", "650032", 1983),
    ("540102", "西藏自治区", "拉萨市", "城关区", "850000", 1983),
    ("610102", "陕西省", "西安市", "新城区", "710004", 1983),
    ("610113", "陕西省", "西安市", "雁塔区", "710061", 1983),
    ("620102", "甘肃省", "兰州市", "城关区", "730030", 1983),
    ("630102", "青海省", "西宁市", "城东区", "810007", 1983),
    ("640104", "宁夏回族自治区", "银川市", "兴庆区", "750001", 2002),
    ("650102", "新疆维吾尔自治区", "乌鲁木齐市", "天山区", "830002", 1983),
    ("650103", "新疆维吾尔自治区", "乌鲁木齐市", "沙依巴克区", "830000", 1983),
    ("210302", "辽宁省", "鞍山市", "铁东区", "114001", 1983),
    ("370602", "山东省", "烟台市", "芝罘区", "264001", 1983),
    ("420502", "湖北省", "宜昌市", "西陵区", "443000", 1986),
    ("430202", "湖南省", "株洲市", "荷塘区", "412000", 1983),
    ("441302", "广东省", "惠州市", "惠城区", "516001", 1988),
)
"""Real GB/T 2260 county codes: (adcode, province, city, district, postcode, first birth year python-stdnum accepts
for the code). Birth years are drawn from ``max(since, 1950)`` to 2005 so every generated RIC passes the area check."""

_LEGACY_COUNTIES = tuple(c for c in COUNTIES if c[5] < 1985)  # 15-digit numbers: births before 1990

# (surname, pinyin) — common single surnames and some compound ones (复姓); readings as surnames
_SURNAMES: tuple[tuple[str, str], ...] = (
    ("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"), ("杨", "yang"), ("黄", "huang"),
    ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"), ("徐", "xu"), ("孙", "sun"), ("马", "ma"), ("朱", "zhu"),
    ("胡", "hu"), ("郭", "guo"), ("何", "he"), ("高", "gao"), ("林", "lin"), ("罗", "luo"), ("郑", "zheng"),
    ("梁", "liang"), ("谢", "xie"), ("宋", "song"), ("唐", "tang"), ("许", "xu"), ("韩", "han"), ("冯", "feng"),
    ("邓", "deng"), ("彭", "peng"), ("曹", "cao"), ("田", "tian"), ("董", "dong"), ("袁", "yuan"), ("潘", "pan"),
    ("蒋", "jiang"), ("蔡", "cai"), ("余", "yu"), ("杜", "du"), ("叶", "ye"), ("程", "cheng"), ("苏", "su"),
    ("欧阳", "ouyang"), ("司马", "sima"), ("上官", "shangguan"), ("诸葛", "zhuge"), ("东方", "dongfang"),
    ("慕容", "murong"),
)
_COMPOUND_SHARE = 0.04
_COMPOUND = tuple(s for s in _SURNAMES if len(s[0]) == 2)
_SINGLE = tuple(s for s in _SURNAMES if len(s[0]) == 1)

# given-name characters (character, pinyin)
_GIVEN: tuple[tuple[str, str], ...] = (
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"), ("强", "qiang"),
    ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"), ("杰", "jie"), ("娟", "juan"),
    ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("秀", "xiu"), ("霞", "xia"), ("平", "ping"), ("刚", "gang"),
    ("桂", "gui"), ("英", "ying"), ("华", "hua"), ("建", "jian"), ("国", "guo"), ("文", "wen"), ("玉", "yu"),
    ("兰", "lan"), ("志", "zhi"), ("海", "hai"), ("春", "chun"), ("晓", "xiao"), ("红", "hong"), ("宇", "yu"),
    ("浩", "hao"), ("欣", "xin"), ("怡", "yi"), ("子", "zi"), ("轩", "xuan"), ("博", "bo"), ("晨", "chen"),
    ("思", "si"), ("佳", "jia"), ("嘉", "jia"), ("梓", "zi"), ("睿", "rui"), ("雨", "yu"), ("婷", "ting"),
    ("鑫", "xin"), ("琳", "lin"), ("颖", "ying"), ("慧", "hui"), ("俊", "jun"), ("峰", "feng"), ("宁", "ning"),
    ("亮", "liang"), ("波", "bo"), ("斌", "bin"), ("云", "yun"),
)

_ROADS = ("人民路", "解放路", "中山路", "建设路", "和平路", "新华路", "长江路", "文化路", "胜利路", "光明路",
          "迎宾大道", "滨江路", "学府路", "科技路", "朝阳路", "东风路", "青年路", "幸福路")
_OCCUPATIONS = ("教师", "工程师", "医生", "会计", "销售经理", "公务员", "律师", "自由职业", "个体经营", "退休",
                "程序员", "护士", "设计师", "研究员")
_EMPLOYER_WORDS = ("华信", "恒通", "瑞丰", "鼎盛", "远航", "汇智", "博远", "宏达", "金诚", "天元", "安泰", "中和")
_INDUSTRIES: tuple[tuple[str, str], ...] = (
    ("I6510", "科技"), ("C1310", "粮油"), ("F5212", "商贸"), ("E4710", "建设"), ("G5431", "物流"),
    ("H6110", "酒店管理"), ("C3670", "汽车配件"), ("L7212", "投资管理"), ("M7320", "技术研究"), ("A0141", "农业"),
    ("K7010", "置业"), ("C2710", "制药"), ("J6621", "金融服务"), ("P8331", "教育咨询"),
)
# (USCC registration authority + entity type, legal form, name suffix, share)
_ORG_KINDS: tuple[tuple[str, str, str, float], ...] = (
    ("91", "LIMITED_LIABILITY", "有限公司", 0.62),
    ("91", "JOINT_STOCK", "股份有限公司", 0.08),
    ("92", "INDIVIDUAL_BUSINESS", "经营部", 0.10),
    ("12", "PUBLIC_INSTITUTION", "服务中心", 0.05),
    ("52", "SOCIAL_ORGANISATION", "协会", 0.05),
    ("N2", "COLLECTIVE", "农民专业合作社", 0.05),
    ("Y1", "OTHER", "联合会", 0.05),
)
_MOBILE_PREFIXES = (*range(130, 140), 150, 151, 152, 153, 155, 156, 157, 158, 159, *range(180, 190),
                    191, 193, 195, 197, 198, 199)
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")
_RMS: tuple[tuple[str, str], ...] = tuple(
    (f"E{100101 + i}", n) for i, n in enumerate(
        ("王建国", "李秀英", "张伟", "刘洋", "陈静", "杨磊", "黄敏", "赵强", "吴芳", "周杰", "徐娜", "孙涛")))
# malformed mobiles: (how, expected code)
_BAD_MOBILES: tuple[tuple[str, str], ...] = (
    ("truncated", "invalid_phone"), ("too_long", "invalid_phone"), ("hotline", "invalid_phone"),
    ("placeholder", "unparsable_phone"),
)
_EPOCH = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)
_SPAN_DAYS = 3650


@dataclass(frozen=True, slots=True)
class SyntheticAddress:
    """A postal address (the street detail is synthetic)."""

    province: str
    city: str
    district: str
    adcode: str
    street: str
    postcode: str

    @property
    def full(self) -> str:
        """One-line address as a Chinese source system would hold it (``北京市朝阳区人民路12号…``)."""
        city = "" if self.city == self.province else self.city
        return f"{self.province}{city}{self.district}{self.street}"


@dataclass(frozen=True, slots=True)
class SyntheticConsent:
    purpose: str
    status: str
    legal_basis: str
    captured_at: dt.datetime
    withdrawn_at: dt.datetime | None = None
    separate_consent: bool = False
    channel: str = "BRANCH"
    notice_version: str = "2024.1"


@dataclass(frozen=True, slots=True)
class SyntheticCustomer:
    """One synthetic customer, as a source system would hold it (values in clear, defects included).

    ``party_type`` is ``INDIVIDUAL`` or ``ORGANISATION``; organisation-only fields are ``None`` for individuals and
    vice versa. ``defect`` is ``None`` or one of :data:`DEFECT_KINDS`; ``expected_code`` is the validation error
    code a defective record must be rejected with and ``expected_flag`` the flag an accepted-with-flag record must
    carry. ``version`` starts at 1 and :func:`mutate` increments it.
    """

    index: int
    seed: int
    party_type: str
    cif: str
    defect: str | None
    expected_code: str | None
    expected_flag: str | None
    name: str | None                # legal name (Chinese)
    family_name: str | None         # individuals
    given_name: str | None          # individuals
    pinyin: str | None              # individuals: "ZHANG Sanfeng" (GB/T 28039, surname first)
    name_en: str | None             # organisations: English name
    id_scheme: str                  # CN_RIC or CN_USCC
    id_number: str                  # as the source holds it (15-digit, full-width or bad on defective records)
    gender: str | None              # MALE / FEMALE (individuals)
    birth_date: dt.date | None
    nationality: str | None
    occupation: str | None
    employer: str | None
    mobile: str | None              # 11 digits as the source holds it (malformed on defective records)
    email: str | None
    address: SyntheticAddress
    segment: str
    aum: Decimal
    aum_band: str
    currency: str
    rm_id: str
    rm_name: str
    branch_code: str
    branch_name: str
    cnaps_code: str
    risk_rating: str
    kyc_status: str
    kyc_last_review: dt.date
    kyc_next_review: dt.date
    pep: bool
    consents: tuple[SyntheticConsent, ...]
    lifecycle_stage: str
    created_at: dt.datetime
    updated_at: dt.datetime
    legal_form: str | None = None
    industry: str | None = None
    registered_at: dt.date | None = None
    registered_capital: Decimal | None = None
    size_class: str | None = None
    legal_rep_name: str | None = None
    legal_rep_id: str | None = None   # the legal representative's RIC
    version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_individual(self) -> bool:
        return self.party_type == "INDIVIDUAL"

    @property
    def should_validate(self) -> bool:
        """True when the record must be accepted by the canonical validators (no defect, or a flag-only one)."""
        return self.expected_code is None

    def to_party_dict(self) -> dict[str, Any]:
        """The canonical input dict (:func:`crmbridge.canonical.model.parse_party`) for this customer.

        ``party_id`` is left out (identity resolution assigns it); the CIF becomes a ``CIF`` identifier and a
        ``source_refs`` entry of system ``COREBANK``.
        """
        ind = self.is_individual
        identifiers: list[dict[str, Any]] = [
            {"scheme": self.id_scheme, "value": self.id_number, "is_primary": True,
             "issuing_country": "CN"},
            {"scheme": "CIF", "value": self.cif, "is_primary": True},
        ]
        contacts: list[dict[str, Any]] = []
        if self.mobile is not None:
            contacts.append({"type": "MOBILE", "value": self.mobile, "preferred": True,
                             "purposes": ["SERVICE", "ALERT"]})
        if self.email is not None:
            contacts.append({"type": "EMAIL", "value": self.email, "purposes": ["SERVICE", "STATEMENT"]})
        a = self.address
        data: dict[str, Any] = {
            "party_type": self.party_type,
            "lifecycle_stage": self.lifecycle_stage,
            "source_refs": [{"system": "COREBANK", "system_id": self.cif, "record_version": str(self.version),
                             "source_updated_at": self.updated_at}],
            "identifiers": identifiers,
            "contact_points": contacts,
            "addresses": [{"type": "RESIDENTIAL" if ind else "REGISTERED", "country": "CN",
                           "province": a.province, "city": a.city, "district": a.district, "adcode": a.adcode,
                           "street": a.street, "postcode": a.postcode, "raw": a.full}],
            "segment": {"code": self.segment, "source": "COREBANK"},
            "aum": {"amount": self.aum, "currency": self.currency, "band": self.aum_band,
                    "as_of": self.updated_at.date()},
            "relationship_manager": {"employee_id": self.rm_id, "name": self.rm_name,
                                     "branch_code": self.branch_code},
            "home_branch": {"branch_code": self.branch_code, "cnaps_code": self.cnaps_code,
                            "name": self.branch_name},
            "kyc": {"risk_rating": self.risk_rating, "kyc_status": self.kyc_status,
                    "last_review": self.kyc_last_review, "next_review": self.kyc_next_review,
                    "pep": self.pep, "sanctions_hit": False, "source": "COREBANK"},
            "consents": [{f.name: getattr(c, f.name) for f in dataclasses.fields(c)} for c in self.consents],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "source_updated_at": self.updated_at,
            "version": self.version,
        }
        if ind:
            if self.name is not None:
                data["name"] = {"legal_zh": self.name, "family_zh": self.family_name,
                                "given_zh": self.given_name, "pinyin": self.pinyin}
            data.update(gender=self.gender, date_of_birth=self.birth_date, nationality=self.nationality,
                        occupation=self.occupation, employer=self.employer)
        else:
            if self.name is not None:
                data["name"] = {"legal_zh": self.name, "en": self.name_en}
            data.update(
                legal_form=self.legal_form, industry=self.industry, registered_at=self.registered_at,
                registered_capital={"amount": self.registered_capital, "currency": "CNY"},
                size_class=self.size_class,
                legal_representative={"name": self.legal_rep_name, "role": "LEGAL_REPRESENTATIVE",
                                      "identifier": {"scheme": "CN_RIC", "value": self.legal_rep_id}},
            )
        return data


# --------------------------------------------------------------------------------------------------- building blocks


def _rng(seed: int, index: int, salt: str = "") -> random.Random:
    return random.Random(f"crmbridge-synthetic:{seed}:{index}{salt}")


def defect_for(index: int, bad_fraction: float, seed: int = 0) -> str | None:
    """The defect kind of record ``index`` (``None`` when it is a good record). See the module docstring."""
    if bad_fraction <= 0:
        return None
    if bad_fraction > 1:
        raise ValueError("bad_fraction must be between 0 and 1")
    f = Fraction(bad_fraction).limit_denominator(1_000_000)
    before, after = int(index * f), int((index + 1) * f)
    if after == before:
        return None
    return DEFECT_KINDS[(before + seed) % len(DEFECT_KINDS)]


def _ric(rng: random.Random, adcode: str, born: dt.date, male: bool) -> str:
    seq = rng.randrange(0, 500) * 2 + (1 if male else 0)
    body = f"{adcode}{born:%Y%m%d}{seq:03d}"
    return body + ric_check_digit(body)


def _uscc(rng: random.Random, prefix: str, adcode: str) -> str:
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # USCC alphabet: also valid GB 11714 body characters
    org_body = "".join(rng.choice(alphabet[:10]) for _ in range(6)) + "".join(
        rng.choice(alphabet) for _ in range(2))
    body = f"{prefix}{adcode}{org_body}{org_code_check_digit(org_body)}"
    return body + uscc_check_digit(body)


def _wrong(rng: random.Random, right: str, alphabet: str) -> str:
    return rng.choice([c for c in alphabet if c != right])


def _fullwidth(value: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in value)


def _mobile(rng: random.Random) -> str:
    return f"{rng.choice(_MOBILE_PREFIXES)}{rng.randrange(10**8):08d}"


def _bad_mobile(rng: random.Random) -> tuple[str, str]:
    how, code = rng.choice(_BAD_MOBILES)
    good = _mobile(rng)
    value = {"truncated": good[:10], "too_long": good + str(rng.randrange(10)),
             "hotline": rng.choice(("95566", "95588", "95533", "95599")),
             "placeholder": rng.choice(("n/a", "无", "-", "未知"))}[how]
    return value, code


def _aum(rng: random.Random, individual: bool) -> Decimal:
    lo, hi = (3.0, 7.7) if individual else (4.0, 8.5)  # log10 range: 1,000 .. 50 M (individuals)
    return Decimal(10 ** rng.uniform(lo, hi)).quantize(Decimal("0.01"))


def _band(amount: Decimal) -> str:
    from crmbridge.canonical.model import aum_band  # lazy: keeps this module free of pydantic at import

    return aum_band(amount)


def _individual_segment(amount: Decimal) -> str:
    if amount < 500_000:
        return "MASS"
    if amount < 1_000_000:
        return "AFFLUENT"
    if amount < 6_000_000:
        return "WEALTH"
    return "PRIVATE"


def _weighted(rng: random.Random, items: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([i for i, _ in items], weights=[w for _, w in items])[0]


def _name(rng: random.Random) -> tuple[str, str, str]:
    fam, fam_py = rng.choice(_COMPOUND if rng.random() < _COMPOUND_SHARE else _SINGLE)
    chars = [rng.choice(_GIVEN) for _ in range(rng.choice((1, 2, 2, 2)))]
    given = "".join(c for c, _ in chars)
    given_py = "".join(p for _, p in chars)
    return fam, given, f"{fam_py.upper()} {given_py.capitalize()}"


def _consents(rng: random.Random, created: dt.datetime, individual: bool) -> tuple[SyntheticConsent, ...]:
    out = [SyntheticConsent("SHARE_WITH_CRM_VENDOR", "GRANTED", "PIPL13_2_CONTRACT", created)]
    purposes = ("MARKETING_SMS", "MARKETING_EMAIL", "MARKETING_CALL") if individual else ("MARKETING_EMAIL",)
    for purpose in purposes:
        captured = created + dt.timedelta(minutes=rng.randrange(1, 60))
        roll = rng.random()
        if roll < 0.55:
            out.append(SyntheticConsent(purpose, "GRANTED", "PIPL13_1_CONSENT", captured, channel="MOBILE_APP"))
        elif roll < 0.9:
            out.append(SyntheticConsent(purpose, "DENIED", "PIPL13_1_CONSENT", captured, channel="BRANCH"))
        else:
            out.append(SyntheticConsent(purpose, "WITHDRAWN", "PIPL13_1_CONSENT", captured,
                                        withdrawn_at=captured + dt.timedelta(days=rng.randrange(30, 900)),
                                        channel="MOBILE_APP"))
    return tuple(out)


def _kyc(rng: random.Random, created: dt.datetime) -> tuple[str, str, dt.date, dt.date, bool]:
    rating = _weighted(rng, (("LOW", 70), ("MEDIUM", 22), ("HIGH", 7.5), ("PROHIBITED", 0.5)))
    last = (created + dt.timedelta(days=rng.randrange(0, 900))).date()
    years = {"LOW": 3, "MEDIUM": 2, "HIGH": 1, "PROHIBITED": 1}[rating]
    status = "VERIFIED" if rng.random() < 0.95 else "REVIEW_DUE"
    return rating, status, last, last.replace(year=last.year + years) if not (
        last.month == 2 and last.day == 29) else last + dt.timedelta(days=365 * years), rng.random() < 0.01


# --------------------------------------------------------------------------------------------------- generator


def customer_at(index: int, seed: int = 0, bad_fraction: float = 0.0) -> SyntheticCustomer:
    """Synthetic customer number ``index`` (0-based) of dataset ``seed``; independent of how many are generated."""
    if index < 0:
        raise ValueError("index must be >= 0")
    rng = _rng(seed, index)
    defect = defect_for(index, bad_fraction, seed)
    if defect == "bad_uscc_check":
        individual = False
    elif defect is not None:
        individual = True
    else:
        individual = rng.random() < INDIVIDUAL_SHARE
    adcode, province, city, district, postcode, since = rng.choice(
        _LEGACY_COUNTIES if defect == "legacy15_ric" else COUNTIES)
    created = _EPOCH + dt.timedelta(days=rng.randrange(_SPAN_DAYS), seconds=rng.randrange(86400))
    updated = created + dt.timedelta(days=rng.randrange(0, 400), seconds=rng.randrange(86400))
    street = (f"{rng.choice(_ROADS)}{rng.randrange(1, 400)}号"
              + (f"{rng.randrange(1, 30)}栋{rng.randrange(1, 6)}单元{rng.randrange(1, 33)}{rng.randrange(1, 5):02d}室"
                 if individual else f"{rng.randrange(1, 30)}层"))
    address = SyntheticAddress(province, city, district, adcode, street, postcode)
    amount = _aum(rng, individual)
    rm_id, rm_name = rng.choice(_RMS)
    branch_seq = rng.randrange(1, 4)
    branch_code = f"{adcode[:4]}{branch_seq:02d}"
    rating, kyc_status, last_review, next_review, pep = _kyc(rng, created)
    stage = _weighted(rng, (("ACTIVE", 85), ("DORMANT", 7), ("PROSPECT", 3), ("FROZEN", 2), ("CLOSED", 3)))
    mobile = _mobile(rng)
    expected_code: str | None = None
    expected_flag: str | None = None
    common: dict[str, Any] = dict(
        index=index, seed=seed, cif=f"8{index + 1:08d}", defect=defect, address=address, aum=amount,
        aum_band=_band(amount), currency="CNY", rm_id=rm_id, rm_name=rm_name, branch_code=branch_code,
        branch_name=f"{city if city != province else province}{district}支行",
        cnaps_code=f"999{adcode[:4]}{branch_seq:04d}0",
        risk_rating=rating, kyc_status=kyc_status, kyc_last_review=last_review, kyc_next_review=next_review,
        pep=pep, consents=_consents(rng, created, individual), lifecycle_stage=stage, created_at=created,
        updated_at=updated,
    )
    if individual:
        fam, given, pinyin = _name(rng)
        male = rng.random() < 0.5
        legacy = defect == "legacy15_ric"
        year = rng.randrange(max(since, 1950), 1990 if legacy else 2006)
        born = dt.date(year, 1, 1) + dt.timedelta(days=rng.randrange(365))
        ric = _ric(rng, adcode, born, male)
        id_number = ric
        if defect == "bad_ric_checksum":
            id_number, expected_code = ric[:17] + _wrong(rng, ric[17], "0123456789X"), "invalid_checksum"
        elif legacy:
            id_number, expected_flag = ric[:6] + ric[8:17], "legacy15"
        elif defect == "fullwidth_ric":
            id_number = _fullwidth(ric)
        elif defect == "malformed_mobile":
            mobile, expected_code = _bad_mobile(rng)
        elif defect == "missing_name":
            expected_code = "missing_name"
        no_name = defect == "missing_name"
        email_local = f"{pinyin.split()[1].lower()}.{pinyin.split()[0].lower()}{rng.randrange(100)}"
        return SyntheticCustomer(
            **common, party_type="INDIVIDUAL", expected_code=expected_code, expected_flag=expected_flag,
            name=None if no_name else fam + given, family_name=None if no_name else fam,
            given_name=None if no_name else given, pinyin=None if no_name else pinyin, name_en=None,
            id_scheme="CN_RIC", id_number=id_number, gender="MALE" if male else "FEMALE", birth_date=born,
            nationality="CN", occupation=rng.choice(_OCCUPATIONS),
            employer=f"{rng.choice(_EMPLOYER_WORDS)}{rng.choice(_INDUSTRIES)[1]}有限公司",
            mobile=mobile, email=f"{email_local}@{rng.choice(_EMAIL_DOMAINS)}",
            segment=_individual_segment(amount),
        )
    prefix, legal_form, suffix = _weighted_org(rng)
    industry, word = rng.choice(_INDUSTRIES)
    trade = rng.choice(_EMPLOYER_WORDS)
    city_short = (city if city != province else province).removesuffix("市")
    uscc = _uscc(rng, prefix, adcode)
    if defect == "bad_uscc_check":
        uscc, expected_code = uscc[:17] + _wrong(rng, uscc[17], "0123456789ABCDEFGHJKLMNPQRTUWXY"), \
            "invalid_checksum"
    capital = Decimal(rng.choice((10, 50, 100, 200, 500, 1000, 5000, 10000))) * 10_000
    size = "MICRO" if capital < 1_000_000 else "SMALL" if capital < 5_000_000 else \
        "MEDIUM" if capital < 50_000_000 else "LARGE"
    segment = "STRATEGIC" if size == "LARGE" and rng.random() < 0.3 else size
    rep_fam, rep_given, _ = _name(rng)
    rep_born = dt.date(rng.randrange(max(since, 1950), 2006), 1, 1) + dt.timedelta(days=rng.randrange(365))
    return SyntheticCustomer(
        **common, party_type="ORGANISATION", expected_code=expected_code, expected_flag=None,
        name=f"{city_short}{trade}{word}{suffix}", family_name=None, given_name=None, pinyin=None,
        name_en=f"{city_short} {trade} Co." if legal_form in ("LIMITED_LIABILITY", "JOINT_STOCK") else None,
        id_scheme="CN_USCC", id_number=uscc, gender=None, birth_date=None, nationality=None, occupation=None,
        employer=None, mobile=mobile, email=f"contact{index}@{rng.choice(_EMAIL_DOMAINS)}", segment=segment,
        legal_form=legal_form, industry=industry,
        registered_at=(created - dt.timedelta(days=rng.randrange(30, 7000))).date(),
        registered_capital=capital, size_class=size, legal_rep_name=rep_fam + rep_given,
        legal_rep_id=_ric(rng, adcode, rep_born, rng.random() < 0.5),
    )


def _weighted_org(rng: random.Random) -> tuple[str, str, str]:
    i = rng.choices(range(len(_ORG_KINDS)), weights=[k[3] for k in _ORG_KINDS])[0]
    prefix, form, suffix, _ = _ORG_KINDS[i]
    return prefix, form, suffix


def generate_customers(n: int, seed: int = 0, bad_fraction: float = 0.0) -> Iterator[SyntheticCustomer]:
    """Customers ``0 .. n-1`` of dataset ``seed`` (lazy). Same ``(n, seed, bad_fraction)`` → same records."""
    if n < 0:
        raise ValueError("n must be >= 0")
    for i in range(n):
        yield customer_at(i, seed, bad_fraction)


def mutate(customer: SyntheticCustomer, seed: int = 0) -> SyntheticCustomer:
    """A "record modified" version: two or three fields changed, ``version`` + 1, ``updated_at`` later.

    Deterministic in ``(customer, seed)``. Changes are drawn from: e-mail, mobile, street, AUM (and band/segment),
    risk rating, a marketing consent. A defect, if any, is kept (and so is what a validator must do with it).
    """
    rng = _rng(customer.seed, customer.index, f":mutate:{seed}:{customer.version}")
    changes: dict[str, Any] = {}
    options = ["email", "street", "aum", "risk", "consent"]
    if customer.defect != "malformed_mobile":
        options.append("mobile")
    for what in rng.sample(options, k=rng.choice((2, 3))):
        if what == "email":
            local = customer.email.split("@")[0] if customer.email else f"c{customer.index}"
            changes["email"] = f"{local}.{rng.randrange(1000)}@{rng.choice(_EMAIL_DOMAINS)}"
        elif what == "mobile":
            changes["mobile"] = _mobile(rng)
        elif what == "street":
            changes["address"] = dataclasses.replace(
                customer.address, street=f"{rng.choice(_ROADS)}{rng.randrange(400, 800)}号")
        elif what == "aum":
            amount = (customer.aum * Decimal(str(round(rng.uniform(0.5, 1.8), 2)))).quantize(Decimal("0.01"))
            changes.update(aum=amount, aum_band=_band(amount))
            if customer.is_individual:
                changes["segment"] = _individual_segment(amount)
        elif what == "risk":
            changes["risk_rating"] = rng.choice([r for r in ("LOW", "MEDIUM", "HIGH") if r != customer.risk_rating])
        elif what == "consent":
            updated = customer.updated_at + dt.timedelta(days=1)
            flipped = tuple(
                dataclasses.replace(c, status="DENIED" if c.status == "GRANTED" else "GRANTED", withdrawn_at=None,
                                    captured_at=max(c.captured_at, updated))
                if c.purpose.startswith("MARKETING") and i == 1 else c
                for i, c in enumerate(customer.consents))
            changes["consents"] = flipped
    updated_at = customer.updated_at + dt.timedelta(days=rng.randrange(1, 60), seconds=rng.randrange(86400))
    return dataclasses.replace(customer, **changes, version=customer.version + 1, updated_at=updated_at)
