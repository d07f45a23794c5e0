"""Partnership fixtures: real entities, keys and directories made through the services, and a factory for
partnerships of any kind. Shared by the partnership service, console, wizard, CLI and config tests."""

import pytest

from entities import entity_services
from entities import services as keystore
from entities.models import Binding, EndpointKind, EntityType, Location
from federation.directories import EMBEDDED_NAME

SP_ACS = "https://sp.partner.example/affwebservices/public/saml2assertionconsumer"
IDP_SSO = "https://idp.partner.example/affwebservices/public/saml2sso"


def entity(name, location, entity_type, endpoints=(), **values):
    base = {"location": location, "entity_type": entity_type, "name": name, "entity_id": f"https://{name}.example/"}
    if location == Location.LOCAL:
        base["base_url"] = f"https://{name}.example"
    base.update(values)
    return entity_services.create_entity(base, list(endpoints))


def endpoint(kind, binding, location, index=None, is_default=False):
    row = {"kind": kind, "binding": binding, "location": location, "is_default": is_default}
    if index is not None:
        row["index"] = index
    return row


@pytest.fixture
def saml2_idp_sp(db):
    """A local SAML2 IdP with a signing key and a remote SP with a POST ACS and a certificate."""
    keystore.generate_key_pair("idp-signing", "rsa2048", "CN=idp.example", 365, [])
    sp_key = keystore.generate_key_pair("sp-partner", "rsa2048", "CN=sp.partner.example", 365, [])
    keystore.import_trusted_certificate("sp-partner-cert", sp_key.certificate_pem)
    local = entity("idp-local", Location.LOCAL, EntityType.SAML2_IDP, signing_key="idp-signing")
    remote = entity(
        "sp-partner",
        Location.REMOTE,
        EntityType.SAML2_SP,
        [endpoint(EndpointKind.ACS, Binding.HTTP_POST, SP_ACS, index=0, is_default=True)],
        verification_certificate="sp-partner-cert",
        encryption_certificate="sp-partner-cert",
        name_id_formats=["urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"],
    )
    return local, remote


@pytest.fixture
def saml2_sp_idp(db):
    """A local SAML2 SP with signing and decryption keys and a remote IdP with a Redirect/POST SSO service."""
    keystore.generate_key_pair("sp-signing", "rsa2048", "CN=sp.example", 365, [])
    idp_key = keystore.generate_key_pair("idp-partner", "rsa2048", "CN=idp.partner.example", 365, [])
    keystore.import_trusted_certificate("idp-partner-cert", idp_key.certificate_pem)
    local = entity("sp-local", Location.LOCAL, EntityType.SAML2_SP, signing_key="sp-signing", decryption_key="sp-signing")
    remote = entity(
        "idp-partner",
        Location.REMOTE,
        EntityType.SAML2_IDP,
        [
            endpoint(EndpointKind.SSO, Binding.HTTP_REDIRECT, IDP_SSO),
            endpoint(EndpointKind.SSO, Binding.HTTP_POST, IDP_SSO),
        ],
        verification_certificate="idp-partner-cert",
    )
    return local, remote


@pytest.fixture
def make_partnership(db):
    """Factory: save_partnership with what the wizard would pre-fill from the entities (partnerships.prefill) over
    the catalog defaults, plus `settings` overrides merged per step. NameID value defaults to the user's uid, the
    application target to https://app.example/welcome."""
    from federation.models import UserDirectory
    from partnerships import prefill, services

    def make(name, kind, local, remote, directories=(EMBEDDED_NAME,), settings=None, **extra):
        chosen = [(d.name, d.kind) for d in UserDirectory.objects.filter(name__in=directories)]
        facts = {"local": services.entity_facts(local), "remote": services.entity_facts(remote)}
        merged = prefill.initial_settings(kind, directories=chosen, **facts)
        if "assertion" in merged and not merged["assertion"].get("name_id_value"):
            merged["assertion"]["name_id_value"] = "uid"
        if "application" in merged and not merged["application"].get("target"):
            merged["application"]["target"] = "https://app.example/welcome"
        for step, values in (settings or {}).items():
            merged.setdefault(step, {}).update(values)
        return services.save_partnership(
            kind=kind,
            name=name,
            local_entity=local,
            remote_entity=remote,
            directories=list(directories),
            settings=merged,
            **extra,
        )

    return make
