"""Table and column definitions of the emulated organization.

Only the tables the bridge touches are modelled, with the columns, lengths, required levels and
choice values from the public Dataverse reference (facts §3.7 and the entity reference pages).
Everything else in the emulator (validation, $select/$filter, metadata endpoints, webhook
typing) is driven by these definitions, so adding a column here is enough to support it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# AttributeType values as the metadata API spells them.
STRING, MEMO, INTEGER, BIGINT, DOUBLE, MONEY, BOOLEAN = (
    "String",
    "Memo",
    "Integer",
    "BigInt",
    "Double",
    "Money",
    "Boolean",
)
DATETIME, GUID, PICKLIST, STATE, STATUS = (
    "DateTime",
    "Uniqueidentifier",
    "Picklist",
    "State",
    "Status",
)
LOOKUP, OWNER, CUSTOMER, ENTITYNAME = "Lookup", "Owner", "Customer", "EntityName"
LOOKUP_TYPES = frozenset({LOOKUP, OWNER, CUSTOMER})
CHOICE_TYPES = frozenset({PICKLIST, STATE, STATUS})


@dataclass(frozen=True)
class Column:
    """One column (attribute). ``options`` are (value, label) pairs; ``targets`` lookup tables."""

    name: str
    type: str
    max_length: int | None = None
    required: str = "None"
    custom: bool = False
    options: tuple[tuple[int, str], ...] = ()
    targets: tuple[str, ...] = ()
    system: bool = False  # set by the platform only (createdon, versionnumber ...)
    readable: bool = True  # False for write-only secrets such as serviceendpoint.authvalue
    default: Any = None
    status_states: tuple[tuple[int, int], ...] = ()  # statuscode value -> statecode value

    @property
    def is_lookup(self) -> bool:
        return self.type in LOOKUP_TYPES

    @property
    def web_name(self) -> str:
        """The property name the Web API uses: ``_x_value`` for lookups."""
        return f"_{self.name}_value" if self.is_lookup else self.name

    def nav_properties(self) -> dict[str, str]:
        """Single-valued navigation property name -> target table, used by ``@odata.bind``."""
        if not self.is_lookup:
            return {}
        if len(self.targets) == 1:
            return {self.name: self.targets[0]}
        navs = {f"{self.name}_{t}": t for t in self.targets}
        if self.type == OWNER:  # ownerid@odata.bind works for both owner types
            navs[self.name] = ""
        return navs

    def label(self, value: int) -> str | None:
        return next((lbl for v, lbl in self.options if v == value), None)


@dataclass
class Table:
    logical_name: str
    entity_set: str
    primary_id: str
    primary_name: str
    columns: dict[str, Column] = field(default_factory=dict)
    alternate_keys: tuple[tuple[str, ...], ...] = ()
    change_tracking: bool = True
    object_type_code: int = 10000
    one_to_many: dict[str, tuple[str, str]] = field(default_factory=dict)  # nav -> (table, col)

    @property
    def odata_type(self) -> str:
        return f"Microsoft.Dynamics.CRM.{self.logical_name}"

    def column_by_web_name(self, web_name: str) -> Column | None:
        if web_name.startswith("_") and web_name.endswith("_value"):
            col = self.columns.get(web_name[1:-6])
            return col if col is not None and col.is_lookup else None
        col = self.columns.get(web_name)
        return col if col is not None and not col.is_lookup else None

    def nav_property(self, nav: str) -> tuple[Column, str] | None:
        for col in self.columns.values():
            target = col.nav_properties().get(nav)
            if target is not None:
                return col, target
        return None


def _s(name: str, length: int = 100, **kw: Any) -> Column:
    return Column(name, STRING, max_length=length, **kw)


def _sys(name: str, ctype: str, **kw: Any) -> Column:
    return Column(name, ctype, system=True, **kw)


def _audit_columns(owned: bool = True) -> list[Column]:
    cols = [
        _sys("createdon", DATETIME),
        _sys("modifiedon", DATETIME),
        _sys("createdby", LOOKUP, targets=("systemuser",)),
        _sys("modifiedby", LOOKUP, targets=("systemuser",)),
        _sys("modifiedonbehalfby", LOOKUP, targets=("systemuser",)),
        _sys("versionnumber", BIGINT),
    ]
    if owned:
        cols += [
            Column("ownerid", OWNER, targets=("systemuser", "team"), required="SystemRequired"),
            _sys("owninguser", LOOKUP, targets=("systemuser",)),
            _sys("owningbusinessunit", LOOKUP, targets=("businessunit",)),
        ]
    return cols


def _person_columns(mobile_length: int) -> list[Column]:
    """Name, email, phone, address columns shared by lead and contact."""
    cols = [
        _sys("fullname", STRING, max_length=160),
        _sys("yomifullname", STRING, max_length=450),
        _s("firstname", 50, required="Recommended"),
        _s("lastname", 50, required="ApplicationRequired"),
        _s("middlename", 50),
        _s("jobtitle", 100),
        _s("emailaddress1", 100),
        _s("emailaddress2", 100),
        _s("emailaddress3", 100),
        _s("telephone1", 50),
        _s("telephone2", 50),
        _s("telephone3", 50),
        _s("mobilephone", mobile_length),
        _s("websiteurl", 200),
        Column("description", MEMO, max_length=2000),
        Column("donotemail", BOOLEAN, default=False),
        Column("donotbulkemail", BOOLEAN, default=False),
        Column("donotphone", BOOLEAN, default=False),
        Column("followemail", BOOLEAN, default=True),
        Column(
            "preferredcontactmethodcode",
            PICKLIST,
            default=1,
            options=((1, "Any"), (2, "Email"), (3, "Phone"), (4, "Fax"), (5, "Mail")),
        ),
    ]
    for part, length in (
        ("line1", 250),
        ("line2", 250),
        ("line3", 250),
        ("city", 80),
        ("stateorprovince", 50),
        ("postalcode", 20),
        ("country", 80),
        ("telephone1", 50),
    ):
        cols.append(_s(f"address1_{part}", length))
    cols += [Column("address1_latitude", DOUBLE), Column("address1_longitude", DOUBLE)]
    return cols


AC_SYNCSTATUS_OPTIONS = (
    (100000000, "Not synced"),
    (100000001, "Synced"),
    (100000002, "Error"),
    (100000003, "Pending"),
)


# A demo custom choice column, for mapping an ActiveCampaign dropdown to an option set.
AC_REGION_OPTIONS = (
    (100010000, "North America"),
    (100010001, "Europe"),
    (100010002, "Asia Pacific"),
)


def _activecampaign_columns() -> list[Column]:
    """The solution's custom columns plus demo custom columns for custom-field mapping."""
    return [
        _s("ac_activecampaigncontactid", 100, custom=True),
        Column("ac_lastsyncedon", DATETIME, custom=True),
        Column("ac_syncstatus", PICKLIST, custom=True, options=AC_SYNCSTATUS_OPTIONS),
        _s("ac_industry", 100, custom=True),
        Column("ac_leadscore", INTEGER, custom=True),
        Column("ac_region", PICKLIST, custom=True, options=AC_REGION_OPTIONS),
    ]


