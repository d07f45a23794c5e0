"""The create-partnership and edit-partnership wizards, built on federation.wizard from partnerships.catalog.

Create: 1 Partnership type (the six kinds) → Configure partnership (name, description, local and remote entity with
"Create local entity" / "Create remote entity" / "Import metadata" detours, directories in order, the catalog's
Configure settings) → every later catalog step of that kind → Confirm (one box per step, each with Modify) → Finish.
Edit: the same without the type step, prefilled from the stored partnership, the entities locked (a remote entity
that was put off can be chosen now), and "Get updates" on Configure when an entity changed since it was copied.

Every step after the type is generated from the catalog (see partnerships.wizard_forms). On Next the wizard builds
the configuration of every step (earlier steps as confirmed, this one as posted, later ones as stored or prefilled),
runs `catalog.validate` with `services.validation_context`, and shows this step's blocking problems at their fields
(table cells for "table.row.column") and its other problems as warnings. Finish calls `services.save_partnership`.

Passwords typed in a step are kept sealed in the session (never as plain text) and never shown again.
"""

from __future__ import annotations

import re
import secrets as token_source

from django.contrib import messages
from django.db.models import Prefetch
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import resolve, reverse, reverse_lazy

from entities.entity_wizards import CONFIGURE_STEP as ENTITY_CONFIGURE_STEP
from entities.entity_wizards import CONFIRM_STEP as ENTITY_CONFIRM_STEP
from entities.entity_wizards import EntityCreateWizard
from entities.metadata_wizards import MetadataImportWizard
from entities.models import Endpoint, Entity, EntityAttribute, Location
from federation.models import UserDirectory
from federation.wizard import CREATED_PARAM, Detour, StepErrors, SummaryTable, Table, Wizard, append_query, display_value
from federation.wizard import Step as WizardStep
from partnerships import catalog, prefill, services
from partnerships.models import AuthnContextTemplate, Partnership, PartnershipState
from partnerships.services import PartnershipError
from partnerships.wizard_forms import (
    CatalogRowFormSet,
    CatalogStepForm,
    ConfigureForm,
    DirectoryFormSet,
    EntityChoices,
    KindForm,
    Lookups,
    PartnershipEntityTypeForm,
    condition_text,
    entity_label,
    keystore_choices,
    predicate_json,
    seal_password,
)

STEP_TEMPLATE = "partnerships/wizard_step.html"
CONFIRM_TEMPLATE = "partnerships/wizard_confirm.html"
REFERENCE_TYPES = ("key_pair", "certificate", "authn_template")

DIRECTORIES_HELP = (
    "The user directories this partnership authenticates users in or looks them up in, tried from the top row down. "
    "Add a row per directory; to change the order, change the directory chosen in each row."
)


# --------------------------------------------------------------------------------------------------- the steps


def _applies(spec):
    def condition(wizard):
        key = wizard.kind_key()
        return bool(key) and spec.applies(catalog.kind(key))

    return condition


def _table_applies(variants):
    def condition(wizard):
        key = wizard.kind_key()
        return bool(key) and any(table.applies(catalog.kind(key)) for table in variants)

    return condition


def _key_detours(spec):
    """Generate / Import next to every key pair and certificate setting of a catalog step (the keystore pages come
    back with the new alias chosen, as in the entity wizard)."""
    detours = {}
    for setting in spec.settings:
        if setting.type == "key_pair":
            detours[f"{setting.key}-generate"] = Detour(
                "Generate", setting.key, reverse_lazy("keystore:generate"), f"Generate a key pair for {setting.label}"
            )
            detours[f"{setting.key}-import"] = Detour(
                "Import", setting.key, reverse_lazy("keystore:import_key_pair"), f"Import a key pair for {setting.label}"
            )
        elif setting.type == "certificate":
            detours[f"{setting.key}-import"] = Detour(
                "Import",
                setting.key,
                reverse_lazy("keystore:import_trusted_certificate"),
                f"Import the certificate for {setting.label}",
            )
    return detours


def _entity_detours():
    return {
        "local-create": Detour(
            "Create local entity", "local_entity", lambda w: w.entity_create_url(Location.LOCAL), "Create a local entity"
        ),
        "remote-create": Detour(
            "Create remote entity", "remote_entity", lambda w: w.entity_create_url(Location.REMOTE), "Create a remote entity"
        ),
        "remote-import": Detour(
            "Import metadata",
            "remote_entity",
            lambda w: reverse("partnerships:wizard_metadata_import"),
            "Create the remote entity from the partner's metadata",
        ),
        "get-updates": Detour(
            "Get updates…", "refresh_entity_data", lambda w: w.get_updates_url(), "Copy the entities' current data"
        ),
    }


