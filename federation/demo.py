"""The demo `make run` seeds: a loopback federation on this one installation, so the first screen already has
something that works (PRODUCT.md §3, "embedded default").

    demo-idp (local SAML2 IdP) ──partnership demo-idp-to-sp──▶ demo-sp-remote (the same site's SP, described as a partner)
    demo-sp  (local SAML2 SP)  ──partnership demo-sp-to-idp──▶ demo-idp-remote (the same site's IdP, described as a partner)

Both partnerships are activated. "Test SSO" on demo-idp-to-sp starts IdP-initiated SSO; the assertion goes to this
site's own assertion consumer (through demo-sp-to-idp), which lands on /demo/ showing what was delivered. The demo
user `demo` lives in the embedded directory (password from FEDERATION_DEMO_PASSWORD, else generated and printed
once). Seeding is idempotent: it does nothing when the demo IdP entity exists.
"""

import secrets

from django.contrib.auth import get_user_model
from django.db import transaction

from entities import entity_services
from entities import services as keystore
from entities.models import Binding, EndpointKind, Entity, EntityType, KeystoreEntry, Location
from federation import runtime_paths
from federation.directories import EMBEDDED_NAME
from federation.models import UserAttribute, UserDirectory
from partnerships import prefill, services

DEMO_USER = "demo"
IDP, SP = "demo-idp", "demo-sp"
IDP_TO_SP, SP_TO_IDP = "demo-idp-to-sp", "demo-sp-to-idp"
LANDING_PATH = "/demo/"


def seed(base_url, password=None):
    """Create the demo federation under `base_url` (e.g. http://127.0.0.1:8000). Returns the generated demo
    password when one was generated, "" when the given one was used, None when the demo already existed."""
    if Entity.objects.filter(name=IDP).exists():
        return None
    base_url = base_url.rstrip("/")
    with transaction.atomic():
        generated = _demo_user(password)
        idp_key = _key_pair("demo-idp-signing", "CN=demo-idp")
        sp_key = _key_pair("demo-sp-signing", "CN=demo-sp")
        keystore.import_trusted_certificate("demo-idp-cert", idp_key.certificate_pem)
        keystore.import_trusted_certificate("demo-sp-cert", sp_key.certificate_pem)
        idp_id, sp_id = f"{base_url}/demo-idp", f"{base_url}/demo-sp"
        local_idp = entity_services.create_entity(
            {
                "location": Location.LOCAL,
                "entity_type": EntityType.SAML2_IDP,
                "name": IDP,
                "entity_id": idp_id,
                "base_url": base_url,
                "signing_key": idp_key.alias,
                "description": "Demo: this site as an IdP.",
            }
        )
        local_sp = entity_services.create_entity(
            {
                "location": Location.LOCAL,
                "entity_type": EntityType.SAML2_SP,
                "name": SP,
                "entity_id": sp_id,
                "base_url": base_url,
                "signing_key": sp_key.alias,
                "decryption_key": sp_key.alias,
                "description": "Demo: this site as an SP.",
            }
        )
        remote_sp = entity_services.create_entity(
            {
                "location": Location.REMOTE,
                "entity_type": EntityType.SAML2_SP,
                "name": f"{SP}-remote",
                "entity_id": sp_id,
                "verification_certificate": "demo-sp-cert",
                "encryption_certificate": "demo-sp-cert",
                "description": "Demo: this site's SP, as its IdP sees it.",
            },
            [
                {
                    "kind": EndpointKind.ACS,
                    "binding": Binding.HTTP_POST,
                    "index": 0,
                    "is_default": True,
                    "location": base_url + runtime_paths.SAML2_ASSERTION_CONSUMER,
                }
            ],
        )
        remote_idp = entity_services.create_entity(
            {
                "location": Location.REMOTE,
                "entity_type": EntityType.SAML2_IDP,
                "name": f"{IDP}-remote",
                "entity_id": idp_id,
                "verification_certificate": "demo-idp-cert",
                "description": "Demo: this site's IdP, as its SP sees it.",
            },
            [
                {"kind": EndpointKind.SSO, "binding": binding, "location": base_url + runtime_paths.SAML2_SSO}
                for binding in (Binding.HTTP_REDIRECT, Binding.HTTP_POST)
            ],
        )
        directories = [EMBEDDED_NAME]
        idp_to_sp = _partnership(
            IDP_TO_SP,
            "saml2_idp_sp",
            local_idp,
            remote_sp,
            directories,
            {
                "assertion": {
                    "name_id_value": "username",
                    "attributes": [
                        {"name": "mail", "value_type": "user", "value": "email"},
                        {
                            "name": "displayName",
                            "value_type": "expression",
                            "value": '#{attr["first_name"]} #{attr["last_name"]}',
                        },
                        {"name": "groups", "value_type": "user", "value": "groups"},
                    ],
                }
            },
        )
        sp_to_idp = _partnership(
            SP_TO_IDP,
            "saml2_sp_idp",
            local_sp,
            remote_idp,
            directories,
            {"application": {"redirect_mode": "persist_attributes", "target": base_url + LANDING_PATH}},
        )
        services.activate(idp_to_sp)
        services.activate(sp_to_idp)
    return generated


def _demo_user(password):
    User = get_user_model()
    generated = ""
    if not password:
        generated = password = secrets.token_urlsafe(9)
    user = User.objects.create_user(DEMO_USER, email="demo@example.org", password=password, first_name="Demo", last_name="User")
    UserAttribute.objects.bulk_create([UserAttribute(user=user, name="groups", value=g) for g in ("staff", "federation-demo")])
    assert UserDirectory.objects.filter(name=EMBEDDED_NAME).exists()
    return generated


def _key_pair(alias, subject):
    existing = KeystoreEntry.objects.filter(alias=alias).first()
    return existing or keystore.generate_key_pair(alias, "rsa2048", subject, 3650, [])


def _partnership(name, kind, local, remote, directories, overrides):
    chosen = [(d.name, d.kind) for d in UserDirectory.objects.filter(name__in=directories)]
    settings = prefill.initial_settings(
        kind, local=services.entity_facts(local), remote=services.entity_facts(remote), directories=chosen
    )
    for step, values in overrides.items():
        settings[step].update(values)
    partnership = services.save_partnership(
        kind=kind,
        name=name,
        local_entity=local,
        remote_entity=remote,
        directories=directories,
        settings=settings,
        description="Demo partnership seeded by make run.",
    )
    if services.stored_problems(partnership) and partnership.state == "incomplete":
        raise services.PartnershipError(services.stored_problems(partnership))
    return partnership
