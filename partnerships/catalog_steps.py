"""The wizard steps of a partnership and every setting on them: the data of the catalogue.

Sources, per step (reference chapters under /work/shared/spec/reference, cited as in their headings):

* Configure partnership — ch01-08 F6.3; WS-Fed STS and metadata exchange ch10-14 §1.1.
* Federation users — ch01-08 F7.1 (rows checked by partnerships.federation_users).
* Assertion configuration — ch09-10 A1–A6, ch01-08 F7.2.
* User identification — ch01-08 F7.3–F7.4 (the message consumer plugin, ch10-14 §6.3, is out of scope).
* SSO and SLO — ch09-10 B1–B14, ch10-14 §2–4 and §7, ch15-20 A5–A9, B5, D1.
* AuthnContext configuration — ch15-20 B7.
* Signature and encryption — ch15-20 C3–C10.
* Application integration — ch20-22 §1 and §4, ch15-20 E.

A setting whose choices or default differ by kind is written once per group of kinds with the same key and disjoint
``applies`` (for example the NameID formats of SAML 1.1 and SAML 2.0); `settings_for` gives each kind exactly one.
The partnership's name, description, entities and directory list are model columns, not settings.
"""

from __future__ import annotations

from partnerships import catalog_choices as ch
from partnerships.catalog_schema import (
    Setting,
    StepSpec,
    TableSpec,
    any_of,
    asserting,
    relying,
    saml,
    saml2,
    saml2_idp,
    saml2_sp,
    saml11,
    saml11_consumer,
    saml11_producer,
    unless,
    when,
    wsfed,
    wsfed_ip,
    wsfed_rp,
)

DEFAULT_SKEW_SECONDS = 30
DEFAULT_SSO_VALIDITY_SECONDS = 60  # the reference's worked examples (ch09-10 B7)
DEFAULT_SLO_VALIDITY_SECONDS = 60  # ch15-20 A4
DEFAULT_ATTRIBUTE_VALIDITY_SECONDS = 60
MNI_SOAP_TIMEOUT_SECONDS = 60  # ch10-14 §3.4
MNI_RETRIES = 3
MNI_RETRY_INTERVAL_MINUTES = 15
MNI_NOTIFICATION_TIMEOUT_SECONDS = 60

SESSION_STORE_NOTE = (
    "Needs the session store, which keeps track of the partners a browser session has visited; it is off on this "
    "site, so these settings are hidden. An operator turns it on in the site settings."
)

# =====================================================================================================================
# 1. Configure partnership

CONFIGURE = StepSpec(
    key="configure",
    title="Configure partnership",
    help="The partnership's name, its two entities and its user directories are chosen at the top of this step; "
    "these settings complete it.",
    settings=(
        Setting(
            "base_url",
            "Base URL",
            "url",
            default="",
            help="Where this site's federation runtime answers for this partnership: scheme, host and port, such as "
            "https://idp.example.org. Leave it empty to use the local entity's base URL.",
        ),
        Setting(
            "skew_seconds",
            "Skew time (seconds)",
            "int",
            default=DEFAULT_SKEW_SECONDS,
            required=True,
            min_value=0,
            help="How far apart the clocks of this site and the partner may be, in seconds. Assertions this site "
            "issues start that long before their issue time, and messages from the partner are accepted that much "
            "early or late. Example: 30.",
        ),
        Setting(
            "sts_active_profile",
            "STS for WS-Fed active profile",
            "bool",
            default=False,
            applies=wsfed_ip,
            help="Tick only when rich clients (Outlook, Lync, …) sign in through the WS-Trust active requestor "
            "profile, as Office 365 allows. Browsers use the passive profile and need nothing here.",
        ),
        Setting(
            "metadata_exchange",
            "Enable metadata exchange",
            "bool",
            default=False,
            applies=wsfed_ip,
            help="Publish a signed federation metadata document for this partnership at "
            "/affwebservices/public/FederationMetadata/<partnership name>, so the partner can read the passive (and, "
            "with the STS, active) profile endpoints from a URL.",
        ),
    ),
)

# =====================================================================================================================
# 2. Federation users (asserting party)

FEDERATION_USERS = StepSpec(
    key="federation_users",
    title="Federation users",
    applies=asserting,
    help="Which users of the selected directories this site makes assertions for. With no rows, every user of every "
    "selected directory is a federation user. An exclude row always wins over an include row.",
    settings=(),
    tables=(
        TableSpec(
            "rules",
            "Federation user rules",
            help="One rule per row. Rows of one directory only decide for users of that directory: when a directory "
            "has include rows, a user must match one of them; a matching exclude row refuses the user in any case.",
            columns=(
                Setting(
                    "directory",
                    "Directory",
                    "directory",
                    required=True,
                    help="One of the directories selected in the Configure partnership step.",
                ),
                Setting(
                    "kind",
                    "User class",
                    "choice",
                    default="user",
                    choices=ch.USER_CLASSES,
                    required=True,
                    help="What the value names: a user, a group or an organizational unit (by DN; for the embedded "
                    "directory a username or group name), or an LDAP filter on the user, their groups, their OUs or "
                    "any entry. The embedded directory has no organizational units.",
                ),
                Setting(
                    "value",
                    "User name or filter",
                    "text",
                    required=True,
                    help="A DN such as cn=sales,ou=groups,dc=example,dc=com, or a filter such as "
                    "(|(mail=*@example.com)(departmentNumber=42)); the outer parentheses may be left out.",
                ),
                Setting(
                    "exclude",
                    "Exclude",
                    "bool",
                    default=False,
                    help="Tick to refuse the users this row matches.",
                ),
            ),
        ),
    ),
)

# =====================================================================================================================
# 3. Assertion configuration (asserting party)

_NAME_ID_FORMAT_HELP = (
    "The kind of identifier the Name ID carries; it must be one the partner supports (see the remote entity's "
    "supported formats). Example: Email address."
)