LEAD_SOURCES = (
    (1, "Advertisement"),
    (2, "Employee Referral"),
    (3, "External Referral"),
    (4, "Partner"),
    (5, "Public Relations"),
    (6, "Seminar"),
    (7, "Trade Show"),
    (8, "Web"),
    (9, "Word of Mouth"),
    (10, "Other"),
)


def _lead() -> Table:
    cols = (
        [Column("leadid", GUID, system=True)]
        + _person_columns(20)
        + [
            _s("companyname", 100, required="Recommended"),
            _s("subject", 300),
            Column("parentaccountid", LOOKUP, targets=("account",)),
            Column("parentcontactid", LOOKUP, targets=("contact",)),
            Column("leadsourcecode", PICKLIST, options=LEAD_SOURCES),
            Column(
                "leadqualitycode",
                PICKLIST,
                default=2,
                options=((1, "Hot"), (2, "Warm"), (3, "Cold")),
            ),
            Column("numberofemployees", INTEGER),
            Column("revenue", MONEY),
            Column(
                "statecode",
                STATE,
                default=0,
                options=((0, "Open"), (1, "Qualified"), (2, "Disqualified")),
            ),
            Column(
                "statuscode",
                STATUS,
                default=1,
                options=(
                    (1, "New"),
                    (2, "Contacted"),
                    (3, "Qualified"),
                    (4, "Lost"),
                    (5, "Cannot Contact"),
                    (6, "No Longer Interested"),
                    (7, "Canceled"),
                ),
                status_states=((1, 0), (2, 0), (3, 1), (4, 2), (5, 2), (6, 2), (7, 2)),
            ),
        ]
        + _activecampaign_columns()
        + _audit_columns()
    )
    return Table(
        "lead",
        "leads",
        "leadid",
        "fullname",
        {c.name: c for c in cols},
        alternate_keys=(("emailaddress1",),),
        object_type_code=4,
        one_to_many={"Lead_Annotation": ("annotation", "objectid")},
    )


