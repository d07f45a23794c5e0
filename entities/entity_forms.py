"""Forms of the entity pages and wizard. They only collect input (types, choices); the rules and
their messages are entities.models' (run through entities.entity_services), shown at the field."""

from django import forms

from entities.models import (
    KEY_FIELDS,
    SAML2_ONLY_NAME_ID_FORMATS,
    AttributeNameFormat,
    AttributeValueType,
    Binding,
    EndpointKind,
    Entity,
    EntityType,
    KeystoreEntry,
    Location,
    NameIdFormat,
    Protocol,
    SamlTokenType,
    assertion_version,
    entity_fields,
    type_protocol,
)

BLANK = [("", "—")]


class EntityTypeForm(forms.Form):
    """Wizard step 1: where the entity is and what it is."""

    location = forms.ChoiceField(
        label="Entity location",
        choices=Location.choices,
        widget=forms.RadioSelect,
        initial=Location.LOCAL,
        help_text="Local: this site's own party (it signs with its key pairs and answers at the runtime URLs). "
        "Remote: a partner's party (you enter its endpoints and certificates, or import its metadata).",
    )
    entity_type = forms.ChoiceField(
        label="Entity type",
        choices=EntityType.choices,
        widget=forms.RadioSelect,
        initial=EntityType.SAML2_IDP,
        help_text="Asserting parties (SAML2 IdP, SAML1.1 Producer, WS-Fed IP) issue assertions; relying parties "
        "(SAML2 SP, SAML1.1 Consumer, WS-Fed RP) consume them. The type cannot be changed later.",
    )
    saml_token_type = forms.ChoiceField(
        label="SAML token type",
        choices=BLANK + SamlTokenType.choices,
        required=False,
        help_text="WS-Fed entities only: the SAML assertion inside the WS-Federation token (Office 365 uses SAML 1.1). "
        "Choose Legacy only for a token that follows the WS-Federation 1.0 SAML token type. Ignored for other types.",
    )

    def clean(self):
        cleaned = super().clean()
        entity_type = cleaned.get("entity_type")
        if entity_type and type_protocol(entity_type) == Protocol.WSFED:
            if not cleaned.get("saml_token_type"):
                self.add_error("saml_token_type", "Choose the SAML token type of this WS-Federation entity.")
        else:
            cleaned["saml_token_type"] = ""
        return cleaned


class KeyChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, entry):
        return f"{entry.alias} — {entry.subject} (until {entry.not_after:%Y-%m-%d})"


