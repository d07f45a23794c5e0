"""Console views of the partnership wizard (partnerships.wizards): create, edit (refused while Active), the detours
that come back with a value (create an entity, import metadata, Get updates), the live window preview and the
"Test this expression against a user" endpoint. Thin: the work is in the wizards, partnerships.services,
federation.directories and partnerships.expressions."""

from django import forms
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from entities import metadata_import as mi
from entities.models import EntityType, Location
from federation import directories
from federation.models import UserDirectory
from federation.roles import admin_view, console_view
from federation.wizard import CREATED_PARAM, append_query, safe_next_url
from partnerships import services
from partnerships.expressions import ExpressionSyntaxError, compile_expression
from partnerships.models import Partnership, PartnershipState
from partnerships.wizard_forms import ExpressionTestForm
from partnerships.wizards import (
    PartnershipCreateWizard,
    PartnershipEditWizard,
    PartnershipEntityCreateWizard,
    PartnershipMetadataImportWizard,
    blocked_page,
    window_preview,
)


def _partnership(pk):
    return get_object_or_404(Partnership.objects.select_related("local_entity", "remote_entity"), pk=pk)


# --------------------------------------------------------------------------------------------------- create / edit


@admin_view
@require_GET
def partnership_create(request):
    return PartnershipCreateWizard.start(request)


@admin_view
@require_http_methods(["GET", "POST"])
def partnership_create_step(request, token, step):
    return PartnershipCreateWizard(request, token).dispatch(step)


@admin_view
@require_GET
def partnership_edit(request, pk):
    partnership = _partnership(pk)
    if partnership.state == PartnershipState.ACTIVE:
        return blocked_page(request, partnership)
    return PartnershipEditWizard.start(request, partnership=partnership)


@admin_view
@require_http_methods(["GET", "POST"])
def partnership_edit_step(request, pk, token, step):
    partnership = _partnership(pk)
    if partnership.state == PartnershipState.ACTIVE:
        return blocked_page(request, partnership)
    return PartnershipEditWizard(request, token, partnership=partnership).dispatch(step)


@admin_view
@require_http_methods(["GET", "POST"])
def edit_get_updates(request, pk):
    """The Configure step's "Get updates": show what changed in the entities, and on Yes mark the wizard run so
    Finish copies the entities' current data (nothing is written here; No changes nothing)."""
    partnership = _partnership(pk)
    back = safe_next_url(request) or reverse("partnerships:edit", args=[pk])
    if request.method == "POST":
        return redirect(append_query(back, **{CREATED_PARAM: "1"}))
    return render(
        request,
        "partnerships/wizard_get_updates.html",
        {
            "partnership": partnership,
            "changes": [
                (side, field, _readable(old), _readable(new)) for side, field, old, new in services.entity_changes(partnership)
            ],
            "back": back,
        },
    )


def _readable(value):
    """An entity fact as lines of text: one line per endpoint or attribute, "key: value" pairs."""
    if isinstance(value, list):
        return "\n".join(_readable(item) for item in value) or "—"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {_readable(item)}" for key, item in value.items() if item not in (None, "", [], {})) or "—"
    return "—" if value in (None, "") else str(value)


# --------------------------------------------------------------------------------------------------- detours


@admin_view
@require_GET
def entity_create(request):
    """ "Create local / remote entity" from the Configure step: the entity wizard for that location and type, which
    comes back to the partnership wizard with the new entity chosen."""
    location = request.GET.get("location", "")
    entity_type = request.GET.get("entity_type", "")
    if location not in Location.values or entity_type not in EntityType.values:
        return redirect("entities:create")
    back = safe_next_url(request) or reverse("partnerships:list")
    seed = {"type": {"location": [location], "entity_type": [entity_type]}}
    return PartnershipEntityCreateWizard.start_returning(
        request, back, seed, fixed={"location": location, "entity_type": entity_type}
    )


@admin_view
@require_http_methods(["GET", "POST"])
def entity_create_step(request, token, step):
    return PartnershipEntityCreateWizard(request, token).dispatch(step)


@admin_view
@require_GET
def metadata_import(request):
    """ "Import metadata" from the Configure step: the metadata import wizard (create a remote entity), which comes
    back with the new entity chosen."""
    back = safe_next_url(request) or reverse("partnerships:list")
    return PartnershipMetadataImportWizard.start_returning(request, back, {"source": {"operation": [mi.CREATE_REMOTE]}})


@admin_view
@require_http_methods(["GET", "POST"])
def metadata_import_step(request, token, step):
    return PartnershipMetadataImportWizard(request, token).dispatch(step)