ASSERTION = StepSpec(
    key="assertion",
    title="Assertion configuration",
    applies=asserting,
    help="What the assertion says about the user: the Name ID and the attributes. Attributes defined on the local "
    "entity are added to the rows here.",
    settings=(
        Setting(
            "name_id_format",
            "Name ID format",
            "choice",
            default=ch.NAME_ID_FORMATS_SAML2[0][0],
            choices=ch.NAME_ID_FORMATS_SAML2,
            required=True,
            section="Name ID",
            applies=saml2 | wsfed,
            help=_NAME_ID_FORMAT_HELP,
        ),
        Setting(
            "name_id_format",
            "Name ID format",
            "choice",
            default=ch.NAME_ID_FORMATS_SAML11[0][0],
            choices=ch.NAME_ID_FORMATS_SAML11,
            required=True,
            section="Name ID",
            applies=saml11,
            help=_NAME_ID_FORMAT_HELP,
        ),
        Setting(
            "name_id_type",
            "Name ID type",
            "choice",
            default="user",
            choices=ch.NAME_ID_TYPES,
            required=True,
            section="Name ID",
            help="Where the Name ID's value comes from: a fixed text, an attribute of the user's directory entry, an "
            "attribute of the user's session, or an attribute of an LDAP entry named by a DN.",
        ),
        Setting(
            "name_id_value",
            "Name ID value",
            "text",
            required=True,
            section="Name ID",
            help="Static value: the text itself, such as GeorgeC. User or session attribute: the attribute's name, such "
            "as mail or uid. DN attribute: the attribute to read from the entry named below, such as cn.",
        ),
        Setting(
            "name_id_dn_spec",
            "DN specification",
            "text",
            required=True,
            section="Name ID",
            visible_when=when("name_id_type", "dn"),
            help="The LDAP entry to read the DN attribute from, such as ou=engineering,o=example.com.",
        ),
        Setting(
            "allow_create",
            "Allow IdP to create a persistent identifier",
            "bool",
            default=False,
            section="Name ID",
            applies=saml2_idp,
            help="When the SP's AuthnRequest says AllowCreate and the user has no value for the Name ID attribute, "
            "make up a unique persistent identifier instead of failing. Needs the Persistent Name ID format.",
        ),
        Setting(
            "plugin_class",
            "Assertion generator plugin",
            "text",
            default="",
            section="Assertion generator plugin",
            help="Optional: the dotted Python path of a class whose customize_assertion(context, assertion, "
            "parameters) may change each assertion before it is signed, such as mycompany.federation.AddCostCentre. "
            "Install the plugin before naming it here.",
        ),
        Setting(
            "plugin_parameters",
            "Plugin parameters",
            "text",
            default="",
            section="Assertion generator plugin",
            visible_when=when("plugin_class", "", negate=True),
            help="Optional text handed to the plugin with every call; its meaning is the plugin's.",
        ),
    ),
    tables=(
        TableSpec(
            "attributes",
            "Assertion attributes",
            section="Assertion attributes",
            help="One attribute per row; multi-valued directory attributes send every value. An expression can "
            "transform, add or (with DELETE) remove an attribute.",
            columns=(
                Setting(
                    "name",
                    "Assertion attribute",
                    "text",
                    required=True,
                    help="The attribute's name in the assertion, as the partner expects it, such as mail or "
                    "urn:oid:0.9.2342.19200300.100.1.3.",
                ),
                Setting(
                    "retrieval",
                    "Retrieval method",
                    "choice",
                    default="sso",
                    choices=ch.ATTRIBUTE_RETRIEVAL,
                    applies=saml2_idp,
                    help="Send the attribute in SSO assertions, in answers of the attribute service, or both.",
                ),
                Setting(
                    "name_format",
                    "Format",
                    "choice",
                    default=ch.ATTRIBUTE_NAME_FORMATS[0][0],
                    choices=ch.ATTRIBUTE_NAME_FORMATS,
                    applies=saml2,
                    help="The attribute's NameFormat: Unspecified, Basic (a simple name) or URI (a name such as urn:oid:…).",
                ),
                Setting(
                    "namespace",
                    "Namespace",
                    "text",
                    default="",
                    applies=saml11 | wsfed,
                    help="The attribute's AttributeNamespace, such as http://schemas.xmlsoap.org/claims for the Office 365 UPN.",
                ),
                Setting(
                    "value_type",
                    "Type",
                    "choice",
                    default="user",
                    choices=ch.ATTRIBUTE_VALUE_TYPES,
                    required=True,
                    help="User attribute, static value, DN attribute, session attribute, or an expression.",
                ),
                Setting(
                    "value",
                    "Value",
                    "text",
                    required=True,
                    help="A user or session attribute name (such as mail), a fixed text, or an expression such as "
                    "#{attr[\"title\"] == 'manager' ? 'administrator' : attr[\"title\"]}.",
                ),
                Setting(
                    "dn_spec",
                    "DN specification",
                    "text",
                    default="",
                    required=True,
                    visible_when=when("value_type", "dn"),
                    help="For a DN attribute: the LDAP entry to read it from, such as ou=engineering,o=example.com.",
                ),
                Setting(
                    "encrypt",
                    "Encrypt",
                    "bool",
                    default=False,
                    applies=saml2,
                    help="Send the attribute as an EncryptedAttribute, with the encryption certificate of the "
                    "Signature and encryption step.",
                ),
            ),
        ),
    ),
)

# =====================================================================================================================
# 4. User identification (relying party)

USER_IDENTIFICATION = StepSpec(
    key="user_identification",
    title="User identification",
    applies=relying,
    help="How this site finds the user of an incoming assertion in its own directories: a value is taken from the "
    "assertion and put into each directory's search specification.",
    settings=(
        Setting(
            "identity_source",
            "Identity from the assertion",
            "choice",
            default="name_id",
            choices=ch.IDENTITY_SOURCES,
            required=True,
            help="Which value identifies the user: the Name ID, an attribute of the assertion, or the result of an "
            "XPath query on the assertion.",
        ),
        Setting(
            "identity_attribute",
            "Attribute",
            "text",
            required=True,
            visible_when=when("identity_source", "attribute"),
            help="The assertion attribute whose value identifies the user, such as mail. Pick one of the remote "
            "entity's attributes or type a name (case matters).",
        ),
        Setting(
            "identity_xpath",
            "XPath query",
            "text",
            required=True,
            visible_when=when("identity_source", "xpath"),
            help="An XPath 1.0 query on the assertion, with the prefixes saml, saml1 and ds, such as "
            "//saml:Attribute[@Name='employeeNumber']/saml:AttributeValue/text().",
        ),
        Setting(
            "allow_create",
            "Allow IdP to create a new user identifier",
            "bool",
            default=False,
            section="Name ID creation",
            applies=saml2_sp,
            help='Put AllowCreate="true" in AuthnRequests, so the IdP may make a persistent identifier for a user '
            "who has none. The IdP must use the Persistent Name ID format.",
        ),
        Setting(
            "allow_create_query_override",
            "Query parameter overrides AllowCreate",
            "bool",
            default=False,
            section="Name ID creation",
            applies=saml2_sp,
            help="Let an AllowCreate query parameter on the AuthnRequest service URL (…/saml2authnrequest?…&AllowCreate="
            "false) change the setting above for one request, without editing the partnership. Needs AllowCreate.",
        ),
    ),
    tables=(
        TableSpec(
            "search_specs",
            "Directory search specifications",
            help="One row per selected directory. %s is replaced by the value taken from the assertion: an LDAP "
            "filter such as uid=%s, or name=%s for the embedded directory, such as username=%s or email=%s.",
            columns=(
                Setting("directory", "Directory", "directory", required=True, help="A directory selected in step 1."),
                Setting(
                    "search_spec",
                    "Search specification",
                    "text",
                    default="",
                    required=True,
                    help="A filter with %s where the value goes, such as uid=%s or (mail=%s); username=%s for the embedded "
                    "directory.",
                ),
            ),
        ),
    ),
)

# =====================================================================================================================
# 5. SSO and SLO


def _backchannel_settings(prefix: str, label: str, applies, shown, outgoing: bool) -> tuple[Setting, ...]:
    """The settings of one back channel (ch09-10 B9, ch15-20 A8): its authentication method and what the method needs."""
    direction = "the partner's calls to this site" if not outgoing else "this site's calls to the partner"
    settings = [
        Setting(
            f"{prefix}_auth",
            f"{label} authentication",
            "choice",
            default="none",
            choices=ch.BACKCHANNEL_AUTH,
            required=True,
            section="Back channel",
            applies=applies,
            visible_when=shown,
            help=f"How {direction} over the SOAP back channel (artifact resolution, SOAP logout, attribute queries) "
            "are authenticated. It must match what the partner configured for the other end. No authentication is "
            "for tests; client certificates need https:// endpoints.",
        ),
    ]
    basic = shown & when(f"{prefix}_auth", "basic")
    if outgoing:
        settings.append(
            Setting(
                f"{prefix}_user",
                f"{label} user name",
                "text",
                default="",
                section="Back channel",
                applies=applies,
                visible_when=basic,
                help="The user name sent with Basic authentication; empty sends this partnership's name.",
            )
        )
    settings.append(
        Setting(
            f"{prefix}_password",
            f"{label} password",
            "password",
            default="",
            required=True,
            section="Back channel",
            applies=applies,
            visible_when=basic,
            help="The Basic authentication password "
            + ("this site sends." if outgoing else "the partner must send (its user name is this partnership's name).")
            + " Stored sealed and never shown again.",
        )
    )
    if outgoing:
        settings.append(
            Setting(
                f"{prefix}_client_key",
                f"{label} client certificate",
                "key_pair",
                default="",
                required=True,
                section="Back channel",
                applies=applies,
                visible_when=shown & when(f"{prefix}_auth", "client_cert"),
                help="The key pair whose certificate this site presents; its subject CN is normally this partnership's "
                "name, as the partner checks it.",
            )
        )
    return tuple(settings)