def _catalog_step(spec):
    tables = {}
    if spec.key == "configure":
        tables["directories"] = Table(DirectoryFormSet, "Directories", DIRECTORIES_HELP, "Add directory")
    # A table may be written once per group of kinds under one key: one wizard table that applies when any does.
    by_key = {}
    for table in spec.tables:
        by_key.setdefault(table.key, []).append(table)
    for key, variants in by_key.items():
        tables[key] = Table(CatalogRowFormSet, variants[0].label, variants[0].help, "Add row", condition=_table_applies(variants))
    detours = _key_detours(spec)
    if spec.key == "configure":
        detours.update(_entity_detours())
    return WizardStep(
        spec.key,
        spec.title,
        form_class=ConfigureForm if spec.key == "configure" else CatalogStepForm,
        tables=tables,
        detours=detours,
        template_name=STEP_TEMPLATE,
        help=spec.help,
        condition=_applies(spec),
    )


TYPE_STEP = WizardStep(
    "type",
    "Partnership type",
    form_class=KindForm,
    template_name=STEP_TEMPLATE,
    help="Which side of the federation this site plays, and the protocol. Each type has its own wizard steps.",
)
# One wizard step per catalogue StepSpec; a step key written once per group of kinds (e.g. "SSO and SLO" for SAML 2.0,
# "Single sign-on" for SAML 1.1) gives one wizard step per variant, and a kind sees only the variants for it.
CATALOG_STEPS = [(spec, _catalog_step(spec)) for spec in catalog.STEPS]
CONFIRM_STEP = WizardStep("confirm", "Confirm", confirm=True, template_name=CONFIRM_TEMPLATE)


def catalog_steps(kind_key):
    if not kind_key:
        return []
    info = catalog.kind(kind_key)
    return [step for spec, step in CATALOG_STEPS if spec.applies(info)]


# Live window previews: (step, setting) -> preview shown next to it; each preview reads the skew (Configure) and
# the duration named in PREVIEW_DURATION. Asserting parties preview the window they write, relying parties how
# they widen what they receive.
PREVIEWS_ASSERTING = {
    ("configure", "skew_seconds"): "validity",
    ("sso_slo", "sso_validity_seconds"): "validity",
    ("sso_slo", "slo_validity_seconds"): "slo",
}
PREVIEWS_RELYING = {
    ("configure", "skew_seconds"): "acceptance",
    ("sso_slo", "slo_validity_seconds"): "slo",
}
PREVIEW_DURATION = {"validity": ("sso_slo", "sso_validity_seconds"), "slo": ("sso_slo", "slo_validity_seconds")}


# --------------------------------------------------------------------------------------------------- shared engine


