"""Console: the "Export metadata" dialog of an entity (reference ch20-22 §2.2, ch01-08 F6.7).

GET shows the form, POST builds the document with entities.metadata_export and returns it as a
download (`<partnership or entity name>-metadata.xml`), audited. Administrators only: the export can
sign with any key pair of the keystore. Auditors (read-only) get the entity's public live URL on the
entity page instead, which serves the same document signed with the entity's own key.
"""

from datetime import timedelta

from django import forms
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_http_methods

from entities import metadata_export
from entities.metadata_export import MetadataExportError
from entities.models import Entity, KeystoreEntry
from federation import runtime_paths
from federation.roles import admin_view

STATED = [("", "Do not state it"), ("true", "Yes (true)"), ("false", "No (false)")]


def _tristate(value):
    return {"true": True, "false": False}.get(value)


class MetadataExportForm(forms.Form):
    """The export dialog. Fields for signing flags appear only for the entity types they concern."""

    partnership_name = forms.CharField(
        label="Partnership name",
        max_length=metadata_export.PARTNERSHIP_NAME_MAX,
        help_text="The new partnership the partner builds from this file: letters, digits, '_', '-' and '.'. "
        "It names the file (<name>-metadata.xml) and is recorded in the audit log.",
    )
    entity_id = forms.CharField(
        label="Entity ID in the file",
        max_length=metadata_export.ENTITY_ID_MAX,
        required=False,
        help_text="Optional: the entityID to publish instead of the entity's own (local entity IDs may repeat, "
        "so a partnership can present another one). Leave empty to use the entity's ID.",
    )
    valid_days = forms.IntegerField(
        label="Validity (days)",
        min_value=0,
        max_value=metadata_export.MAX_VALID_DAYS,
        initial=0,
        required=False,
        help_text="Sets validUntil this many days from now; partners refuse the file afterwards. 0 or empty: no expiry. "
        "Signed files should have one, so an old copy cannot be replayed forever.",
    )
    cache_hours = forms.IntegerField(
        label="Cache duration (hours)",
        min_value=1,
        max_value=24 * 365,
        required=False,
        help_text="Optional cacheDuration: how often partners should fetch the metadata again.",
    )
    sign = forms.BooleanField(
        label="Sign the metadata",
        required=False,
        help_text="An enveloped XML signature partners verify with the certificate you send them separately.",
    )
    sign_with = forms.ChoiceField(
        label="Signing key pair",
        required=False,
        help_text="The key pair that signs the file; its certificate is put in the signature's KeyInfo.",
    )
    algorithm = forms.ChoiceField(
        label="Signature algorithm",
        required=False,
        choices=[("", "Default for the key (RSA-SHA256 or ECDSA-SHA256)"), *metadata_export.SIGNATURE_ALGORITHM_CHOICES],
        help_text="RSA-SHA256 unless a partner needs something else; RSA-SHA1 only for partners that cannot do SHA-2.",
    )
    want_authn_requests_signed = forms.ChoiceField(
        label="WantAuthnRequestsSigned",
        choices=STATED,
        required=False,
        help_text="SAML 2.0 IdP: whether SPs must sign their AuthnRequests to us.",
    )
    authn_requests_signed = forms.ChoiceField(
        label="AuthnRequestsSigned",
        choices=STATED,
        required=False,
        help_text="SAML 2.0 SP: whether we sign our AuthnRequests (state it only when every partnership does).",
    )
    want_assertions_signed = forms.ChoiceField(
        label="WantAssertionsSigned",
        choices=STATED,
        required=False,
        help_text="SAML 2.0 SP: whether we require signed assertions (the runtime does for HTTP-POST).",
    )

    def __init__(self, *args, entity, **kwargs):
        super().__init__(*args, **kwargs)
        self.entity = entity
        pairs = list(KeystoreEntry.objects.filter(kind=KeystoreEntry.Kind.KEY_PAIR).order_by("alias"))
        self.fields["sign_with"].choices = [("", "—")] + [
            (entry.alias, f"{entry.alias} ({entry.key_description}, until {entry.not_after:%Y-%m-%d})") for entry in pairs
        ]
        if not self.is_bound:
            self.fields["sign"].initial = bool(entity.signing_key_id)
            self.fields["sign_with"].initial = entity.signing_key.alias if entity.signing_key_id else ""
            if entity.is_local and entity.protocol == "saml2" and not entity.is_asserting:
                self.fields["want_assertions_signed"].initial = "true"
        if not entity.is_local:
            # Re-emitting a partner's metadata (debugging): no new partnership, no other entity ID.
            del self.fields["partnership_name"]
            del self.fields["entity_id"]
        keep = set()
        if entity.protocol == "saml2":
            keep = {"want_authn_requests_signed"} if entity.is_asserting else {"authn_requests_signed", "want_assertions_signed"}
        for name in ("want_authn_requests_signed", "authn_requests_signed", "want_assertions_signed"):
            if name not in keep:
                del self.fields[name]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("sign") and not cleaned.get("sign_with"):
            self.add_error("sign_with", "Choose the key pair to sign the metadata with, or untick 'Sign the metadata'.")
        return cleaned

    def options(self):
        data = self.cleaned_data
        sign_with = None
        if data.get("sign"):
            sign_with = KeystoreEntry.objects.filter(alias=data["sign_with"]).first()
            if sign_with is None:
                raise MetadataExportError(f"No key pair has the alias '{data['sign_with']}'.", "sign_with")
        overrides = {name: _tristate(data[name]) for name in data if name.endswith("_signed")}
        return metadata_export.ExportOptions(
            partnership_name=data.get("partnership_name", ""),
            entity_id=data.get("entity_id", ""),
            valid_days=data.get("valid_days") or 0,
            cache_duration=timedelta(hours=data["cache_hours"]) if data.get("cache_hours") else None,
            sign_with=sign_with,
            algorithm=data.get("algorithm") or "",
            overrides=overrides,
        )


def download(result):
    response = HttpResponse(result.xml, content_type=metadata_export.CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{result.filename}"'
    response["Cache-Control"] = "no-store"
    return response


@admin_view
@require_http_methods(["GET", "POST"])
def export_metadata(request, pk):
    entity = get_object_or_404(
        Entity.objects.select_related("signing_key", "next_signing_key", "decryption_key", "verification_certificate"),
        pk=pk,
    )
    form = MetadataExportForm(request.POST if request.method == "POST" else None, entity=entity)
    if request.method == "POST" and form.is_valid():
        try:
            result = metadata_export.export_entity_metadata(entity, form.options())
        except MetadataExportError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            metadata_export.audit_export(entity, result, "console")
            return download(result)
    live_url = (
        runtime_paths.join(entity.base_url, runtime_paths.saml2_metadata_path(entity.name))
        if metadata_export.serves_live_metadata(entity)
        else ""
    )
    return render(
        request,
        "entities/metadata_export_form.html",
        {"entity": entity, "form": form, "live_url": live_url},
    )
