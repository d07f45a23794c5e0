"""Keystore console pages: thin views over entities.services.

Read pages are open to auditors (console_view); everything that changes the keystore, and the
PKCS#12 export, is for administrators (admin_view). The private key is never put in a page:
templates get the entry, whose sealed key column they do not render, and the key pair import
form has no paste box that could echo a key back after an error.
"""

from django.contrib import messages
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from entities import references, services
from entities.keystore import KeystoreError
from entities.keystore_forms import (
    CsrForm,
    ExportPkcs12Form,
    GenerateKeyPairForm,
    ImportKeyPairForm,
    ImportSignedCertificateForm,
    ImportTrustedCaForm,
    ImportTrustedCertificateForm,
    KeystoreFilterForm,
    add_keystore_error,
)
from entities.models import KeystoreEntry
from federation.roles import admin_view, console_view
from federation.views.console import paginate
from federation.wizard import CREATED_PARAM, append_query, safe_next_url


def _download(data, filename, content_type):
    response = HttpResponse(data, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


def _bound(request, files=False):
    """Form arguments: bound to the POST data on POST (even an empty one), unbound on GET."""
    if request.method != "POST":
        return (None, None) if files else (None,)
    return (request.POST, request.FILES) if files else (request.POST,)


def _detail(entry):
    return redirect("keystore:detail", alias=entry.alias)


def _done(request, entry):
    """After a new entry: back to the page that sent the administrator here (`next`, e.g. an entity
    wizard, which then selects the new alias), else to the entry's page."""
    back = safe_next_url(request)
    if back:
        return redirect(append_query(back, **{CREATED_PARAM: entry.alias}))
    return _detail(entry)


@console_view
@require_GET
def entry_list(request):
    filters = KeystoreFilterForm(request.GET or None)
    entries = KeystoreEntry.objects.all()
    values = filters.cleaned_data if filters.is_valid() else {}
    if values.get("q"):
        entries = entries.filter(Q(alias__icontains=values["q"]) | Q(subject__icontains=values["q"]))
    if values.get("kind"):
        entries = entries.filter(kind=values["kind"])
    if values.get("level"):
        entries = entries.filter(services.level_filter(values["level"]))
    entries = entries.order_by(values.get("sort") or "alias", "alias")
    page, query = paginate(request, entries)
    return render(
        request,
        "entities/keystore_list.html",
        {"filters": filters, "page": page, "query": query, "total": KeystoreEntry.objects.count()},
    )


@console_view
@require_GET
def entry_detail(request, alias):
    entry = get_object_or_404(KeystoreEntry, alias=alias)
    return render(
        request,
        "entities/keystore_detail.html",
        {
            "entry": entry,
            "chain": [cert.subject.rfc4514_string() for cert in entry.chain()],
            "chain_status": services.chain_status(entry),
            "warnings": entry.expiry_warnings.all()[:20],
            "used_by": [(obj, references.describe(obj, entry)) for obj in references.blocking_references(entry)],
        },
    )


@admin_view
@require_http_methods(["GET", "POST"])
def generate(request):
    form = GenerateKeyPairForm(*_bound(request))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            entry = services.generate_key_pair(data["alias"], data["algorithm"], data["subject"], data["days"], data["san"])
        except KeystoreError as exc:
            add_keystore_error(form, exc)
        else:
            messages.success(request, f"Key pair '{entry.alias}' generated with a self-signed certificate.")
            return _done(request, entry)
    return render(
        request,
        "entities/keystore_form.html",
        {
            "form": form,
            "next": safe_next_url(request),
            "title": "Generate key pair",
            "submit": "Generate",
            "intro": "Creates a private key (stored encrypted) and a self-signed certificate. "
            "To have a CA sign it, use Create CSR on the next page.",
        },
    )


def _import_page(request, form_class, title, intro, action):
    back = safe_next_url(request)
    form = form_class(*_bound(request, files=True))
    if request.method == "POST" and form.is_valid():
        try:
            entries = action(form)
        except KeystoreError as exc:
            field_map = {"file": form.data_field()} if hasattr(form, "data_field") else None
            add_keystore_error(form, exc, field_map)
        else:
            names = ", ".join(f"'{entry.alias}'" for entry in entries)
            messages.success(request, f"Imported {names}.")
            if len(entries) == 1:
                return _done(request, entries[0])
            return redirect(
                append_query(back, **{CREATED_PARAM: entries[0].alias}) if back else reverse("keystore:list") + "?kind=trusted_ca"
            )
    return render(
        request,
        "entities/keystore_form.html",
        {"form": form, "next": back, "title": title, "submit": "Import", "intro": intro, "multipart": True},
    )


@admin_view
@require_http_methods(["GET", "POST"])
def import_key_pair(request):
    return _import_page(
        request,
        ImportKeyPairForm,
        "Import key pair",
        "A private key with its certificate, from a PKCS#12 file or PEM. The key is stored encrypted and never shown again.",
        lambda form: [
            services.import_key_pair(form.cleaned_data["alias"], form.data_bytes(), form.cleaned_data["password"] or None)
        ],
    )


@admin_view
@require_http_methods(["GET", "POST"])
def import_trusted_certificate(request):
    return _import_page(
        request,
        ImportTrustedCertificateForm,
        "Import trusted certificate",
        "A partner's certificate, used to verify its signatures or encrypt to it.",
        lambda form: [services.import_trusted_certificate(form.cleaned_data["alias"], form.data_bytes())],
    )


@admin_view
@require_http_methods(["GET", "POST"])
def import_trusted_ca(request):
    return _import_page(
        request,
        ImportTrustedCaForm,
        "Import trusted CA chain",
        "CA certificates whose issued certificates are trusted (partner certificates, back-channel TLS, "
        "client-certificate login). Certificates already trusted are skipped.",
        lambda form: services.import_trusted_ca_chain(form.cleaned_data["alias"], form.data_bytes()),
    )


@admin_view
@require_http_methods(["GET", "POST"])
def create_csr(request, alias):
    """POST from the detail page's "Create CSR" button (defaults from the certificate), or the CSR form."""
    entry = get_object_or_404(KeystoreEntry, alias=alias, kind=KeystoreEntry.Kind.KEY_PAIR)
    form = CsrForm(*_bound(request), initial={"subject": entry.subject, "san": "\n".join(entry.san_list)})
    if request.method == "POST" and form.is_valid():
        try:
            services.create_csr(alias, form.cleaned_data["subject"] or None, form.cleaned_data["san"] or None)
        except KeystoreError as exc:
            add_keystore_error(form, exc)
        else:
            messages.success(request, f"A certificate signing request was created for '{alias}'. Send it to your CA.")
            return _detail(entry)
    return render(
        request,
        "entities/keystore_form.html",
        {
            "form": form,
            "entry": entry,
            "title": f"Certificate signing request for {alias}",
            "submit": "Create CSR",
            "intro": "Makes a CSR signed by this key pair. Send it to your CA, then import the certificate it returns.",
        },
    )


@console_view
@require_GET
def download_csr(request, alias):
    entry = get_object_or_404(KeystoreEntry, alias=alias, kind=KeystoreEntry.Kind.KEY_PAIR)
    if not entry.csr_pem:
        messages.error(request, f"'{alias}' has no certificate signing request yet; use Create CSR first.")
        return _detail(entry)
    return _download(entry.csr_pem, f"{alias}.csr.pem", "application/pkcs10")


@admin_view
@require_http_methods(["GET", "POST"])
def import_signed(request, alias):
    entry = get_object_or_404(KeystoreEntry, alias=alias, kind=KeystoreEntry.Kind.KEY_PAIR)
    form = ImportSignedCertificateForm(*_bound(request, files=True))
    if request.method == "POST" and form.is_valid():
        try:
            entry = services.import_signed_certificate(alias, form.data_bytes())
        except KeystoreError as exc:
            add_keystore_error(form, exc, {"file": form.data_field()})
        else:
            messages.success(request, f"The CA-signed certificate is now the certificate of '{alias}'.")
            return _detail(entry)
    return render(
        request,
        "entities/keystore_form.html",
        {
            "form": form,
            "entry": entry,
            "title": f"Import CA-signed certificate for {alias}",
            "submit": "Import",
            "intro": "The certificate your CA issued for this key pair's CSR. A certificate for another key is refused "
            "and the current certificate kept.",
            "multipart": True,
        },
    )


@console_view
@require_GET
def export_certificate(request, alias, fmt):
    try:
        data = services.export_certificate(alias, fmt)
    except KeystoreError as exc:
        messages.error(request, exc.message)
        return redirect("keystore:list")
    content_type = "application/x-pem-file" if fmt == "pem" else "application/pkix-cert"
    return _download(data, f"{alias}.{'crt.pem' if fmt == 'pem' else 'cer'}", content_type)


@admin_view
@require_http_methods(["GET", "POST"])
def export_pkcs12(request, alias):
    entry = get_object_or_404(KeystoreEntry, alias=alias, kind=KeystoreEntry.Kind.KEY_PAIR)
    form = ExportPkcs12Form(*_bound(request))
    if request.method == "POST" and form.is_valid():
        try:
            data = services.export_pkcs12(alias, form.cleaned_data["password"])
        except KeystoreError as exc:
            add_keystore_error(form, exc)
        else:
            return _download(data, f"{alias}.p12", "application/x-pkcs12")
    return render(
        request,
        "entities/keystore_form.html",
        {
            "form": form,
            "entry": entry,
            "title": f"Export {alias} as PKCS#12",
            "submit": "Export PKCS#12",
            "danger": True,
            "intro": "The file holds the private key, the certificate and its chain, protected by the password you choose here.",
        },
    )


@admin_view
@require_http_methods(["GET", "POST"])
def delete(request, alias):
    entry = get_object_or_404(KeystoreEntry, alias=alias)
    if request.method == "POST":
        try:
            services.delete_entry(alias)
        except KeystoreError as exc:  # in use by an entity, or deleted meanwhile by someone else
            messages.error(request, exc.message)
            if KeystoreEntry.objects.filter(alias=alias).exists():
                return _detail(entry)
        else:
            messages.success(request, f"Deleted '{alias}'.")
        return redirect("keystore:list")
    users = [references.describe(obj, entry) for obj in references.blocking_references(entry)]
    return render(request, "entities/keystore_delete.html", {"entry": entry, "users": users})
