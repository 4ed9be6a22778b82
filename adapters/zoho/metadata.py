"""Field metadata the Zoho simulator serves: standard Contacts and Accounts fields (docs/vendors/zoho.md §10)
plus the bank's custom fields, rendered in the shape of ``GET /crm/v8/settings/fields`` (§9).

The bank's custom fields are named as ``mappings/zoho_contacts.yaml`` and ``mappings/zoho_accounts.yaml`` use them:

==================== ===================== ============ ================================================
API name             type (length)         module       holds
==================== ===================== ============ ================================================
Party_ID             text (64), unique     both         crmbridge's party_id, the upsert key
ID_Number_Masked     text (30)             Contacts     masked RIC / passport number
SMS_Opt_In           boolean               Contacts     SMS marketing consent
USCC                 text (18), unique     Accounts     统一社会信用代码
Industry_Code        text (5)              Accounts     GB/T 4754 code
Customer_Segment     picklist              both         Mass|Affluent|Wealth|Private; Micro|Small|...|Strategic
AUM_Band             text (20)             both         LT_50K|50K_500K|500K_6M|6M_30M|GE_30M (never the amount)
RM_Employee_ID       text (40)             both         relationship manager's employee id
Home_Branch          text (20)             both         branch code
Lifecycle_Stage      text (20)             both         PROSPECT ... MERGED
Risk_Rating          picklist              both         LOW|MEDIUM|HIGH|PROHIBITED (not mapped yet)
KYC_Next_Review      date                  both         next KYC review (not mapped yet)
Customer_Since       text (20)             both         date the relationship began, masked (an extension field)
==================== ===================== ============ ================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["AUM_BANDS", "CUSTOM_FIELDS", "FieldDef", "LIFECYCLE", "MODULES", "ModuleDef"]

_JSON_TYPE = {
    "text": "string", "textarea": "string", "email": "string", "phone": "string", "website": "string",
    "picklist": "string", "autonumber": "string", "date": "string", "datetime": "string",
    "multiselectpicklist": "jsonarray", "integer": "integer", "bigint": "string", "double": "double",
    "currency": "double", "percent": "double", "decimal": "double", "boolean": "boolean",
    "lookup": "jsonobject", "ownerlookup": "jsonobject", "userlookup": "jsonobject",
}


@dataclass(frozen=True)
class FieldDef:
    api_name: str
    label: str
    data_type: str
    length: int | None = None
    mandatory: bool = False
    read_only: bool = False
    unique: bool = False
    custom: bool = False
    picklist: tuple[str, ...] = ()
    lookup: str | None = None
    decimal_place: int | None = None

    def render(self, module: str, index: int, module_id: str) -> dict[str, Any]:
        """This field as ``/settings/fields`` returns it (every key airbyte and the SDK read is present)."""
        fid = str(5725767000000002000 + _MODULE_NUMBER[module] * 1000 + index)
        return {
            "api_name": self.api_name,
            "id": fid,
            "field_label": self.label,
            "display_label": self.label,
            "data_type": self.data_type,
            "json_type": _JSON_TYPE.get(self.data_type, "string"),
            "length": self.length if self.length is not None else 0,
            "decimal_place": self.decimal_place,
            "system_mandatory": self.mandatory,
            "read_only": self.read_only,
            "field_read_only": self.read_only,
            "custom_field": self.custom,
            "visible": True,
            "column_name": self.api_name.upper(),
            "pick_list_values": [
                {"display_value": v, "actual_value": v, "id": str(int(fid) * 10 + i), "sequence_number": i + 1,
                 "type": "used", "colour_code": None}
                for i, v in enumerate(self.picklist)
            ],
            "lookup": ({"module": {"api_name": self.lookup, "id": _MODULE_IDS[self.lookup]},
                        "display_label": self.lookup, "api_name": self.lookup, "id": fid}
                       if self.lookup and self.data_type == "lookup" else {}),
            "currency": {"rounding_option": "normal", "precision": 2} if self.data_type == "currency" else {},
            "unique": {"casesensitive": "0"} if self.unique else {},
            "formula": {},
            "auto_number": {},
            "multiselectlookup": {},
            "subform": None,
            "crypt": None,
            "tooltip": None,
            "sortable": self.data_type not in ("textarea", "multiselectpicklist"),
            "searchable": True,
            "filterable": True,
            "created_source": "crm" if self.custom else "default",
            "webhook": self.data_type not in ("lookup", "ownerlookup"),
            "mass_update": not self.read_only and not self.unique,
            "quick_sequence_number": str(index + 1),
        }


@dataclass(frozen=True)
class ModuleDef:
    api_name: str
    singular: str
    duplicate_field: str          # the system duplicate-check field (§4.5)
    display_field: str            # what deleted records and lookups show as the name
    fields: tuple[FieldDef, ...]

    @property
    def id(self) -> str:
        return _MODULE_IDS[self.api_name]

    def field(self, api_name: str) -> FieldDef | None:
        return _FIELD_INDEX[self.api_name].get(api_name)

    def render(self) -> dict[str, Any]:
        return {
            "api_name": self.api_name, "module_name": self.api_name, "id": self.id,
            "singular_label": self.singular, "plural_label": self.api_name, "api_supported": True,
            "generated_type": "default", "status": "visible", "visible": True, "creatable": True,
            "editable": True, "deletable": True, "viewable": True, "convertable": False,
            "sequence_number": _MODULE_NUMBER[self.api_name], "modified_time": None,
            "profiles": [{"name": "Administrator", "id": "5725767000000026011"}],
        }


_SEGMENTS_IND = ("Mass", "Affluent", "Wealth", "Private")
_SEGMENTS_ORG = ("Micro", "Small", "Medium", "Large", "Strategic")
_RISK = ("LOW", "MEDIUM", "HIGH", "PROHIBITED")
#: AUM band labels the mappings write (never the amount)
AUM_BANDS = ("LT_50K", "50K_500K", "500K_6M", "6M_30M", "GE_30M")
#: lifecycle stages (canonical model)
LIFECYCLE = ("PROSPECT", "ONBOARDING", "ACTIVE", "DORMANT", "FROZEN", "CLOSED", "DECEASED", "DISSOLVED", "MERGED")


def _custom(segments: tuple[str, ...], organisation: bool) -> tuple[FieldDef, ...]:
    """The bank's custom fields, named as mappings/zoho_contacts.yaml and zoho_accounts.yaml use them."""
    if organisation:
        ids = (FieldDef("USCC", "USCC", "text", 18, unique=True, custom=True),
               FieldDef("Industry_Code", "Industry Code", "text", 5, custom=True))
    else:
        ids = (FieldDef("ID_Number_Masked", "ID Number (masked)", "text", 30, custom=True),
               FieldDef("SMS_Opt_In", "SMS Opt In", "boolean", custom=True))
    return (
        FieldDef("Party_ID", "Party ID", "text", 64, unique=True, custom=True),
        *ids,
        FieldDef("Customer_Segment", "Customer Segment", "picklist", 120, custom=True,
                 picklist=("-None-", *segments)),
        FieldDef("AUM_Band", "AUM Band", "text", 20, custom=True),
        FieldDef("RM_Employee_ID", "RM Employee ID", "text", 40, custom=True),
        FieldDef("Home_Branch", "Home Branch", "text", 20, custom=True),
        FieldDef("Lifecycle_Stage", "Lifecycle Stage", "text", 20, custom=True),
        FieldDef("Risk_Rating", "Risk Rating", "picklist", 120, custom=True, picklist=("-None-", *_RISK)),
        FieldDef("KYC_Next_Review", "KYC Next Review", "date", custom=True),
        # text, not date: personal data, so the CRM receives the masked form (``****-**-**``)
        FieldDef("Customer_Since", "Customer Since (masked)", "text", 20, custom=True),
    )


