"""The "Import metadata" wizard (reference F5.8), built on federation.wizard.

1 Select metadata: an uploaded file (the "Upload file" detour: steps hold text only) or a URL, the
  operation (create remote / update remote / create local), the trust anchor or "allow unsigned",
  the size limit.
2 Select entity defined in file: the document is read and verified once, by a scan job (inline for
  small files, a Celery job with a progress page for large ones or URLs); its entities are listed
  from the database, searched and paged server-side; expired and malformed ones are listed
  separately and cannot be chosen. Plus the new entity's name.
3 Certificate import (remote entities, only when the entity has a valid certificate): a checkbox
  and an alias per certificate, with "Issued To" and the usage.
4 Confirm: the steps, "Selected Certificate Data" (Alias | Issued To | Usage) and what will be
  created → Finish writes everything in one transaction and opens the entity.
"""

from datetime import timedelta

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Q
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy

from entities import metadata_import as mi
from entities.metadata_forms import CertificateForm, EntityChoiceForm, SourceForm
from entities.metadata_parser import EntityData, format_bytes
from entities.models import Endpoint, EndpointKind, EntityType, KeystoreEntry, MetadataImportJob, MetadataUpload
from federation.wizard import Detour, Step, StepErrors, Wizard

INLINE_SCAN_BYTES = 2 * 1024 * 1024  # smaller uploads are read during the request; larger ones by a Celery job
ENTRIES_PER_PAGE = 25


def _has_certificates(wizard):
    """Step 3 is shown for remote operations unless the chosen entity has no valid certificate (until
    the entity is chosen it is listed, so the step count does not jump)."""
    if wizard.operation() == mi.CREATE_LOCAL:
        return False
    if wizard.chosen() is None:
        return True
    return any(row.selectable for row in wizard.certificate_rows())


SOURCE_STEP = Step(
    "source",
    "Select metadata",
    form_class=SourceForm,
    detours={"upload": Detour("Upload file…", "upload", reverse_lazy("entities:metadata_upload"), "Upload a metadata file")},
    template_name="entities/metadata_wizard_source.html",
    help="The metadata file (or URL), what to do with it, and how to trust it. Signed metadata is verified "
    "against the trust anchor you choose.",
)
ENTITY_STEP = Step(
    "entity",
    "Select entity defined in file",
    form_class=EntityChoiceForm,
    template_name="entities/metadata_wizard_entity.html",
    help="Choose the entity with its radio button and name it. A file may hold many entities (one per file is "
    "recommended); expired ones are listed for reference only.",
)
CERTIFICATE_STEP = Step(
    "certificates",
    "Certificate import",
    form_class=CertificateForm,
    template_name="entities/metadata_wizard_certificates.html",
    condition=_has_certificates,
    help="Optional: import the partner's certificates into the keystore, each under a unique alias. They verify the "
    "partner's signatures (requests, SLO, assertions) and, in SAML 2.0, encrypt to it. Expired or invalid "
    "certificates are listed but cannot be chosen.",
)
CONFIRM_STEP = Step("confirm", "Confirm", confirm=True, template_name="entities/metadata_wizard_confirm.html")


