"""Console pages for user directories: list, create/edit/delete LDAP directories, "test connection /
view contents", and the embedded directory's users (list, create, edit groups and attributes)."""

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, ProtectedError, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render

from federation import audit, directories
from federation.directory_forms import EmbeddedDirectoryForm, EmbeddedUserForm, LDAPDirectoryForm, UserAttributeFormSet
from federation.models import UserDirectory
from federation.roles import admin_view, console_view
from federation.views.console import paginate

USERS_PAGE_SIZE = 25


@console_view
def directory_list(request):
    found = UserDirectory.objects.all()
    q = request.GET.get("q", "").strip()
    if q:
        found = found.filter(Q(name__icontains=q) | Q(hosts__icontains=q) | Q(description__icontains=q))
    kind = request.GET.get("kind", "")
    if kind in UserDirectory.Kind.values:
        found = found.filter(kind=kind)
    page, query = paginate(request, found)
    return render(
        request,
        "directories/list.html",
        {"page": page, "query": query, "q": q, "kind": kind, "kinds": UserDirectory.Kind.choices},
    )


@console_view
def directory_detail(request, pk):
    directory = get_object_or_404(UserDirectory, pk=pk)
    return render(request, "directories/detail.html", {"directory": directory, "facts": _facts(directory)})


def _facts(directory):
    if directory.is_embedded:
        return [
            ("Kind", directory.get_kind_display()),
            ("Description", directory.description or "—"),
            ("Users", str(get_user_model().objects.count())),
            ("Search specs", "username=%s, email=%s, first_name=%s, last_name=%s, <extra attribute>=%s"),
        ]
    lookup = (
        f"{directory.user_dn_start}<login>{directory.user_dn_end}"
        if directory.user_dn_start or directory.user_dn_end
        else f"search {directory.user_filter}"
    )
    return [
        ("Kind", directory.get_kind_display()),
        ("Description", directory.description or "—"),
        ("Hosts (tried in order)", ", ".join(directory.server_labels())),
        ("Security", directory.get_security_display()),
        ("Verify the server certificate", "yes" if directory.verify_tls else "no"),
        ("Bind DN", directory.bind_dn or "anonymous"),
        ("Bind password", "set (stored encrypted, never shown)" if directory.bind_password else "not set"),
        ("Search root", directory.search_root or "—"),
        ("Scope", directory.get_scope_display()),
        ("User lookup", lookup),
        ("Group search root", directory.group_search_root or directory.search_root or "—"),
        ("Group filter", directory.group_filter),
        ("Group name attribute", directory.group_name_attribute),
        ("Timeouts", f"connect {directory.connect_timeout} s, operation {directory.operation_timeout} s"),
    ]


@admin_view
def directory_create(request):
    return _edit(request, UserDirectory(kind=UserDirectory.Kind.LDAP))


@admin_view
def directory_edit(request, pk):
    return _edit(request, get_object_or_404(UserDirectory, pk=pk))


def _edit(request, directory):
    form_class = EmbeddedDirectoryForm if directory.is_embedded else LDAPDirectoryForm
    creating = directory.pk is None
    form = form_class(request.POST or None, instance=directory)
    report = None
    if request.method == "POST" and form.is_valid():
        report = getattr(form, "report", None)
        if request.POST.get("action") != "test":
            form.save()
            text = f"Directory {form.instance.name} {'created' if creating else 'saved'}."
            if report is not None:
                text += f" Connection test passed: {report.message.rstrip(':')}"
            messages.success(request, text)
            return redirect("directories:detail", pk=form.instance.pk)
    return render(
        request,
        "directories/form.html",
        {"form": form, "directory": directory if not creating else None, "report": report, "creating": creating},
    )


