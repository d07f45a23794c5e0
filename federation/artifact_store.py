"""The messages behind SAML artifacts, waiting to be fetched once by artifact resolution (SAML 2.0; SAML 1.1 later).

The IdP stores the Response under the artifact's message handle and sends the browser on with the artifact; the SP
then resolves it over the SOAP back channel. Each message is handed out at most once, to the partner it was made
for, before it expires (`FEDERATION_ARTIFACT_LIFETIME_SECONDS`, default 60: the SP resolves within seconds).

One-time retrieval is atomic across processes and nodes without locks: the row is read, then deleted by primary
key, and only the caller whose DELETE removed the row (count 1) gets the message. Two concurrent resolutions of one
artifact therefore give the message to exactly one of them, on SQLite and PostgreSQL alike.
"""

from datetime import UTC, datetime, timedelta

DEFAULT_LIFETIME_SECONDS = 60


def lifetime_seconds():
    from federation.sso_sessions import runtime_setting

    return int(runtime_setting("FEDERATION_ARTIFACT_LIFETIME_SECONDS", DEFAULT_LIFETIME_SECONDS))


def handle_of(artifact):
    """The store key of an artifact (`federation.saml.artifacts.Artifact`): hex of its message handle."""
    return artifact.message_handle.hex()


def store(artifact, *, issuer, recipient, partnership, message, lifetime=None, now=None):
    """Keep `message` (bytes or str) for `recipient` (the SP's entity ID) under the artifact's handle."""
    from federation.models import ArtifactMessage

    now = now or datetime.now(UTC)
    if isinstance(message, bytes):
        message = message.decode("utf-8")
    ArtifactMessage.objects.create(
        handle=handle_of(artifact),
        issuer=issuer[:1024],
        recipient=recipient[:1024],
        partnership=partnership[:128],
        message=message,
        expires_at=now + timedelta(seconds=lifetime if lifetime is not None else lifetime_seconds()),
    )


def take(artifact, *, recipient, now=None):
    """The stored message (str) for `recipient`, removed so it can never be fetched again; None when the artifact is
    unknown, already used, expired, or was made for another partner (which leaves it untouched)."""
    from federation.models import ArtifactMessage

    now = now or datetime.now(UTC)
    row = (
        ArtifactMessage.objects.filter(handle=handle_of(artifact), recipient=recipient, expires_at__gt=now)
        .values_list("pk", "message")
        .first()
    )
    if row is None:
        return None
    pk, message = row
    deleted, _ = ArtifactMessage.objects.filter(pk=pk).delete()
    return message if deleted == 1 else None


def describe_missing(artifact, *, recipient, now=None):
    """Why `take` found nothing, for the trace (a second query, only on the refusal path)."""
    from federation.models import ArtifactMessage

    now = now or datetime.now(UTC)
    row = ArtifactMessage.objects.filter(handle=handle_of(artifact)).values_list("recipient", "expires_at").first()
    if row is None:
        return "unknown or already resolved (an artifact is handed out once)"
    owner, expires_at = row
    if owner != recipient:
        return f"made for {owner}, not for {recipient}"
    if expires_at <= now:
        return f"expired at {expires_at.isoformat()}"
    return "unavailable"


def sweep(now=None):
    """Delete expired messages; returns how many."""
    from federation.models import ArtifactMessage

    deleted, _ = ArtifactMessage.objects.filter(expires_at__lte=now or datetime.now(UTC)).delete()
    return deleted