class PartnershipWizard(Wizard):
    """What the create and edit wizards share: steps from the catalog, lookups, config assembly and validation."""

    template_name = STEP_TEMPLATE
    confirm_template_name = CONFIRM_TEMPLATE
    max_runs = 10

    def __init__(self, request, token, **kwargs):
        super().__init__(request, token, **kwargs)
        self._memo = {}
        self._configure_override = None  # Configure's data while that step itself is validated
        self._posted_step_name = None

    # -- what the subclasses say

    def kind_key(self):
        raise NotImplementedError

    @property
    def partnership(self):
        return self.kwargs.get("partnership")

    @property
    def steps(self):
        return [TYPE_STEP, *catalog_steps(self.kind_key()), CONFIRM_STEP]

    # -- memo (per request; cleared with the engine's cleaned steps when the state is saved)

    def _remember(self, key, compute):
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def _remember_stored(self, key, compute):
        """Like _remember, for values derived from the stored steps: forgotten when the engine saves the state (it
        then starts a new dict of cleaned steps)."""
        if getattr(self, "_stored_memo_owner", None) is not self._cleaned:
            self._stored_memo_owner, self._stored_memo = self._cleaned, {}
        if key not in self._stored_memo:
            self._stored_memo[key] = compute()
        return self._stored_memo[key]

    # -- lookups

    def lookups(self, with_directories=True):
        key_pairs, certificates = self._remember("keystore", keystore_choices)
        templates = self._remember(
            "templates", lambda: list(AuthnContextTemplate.objects.order_by("name").values_list("name", flat=True))
        )
        return Lookups(
            key_pairs=key_pairs,
            certificates=certificates,
            authn_templates=templates,
            directories=self.directory_names() if with_directories else [],
            stored_secrets=self.stored_secret_keys(),
        )

    def stored_secret_keys(self):
        if self.partnership is None:
            return frozenset()
        return self._remember("secrets", lambda: frozenset(services.read_secrets(self.partnership)))

    def all_directory_names(self):
        return self._remember("directories", lambda: list(UserDirectory.objects.order_by("name").values_list("name", flat=True)))

    def _configure_data(self):
        if self._configure_override is not None:
            return self._configure_override
        return self.cleaned("configure")

    def directory_names(self):
        data = self._configure_data()
        if data is None:
            return []
        return [row["directory"] for row in data.rows.get("directories", []) if row.get("directory")]

    def directories(self):
        names = self.directory_names()
        found = self._remember(
            ("directory-rows", tuple(names)), lambda: {d.name: d for d in UserDirectory.objects.filter(name__in=names)}
        )
        return [found[name] for name in names if name in found]

    # -- entities

    def _entity(self, pk):
        if not pk:
            return None

        def load():
            return (
                Entity.objects.select_related(*services.ENTITY_KEY_FIELDS)
                .prefetch_related(
                    Prefetch("endpoints", queryset=Endpoint.objects.order_by("position", "id")),
                    Prefetch("attributes", queryset=EntityAttribute.objects.order_by("position", "id")),
                )
                .filter(pk=pk)
                .first()
            )

        return self._remember(("entity", str(pk)), load)

    def chosen_entity_pks(self):
        """(local pk, remote pk) chosen on Configure ("" when not chosen)."""
        data = self._configure_data()
        if data is None:
            return "", ""
        return str(data.form.get("local_entity") or ""), str(data.form.get("remote_entity") or "")

    def chosen_entities(self):
        """(local Entity or None, remote Entity or None) chosen on Configure, with their endpoints and attributes."""
        local, remote = self.chosen_entity_pks()
        return self._entity(local), self._entity(remote)

    def entity_choices(self):
        def load():
            info = catalog.kind(self.kind_key())
            rows = list(
                Entity.objects.filter(entity_type__in=(info.local_entity_type, info.remote_entity_type))
                .only("pk", "name", "entity_id", "location", "entity_type")
                .order_by("name")
            )
            local = [
                (str(e.pk), entity_label(e))
                for e in rows
                if e.location == Location.LOCAL and e.entity_type == info.local_entity_type
            ]
            remote = [
                (str(e.pk), entity_label(e))
                for e in rows
                if e.location == Location.REMOTE and e.entity_type == info.remote_entity_type
            ]
            return local, remote

        local, remote = self._remember("entity-choices", load)
        partnership = self.partnership
        return EntityChoices(
            local=local,
            remote=remote,
            locked_local=partnership.local_entity if partnership else None,
            locked_remote=partnership.remote_entity if partnership and partnership.remote_entity_id else None,
        )

    def refresh_requested(self):
        data = self._configure_data()
        return bool(data and data.form.get("refresh_entity_data"))

    def entity_data(self):
        """The entity facts the partnership will hold after Finish (what save_partnership copies)."""
        local_pk, remote_pk = self.chosen_entity_pks()
        partnership = self.partnership
        if partnership is not None and not self.refresh_requested():
            newly_set_remote = bool(remote_pk) and partnership.remote_entity_id is None
            if not newly_set_remote:
                return partnership.entity_data or {}

        def facts():
            local, remote = self.chosen_entities()
            return {"local": services.entity_facts(local), "remote": services.entity_facts(remote)}

        return self._remember(("entity-data", local_pk, remote_pk), facts)

    # -- engine hooks: forms

    def get_form_kwargs(self, step):
        if step.name == "type" or step.confirm:
            return {}
        kwargs = {"kind_key": self.kind_key(), "step_key": step.name}
        if step.name == "configure":
            kwargs["lookups"] = self.lookups(with_directories=False)
            kwargs["entities"] = self.entity_choices()
        else:
            kwargs["lookups"] = self.lookups()
        return kwargs

    def get_table_kwargs(self, step, prefix):
        if prefix == "directories":
            return {"form_kwargs": {"directory_names": self.all_directory_names()}}
        table = self._table_spec(step.name, prefix)
        lookups = self.lookups(with_directories=step.name != "configure")
        return {"form_kwargs": {"kind_key": self.kind_key(), "table": table, "lookups": lookups, "step_key": step.name}}

    def _table_spec(self, step_key, table_key):
        return next(table for table in catalog.tables_for(self.kind_key(), step_key) if table.key == table_key)

    def initial_config(self, step_key):
        """The step's values on its first visit: {setting: value, table: [rows]} (subclasses prefill)."""
        raise NotImplementedError

    def get_initial(self, step):
        if step.name == "type" or step.confirm:
            return None
        values = {
            key: value
            for key, value in self.initial_config(step.name).items()
            if not isinstance(value, list) or not _is_rows(value)
        }
        if step.name == "configure":
            values.update(self.identity_initial())
        return values

    def identity_initial(self):
        return {}

    def get_table_initial(self, step, prefix):
        if prefix == "directories":
            return self.directories_initial()
        return self.initial_config(step.name).get(prefix) or None

    def directories_initial(self):
        names = self.all_directory_names()
        return [{"directory": names[0] if len(names) == 1 else ""}] if names else None

    # -- passwords: sealed before the engine stores the posted step in the session

    def dispatch(self, step_name):
        self._posted_step_name = step_name if self.request.method == "POST" else None
        return super().dispatch(step_name)

    def _raw_post(self):
        raw = super()._raw_post()
        step = self.get_step(self._posted_step_name) if self._posted_step_name else None
        if step is None or step.confirm or step.name == "type" or not self.kind_key():
            return raw
        stored = self._stored(step)
        previous = stored["data"] if stored else {}
        for setting in catalog.settings_for(self.kind_key(), step.name):
            if setting.type == "password":
                typed = (raw.get(setting.key) or [""])[0]
                raw[setting.key] = [seal_password(typed)] if typed else list(previous.get(setting.key) or [""])
        for table in catalog.tables_for(self.kind_key(), step.name):
            for column in table.columns:
                if column.type != "password":
                    continue
                pattern = re.compile(rf"^{re.escape(table.key)}-\d+-{re.escape(column.key)}$")
                for name in [n for n in raw if pattern.match(n)]:
                    raw[name] = [seal_password(value) for value in raw[name]]
        return raw

    # -- configuration of every step

    def step_values(self, step_key, data):
        """A step's catalog values ({setting: value, table: [rows]}) from its StepData."""
        kind_key = self.kind_key()
        values = {
            setting.key: data.form.get(setting.key, catalog.default_value(setting))
            for setting in catalog.settings_for(kind_key, step_key)
        }
        for table in catalog.tables_for(kind_key, step_key):
            if not catalog.visible(table, values):
                values[table.key] = []
                continue
            columns = catalog.columns_for(kind_key, table)
            values[table.key] = [
                {c.key: row.get(c.key, catalog.default_value(c)) for c in columns} for row in data.rows.get(table.key, [])
            ]
        return values

    def _loose_values(self, step):
        """A step's values without its cross-step validation: as stored (fields that parse), else its first-visit values."""

        def compute():
            stored = self._stored_data(step)
            if stored is None:
                return self.initial_config(step.name)
            forms = self.forms(step, stored)
            forms.is_valid()
            return self.step_values(step.name, _partial_data(forms))

        if self._configure_override is not None:
            return compute()  # Configure is being checked: what later steps offer may depend on what it says
        return self._remember_stored(("loose", step.name), compute)

    def config(self, current=None, current_forms=None):
        """The whole configuration: steps before `current` as confirmed, `current` as posted, later ones loosely."""
        result = {}
        before = current is not None
        for step in self.active_steps():
            if step.name == "type" or step.confirm:
                continue
            if current is not None and step.name == current.name:
                result[step.name] = self.step_values(step.name, current_forms.data())
                before = False
                continue
            cleaned = self.cleaned(step.name) if (before or current is None) else None
            result[step.name] = self.step_values(step.name, cleaned) if cleaned is not None else self._loose_values(step)
        return result

    def validation_config(self, config):
        """The configuration as save_partnership validates it: a password left empty counts as set when one is stored."""
        stored = self.stored_secret_keys()
        result = {step: dict(values) for step, values in config.items()}
        for step_key, values in result.items():
            for setting in catalog.settings_for(self.kind_key(), step_key):
                if setting.type == "password":
                    if values.get(setting.key):
                        values[setting.key] = "set"
                    elif f"{step_key}.{setting.key}" in stored:
                        values[setting.key] = "set"
        return result

    def problems(self, config):
        """catalog.validate of a configuration, with the context of the entities and directories chosen."""
        config = self.validation_config(config)
        references = tuple(
            sorted({value for _, _, value in services.setting_references(self.kind_key(), config, REFERENCE_TYPES)})
        )
        key = (
            "context",
            references,
            *self.chosen_entity_pks(),
            self.refresh_requested(),
            tuple(self.directory_names()),
        )
        context = self._remember(
            key, lambda: services.validation_context(self.kind_key(), self.entity_data(), self.directories(), config)
        )
        return catalog.validate(config, context)

    def remote_put_off(self):
        return not self.chosen_entity_pks()[1]

    def excused(self, problem):
        """Problems that only say the remote entity is missing: the partnership is saved as Incomplete meanwhile."""
        return self.remote_put_off() and problem.field == "remote_entity"

    # -- engine hooks: validation at the field

    def validate_step(self, step, forms):
        if step.name == "type" or step.confirm:
            return
        if step.name == "configure":
            # While Configure itself is checked, what it says about entities and directories is what was posted.
            self._configure_override = forms.data()
        try:
            if step.name == "configure":
                self._check_identity(forms)
            problems = self.problems(self.config(step, forms))
            fields, tables, warnings = self._problems_at_fields(step, forms, problems)
        finally:
            self._configure_override = None
        forms.add_errors(fields, tables)
        forms.warnings = warnings
        action = self.request.POST.get("wizard_action", "next") if self._posted_step_name == step.name else ""
        if warnings["count"] and forms.is_valid() and (action == "next" or action.startswith("goto:")):
            for message in warnings["all"]:
                messages.warning(self.request, f"{step.title}: {message}")

    def _check_identity(self, forms):
        name = forms.form.cleaned_data.get("name") or ""
        if name:
            clash = self._remember(("name-clash", name.lower()), lambda: self._name_clash(name))
            if clash:
                forms.add_errors({"name": [f"A partnership named “{clash}” already exists; choose another name."]})

    def _name_clash(self, name):
        others = Partnership.objects.filter(name__iexact=name)
        if self.partnership is not None:
            others = others.exclude(pk=self.partnership.pk)
        return others.values_list("name", flat=True).first()

    def _problems_at_fields(self, step, forms, problems):
        """({field: [...]}, {table: {row: {column: [...]}}}, warnings) of this step's problems."""
        fields, tables = {}, {}
        warnings = {"fields": {}, "tables": {}, "step": [], "all": [], "count": 0}
        for problem in problems:
            if problem.step != step.name or self.excused(problem):
                continue
            table, row, column = _split_field(problem.field)
            if not problem.blocking:
                warnings["all"].append(problem.message)
                warnings["count"] += 1
                _attach_warning(forms, table, row, column, problem, warnings)
                continue
            if table is not None and table in forms.tables:
                tables.setdefault(table, {}).setdefault(row, {}).setdefault(column, []).append(problem.message)
            elif problem.field in forms.tables:
                tables.setdefault(problem.field, {}).setdefault(None, {}).setdefault(None, []).append(problem.message)
            elif forms.form is not None and problem.field in forms.form.fields:
                fields.setdefault(problem.field, []).append(problem.message)
            else:
                fields.setdefault(None, []).append(problem.message)
        return fields, tables, warnings

    # -- Confirm and Finish

    def summarize(self, step, data):
        if step.name == "type":
            info = catalog.kind(data.form["kind"])
            return [("Partnership type", info.label)], []
        rows, tables = [], []
        if step.name == "configure":
            rows += self._identity_rows(data)
        values = self.step_values(step.name, data)
        kind_key = self.kind_key()
        for setting in catalog.settings_for(kind_key, step.name):
            if not catalog.visible(setting, values):
                continue
            rows.append((setting.label, self._display(step.name, setting, values.get(setting.key))))
        for table in catalog.tables_for(kind_key, step.name):
            if not catalog.visible(table, values):
                continue
            columns = catalog.columns_for(kind_key, table)
            tables.append(
                SummaryTable(
                    table.label,
                    [c.label for c in columns],
                    [
                        [self._display(step.name, c, row.get(c.key)) if catalog.visible(c, row) else "—" for c in columns]
                        for row in values[table.key]
                    ],
                )
            )
        return rows, tables

    def _identity_rows(self, data):
        local, remote = self._entity(data.form.get("local_entity")), self._entity(data.form.get("remote_entity"))
        directories = [row["directory"] for row in data.rows.get("directories", []) if row.get("directory")]
        rows = [
            ("Partnership name", data.form.get("name") or "—"),
            ("Description", data.form.get("description") or "—"),
            ("Local entity", entity_label(local) if local else "—"),
            (
                "Remote entity",
                entity_label(remote) if remote else "put off: the partnership is saved as Incomplete until it is chosen",
            ),
            ("Directories (in order)", ", ".join(directories) or "—"),
        ]
        if data.form.get("refresh_entity_data"):
            rows.append(("Entity data", "Get updates: the entities' current data is copied in at Finish"))
        return rows

    def _display(self, step_key, setting, value):
        if setting.type == "password":
            if value:
                return "will be set to what you typed"
            if f"{step_key}.{setting.key}" in self.stored_secret_keys():
                return "stored (unchanged)"
            return "not set"
        if setting.type == "bool":
            return "yes" if value else "no"
        if setting.type in ("choice", "multichoice"):
            if isinstance(value, (list, tuple)):
                return ", ".join(setting.choice_label(v) for v in value) or "—"
            return setting.choice_label(value) if value not in (None, "") else "—"
        return display_value(None, value)

    def get_context(self, step):
        context = {
            "kind": catalog.kind(self.kind_key()) if self.kind_key() else None,
            "partnership": self.partnership,
            "expression_test_url": reverse("partnerships:expression_test"),
            "preview_url": reverse("partnerships:wizard_preview"),
            "test_directories": self.directory_names() if step.name != "configure" else [],
            "entity_changes": [],
        }
        if step.name in ("type",) or not self.kind_key():
            return context
        if step.confirm:
            context.update(self._outcome())
            return context
        if step.name == "configure" and self.partnership is not None:
            context["entity_changes"] = self._remember("changes", lambda: services.entity_changes(self.partnership))
            stored = self._stored(step)
            context["refresh_marked"] = bool(stored and (stored["data"].get("refresh_entity_data") or [""])[0])
        return context

    def _render_step(self, step, forms, status=200):
        self._decorate(step, forms)
        return super()._render_step(step, forms, status)

    def _decorate(self, step, forms):
        """What the step template shows beside the fields: live previews, the visibility and warnings of tables."""
        if step.name == "type" or not self.kind_key():
            return
        if forms.form is not None:
            for key, preview in self._previews(step).items():
                if key in forms.form.fields:
                    forms.form.fields[key].preview = preview
        warnings = getattr(forms, "warnings", None) or {}
        settings = {setting.key: setting for setting in catalog.settings_for(self.kind_key(), step.name)}
        specs = {table.key: table for table in catalog.tables_for(self.kind_key(), step.name)}
        for prefix, formset in forms.tables.items():
            spec = specs.get(prefix)
            formset.visible_when_json = predicate_json(spec.visible_when) if spec else ""
            formset.condition_text = condition_text(spec.visible_when, settings) if spec else ""
            formset.table_warnings = (warnings.get("tables") or {}).get(prefix, [])

    def _previews(self, step):
        """{setting key: {name, text, skew, other, role}} of the live window previews shown beside this step's fields
        (role: which of the two numbers the field itself holds; the other comes from the stored steps)."""
        config = self._remember(("preview-config", step.name), lambda: self._preview_config(step))
        previews = {}
        for (step_key, setting_key), name in self.preview_fields().items():
            if step_key != step.name:
                continue
            text, skew, other = _window_text(name, config)
            role = "skew" if setting_key == "skew_seconds" else "other"
            previews[setting_key] = {"name": name, "text": text, "skew": skew, "other": other, "role": role}
        return previews

    def preview_fields(self):
        return PREVIEWS_ASSERTING if catalog.kind(self.kind_key()).asserting else PREVIEWS_RELYING

    def _preview_config(self, step):
        """The values the previews start from: stored or first-visit values of every step."""
        result = {}
        for other in self.active_steps():
            if other.name == "type" or other.confirm:
                continue
            result[other.name] = self._loose_values(other)
        return result

    def _outcome(self):
        config = self.config()
        problems = self.problems(config)
        blocking = [p for p in problems if p.blocking]
        if self.remote_put_off() and not any(p.field == "remote_entity" for p in blocking):
            blocking.insert(0, catalog.Problem("configure", "remote_entity", "The remote entity is not chosen yet (put off)."))
        titles = {step.name: step.title for step in self.active_steps()}
        return {
            "will_be_incomplete": bool(blocking),
            "blocking": [(titles.get(p.step, ""), p.message) for p in blocking],
            "warnings": [(titles.get(p.step, ""), p.message) for p in problems if not p.blocking],
        }

    def finish_values(self, data):
        configure = data["configure"]
        local, remote = self._entity(configure.form.get("local_entity")), self._entity(configure.form.get("remote_entity"))
        return {
            "kind": self.kind_key(),
            "name": configure.form.get("name", ""),
            "description": configure.form.get("description", ""),
            "local_entity": local,
            "remote_entity": remote,
            "directories": [row["directory"] for row in configure.rows.get("directories", []) if row.get("directory")],
            "settings": self.config(),
            "refresh_entity_data": bool(configure.form.get("refresh_entity_data")),
        }

    def done(self, data):
        if self.partnership is not None:
            current = Partnership.objects.filter(pk=self.partnership.pk).first()
            if current is None:
                messages.error(self.request, "The partnership was deleted meanwhile; nothing was saved.")
                return redirect("partnerships:list")
            if current.state == PartnershipState.ACTIVE:
                return blocked_page(self.request, current)
        try:
            partnership = services.save_partnership(self.partnership, **self.finish_values(data))
        except PartnershipError as error:
            raise self._step_errors(error) from None
        self._announce(partnership)
        return redirect(partnership)

    def _step_errors(self, error):
        """The first step with problems (in wizard order) as StepErrors; the rest as messages above it."""
        names = [step.name for step in self.active_steps() if not step.confirm and step.name != "type"]
        by_step = {}
        for problem in error.problems:
            step = problem.step if problem.step in names else "configure"
            by_step.setdefault(step, []).append(problem)
        first = next(name for name in names if name in by_step)
        for name, problems in by_step.items():
            if name != first:
                title = next(step.title for step in self.active_steps() if step.name == name)
                for problem in problems:
                    messages.error(self.request, f"{title}: {problem.message}")
        fields, tables = {}, {}
        step = self.get_step(first)
        form_fields = set(step.form_class.base_fields) | {s.key for s in catalog.settings_for(self.kind_key(), first)}
        for problem in by_step[first]:
            table, row, column = _split_field(problem.field)
            if table is not None and table in step.tables:
                tables.setdefault(table, {}).setdefault(row, {}).setdefault(column, []).append(problem.message)
            elif problem.field in step.tables:
                tables.setdefault(problem.field, {}).setdefault(None, {}).setdefault(None, []).append(problem.message)
            elif problem.field in form_fields:
                fields.setdefault(problem.field, []).append(problem.message)
            else:
                fields.setdefault(None, []).append(problem.message)
        return StepErrors(first, fields, tables)

    def _announce(self, partnership):
        state = partnership.get_state_display()
        if partnership.state == PartnershipState.INCOMPLETE:
            reasons = [p["message"] for p in partnership.problems or [] if p.get("blocking", True)]
            if partnership.remote_entity_id is None:
                reasons.insert(0, "the remote entity is not chosen yet")
            shown = "; ".join(reasons[:5]) + (f"; and {len(reasons) - 5} more" if len(reasons) > 5 else "")
            messages.warning(
                self.request, f"Partnership “{partnership.name}” saved. It is {state}: {shown or 'see the problems below'}."
            )
        else:
            messages.success(self.request, f"Partnership “{partnership.name}” saved. It is {state}: activate it when ready.")

    # -- detour URLs

    def entity_create_url(self, location):
        info = catalog.kind(self.kind_key())
        entity_type = info.local_entity_type if location == Location.LOCAL else info.remote_entity_type
        return append_query(reverse("partnerships:wizard_entity_create"), location=location, entity_type=entity_type)

    def get_updates_url(self):
        return reverse("partnerships:wizard_get_updates", args=[self.partnership.pk]) if self.partnership else self.cancel_url()


