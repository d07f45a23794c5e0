"""Forms of the partnership wizard, generated from partnerships.catalog.

One form per wizard step, with one field per catalog Setting that applies to the partnership kind, and one formset
per catalog TableSpec. The forms only collect input and coerce it to the catalog's value types; the rules and their
messages are the catalog's (`catalog.validate`), shown at the field by partnerships.wizards.

Fields whose `visible_when` is false for the posted values are ignored: their errors are dropped and their value is
the catalog default (partnership_wizard.js hides them; without JavaScript they are shown and still ignored).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django import forms

from entities.entity_forms import EntityTypeForm, RowFormSet
from entities.models import EntityType, KeystoreEntry, Location
from federation.secretbox import SecretBoxError, seal_text, unseal_text
from partnerships import catalog

BLANK = ("", "— none —")
SEALED_PREFIX = "sealed:"

KIND_SENTENCES = {
    "saml2_idp_sp": "This site is the SAML 2.0 identity provider: it authenticates users and sends assertions to a "
    "partner's service provider.",
    "saml2_sp_idp": "This site is the SAML 2.0 service provider: it receives assertions from a partner's identity "
    "provider and signs users in to its applications.",
    "saml11_producer_consumer": "This site is the SAML 1.1 producer: it authenticates users and sends assertions to "
    "a partner's consumer.",
    "saml11_consumer_producer": "This site is the SAML 1.1 consumer: it receives assertions from a partner's producer.",
    "wsfed_ip_rp": "This site is the WS-Federation identity provider (IP): it signs users in to a partner's resource "
    "partner, e.g. Office 365.",
    "wsfed_rp_ip": "This site is the WS-Federation resource partner (RP): it receives tokens from a partner's identity provider.",
}


# --------------------------------------------------------------------------------------------------- lookups


@dataclass
class Lookups:
    """What the choice fields offer, read once per request: keystore entries, authentication context templates and
    the directories chosen on the Configure step (the `directory` settings pick among those)."""

    key_pairs: list = field(default_factory=list)  # [(alias, label)]
    certificates: list = field(default_factory=list)  # [(group label, [(alias, label)])]
    authn_templates: list = field(default_factory=list)  # [name]
    directories: list = field(default_factory=list)  # [name] chosen on Configure, in order
    stored_secrets: frozenset = frozenset()  # "step.key" of passwords the partnership has stored (edit)


def keystore_choices():
    """(key pairs, certificates grouped by keystore kind) as select choices, from one query."""
    key_pairs, groups = [], {kind: [] for kind in KeystoreEntry.Kind.values}
    entries = KeystoreEntry.objects.only("alias", "kind", "subject", "not_after", "key_type", "key_size").order_by("alias")
    for entry in entries:
        label = f"{entry.alias} — {entry.subject} ({entry.key_type.upper()} {entry.key_size}, until {entry.not_after:%Y-%m-%d})"
        groups[entry.kind].append((entry.alias, label))
        if entry.kind == KeystoreEntry.Kind.KEY_PAIR:
            key_pairs.append((entry.alias, label))
    certificates = [
        ("Trusted certificates", groups[KeystoreEntry.Kind.TRUSTED_CERTIFICATE]),
        ("Key pairs", groups[KeystoreEntry.Kind.KEY_PAIR]),
        ("Trusted CAs", groups[KeystoreEntry.Kind.TRUSTED_CA]),
    ]
    return key_pairs, [(label, options) for label, options in certificates if options]


# --------------------------------------------------------------------------------------------------- one field


class AliasChoiceField(forms.ChoiceField):
    """A keystore alias. A stale alias (deleted meanwhile) gets a message that says what to do."""

    default_error_messages = {
        "invalid_choice": "“%(value)s” is not in the keystore (any more): choose another entry, or Generate / Import one.",
    }


class DirectoryChoiceField(forms.ChoiceField):
    default_error_messages = {
        "invalid_choice": "“%(value)s” is not one of this partnership's directories: choose one of those selected on the "
        "Configure partnership step.",
    }


class SealedPasswordField(forms.CharField):
    """A password typed in the wizard. The wizard keeps it sealed in the session (see PartnershipWizard._raw_post) and
    the page never shows it again; the cleaned value is the plain text for save_partnership."""

    widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})

    def to_python(self, value):
        value = super().to_python(value)
        if value.startswith(SEALED_PREFIX):
            try:
                return unseal_text(value[len(SEALED_PREFIX) :])
            except (SecretBoxError, ValueError):  # sealed with a retired secret, or tampered with
                return ""
        return value


def seal_password(value):
    return SEALED_PREFIX + seal_text(value) if value and not value.startswith(SEALED_PREFIX) else value


def _choices(setting):
    values = list(setting.choices)
    if "" not in setting.choice_values and (not setting.required or setting.default in (None, "")):
        values.insert(0, ("", "—"))
    return values


def setting_field(setting, lookups, *, step_key="", in_table=False):
    """The form field of one catalog Setting (or table column), labelled and with its help text."""
    kind = setting.type
    common = {"label": setting.label, "help_text": setting.help, "required": False}
    if kind == "bool":
        result = forms.BooleanField(widget=forms.CheckboxInput(attrs={"data-bool": "1"}), **common)
    elif kind == "int":
        # The range is the catalogue's rule (its message names the setting); the browser only gets it as a hint.
        attrs = {"class": "number"}
        if setting.min_value is not None:
            attrs["min"] = setting.min_value
        if setting.max_value is not None:
            attrs["max"] = setting.max_value
        result = forms.IntegerField(widget=forms.NumberInput(attrs=attrs), **common)
        result.error_messages["invalid"] = f"{setting.label} must be a whole number."
    elif kind == "textarea":
        result = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), strip=False, **common)
    elif kind == "url":
        result = forms.CharField(widget=forms.URLInput, max_length=1024, **common)
    elif kind == "expression":
        result = forms.CharField(
            widget=forms.TextInput(attrs={"class": "expression", "spellcheck": "false"}), strip=False, max_length=4096, **common
        )
    elif kind == "choice":
        result = forms.ChoiceField(choices=_choices(setting), **common)
    elif kind == "multichoice":
        result = forms.MultipleChoiceField(choices=list(setting.choices), widget=forms.CheckboxSelectMultiple, **common)
    elif kind == "key_pair":
        result = AliasChoiceField(choices=[BLANK, *lookups.key_pairs], **common)
    elif kind == "certificate":
        result = AliasChoiceField(choices=[BLANK, *lookups.certificates], **common)
    elif kind == "authn_template":
        result = AliasChoiceField(choices=[BLANK, *[(name, name) for name in lookups.authn_templates]], **common)
        result.error_messages["invalid_choice"] = "There is no authentication context template “%(value)s” (any more)."
    elif kind == "directory":
        result = DirectoryChoiceField(choices=[("", "—"), *[(name, name) for name in lookups.directories]], **common)
    elif kind == "password":
        stored = f"{step_key}.{setting.key}" in lookups.stored_secrets
        help_text = setting.help + (" A password is stored: leave this empty to keep it." if stored else "")
        result = SealedPasswordField(label=setting.label, help_text=help_text, required=False, strip=False)
        result.secret_stored = stored
    else:  # text
        result = forms.CharField(max_length=4096, **common)
    result.setting = setting
    result.catalog_required = setting.required
    if in_table:
        result.initial = catalog.default_value(setting)
    return result


def predicate_json(condition):
    """`visible_when` as JSON for partnership_wizard.js ({"key", "values", "negate"}, {"all": [...]} or
    {"any": [...]}), or "" when the condition is not one the script understands (the field is then always shown;
    the server still decides)."""
    data = _predicate(condition)
    return json.dumps(data) if data is not None else ""


def _predicate(condition):
    if isinstance(condition, catalog.When):
        return {"key": condition.key, "values": list(condition.values), "negate": condition.negate}
    if isinstance(condition, catalog.AllOf | catalog.AnyOf):
        parts = [_predicate(c) for c in condition.conditions]
        if any(p is None for p in parts):
            return None
        return {"all": parts} if isinstance(condition, catalog.AllOf) else {"any": parts}
    return None


def condition_text(condition, settings):
    """A `visible_when` in words with the labels the administrator sees, e.g. “Enable SLO” is ticked."""
    if condition is None:
        return ""
    if isinstance(condition, catalog.When):
        setting = settings.get(condition.key)
        label = f"“{setting.label}”" if setting else condition.key
        if condition.values == (True,):
            return f"{label} is {'not ' if condition.negate else ''}ticked"
        shown = " or ".join(
            f"“{setting.choice_label(v)}”" if setting and setting.choices else ("empty" if v == "" else f"“{v}”")
            for v in condition.values
        )
        return f"{label} is {'not ' if condition.negate else ''}{shown}"
    if isinstance(condition, catalog.AllOf):
        return " and ".join(condition_text(c, settings) for c in condition.conditions)
    if isinstance(condition, catalog.AnyOf):
        return "(" + " or ".join(condition_text(c, settings) for c in condition.conditions) + ")"
    describe = getattr(condition, "describe", None)
    return describe() if describe else ""


# --------------------------------------------------------------------------------------------------- step forms


class _VisibilityMixin:
    """Drops the errors of fields hidden by `visible_when` and gives them their default (they are ignored)."""

    def _catalog_items(self):
        raise NotImplementedError

    def _ignore_hidden(self, cleaned):
        values = dict(cleaned)
        for item in self._catalog_items():
            values.setdefault(item.key, catalog.default_value(item))
        self.hidden_keys = set()
        for item in self._catalog_items():
            if not catalog.visible(item, values):
                self.hidden_keys.add(item.key)
                if item.key in self._errors:
                    del self._errors[item.key]
                cleaned[item.key] = catalog.default_value(item)
        return cleaned


class CatalogStepForm(_VisibilityMixin, forms.Form):
    """The settings of one catalog step for one partnership kind, grouped in fieldsets by `Setting.section`."""

    def __init__(self, *args, kind_key, step_key, lookups, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind_key = kind_key
        self.step_key = step_key
        self.catalog_settings = catalog.settings_for(kind_key, step_key)
        self.hidden_keys = set()
        by_key = {setting.key: setting for setting in self.catalog_settings}
        for setting in self.catalog_settings:
            self.fields[setting.key] = setting_field(setting, lookups, step_key=step_key)
            self.fields[setting.key].visible_when_json = predicate_json(setting.visible_when)
            self.fields[setting.key].condition_text = condition_text(setting.visible_when, by_key)
        self.sections = self._sections()

    def _sections(self):
        groups = {}
        for setting in self.catalog_settings:
            groups.setdefault(setting.section, []).append(setting.key)
        return list(groups.items())

    def _catalog_items(self):
        return self.catalog_settings

    def clean(self):
        return self._ignore_hidden(super().clean())

    def settings_values(self):
        """{setting key: value} of the catalog settings (hidden ones at their default)."""
        return {setting.key: self.cleaned_data.get(setting.key) for setting in self.catalog_settings}

    def visibility(self):
        """{field name: JSON predicate} for the script."""
        result = {}
        for setting in self.catalog_settings:
            if setting.visible_when is not None:
                data = predicate_json(setting.visible_when)
                if data:
                    result[setting.key] = data
        return result


class CatalogRowForm(_VisibilityMixin, forms.Form):
    """One row of a catalog table: one field per column that applies to the kind."""

    def __init__(self, *args, kind_key, table, lookups, step_key="", **kwargs):
        super().__init__(*args, **kwargs)
        self.table = table
        self.columns = catalog.columns_for(kind_key, table)
        by_key = {column.key: column for column in self.columns}
        for column in self.columns:
            field = self.fields[column.key] = setting_field(column, lookups, step_key=step_key, in_table=True)
            field.visible_when_json = predicate_json(column.visible_when)
            field.condition_text = condition_text(column.visible_when, by_key)
            # The expression test: expression columns, and a value column whose row says its value is an expression.
            if column.type == "expression":
                field.expression_test, field.expression_when = True, ""
            elif column.key == "value" and "value_type" in by_key and "expression" in by_key["value_type"].choice_values:
                field.expression_test = True
                field.expression_when = json.dumps({"key": "value_type", "values": ["expression"], "negate": False})

    def _catalog_items(self):
        return self.columns

    def clean(self):
        return self._ignore_hidden(super().clean())


CatalogRowFormSet = forms.formset_factory(CatalogRowForm, formset=RowFormSet, extra=1, max_num=100, absolute_max=100)


# --------------------------------------------------------------------------------------------------- type and Configure


class KindForm(forms.Form):
    """Create partnership, step 1: which of the six partnership types."""

    kind = forms.ChoiceField(
        label="Partnership type",
        widget=forms.RadioSelect,
        help_text="The local side decides the type: choose the protocol and the role this site plays. The type cannot "
        "be changed later (create another partnership instead).",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [(info.key, info.label) for info in catalog.KINDS.values()]

    def kinds(self):
        """[(kind info, sentence, bound radio)] for the template."""
        radios = {radio.data["value"]: radio for radio in self["kind"]}
        return [(info, KIND_SENTENCES.get(info.key, ""), radios.get(info.key)) for info in catalog.KINDS.values()]


@dataclass
class EntityChoices:
    """The entities the Configure step offers: local ones of the kind's local type, remote ones of its remote type."""

    local: list  # [(pk, label)]
    remote: list
    locked_local: object = None  # Entity, when editing
    locked_remote: object = None  # Entity, when editing a partnership whose remote entity is set