def _contact() -> Table:
    cols = (
        [Column("contactid", GUID, system=True)]
        + _person_columns(50)
        + [
            Column("parentcustomerid", CUSTOMER, targets=("account", "contact")),
            _sys("parentcustomeridtype", ENTITYNAME),
            Column("leadsourcecode", PICKLIST, options=((1, "Default Value"),)),
            Column("birthdate", DATETIME),
            Column("statecode", STATE, default=0, options=((0, "Active"), (1, "Inactive"))),
            Column(
                "statuscode",
                STATUS,
                default=1,
                options=((1, "Active"), (2, "Inactive")),
                status_states=((1, 0), (2, 1)),
            ),
        ]
        + _activecampaign_columns()
        + _audit_columns()
    )
    return Table(
        "contact",
        "contacts",
        "contactid",
        "fullname",
        {c.name: c for c in cols},
        alternate_keys=(("emailaddress1",),),
        object_type_code=2,
        one_to_many={"Contact_Annotation": ("annotation", "objectid")},
    )


def _account() -> Table:
    cols = [
        Column("accountid", GUID, system=True),
        _s("name", 160, required="ApplicationRequired"),
        _s("accountnumber", 20),
        _s("telephone1", 50),
        _s("emailaddress1", 100),
        _s("websiteurl", 200),
        Column("originatingleadid", LOOKUP, targets=("lead",)),
        Column("primarycontactid", LOOKUP, targets=("contact",)),
        Column("statecode", STATE, default=0, options=((0, "Active"), (1, "Inactive"))),
        Column(
            "statuscode",
            STATUS,
            default=1,
            options=((1, "Active"), (2, "Inactive")),
            status_states=((1, 0), (2, 1)),
        ),
    ] + _audit_columns()
    return Table(
        "account", "accounts", "accountid", "name", {c.name: c for c in cols}, object_type_code=1
    )


def _systemuser() -> Table:
    cols = [
        Column("systemuserid", GUID, system=True),
        _s("fullname", 200),
        _s("firstname", 64),
        _s("lastname", 64),
        _s("domainname", 1024),
        _s("internalemailaddress", 100),
        Column("azureactivedirectoryobjectid", GUID),
        Column("applicationid", GUID),
        Column("isdisabled", BOOLEAN, default=False),
        Column(
            "accessmode",
            PICKLIST,
            default=0,
            options=(
                (0, "Read-Write"),
                (1, "Administrative"),
                (2, "Read"),
                (3, "Support User"),
                (4, "Non-interactive"),
                (5, "Delegated Admin"),
            ),
        ),
        Column("businessunitid", LOOKUP, targets=("businessunit",)),
    ] + _audit_columns(owned=False)
    return Table(
        "systemuser",
        "systemusers",
        "systemuserid",
        "fullname",
        {c.name: c for c in cols},
        object_type_code=8,
    )