_ARTIFACT = when("sso_bindings", "artifact")
_SLO_SOAP = when("slo_enabled") & when("slo_bindings", "soap")

_AUTHENTICATION = (
    Setting(
        "authn_mode",
        "Authentication mode",
        "choice",
        default="local",
        choices=ch.AUTHN_MODES,
        required=True,
        section="Authentication",
        applies=asserting,
        help="Local: users sign in at this site. Delegated: a third-party access-management system signs them in and "
        "hands this site their login ID in a cookie or the query string.",
    ),
    Setting(
        "authn_url",
        "Authentication URL",
        "url",
        default="",
        section="Authentication",
        applies=asserting,
        visible_when=when("authn_mode", "local"),
        help="Where users without a session are sent to sign in. Leave it empty to use this site's own login page "
        "(user name and password against the partnership's directories); a URL of your own must be protected so that "
        "only signed-in users reach it.",
    ),
    Setting(
        "delegated_type",
        "Delegated authentication type",
        "choice",
        default="open_format_cookie",
        choices=ch.DELEGATED_TYPES,
        required=True,
        section="Authentication",
        applies=asserting,
        visible_when=when("authn_mode", "delegated"),
        help="How the access-management system hands over the login ID: an encrypted open-format cookie (for "
        "production), or LoginID and LoginIDHash in the query string (clear text: tests only).",
    ),
    Setting(
        "delegated_url",
        "Delegated authentication URL",
        "url",
        default="",
        required=True,
        section="Authentication",
        applies=asserting,
        visible_when=when("authn_mode", "delegated"),
        help="The page of the access-management system that signs users in and sends them back, such as "
        "https://wam.example.org/federation/login.",
    ),
    Setting(
        "delegated_cookie_name",
        "Open-format cookie name",
        "text",
        default="",
        required=True,
        section="Authentication",
        applies=asserting,
        visible_when=when("authn_mode", "delegated") & when("delegated_type", "open_format_cookie"),
        help="The cookie the access-management system sets, in a domain this site shares, such as FEDLOGIN.",
    ),
    Setting(
        "delegated_cookie_password",
        "Open-format cookie password",
        "password",
        default="",
        required=True,
        section="Authentication",
        applies=asserting,
        visible_when=when("authn_mode", "delegated") & when("delegated_type", "open_format_cookie"),
        help="The password both sides derive the cookie's encryption key from. Stored sealed and never shown again.",
    ),
    Setting(
        "delegated_cookie_algorithm",
        "Open-format cookie encryption",
        "choice",
        default="aes256-gcm",
        choices=ch.COOKIE_ALGORITHMS,
        required=True,
        section="Authentication",
        applies=asserting,
        visible_when=when("authn_mode", "delegated") & when("delegated_type", "open_format_cookie"),
        help="The authenticated encryption of the cookie; both sides must use the same.",
    ),
    Setting(
        "delegated_hash_secret",
        "Hash secret",
        "password",
        default="",
        required=True,
        section="Authentication",
        applies=asserting,
        visible_when=when("authn_mode", "delegated") & when("delegated_type", "query_string"),
        help="The secret shared with the access-management system: LoginIDHash is the hexadecimal SHA-1 of the "
        "LoginID followed by this secret. Stored sealed and never shown again.",
    ),
    Setting(
        "authn_context_mode",
        "Configure AuthnContext",
        "choice",
        default="predefined",
        choices=ch.AUTHN_CONTEXT_MODES,
        required=True,
        section="Authentication",
        applies=saml2_idp,
        help="Put a fixed authentication class in every assertion, or detect the class of the user's session from an "
        "authentication context template (and answer the SP's RequestedAuthnContext with it).",
    ),
    Setting(
        "authn_class",
        "Authentication class",
        "choice",
        default="urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
        choices=ch.AUTHN_CLASSES_SAML2,
        required=True,
        section="Authentication",
        applies=saml2_idp,
        visible_when=when("authn_context_mode", "predefined"),
        help="The AuthnContextClassRef of every assertion, such as PasswordProtectedTransport for a password typed "
        "over https. Also the class of IdP-initiated SSO.",
    ),
    Setting(
        "authn_class",
        "Authentication method",
        "choice",
        default=ch.SAML11_AM_PASSWORD,
        choices=ch.AUTHN_METHODS_SAML11,
        required=True,
        section="Authentication",
        applies=saml11_producer,
        help="The AuthenticationMethod of every assertion's authentication statement, such as Password.",
    ),
    Setting(
        "authn_template",
        "Authentication context template",
        "authn_template",
        default="",
        required=True,
        section="Authentication",
        applies=saml2_idp,
        visible_when=when("authn_context_mode", "auto_detect"),
        help="The template whose order of classes (strongest first) decides which class the session has and whether "
        "it satisfies the SP's request.",
    ),
    Setting(
        "ignore_requested_authn_context",
        "Ignore RequestedAuthnContext",
        "bool",
        default=False,
        section="Authentication",
        applies=saml2_idp,
        help="Answer every AuthnRequest with the class above even when the SP asks for another. Without it, a "
        "predefined class cannot answer an SP that sends RequestedAuthnContext (the SSO fails with "
        "RequestUnsupported).",
    ),
)

