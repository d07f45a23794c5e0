"""Partnership-level metadata export (reference ch01-08 F6.7, ch20-22 §2.3; docs/metadata-export.md).

The metadata of a partnership's LOCAL entity as this partnership presents it, for the partner to import:

* entity ID, base URL, NameID formats, attributes and the next signing key come from the partnership's own copy of
  its local entity (`entity_data["local"]`, the copy its activated snapshot carries: entity edits reach it through
  "Get updates"); the partnership's Configure base URL, when set, replaces the entity's;
* only the services the partnership enables: the AuthnRequest bindings (IdP SSO) or the SSO bindings (SP ACS) of
  its SSO step, artifact resolution when HTTP-Artifact is on, SLO with the chosen bindings when single logout is on,
  Manage Name ID when it is on, the attribute service when it is on;
* the certificate of the partnership's signing key (then the entity's next signing key, for rollover), the
  decryption key's certificate as `use="encryption"` (SAML 2.0 SP; a SAML 2.0 IdP publishes its entity's), the
  NameID format of the assertion step (asserting party) or Persistent when the SP asks the IdP to create
  identifiers (AllowCreate), the names and formats of the assertion attribute table (never their values), and
  WantAuthnRequestsSigned / AuthnRequestsSigned / WantAssertionsSigned from the Signature step.

A partnership need not be complete to be exported (F6.7): what is missing is simply not published, except what no
partner could use the file without (a signing key of an asserting party, an SSO or ACS service), which is refused
in plain words. The document itself is built, signed, given its validity and serialised by
entities.metadata_export (`export_content`), the same code entity-level export uses; the file is always named after
the partnership. While the partnership is Active only the validity and the key aliases (the key that signs the file,
the next signing key announced) may differ from the partnership's own values.

Plain functions over the models: the console dialog (partnerships.metadata_views) and `manage.py metadata_export
--partnership NAME` call them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from entities import metadata_export as me
from entities.metadata_export import ASSERTING, RELYING, SAML2, WSFED, AttributeSpec, MetadataContent, MetadataExportError
from entities.models import KeystoreEntry
from federation.saml import constants as c
from partnerships import catalog, services
from partnerships.catalog_choices import BINDING_URIS

# What a SAML 2.0 SP that accepts legacy encryption also decrypts (offered in its metadata only then).
LEGACY_ENCRYPTION_METHODS = (c.TRIPLEDES_CBC, c.RSA_1_5)
SIGNING_FLAGS = ("want_authn_requests_signed", "authn_requests_signed", "want_assertions_signed")


def filename(partnership):
    """`<partnership name>-metadata.xml`: partnership-level export always uses the partnership's name."""
    return f"{partnership.name}-metadata.xml"


def step_values(partnership, step):
    """The partnership's values of one step over the catalogue defaults (a stored configuration is complete, but
    a partnership saved before a setting existed is not)."""
    defaults = catalog.defaults(partnership.kind).get(step, {})
    return {**defaults, **((partnership.settings or {}).get(step) or {})}


def local_facts(partnership):
    """The partnership's copy of its local entity (services.entity_facts shape); the entity's current facts when
    no copy was made."""
    facts = (partnership.entity_data or {}).get("local")
    if facts:
        return facts
    return services.entity_facts(partnership.local_entity)


def _signature_disabled(signature):
    return bool(signature.get("disable_signature_processing"))


def signing_alias(partnership):
    """The alias of the key pair the partnership signs with ("" when it signs nothing)."""
    signature = step_values(partnership, "signature")
    return "" if _signature_disabled(signature) else (signature.get("signing_key") or "")


def default_document_signer(partnership):
    """The alias that signs the exported file unless another is chosen: the partnership's signing key, else its
    local entity's ("" when neither has one: the file is unsigned)."""
    return signing_alias(partnership) or (local_facts(partnership).get("keys") or {}).get("signing_key") or ""


def default_next_signing_alias(partnership):
    return (local_facts(partnership).get("keys") or {}).get("next_signing_key") or ""