def _simple(
    logical: str,
    entity_set: str,
    pk: str,
    name_col: str,
    extra: list[Column],
    code: int,
    owned: bool = False,
    **kw: Any,
) -> Table:
    cols = [Column(pk, GUID, system=True), _s(name_col, 256)] + extra + _audit_columns(owned)
    return Table(
        logical, entity_set, pk, name_col, {c.name: c for c in cols}, object_type_code=code, **kw
    )


ENABLED_STATES = dict(
    statecode=Column("statecode", STATE, default=0, options=((0, "Enabled"), (1, "Disabled"))),
    statuscode=Column(
        "statuscode",
        STATUS,
        default=1,
        options=((1, "Enabled"), (2, "Disabled")),
        status_states=((1, 0), (2, 1)),
    ),
)


def _plugin_tables() -> list[Table]:
    endpoint = _simple(
        "serviceendpoint",
        "serviceendpoints",
        "serviceendpointid",
        "name",
        [
            _s("url", 2000),
            _s("description", 2000),
            Column(
                "contract",
                PICKLIST,
                required="SystemRequired",
                options=(
                    (1, "OneWay"),
                    (2, "Queue"),
                    (3, "Rest"),
                    (4, "TwoWay"),
                    (5, "Topic"),
                    (6, "Queue (Persistent)"),
                    (7, "Event Hub"),
                    (8, "Webhook"),
                    (9, "Event Grid"),
                    (10, "Managed Data Lake"),
                ),
            ),
            Column(
                "authtype",
                PICKLIST,
                options=(
                    (1, "ACS"),
                    (2, "SAS Key"),
                    (3, "SAS Token"),
                    (4, "Webhook Key"),
                    (5, "Http Header"),
                    (6, "Http Query String"),
                    (7, "Connection String"),
                    (8, "Access Key"),
                ),
            ),
            Column("authvalue", STRING, max_length=2048, readable=False),
            _sys("isauthvalueset", BOOLEAN),
            Column(
                "messageformat",
                PICKLIST,
                default=2,
                options=((1, "Binary XML"), (2, "Json"), (3, "Text XML")),
            ),
            Column(
                "connectionmode", PICKLIST, default=1, options=((1, "Normal"), (2, "Federated"))
            ),
            Column(
                "userclaim",
                PICKLIST,
                default=1,
                options=((1, "None"), (2, "UserId"), (3, "UserInfo")),
            ),
            Column("messagecharset", PICKLIST, default=0, options=((0, "Default"), (1, "UTF8"))),
            Column(
                "namespaceformat",
                PICKLIST,
                options=((1, "Namespace Name"), (2, "Namespace Address")),
            ),
            _s("path", 160),
            _s("solutionnamespace", 160),
            _s("saskeyname", 256),
            Column("saskey", STRING, max_length=256, readable=False),
            Column("sastoken", STRING, max_length=256, readable=False),
        ],
        4618,
        one_to_many={
            "serviceendpoint_sdkmessageprocessingstep": ("sdkmessageprocessingstep", "eventhandler")
        },
    )
    message = _simple(
        "sdkmessage", "sdkmessages", "sdkmessageid", "name", [], 4606, change_tracking=False
    )
    msg_filter = _simple(
        "sdkmessagefilter",
        "sdkmessagefilters",
        "sdkmessagefilterid",
        "name",
        [
            Column("sdkmessageid", LOOKUP, targets=("sdkmessage",)),
            Column("primaryobjecttypecode", ENTITYNAME),
            Column("secondaryobjecttypecode", ENTITYNAME),
            Column("iscustomprocessingstepallowed", BOOLEAN, default=True),
        ],
        4607,
        change_tracking=False,
    )
    step = _simple(
        "sdkmessageprocessingstep",
        "sdkmessageprocessingsteps",
        "sdkmessageprocessingstepid",
        "name",
        [
            _s("description", 256),
            Column(
                "stage",
                PICKLIST,
                default=40,
                options=(
                    (5, "Initial Pre-operation (For internal use only)"),
                    (10, "Pre-validation"),
                    (15, "Internal Pre-operation Before External Plugins (For internal use only)"),
                    (20, "Pre-operation"),
                    (25, "Internal Pre-operation After External Plugins (For internal use only)"),
                    (30, "Main Operation (For internal use only)"),
                    (35, "Internal Post-operation Before External Plugins (For internal use only)"),
                    (40, "Post-operation"),
                    (45, "Internal Post-operation After External Plugins (For internal use only)"),
                    (50, "Post-operation (Deprecated)"),
                    (55, "Final Post-operation (For internal use only)"),
                    (
                        80,
                        "Pre-Commit stage fired before transaction commit (For internal use only)",
                    ),
                    (
                        90,
                        "Post-Commit stage fired after transaction commit (For internal use only)",
                    ),
                ),
            ),
            Column("mode", PICKLIST, default=0, options=((0, "Synchronous"), (1, "Asynchronous"))),
            Column("rank", INTEGER, default=1),
            Column(
                "supporteddeployment",
                PICKLIST,
                default=0,
                options=(
                    (0, "Server Only"),
                    (1, "Microsoft Dynamics 365 Client for Outlook Only"),
                    (2, "Both"),
                ),
            ),
            Column(
                "invocationsource",
                PICKLIST,
                default=0,
                options=((-1, "Internal"), (0, "Parent"), (1, "Child")),
            ),
            Column("asyncautodelete", BOOLEAN, default=False),
            Column("filteringattributes", STRING, max_length=100000),
            _s("configuration", 1073741823),
            Column("eventhandler", LOOKUP, targets=("plugintype", "serviceendpoint")),
            Column("sdkmessageid", LOOKUP, targets=("sdkmessage",)),
            Column("sdkmessagefilterid", LOOKUP, targets=("sdkmessagefilter",)),
            *ENABLED_STATES.values(),
        ],
        4608,
        one_to_many={
            "sdkmessageprocessingstepid_sdkmessageprocessingstepimage": (
                "sdkmessageprocessingstepimage",
                "sdkmessageprocessingstepid",
            )
        },
    )
    image = _simple(
        "sdkmessageprocessingstepimage",
        "sdkmessageprocessingstepimages",
        "sdkmessageprocessingstepimageid",
        "name",
        [
            _s("entityalias", 256),
            Column(
                "imagetype",
                PICKLIST,
                default=0,
                options=((0, "PreImage"), (1, "PostImage"), (2, "Both")),
            ),
            _s("messagepropertyname", 256),
            _s("attributes", 100000),
            _s("description", 256),
            Column("sdkmessageprocessingstepid", LOOKUP, targets=("sdkmessageprocessingstep",)),
        ],
        4615,
    )
    return [endpoint, message, msg_filter, step, image]