_SSO = (
    Setting(
        "authn_request_bindings",
        "AuthnRequest bindings",
        "multichoice",
        default=("redirect", "post"),
        choices=ch.AUTHN_REQUEST_BINDINGS,
        required=True,
        section="SSO",
        applies=saml2_idp,
        help="The bindings on which this IdP accepts AuthnRequests from the SP.",
    ),
    Setting(
        "authn_request_bindings",
        "AuthnRequest bindings",
        "multichoice",
        default=("redirect",),
        choices=ch.AUTHN_REQUEST_BINDINGS,
        required=True,
        section="SSO",
        applies=saml2_sp,
        help="The bindings this SP sends AuthnRequests with, in order of preference; the remote IdP needs an SSO "
        "service URL for each.",
    ),
    Setting(
        "sso_bindings",
        "SSO bindings",
        "multichoice",
        default=("post",),
        choices=ch.SSO_BINDINGS,
        required=True,
        section="SSO",
        applies=saml,
        help="How assertions travel: HTTP-POST (through the browser) and/or HTTP-Artifact (a reference the relying "
        "party resolves over the back channel). When both are on, POST is the default. The remote entity needs an "
        "endpoint for each.",
    ),
    Setting(
        "ecp_enabled",
        "Enable Enhanced Client or Proxy (ECP) profile",
        "bool",
        default=False,
        section="SSO",
        applies=saml2,
        help="Allow SSO through an ECP client (PAOS and SOAP), for devices behind a proxy that cannot reach the "
        "partner directly.",
    ),
    Setting(
        "sso_validity_seconds",
        "SSO validity duration (seconds)",
        "int",
        default=DEFAULT_SSO_VALIDITY_SECONDS,
        required=True,
        min_value=0,
        section="SSO",
        applies=asserting,
        help="How long an assertion stays valid after it is issued, before the skew is added at both ends. Example: "
        "60 with a skew of 30 makes an assertion issued at 12:00:00 valid from 11:59:30 to 12:01:30.",
    ),
    Setting(
        "audience",
        "Audience",
        "text",
        default="",
        section="SSO",
        applies=wsfed_ip,
        help="The audience of the tokens; empty uses the remote RP's entity ID. Office 365: urn:federation:MicrosoftOnline.",
    ),
    Setting(
        "allowed_transactions",
        "Allowed transactions",
        "choice",
        default="both",
        choices=ch.ALLOWED_TRANSACTIONS,
        required=True,
        section="SSO",
        applies=saml2,
        help="Which side may start SSO. Refused starts fail at once; limiting this also limits what depends on SP "
        "requests, such as requested authentication contexts.",
    ),
    Setting(
        "session_not_on_or_after",
        "SP session validity",
        "choice",
        default="assertion_validity",
        choices=ch.SESSION_NOT_ON_OR_AFTER,
        required=True,
        section="SSO",
        applies=saml2_idp,
        help="The SessionNotOnOrAfter the IdP puts in the authentication statement, which a third-party SP may use as "
        "its own session timeout.",
    ),
    Setting(
        "session_duration_minutes",
        "SP session duration (minutes)",
        "int",
        default=120,
        required=True,
        min_value=1,
        section="SSO",
        applies=saml2_idp,
        visible_when=when("session_not_on_or_after", "custom"),
        help="The custom SP session lifetime, counted from the authentication, such as 480 for a working day.",
    ),
    Setting(
        "one_time_use",
        "Set OneTimeUse condition",
        "bool",
        default=False,
        section="SSO",
        applies=saml2_idp,
        help="Add <OneTimeUse/> to every assertion's conditions, telling the SP not to keep it for later use.",
    ),
    Setting(
        "do_not_cache",
        "Set DoNotCache condition",
        "bool",
        default=False,
        section="SSO",
        applies=saml11_producer,
        help="Add <DoNotCacheCondition/> to every assertion's conditions, telling the consumer not to keep it.",
    ),
    Setting(
        "user_consent",
        "Enable user consent",
        "bool",
        default=False,
        section="SSO",
        applies=saml2_idp,
        help="Ask users for permission before their identity is sent to this SP. They have 5 minutes to answer; "
        "consent covers one assertion.",
    ),
    Setting(
        "user_consent_form",
        "User consent form",
        "text",
        default="",
        section="SSO",
        applies=saml2_idp,
        visible_when=when("user_consent"),
        help="Optional: the name of a custom consent page template; empty uses the built-in page. The template may "
        "use $$userconsent_spid$$ and $$userconsent_idpid$$.",
    ),
    Setting(
        "require_consent",
        "Require user consent",
        "bool",
        default=False,
        section="SSO",
        applies=saml2_sp,
        help="Refuse responses whose Consent is not urn:oasis:names:tc:SAML:2.0:consent:obtained.",
    ),
    Setting(
        "negative_response",
        "Enable negative authentication response",
        "bool",
        default=False,
        section="SSO",
        applies=saml2_idp,
        help="When a user cannot be authenticated for an SP's AuthnRequest, send the SP a SAML Response with a failure "
        "status (AuthnFailed) instead of showing an error page, so the SP decides what happens next.",
    ),
)

_BACKCHANNEL = (
    # SAML 2.0 has an incoming and an outgoing channel; each is shown when a service on it is in use (ch09-10 B9).
    *_backchannel_settings(
        "backchannel_in",
        "Incoming",
        saml2_idp,
        any_of(_ARTIFACT, _SLO_SOAP, when("attribute_service_enabled"), when("mni_enabled")),
        outgoing=False,
    ),
    *_backchannel_settings("backchannel_in", "Incoming", saml2_sp, any_of(_SLO_SOAP, when("mni_enabled")), outgoing=False),
    *_backchannel_settings("backchannel_out", "Outgoing", saml2_idp, any_of(_SLO_SOAP, when("mni_enabled")), outgoing=True),
    *_backchannel_settings(
        "backchannel_out",
        "Outgoing",
        saml2_sp,
        any_of(_ARTIFACT, _SLO_SOAP, when("attribute_requester_enabled"), when("mni_enabled")),
        outgoing=True,
    ),
    # SAML 1.1 has one channel, for artifact resolution: incoming at a producer, outgoing at a consumer.
    *_backchannel_settings("backchannel_in", "Incoming", saml11_producer, _ARTIFACT, outgoing=False),
    *_backchannel_settings("backchannel_out", "Outgoing", saml11_consumer, _ARTIFACT, outgoing=True),
)

_SLO = (
    Setting(
        "slo_enabled",
        "Enable single logout",
        "bool",
        default=False,
        section="SLO",
        applies=saml2,
        help="Log the user out of every partner of their browser session when they log out of one. "
        + SESSION_STORE_NOTE.split(";")[0]
        + ".",
    ),
    Setting(
        "slo_bindings",
        "SLO bindings",
        "multichoice",
        default=("redirect",),
        choices=ch.SLO_BINDINGS,
        required=True,
        section="SLO",
        applies=saml2,
        visible_when=when("slo_enabled"),
        help="The bindings this site sends and receives logout messages with. Redirect and POST go through the "
        "browser and can clear the partner's cookies; SOAP is a direct call that keeps going when one partner "
        "fails. The remote entity needs an SLO service URL for each.",
    ),
    Setting(
        "slo_validity_seconds",
        "SLO validity duration (seconds)",
        "int",
        default=DEFAULT_SLO_VALIDITY_SECONDS,
        required=True,
        min_value=0,
        section="SLO",
        applies=saml2,
        visible_when=when("slo_enabled"),
        help="How long a logout request this site issues stays valid, after the skew: with a skew of 30 and 60 here, "
        "a request issued at 12:00:00 expires at 12:01:30.",
    ),
    Setting(
        "slo_confirm_url",
        "SLO confirm URL",
        "url",
        default="",
        section="SLO",
        applies=saml2,
        visible_when=when("slo_enabled"),
        help="The page users see when a logout they started has finished, on this site, such as "
        "https://sp.example.org/loggedout.html. Empty shows a built-in page.",
    ),
    Setting(
        "slo_relay_state_overrides_confirm",
        "Relay state overrides the SLO confirm URL",
        "bool",
        default=False,
        section="SLO",
        applies=saml2,
        visible_when=when("slo_enabled"),
        help="Send users to the RelayState that came with the logout request instead of the confirm URL (only to an "
        "allowed target URL of this partnership).",
    ),
)

_SIGNOUT = (
    Setting(
        "signout_enabled",
        "Enable sign-out",
        "bool",
        default=False,
        section="Sign-out",
        applies=wsfed,
        help="WS-Federation passive sign-out: the IP signs the user out of every RP of the browser session. "
        + SESSION_STORE_NOTE.split(";")[0]
        + ".",
    ),
    Setting(
        "signout_confirm_url",
        "Sign-out confirm URL",
        "url",
        default="",
        section="Sign-out",
        applies=wsfed_ip,
        visible_when=when("signout_enabled"),
        help="The page users see once sign-out has finished; it must not require a login. Empty uses the local "
        "entity's sign-out confirm URL or a built-in page.",
    ),
    Setting(
        "signout_url",
        "Sign-out URL",
        "url",
        default="",
        section="Sign-out",
        applies=wsfed,
        visible_when=when("signout_enabled"),
        help="The partner URL that receives the sign-out (wsignout1.0) or clean-up (wsignoutcleanup1.0) request. "
        "Empty uses the remote entity's sign-out URL.",
    ),
)