def key_pair(alias, label, partnership, field=None):
    """The keystore key pair `alias`, or MetadataExportError in plain words (gone, or not a key pair)."""
    entry = KeystoreEntry.objects.filter(alias=alias).first()
    if entry is None:
        raise MetadataExportError(
            f"{label} '{alias}' of partnership '{partnership.name}' is no longer in the keystore; "
            "import it again or choose another key pair.",
            field,
        )
    if entry.kind != KeystoreEntry.Kind.KEY_PAIR or not entry.has_private_key:
        raise MetadataExportError(
            f"{label} '{alias}' of partnership '{partnership.name}' is a {entry.get_kind_display().lower()}, not a key pair.",
            field,
        )
    return entry


# ====================================================================== what the partnership publishes


def _binding_uris(protocol, short_names):
    uris = BINDING_URIS.get(protocol, {})
    return {uris[name] for name in short_names or () if name in uris}


def _enabled_endpoints(partnership, info, base_url):
    """The local service URLs (entities.metadata_export.local_endpoints) the partnership's SSO and SLO step enables."""
    sso_slo = step_values(partnership, "sso_slo")
    protocol = info.protocol
    role = ASSERTING if info.asserting else RELYING
    slo_bindings = set()
    if protocol == SAML2 and sso_slo.get("slo_enabled") and services.session_store_enabled():
        slo_bindings = _binding_uris(protocol, sso_slo.get("slo_bindings"))
    assertion_bindings = _binding_uris(protocol, sso_slo.get("sso_bindings"))
    request_bindings = _binding_uris(protocol, sso_slo.get("authn_request_bindings"))

    def enabled(endpoint):
        if endpoint.kind == me.SSO:
            # A SAML 2.0 IdP's SSO service takes AuthnRequests; a SAML 1.1 producer's is the intersite transfer URL.
            return protocol != SAML2 or endpoint.binding in request_bindings
        if endpoint.kind == me.ACS:
            return endpoint.binding in assertion_bindings
        if endpoint.kind == me.SLO:
            return endpoint.binding in slo_bindings
        if endpoint.kind == me.ARTIFACT_RESOLUTION:
            return "artifact" in (sso_slo.get("sso_bindings") or ())
        if endpoint.kind == me.MANAGE_NAME_ID:
            return bool(sso_slo.get("mni_enabled"))
        if endpoint.kind == me.ATTRIBUTE_SERVICE:
            return bool(sso_slo.get("attribute_service_enabled"))
        return True

    endpoints = [endpoint for endpoint in me.local_endpoints(base_url, protocol, role) if enabled(endpoint)]
    # The first ACS left is the default one (HTTP-Artifact alone keeps its index 1, and becomes the default).
    acs = [endpoint for endpoint in endpoints if endpoint.kind == me.ACS]
    if acs and not any(endpoint.is_default for endpoint in acs):
        endpoints[endpoints.index(acs[0])] = replace(acs[0], is_default=True)
    if protocol == SAML2 and info.asserting and not any(endpoint.kind == me.SSO for endpoint in endpoints):
        raise MetadataExportError(
            f"Partnership '{partnership.name}' accepts AuthnRequests on no binding, so the file would have no single "
            "sign-on service; choose an AuthnRequest binding in its SSO and SLO step."
        )
    if not info.asserting and protocol != WSFED and not acs:
        raise MetadataExportError(
            f"Partnership '{partnership.name}' has no SSO binding, so the file would have no assertion consumer "
            "service; choose HTTP-POST or HTTP-Artifact in its SSO step."
        )
    return tuple(endpoints)


def _name_id_formats(partnership, info, facts):
    if info.asserting:
        chosen = step_values(partnership, "assertion").get("name_id_format")
        return (chosen,) if chosen else tuple(facts.get("name_id_formats") or ())
    if info.protocol == SAML2 and step_values(partnership, "user_identification").get("allow_create"):
        return (c.NAMEID_PERSISTENT,)  # what the SP asks the IdP to create (AllowCreate needs Persistent)
    return tuple(facts.get("name_id_formats") or ())


def _attributes(partnership, info):
    """Names and formats (SAML 2.0) or namespaces (SAML 1.1, WS-Fed) of the assertion attribute table, once each."""
    if not info.asserting:
        return ()
    found = {}
    for row in step_values(partnership, "assertion").get("attributes") or ():
        name = (row.get("name") or "").strip()
        if not name:
            continue
        spec = (
            AttributeSpec(name, name_format=row.get("name_format") or "")
            if info.protocol == SAML2
            else AttributeSpec(name, namespace=row.get("namespace") or "")
        )
        found.setdefault(spec, None)
    return tuple(found)


