"""The create-entity and edit-entity wizards, built on federation.wizard.

Create: 1 Entity type (location, type, SAML token type) → 2 Configure entity (identification,
keys with Import / Generate detours to the keystore, WS-Fed URLs, NameID formats, endpoint and
attribute tables) → 3 Confirm → Finish. Edit: Configure (prefilled) → Confirm → Finish; the
location and type of an entity are fixed.

The Configure step runs the same checks as entity_services (on Next, so problems show at the field
on that step, not only at Finish).
"""

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse, reverse_lazy

from entities import entity_services
from entities.entity_forms import (
    AttributeFormSet,
    EndpointFormSet,
    EntityForm,
    EntityTypeForm,
    attribute_initial,
    endpoint_initial,
    entity_initial,
)
from entities.entity_services import ATTRIBUTE_FIELDS, ENDPOINT_FIELDS, ENTITY_FIELDS, EntityError
from entities.models import (
    Entity,
    Location,
    assertion_version,
    endpoint_bindings,
    has_attributes,
    type_protocol,
    type_role,
)
from federation import runtime_paths
from federation.wizard import Detour, StepErrors, Table, Wizard
from federation.wizard import Step as WizardStep

TYPE_FIELDS = ("location", "entity_type", "saml_token_type")

DETOURS = {
    "signing_key-generate": Detour("Generate", "signing_key", reverse_lazy("keystore:generate"), "Generate a signing key pair"),
    "signing_key-import": Detour("Import", "signing_key", reverse_lazy("keystore:import_key_pair"), "Import a signing key pair"),
    "next_signing_key-generate": Detour(
        "Generate", "next_signing_key", reverse_lazy("keystore:generate"), "Generate the next signing key pair"
    ),
    "decryption_key-generate": Detour(
        "Generate", "decryption_key", reverse_lazy("keystore:generate"), "Generate a decryption key pair"
    ),
    "decryption_key-import": Detour(
        "Import", "decryption_key", reverse_lazy("keystore:import_key_pair"), "Import a decryption key pair"
    ),
    "verification_certificate-import": Detour(
        "Import",
        "verification_certificate",
        reverse_lazy("keystore:import_trusted_certificate"),
        "Import the partner's verification certificate",
    ),
    "encryption_certificate-import": Detour(
        "Import",
        "encryption_certificate",
        reverse_lazy("keystore:import_trusted_certificate"),
        "Import the partner's encryption certificate",
    ),
}

ENDPOINTS_HELP = (
    "The partner's service URLs (from its metadata or its administrator). A remote SP needs at least one assertion "
    "consumer service, a remote SAML2 IdP at least one single sign-on service. Leave a row empty to skip it."
)
ATTRIBUTES_HELP = (
    "Attributes every partnership built on this entity puts into its assertions (partnerships inherit them and can "
    "add or remove their own). For a remote entity: the attributes the partner sends. Leave a row empty to skip it."
)


def _has_endpoints(wizard):
    kind = wizard.entity_kind()
    return bool(kind and endpoint_bindings(kind["location"], kind["entity_type"]))


def _has_attributes(wizard):
    kind = wizard.entity_kind()
    return bool(kind and has_attributes(kind["entity_type"]))


TYPE_STEP = WizardStep(
    "type",
    "Entity type",
    form_class=EntityTypeForm,
    help="Choose whether the entity is this site (local) or a partner (remote), and its protocol and role.",
)
CONFIGURE_STEP = WizardStep(
    "configure",
    "Configure entity",
    form_class=EntityForm,
    tables={
        "endpoints": Table(EndpointFormSet, "Endpoints", ENDPOINTS_HELP, "Add endpoint", condition=_has_endpoints),
        "attributes": Table(
            AttributeFormSet, "Assertion attributes", ATTRIBUTES_HELP, "Add attribute", condition=_has_attributes
        ),
    },
    detours=DETOURS,
    help="Identification, keys and the entity's services. Fields marked * are required. "
    "Import / Generate open the keystore and come back here with what you typed kept.",
)
CONFIRM_STEP = WizardStep("confirm", "Confirm", confirm=True, template_name="entities/entity_confirm.html")


def service_values(kind, data):
    """(values, endpoints, attributes) for entity_services from the Configure step's StepData."""
    values = {name: value for name, value in data.form.items() if name in ENTITY_FIELDS}
    values.update(kind)
    endpoints = [{name: row.get(name) for name in ENDPOINT_FIELDS if name in row} for row in data.rows.get("endpoints", [])]
    attributes = [{name: row.get(name) for name in ATTRIBUTE_FIELDS if name in row} for row in data.rows.get("attributes", [])]
    return values, endpoints, attributes


def error_tables(error):
    """EntityError problems as wizard errors: ({field: [...]}, {table: {row: {field: [...]}}})."""
    fields, tables = {}, {}
    for field, msgs in error.problems["entity"].items():
        if field in ("endpoints", "attributes"):
            tables.setdefault(field, {})[None] = {None: msgs}
        else:
            fields[field] = msgs
    for group in ("endpoints", "attributes"):
        for row, row_fields in error.problems[group].items():
            tables.setdefault(group, {})[row] = row_fields
    return fields, tables