# --------------------------------------------------------------------------------------------------- live previews


class PreviewForm(forms.Form):
    name = forms.ChoiceField(choices=[("validity", "validity"), ("slo", "slo"), ("acceptance", "acceptance")])
    skew = forms.IntegerField(required=False)
    other = forms.IntegerField(required=False)


@console_view
@require_GET
def window_preview_view(request):
    """The sentence of a validity-window preview for the values typed so far (partnership_wizard.js asks as the
    administrator types; the wizard renders the same sentence server-side)."""
    form = PreviewForm(request.GET)
    form.is_valid()  # a value that is not a whole number previews as missing: the sentence says what to enter
    data = form.cleaned_data
    return JsonResponse({"text": window_preview(data.get("name") or "validity", data.get("skew"), data.get("other"))})


# --------------------------------------------------------------------------------------------------- expression test


def login_search_spec(directory):
    """The search spec that finds a user by login name in this directory."""
    if directory.is_embedded:
        return "username=%s"
    start = (directory.user_dn_start or "").strip()
    if start.endswith("=") and start[:-1].strip().isidentifier():
        return f"({start[:-1].strip()}=%s)"
    if "%s" in (directory.user_filter or ""):
        return directory.user_filter
    return "(uid=%s)"


def test_expression(expression, directory, login, session_attributes=None):
    """Evaluate an expression for one user of a directory: a JSON-ready dict with ``ok`` and either ``values`` /
    ``deleted`` / ``attributes``, or ``error`` (a syntax error with its ``position``, user not found, directory
    failure), in plain words."""
    try:
        compiled = compile_expression(expression)
    except ExpressionSyntaxError as error:
        return {"ok": False, "error": str(error), "position": error.position}
    try:
        user = directories.find_user(directory, login_search_spec(directory), login)
    except directories.DirectoryError as error:
        return {"ok": False, "error": f"{directory.name}: {error.message}"}
    if user is None:
        return {"ok": False, "error": f"User “{login}” was not found in {directory.name}."}
    names = [ref.name for ref in compiled.references() if ref.store == "attr"]
    try:
        attributes = directories.attributes(directory, user, names) if names else {}
    except directories.DirectoryError as error:
        return {"ok": False, "error": f"{directory.name}: {error.message}"}
    result = compiled.evaluate(attributes, session_attributes or {})
    return {
        "ok": True,
        "user": user.login,
        "deleted": result.deleted,
        "values": [] if result.deleted else result.values,
        "attributes": attributes,
        "text": _result_text(user.login, result),
    }


def _result_text(login, result):
    if result.deleted:
        return f"For {login}: DELETE (the attribute is left out)."
    shown = ", ".join(f"“{value}”" for value in result.values)
    return f"For {login}: {shown}" + (f" ({len(result.values)} values)." if len(result.values) > 1 else ".")


def _wants_json(request):
    return "application/json" in request.headers.get("Accept", "") or request.POST.get("format") == "json"


@admin_view
@require_http_methods(["GET", "POST"])
def expression_test(request):
    """POST (CSRF): test an expression against a user of a directory. JSON for the wizard's fetch(); a small page of
    its own without JavaScript (GET shows the form, prefilled from the query string)."""
    names = list(UserDirectory.objects.order_by("name").values_list("name", flat=True))
    offered = [n for n in request.GET.getlist("directory") if n in names] or names
    if request.method == "GET":
        initial = {"expression": request.GET.get("expression", ""), "directory": offered[0] if offered else ""}
        form = ExpressionTestForm(initial=initial, directory_names=offered)
        return render(request, "partnerships/wizard_expression_test.html", {"form": form, "result": None})
    form = ExpressionTestForm(request.POST, directory_names=names)
    if not form.is_valid():
        if _wants_json(request):
            errors = {field: [str(e) for e in errs] for field, errs in form.errors.items()}
            first = next(iter(errors.values()))[0]
            return JsonResponse({"ok": False, "error": first, "fields": errors}, status=400)
        return render(request, "partnerships/wizard_expression_test.html", {"form": form, "result": None}, status=400)
    data = form.cleaned_data
    directory = UserDirectory.objects.get(name=data["directory"])
    result = test_expression(data["expression"], directory, data["user"], data["session_attributes"])
    if _wants_json(request):
        return JsonResponse(result)
    return render(request, "partnerships/wizard_expression_test.html", {"form": form, "result": result})


test_expression.__test__ = False  # not a pytest test, whatever its name
expression_test.__test__ = False