def _signing_certificates(partnership, info, next_signing_alias, now):
    alias = signing_alias(partnership)
    if not alias:
        if info.asserting and not _signature_disabled(step_values(partnership, "signature")):
            raise MetadataExportError(
                f"Partnership '{partnership.name}' has no signing key pair, so partners could not verify its "
                "assertions. Choose one in its Signature step first."
            )
        return ()
    label = "The signing key"
    certificates = [
        me.checked_certificate(key_pair(alias, label, partnership), f"{label} '{alias}' of partnership '{partnership.name}'", now)
    ]
    if next_signing_alias is None:
        next_signing_alias = default_next_signing_alias(partnership)
    if next_signing_alias and next_signing_alias != alias:
        label = "The next signing key"
        entry = key_pair(next_signing_alias, label, partnership, "next_signing_key")
        certificates.append(me.checked_certificate(entry, f"{label} '{next_signing_alias}'", now, "next_signing_key"))
    return tuple(certificates)


def _encryption(partnership, info, facts, now):
    """(certificates, methods) for `use="encryption"`: SAML 2.0 only."""
    if info.protocol != SAML2:
        return (), me.ENCRYPTION_METHODS
    signature = step_values(partnership, "signature")
    if info.asserting:
        # The IdP side has no decryption key of its own in a partnership: its entity's is published.
        alias = (facts.get("keys") or {}).get("decryption_key") or ""
    else:
        alias = signature.get("decryption_key") or ""
    methods = me.ENCRYPTION_METHODS
    if not info.asserting and signature.get("accept_legacy_encryption"):
        methods = methods + LEGACY_ENCRYPTION_METHODS
    if not alias:
        return (), methods
    return (me.checked_decryption_certificate(key_pair(alias, "The decryption key", partnership), now),), methods


def _signing_flags(partnership, info):
    """The SAML 2.0 flags as the Signature step sets them (nothing is signed or verified while signature processing
    is disabled, and the flags say so)."""
    if info.protocol != SAML2:
        return {}
    signature = step_values(partnership, "signature")
    enforced = not _signature_disabled(signature)
    if info.asserting:
        return {"want_authn_requests_signed": enforced and bool(signature.get("require_signed_authn_requests"))}
    return {
        "authn_requests_signed": enforced and bool(signature.get("sign_authn_requests")),
        "want_assertions_signed": enforced and bool(signature.get("require_signed_assertions")),
    }


def base_url(partnership):
    return (step_values(partnership, "configure").get("base_url") or "").strip() or (
        local_facts(partnership).get("base_url") or ""
    )


def partnership_metadata_content(partnership, *, next_signing_alias=None, now=None):
    """The MetadataContent of `partnership`'s local entity with the partnership's own values (see the module
    docstring). `next_signing_alias`: the key pair announced as next signing key; None for the local entity's,
    "" for none. MetadataExportError, in plain words, for what no partner could use: no base URL, an asserting party
    without signing key, no SSO or ACS binding, a key that is missing, expired or of the wrong type."""
    now = now or datetime.now(UTC)
    info = partnership.kind_info
    facts = local_facts(partnership)
    url = base_url(partnership)
    if not url:
        raise MetadataExportError(
            f"Neither partnership '{partnership.name}' nor its local entity '{facts.get('name', '')}' has a base URL, so "
            "the file could name no service. Set the base URL in the partnership's Configure partnership step."
        )
    encryption_certificates, encryption_methods = _encryption(partnership, info, facts, now)
    wsfed = info.protocol == WSFED
    return MetadataContent(
        entity_id=facts["entity_id"],
        protocol=info.protocol,
        role=ASSERTING if info.asserting else RELYING,
        endpoints=() if wsfed else _enabled_endpoints(partnership, info, url),
        signing_certificates=_signing_certificates(partnership, info, next_signing_alias, now),
        encryption_certificates=encryption_certificates,
        encryption_methods=encryption_methods,
        name_id_formats=_name_id_formats(partnership, info, facts),
        attributes=_attributes(partnership, info),
        token_type=me.token_type_uri(facts.get("saml_token_type")) if wsfed else "",
        wsfed_url=me.local_wsfed_url(url, (facts.get("wsfed") or {}).get("specific_id", "")) if wsfed else "",
        **_signing_flags(partnership, info),
    )