class EntityForm(forms.Form):
    """Wizard step 2 (and the edit wizard): the entity's own fields for its location and type."""

    entity_id = forms.CharField(label="Entity ID", max_length=1024, help_text=Entity._meta.get_field("entity_id").help_text)
    name = forms.CharField(label="Entity name", max_length=100, help_text=Entity._meta.get_field("name").help_text)
    description = forms.CharField(
        label="Description",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=Entity._meta.get_field("description").help_text,
    )
    base_url = forms.CharField(
        label="Base URL",
        max_length=1024,
        widget=forms.URLInput,
        help_text=Entity._meta.get_field("base_url").help_text,
    )
    signing_key = KeyChoiceField(
        queryset=KeystoreEntry.objects.none(),
        to_field_name="alias",
        required=False,
        label="Signing key alias",
        empty_label="— none —",
        help_text="Key pair this entity signs with. SAML 2.0 POST SSO requires signed assertions.",
    )
    next_signing_key = KeyChoiceField(
        queryset=KeystoreEntry.objects.none(),
        to_field_name="alias",
        required=False,
        label="Next signing key alias",
        empty_label="— none —",
        help_text=Entity._meta.get_field("next_signing_key").help_text,
    )
    decryption_key = KeyChoiceField(
        queryset=KeystoreEntry.objects.none(),
        to_field_name="alias",
        required=False,
        label="Decryption key alias",
        empty_label="— none —",
        help_text="Key pair that decrypts assertions, NameIDs or attributes partners encrypt to this site.",
    )
    verification_certificate = KeyChoiceField(
        queryset=KeystoreEntry.objects.none(),
        to_field_name="alias",
        required=False,
        label="Verification certificate alias",
        empty_label="— none —",
        help_text="The partner's certificate: verifies its signed assertions, requests and logout messages.",
    )
    encryption_certificate = KeyChoiceField(
        queryset=KeystoreEntry.objects.none(),
        to_field_name="alias",
        required=False,
        label="Encryption certificate alias",
        empty_label="— none —",
        help_text="The partner's certificate this site encrypts assertions, NameIDs or attributes to.",
    )
    name_id_formats = forms.MultipleChoiceField(
        label="Supported NameID formats",
        choices=NameIdFormat.choices,
        required=False,
        initial=[NameIdFormat.UNSPECIFIED],
        widget=forms.CheckboxSelectMultiple,
        help_text="The identifier formats this entity supports; partnerships pick one of them.",
    )
    wsfed_specific_id = forms.CharField(
        label="Specific ID",
        required=False,
        max_length=64,
        help_text=Entity._meta.get_field("wsfed_specific_id").help_text,
    )
    wsfed_signout_confirm_url = forms.CharField(
        label="Sign-out confirm URL",
        required=False,
        max_length=1024,
        widget=forms.URLInput,
        help_text=Entity._meta.get_field("wsfed_signout_confirm_url").help_text,
    )
    wsfed_service_url = forms.CharField(
        label="Service URL",
        required=False,
        max_length=1024,
        widget=forms.URLInput,
        help_text=Entity._meta.get_field("wsfed_service_url").help_text,
    )
    wsfed_signout_url = forms.CharField(
        label="Sign-out URL",
        required=False,
        max_length=1024,
        widget=forms.URLInput,
        help_text=Entity._meta.get_field("wsfed_signout_url").help_text,
    )
    wsfed_signout_cleanup_url = forms.CharField(
        label="Sign-out cleanup URL",
        required=False,
        max_length=1024,
        widget=forms.URLInput,
        help_text=Entity._meta.get_field("wsfed_signout_cleanup_url").help_text,
    )

    SECTIONS = [
        ("Identification", ["entity_id", "name", "description", "base_url"]),
        (
            "Signing and encryption",
            ["signing_key", "next_signing_key", "decryption_key", "verification_certificate", "encryption_certificate"],
        ),
        (
            "WS-Federation",
            [
                "wsfed_specific_id",
                "wsfed_signout_confirm_url",
                "wsfed_service_url",
                "wsfed_signout_url",
                "wsfed_signout_cleanup_url",
            ],
        ),
        ("NameID formats", ["name_id_formats"]),
    ]

    def __init__(self, *args, location, entity_type, saml_token_type="", **kwargs):
        super().__init__(*args, **kwargs)
        applicable = entity_fields(location, entity_type)
        for name in list(self.fields):
            if name not in applicable:
                del self.fields[name]
        for name, (kinds, _) in KEY_FIELDS.items():
            if name in self.fields:
                self.fields[name].queryset = KeystoreEntry.objects.filter(kind__in=kinds).order_by("alias")
        if "wsfed_service_url" in self.fields:
            self.fields["wsfed_service_url"].required = True
            if EntityType(entity_type) == EntityType.WSFED_IP:
                self.fields["wsfed_service_url"].label = "Single sign-on service URL"
                self.fields["wsfed_service_url"].help_text = "The IP's single sign-on (passive requestor) service URL."
            else:
                self.fields["wsfed_service_url"].label = "Security token consumer service URL"
                self.fields[
                    "wsfed_service_url"
                ].help_text = (
                    "Where this site posts the token for the RP (for Office 365: https://login.microsoftonline.com/login.srf)."
                )
        if assertion_version(entity_type, saml_token_type) == Protocol.SAML11:
            self.fields["name_id_formats"].choices = [
                (value, label) for value, label in NameIdFormat.choices if value not in SAML2_ONLY_NAME_ID_FORMATS
            ]
        self.sections = [(title, [name for name in names if name in self.fields]) for title, names in self.SECTIONS]