_ATTRIBUTE_SERVICE = (
    Setting(
        "attribute_service_enabled",
        "Enable attribute service",
        "bool",
        default=False,
        section="Attribute service",
        applies=saml2_idp,
        help="Answer the SP's attribute queries (SAML 2.0 Assertion Query profile) for users of this partnership, "
        "with the attributes whose retrieval method includes the attribute service.",
    ),
    Setting(
        "attribute_validity_seconds",
        "Attribute assertion validity (seconds)",
        "int",
        default=DEFAULT_ATTRIBUTE_VALIDITY_SECONDS,
        required=True,
        min_value=0,
        section="Attribute service",
        applies=saml2_idp,
        visible_when=when("attribute_service_enabled"),
        help="How long an attribute assertion stays valid, before the skew.",
    ),
    Setting(
        "attribute_require_signed_queries",
        "Require signed attribute queries",
        "bool",
        default=False,
        section="Attribute service",
        applies=saml2_idp,
        visible_when=when("attribute_service_enabled"),
        help="Refuse attribute queries that the SP did not sign.",
    ),
    Setting(
        "attribute_sign_assertion",
        "Sign the attribute assertion",
        "bool",
        default=True,
        section="Attribute service",
        applies=saml2_idp,
        visible_when=when("attribute_service_enabled"),
        help="Sign the assertion of an attribute response with the signing key.",
    ),
    Setting(
        "attribute_sign_response",
        "Sign the attribute response",
        "bool",
        default=False,
        section="Attribute service",
        applies=saml2_idp,
        visible_when=when("attribute_service_enabled"),
        help="Sign the whole attribute response as well.",
    ),
    Setting(
        "attribute_proxied_query",
        "Enable proxied query",
        "bool",
        default=False,
        section="Attribute service",
        applies=saml2_idp,
        visible_when=when("attribute_service_enabled"),
        help="When an attribute is in neither the directory nor the session, ask the third-party IdP the user first "
        "signed in with (through this site's SP → IdP partnership with that IdP) and pass its answer on.",
    ),
    Setting(
        "attribute_requester_enabled",
        "Enable attribute requester",
        "bool",
        default=False,
        section="Attribute requester",
        applies=saml2_sp,
        help="Let this SP query the IdP's attribute service for attributes of users who signed in through it; used "
        "for proxied queries.",
    ),
    Setting(
        "attribute_requester_proxied",
        "Enable proxied query",
        "bool",
        default=True,
        section="Attribute requester",
        applies=saml2_sp,
        visible_when=when("attribute_requester_enabled"),
        help="Use this partnership for queries this site proxies from its own SPs.",
    ),
    Setting(
        "attribute_requester_name_id_format",
        "Query Name ID format",
        "choice",
        default=ch.NAME_ID_FORMATS_SAML2[0][0],
        choices=ch.NAME_ID_FORMATS_SAML2,
        required=True,
        section="Attribute requester",
        applies=saml2_sp,
        visible_when=when("attribute_requester_enabled"),
        help="The format of the Name ID in the query's subject; it must be one the IdP's attribute service knows.",
    ),
    Setting(
        "attribute_requester_name_id_type",
        "Query Name ID type",
        "choice",
        default="user",
        choices=ch.NAME_ID_TYPES,
        required=True,
        section="Attribute requester",
        applies=saml2_sp,
        visible_when=when("attribute_requester_enabled"),
        help="Where the query subject's value comes from, as for an assertion's Name ID.",
    ),
    Setting(
        "attribute_requester_name_id_value",
        "Query Name ID value",
        "text",
        default="",
        required=True,
        section="Attribute requester",
        applies=saml2_sp,
        visible_when=when("attribute_requester_enabled"),
        help="The fixed value or the attribute name, such as uid.",
    ),
)

_IDP_DISCOVERY = (
    Setting(
        "idp_discovery_enabled",
        "Enable IdP discovery",
        "bool",
        default=False,
        section="IdP discovery",
        applies=saml2,
        help="Use the common-domain cookie (_saml_idp) that lists the IdPs a user has signed in at, so SPs of the "
        "federation can send the user to the right IdP.",
    ),
    Setting(
        "idp_discovery_service_url",
        "Discovery service URL",
        "url",
        default="",
        required=True,
        section="IdP discovery",
        applies=saml2,
        visible_when=when("idp_discovery_enabled"),
        help="The discovery service in the common domain, such as https://disco.example.org/affwebservices/public/saml2ipd.",
    ),
    Setting(
        "idp_discovery_common_domain",
        "Common domain",
        "text",
        default="",
        required=True,
        section="IdP discovery",
        applies=saml2,
        visible_when=when("idp_discovery_enabled"),
        help="The cookie domain the partners share, such as .example.org; the discovery service's host must be in it.",
    ),
    Setting(
        "idp_discovery_persistent_cookie",
        "Persistent cookie",
        "bool",
        default=False,
        section="IdP discovery",
        applies=saml2_idp,
        visible_when=when("idp_discovery_enabled"),
        help="Keep the common-domain cookie after the browser closes.",
    ),
)

_MANAGE_NAME_ID = (
    Setting(
        "mni_enabled",
        "Enable Manage Name ID (SOAP)",
        "bool",
        default=False,
        section="Manage Name ID",
        applies=saml2,
        help="End a user's federation with this partner (de-provisioning) through ManageNameID requests over SOAP, "
        "started from the name-ID management API and run in the background. The remote entity needs a SOAP Manage "
        "Name ID service URL.",
    ),
    Setting(
        "mni_delete_name_id",
        "Delete Name ID",
        "bool",
        default=True,
        section="Manage Name ID",
        applies=saml2,
        visible_when=when("mni_enabled"),
        help="Send the partner a terminate request that deletes the user's Name ID.",
    ),
    Setting(
        "mni_notification",
        "Enable notification",
        "bool",
        default=False,
        section="Manage Name ID",
        applies=saml2,
        visible_when=when("mni_enabled"),
        help="Tell an application of yours, by an HTTP call, how each request ended (status 1 = done, 0 = failed).",
    ),
    Setting(
        "mni_soap_timeout_seconds",
        "SOAP timeout (seconds)",
        "int",
        default=MNI_SOAP_TIMEOUT_SECONDS,
        required=True,
        min_value=1,
        section="Manage Name ID",
        applies=saml2,
        visible_when=when("mni_enabled"),
        help="How long to wait for the partner's answer.",
    ),
    Setting(
        "mni_retries",
        "Retries",
        "int",
        default=MNI_RETRIES,
        required=True,
        min_value=0,
        section="Manage Name ID",
        applies=saml2,
        visible_when=when("mni_enabled"),
        help="How many more attempts before a request is marked failed.",
    ),
    Setting(
        "mni_retry_interval_minutes",
        "Retry interval (minutes)",
        "int",
        default=MNI_RETRY_INTERVAL_MINUTES,
        required=True,
        min_value=1,
        section="Manage Name ID",
        applies=saml2,
        visible_when=when("mni_enabled"),
        help="The wait between attempts.",
    ),
    Setting(
        "mni_notification_url",
        "Notification URL",
        "url",
        default="",
        required=True,
        section="Manage Name ID",
        applies=saml2,
        visible_when=when("mni_enabled") & when("mni_notification"),
        help="Where the result of each request is sent, such as https://hr.example.org/federation/notify.",
    ),
    Setting(
        "mni_notification_timeout_seconds",
        "Notification timeout (seconds)",
        "int",
        default=MNI_NOTIFICATION_TIMEOUT_SECONDS,
        required=True,
        min_value=1,
        section="Manage Name ID",
        applies=saml2,
        visible_when=when("mni_enabled") & when("mni_notification"),
        help="How long to wait for the notification URL to answer.",
    ),
    Setting(
        "mni_notification_auth",
        "Notification authentication",
        "choice",
        default="none",
        choices=ch.NOTIFICATION_AUTH,
        required=True,
        section="Manage Name ID",
        applies=saml2,
        visible_when=when("mni_enabled") & when("mni_notification"),
        help="How this site authenticates to the notification URL.",
    ),
    Setting(
        "mni_notification_user",
        "Notification user name",
        "text",
        default="",
        required=True,
        section="Manage Name ID",
        applies=saml2,
        visible_when=when("mni_enabled") & when("mni_notification") & when("mni_notification_auth", "basic"),
        help="The Basic authentication user name.",
    ),
    Setting(
        "mni_notification_password",
        "Notification password",
        "password",
        default="",
        required=True,
        section="Manage Name ID",
        applies=saml2,
        visible_when=when("mni_enabled") & when("mni_notification") & when("mni_notification_auth", "basic"),
        help="The Basic authentication password. Stored sealed and never shown again.",
    ),
)