def entity_label(entity):
    return f"{entity.name} ({entity.entity_id})"


class ConfigureForm(CatalogStepForm):
    """Configure partnership: the model columns (name, description, entities) and the catalog's Configure settings.
    The directories are a table of their own (DirectoryFormSet), so their order is kept without JavaScript."""

    IDENTITY_FIELDS = ("name", "description", "local_entity", "remote_entity")

    name = forms.CharField(
        label="Partnership name",
        max_length=128,
        required=False,
        help_text="Letters, digits, “_”, “-” and “.”, no spaces, e.g. Partner_SP-1. Unique; also the name partners see "
        "in metadata exports.",
    )
    description = forms.CharField(
        label="Description",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Optional note for administrators.",
    )
    local_entity = forms.ChoiceField(label="Local entity", required=False)
    remote_entity = forms.ChoiceField(label="Remote entity", required=False)
    refresh_entity_data = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, kind_key, step_key, lookups, entities, **kwargs):
        super().__init__(*args, kind_key=kind_key, step_key=step_key, lookups=lookups, **kwargs)
        info = catalog.kind(kind_key)
        local_label = EntityType(info.local_entity_type).label
        remote_label = EntityType(info.remote_entity_type).label
        self.fields["name"].catalog_required = True
        local = self.fields["local_entity"]
        local.label = f"Local {local_label}"
        local.catalog_required = True
        local.choices = [("", "— choose —"), *entities.local]
        local.help_text = (
            f"This site's {local_label} entity. It cannot be changed once the partnership exists. "
            "Create local entity opens the entity wizard and comes back here with the new entity chosen."
        )
        local.error_messages["invalid_choice"] = (
            f"That entity is not a local {local_label} (any more): choose one from the list, or create one."
        )
        remote = self.fields["remote_entity"]
        remote.error_messages["invalid_choice"] = (
            f"That entity is not a remote {remote_label} (any more): choose one from the list, or put it off."
        )
        remote.label = f"Remote {remote_label}"
        remote.choices = [("", "— put off (choose later) —"), *entities.remote]
        remote.help_text = (
            f"The partner's {remote_label} entity. You may put it off (e.g. until its metadata arrives): the partnership "
            "is then saved as Incomplete. Once set it cannot be changed."
        )
        if entities.locked_local is not None:
            local.choices = [(str(entities.locked_local.pk), entity_label(entities.locked_local))]
            local.initial = str(entities.locked_local.pk)
            local.disabled = True
            local.help_text = "This site's entity; the entities of a partnership cannot be swapped."
        if entities.locked_remote is not None:
            remote.choices = [(str(entities.locked_remote.pk), entity_label(entities.locked_remote))]
            remote.initial = str(entities.locked_remote.pk)
            remote.disabled = True
            remote.help_text = "The partner's entity; the entities of a partnership cannot be swapped."
        self.locked = {"local_entity": entities.locked_local is not None, "remote_entity": entities.locked_remote is not None}
        self.order_fields([*self.IDENTITY_FIELDS, "refresh_entity_data", *(s.key for s in self.catalog_settings)])

    def _sections(self):
        return [("Partnership", ["name", "description"]), ("Entities", ["local_entity", "remote_entity"]), *super()._sections()]

    def clean_name(self):
        name = (self.cleaned_data.get("name") or "").strip()
        message = catalog.validate_name(name)
        if message:
            raise forms.ValidationError(message)
        return name

    def clean_local_entity(self):
        value = self.cleaned_data.get("local_entity")
        if not value:
            raise forms.ValidationError("Choose the local entity, or create one with Create local entity.")
        return value