def signing_flags(content):
    """{flag: True/False/None} of a content, for the dialog's initial values."""
    return {flag: getattr(content, flag) for flag in SIGNING_FLAGS}


# ====================================================================== the export


def _refuse_changes_while_active(partnership, content, options):
    """Active: only the validity and the key aliases may differ from the partnership's own values (F6.7)."""
    changed = []
    if options.entity_id and options.entity_id != content.entity_id:
        changed.append(("entity_id", "the entity ID"))
    if options.cache_duration is not None:
        changed.append(("cache_hours", "the cache duration"))
    if options.algorithm:
        changed.append(("algorithm", "the signature algorithm"))
    changed += [
        (flag, flag.replace("_", " "))
        for flag, value in options.overrides.items()
        if flag not in SIGNING_FLAGS or value != getattr(content, flag)
    ]
    if changed:
        field, _words = changed[0]
        raise MetadataExportError(
            f"Partnership '{partnership.name}' is active: only the validity and the key aliases can be changed for its "
            f"export, not {', '.join(words for _field, words in changed)}. Deactivate it to export other values.",
            field,
        )


def _document_algorithm(partnership, options):
    """The algorithm that signs the file: the one asked for, else the partnership's own signature algorithm when it
    suits the chosen key, else the key type's default."""
    if options.algorithm or options.sign_with is None:
        return options.algorithm
    preferred = step_values(partnership, "signature").get("signature_algorithm") or ""
    if preferred in me.SIGNATURE_ALGORITHMS:
        wanted = "ec" if preferred.startswith("ecdsa") else "rsa"
        if (options.sign_with.key_type or "").lower() == wanted:
            return preferred
    return ""


def export_partnership_metadata(partnership, options=None, *, next_signing_alias=None, now=None):
    """Build, sign (with `options.sign_with`) and serialise the partnership's metadata; an ExportResult named
    `<partnership name>-metadata.xml`. `options` is entities.metadata_export.ExportOptions: `entity_id` (another
    entityID to publish), `valid_days`, `cache_duration`, `sign_with`, `algorithm` and `overrides` (signing flags:
    True/False, or None to leave one out) as for entity-level export; `partnership_name` must be empty or the
    partnership's own (the name cannot be changed). Refuses, with MetadataExportError: what
    `partnership_metadata_content` refuses, what `export_content` refuses, and on an Active partnership any change
    other than the validity and the key aliases."""
    options = options or me.ExportOptions()
    now = now or datetime.now(UTC)
    given_name = (options.partnership_name or "").strip()
    if given_name and given_name.lower() != partnership.name.lower():
        raise MetadataExportError(
            f"A partnership-level export always uses the partnership's name ('{partnership.name}'); "
            "a new name cannot be given (use entity-level export for a new partnership).",
            "partnership_name",
        )
    entity_id = me.check_entity_id(options.entity_id)
    me.check_validity(options)
    content = partnership_metadata_content(partnership, next_signing_alias=next_signing_alias, now=now)
    if partnership.is_active:
        _refuse_changes_while_active(partnership, content, replace(options, entity_id=entity_id))
    unknown = set(options.overrides) - set(SIGNING_FLAGS)
    if unknown:
        raise MetadataExportError(f"Only the signing flags can be overridden, not {', '.join(sorted(unknown))}.")
    content = replace(content, **options.overrides, **({"entity_id": entity_id} if entity_id else {}))
    signed = replace(options, algorithm=_document_algorithm(partnership, options))
    return me.export_content(content, signed, filename=filename(partnership), now=now)


__all__ = [
    "LEGACY_ENCRYPTION_METHODS",
    "SIGNING_FLAGS",
    "base_url",
    "default_document_signer",
    "default_next_signing_alias",
    "export_partnership_metadata",
    "filename",
    "local_facts",
    "partnership_metadata_content",
    "signing_alias",
    "signing_flags",
]