_STATUS_REDIRECT_COLUMNS = (
    Setting(
        "url",
        "Redirect URL",
        "url",
        required=True,
        help="Where the user is sent, such as https://www.example.org/federation-error.html.",
    ),
    Setting(
        "method",
        "Method",
        "choice",
        default="302",
        choices=ch.REDIRECT_METHODS,
        required=True,
        help="A plain 302 redirect, or an HTTP POST carrying the status and the transaction ID.",
    ),
)

SSO_SLO_SETTINGS = _AUTHENTICATION + _SSO + _SLO + _SIGNOUT + _BACKCHANNEL + _ATTRIBUTE_SERVICE + _IDP_DISCOVERY + _MANAGE_NAME_ID
SSO_SLO_TABLES = (
    TableSpec(
        "attribute_search_specs",
        "Attribute service user lookup",
        section="Attribute service",
        applies=saml2_idp,
        visible_when=when("attribute_service_enabled"),
        help="How the attribute service finds the user named in a query's subject: one row per directory, with %s "
        "where the Name ID goes, such as uid=%s. At least one row.",
        columns=(
            Setting("directory", "Directory", "directory", required=True, help="A directory selected in step 1."),
            Setting(
                "search_spec", "Search specification", "text", default="", required=True, help="Such as uid=%s or (mail=%s)."
            ),
        ),
    ),
    TableSpec(
        "status_redirects",
        "Status redirect URLs",
        section="Status redirect URLs",
        applies=saml2_idp,
        help="Where users are sent when SSO fails with an HTTP error, instead of an error page. Only when the partner "
        "is known; otherwise the bare status is returned.",
        columns=(
            Setting(
                "condition",
                "Error",
                "choice",
                default="server_error",
                choices=ch.STATUS_CONDITIONS_IDP,
                required=True,
                help="The error this row handles; each error at most once.",
            ),
            *_STATUS_REDIRECT_COLUMNS,
        ),
    ),
)

_SSO_SLO_HELP = "How single sign-on (and logout) works with this partner: authentication, bindings, validity, back channel."

SSO_SLO_STEPS = (
    StepSpec("sso_slo", "SSO and SLO", SSO_SLO_SETTINGS, SSO_SLO_TABLES, applies=saml2, help=_SSO_SLO_HELP),
    StepSpec("sso_slo", "Single sign-on", SSO_SLO_SETTINGS, SSO_SLO_TABLES, applies=saml11, help=_SSO_SLO_HELP),
    StepSpec("sso_slo", "Single sign-on and sign-out", SSO_SLO_SETTINGS, SSO_SLO_TABLES, applies=wsfed, help=_SSO_SLO_HELP),
)

# =====================================================================================================================
# 6. AuthnContext configuration (SAML 2.0 SP)

AUTHN_CONTEXT = StepSpec(
    key="authn_context",
    title="AuthnContext configuration",
    applies=saml2_sp,
    help="Ask the IdP for an authentication context (RequestedAuthnContext) and check the one it returns.",
    settings=(
        Setting(
            "enabled",
            "Enable authentication context processing",
            "bool",
            default=False,
            help="Request and/or check how strongly the IdP authenticated the user.",
        ),
        Setting(
            "template",
            "Authentication context template",
            "authn_template",
            default="",
            required=True,
            visible_when=when("enabled"),
            help="The template agreed with the IdP: its classes from the strongest to the weakest.",
        ),
        Setting(
            "comparison",
            "Comparison",
            "choice",
            default="exact",
            choices=ch.COMPARISONS,
            required=True,
            visible_when=when("enabled"),
            help="exact: the IdP must use one of the requested classes. minimum: at least as strong as one of them. "
            "maximum: no stronger than one of them. better: stronger than one of them. Strength is the template order.",
        ),
        Setting(
            "use_template_classes",
            "Request every class of the template",
            "bool",
            default=True,
            visible_when=when("enabled"),
            help="Request all the template's classes; untick to choose some below.",
        ),
        Setting(
            "requested_classes",
            "Requested classes",
            "textarea",
            default="",
            required=True,
            visible_when=when("enabled") & unless("use_template_classes"),
            help="One class URI of the template per line, such as urn:oasis:names:tc:SAML:2.0:ac:classes:X509; they are "
            "sent in the template's order.",
        ),
        Setting(
            "include_in_request",
            "Include in AuthnRequests",
            "bool",
            default=True,
            visible_when=when("enabled"),
            help="Send the classes and the comparison as RequestedAuthnContext in every AuthnRequest.",
        ),
        Setting(
            "validate_response",
            "Validate the returned context",
            "bool",
            default=True,
            visible_when=when("enabled"),
            help="Refuse assertions whose AuthnContextClassRef does not satisfy the comparison against the classes.",
        ),
    ),
)

# =====================================================================================================================
# 7. Signature and encryption ("Signature" for SAML 1.1 and WS-Federation, which have no encryption)

_SIGNS = asserting | saml2_sp  # the sides that sign something (ch15-20 C10)
_VERIFIES = relying | saml2_idp