class MetadataImportWizard(Wizard):
    namespace = "metadata-import"
    title = "Import metadata"
    finish_label = "Finish"
    steps = [SOURCE_STEP, ENTITY_STEP, CERTIFICATE_STEP, CONFIRM_STEP]

    def step_url(self, step_name):
        return reverse("entities:metadata_import_step", args=[self.token, step_name])

    def cancel_url(self):
        return reverse("entities:list")

    # -- what earlier steps chose

    def operation(self):
        source = self.cleaned("source")
        return source.form.get("operation") if source else None

    def _options(self, form):
        """The scan job's options for step-1 values (what decides what the scan reads)."""
        return {
            "upload": (form.get("upload") or "").strip(),
            "url": (form.get("url") or "").strip(),
            "trust_anchor": form.get("trust_anchor") or "",
            "allow_unsigned": bool(form.get("allow_unsigned")),
            "max_bytes": int(form.get("max_size_mb") or 100) * 1024 * 1024,
        }

    def scan_job(self, form=None, create=False):
        """The scan job of this run for the step-1 values (created and started with `create`)."""
        if form is None:
            source = self.cleaned("source")
            if source is None:
                return None
            form = source.form
        options = self._options(form)
        key = mi.job_key({**options, "token": self.token})
        job = MetadataImportJob.objects.filter(kind=MetadataImportJob.Kind.SCAN, wizard_token=self.token, key=key).first()
        if job is None and create:
            job = MetadataImportJob.objects.create(
                kind=MetadataImportJob.Kind.SCAN,
                key=key,
                wizard_token=self.token,
                owner=self.request.user.get_username(),
                options=options,
            )
            upload = MetadataUpload.objects.filter(pk=options["upload"]).first() if options["upload"] else None
            if upload is not None and upload.size <= INLINE_SCAN_BYTES:
                mi.run_scan_job(job.pk)
            else:
                from entities.tasks import enqueue, scan_metadata

                enqueue(scan_metadata, str(job.pk))
            job.refresh_from_db()
        return job

    def _memo(self, key, compute):
        """A value derived from the steps, kept until the engine forgets its cleaned steps (after a save)."""
        if getattr(self, "_memo_owner", None) is not self._cleaned:
            self._memo_owner, self._memo_values = self._cleaned, {}
        if key not in self._memo_values:
            self._memo_values[key] = compute()
        return self._memo_values[key]

    def chosen(self):
        """(MetadataScanEntry, EntityData, entity type) of step 2, or None."""

        def compute():
            data = self.cleaned("entity")
            entry = data.form.get("entry_object") if data else None
            if entry is None:
                return None
            return entry, EntityData.from_json(entry.data), data.form.get("entity_type") or ""

        return self._memo("chosen", compute)

    def _entity_type(self):
        entry, data, entity_type = self.chosen()
        if entity_type:
            return entity_type
        target = self._target_entity()
        if target is not None:
            return target.entity_type
        types = data.entity_types()
        return types[0] if types else ""

    def _target_entity(self):
        chosen = self.chosen()
        step = self.cleaned("entity")
        if chosen is None or step is None or self.operation() != mi.UPDATE_REMOTE:
            return None
        from entities.models import Entity, Location

        target = (step.form.get("target") or "").strip()
        if target:
            return Entity.objects.filter(name__iexact=target).first()
        return Entity.objects.filter(location=Location.REMOTE, entity_id=chosen[1].entity_id).first()

    def certificate_rows(self):
        def compute():
            chosen = self.chosen()
            entity_type = self._entity_type() if chosen else ""
            return mi.certificate_rows(chosen[1], entity_type) if chosen and entity_type else []

        return self._memo("rows", compute)

    def plan(self, certificate_aliases=None):
        entry, data, entity_type = self.chosen()
        step = self.cleaned("entity").form
        return mi.plan_entity(
            data,
            operation=self.operation(),
            entity_type=entity_type or None,
            name=step.get("name", ""),
            target=(step.get("target") or "").strip() or None,
            base_url=step.get("base_url", ""),
            certificate_aliases=certificate_aliases,
        )

    def _certificate_aliases(self):
        step = self.cleaned("certificates") if _has_certificates(self) else None
        if step is None:
            return {}
        form = CertificateForm(rows=self.certificate_rows())
        form.cleaned_data = step.form
        return form.aliases()

    # -- engine hooks

    def dispatch(self, step_name):
        request = self.request
        if self.state is not None and step_name == "source" and request.method == "POST":
            # Pressing Next again on step 1 retries a scan that failed (say, the URL was down).
            MetadataImportJob.objects.filter(wizard_token=self.token, state=MetadataImportJob.State.FAILED).delete()
        if self.state is not None and step_name != "source" and self.cleaned("source") is not None:
            job = self.scan_job(create=True)
            if job is not None and not job.done:
                return render(
                    request,
                    "entities/metadata_progress.html",
                    {"job": job, "refresh_url": self.step_url(step_name), "cancel_url": self.cancel_url(), "wizard": self},
                )
            self._cleaned = {}  # the scan's outcome decides whether step 1 is valid
        return super().dispatch(step_name)

    def get_form_kwargs(self, step):
        if step.name == "entity":
            return {"job": self.scan_job(), "operation": self.operation() or mi.CREATE_REMOTE}
        if step.name == "certificates":
            chosen = self.chosen()
            return {"rows": self.certificate_rows(), "suggested": self._suggested_alias(chosen)}
        return {}

    def _suggested_alias(self, chosen):
        step = self.cleaned("entity")
        if step is None:
            return ""
        if self.operation() == mi.UPDATE_REMOTE:
            target = self._target_entity()
            return target.name if target is not None else ""
        return step.form.get("name", "")

    def validate_step(self, step, forms):
        form = forms.form
        if step.name == "source":
            job = self.scan_job(form.cleaned_data)
            if job is not None and job.state == MetadataImportJob.State.FAILED:
                field = "url" if form.cleaned_data.get("url") else None
                forms.add_errors({field: [job.message]})
            elif job is not None and job.state == MetadataImportJob.State.SUCCEEDED:
                entries = job.entries.all()
                if not entries.exists():
                    forms.add_errors({None: ["The document holds no EntityDescriptor."]})
                elif not entries.filter(expired=False, problem="").exclude(entity_types="").exists():
                    if entries.filter(expired=False).exists():
                        forms.add_errors(
                            {None: ["No entity in this document can be imported (see the problems listed for each)."]}
                        )
                    else:
                        forms.add_errors(
                            {None: ["Every entity in this document has expired (validUntil); upload a current document."]}
                        )
        elif step.name == "entity":
            entry = form.cleaned_data.get("entry_object")
            if entry is None or not entry.selectable:
                return
            source = self.cleaned("source")
            try:
                plan = mi.plan_entity(
                    EntityData.from_json(entry.data),
                    operation=source.form["operation"],
                    entity_type=form.cleaned_data.get("entity_type") or None,
                    name=form.cleaned_data.get("name", ""),
                    target=(form.cleaned_data.get("target") or "").strip() or None,
                    base_url=form.cleaned_data.get("base_url", ""),
                )
                mi.check_plan(plan)
            except mi.MetadataImportError as exc:
                visible = {bound.name for bound in form.visible_fields()}
                forms.add_errors({exc.field if exc.field in visible else None: exc.messages})
        elif step.name == "certificates":
            try:
                mi.choose_certificates(self.certificate_rows(), form.aliases())
            except mi.MetadataImportError as exc:
                forms.add_errors({exc.field if exc.field in form.fields else None: [exc.message]})

    def summarize(self, step, data):
        form = data.form
        if step.name == "source":
            upload = MetadataUpload.objects.filter(pk=form.get("upload")).first() if form.get("upload") else None
            job = self.scan_job()
            document = job.document if job else {}
            rows = [
                ("Metadata", f"{upload.name} ({format_bytes(upload.size)})" if upload else form.get("url")),
                ("Operation", mi.OPERATIONS.get(form.get("operation"), "")),
                ("Signature", _signature_text(document, form)),
                ("Entities in the document", str(document.get("entity_count", "?"))),
                ("Size limit", f"{form.get('max_size_mb')} MB"),
            ]
            if form.get("url"):
                hours = form.get("refresh_hours")
                rows.append(("Refresh", f"every {hours} hours" if hours else "never (manual)"))
            return rows, []
        if step.name == "entity":
            entry, entity_data, _ = self.chosen()
            rows = [("Entity ID", entity_data.entity_id), ("Entity type", EntityType(self._entity_type()).label)]
            if entity_data.label() != entity_data.entity_id:
                rows.append(("Display name", entity_data.label()))
            if self.operation() == mi.UPDATE_REMOTE:
                target = self._target_entity()
                rows.append(("Entity to update", target.name if target else "—"))
            else:
                rows.append(("New entity name", form.get("name", "")))
            if form.get("base_url"):
                rows.append(("Base URL", form["base_url"]))
            return rows, []
        if step.name == "certificates":
            chosen = len(self._certificate_aliases())
            return [("Certificates chosen", str(chosen) if chosen else "none")], []
        return super().summarize(step, data)

    def get_context(self, step):
        context = {"operation_label": mi.OPERATIONS.get(self.operation() or "", "")}
        if step.name == "source":
            stored = (self.state or {}).get("steps", {}).get("source", {}).get("data", {})
            upload_id = (stored.get("upload") or [""])[0]
            context["upload"] = MetadataUpload.objects.filter(pk=upload_id).first() if _is_uuid(upload_id) else None
        elif step.name == "entity":
            context.update(self._entity_context())
        elif step.name == "certificates":
            context["entity"] = self.chosen()[1] if self.chosen() else None
        elif step.confirm:
            try:
                plan = self.plan(self._certificate_aliases())
            except mi.MetadataImportError as exc:  # e.g. the entity expired since step 2: Finish says so
                context["plan_error"] = exc.message
                return context
            context["plan"] = plan
            context["entity_type_label"] = EntityType(plan.entity_type).label
            context["endpoints"] = [
                {
                    "kind": EndpointKind(row["kind"]).label,
                    "binding": Endpoint.Binding(row["binding"]).label,
                    "location": row["location"],
                    "index": row["index"],
                    "is_default": row["is_default"],
                }
                for row in plan.endpoints or []
            ]
        return context

    def _entity_context(self):
        job = self.scan_job()
        query = (self.request.GET.get("q") or "").strip()
        entries = job.entries.only(
            "id",
            "position",
            "entity_id",
            "display_name",
            "entity_types",
            "expired",
            "valid_until",
            "problem",
            "certificate_count",
        )
        selectable = entries.filter(expired=False, problem="").exclude(entity_types="")
        unavailable = entries.filter(Q(expired=True) | ~Q(problem="") | Q(entity_types=""))
        if query:
            match = Q(entity_id__icontains=query) | Q(display_name__icontains=query)
            selectable, unavailable = selectable.filter(match), unavailable.filter(match)
        page = Paginator(selectable.order_by("position"), ENTRIES_PER_PAGE).get_page(self.request.GET.get("page"))
        stored = (self.state or {}).get("steps", {}).get("entity", {}).get("data", {})
        selected_id = (stored.get("entry") or [""])[0]
        selected = job.entries.filter(pk=selected_id).first() if str(selected_id).isdigit() else None
        return {
            "job": job,
            "document": job.document,
            "query": query,
            "page": page,
            "page_query": f"q={query}" if query else "",
            "selected": selected,
            "selected_id": str(selected.pk) if selected else "",
            "unavailable": unavailable.order_by("position")[:50],
            "unavailable_count": unavailable.count(),
            "selectable_count": page.paginator.count,
            "total_count": job.entries.count(),
        }

    def done(self, data):
        try:
            plan = self.plan(self._certificate_aliases())
        except mi.MetadataImportError as exc:
            raise StepErrors(_step_of(exc), fields={_field_of(exc): exc.messages}) from None
        source_form = data["source"].form
        job = self.scan_job()
        try:
            with transaction.atomic():
                source_row = None
                if plan.operation != mi.CREATE_LOCAL:
                    source = mi.Source(
                        url=source_form.get("url", ""),
                        upload=MetadataUpload.objects.filter(pk=source_form.get("upload")).first()
                        if source_form.get("upload")
                        else None,
                    )
                    info = _DocumentSummary(job.document)
                    fetch = _FetchSummary(job.document) if source.url else None
                    hours = source_form.get("refresh_hours")
                    source_row = mi.record_source(
                        source,
                        trust_entry=KeystoreEntry.objects.filter(alias=source_form.get("trust_anchor")).first()
                        if source_form.get("trust_anchor")
                        else None,
                        require_signature=not source_form.get("allow_unsigned"),
                        refresh_interval=timedelta(hours=hours) if source.url and hours else None,
                        info=info,
                        fetch=fetch,
                    )
                entity = mi.apply_plan(plan, source=source_row)
        except mi.MetadataImportError as exc:
            raise StepErrors(_step_of(exc), fields={_field_of(exc): exc.messages}) from None
        messages.success(self.request, f"Entity '{entity.name}' {'updated' if plan.target else 'created'} from metadata.")
        for note in plan.notes:
            messages.info(self.request, note)
        return redirect("entities:detail", pk=entity.pk)


def _step_of(exc):
    return "certificates" if (exc.field or "").startswith("alias_") else "entity"


def _field_of(exc):
    if (exc.field or "").startswith("alias_") or exc.field in ("name", "target", "entity_type", "base_url"):
        return exc.field
    return None


def _signature_text(document, form):
    if document.get("verified"):
        return f"verified with '{form.get('trust_anchor')}' ({document.get('verified_with') or 'trusted certificate'})"
    if document.get("signed"):
        return "signed, not checked (unsigned metadata allowed, no trust anchor)"
    return "unsigned (allowed)"


def _is_uuid(value):
    import uuid

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


class _DocumentSummary:
    """The scan's DocumentInfo summary, as record_source reads it."""

    def __init__(self, document):
        from datetime import datetime

        self.valid_until = datetime.fromisoformat(document["valid_until"]) if document.get("valid_until") else None
        seconds = document.get("cache_duration")
        self.cache_duration = timedelta(seconds=seconds) if seconds is not None else None
        self.sha256 = document.get("sha256", "")


class _FetchSummary:
    def __init__(self, document):
        self.etag = document.get("etag", "")
        self.last_modified = document.get("last_modified", "")
