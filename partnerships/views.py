from django.shortcuts import render

from federation.roles import console_view


@console_view
def partnership_list(request):
    return render(request, "partnerships/partnership_list.html", {})
