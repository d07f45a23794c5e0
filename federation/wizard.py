"""Multi-step console forms ("wizards") whose state lives in the session.

A wizard is a list of steps. Each step is a Django form plus optional tables (formsets), and the
last step is usually a Confirm page with one box per step, each with a Modify link. Everything
typed is kept in the session under a per-run token, so an administrator can go Back, Modify,
leave for another page and come back (a *detour*, e.g. to the keystore to generate a key) without
losing anything. Nothing is written until Finish, and abandoning a wizard writes nothing.

Works without JavaScript: every action (Next, Back, Modify, Add row, Remove row, Generate/Import
detours, Cancel, Finish) is a submit button named ``wizard_action`` or a plain link.

Using it
========

1. Subclass `Wizard`::

       class EntityCreateWizard(Wizard):
           namespace = "entity-create"                  # session key; one per kind of wizard
           title = "Create entity"
           steps = [
               Step("type", "Entity type", form_class=TypeForm),
               Step("configure", "Configure entity", form_class=ConfigureForm,
                    tables={"endpoints": Table(EndpointFormSet, "Endpoints", add_label="Add endpoint")},
                    detours={"signing-generate": Detour("Generate", "signing_key", reverse_lazy("keystore:generate"),
                                                        title="Generate a signing key pair")}),
               Step("confirm", "Confirm", confirm=True),
           ]

           def step_url(self, step_name):                # where a step lives (uses self.token)
               return reverse("entities:create_step", args=[self.token, step_name])

           def cancel_url(self):
               return reverse("entities:list")

           def get_form_kwargs(self, step):             # optional: depends on earlier steps
               kind = self.cleaned("type")               # that step's StepData (None if not valid)
               return {"entity_type": kind.form["entity_type"]} if kind else {}

           def done(self, data):                        # Finish: {step name: StepData}
               try:
                   entity = services.create_entity(...)
               except services.EntityError as exc:
                   raise StepErrors("configure", fields={...}, tables={...}) from None
               return redirect(entity)                   # the state is discarded after a response

2. Route two URLs to it (any view decorator, e.g. admin_view, does the permission check)::

       path("create/", lambda request: EntityCreateWizard.start(request)),          # new run → first step
       path("create/<str:token>/<slug:step>/", lambda r, token, step: EntityCreateWizard(r, token).dispatch(step)),

3. Templates: steps render `wizard/step.html` (or `Step.template_name` / `Wizard.template_name`,
   which usually extend it and fill ``{% block step_body %}``), Confirm renders
   `wizard/confirm.html`. Context: ``wizard``, ``step``, ``steps`` (with ``state``: done / current
   / todo), ``forms`` (a `StepForms`: ``forms.form``, ``forms.sections``, ``forms.table_list``),
   ``has_back``, ``can_return_to_confirm``, and on Confirm ``boxes`` (title, modify_url, rows,
   tables). Put ``{% include "wizard/_nav.html" %}`` inside the form for the buttons.

Hooks (all optional but `step_url`, `cancel_url` and `done`):

* `get_form_kwargs(step)`, `get_table_kwargs(step, prefix)`: constructor arguments, typically
  from earlier steps via ``self.cleaned(name)``; the view's keyword arguments are in ``self.kwargs``.
* `get_initial(step)`, `get_table_initial(step, prefix)`: prefill (e.g. an edit wizard).
* `validate_step(step, forms)`: checks across the form and its tables (e.g. run the service's
  validation), adding messages with ``forms.add_errors(fields, tables)``.
* `summarize(step, data)`: the rows and tables of the step's Confirm box (the default lists every
  visible field and table with choice labels).
* `get_context(step)`: more template context; `start_state()`: raw data to seed a new run.

Steps and tables can be conditional (``Step(condition=...)``, ``Table(condition=...)``, a callable
taking the wizard): e.g. a partnership's "Federation users" step only for an asserting party. A
form with a ``sections`` attribute (``[(title, [field names])]``) is shown in titled fieldsets.

Buttons (``wizard_action`` values): ``next``, ``back``, ``cancel``, ``finish`` (Confirm),
``goto:<step>`` ("Save and return to Confirm", offered once Confirm was shown), ``add:<table>``,
``remove:<table>:<row>``, ``detour:<key>``. Modify links on Confirm are plain links to the step.

Rules of the engine
-------------------
* Step data is stored raw (as posted), so a form is always rebuilt and re-validated from it: the
  Confirm page and Finish validate every step again (a key deleted meanwhile is caught), and a
  step whose data no longer fits (say, an earlier step changed the type) sends the user back to it.
* Back, Add row, Remove row and detours store what was typed without validating it; the step is
  shown again later with those values and without error messages until Next is pressed.
* Detours: a `Detour` button saves the step and redirects to ``Detour.url?next=<step URL with
  wizard_return=<key>>``. The page there (e.g. keystore Generate) redirects back to ``next`` with
  ``created=<value>`` added; the value is put into the step's ``Detour.field`` and the step shown.
  Such pages must accept only a local ``next`` (see `safe_next_url` / `append_query`).
* One run per token; a session holds at most `max_runs` of each wizard (the oldest is dropped).
* File uploads are not supported in steps (the session holds text only); use a detour instead.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.contrib import messages
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.forms.utils import ErrorDict
from django.http import Http404, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

ACTION = "wizard_action"
RETURN_PARAM = "wizard_return"
CREATED_PARAM = "created"
NEXT_PARAM = "next"
CHECK_PARAM = "check"
MAX_TABLE_ROWS = 100
_RESERVED = re.compile(r"^(csrfmiddlewaretoken|wizard_.*)$")


# ---------------------------------------------------------------- declarations


@dataclass
class Detour:
    """A button next to a field that leaves the wizard for another page and comes back with a value.

    `url` is a string (or lazy string, or a callable taking the wizard) of the page to visit;
    `field` is the name of the input (in the step's posted data) that receives the ``created``
    value it sends back; `title` is the accessible name (e.g. "Generate a signing key pair")."""

    label: str
    field: str
    url: str | Callable
    title: str = ""


@dataclass
class Table:
    """A formset shown as an editable table with Add row / Remove buttons."""

    formset_class: type
    title: str
    help: str = ""
    add_label: str = "Add row"
    condition: Callable | None = None


@dataclass
class Step:
    """One page of a wizard: `name` (URL slug and session key), `title`, an optional `form_class`,
    `tables` ({formset prefix: Table}), `detours` ({key: Detour}), an optional `template_name`,
    `help` (shown under the title), `condition` (callable taking the wizard; the step is skipped
    while it returns False) and `confirm` (the Confirm page, which has no form)."""

    name: str
    title: str
    form_class: type | None = None
    tables: dict[str, Table] = field(default_factory=dict)
    detours: dict[str, Detour] = field(default_factory=dict)
    template_name: str | None = None
    help: str = ""
    condition: Callable | None = None
    confirm: bool = False


@dataclass
class StepData:
    """The cleaned values of one valid step: `form` (cleaned_data of the step form) and `rows`
    ({table prefix: [cleaned_data of each row that was filled in]})."""

    form: dict
    rows: dict[str, list[dict]]


@dataclass
class SummaryTable:
    title: str
    headers: list[str]
    rows: list[list[str]]


class StepErrors(Exception):
    """Raised by `done()` (or `validate_step`) to send the user back to a step with messages.

    `fields`: {field name or None: [messages]}; `tables`: {prefix: {row or None: {field or None: [messages]}}}
    where row counts the filled-in rows of the table from 0 (as in `StepData.rows`)."""

    def __init__(self, step, fields=None, tables=None):
        super().__init__(step)
        self.step = step
        self.fields = fields or {}
        self.tables = tables or {}


# ---------------------------------------------------------------- forms of one step


class StepForms:
    """The form and tables of one step, bound to stored data or unbound with initial values."""

    def __init__(self, step, form, tables, specs):
        self.step = step
        self.form = form
        self.tables = tables  # {prefix: formset}
        self.specs = specs  # {prefix: Table}
        self.table_errors = {prefix: [] for prefix in tables}
        self.detours = {}  # field name -> [(key, Detour)]
        for key, detour in step.detours.items():
            self.detours.setdefault(detour.field, []).append((key, detour))

    def is_valid(self):
        valid = self.form.is_valid() if self.form is not None else True
        for formset in self.tables.values():
            valid = formset.is_valid() and valid
        return valid and not any(self.table_errors.values())

    def kept_rows(self, prefix):
        """[(index in the formset, form)] of the rows that were filled in (blank extra rows are skipped)."""
        formset = self.tables[prefix]
        rows = []
        for index, form in enumerate(formset.forms):
            if getattr(formset, "can_delete", False) and formset._should_delete_form(form):
                continue
            if form.has_changed() or not form.empty_permitted:
                rows.append((index, form))
        return rows

    def data(self):
        form = dict(self.form.cleaned_data) if self.form is not None else {}
        rows = {prefix: [dict(form.cleaned_data) for _, form in self.kept_rows(prefix)] for prefix in self.tables}
        return StepData(form, rows)

    def add_errors(self, fields=None, tables=None):
        """Show messages at fields of the step form ({field or None: [...]}) and of table rows
        ({prefix: {row: {field: [...]}}}, row = position among the filled-in rows; row None = the
        whole table). Fields the form does not have go above it."""
        for name, msgs in (fields or {}).items():
            for message in msgs:
                if self.form is None:
                    raise ImproperlyConfigured(f"Step {self.step.name} has no form for the message {message!r}")
                self.form.add_error(name if name in self.form.fields else None, message)
        for prefix, rows in (tables or {}).items():
            if prefix not in self.tables:
                for message in _flatten(rows):
                    self.form.add_error(None, message)
                continue
            kept = self.kept_rows(prefix)
            for row, row_fields in rows.items():
                if row is None or row >= len(kept):
                    self.table_errors[prefix].extend(_flatten(row_fields))
                    continue
                form = kept[row][1]
                for name, msgs in row_fields.items():
                    for message in msgs:
                        form.add_error(name if name in form.fields else None, message)

    def quiet(self):
        """Show the values without error messages (data stored by Back, Add row or a detour).

        Marks the bound forms as already cleaned with no errors (Django's `_errors` and the
        formset's `_non_form_errors`), so rendering does not validate them; only for display."""
        if self.form is not None:
            self.form._errors = ErrorDict()
        for formset in self.tables.values():
            for form in formset.forms:
                form._errors = ErrorDict()
            formset._errors = [ErrorDict() for _ in formset.forms]
            formset._non_form_errors = formset.error_class()

    # -- rendering helpers

    @property
    def sections(self):
        """[(title, [(bound field, [(detour key, Detour)])])] of the visible fields: the form's
        `sections` attribute ([(title, [field names])]) when it has one, else one untitled section."""
        if self.form is None:
            return []
        groups = getattr(self.form, "sections", None) or [("", [bf.name for bf in self.form.visible_fields()])]
        result = []
        for title, names in groups:
            fields = [(self.form[name], self.detours.get(name, [])) for name in names if name in self.form.fields]
            if fields:
                result.append((title, fields))
        return result

    @property
    def table_list(self):
        """[(prefix, Table, formset, table-level messages)] in declaration order."""
        return [(prefix, self.specs[prefix], formset, self.table_errors[prefix]) for prefix, formset in self.tables.items()]


def _flatten(value):
    if isinstance(value, dict):
        return [message for inner in value.values() for message in _flatten(inner)]
    if isinstance(value, (list, tuple)):
        return [message for inner in value for message in _flatten(inner)]
    return [str(value)]


# ---------------------------------------------------------------- URL helpers for detour pages


def safe_next_url(request, value=None):
    """The request's ``next`` (GET or POST) when it is a URL on this site, else None."""
    value = value if value is not None else (request.POST.get(NEXT_PARAM) or request.GET.get(NEXT_PARAM))
    if value and url_has_allowed_host_and_scheme(value, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return value
    return None


def append_query(url, **params):
    """`url` with these query parameters added (or replaced)."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key not in params]
    query += [(key, str(value)) for key, value in params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


# ---------------------------------------------------------------- the engine


class Wizard:
    namespace = ""
    title = ""
    steps: list[Step] = []
    template_name = "wizard/step.html"
    confirm_template_name = "wizard/confirm.html"
    finish_label = "Finish"
    max_runs = 10

    def __init__(self, request, token, **kwargs):
        self.request = request
        self.token = token
        self.kwargs = kwargs  # what the view passed (e.g. the object an edit wizard changes)
        self._cleaned = {}
        if not self.namespace:
            raise ImproperlyConfigured(f"{type(self).__name__} needs a namespace")

    # -- required hooks

    def step_url(self, step_name):
        raise NotImplementedError

    def cancel_url(self):
        raise NotImplementedError

    def done(self, data):
        """Finish: `data` is {step name: StepData} of every active step; return a response."""
        raise NotImplementedError

    # -- optional hooks

    def start_state(self):
        """Raw data to seed a new run with: {step name: {input name: [values]}} (default none)."""
        return {}

    def get_form_kwargs(self, step):
        return {}

    def get_table_kwargs(self, step, prefix):
        return {}

    def get_initial(self, step):
        return None

    def get_table_initial(self, step, prefix):
        return None

    def validate_step(self, step, forms):
        """Checks across the form and tables of a step whose fields are each valid; add errors with
        forms.add_errors() (or raise StepErrors for this step)."""

    def summarize(self, step, data):
        """(rows, tables) of the step's Confirm box: rows [(label, text)], tables [SummaryTable]."""
        forms = self.forms(step, self._stored_data(step))
        rows = []
        if forms.form is not None:
            for name, form_field in forms.form.fields.items():
                if forms.form[name].is_hidden:
                    continue
                rows.append((str(form_field.label or name), display_value(form_field, data.form.get(name))))
        tables = []
        for prefix, spec, formset, _ in forms.table_list:
            fields = formset.empty_form.fields
            names = [name for name in fields if not formset.empty_form[name].is_hidden and name != "DELETE"]
            tables.append(
                SummaryTable(
                    spec.title,
                    [str(fields[name].label or name) for name in names],
                    [[display_value(fields[name], row.get(name)) for name in names] for row in data.rows.get(prefix, [])],
                )
            )
        return rows, tables

    def get_context(self, step):
        return {}

    # -- state in the session

    @property
    def _session_key(self):
        return f"wizard:{self.namespace}"

    def _runs(self):
        return self.request.session.get(self._session_key, {})

    @property
    def state(self):
        return self._runs().get(self.token)

    def _save_state(self, state):
        runs = dict(self._runs())
        state["touched"] = datetime.now(UTC).isoformat()
        runs[self.token] = state
        if len(runs) > self.max_runs:
            for token in sorted(runs, key=lambda t: runs[t].get("touched", ""))[: len(runs) - self.max_runs]:
                runs.pop(token)
        self.request.session[self._session_key] = runs
        self._cleaned = {}

    def discard(self):
        runs = dict(self._runs())
        runs.pop(self.token, None)
        self.request.session[self._session_key] = runs

    def _stored(self, step):
        return (self.state or {}).get("steps", {}).get(step.name)

    def _stored_data(self, step):
        stored = self._stored(step)
        return _querydict(stored["data"]) if stored else None

    def _store(self, step, raw, valid):
        state = dict(self.state or {"steps": {}})
        steps = dict(state.get("steps", {}))
        steps[step.name] = {"data": raw, "valid": bool(valid)}
        state["steps"] = steps
        self._save_state(state)

    @classmethod
    def start(cls, request, **kwargs):
        """Begin a new run and redirect to its first step."""
        wizard = cls(request, secrets.token_urlsafe(9), **kwargs)
        seed = wizard.start_state()
        wizard._save_state({"steps": {name: {"data": data, "valid": False} for name, data in seed.items()}})
        return HttpResponseRedirect(wizard.step_url(wizard.active_steps()[0].name))

    # -- steps

    def active_steps(self):
        return [step for step in self.steps if step.condition is None or step.condition(self)]

    def get_step(self, name):
        for step in self.active_steps():
            if step.name == name:
                return step
        return None

    def _neighbour(self, step, offset):
        active = self.active_steps()
        names = [s.name for s in active]
        position = names.index(step.name) + offset
        return active[position] if 0 <= position < len(active) else None

    def _confirm_step(self):
        return next((step for step in self.active_steps() if step.confirm), None)

    def forms(self, step, data=None):
        """The StepForms of `step`, bound to `data` (a QueryDict) or unbound with initial values."""
        form = None
        if step.form_class is not None:
            kwargs = dict(self.get_form_kwargs(step))
            if data is None:
                kwargs.setdefault("initial", self.get_initial(step))
            form = step.form_class(data=data, **kwargs)
        tables, specs = {}, {}
        for prefix, spec in step.tables.items():
            if spec.condition is not None and not spec.condition(self):
                continue
            kwargs = dict(self.get_table_kwargs(step, prefix))
            if data is not None and f"{prefix}-TOTAL_FORMS" not in data:
                # Stored before this table applied (an earlier step changed): start it with blank rows.
                data = data.copy()
                data[f"{prefix}-TOTAL_FORMS"] = str(getattr(spec.formset_class, "extra", 1))
                data[f"{prefix}-INITIAL_FORMS"] = "0"
            if data is None:
                initial = self.get_table_initial(step, prefix)
                if initial is not None:
                    kwargs.setdefault("initial", initial)
            tables[prefix] = spec.formset_class(data=data, prefix=prefix, **kwargs)
            specs[prefix] = spec
        return StepForms(step, form, tables, specs)

    def _validated(self, step, data):
        forms = self.forms(step, data)
        if forms.is_valid():
            try:
                self.validate_step(step, forms)
            except StepErrors as exc:
                forms.add_errors(exc.fields, exc.tables)
        return forms

    def cleaned(self, step_name):
        """StepData of an earlier step whose stored data is valid, else None."""
        if step_name not in self._cleaned:
            step = next((s for s in self.steps if s.name == step_name), None)
            data = self._stored_data(step) if step else None
            result = None
            if data is not None:
                forms = self._validated(step, data)
                result = forms.data() if forms.is_valid() else None
            self._cleaned[step_name] = result
        return self._cleaned[step_name]

    # -- request handling

    def dispatch(self, step_name):
        if self.state is None:
            messages.warning(self.request, "That wizard was finished, cancelled or has expired; nothing was saved from it.")
            return HttpResponseRedirect(self.cancel_url())
        step = self.get_step(step_name)
        if step is None:
            raise Http404("No such step in this wizard.")
        cancelling = self.request.method == "POST" and self.request.POST.get(ACTION) == "cancel"
        invalid = None if cancelling else self._first_invalid(step)
        if invalid is not None:
            # A step is reached only through valid earlier steps (its form may depend on them).
            return self._send_back(invalid)
        if self.request.method == "POST":
            return self._post(step)
        if RETURN_PARAM in self.request.GET:
            return self._detour_return(step)
        if step.confirm:
            return self._confirm(step)
        return self._render_step(step, self._forms_for_display(step))

    def _forms_for_display(self, step):
        stored = self._stored(step)
        if stored is None:
            return self.forms(step)
        if stored["valid"] or CHECK_PARAM in self.request.GET:
            return self._validated(step, _querydict(stored["data"]))
        forms = self.forms(step, _querydict(stored["data"]))
        forms.quiet()
        return forms

    def _render_step(self, step, forms, status=200):
        active = self.active_steps()
        current = [s.name for s in active].index(step.name)
        confirm = self._confirm_step()
        context = {
            "wizard": self,
            "step": step,
            "step_number": current + 1,
            "step_count": len(active),
            "steps": self._step_states(active, current),
            "forms": forms,
            "form": forms.form,
            "action_url": self.step_url(step.name),
            "cancel_url": self.cancel_url(),
            "has_back": current > 0,
            "can_return_to_confirm": bool(confirm and confirm is not step and (self.state or {}).get("confirm_seen")),
            "confirm_step": confirm,
        }
        context.update(self.get_context(step))
        return render(self.request, step.template_name or self.template_name, context, status=status)

    def _step_states(self, active, current):
        return [
            {"name": s.name, "title": s.title, "state": "done" if i < current else ("current" if i == current else "todo")}
            for i, s in enumerate(active)
        ]

    def _raw_post(self):
        return {key: values for key, values in self.request.POST.lists() if not _RESERVED.match(key)}

    def _post(self, step):
        action = self.request.POST.get(ACTION, "next")
        if action == "cancel":
            self.discard()
            messages.info(self.request, "Cancelled; nothing was saved.")
            return HttpResponseRedirect(self.cancel_url())
        if step.confirm:
            return self._post_confirm(step, action)
        raw = self._raw_post()
        if action == "back":
            previous = self._neighbour(step, -1)
            self._store(step, raw, self._validated(step, _querydict(raw)).is_valid())
            return HttpResponseRedirect(self.step_url((previous or step).name))
        if action.startswith("add:"):
            return self._add_row(step, raw, action[4:])
        if action.startswith("remove:"):
            return self._remove_row(step, raw, action[7:])
        if action.startswith("detour:"):
            return self._detour(step, raw, action[7:])
        if action == "next" or action.startswith("goto:"):
            forms = self._validated(step, _querydict(raw))
            if not forms.is_valid():
                self._store(step, raw, False)
                return self._render_step(step, forms)
            self._store(step, raw, True)
            target = self.get_step(action[5:]) if action.startswith("goto:") else self._neighbour(step, 1)
            return HttpResponseRedirect(self.step_url((target or step).name))
        raise Http404("Unknown wizard action.")

    def _add_row(self, step, raw, prefix):
        if prefix not in step.tables:
            raise Http404("No such table.")
        key = f"{prefix}-TOTAL_FORMS"
        total = _int(raw.get(key, ["0"])[0])
        if total >= MAX_TABLE_ROWS:
            messages.error(self.request, f"A table holds at most {MAX_TABLE_ROWS} rows.")
        else:
            raw[key] = [str(total + 1)]
        self._store(step, raw, False)
        return HttpResponseRedirect(self.step_url(step.name) + f"#table-{prefix}")

    def _remove_row(self, step, raw, target):
        prefix, _, row = target.rpartition(":")
        if prefix not in step.tables or not row.isdigit():
            raise Http404("No such row.")
        self._store(step, remove_row(raw, prefix, int(row)), False)
        return HttpResponseRedirect(self.step_url(step.name) + f"#table-{prefix}")

    def _detour(self, step, raw, key):
        detour = step.detours.get(key)
        if detour is None:
            raise Http404("No such detour.")
        self._store(step, raw, False)
        back = append_query(self.step_url(step.name), **{RETURN_PARAM: key})
        url = detour.url(self) if callable(detour.url) else str(detour.url)
        return HttpResponseRedirect(append_query(url, **{NEXT_PARAM: back}))

    def _detour_return(self, step):
        detour = step.detours.get(self.request.GET.get(RETURN_PARAM, ""))
        value = self.request.GET.get(CREATED_PARAM, "")
        if detour is not None and value:
            stored = self._stored(step)
            raw = dict(stored["data"]) if stored else {}
            raw[detour.field] = [value]
            self._store(step, raw, False)
        return HttpResponseRedirect(self.step_url(step.name))

    # -- confirm and finish

    def _first_invalid(self, upto):
        for step in self.active_steps():
            if step is upto or step.confirm:
                return None
            if self.cleaned(step.name) is None:
                return step
        return None

    def _send_back(self, step):
        messages.error(self.request, f"Please check the step “{step.title}”.")
        return HttpResponseRedirect(append_query(self.step_url(step.name), **{CHECK_PARAM: "1"}))

    def _confirm(self, step):
        invalid = self._first_invalid(step)
        if invalid is not None:
            return self._send_back(invalid)
        state = dict(self.state)
        if not state.get("confirm_seen"):
            state["confirm_seen"] = True
            self._save_state(state)
        boxes = []
        for other in self.active_steps():
            if other.confirm:
                continue
            rows, tables = self.summarize(other, self.cleaned(other.name))
            boxes.append(
                {"step": other, "title": other.title, "modify_url": self.step_url(other.name), "rows": rows, "tables": tables}
            )
        active = self.active_steps()
        current = [s.name for s in active].index(step.name)
        context = {
            "wizard": self,
            "step": step,
            "step_number": current + 1,
            "step_count": len(active),
            "steps": self._step_states(active, current),
            "boxes": boxes,
            "action_url": self.step_url(step.name),
            "cancel_url": self.cancel_url(),
            "has_back": current > 0,
            "finish_label": self.finish_label,
        }
        context.update(self.get_context(step))
        return render(self.request, step.template_name or self.confirm_template_name, context)

    def _post_confirm(self, step, action):
        if action == "back":
            previous = self._neighbour(step, -1)
            return HttpResponseRedirect(self.step_url((previous or step).name))
        if action != "finish":
            raise Http404("Unknown wizard action.")
        invalid = self._first_invalid(step)
        if invalid is not None:
            return self._send_back(invalid)
        data = {s.name: self.cleaned(s.name) for s in self.active_steps() if not s.confirm}
        try:
            response = self.done(data)
        except StepErrors as exc:
            target = self.get_step(exc.step)
            if target is None:
                raise
            stored = self._stored(target)
            forms = self._validated(target, _querydict(stored["data"]) if stored else QueryDict())
            forms.add_errors(exc.fields, exc.tables)
            if stored:
                self._store(target, stored["data"], False)
            return self._render_step(target, forms)
        self.discard()
        return response


# ---------------------------------------------------------------- helpers


def _querydict(raw):
    data = QueryDict(mutable=True)
    for key, values in (raw or {}).items():
        data.setlist(key, list(values))
    return data


def _int(value):
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def remove_row(raw, prefix, row):
    """Raw formset data without row `row` (later rows move up one)."""
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)-(.*)$")
    result = {}
    for key, values in raw.items():
        match = pattern.match(key)
        if not match:
            result[key] = values
            continue
        index = int(match[1])
        if index == row:
            continue
        result[f"{prefix}-{index - 1 if index > row else index}-{match[2]}"] = values
    total_key = f"{prefix}-TOTAL_FORMS"
    total = _int(raw.get(total_key, ["0"])[0])
    result[total_key] = [str(max(0, total - 1))]
    initial_key = f"{prefix}-INITIAL_FORMS"
    if initial_key in raw and row < _int(raw[initial_key][0]):
        result[initial_key] = [str(max(0, _int(raw[initial_key][0]) - 1))]
    return result


def display_value(form_field, value):
    """A cleaned value as Confirm-page text (choice labels, yes/no, '—' for empty)."""
    if value is None or value == "" or value == [] or value == ():
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(value, models.QuerySet):
        return ", ".join(str(item) for item in value) or "—"
    choices = dict(_flat_choices(getattr(form_field, "choices", None) or []))
    if isinstance(value, (list, tuple, set)):
        return ", ".join(str(choices.get(item, item)) for item in value)
    return str(choices.get(value, value))


def _flat_choices(choices):
    for key, label in choices:
        if isinstance(label, (list, tuple)):
            yield from _flat_choices(label)
        else:
            yield key, label