_SYSTEM = (
    FieldDef("Created_By", "Created By", "ownerlookup", read_only=True),
    FieldDef("Modified_By", "Modified By", "ownerlookup", read_only=True),
    FieldDef("Created_Time", "Created Time", "datetime", read_only=True),
    FieldDef("Modified_Time", "Modified Time", "datetime", read_only=True),
    FieldDef("Last_Activity_Time", "Last Activity Time", "datetime", read_only=True),
)

CONTACTS = ModuleDef("Contacts", "Contact", "Email", "Full_Name", (
    FieldDef("Owner", "Contact Owner", "ownerlookup"),
    FieldDef("Salutation", "Salutation", "picklist", 120, picklist=("-None-", "Mr.", "Mrs.", "Ms.", "Dr.", "Prof.")),
    FieldDef("First_Name", "First Name", "text", 40),
    FieldDef("Last_Name", "Last Name", "text", 80, mandatory=True),
    FieldDef("Full_Name", "Full Name", "text", 120, read_only=True),
    FieldDef("Account_Name", "Account Name", "lookup", lookup="Accounts"),
    FieldDef("Email", "Email", "email", 100),
    FieldDef("Secondary_Email", "Secondary Email", "email", 100),
    FieldDef("Title", "Title", "text", 100),
    FieldDef("Department", "Department", "text", 100),
    FieldDef("Phone", "Phone", "phone", 30),
    FieldDef("Home_Phone", "Home Phone", "phone", 30),
    FieldDef("Other_Phone", "Other Phone", "phone", 30),
    FieldDef("Mobile", "Mobile", "phone", 30),
    FieldDef("Fax", "Fax", "phone", 30),
    FieldDef("Date_of_Birth", "Date of Birth", "date"),
    FieldDef("Lead_Source", "Lead Source", "picklist", 120,
             picklist=("-None-", "Advertisement", "Branch Walk-in", "Referral", "Web Site", "Partner")),
    FieldDef("Email_Opt_Out", "Email Opt Out", "boolean"),
    FieldDef("Mailing_Street", "Mailing Street", "text", 250),
    FieldDef("Mailing_City", "Mailing City", "text", 100),
    FieldDef("Mailing_State", "Mailing State", "text", 100),
    FieldDef("Mailing_Zip", "Mailing Zip", "text", 30),
    FieldDef("Mailing_Country", "Mailing Country", "text", 100),
    FieldDef("Description", "Description", "textarea", 32000),
    *_SYSTEM,
    *_custom(_SEGMENTS_IND, organisation=False),
))

