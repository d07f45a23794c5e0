"""Console pages of authentication context templates: list, view, create, edit, delete.

The editor is one form: template fields, then the rows (strongest first) with Up/Down/Remove buttons, an
"Add URI" box and "Load default URIs". Every button is a plain submit (``action``), so it all works without
JavaScript; the page is redrawn with what was typed plus the computed strengths and protection-level ranges.
Rules and messages come from partnerships.authn_context via authn_context_services."""

from django.contrib import messages
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from federation.roles import admin_view, console_view
from federation.views.console import paginate
from partnerships import authn_context, authn_context_services
from partnerships.authn_context_forms import AuthnContextTemplateForm, TemplateFilterForm, read_rows
from partnerships.authn_context_services import AuthnContextTemplateError
from partnerships.models import AuthnContextTemplate


def _compiled(template):
    try:
        return template.compiled()
    except authn_context.TemplateError:
        return None


@console_view
@require_GET
def template_list(request):
    filters = TemplateFilterForm(request.GET or None)
    q = filters.cleaned_data["q"].strip() if filters.is_valid() else ""
    templates = AuthnContextTemplate.objects.all()
    if q:
        # entries is JSON; a text search over it finds URIs on SQLite and PostgreSQL alike.
        templates = templates.filter(Q(name__icontains=q) | Q(description__icontains=q) | Q(entries__icontains=q))
    page, query = paginate(request, templates.order_by("name"))
    rows = [(template, _compiled(template)) for template in page]
    return render(
        request,
        "partnerships/authn_context_list.html",
        {"filters": filters, "page": page, "rows": rows, "query": query, "total": AuthnContextTemplate.objects.count()},
    )


@console_view
@require_GET
def template_detail(request, pk):
    template = get_object_or_404(AuthnContextTemplate, pk=pk)
    return render(
        request,
        "partnerships/authn_context_detail.html",
        {"template": template, "compiled": _compiled(template), "comparisons": authn_context.COMPARISON_HELP.items()},
    )


def _apply_row_action(action, rows, new_uri, notes, action_errors):
    """Change `rows` in place for an editing button; returns the text typed in "Add URI" to keep (if any)."""
    if action == "add":
        uri = new_uri.strip()
        if not uri:
            action_errors.append("Type a class URI to add (or pick one from the suggestions).")
            return new_uri
        if any(row["uri"] == uri for row in rows):
            action_errors.append(f"{authn_context.short_name(uri)} is already in the list.")
            return new_uri
        rows.append({"uri": uri, "grouped": False, "max_level": ""})
        return ""
    if action == "load_defaults":
        present = {row["uri"] for row in rows}
        missing = [uri for uri in authn_context.DEFAULT_CLASS_URIS if uri not in present]
        rows.extend({"uri": uri, "grouped": False, "max_level": ""} for uri in missing)
        notes.append(
            f"Loaded {len(missing)} default URI{'s' if len(missing) != 1 else ''}. Put them in order, strongest at the "
            "top, and remove the ones your partners do not use."
            if missing
            else "Every default URI is already in the list."
        )
        return new_uri
    verb, _, index = action.partition(":")
    if verb not in ("up", "down", "remove") or not index.isdigit() or int(index) >= len(rows):
        return new_uri
    index = int(index)
    if verb == "remove":
        removed = rows.pop(index)
        if index == 0 and rows:
            rows[0]["grouped"] = False  # the new top row has nothing above to share a strength with
        notes.append(f"Removed {authn_context.short_name(removed['uri']) or 'an empty row'}.")
    elif verb == "up" and index > 0:
        rows[index - 1], rows[index] = rows[index], rows[index - 1]
    elif verb == "down" and index + 1 < len(rows):
        rows[index + 1], rows[index] = rows[index], rows[index + 1]
    if rows:
        rows[0]["grouped"] = False
    return new_uri


