"""The project's URLs plus a small wizard that is not about entities, to test federation.wizard as
the generic engine the partnership wizard will reuse: a conditional step, a table, StepErrors."""

from django import forms
from django.http import HttpResponse
from django.urls import path

from federation.urls import handler400, handler403, handler404, handler500, urlpatterns  # noqa: F401
from federation.wizard import Step, StepErrors, Table, Wizard

FINISHED = []


class WhoForm(forms.Form):
    name = forms.CharField(label="Name", help_text="Who travels.")
    kind = forms.ChoiceField(label="Kind", choices=[("solo", "Solo"), ("group", "Group")], help_text="Alone or not.")


class StopForm(forms.Form):
    city = forms.CharField(label="City", help_text="Where to stop.")
    nights = forms.IntegerField(label="Nights", min_value=1, required=False, help_text="How long.")


class GroupForm(forms.Form):
    size = forms.IntegerField(label="Group size", min_value=2, help_text="How many people.")


class RowsFormSet(forms.BaseFormSet):
    def initial_form_count(self):
        return 0 if self.is_bound else super().initial_form_count()


StopFormSet = forms.formset_factory(StopForm, formset=RowsFormSet, extra=1)


def is_group(wizard):
    who = wizard.cleaned("who")
    return who is not None and who.form["kind"] == "group"


class TripWizard(Wizard):
    namespace = "trip"
    title = "Plan a trip"
    steps = [
        Step("who", "Who", form_class=WhoForm),
        Step(
            "group",
            "Group",
            form_class=GroupForm,
            condition=is_group,
        ),
        Step("stops", "Stops", tables={"stops": Table(StopFormSet, "Stops", add_label="Add stop")}),
        Step("confirm", "Confirm", confirm=True),
    ]

    def step_url(self, step_name):
        return f"/trip/{self.token}/{step_name}/"

    def cancel_url(self):
        return "/"

    def done(self, data):
        if data["who"].form["name"] == "taken":
            raise StepErrors("who", fields={"name": ["This name is taken."]})
        cities = [row["city"] for row in data["stops"].rows["stops"]]
        if "Nowhere" in cities:
            raise StepErrors("stops", tables={"stops": {cities.index("Nowhere"): {"city": ["No such city."]}}})
        FINISHED.append(data)
        return HttpResponse("done")


urlpatterns = [
    *urlpatterns,
    path("trip/", lambda request: TripWizard.start(request)),
    path("trip/<str:token>/<slug:step>/", lambda request, token, step: TripWizard(request, token).dispatch(step)),
]
