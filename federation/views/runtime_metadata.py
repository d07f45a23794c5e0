"""GET /affwebservices/public/saml2metadata/<local entity name>: the live metadata of a local SAML
entity, so partners can refresh it on their own schedule (PRODUCT.md §4.2, §5).

Public (no login, as partners' metadata refreshers have none), read-only, never audited. The
document is built on each request by entities.metadata_export.live_metadata: signed with the
entity's signing key when it has one, with validUntil and cacheDuration, and the same cache
lifetime in Cache-Control. Unknown names, remote entities and WS-Fed entities get a 404 page in
plain words with the transaction ID; a local entity whose metadata cannot be built (an expired
key, say) gets a 503 page, and the reason goes to the log for the administrator.
"""

import logging

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from entities import metadata_export
from entities.models import Entity
from federation.runtime_middleware import runtime_view
from federation.tracing import current_transaction_id

log = logging.getLogger("federation.runtime.metadata")


def _page(request, status, title, text):
    return render(
        request,
        "entities/metadata_export_unavailable.html",
        {"title": title, "text": text, "transaction_id": getattr(request, "transaction_id", None) or current_transaction_id()},
        status=status,
    )


@runtime_view
@require_http_methods(["GET", "HEAD"])
def saml2_metadata(request, entity_name):
    entity = (
        Entity.objects.select_related("signing_key", "next_signing_key", "decryption_key")
        .filter(name__iexact=entity_name, location=Entity.Location.LOCAL)
        .first()
    )
    if not metadata_export.serves_live_metadata(entity):
        log.info("no live metadata for '%s'", entity_name, extra={"checkpoint": "METADATA_LIVE_NOT_FOUND"})
        return _page(request, 404, "Metadata not found", "This site has no local SAML entity with this name.")
    try:
        result, cache_seconds = metadata_export.live_metadata(entity)
    except metadata_export.MetadataExportError as exc:
        log.error(
            "live metadata of '%s' cannot be built: %s", entity.name, exc.message, extra={"checkpoint": "METADATA_LIVE_FAILED"}
        )
        return _page(
            request,
            503,
            "Metadata unavailable",
            "This entity's metadata cannot be published right now. Quote the transaction ID to the site's administrator.",
        )
    response = HttpResponse(result.xml, content_type=metadata_export.CONTENT_TYPE)
    response["Content-Disposition"] = f'inline; filename="{entity.name}-metadata.xml"'
    response["Cache-Control"] = f"public, max-age={cache_seconds}" if cache_seconds > 0 else "no-cache"
    log.info(
        "live metadata of '%s' served (%s)",
        entity.name,
        f"signed with {result.signed_with}" if result.signed_with else "unsigned",
        extra={"checkpoint": "METADATA_LIVE"},
    )
    return response
