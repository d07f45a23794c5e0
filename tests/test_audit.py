import pytest

from federation import secretbox
from federation.audit import MASK, acting_as
from federation.models import AuditEvent, UserDirectory

pytestmark = pytest.mark.django_db


def _directory(**extra):
    values = dict(name="corp", kind="ldap", hosts="ldap.example.org", search_root="dc=example,dc=org")
    values.update(extra)
    return UserDirectory.objects.create(**values)


def test_create_update_delete_are_recorded_with_actor_and_field_diff():
    with acting_as("alice"):
        directory = _directory()
        directory.port = 636
        directory.security = "ldaps"
        directory.save()
        pk = directory.pk
        directory.delete()
    create, update, delete = AuditEvent.objects.filter(object_id=str(pk)).order_by("id")
    assert (create.action, create.actor, create.object_repr) == ("create", "alice", "corp")
    assert create.changes["hosts"] == [None, "ldap.example.org"]
    assert update.action == "update"
    assert update.changes == {"port": ["389", "636"], "security": ["none", "ldaps"]}
    assert delete.action == "delete" and delete.changes["name"] == ["corp", None]


def test_saving_without_changes_records_nothing():
    directory = _directory()
    before = AuditEvent.objects.count()
    UserDirectory.objects.get(pk=directory.pk).save()
    assert AuditEvent.objects.count() == before


def test_secrets_are_masked_never_logged():
    directory = _directory(bind_password=secretbox.seal_text("hunter2-bind"))
    directory.bind_password = secretbox.seal_text("another-password")
    directory.save()
    events = list(AuditEvent.objects.order_by("id"))
    dumped = repr([(e.changes, e.summary) for e in events])
    assert "hunter2" not in dumped and "another-password" not in dumped and "sb1:" not in dumped
    assert events[-1].changes["bind_password"] == [MASK, "(changed)"]


def test_unattended_changes_are_recorded_as_system():
    _directory()
    assert AuditEvent.objects.get().actor == "system"


def test_console_request_records_the_signed_in_user(admin_client, admin_user):
    # Any configuration change made while serving a request is attributed to its user.
    from django.test import RequestFactory

    from federation.audit import AuditActorMiddleware

    request = RequestFactory().get("/")
    request.user = admin_user
    AuditActorMiddleware(lambda r: _directory())(request)
    assert AuditEvent.objects.get().actor == admin_user.username


def test_audit_page_lists_and_filters(admin_client):
    with acting_as("bob"):
        _directory(name="first-dir")
        _directory(name="second-dir")
    page = admin_client.get("/audit/", {"q": "second"}).content.decode()
    assert "second-dir" in page and "first-dir" not in page
    page = admin_client.get("/audit/", {"action": "delete"}).content.decode()
    assert "No audit events match" in page