def _other_tables() -> list[Table]:
    role = _simple(
        "role",
        "roles",
        "roleid",
        "name",
        [
            Column("businessunitid", LOOKUP, targets=("businessunit",)),
        ],
        1036,
    )
    business_unit = _simple("businessunit", "businessunits", "businessunitid", "name", [], 10)
    team = _simple("team", "teams", "teamid", "name", [], 9)
    annotation = Table("annotation", "annotations", "annotationid", "subject", object_type_code=5)
    for col in [
        Column("annotationid", GUID, system=True),
        _s("subject", 500),
        Column("notetext", MEMO, max_length=100000),
        Column("objectid", LOOKUP, targets=("lead", "contact", "account")),
        _sys("objecttypecode", ENTITYNAME),
        Column("isdocument", BOOLEAN, default=False),
        _s("filename", 255),
        _s("mimetype", 256),
        *_audit_columns(),
    ]:
        annotation.columns[col.name] = col
    asyncop = _simple(
        "asyncoperation",
        "asyncoperations",
        "asyncoperationid",
        "name",
        [
            Column("operationtype", PICKLIST, options=((1, "System Event"),)),
            Column(
                "statecode",
                STATE,
                default=0,
                options=((0, "Ready"), (1, "Suspended"), (2, "Locked"), (3, "Completed")),
            ),
            Column(
                "statuscode",
                STATUS,
                default=0,
                options=(
                    (0, "Waiting For Resources"),
                    (10, "Waiting"),
                    (20, "In Progress"),
                    (21, "Pausing"),
                    (22, "Canceling"),
                    (30, "Succeeded"),
                    (31, "Failed"),
                    (32, "Canceled"),
                ),
                status_states=(
                    (0, 0),
                    (10, 1),
                    (20, 2),
                    (21, 2),
                    (22, 2),
                    (30, 3),
                    (31, 3),
                    (32, 3),
                ),
            ),
            _s("friendlymessage", 1073741823),
            _s("message", 1073741823),
            Column("errorcode", INTEGER),
            Column("completedon", DATETIME),
            _s("messagename", 160),
            _s("primaryentitytype", 64),
            Column("correlationid", GUID),
            Column("owningextensionid", LOOKUP, targets=("sdkmessageprocessingstep",)),
            Column("regardingobjectid", LOOKUP, targets=("lead", "contact", "account")),
        ],
        4700,
    )
    return [role, business_unit, team, annotation, asyncop, *_environment_variable_tables()]


