from django.shortcuts import render

from federation.roles import console_view


@console_view
def entity_list(request):
    # Entities (local and remote, six types) are built on the keystore; until the first one is
    # defined the page explains what goes here.
    return render(request, "entities/entity_list.html", {})