class DirectoryRowForm(forms.Form):
    directory = forms.ChoiceField(
        label="Directory",
        required=False,
        help_text="A user directory; rows are tried from the top.",
    )

    def __init__(self, *args, directory_names=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["directory"].choices = [("", "—"), *[(name, name) for name in directory_names]]


class DirectoryRowFormSet(RowFormSet):
    def clean(self):
        super().clean()
        seen = set()
        for form in self.forms:
            name = (getattr(form, "cleaned_data", None) or {}).get("directory")
            if not name:
                continue
            if name in seen:
                form.add_error("directory", f"“{name}” is chosen twice; each directory is listed once.")
            seen.add(name)


DirectoryFormSet = forms.formset_factory(DirectoryRowForm, formset=DirectoryRowFormSet, extra=0, max_num=50, absolute_max=50)


# --------------------------------------------------------------------------------------------------- expression test


class ExpressionTestForm(forms.Form):
    """The "Test this expression against a user" form (the JSON endpoint and its no-JavaScript page)."""

    expression = forms.CharField(
        label="Expression",
        strip=False,
        max_length=4096,
        widget=forms.TextInput(attrs={"class": "expression", "spellcheck": "false"}),
        help_text='For example #{attr["givenName"]} #{attr["sn"]}, or a user attribute name as it is.',
    )
    user = forms.CharField(label="User name", max_length=255, help_text="The login name of a user in the directory.")
    directory = forms.ChoiceField(label="Directory", help_text="Where the user is looked up.")
    session_attributes = forms.CharField(
        label="Session attributes",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Optional: name=value lines standing in for session_attr[…] values (a test has no session).",
    )

    def __init__(self, *args, directory_names=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["directory"].choices = [(name, name) for name in directory_names]

    def clean_session_attributes(self):
        values = {}
        for number, line in enumerate((self.cleaned_data.get("session_attributes") or "").splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, value = line.partition("=")
            if not sep or not name.strip():
                raise forms.ValidationError(f"Line {number}: write name=value.")
            values.setdefault(name.strip(), []).append(value.strip())
        return values


class PartnershipEntityTypeForm(EntityTypeForm):
    """The entity wizard's first step when a partnership wizard opened it: the location and type are fixed."""

    def __init__(self, *args, location="", entity_type="", **kwargs):
        super().__init__(*args, **kwargs)
        if location:
            self.fields["location"].choices = [(value, label) for value, label in Location.choices if value == location]
            self.fields["location"].initial = location
        if entity_type:
            self.fields["entity_type"].choices = [(value, label) for value, label in EntityType.choices if value == entity_type]
            self.fields["entity_type"].initial = entity_type