def _is_rows(value):
    return bool(value) and all(isinstance(item, dict) for item in value)


def _partial_data(forms):
    """StepData from forms that may not be valid: the fields that cleaned (stored values shown as they parse)."""
    from federation.wizard import StepData

    form = dict(getattr(forms.form, "cleaned_data", {}) or {}) if forms.form is not None else {}
    rows = {}
    for prefix in forms.tables:
        rows[prefix] = [dict(getattr(f, "cleaned_data", {}) or {}) for _, f in forms.kept_rows(prefix)]
    return StepData(form, rows)


def _split_field(field):
    """(table, row, column) of "table.row.column" / "table.row" / "table" problems, else (None, None, None)."""
    parts = (field or "").split(".")
    if len(parts) >= 2 and parts[1].isdigit():
        return parts[0], int(parts[1]), (".".join(parts[2:]) or None)
    return None, None, None


def _attach_warning(forms, table, row, column, problem, warnings):
    if table is None and problem.field in forms.tables:
        warnings["tables"].setdefault(problem.field, []).append(problem.message)
        return
    if table is not None and table in forms.tables:
        kept = forms.kept_rows(table)
        if row is not None and row < len(kept) and column and column in kept[row][1].fields:
            field = kept[row][1].fields[column]
            field.warnings = [*getattr(field, "warnings", []), problem.message]
        else:
            warnings["tables"].setdefault(table, []).append(problem.message)
        return
    if forms.form is not None and problem.field in forms.form.fields:
        field = forms.form.fields[problem.field]
        field.warnings = [*getattr(field, "warnings", []), problem.message]
        return
    warnings["step"].append(problem.message)


