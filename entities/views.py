"""Entity console pages: list, view, the create and edit wizards, delete. Thin views over
entities.entity_services (rules and messages) and entities.entity_wizards."""

from django.contrib import messages
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from entities import entity_services
from entities.entity_forms import EntityFilterForm
from entities.entity_services import EntityError
from entities.entity_wizards import EntityCreateWizard, EntityEditWizard
from entities.models import Endpoint, Entity
from federation.roles import admin_view, console_view
from federation.views.console import paginate


@console_view
@require_GET
def entity_list(request):
    filters = EntityFilterForm(request.GET or None)
    values = filters.cleaned_data if filters.is_valid() else {}
    # A correlated subquery, not a GROUP BY: it is evaluated only for the rows of the page shown.
    endpoint_count = (
        Endpoint.objects.filter(entity=OuterRef("pk")).order_by().values("entity").annotate(n=Count("pk")).values("n")
    )
    entities = Entity.objects.select_related("signing_key", "verification_certificate").annotate(
        endpoint_count=Coalesce(Subquery(endpoint_count), 0)
    )
    if values.get("q"):
        entities = entities.filter(Q(entity_id__icontains=values["q"]) | Q(name__icontains=values["q"]))
    if values.get("entity_type"):
        entities = entities.filter(entity_type=values["entity_type"])
    if values.get("location"):
        entities = entities.filter(location=values["location"])
    page, query = paginate(request, entities.order_by("name"))
    return render(
        request,
        "entities/entity_list.html",
        {"filters": filters, "page": page, "query": query, "total": Entity.objects.count()},
    )


@console_view
@require_GET
def entity_detail(request, pk):
    entity = get_object_or_404(
        Entity.objects.select_related("signing_key", "decryption_key", "verification_certificate", "encryption_certificate"),
        pk=pk,
    )
    return render(
        request,
        "entities/entity_detail.html",
        {
            "entity": entity,
            "endpoints": entity.endpoints.all(),
            "attributes": entity.attributes.all(),
            "runtime_urls": entity.runtime_urls(),
            "keys": entity.key_references(),
            "applicable": entity.applicable_fields(),
        },
    )


@admin_view
@require_GET
def entity_create(request):
    return EntityCreateWizard.start(request)


@admin_view
@require_http_methods(["GET", "POST"])
def entity_create_step(request, token, step):
    return EntityCreateWizard(request, token).dispatch(step)


@admin_view
@require_GET
def entity_edit(request, pk):
    return EntityEditWizard.start(request, entity=get_object_or_404(Entity, pk=pk))


@admin_view
@require_http_methods(["GET", "POST"])
def entity_edit_step(request, pk, token, step):
    return EntityEditWizard(request, token, entity=get_object_or_404(Entity, pk=pk)).dispatch(step)


@admin_view
@require_http_methods(["GET", "POST"])
def entity_delete(request, pk):
    entity = get_object_or_404(Entity, pk=pk)
    error = None
    if request.method == "POST":
        name = entity.name
        try:
            entity_services.delete_entity(entity)
        except EntityError as exc:
            error = exc.message
        else:
            messages.success(request, f"Deleted the entity '{name}'.")
            return redirect("entities:list")
    return render(
        request,
        "entities/entity_delete.html",
        {
            "entity": entity,
            "blockers": entity_services.deletion_blockers(entity),
            "error": error,
            "endpoint_count": entity.endpoints.count(),
            "attribute_count": entity.attributes.count(),
        },
        status=409 if error else 200,
    )