def _editor(request, template=None):
    """Create (template None) or edit."""
    notes, action_errors, row_errors = [], [], {}
    new_uri = ""
    preview = None
    if request.method == "POST":
        form = AuthnContextTemplateForm(request.POST)
        rows = read_rows(request.POST)
        action = request.POST.get("action", "save")
        new_uri = request.POST.get("new_uri", "")
        form.is_valid()  # cleaned_data for the checkbox and the name
        levels = bool(form.cleaned_data.get("protection_levels"))
        if action == "save":
            values = {
                "name": request.POST.get("name", ""),
                "description": request.POST.get("description", ""),
                "protection_levels": levels,
                "entries": rows,
            }
            try:
                if template is None:
                    saved = authn_context_services.create_template(values.pop("name"), **values)
                    messages.success(request, f"Created the authentication context template “{saved.name}”.")
                else:
                    saved = authn_context_services.update_template(template, **values)
                    messages.success(request, f"Saved the authentication context template “{saved.name}”.")
            except AuthnContextTemplateError as exc:
                for problem in exc.problems:
                    if problem.row is not None:
                        row_errors.setdefault(problem.row, {}).setdefault(problem.field, []).append(problem.message)
                    elif problem.field in form.fields:
                        if problem.field not in form.errors:  # "This field is required." already says it
                            form.add_error(problem.field, problem.message)
                    else:
                        form.add_error(None, problem.message)
            else:
                return redirect("partnerships:authn_context_detail", pk=saved.pk)
        elif action == "preview":
            _, problems = authn_context.validate_entries(rows, levels)
            for problem in problems:
                if problem.row is not None:
                    row_errors.setdefault(problem.row, {}).setdefault(problem.field, []).append(problem.message)
                else:
                    action_errors.append(problem.message)
        else:
            new_uri = _apply_row_action(action, rows, new_uri, notes, action_errors)
        status = 400 if (row_errors or form.errors or action_errors) and action in ("save", "preview") else 200
    else:
        status = 200
        if template is None:
            form = AuthnContextTemplateForm()
            rows, levels = [], False
        else:
            form = AuthnContextTemplateForm(
                initial={
                    "name": template.name,
                    "description": template.description,
                    "protection_levels": template.protection_levels,
                }
            )
            rows, levels = (
                [dict(row, max_level=row.get("max_level") or "") for row in template.entries],
                template.protection_levels,
            )
    try:
        preview = authn_context.build_template(rows, levels) if rows else None
    except authn_context.TemplateError:
        preview = None
    table = []
    for index, row in enumerate(rows):
        table.append(
            {
                "index": index,
                "uri": row["uri"],
                "grouped": row["grouped"],
                "max_level": "" if row.get("max_level") is None else row["max_level"],
                "errors": row_errors.get(index, {}),
                "computed": preview.rows[index] if preview else None,
            }
        )
    return render(
        request,
        "partnerships/authn_context_form.html",
        {
            "template": template,
            "form": form,
            "table": table,
            "row_count": len(rows),
            "levels": levels,
            "preview": preview,
            "notes": notes,
            "action_errors": action_errors,
            "new_uri": new_uri,
            "default_uris": authn_context.DEFAULT_CLASS_URIS,
        },
        status=status,
    )


@admin_view
@require_http_methods(["GET", "POST"])
def template_create(request):
    return _editor(request)


@admin_view
@require_http_methods(["GET", "POST"])
def template_edit(request, pk):
    return _editor(request, get_object_or_404(AuthnContextTemplate, pk=pk))


@admin_view
@require_http_methods(["GET", "POST"])
def template_delete(request, pk):
    template = get_object_or_404(AuthnContextTemplate, pk=pk)
    error = None
    if request.method == "POST":
        name = template.name
        try:
            authn_context_services.delete_template(template)
        except AuthnContextTemplateError as exc:
            error = str(exc)
        else:
            messages.success(request, f"Deleted the authentication context template “{name}”.")
            return redirect("partnerships:authn_context_list")
    return render(
        request,
        "partnerships/authn_context_delete.html",
        {"template": template, "blockers": authn_context_services.deletion_blockers(template), "error": error},
        status=409 if error else 200,
    )
