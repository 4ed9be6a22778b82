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
Marketing_Stage      text (20)             both         ACQUISITION|GROWTH|RETENTION|WIN_BACK (derived by rules)
Churn_Risk           boolean               both         churn-risk flag (derived by rules)
==================== ===================== ============ ================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["AUM_BANDS", "CAMPAIGNS", "CASES", "CUSTOM_FIELDS", "FieldDef", "HOLDING_STATUSES", "LIFECYCLE", "MODULES",
           "ModuleDef", "PRODUCT_TYPES", "holdings_module"]

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

    def render(self, module: str, index: int, module_id: str, number: int | None = None) -> dict[str, Any]:
        """This field as ``/settings/fields`` returns it (every key airbyte and the SDK read is present)."""
        fid = str(5725767000000002000 + (number if number is not None else _MODULE_NUMBER[module]) * 1000 + index)
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
            "lookup": ({"module": {"api_name": self.lookup, "id": _module_id(self.lookup)},
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
    number: int = 0               # position in the org's module list (ids derive from it)
    generated_type: str = "default"   # default | custom (``/settings/modules``, OAS enum)
    plural: str = ""              # plural label (a custom module's API name may differ: CustomModule1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {f.api_name: f for f in self.fields})

    @property
    def id(self) -> str:
        return str(5725767000000002000 + self.number * 100 + 75)

    def field(self, api_name: str) -> FieldDef | None:
        return self._index.get(api_name)  # type: ignore[attr-defined,no-any-return]

    def render(self) -> dict[str, Any]:
        return {
            "api_name": self.api_name, "module_name": self.plural or self.api_name, "id": self.id,
            "singular_label": self.singular, "plural_label": self.plural or self.api_name, "api_supported": True,
            "generated_type": self.generated_type, "status": "visible", "visible": True, "creatable": True,
            "editable": True, "deletable": True, "viewable": True, "convertable": False,
            "sequence_number": self.number, "modified_time": None,
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
        # derived by the segmentation and lifecycle rules (docs/rules.md §7): extension fields of the party
        FieldDef("Marketing_Stage", "Marketing Stage", "text", 20, custom=True),
        FieldDef("Churn_Risk", "Churn Risk", "boolean", custom=True),
    )


_SYSTEM = (
    FieldDef("Created_By", "Created By", "ownerlookup", read_only=True),
    FieldDef("Modified_By", "Modified By", "ownerlookup", read_only=True),
    FieldDef("Created_Time", "Created Time", "datetime", read_only=True),
    FieldDef("Modified_Time", "Modified Time", "datetime", read_only=True),
    FieldDef("Last_Activity_Time", "Last Activity Time", "datetime", read_only=True),
)

CONTACTS = ModuleDef("Contacts", "Contact", "Email", "Full_Name", number=3, fields=(
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

ACCOUNTS = ModuleDef("Accounts", "Account", "Account_Name", "Account_Name", number=2, fields=(
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

#: Cases (docs/vendors/zoho.md §14): the standard fields of the SDK's ``Field.Cases`` that need no module the
#: simulator lacks (Product_Name → Products and Deal_Name → Deals are left out), plus the bank's custom fields
CASES = ModuleDef("Cases", "Case", "Subject", "Subject", number=7, fields=(
    FieldDef("Owner", "Case Owner", "ownerlookup"),
    FieldDef("Case_Number", "Case Number", "autonumber", 30, read_only=True),
    FieldDef("Subject", "Subject", "text", 255, mandatory=True),
    FieldDef("Status", "Status", "picklist", 120, mandatory=True,
             picklist=("New", "Escalated", "On Hold", "Closed")),
    FieldDef("Priority", "Priority", "picklist", 120, picklist=("-None-", "High", "Medium", "Low")),
    FieldDef("Case_Origin", "Case Origin", "picklist", 120, picklist=("-None-", "Email", "Phone", "Web")),
    FieldDef("Case_Reason", "Case Reason", "picklist", 120,
             picklist=("-None-", "User did not attend any training", "Complex functionality",
                       "Existing problem", "Instructions not clear", "New problem")),
    FieldDef("Type", "Type", "picklist", 120, picklist=("-None-", "Question", "Problem", "Feature Request")),
    FieldDef("Account_Name", "Account Name", "lookup", lookup="Accounts"),
    FieldDef("Related_To", "Related To", "lookup", lookup="Contacts"),
    FieldDef("Reported_By", "Reported By", "text", 120),
    FieldDef("Email", "Email", "email", 100),
    FieldDef("Phone", "Phone", "phone", 30),
    FieldDef("Description", "Description", "textarea", 32000),
    FieldDef("Solution", "Solution", "textarea", 32000),
    FieldDef("Internal_Comments", "Internal Comments", "textarea", 32000),
    *_SYSTEM,
    FieldDef("Case_Key", "Case Key", "text", 64, unique=True, custom=True),
    FieldDef("Complaint_Category", "Complaint Category", "text", 20, custom=True),
    FieldDef("Due_Date", "Due Date", "date", custom=True),
    FieldDef("SLA_Breached", "SLA Breached", "boolean", custom=True),
    FieldDef("Bank_Complaint_ID", "Bank Complaint ID", "text", 64, custom=True),
    FieldDef("Bank_Status", "Bank Status", "text", 40, custom=True),
))

#: Campaigns (docs/vendors/zoho.md §15): the SDK's ``Field.Campaigns`` without Currency (multi-currency orgs only)
CAMPAIGNS = ModuleDef("Campaigns", "Campaign", "Campaign_Name", "Campaign_Name", number=9, fields=(
    FieldDef("Owner", "Campaign Owner", "ownerlookup"),
    FieldDef("Campaign_Name", "Campaign Name", "text", 120, mandatory=True),
    FieldDef("Type", "Type", "picklist", 120,
             picklist=("-None-", "Conference", "Webinar", "Trade Show", "Public Relations", "Partners",
                       "Referral Program", "Advertisement", "Banner Ads", "Direct mail", "Email", "Telemarketing",
                       "Others")),
    FieldDef("Status", "Status", "picklist", 120,
             picklist=("-None-", "Planning", "Active", "Inactive", "Complete")),
    FieldDef("Start_Date", "Start Date", "date"),
    FieldDef("End_Date", "End Date", "date"),
    FieldDef("Parent_Campaign", "Parent Campaign", "lookup", lookup="Campaigns"),
    FieldDef("Budgeted_Cost", "Budgeted Cost", "currency", 16, decimal_place=2),
    FieldDef("Actual_Cost", "Actual Cost", "currency", 16, decimal_place=2),
    FieldDef("Expected_Revenue", "Expected Revenue", "currency", 16, decimal_place=2),
    FieldDef("Expected_Response", "Expected Response", "integer", 9),
    FieldDef("Num_sent", "Numbers sent", "integer", 9),
    FieldDef("Description", "Description", "textarea", 32000),
    *_SYSTEM,
))

#: product families of a holding (canonical Holding.product_family)
PRODUCT_TYPES = ("DEPOSIT", "WEALTH", "FUND", "INSURANCE", "LOAN", "CARD")
HOLDING_STATUSES = ("ACTIVE", "DORMANT", "FROZEN", "MATURED", "CLOSED")


def holdings_module(api_name: str = "Holdings", *, plural: str = "Holdings", number: int = 61) -> ModuleDef:
    """The bank's custom module for product holdings under the API name the org gave it (``Holdings``, or
    ``CustomModule1`` when the module was created without one; docs/vendors/zoho.md §13).

    Custom modules have the system ``Name`` field (their duplicate-check field) and an owner; the rest are the
    bank's fields, ``Holding_Key`` unique (the upsert key) and lookups to Contacts and Accounts.
    """
    return ModuleDef(api_name, "Holding", "Name", "Name", number=number, generated_type="custom", plural=plural,
                     fields=(
        FieldDef("Owner", "Holding Owner", "ownerlookup"),
        FieldDef("Name", "Holding Name", "text", 120, mandatory=True),
        FieldDef("Holding_Key", "Holding Key", "text", 64, unique=True, custom=True),
        FieldDef("Contact", "Contact", "lookup", lookup="Contacts", custom=True),
        FieldDef("Account", "Account", "lookup", lookup="Accounts", custom=True),
        FieldDef("Party_ID", "Party ID", "text", 64, custom=True),
        FieldDef("Product_Type", "Product Type", "picklist", 120, custom=True, picklist=("-None-", *PRODUCT_TYPES)),
        FieldDef("Product_Code", "Product Code", "text", 40, custom=True),
        FieldDef("Product_Name", "Product Name", "text", 120, custom=True),
        FieldDef("Holding_Status", "Holding Status", "picklist", 120, custom=True,
                 picklist=("-None-", *HOLDING_STATUSES)),
        FieldDef("Account_Number_Masked", "Account Number (masked)", "text", 40, custom=True),
        FieldDef("Currency_Code", "Currency Code", "text", 3, custom=True),
        FieldDef("Balance_Band", "Balance Band", "text", 20, custom=True),
        FieldDef("Open_Date", "Open Date", "date", custom=True),
        FieldDef("Close_Date", "Close Date", "date", custom=True),
        FieldDef("Maturity_Date", "Maturity Date", "date", custom=True),
        *_SYSTEM,
    ))


MODULES: dict[str, ModuleDef] = {m.api_name: m for m in (CONTACTS, ACCOUNTS, CASES, CAMPAIGNS)}
_MODULE_NUMBER = {m.api_name: m.number for m in MODULES.values()}


def _module_id(api_name: str) -> str:
    mod = MODULES.get(api_name)
    return mod.id if mod is not None else ""

#: the bank's custom fields per module
CUSTOM_FIELDS: dict[str, tuple[str, ...]] = {m.api_name: tuple(f.api_name for f in m.fields if f.custom)
                                             for m in MODULES.values()}
