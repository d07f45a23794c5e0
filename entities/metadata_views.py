"""Metadata console pages: the import wizard, the upload page (the wizard's detour), bulk import,
job progress, and the metadata sources with their refresh status. Thin views over
entities.metadata_import."""

from datetime import timedelta

from django.contrib import messages
from django.db.models import Count
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from entities import metadata_import as mi
from entities.metadata_forms import BulkImportForm, SourceSettingsForm, UploadForm
from entities.metadata_wizards import MetadataImportWizard
from entities.models import KeystoreEntry, MetadataImportJob, MetadataSource
from federation.roles import admin_view, console_view
from federation.views.console import paginate
from federation.wizard import CREATED_PARAM, append_query, safe_next_url


@admin_view
@require_GET
def metadata_import(request):
    return MetadataImportWizard.start(request)


@admin_view
@require_http_methods(["GET", "POST"])
def metadata_import_step(request, token, step):
    return MetadataImportWizard(request, token).dispatch(step)


@admin_view
@require_http_methods(["GET", "POST"])
def metadata_upload(request):
    """Upload a metadata file (kept in the database for the import); back to `next` with its id."""
    next_url = safe_next_url(request)
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload_file = form.cleaned_data["file"]
        try:
            upload = mi.store_upload(upload_file.name, upload_file.chunks(), uploaded_by=request.user.get_username())
        except mi.MetadataImportError as exc:
            form.add_error("file", exc.message)
        else:
            messages.success(request, f"Uploaded {upload.name} ({mi.format_bytes(upload.size)}).")
            if next_url:
                return redirect(append_query(next_url, **{CREATED_PARAM: str(upload.pk)}))
            return redirect("entities:metadata_import")
    return render(
        request, "entities/metadata_upload.html", {"form": form, "next": next_url or ""}, status=400 if form.errors else 200
    )


@admin_view
@require_http_methods(["GET", "POST"])
def metadata_bulk(request):
    form = BulkImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        values = form.cleaned_data
        upload_id = ""
        if values.get("file"):
            try:
                upload = mi.store_upload(values["file"].name, values["file"].chunks(), uploaded_by=request.user.get_username())
            except mi.MetadataImportError as exc:
                form.add_error("file", exc.message)
                return render(request, "entities/metadata_bulk.html", {"form": form}, status=400)
            upload_id = str(upload.pk)
        job = MetadataImportJob.objects.create(
            kind=MetadataImportJob.Kind.BULK,
            owner=request.user.get_username(),
            options={
                "upload": upload_id,
                "url": values.get("url") or "",
                "trust_anchor": values.get("trust_anchor") or "",
                "allow_unsigned": bool(values.get("allow_unsigned")),
                "max_bytes": values["max_size_mb"] * 1024 * 1024,
                "role": values["role"],
                "match": values.get("match") or "",
                "registration_authority": values.get("registration_authority") or "",
                "update_existing": bool(values.get("update_existing")),
                "refresh_hours": values.get("refresh_hours") or 0,
            },
        )
        from entities.tasks import bulk_import_metadata, enqueue

        enqueue(bulk_import_metadata, str(job.pk))
        return redirect("entities:metadata_job", pk=job.pk)
    return render(request, "entities/metadata_bulk.html", {"form": form}, status=400 if form.errors else 200)


def _job(pk):
    job = MetadataImportJob.objects.filter(pk=pk).first()
    if job is None:
        raise Http404("No such metadata job (finished jobs are kept for two days).")
    return job


@console_view
@require_GET
def metadata_job(request, pk):
    job = _job(pk)
    return render(
        request,
        "entities/metadata_progress.html",
        {"job": job, "refresh_url": reverse("entities:metadata_job", args=[job.pk]), "cancel_url": reverse("entities:list")},
    )


@console_view
@require_GET
def metadata_job_status(request, pk):
    job = _job(pk)
    return JsonResponse(
        {
            "state": job.state,
            "state_label": job.get_state_display(),
            "phase": job.phase,
            "percent": job.percent,
            "processed": job.processed,
            "total": job.total,
            "bytes_read": job.bytes_read,
            "bytes_total": job.bytes_total,
            "done": job.done,
            "message": job.message,
        }
    )


@console_view
@require_GET
def metadata_sources(request):
    sources = (
        MetadataSource.objects.select_related("trust_anchor")
        .annotate(entity_count=Count("entities"))
        .order_by("-kind", "location")
    )
    page, query = paginate(request, sources)
    return render(request, "entities/metadata_sources.html", {"page": page, "query": query})


@console_view
@require_http_methods(["GET", "POST"])
def metadata_source(request, pk):
    source = get_object_or_404(MetadataSource.objects.select_related("trust_anchor"), pk=pk)
    initial = {
        "trust_anchor": source.trust_anchor.alias if source.trust_anchor else "",
        "require_signature": source.require_signature,
        "refresh_hours": int(source.refresh_interval.total_seconds() // 3600) if source.refresh_interval else 0,
    }
    form = SourceSettingsForm(initial=initial)
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "refresh" and source.is_url:
            from entities.tasks import enqueue, refresh_metadata_source

            enqueue(refresh_metadata_source, source.pk, True)
            messages.success(request, f"Refresh of {source.location} started; the result shows below once it has run.")
            return redirect("entities:metadata_source", pk=source.pk)
        if action == "save":
            form = SourceSettingsForm(request.POST)
            if form.is_valid():
                values = form.cleaned_data
                source.trust_anchor = (
                    KeystoreEntry.objects.filter(alias=values["trust_anchor"]).first() if values["trust_anchor"] else None
                )
                source.require_signature = values["require_signature"]
                if source.is_url:
                    hours = values.get("refresh_hours") or 0
                    source.refresh_interval = timedelta(hours=hours) if hours else None
                    source.next_refresh_at = mi.next_refresh(source, source.last_success_at or source.created_at)
                source.save()
                messages.success(request, "Metadata source saved.")
                return redirect("entities:metadata_source", pk=source.pk)
    entities = source.entities.order_by("name")
    return render(
        request,
        "entities/metadata_source.html",
        {"source": source, "form": form, "entities": entities[:100], "entity_count": entities.count()},
    )