@admin_view
def directory_delete(request, pk):
    directory = get_object_or_404(UserDirectory, pk=pk)
    if directory.is_embedded:
        messages.error(request, "The embedded directory cannot be deleted: it holds this installation's own users.")
        return redirect("directories:detail", pk=directory.pk)
    if request.method == "POST":
        name = directory.name
        try:
            directory.delete()
        except ProtectedError as exc:
            users = ", ".join(sorted({str(obj) for obj in exc.protected_objects})[:5])
            messages.error(request, f"Directory {name} is still used by {users}; remove it there first.")
            return redirect("directories:detail", pk=pk)
        messages.success(request, f"Directory {name} deleted.")
        return redirect("directories:list")
    return render(request, "directories/delete.html", {"directory": directory})


@console_view
def directory_contents(request, pk):
    directory = get_object_or_404(UserDirectory, pk=pk)
    report = directories.test_connection(directory)
    return render(request, "directories/contents.html", {"directory": directory, "report": report})


# --- the embedded directory's users ---------------------------------------------------------------


def _embedded(pk):
    directory = get_object_or_404(UserDirectory, pk=pk)
    if not directory.is_embedded:
        raise Http404("Only the embedded directory has users here.")
    return directory


@console_view
def user_list(request, pk):
    directory = _embedded(pk)
    users = (
        get_user_model()
        .objects.order_by("username")
        .prefetch_related("groups")
        .annotate(attribute_count=Count("directory_attributes"))
    )
    q = request.GET.get("q", "").strip()
    if q:
        users = users.filter(
            Q(username__icontains=q)
            | Q(email__icontains=q)
            | Q(first_name__icontains=q)
            | Q(last_name__icontains=q)
            | Q(directory_attributes__value__icontains=q)
            | Q(groups__name__iexact=q)
        ).distinct()
    group = request.GET.get("group", "").strip()
    if group:
        users = users.filter(groups__name=group)
    page, query = paginate(request, users, USERS_PAGE_SIZE)
    return render(
        request,
        "directories/users.html",
        {
            "directory": directory,
            "page": page,
            "query": query,
            "q": q,
            "group": group,
            "groups": Group.objects.order_by("name").values_list("name", flat=True),
        },
    )


def _user_snapshot(user):
    return {
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": str(user.is_active),
        "groups": ", ".join(sorted(user.groups.values_list("name", flat=True))),
        "attributes": "; ".join(f"{a.name}={a.value}" for a in user.directory_attributes.order_by("name", "id")),
    }


@admin_view
def user_create(request, pk):
    return _user_edit(request, _embedded(pk), get_user_model()())


@admin_view
def user_edit(request, pk, user_id):
    directory = _embedded(pk)
    user = get_object_or_404(get_user_model(), pk=user_id)
    if user.is_superuser and not request.user.is_superuser:
        raise PermissionDenied("Only a superuser can change a superuser's account.")
    return _user_edit(request, directory, user)


def _user_edit(request, directory, user):
    creating = user.pk is None
    before = None if creating else _user_snapshot(user)
    form = EmbeddedUserForm(request.POST or None, instance=user)
    attribute_formset = UserAttributeFormSet(request.POST or None, instance=user if not creating else None, prefix="attr")
    if request.method == "POST" and form.is_valid() and attribute_formset.is_valid():
        with transaction.atomic():
            saved = form.save()
            attribute_formset.instance = saved
            attribute_formset.save()
            after = _user_snapshot(saved)
            changes = {
                name: [None if creating else before[name], value]
                for name, value in after.items()
                if (creating and value) or (not creating and before[name] != value)
            }
            if form.cleaned_data.get("password1"):
                changes["password"] = [None if creating else audit.MASK, "(changed)"]
            if creating or changes:
                audit.record(
                    "create" if creating else "update",
                    saved,
                    object_type="auth.User",
                    object_repr=saved.get_username(),
                    changes=changes,
                    summary=f"{'created' if creating else 'changed'} in {directory.name}",
                )
        messages.success(request, f"User {saved.get_username()} {'created' if creating else 'saved'}.")
        return redirect("directories:user_edit", pk=directory.pk, user_id=saved.pk)
    return render(
        request,
        "directories/user_form.html",
        {
            "directory": directory,
            "form": form,
            "attribute_formset": attribute_formset,
            "edited_user": None if creating else user,
            "creating": creating,
        },
    )