class _EntityWizard(Wizard):
    def entity_kind(self):
        """{"location", "entity_type", "saml_token_type"} of the entity, or None while unknown."""
        raise NotImplementedError

    def _target(self):
        """The entity the Configure step's values are checked against (unsaved changes only)."""
        raise NotImplementedError

    def get_form_kwargs(self, step):
        if step.name == "configure":
            return dict(self.entity_kind() or {})
        return {}

    def get_table_kwargs(self, step, prefix):
        kind = self.entity_kind()
        if prefix == "endpoints":
            return {"form_kwargs": {"allowed": endpoint_bindings(kind["location"], kind["entity_type"])}}
        if prefix == "attributes":
            return {
                "form_kwargs": {
                    "version": assertion_version(kind["entity_type"], kind["saml_token_type"]),
                    "local": kind["location"] == Location.LOCAL,
                }
            }
        return {}

    def validate_step(self, step, forms):
        if step.name != "configure":
            return
        values, endpoints, attributes = service_values(self.entity_kind(), forms.data())
        if self.kwargs.get("entity") is not None:
            for name in TYPE_FIELDS:
                values.pop(name, None)
        try:
            entity_services.validate_entity(
                self._target(), values, endpoints, attributes, creating=self.kwargs.get("entity") is None
            )
        except EntityError as error:
            fields, tables = error_tables(error)
            forms.add_errors(fields, tables)

    def get_context(self, step):
        context = {"runtime_urls": []}
        kind = self.entity_kind()
        configure = self.cleaned("configure") if step.confirm else None
        if step.confirm and kind and configure and kind["location"] == Location.LOCAL:
            context["runtime_urls"] = runtime_paths.local_service_urls(
                configure.form.get("base_url", ""),
                type_protocol(kind["entity_type"]),
                type_role(kind["entity_type"]),
                entity_name=configure.form.get("name", ""),
                specific_id=configure.form.get("wsfed_specific_id", ""),
            )
        return context


class EntityCreateWizard(_EntityWizard):
    namespace = "entity-create"
    title = "Create entity"
    finish_label = "Finish"
    steps = [TYPE_STEP, CONFIGURE_STEP, CONFIRM_STEP]

    def step_url(self, step_name):
        return reverse("entities:create_step", args=[self.token, step_name])

    def cancel_url(self):
        return reverse("entities:list")

    def entity_kind(self):
        data = self.cleaned("type")
        return {name: data.form.get(name, "") for name in TYPE_FIELDS} if data else None

    def _target(self):
        return Entity()

    def done(self, data):
        values, endpoints, attributes = service_values(self.entity_kind(), data["configure"])
        try:
            entity = entity_services.create_entity(values, endpoints, attributes)
        except EntityError as error:
            fields, tables = error_tables(error)
            if any(name in fields for name in TYPE_FIELDS):
                raise StepErrors("type", fields={name: fields[name] for name in TYPE_FIELDS if name in fields}) from None
            raise StepErrors("configure", fields, tables) from None
        messages.success(self.request, f"Entity '{entity.name}' created.")
        return redirect("entities:detail", pk=entity.pk)


class EntityEditWizard(_EntityWizard):
    finish_label = "Save changes"
    steps = [CONFIGURE_STEP, CONFIRM_STEP]

    @property
    def entity(self):
        return self.kwargs["entity"]

    @property
    def namespace(self):
        return f"entity-edit-{self.entity.pk}"

    @property
    def title(self):
        return f"Edit entity {self.entity.name}"

    def step_url(self, step_name):
        return reverse("entities:edit_step", args=[self.entity.pk, self.token, step_name])

    def cancel_url(self):
        return reverse("entities:detail", args=[self.entity.pk])

    def entity_kind(self):
        return {name: getattr(self.entity, name) for name in TYPE_FIELDS}

    def _target(self):
        return Entity.objects.get(pk=self.entity.pk)

    def get_initial(self, step):
        return entity_initial(self.entity) if step.name == "configure" else None

    def get_table_initial(self, step, prefix):
        if prefix == "endpoints":
            return endpoint_initial(self.entity)
        if prefix == "attributes":
            return attribute_initial(self.entity)
        return None

    def done(self, data):
        values, endpoints, attributes = service_values(self.entity_kind(), data["configure"])
        for name in TYPE_FIELDS:
            values.pop(name, None)
        try:
            entity = entity_services.update_entity(
                self.entity,
                values,
                endpoints if _has_endpoints(self) else None,
                attributes if _has_attributes(self) else None,
            )
        except EntityError as error:
            fields, tables = error_tables(error)
            raise StepErrors("configure", fields, tables) from None
        messages.success(self.request, f"Entity '{entity.name}' saved.")
        return redirect("entities:detail", pk=entity.pk)