def _environment_variable_tables() -> list[Table]:
    """Environment variables as solutions ship them (definition + this org's current value)."""
    definition = _simple(
        "environmentvariabledefinition",
        "environmentvariabledefinitions",
        "environmentvariabledefinitionid",
        "schemaname",
        [
            _s("displayname", 100),
            _s("defaultvalue", 2000),
            _s("description", 2000),
            Column(
                "type",
                PICKLIST,
                default=100000000,
                options=(
                    (100000000, "String"),
                    (100000001, "Number"),
                    (100000002, "Boolean"),
                    (100000003, "JSON"),
                    (100000004, "Data source"),
                    (100000005, "Secret"),
                ),
            ),
            Column("isrequired", BOOLEAN, default=False),
        ],
        380,
        one_to_many={
            "environmentvariabledefinition_environmentvariablevalue": (
                "environmentvariablevalue",
                "environmentvariabledefinitionid",
            )
        },
    )
    value = _simple(
        "environmentvariablevalue",
        "environmentvariablevalues",
        "environmentvariablevalueid",
        "schemaname",
        [
            _s("value", 2000),
            Column(
                "environmentvariabledefinitionid",
                LOOKUP,
                targets=("environmentvariabledefinition",),
            ),
        ],
        381,
    )
    return [definition, value]


def build_tables() -> dict[str, Table]:
    """All tables, keyed by logical name."""
    tables = [_lead(), _contact(), _account(), _systemuser(), *_plugin_tables(), *_other_tables()]
    return {t.logical_name: t for t in tables}


# N:N relationships: navigation name -> (table a, table b); same name from both sides.
MANY_TO_MANY = {"systemuserroles_association": ("systemuser", "role")}


_METADATA_TYPES = {
    STRING: "StringAttributeMetadata",
    MEMO: "MemoAttributeMetadata",
    INTEGER: "IntegerAttributeMetadata",
    BIGINT: "BigIntAttributeMetadata",
    DOUBLE: "DoubleAttributeMetadata",
    MONEY: "MoneyAttributeMetadata",
    BOOLEAN: "BooleanAttributeMetadata",
    DATETIME: "DateTimeAttributeMetadata",
    GUID: "UniqueIdentifierAttributeMetadata",
    PICKLIST: "PicklistAttributeMetadata",
    STATE: "StateAttributeMetadata",
    STATUS: "StatusAttributeMetadata",
    LOOKUP: "LookupAttributeMetadata",
    OWNER: "LookupAttributeMetadata",
    CUSTOMER: "LookupAttributeMetadata",
    ENTITYNAME: "EntityNameAttributeMetadata",
}