SIGNATURE_SETTINGS = (
    Setting(
        "signing_key",
        "Signing key pair",
        "key_pair",
        default="",
        required=True,
        section="Signing",
        applies=asserting,
        visible_when=unless("disable_signature_processing"),
        help="The key pair this site signs assertions and responses with"
        " (and, for SAML 2.0, logout messages). The partner verifies with its certificate.",
    ),
    Setting(
        "signing_key",
        "Signing key pair",
        "key_pair",
        default="",
        section="Signing",
        applies=saml2_sp,
        help="The key pair this SP signs AuthnRequests and logout messages with. Needed when AuthnRequests are signed "
        "or single logout is on.",
    ),
    Setting(
        "signature_algorithm",
        "Signature algorithm",
        "choice",
        default="rsa-sha256",
        choices=ch.SIGNATURE_ALGORITHMS,
        required=True,
        section="Signing",
        applies=_SIGNS,
        help="The algorithm of every signature this partnership makes; it must suit the signing key (RSA or EC). "
        "RSA-SHA256 unless the partner cannot verify it.",
    ),
    Setting(
        "digest_algorithm",
        "Digest algorithm",
        "choice",
        default="sha256",
        choices=ch.DIGEST_ALGORITHMS,
        required=True,
        section="Signing",
        applies=_SIGNS,
        help="The hash of the signed content inside each signature.",
    ),
    Setting(
        "sign_post",
        "POST signature options",
        "choice",
        default="assertion",
        choices=ch.SIGN_WHAT,
        required=True,
        section="Signing",
        applies=saml2_idp | saml11_producer,
        help="What is signed when assertions travel by HTTP-POST. The assertion must be signed.",
    ),
    Setting(
        "sign_artifact",
        "Artifact signature options",
        "choice",
        default="assertion",
        choices=ch.SIGN_WHAT,
        required=True,
        section="Signing",
        applies=saml2_idp | saml11_producer,
        help="What is signed when assertions are fetched by artifact over the back channel.",
    ),
    Setting(
        "sign_slo_soap",
        "SLO SOAP signature options",
        "choice",
        default="both",
        choices=ch.SIGN_SLO,
        required=True,
        section="Signing",
        applies=saml2_idp,
        help="Which logout messages sent over SOAP are signed (Redirect and POST logout messages are always signed).",
    ),
    Setting(
        "sign_authn_requests",
        "Sign AuthnRequests",
        "bool",
        default=False,
        section="Signing",
        applies=saml2_sp,
        help="Sign every AuthnRequest; needed when the IdP requires signed requests.",
    ),
    Setting(
        "verification_certificate",
        "Verification certificate",
        "certificate",
        default="",
        section="Verification",
        applies=saml2_idp,
        help="The SP's certificate, which verifies its signed AuthnRequests, logout messages and attribute queries. "
        "Needed when any of those must be signed or single logout is on.",
    ),
    Setting(
        "verification_certificate",
        "Verification certificate",
        "certificate",
        default="",
        required=True,
        section="Verification",
        applies=relying,
        visible_when=unless("disable_signature_processing"),
        help="The asserting party's certificate, which verifies its assertions and responses (and, for SAML 2.0, "
        "logout messages).",
    ),
    Setting(
        "require_signed_authn_requests",
        "Require signed AuthnRequests",
        "bool",
        default=False,
        section="Verification",
        applies=saml2_idp,
        help="Accept only signed AuthnRequests from this SP.",
    ),
    Setting(
        "require_signed_assertions",
        "Require signed assertions",
        "bool",
        default=True,
        section="Verification",
        applies=saml2_sp | saml11_consumer,
        help="Refuse assertions that are not signed themselves. With POST, the assertion (or the response around it) "
        "must be signed.",
    ),
    Setting(
        "require_signed_responses",
        "Require signed responses",
        "bool",
        default=False,
        section="Verification",
        applies=saml2_sp | saml11_consumer,
        help="Refuse responses that are not signed as a whole.",
    ),
    Setting(
        "accept_sha1",
        "Accept SHA-1 signatures",
        "bool",
        default=False,
        section="Verification",
        applies=_VERIFIES,
        help="Also accept the partner's RSA-SHA1 and SHA-1 digest signatures. SHA-1 is broken; tick only for a "
        "partner that cannot do better.",
    ),
    Setting(
        "disable_signature_processing",
        "Disable signature processing",
        "bool",
        default=False,
        section="Signing",
        help="For tests only: sign nothing and verify nothing. Never in production: anyone could forge assertions.",
    ),
    # Encryption: SAML 2.0 only.
    Setting(
        "encrypt_assertion",
        "Encrypt assertion",
        "bool",
        default=False,
        section="Encryption",
        applies=saml2_idp,
        help="Send the whole assertion as an EncryptedAssertion that only the SP can read.",
    ),
    Setting(
        "encrypt_name_id",
        "Encrypt Name ID",
        "bool",
        default=False,
        section="Encryption",
        applies=saml2_idp,
        help="Send the Name ID as an EncryptedID (in assertions and SOAP logout messages).",
    ),
    Setting(
        "encryption_certificate",
        "Encryption certificate",
        "certificate",
        default="",
        section="Encryption",
        applies=saml2_idp,
        help="The SP's certificate (RSA) that encrypts for it. Needed when the assertion, the Name ID or an attribute "
        "(Encrypt column of the assertion step) is encrypted.",
    ),
    Setting(
        "encryption_block_algorithm",
        "Block encryption algorithm",
        "choice",
        default="aes256-gcm",
        choices=ch.BLOCK_ALGORITHMS,
        required=True,
        section="Encryption",
        applies=saml2_idp,
        help="The cipher of the encrypted content. AES-GCM unless the SP only knows AES-CBC; 3DES only for legacy SPs.",
    ),
    Setting(
        "encryption_key_transport",
        "Key transport algorithm",
        "choice",
        default="rsa-oaep-mgf1p",
        choices=ch.KEY_TRANSPORT_ALGORITHMS,
        required=True,
        section="Encryption",
        applies=saml2_idp,
        help="How the content key is encrypted to the SP's RSA key. RSA-OAEP needs a key of at least 1024 bits; RSA "
        "v1.5 only for legacy SPs.",
    ),
    Setting(
        "require_encrypted_assertion",
        "Require encrypted assertion",
        "bool",
        default=False,
        section="Encryption",
        applies=saml2_sp,
        help="Refuse responses whose assertion is not encrypted.",
    ),
    Setting(
        "require_encrypted_name_id",
        "Require encrypted Name ID",
        "bool",
        default=False,
        section="Encryption",
        applies=saml2_sp,
        help="Refuse assertions whose Name ID is not encrypted (an encrypted assertion counts).",
    ),
    Setting(
        "decryption_key",
        "Decryption key pair",
        "key_pair",
        default="",
        section="Encryption",
        applies=saml2_sp,
        help="The key pair that decrypts what the IdP encrypts to this SP; its certificate is the one published as "
        "this SP's encryption key. Needed when encryption is required.",
    ),
    Setting(
        "accept_legacy_encryption",
        "Accept legacy encryption",
        "bool",
        default=False,
        section="Encryption",
        applies=saml2_sp,
        help="Also decrypt RSA v1.5 key transport and 3DES content from a legacy IdP. Both have known attacks.",
    ),
)

SIGNATURE_STEPS = (
    StepSpec(
        "signature",
        "Signature and encryption",
        SIGNATURE_SETTINGS,
        applies=saml2,
        help="The keys and certificates that sign, verify, encrypt and decrypt this partnership's messages.",
    ),
    StepSpec(
        "signature",
        "Signature",
        SIGNATURE_SETTINGS,
        applies=saml11 | wsfed,
        help="The keys and certificates that sign and verify this partnership's assertions. SAML 1.1 and "
        "WS-Federation have no encryption.",
    ),
)

# =====================================================================================================================
# 8. Application integration (relying party)

_COOKIE = any_of(
    when("redirect_mode", "open_format_cookie"),
    when("provisioning_type", "remote") & when("provisioning_delivery", "open_format_cookie"),
)
_HEADERS = any_of(
    when("redirect_mode", "http_headers"),
    when("provisioning_type", "remote") & when("provisioning_delivery", "http_headers"),
)