class EndpointForm(forms.Form):
    """One row of a remote entity's endpoint table."""

    kind = forms.ChoiceField(label="Service", help_text="Which of the partner's services this URL is.")
    binding = forms.ChoiceField(
        label="Binding",
        help_text="How messages reach it: HTTP-Redirect / HTTP-POST / HTTP-Artifact through the browser, SOAP directly. "
        "Assertion consumer services take POST or Artifact (not Redirect); artifact resolution and attribute services are SOAP.",
    )
    location = forms.CharField(
        label="Location URL",
        max_length=1024,
        widget=forms.URLInput,
        help_text="The partner's URL for this service (absolute http(s) URL).",
    )
    response_location = forms.CharField(
        label="Response location URL",
        max_length=1024,
        required=False,
        widget=forms.URLInput,
        help_text="Single logout and manage NameID (not SOAP), optional: where responses go if not to the location URL.",
    )
    index = forms.IntegerField(
        label="Index",
        min_value=0,
        required=False,
        widget=forms.NumberInput(attrs={"style": "width:5rem;min-width:0"}),
        help_text="Assertion consumer and artifact resolution services: 0, 1, …; unique per service. Empty for the others.",
    )
    is_default = forms.BooleanField(
        label="Default", required=False, help_text="The URL used when a message names none; at most one per service."
    )

    def __init__(self, *args, allowed=None, **kwargs):
        super().__init__(*args, **kwargs)
        allowed = allowed or {}
        self.fields["kind"].choices = BLANK + [(kind, EndpointKind(kind).label) for kind in allowed]
        bindings = []
        for kind_bindings in allowed.values():
            bindings += [binding for binding in kind_bindings if binding not in bindings]
        self.fields["binding"].choices = BLANK + [(binding, Binding(binding).label) for binding in bindings]


class AttributeForm(forms.Form):
    """One row of an asserting entity's attribute table."""

    name = forms.CharField(label="Attribute name", max_length=255, help_text="The name in the assertion, e.g. mail or groups.")
    name_format = forms.ChoiceField(
        label="Name format",
        choices=AttributeNameFormat.choices,
        initial=AttributeNameFormat.UNSPECIFIED,
        help_text="SAML 2.0: unspecified, basic (a simple name) or URI (e.g. urn:oid:…).",
    )
    namespace = forms.CharField(
        label="Namespace",
        max_length=1024,
        required=False,
        help_text="SAML 1.1: the attribute namespace URI, e.g. http://schemas.xmlsoap.org/claims (Office 365 UPN).",
    )
    value_type = forms.ChoiceField(
        label="Value type",
        choices=BLANK + AttributeValueType.choices,
        required=False,
        help_text="Static: the text as it is. User attribute: a directory attribute name. Expression: e.g. "
        "#{attr[\"title\"] == 'manager' ? 'administrator' : attr[\"title\"]}.",
    )
    value = forms.CharField(label="Value", max_length=4096, required=False, help_text="The value, attribute name or expression.")

    def __init__(self, *args, version=Protocol.SAML2, local=True, **kwargs):
        super().__init__(*args, **kwargs)
        if version == Protocol.SAML2:
            del self.fields["namespace"]
        else:
            del self.fields["name_format"]
        if not local:
            del self.fields["value_type"]
            del self.fields["value"]


class RowFormSet(forms.BaseFormSet):
    """Every row is optional: a row left blank is skipped (also rows that came prefilled)."""

    def initial_form_count(self):
        return 0 if self.is_bound else super().initial_form_count()


EndpointFormSet = forms.formset_factory(EndpointForm, formset=RowFormSet, extra=1, max_num=100, absolute_max=100)
AttributeFormSet = forms.formset_factory(AttributeForm, formset=RowFormSet, extra=1, max_num=100, absolute_max=100)


def endpoint_initial(entity):
    return [
        {
            "kind": row.kind,
            "binding": row.binding,
            "location": row.location,
            "response_location": row.response_location,
            "index": row.index,
            "is_default": row.is_default,
        }
        for row in entity.endpoints.all()
    ]


def attribute_initial(entity):
    return [
        {
            "name": row.name,
            "name_format": row.name_format,
            "namespace": row.namespace,
            "value_type": row.value_type,
            "value": row.value,
        }
        for row in entity.attributes.all()
    ]


def entity_initial(entity):
    values = {name: getattr(entity, name) for name in entity_fields(entity.location, entity.entity_type)}
    for name in KEY_FIELDS:
        if name in values:
            values[name] = values[name].alias if values[name] else None
    return values


class EntityFilterForm(forms.Form):
    """The list page's filters (GET)."""

    q = forms.CharField(label="Search", required=False, help_text="Part of an entity ID or entity name.")
    entity_type = forms.ChoiceField(
        label="Type", required=False, choices=[("", "All types"), *EntityType.choices], help_text="Entity type."
    )
    location = forms.ChoiceField(
        label="Location", required=False, choices=[("", "Local and remote"), *Location.choices], help_text="Local or remote."
    )
