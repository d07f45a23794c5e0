import pytest
from django.core.management import call_command

from federation import secretbox
from federation.models import AuditEvent, UserDirectory


def test_seal_round_trip_and_shape(settings):
    sealed = secretbox.seal(b"s3cret")
    assert sealed.startswith("sb1:") and b"s3cret" not in sealed.encode()
    assert secretbox.unseal(sealed) == b"s3cret"
    assert secretbox.seal(b"s3cret") != sealed, "a fresh nonce every time"


def test_tampered_value_is_refused():
    sealed = secretbox.seal(b"payload")
    prefix, key_id, payload = sealed.split(":", 2)
    flipped = payload[:-4] + ("AAAA" if payload[-4:] != "AAAA" else "BBBB")
    with pytest.raises(secretbox.SecretBoxError, match="integrity"):
        secretbox.unseal(f"{prefix}:{key_id}:{flipped}")


def test_value_sealed_under_unknown_secret_names_the_fix(settings):
    sealed = secretbox.seal(b"payload")
    settings.KEY_ENCRYPTION_SECRET = "a-completely-different-secret"
    with pytest.raises(secretbox.SecretBoxError, match="FEDERATION_KEY_ENCRYPTION_OLD_SECRETS"):
        secretbox.unseal(sealed)
    settings.KEY_ENCRYPTION_OLD_SECRETS = [settings.KEY_ENCRYPTION_SECRET, "unrelated"]
    with pytest.raises(secretbox.SecretBoxError):
        secretbox.unseal(sealed)


def test_not_a_sealed_value():
    with pytest.raises(secretbox.SecretBoxError):
        secretbox.unseal("plain text")


@pytest.mark.django_db
def test_rekey_reseals_every_sealed_column_under_the_new_secret(settings):
    settings.KEY_ENCRYPTION_SECRET = "old-secret-old-secret"
    directory = UserDirectory.objects.create(
        name="corp",
        kind="ldap",
        hosts="ldap.example.org",
        search_root="dc=example,dc=org",
        bind_password=secretbox.seal_text("bind-pw"),
    )
    old_value = UserDirectory.objects.get(pk=directory.pk).bind_password

    settings.KEY_ENCRYPTION_SECRET = "new-secret-new-secret"
    settings.KEY_ENCRYPTION_OLD_SECRETS = ["old-secret-old-secret"]
    call_command("rekey")
    new_value = UserDirectory.objects.get(pk=directory.pk).bind_password
    assert new_value != old_value and secretbox.is_current(new_value)

    settings.KEY_ENCRYPTION_OLD_SECRETS = []
    assert secretbox.unseal_text(new_value) == "bind-pw"
    with pytest.raises(secretbox.SecretBoxError):
        secretbox.unseal_text(old_value)
    assert AuditEvent.objects.filter(object_type="secretbox", summary__contains="re-encrypted 1").exists()
