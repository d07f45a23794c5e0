"""Console: a partnership's "Export metadata" dialog (reference ch01-08 F6.7, ch20-22 §2.3).

The entity-level dialog's options (entities.metadata_views_export) without the partnership name: the file is always
`<partnership name>-metadata.xml`. The fields start at the partnership's own values; while the partnership is Active
they are read-only except the validity and the key aliases (the key pair that signs the file, the next signing key
announced). GET shows the dialog with what the file will publish, POST downloads the document (audited on the
partnership). Administrators only, as at entity level: the dialog can sign with any key pair of the keystore.
"""

from datetime import timedelta

from django import forms
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_http_methods

from entities import metadata_export as me
from entities.metadata_export import MetadataExportError
from entities.metadata_views_export import MetadataExportForm, download
from entities.models import KeystoreEntry
from federation.roles import admin_view
from partnerships import metadata as partnership_metadata
from partnerships.models import Partnership

# The fields that stay editable while the partnership is Active (F6.7).
EDITABLE_WHILE_ACTIVE = ("valid_days", "sign_with", "next_signing_key")


def _stated(value):
    return {True: "true", False: "false"}.get(value, "")


def _tristate(value):
    return {"true": True, "false": False}.get(value)


class PartnershipMetadataExportForm(MetadataExportForm):
    """The entity-level export form, started from the partnership's values, plus the next signing key to announce."""

    next_signing_key = forms.ChoiceField(
        label="Next signing key to announce",
        required=False,
        help_text="Published after the signing certificate so partners trust it before you switch to it (key rollover). "
        "Starts at the local entity's next signing key.",
    )

    def __init__(self, *args, partnership, content=None, **kwargs):
        super().__init__(*args, entity=partnership.local_entity, **kwargs)
        self.partnership = partnership
        del self.fields["partnership_name"]  # always the partnership's own name
        self.fields["next_signing_key"].choices = [("", "— none")] + self.fields["sign_with"].choices[1:]
        signer = partnership_metadata.default_document_signer(partnership)
        self.fields["entity_id"].initial = partnership.local_entity.entity_id
        self.fields["entity_id"].help_text = (
            "The entityID to publish. It starts at the local entity's; another one is for a partner that knows this site "
            "under a different ID."
        )
        self.fields["sign"].initial = bool(signer)
        self.fields["sign_with"].initial = signer
        self.fields["algorithm"].choices = [
            ("", "Default: the partnership's signature algorithm when it suits the key, else RSA-SHA256 or ECDSA-SHA256"),
            *self.fields["algorithm"].choices[1:],
        ]
        self.fields["next_signing_key"].initial = partnership_metadata.default_next_signing_alias(partnership)
        flags = partnership_metadata.signing_flags(content) if content is not None else {}
        for name in partnership_metadata.SIGNING_FLAGS:
            if name in self.fields:
                self.fields[name].initial = _stated(flags.get(name))
                self.fields[name].help_text += " Starts at the partnership's Signature step."
        order = ["entity_id", "valid_days", "cache_hours", "sign", "sign_with", "algorithm", "next_signing_key"]
        self.order_fields(order + [name for name in self.fields if name not in order])
        if partnership.is_active:
            # Signed exactly when a key pair is chosen: the Sign box would be read-only too.
            del self.fields["sign"]
            self.fields["sign_with"].help_text += " Choose none (—) for an unsigned file."
            for name, field in self.fields.items():
                if name not in EDITABLE_WHILE_ACTIVE:
                    field.disabled = True

    def options(self):
        data = self.cleaned_data
        signs = data.get("sign") if "sign" in self.fields else bool(data.get("sign_with"))
        sign_with = None
        if signs:
            sign_with = KeystoreEntry.objects.filter(alias=data["sign_with"]).first()
            if sign_with is None:
                raise MetadataExportError(f"No key pair has the alias '{data['sign_with']}'.", "sign_with")
        return me.ExportOptions(
            entity_id=data.get("entity_id", ""),
            valid_days=data.get("valid_days") or 0,
            cache_duration=timedelta(hours=data["cache_hours"]) if data.get("cache_hours") else None,
            sign_with=sign_with,
            algorithm=data.get("algorithm") or "",
            overrides={name: _tristate(data[name]) for name in partnership_metadata.SIGNING_FLAGS if name in data},
        )


def _preview(partnership):
    """(MetadataContent or None, problem message) of what the file will publish."""
    try:
        return partnership_metadata.partnership_metadata_content(partnership), ""
    except MetadataExportError as exc:
        return None, exc.message


@admin_view
@require_http_methods(["GET", "POST"])
def export_metadata(request, pk):
    partnership = get_object_or_404(Partnership.objects.select_related("local_entity", "remote_entity"), pk=pk)
    content, problem = _preview(partnership)
    form = PartnershipMetadataExportForm(
        request.POST if request.method == "POST" else None, partnership=partnership, content=content
    )
    if request.method == "POST" and form.is_valid():
        try:
            result = partnership_metadata.export_partnership_metadata(
                partnership, form.options(), next_signing_alias=form.cleaned_data.get("next_signing_key", "")
            )
        except MetadataExportError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            me.audit_export(partnership, result, "console")
            return download(result)
    return render(
        request,
        "partnerships/metadata_export_form.html",
        {
            "partnership": partnership,
            "kind": partnership.kind_info,
            "form": form,
            "content": content,
            "problem": problem,
            "filename": partnership_metadata.filename(partnership),
            "base_url": partnership_metadata.base_url(partnership),
        },
    )
