"""Forms of the authentication context template pages. The row table is read by `read_rows` (plain POST
fields, so it works without JavaScript); the rules and messages live in partnerships.authn_context."""

from django import forms

from partnerships.models import AuthnContextTemplate

ROW_FIELDS = ("uri", "grouped", "max_level")
MAX_POSTED_ROWS = 500  # more than the template limit, so the limit's own message is shown


class AuthnContextTemplateForm(forms.Form):
    name = forms.CharField(
        max_length=AuthnContextTemplate._meta.get_field("name").max_length,
        help_text=AuthnContextTemplate._meta.get_field("name").help_text,
    )
    description = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=AuthnContextTemplate._meta.get_field("description").help_text,
    )
    protection_levels = forms.BooleanField(
        required=False,
        label="Enable protection levels",
        help_text=AuthnContextTemplate._meta.get_field("protection_levels").help_text
        + " Click “Update preview” after changing this to show or hide the level column.",
    )


class TemplateFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Search", help_text="Part of the name, the description or a URI.")


def read_rows(data):
    """The rows as posted: [{uri, grouped, max_level}] in table order (strongest first)."""
    try:
        count = int(data.get("row_count", 0))
    except (TypeError, ValueError):
        count = 0
    count = max(0, min(count, MAX_POSTED_ROWS))
    rows = []
    for index in range(count):
        rows.append(
            {
                "uri": data.get(f"row-{index}-uri", "").strip(),
                "grouped": data.get(f"row-{index}-grouped") == "on",
                "max_level": data.get(f"row-{index}-max_level", "").strip(),
            }
        )
    return rows