def _window_text(name, config):
    """(sentence, skew, other seconds) of one preview from the configuration's values."""
    skew = (config.get("configure") or {}).get("skew_seconds")
    other_key = PREVIEW_DURATION.get(name)
    other = None
    if other_key:
        step_key, setting_key = other_key
        other = (config.get(step_key) or {}).get(setting_key)
    return window_preview(name, skew, other), skew, other


def window_preview(name, skew, other):
    """One live preview sentence: "validity" (assertion window), "slo" (logout request window), "acceptance"."""
    if name == "slo":
        return catalog.slo_window(skew, other)
    if name == "validity":
        return catalog.validity_window(skew, other)
    return catalog.acceptance_window(skew)


def blocked_page(request, partnership):
    """An Active partnership cannot be edited: explain, and offer Deactivate and edit."""
    return render(request, "partnerships/wizard_blocked.html", {"partnership": partnership}, status=409)


# --------------------------------------------------------------------------------------------------- create


class PartnershipCreateWizard(PartnershipWizard):
    namespace = "partnership-create"
    title = "Create partnership"
    finish_label = "Finish"

    def step_url(self, step_name):
        return reverse("partnerships:create_step", args=[self.token, step_name])

    def cancel_url(self):
        return reverse("partnerships:list")

    def kind_key(self):
        # Read from the stored step directly: the steps themselves depend on it (cleaned() would go round in circles).
        stored = self._stored(TYPE_STEP)
        value = ((stored or {}).get("data", {}).get("kind") or [""])[0] if stored else ""
        return value if value in catalog.KINDS else None

    def initial_config(self, step_key):
        def compute():
            values = dict(catalog.defaults(self.kind_key()).get(step_key, {}))
            if step_key == "configure":
                return values  # the entities are chosen on this very step (identity_initial fills the base URL)
            facts = self.entity_data()
            values.update(
                prefill.step_values(
                    self.kind_key(),
                    step_key,
                    local=facts.get("local"),
                    remote=facts.get("remote"),
                    directories=[(d.name, d.kind) for d in self.directories()],
                )
            )
            return values

        key = ("initial", step_key) if step_key == "configure" else ("initial", step_key, *self.chosen_entity_pks())
        return self._remember(key, compute)

    def identity_initial(self):
        """The only local entity of the right type is chosen for the administrator, with its base URL."""
        local = self.entity_choices().local
        if len(local) != 1:
            return {}
        entity = self._entity(local[0][0])
        return {"local_entity": local[0][0], "base_url": entity.base_url if entity else ""}


