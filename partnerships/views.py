"""Partnership console pages: list, view, and the lifecycle actions (activate, deactivate, get updates, delete),
each confirmed on a page of its own. Thin views over partnerships.services; the wizard lives in
partnerships.wizard_views."""

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from federation.roles import admin_view, console_view
from federation.views.console import paginate
from partnerships import catalog, services
from partnerships.models import Partnership, PartnershipState
from partnerships.services import PartnershipError


class PartnershipFilterForm(forms.Form):
    q = forms.CharField(label="Search", required=False, help_text="Part of the name, description or an entity ID.")
    state = forms.ChoiceField(label="State", required=False, choices=[("", "Any state")] + PartnershipState.choices)
    kind = forms.ChoiceField(label="Type", required=False, choices=())
    entity = forms.CharField(label="Entity", required=False, help_text="Exact entity name, local or remote.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [("", "Any type")] + [(k.key, k.label) for k in catalog.KINDS.values()]


@console_view
@require_GET
def partnership_list(request):
    filters = PartnershipFilterForm(request.GET or None)
    values = filters.cleaned_data if filters.is_valid() else {}
    queryset = services.with_update_flag(
        services.partnership_queryset(
            state=values.get("state", ""),
            kind=values.get("kind", ""),
            entity=values.get("entity", ""),
            search=values.get("q", ""),
        )
    )
    page, query = paginate(request, queryset)
    return render(
        request,
        "partnerships/partnership_list.html",
        {"filters": filters, "page": page, "query": query, "total": Partnership.objects.count(), "kinds": catalog.KINDS},
    )


def _get(pk):
    return get_object_or_404(Partnership.objects.select_related("local_entity", "remote_entity"), pk=pk)


@console_view
@require_GET
def partnership_detail(request, pk):
    partnership = _get(pk)
    return render(
        request,
        "partnerships/partnership_detail.html",
        {
            "partnership": partnership,
            "kind": partnership.kind_info,
            "boxes": settings_boxes(partnership),
            "directories": services.directory_names(partnership),
            "problems": services.stored_problems(partnership),
            "entity_changes": services.entity_changes(partnership),
            "snapshot": partnership.current_snapshot(),
            "snapshots": partnership.snapshots.all()[:10],
        },
    )


def settings_boxes(partnership):
    """One box per wizard step: (title, [(label, value)], [(table label, columns, rows)]) of what applies."""
    boxes = []
    for step in catalog.steps_for(partnership.kind):
        values = (partnership.settings or {}).get(step.key) or {}
        rows = []
        for setting in catalog.settings_for(partnership.kind, step.key):
            if not catalog.visible(setting, values):
                continue
            rows.append((setting.label, display_value(setting, values.get(setting.key))))
        tables = []
        for table in catalog.tables_for(partnership.kind, step.key):
            if not catalog.visible(table, values):
                continue
            table_rows = [[display_value(c, row.get(c.key)) for c in table.columns] for row in values.get(table.key) or []]
            tables.append((table.label, [c.label for c in table.columns], table_rows))
        boxes.append({"key": step.key, "title": step.title, "rows": rows, "tables": tables})
    return boxes


def display_value(setting, value):
    if setting.type == "password":
        return "set" if value else "not set"
    if setting.type == "bool":
        return "Yes" if value else "No"
    if value in (None, "", []):
        return "—"
    labels = dict(setting.choices)
    if setting.type == "multichoice" and isinstance(value, (list, tuple)):
        return ", ".join(str(labels.get(v, v)) for v in value)
    return str(labels.get(value, value))


ACTIONS = {
    "activate": ("Activate", services.activate, "Activated"),
    "deactivate": ("Deactivate", services.deactivate, "Deactivated"),
    "get-updates": ("Get updates", services.get_updates, "Copied the entity updates into"),
}


@admin_view
@require_http_methods(["GET", "POST"])
def partnership_action(request, pk, action):
    """Activate / Deactivate / Get updates: a Yes/No confirmation page, then the action."""
    partnership = _get(pk)
    if action not in ACTIONS:
        return redirect(partnership)
    title, perform, done = ACTIONS[action]
    problems = []
    if request.method == "POST":
        try:
            perform(partnership)
        except PartnershipError as error:
            problems = error.problems
        else:
            messages.success(request, f"{done} partnership “{partnership.name}”.")
            if request.POST.get("then") == "edit":
                return redirect("partnerships:edit", pk=partnership.pk)
            return redirect(partnership)
    return render(
        request,
        "partnerships/partnership_action.html",
        {
            "partnership": partnership,
            "action": action,
            "title": title,
            "problems": problems,
            "then": request.GET.get("then", ""),
            "entity_changes": services.entity_changes(partnership) if action == "get-updates" else [],
            "preview_problems": services.activation_problems(partnership) if action == "activate" and not problems else [],
        },
        status=409 if problems else 200,
    )


@admin_view
@require_http_methods(["GET", "POST"])
def partnership_delete(request, pk):
    partnership = _get(pk)
    error = None
    if request.method == "POST":
        name = partnership.name
        try:
            services.delete_partnership(partnership)
        except PartnershipError as exc:
            error = str(exc)
        else:
            messages.success(request, f"Deleted partnership “{name}”.")
            return redirect("partnerships:list")
    return render(
        request,
        "partnerships/partnership_delete.html",
        {"partnership": partnership, "error": error},
        status=409 if error else 200,
    )