ACCOUNTS = ModuleDef("Accounts", "Account", "Account_Name", "Account_Name", (
    FieldDef("Owner", "Account Owner", "ownerlookup"),
    FieldDef("Account_Name", "Account Name", "text", 200, mandatory=True),
    FieldDef("Account_Number", "Account Number", "text", 40),
    FieldDef("Account_Site", "Account Site", "text", 80),
    FieldDef("Parent_Account", "Parent Account", "lookup", lookup="Accounts"),
    FieldDef("Account_Type", "Account Type", "picklist", 120,
             picklist=("-None-", "Customer", "Prospect", "Partner", "Other")),
    FieldDef("Industry", "Industry", "picklist", 120,
             picklist=("-None-", "Manufacturing", "Retail", "Technology", "Finance", "Real Estate", "Other")),
    FieldDef("Ownership", "Ownership", "picklist", 120,
             picklist=("-None-", "State-owned", "Private", "Public", "Joint venture", "Other")),
    FieldDef("Rating", "Rating", "picklist", 120, picklist=("-None-", "Acquired", "Active", "Project Cancelled")),
    FieldDef("Employees", "Employees", "integer", 9),
    FieldDef("Annual_Revenue", "Annual Revenue", "currency", 16, decimal_place=2),
    FieldDef("SIC_Code", "SIC Code", "integer", 9),
    FieldDef("Ticker_Symbol", "Ticker Symbol", "text", 30),
    FieldDef("Phone", "Phone", "phone", 30),
    FieldDef("Fax", "Fax", "phone", 30),
    FieldDef("Website", "Website", "website", 255),
    FieldDef("Billing_Street", "Billing Street", "text", 250),
    FieldDef("Billing_City", "Billing City", "text", 100),
    FieldDef("Billing_State", "Billing State", "text", 100),
    FieldDef("Billing_Code", "Billing Code", "text", 30),
    FieldDef("Billing_Country", "Billing Country", "text", 100),
    FieldDef("Shipping_Street", "Shipping Street", "text", 250),
    FieldDef("Shipping_City", "Shipping City", "text", 100),
    FieldDef("Shipping_State", "Shipping State", "text", 100),
    FieldDef("Shipping_Code", "Shipping Code", "text", 30),
    FieldDef("Shipping_Country", "Shipping Country", "text", 100),
    FieldDef("Description", "Description", "textarea", 32000),
    *_SYSTEM,
    *_custom(_SEGMENTS_ORG, organisation=True),
))

MODULES: dict[str, ModuleDef] = {m.api_name: m for m in (CONTACTS, ACCOUNTS)}
_MODULE_NUMBER = {"Contacts": 3, "Accounts": 2}
_MODULE_IDS = {name: str(5725767000000002000 + n * 100 + 75) for name, n in _MODULE_NUMBER.items()}
_FIELD_INDEX = {m.api_name: {f.api_name: f for f in m.fields} for m in MODULES.values()}

#: the bank's custom fields per module
CUSTOM_FIELDS: dict[str, tuple[str, ...]] = {m.api_name: tuple(f.api_name for f in m.fields if f.custom)
                                             for m in MODULES.values()}