# --------------------------------------------------------------------------------------------------- edit


class PartnershipEditWizard(PartnershipWizard):
    finish_label = "Save changes"

    @property
    def namespace(self):
        return f"partnership-edit-{self.partnership.pk}"

    @property
    def title(self):
        return f"Edit partnership {self.partnership.name}"

    @property
    def steps(self):
        return [*catalog_steps(self.kind_key()), CONFIRM_STEP]

    def step_url(self, step_name):
        return reverse("partnerships:edit_step", args=[self.partnership.pk, self.token, step_name])

    def cancel_url(self):
        return reverse("partnerships:detail", args=[self.partnership.pk])

    def kind_key(self):
        return self.partnership.kind

    def initial_config(self, step_key):
        stored = dict((self.partnership.settings or {}).get(step_key) or {})
        values = dict(catalog.defaults(self.kind_key()).get(step_key, {}))
        values.update(stored)
        for setting in catalog.settings_for(self.kind_key(), step_key):
            if setting.type == "password":
                values[setting.key] = ""  # never rendered back; empty keeps the stored one
        return values

    def identity_initial(self):
        partnership = self.partnership
        return {
            "name": partnership.name,
            "description": partnership.description,
            "local_entity": str(partnership.local_entity_id),
            "remote_entity": str(partnership.remote_entity_id or ""),
        }

    def directories_initial(self):
        names = services.directory_names(self.partnership)
        return [{"directory": name} for name in names] or super().directories_initial()