APPLICATION = StepSpec(
    key="application",
    title="Application integration",
    applies=relying,
    help="Where users go after SSO and how the user's identity and attributes reach the application.",
    settings=(
        Setting(
            "redirect_mode",
            "Redirect mode",
            "choice",
            default="no_data",
            choices=ch.REDIRECT_MODES_SAML,
            required=True,
            section="Target application",
            applies=saml,
            help="How identity reaches the application: not at all (a plain redirect), as HTTP headers answered to a "
            "reverse proxy (nginx auth_request), in an encrypted open-format cookie, or kept in the SP session for the "
            "application to ask for.",
        ),
        Setting(
            "redirect_mode",
            "Redirect mode",
            "choice",
            default="no_data",
            choices=ch.REDIRECT_MODES_WSFED,
            required=True,
            section="Target application",
            applies=wsfed,
            help="How identity reaches the application: not at all (a plain redirect), in an encrypted open-format "
            "cookie, or kept in the SP session for the application to ask for.",
        ),
        Setting(
            "target",
            "Target",
            "url",
            default="",
            section="Target application",
            help="Where users land after SSO, such as https://app.example.org/welcome.html. Required unless the relay "
            "state may override it.",
        ),
        Setting(
            "relay_state_overrides_target",
            "Relay state overrides target",
            "bool",
            default=False,
            section="Target application",
            applies=saml2_sp,
            help="Send users to the RelayState of the request that started SSO instead of the target (only to an "
            "allowed target URL). The target may then be left empty.",
        ),
        Setting(
            "header_prefix",
            "Header prefix",
            "text",
            default="Fed-",
            required=True,
            section="Target application",
            applies=saml,
            visible_when=_HEADERS,
            help="Put before every header name (Fed-NAMEID, Fed-FORMAT, Fed-AUTHNCONTEXT, Fed-mail …); headers with "
            "this prefix that arrive from the browser are removed, so they cannot be forged.",
        ),
        Setting(
            "cookie_name",
            "Cookie name",
            "text",
            default="FEDATTR",
            required=True,
            section="Target application",
            visible_when=_COOKIE,
            help="The open-format cookie's name, such as FEDATTR.",
        ),
        Setting(
            "cookie_domain",
            "Cookie domain",
            "text",
            default="",
            section="Target application",
            visible_when=_COOKIE,
            help="The domain the cookie is set for, such as .example.org when the application is on another host of "
            "it; empty sets it for this host only.",
        ),
        Setting(
            "cookie_password",
            "Cookie encryption password",
            "password",
            default="",
            required=True,
            section="Target application",
            visible_when=_COOKIE,
            help="The application derives the cookie's key from this password (see the cookie decoder). Stored sealed "
            "and never shown again.",
        ),
        Setting(
            "cookie_algorithm",
            "Cookie encryption",
            "choice",
            default="aes256-gcm",
            choices=ch.COOKIE_ALGORITHMS,
            required=True,
            section="Target application",
            visible_when=_COOKIE,
            help="The authenticated encryption of the cookie.",
        ),
        Setting(
            "attribute_mapping_enabled",
            "Enable attribute mapping",
            "bool",
            default=False,
            section="Map to application attributes",
            applies=saml,
            help="Give the application attributes of its own, computed from the assertion's. Without mapping, the "
            "assertion's attributes pass unchanged.",
        ),
        Setting(
            "provisioning_type",
            "Provisioning type",
            "choice",
            default="none",
            choices=ch.PROVISIONING_TYPES,
            required=True,
            section="User provisioning",
            help="Remote: when the user of an assertion is not found, send them with the assertion's data to a "
            "provisioning application that creates the account and sends them back.",
        ),
        Setting(
            "provisioning_url",
            "Provisioning application URL",
            "url",
            default="",
            required=True,
            section="User provisioning",
            visible_when=when("provisioning_type", "remote"),
            help="The provisioning application, such as https://accounts.example.org/federated-signup.",
        ),
        Setting(
            "provisioning_delivery",
            "Delivery option",
            "choice",
            default="open_format_cookie",
            choices=ch.PROVISIONING_DELIVERY,
            required=True,
            section="User provisioning",
            applies=saml,
            visible_when=when("provisioning_type", "remote"),
            help="How the data reaches it: an open-format cookie (the application must share this site's cookie "
            "domain) or HTTP headers (any domain).",
        ),
        Setting(
            "provisioning_delivery",
            "Delivery option",
            "choice",
            default="open_format_cookie",
            choices=(ch.PROVISIONING_DELIVERY[0],),
            required=True,
            section="User provisioning",
            applies=wsfed,
            visible_when=when("provisioning_type", "remote"),
            help="The data reaches it in an open-format cookie; it must share this site's cookie domain.",
        ),
        Setting(
            "session_idle_minutes",
            "Session idle timeout (minutes)",
            "int",
            default=60,
            required=True,
            min_value=1,
            section="SP session",
            help="The SP session ends after this long without a request.",
        ),
        Setting(
            "session_max_minutes",
            "Session maximum lifetime (minutes)",
            "int",
            default=120,
            required=True,
            min_value=1,
            section="SP session",
            help="The SP session ends this long after SSO, whatever the activity; then the user signs in at the IdP again.",
        ),
    ),
    tables=(
        TableSpec(
            "allowed_targets",
            "Allowed target URLs",
            section="Target application",
            help="The URLs a RelayState (or TARGET) may send users to, besides the target itself; a row ending in / "
            "allows everything under it, such as https://app.example.org/. Anything else is refused, so the runtime "
            "never redirects to a stranger's site.",
            columns=(Setting("url", "URL", "url", required=True, help="Such as https://app.example.org/reports/."),),
        ),
        TableSpec(
            "attribute_mappings",
            "Application attributes",
            section="Map to application attributes",
            applies=saml,
            visible_when=when("attribute_mapping_enabled"),
            help="One application attribute per row, computed by an expression over the assertion's attributes, such "
            'as FullName = #{attr["lastname"]}, #{attr["firstname"]}.',
            columns=(
                Setting("name", "Application attribute", "text", required=True, help="The name the application reads."),
                Setting(
                    "expression",
                    "Expression",
                    "expression",
                    required=True,
                    help='Text with #{…} parts, such as #{attr["username"]}@#{attr["domainname"]}; attribute names are '
                    "case-sensitive.",
                ),
            ),
        ),
        TableSpec(
            "status_redirects",
            "Status redirect URLs",
            section="Status redirect URLs",
            applies=saml11_consumer | wsfed_rp,
            help="Where users are sent when SSO fails at this site, instead of an error page; for example a user who is "
            "not found can go to a registration page.",
            columns=(
                Setting(
                    "condition",
                    "Failure",
                    "choice",
                    default="user_not_found",
                    choices=ch.STATUS_CONDITIONS_RP,
                    required=True,
                    help="The failure this row handles; each at most once.",
                ),
                *_STATUS_REDIRECT_COLUMNS,
            ),
        ),
        TableSpec(
            "status_redirects",
            "Status redirect URLs",
            section="Status redirect URLs",
            applies=saml2_sp,
            help="Where users are sent when SSO fails at this site (or with an HTTP error), instead of an error page; "
            "for example a user who is not found can go to a registration page.",
            columns=(
                Setting(
                    "condition",
                    "Failure",
                    "choice",
                    default="user_not_found",
                    choices=ch.STATUS_CONDITIONS_SAML2_SP,
                    required=True,
                    help="The failure this row handles; each at most once.",
                ),
                *_STATUS_REDIRECT_COLUMNS,
            ),
        ),
    ),
)

STEPS: tuple[StepSpec, ...] = (
    CONFIGURE,
    FEDERATION_USERS,
    ASSERTION,
    USER_IDENTIFICATION,
    *SSO_SLO_STEPS,
    AUTHN_CONTEXT,
    *SIGNATURE_STEPS,
    APPLICATION,
)
