"""Forms of the metadata pages: the import wizard's steps, the upload page and the bulk import page.
They collect input; the rules and messages are entities.metadata_import's."""

from django import forms

from entities import metadata_import as mi
from entities.metadata_fetch import FetchError, check_url
from entities.metadata_parser import format_bytes
from entities.models import EntityType, MetadataScanEntry, MetadataUpload

MAX_SIZE_MB = 1024


def trust_anchor_field(required=False):
    choices = [("", "— none (only with unsigned metadata allowed) —")] + [
        (entry.alias, f"{entry.alias} ({entry.get_kind_display().lower()}: {entry.subject})")
        for entry in mi.trust_anchor_choices()
    ]
    return forms.ChoiceField(
        label="Trust anchor",
        choices=choices,
        required=required,
        help_text="The keystore entry the metadata signature is verified with: the publisher's signing certificate "
        "(a trusted certificate) or the CA that issued it (a trusted CA). Never the certificate inside the document.",
    )


class UploadForm(forms.Form):
    file = forms.FileField(
        label="Metadata file", help_text="An XML file: one EntityDescriptor or an aggregate (EntitiesDescriptor)."
    )


class SourceForm(forms.Form):
    """Wizard step 1: the document, what to do with it and how to trust it."""

    upload = forms.CharField(required=False, widget=forms.HiddenInput)
    url = forms.CharField(
        label="Metadata URL",
        required=False,
        max_length=1024,
        help_text="Or fetch the metadata from this http(s) URL (TLS certificates are verified). A URL source can be refreshed on a schedule.",
    )
    operation = forms.ChoiceField(
        label="Operation",
        choices=list(mi.OPERATIONS.items()),
        widget=forms.RadioSelect,
        initial=mi.CREATE_REMOTE,
        help_text="Updating or restoring an existing local entity by import is not supported: edit local entities.",
    )
    max_size_mb = forms.IntegerField(
        label="Size limit (MB)",
        min_value=1,
        max_value=MAX_SIZE_MB,
        initial=100,
        help_text="Documents larger than this are refused (a URL download stops there).",
    )
    allow_unsigned = forms.BooleanField(
        label="Allow unsigned metadata",
        required=False,
        help_text="Only for metadata you got over a channel you trust. Without it, unsigned metadata is refused.",
    )
    refresh_hours = forms.IntegerField(
        label="Refresh every (hours)",
        required=False,
        min_value=0,
        max_value=24 * 90,
        initial=24,
        help_text="URL sources: fetch the metadata again on this schedule (a shorter cacheDuration in it wins). 0: never.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["trust_anchor"] = trust_anchor_field()
        self.order_fields(["upload", "url", "operation", "trust_anchor", "allow_unsigned", "max_size_mb", "refresh_hours"])

    def upload_object(self):
        value = (self.data.get("upload") if self.is_bound else "") or ""
        return _upload(value)

    def clean(self):
        cleaned = super().clean()
        upload_id, url = (cleaned.get("upload") or "").strip(), (cleaned.get("url") or "").strip()
        if bool(upload_id) == bool(url):
            self.add_error("url", "Upload a metadata file or enter a metadata URL (one of them).")
            return cleaned
        if upload_id:
            upload = _upload(upload_id)
            if upload is None:
                self.add_error("upload", "The uploaded file is no longer available; upload it again.")
            elif cleaned.get("max_size_mb") and upload.size > cleaned["max_size_mb"] * 1024 * 1024:
                self.add_error(
                    "max_size_mb",
                    f"The file is {format_bytes(upload.size)}, over the size limit of {cleaned['max_size_mb']} MB you set.",
                )
        else:
            try:
                cleaned["url"] = check_url(url)
            except FetchError as exc:
                self.add_error("url", exc.message)
        if not cleaned.get("trust_anchor") and not cleaned.get("allow_unsigned"):
            self.add_error("trust_anchor", "Choose a trust anchor to verify the signature, or allow unsigned metadata.")
        return cleaned


def _upload(value):
    try:
        return MetadataUpload.objects.filter(pk=value).first() if value else None
    except Exception:  # noqa: BLE001 - not a UUID
        return None


class EntityChoiceForm(forms.Form):
    """Wizard step 2: which entity of the document, and its name here."""

    entry = forms.IntegerField(required=False, widget=forms.HiddenInput)
    entity_type = forms.ChoiceField(
        label="Entity type",
        required=False,
        choices=[("", "—")] + EntityType.choices,
        help_text="Only when the entity has several roles (e.g. IdP and SP): which one to import.",
    )
    name = forms.CharField(
        label="New entity name",
        required=False,
        max_length=100,
        help_text="Internal name of the new entity, unique; letters, digits, '_', '-' and '.'.",
    )
    target = forms.CharField(
        label="Entity to update",
        required=False,
        max_length=100,
        help_text="The remote entity the metadata updates (default: the remote entity with the same entity ID).",
    )
    base_url = forms.CharField(
        label="Base URL",
        required=False,
        max_length=1024,
        help_text="Local entity: where this site's runtime answers (default: from the URLs in the metadata).",
    )

    def __init__(self, *args, job=None, operation=mi.CREATE_REMOTE, **kwargs):
        super().__init__(*args, **kwargs)
        self.job = job
        self.operation = operation
        if operation == mi.UPDATE_REMOTE:
            del self.fields["name"]
            del self.fields["base_url"]
        else:
            del self.fields["target"]
            if operation != mi.CREATE_LOCAL:
                del self.fields["base_url"]

    def clean(self):
        cleaned = super().clean()
        number = cleaned.get("entry")
        entry = None
        if number is not None and self.job is not None:
            entry = MetadataScanEntry.objects.filter(job=self.job, pk=number).first()
        if entry is None:
            self.add_error(None, "Choose the entity to import.")
            return cleaned
        if entry.expired:
            self.add_error(None, f"{entry.entity_id} has expired (validUntil); expired entities cannot be imported.")
        elif entry.problem:
            self.add_error(None, f"{entry.entity_id} cannot be imported: {entry.problem}")
        types = entry.type_list()
        if cleaned.get("entity_type") and cleaned["entity_type"] not in types:
            self.add_error("entity_type", f"{entry.entity_id} has no {EntityType(cleaned['entity_type']).label} role.")
        if not cleaned.get("entity_type") and len(types) == 1:
            cleaned["entity_type"] = types[0]
        if not cleaned.get("entity_type") and len(types) > 1 and self.operation != mi.UPDATE_REMOTE:
            self.add_error("entity_type", "This entity has several roles; choose the one to import.")
        if self.operation != mi.UPDATE_REMOTE and not (cleaned.get("name") or "").strip():
            self.add_error("name", "Enter a name for the new entity.")
        cleaned["entry_object"] = entry
        return cleaned


class CertificateForm(forms.Form):
    """Wizard step 3: a checkbox and an alias per certificate row (rows that cannot be imported have none)."""

    def __init__(self, *args, rows=(), suggested="", **kwargs):
        super().__init__(*args, **kwargs)
        self.rows = list(rows)
        for row in self.rows:
            if row.problem:
                continue
            self.fields[f"use_{row.number}"] = forms.BooleanField(label=f"Import certificate #{row.number}", required=False)
            if row.existing is not None:
                continue
            usage = "-".join(sorted(row.uses, reverse=True))
            self.fields[f"alias_{row.number}"] = forms.CharField(
                label=f"Alias of certificate #{row.number}",
                required=False,
                max_length=100,
                initial=f"{suggested}-{usage}" if suggested else "",
            )

    def aliases(self):
        """{row number: alias} of the selected rows."""
        chosen = {}
        for row in self.rows:
            if row.problem or not self.cleaned_data.get(f"use_{row.number}"):
                continue
            chosen[row.number] = (
                row.existing.alias if row.existing is not None else self.cleaned_data.get(f"alias_{row.number}", "")
            )
        return chosen

    def table(self):
        """[(row, checkbox bound field or None, alias bound field or None)] for the template."""
        return [
            (
                row,
                self[f"use_{row.number}"] if f"use_{row.number}" in self.fields else None,
                self[f"alias_{row.number}"] if f"alias_{row.number}" in self.fields else None,
            )
            for row in self.rows
        ]


class BulkImportForm(forms.Form):
    """The bulk import page: every SP (or IdP) of an aggregate matching a filter."""

    file = forms.FileField(label="Metadata file", required=False, help_text="The aggregate (EntitiesDescriptor) as a file…")
    url = forms.CharField(label="Metadata URL", required=False, max_length=1024, help_text="…or its http(s) URL.")
    role = forms.ChoiceField(
        label="Import", choices=[("sp", "All SAML 2.0 SPs"), ("idp", "All SAML 2.0 IdPs")], widget=forms.RadioSelect, initial="sp"
    )
    match = forms.CharField(
        label="Entity ID pattern",
        required=False,
        max_length=500,
        help_text=r"Only entity IDs this regular expression finds, e.g. \.example\.edu/ (empty: all).",
    )
    registration_authority = forms.CharField(
        label="Registration authority",
        required=False,
        max_length=1024,
        help_text="Only entities whose mdrpi:RegistrationInfo names this authority (empty: any).",
    )
    allow_unsigned = forms.BooleanField(label="Allow unsigned metadata", required=False)
    update_existing = forms.BooleanField(
        label="Update entities that already exist", required=False, initial=True, help_text="Otherwise they are skipped."
    )
    max_size_mb = forms.IntegerField(label="Size limit (MB)", min_value=1, max_value=MAX_SIZE_MB, initial=100)
    refresh_hours = forms.IntegerField(label="Refresh every (hours)", required=False, min_value=0, max_value=24 * 90, initial=24)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["trust_anchor"] = trust_anchor_field()
        self.order_fields(["file", "url", "trust_anchor", "allow_unsigned", "role", "match", "registration_authority"])

    def clean(self):
        cleaned = super().clean()
        if bool(cleaned.get("file")) == bool((cleaned.get("url") or "").strip()):
            self.add_error("url", "Upload the aggregate or enter its URL (one of them).")
        elif cleaned.get("url"):
            try:
                cleaned["url"] = check_url(cleaned["url"])
            except FetchError as exc:
                self.add_error("url", exc.message)
        if cleaned.get("file") and cleaned.get("max_size_mb") and cleaned["file"].size > cleaned["max_size_mb"] * 1024 * 1024:
            self.add_error(
                "max_size_mb",
                f"The file is {format_bytes(cleaned['file'].size)}, over the size limit of {cleaned['max_size_mb']} MB you set.",
            )
        if not cleaned.get("trust_anchor") and not cleaned.get("allow_unsigned"):
            self.add_error("trust_anchor", "Choose a trust anchor to verify the signature, or allow unsigned metadata.")
        try:
            mi.BulkFilter(cleaned.get("role") or "sp", cleaned.get("match") or "", "")
        except mi.MetadataImportError as exc:
            self.add_error("match", exc.message)
        return cleaned


class SourceSettingsForm(forms.Form):
    """A metadata source's refresh settings (its detail page)."""

    refresh_hours = forms.IntegerField(label="Refresh every (hours)", required=False, min_value=0, max_value=24 * 90)
    require_signature = forms.BooleanField(label="Require a valid signature", required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["trust_anchor"] = trust_anchor_field()
        self.order_fields(["trust_anchor", "require_signature", "refresh_hours"])

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("require_signature") and not cleaned.get("trust_anchor"):
            self.add_error("trust_anchor", "A signature can only be checked with a trust anchor.")
        return cleaned