# --------------------------------------------------------------------------------------------------- detours that return


class _ReturningWizard:
    """A wizard started from a partnership wizard's detour: Cancel goes back there, Finish goes back with the new
    entity's pk as ``created`` (so it is chosen in the field)."""

    @classmethod
    def start_returning(cls, request, return_to, seed, **extra_state):
        wizard = cls(request, token_source.token_urlsafe(9))
        steps = {name: {"data": data, "valid": False} for name, data in seed.items()}
        wizard._save_state({"steps": steps, "return_to": return_to, **extra_state})
        return HttpResponseRedirect(wizard.step_url(wizard.active_steps()[0].name))

    def return_to(self):
        return getattr(self, "_return_to", None) or (self.state or {}).get("return_to") or reverse("partnerships:list")

    def discard(self):
        self._return_to = self.return_to()  # Cancel discards the run before it asks where to go
        super().discard()

    def cancel_url(self):
        return self.return_to()

    def done(self, data):
        return_to = self.return_to()
        response = super().done(data)  # the entity wizard's Finish: saves and redirects to the new entity's page
        pk = resolve(response["Location"].split("?")[0]).kwargs["pk"]
        return HttpResponseRedirect(append_query(return_to, **{CREATED_PARAM: str(pk)}))


ENTITY_TYPE_STEP = WizardStep(
    "type",
    "Entity type",
    form_class=PartnershipEntityTypeForm,
    help="The partnership needs an entity of this location and type. WS-Fed entities also need their SAML token type.",
)


class PartnershipEntityCreateWizard(_ReturningWizard, EntityCreateWizard):
    """The entity wizard opened by "Create local entity" / "Create remote entity": its location and type are the
    ones the partnership needs."""

    namespace = "partnership-entity-create"
    steps = [ENTITY_TYPE_STEP, ENTITY_CONFIGURE_STEP, ENTITY_CONFIRM_STEP]

    def step_url(self, step_name):
        return reverse("partnerships:wizard_entity_create_step", args=[self.token, step_name])

    def get_form_kwargs(self, step):
        if step.name == "type":
            return dict((self.state or {}).get("fixed") or {})
        return super().get_form_kwargs(step)


class PartnershipMetadataImportWizard(_ReturningWizard, MetadataImportWizard):
    """The metadata import wizard opened by "Import metadata" for the remote entity."""

    namespace = "partnership-metadata-import"

    def step_url(self, step_name):
        return reverse("partnerships:wizard_metadata_import_step", args=[self.token, step_name])


__all__ = [
    "PartnershipCreateWizard",
    "PartnershipEditWizard",
    "PartnershipEntityCreateWizard",
    "PartnershipMetadataImportWizard",
    "blocked_page",
    "window_preview",
]
