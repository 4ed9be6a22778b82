"""The preset deflate dictionaries sealed values may be compressed with (envelope format 3, see
:mod:`crmbridge.sync.security.crypto`).

A preset dictionary lets deflate refer back to text it has "already seen": the keys and common values of a
canonical party (about 2.2 KB of JSON, 1 KB deflated alone) then deflate to about 0.3 KB. It holds the shape of a
canonical record with made-up values only (no customer's data).

**Frozen**: a token names its dictionary by number and cannot be read with other bytes. A better dictionary is a
new number (and a new envelope format), never an edit of this one; ``tests/privacy`` pins its digest.
"""

from __future__ import annotations

__all__ = ["CANONICAL_PARTY_V1", "DICTIONARIES"]

_ORGANISATION = (
    '{"addresses":[{"adcode":null,"adr_lines":[],"city":"北京市","country":"CN","district":"朝阳区","postcode":null,'
    '"province":"北京市","raw":null,"street":"建国路1号2层","type":"REGISTERED","validated":false}],'
    '"aum":{"amount":"1000000.00","as_of":null,"band":"500K_6M","currency":"CNY"},"beneficial_owners":[],'
    '"consents":[{"captured_at":"2025-01-01T00:00:00Z","channel":"BRANCH","evidence_ref":null,'
    '"legal_basis":"PIPL13_1_CONSENT","notice_version":null,"purpose":"MARKETING_EMAIL","separate_consent":false,'
    '"status":"DENIED","withdrawn_at":null}],"contact_points":[{"flags":[],"kind":"LANDLINE","preferred":true,'
    '"purposes":[],"type":"PHONE","value":"+861000000000","verified":true}],"created_at":null,"deleted_at":null,'
    '"home_branch":{"branch_code":"110101","cnaps_code":null,"name":null},"identifiers":[{"expires_on":null,'
    '"flags":[],"is_primary":true,"issued_on":null,"issuer":null,"issuing_country":"CN","scheme":"CN_USCC",'
    '"value":"91110000000000000X","verified":null}],"industry":null,"kyc":{"kyc_status":"PENDING",'
    '"last_review":null,"next_review":null,"pep":false,"risk_rating":"HIGH","sanctions_hit":false,"source":null},'
    '"legal_form":null,"legal_representative":null,"lifecycle_stage":"PROSPECT","merged_into":null,'
    '"name":{"en":null,"legal_zh":"北京科技投资管理有限公司","short":null},"party_type":"ORGANISATION",'
    '"registered_at":"2000-01-01","registered_capital":null,"relationship_manager":{"branch_code":null,'
    '"employee_id":"E100000","name":null},"segment":{"code":"MEDIUM","source":null,"tier":null},'
    '"size_class":null,"source_refs":[{"object":null,"system":"T24","system_id":"100000000"}]}'
)
_INDIVIDUAL = (
    '{"addresses":[{"adcode":null,"adr_lines":[],"city":"上海市","country":"CN","district":"浦东新区",'
    '"postcode":null,"province":"上海市","raw":null,"street":"世纪大道10号3栋2单元1001室","type":"RESIDENTIAL",'
    '"validated":false}],"aum":{"amount":"50000.00","as_of":null,"band":"50K_500K","currency":"CNY"},'
    '"consents":[{"captured_at":"2025-01-01T00:00:00Z","channel":"BRANCH","evidence_ref":null,'
    '"legal_basis":"PIPL13_1_CONSENT","notice_version":null,"purpose":"MARKETING_EMAIL","separate_consent":false,'
    '"status":"GRANTED","withdrawn_at":null},{"captured_at":"2025-01-01T00:00:00Z","channel":"BRANCH",'
    '"evidence_ref":null,"legal_basis":"PIPL13_1_CONSENT","notice_version":null,"purpose":"MARKETING_SMS",'
    '"separate_consent":false,"status":"GRANTED","withdrawn_at":null},{"captured_at":"2025-01-01T00:00:00Z",'
    '"channel":"BRANCH","evidence_ref":null,"legal_basis":"PIPL13_2_CONTRACT","notice_version":null,'
    '"purpose":"SHARE_WITH_CRM_VENDOR","separate_consent":false,"status":"GRANTED","withdrawn_at":null}],'
    '"contact_points":[{"flags":[],"kind":"MOBILE","preferred":false,"purposes":[],"type":"MOBILE",'
    '"value":"+8613000000000","verified":false},{"flags":[],"kind":null,"preferred":false,"purposes":[],'
    '"type":"EMAIL","value":"name@example.com","verified":false}],"created_at":null,"date_of_birth":"1990-01-01",'
    '"deleted_at":null,"employer":null,"gender":"MALE","home_branch":{"branch_code":"310101","cnaps_code":null,'
    '"name":null},"identifiers":[{"expires_on":null,"flags":[],"is_primary":true,"issued_on":null,"issuer":null,'
    '"issuing_country":"CN","scheme":"CN_RIC","value":"310101199001010000","verified":null}],'
    '"kyc":{"kyc_status":"VERIFIED","last_review":null,"next_review":null,"pep":false,"risk_rating":"MEDIUM",'
    '"sanctions_hit":false,"source":null},"lifecycle_stage":"ACTIVE","merged_into":null,"name":{"aliases":[],'
    '"en":null,"family_zh":"王","given_zh":"小明","legal_zh":"王小明","pinyin":null},"nationality":null,'
    '"occupation":null,"party_id":"00000000-0000-0000-0000-000000000000","party_type":"INDIVIDUAL",'
    '"relationship_manager":{"branch_code":null,"employee_id":"E100000","name":null},'
    '"segment":{"code":"MASS","source":null,"tier":null},"source_refs":[{"object":null,"system":"FLEXCUBE",'
    '"system_id":"000000000"}]}'
)

#: dictionary 1: canonical parties (an organisation, then an individual: deflate finds the nearer one first)
CANONICAL_PARTY_V1 = (_ORGANISATION + _INDIVIDUAL).encode("utf-8")

#: dictionary number → bytes (the number is what a token's envelope format names)
DICTIONARIES: dict[int, bytes] = {1: CANONICAL_PARTY_V1}