def metadata_type(col: Column) -> str:
    return _METADATA_TYPES[col.type]


def _label(text: str) -> dict[str, Any]:
    loc = {
        "Label": text,
        "LanguageCode": 1033,
        "IsManaged": True,
        "MetadataId": None,
        "HasChanged": None,
    }
    return {"LocalizedLabels": [loc], "UserLocalizedLabel": loc}


def display_name(name: str) -> str:
    return name.removeprefix("ac_").replace("_", " ").title()


def attribute_metadata(table: Table, col: Column, expand_options: bool = False) -> dict[str, Any]:
    """One AttributeMetadata object as ``EntityDefinitions(...)/Attributes`` returns it."""
    body: dict[str, Any] = {
        "@odata.type": f"#Microsoft.Dynamics.CRM.{metadata_type(col)}",
        "LogicalName": col.name,
        "SchemaName": col.name if not col.custom else col.name,
        "EntityLogicalName": table.logical_name,
        "AttributeType": col.type,
        "AttributeTypeName": {
            "Value": f"{col.type}Type" if col.type != GUID else "UniqueidentifierType"
        },
        "IsCustomAttribute": col.custom,
        "IsPrimaryId": col.name == table.primary_id,
        "IsPrimaryName": col.name == table.primary_name,
        "IsValidForCreate": not col.system,
        "IsValidForUpdate": not col.system and col.name != table.primary_id,
        "IsValidForRead": col.readable,
        "RequiredLevel": {
            "Value": col.required,
            "CanBeChanged": not col.system,
            "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
        },
        "DisplayName": _label(display_name(col.name)),
        "MetadataId": None,
    }
    if col.max_length is not None:
        body["MaxLength"] = col.max_length
    if col.is_lookup:
        body["Targets"] = list(col.targets)
    if col.type in CHOICE_TYPES:
        body["DefaultFormValue"] = col.default if col.default is not None else -1
        if expand_options:
            body["OptionSet"] = option_set_metadata(table, col)
    return body


def option_set_metadata(table: Table, col: Column) -> dict[str, Any]:
    states = dict(col.status_states)
    options = []
    for value, label in col.options:
        opt: dict[str, Any] = {
            "Value": value,
            "Label": _label(label),
            "Color": None,
            "IsManaged": not col.custom,
            "ExternalValue": "",
        }
        if col.type == STATUS:
            opt["@odata.type"] = "#Microsoft.Dynamics.CRM.StatusOptionMetadata"
            opt["State"] = states.get(value)
        elif col.type == STATE:
            opt["@odata.type"] = "#Microsoft.Dynamics.CRM.StateOptionMetadata"
            opt["DefaultStatus"] = next(
                (s for s, st in _status_of(table).items() if st == value), None
            )
        options.append(opt)
    kind = {PICKLIST: "Picklist", STATE: "State", STATUS: "Status"}[col.type]
    return {
        "Name": f"{table.logical_name}_{col.name}",
        "OptionSetType": kind,
        "IsGlobal": False,
        "IsCustomOptionSet": col.custom,
        "Options": options,
    }


def _status_of(table: Table) -> dict[int, int]:
    status = table.columns.get("statuscode")
    return dict(status.status_states) if status else {}


def entity_definition(table: Table) -> dict[str, Any]:
    return {
        "LogicalName": table.logical_name,
        "SchemaName": table.logical_name.capitalize(),
        "EntitySetName": table.entity_set,
        "PrimaryIdAttribute": table.primary_id,
        "PrimaryNameAttribute": table.primary_name,
        "ObjectTypeCode": table.object_type_code,
        "ChangeTrackingEnabled": table.change_tracking,
        "CanChangeTrackingBeEnabled": {
            "Value": True,
            "CanBeChanged": True,
            "ManagedPropertyLogicalName": "canchangetrackingbeenabled",
        },
        "IsCustomEntity": False,
        "DisplayName": _label(display_name(table.logical_name)),
        "MetadataId": None,
    }
