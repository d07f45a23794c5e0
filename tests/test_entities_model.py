"""Entity rules and services: six types × local/remote, every validation rule with its message,
derived runtime URLs, audit, and deletion refused while something references an object."""

import pytest
from django.db import IntegrityError, transaction

from entities import entity_services as es
from entities import services
from entities.keystore import KeystoreError
from entities.models import (
    AttributeNameFormat,
    Binding,
    Endpoint,
    EndpointKind,
    Entity,
    EntityAttribute,
    EntityType,
    KeystoreEntry,
    Location,
    NameIdFormat,
    Protocol,
    Role,
    SamlTokenType,
)
from federation import runtime_paths
from federation.models import AuditEvent
from tests.keystore_fixtures import cert_pem, make_ca, self_signed

pytestmark = pytest.mark.django_db

LOCAL, REMOTE = Location.LOCAL, Location.REMOTE
ACS_URL = "https://sp1.example.com/affwebservices/public/saml2assertionconsumer"
SSO_URL = "https://idp1.example.com/affwebservices/public/saml2sso"


def problems(call, *args, **kwargs):
    """The EntityError problems of a refused call (fails the test when nothing is refused)."""
    with pytest.raises(es.EntityError) as info:
        call(*args, **kwargs)
    return info.value.problems


def entity_messages(call, *args, **kwargs):
    return problems(call, *args, **kwargs)["entity"]


def endpoint_messages(call, *args, **kwargs):
    return problems(call, *args, **kwargs)["endpoints"]


@pytest.fixture
def trusted_cert(db):
    def make(alias):
        _key, certificate = self_signed(f"{alias}.example.com")
        return services.import_trusted_certificate(alias, cert_pem(certificate))

    return make


def local_saml2_idp(**extra):
    values = {
        "location": LOCAL,
        "entity_type": EntityType.SAML2_IDP,
        "entity_id": "idp1",
        "name": "idp1",
        "base_url": "https://idp1.example.com",
    }
    values.update(extra)
    return values


def remote_saml2_sp(**extra):
    values = {"location": REMOTE, "entity_type": EntityType.SAML2_SP, "entity_id": "sp1", "name": "sp1"}
    values.update(extra)
    return values


def acs(index=0, binding=Binding.HTTP_POST, default=True, url=ACS_URL):
    return {"kind": EndpointKind.ACS, "index": index, "binding": binding, "location": url, "is_default": default}


# ---------------------------------------------------------------- six types × local/remote

# A minimal valid entity of each combination: (values, endpoints, attributes).
SAMPLES = {
    (LOCAL, EntityType.SAML2_IDP): (
        {"base_url": "https://idp1.example.com", "name_id_formats": [NameIdFormat.UNSPECIFIED, NameIdFormat.PERSISTENT]},
        [],
        [{"name": "mail", "name_format": AttributeNameFormat.BASIC, "value_type": "user", "value": "mail"}],
    ),
    (LOCAL, EntityType.SAML2_SP): ({"base_url": "https://sp1.example.com"}, [], []),
    (LOCAL, EntityType.SAML11_PRODUCER): (
        {"base_url": "https://producer.example.com", "name_id_formats": [NameIdFormat.EMAIL]},
        [],
        [{"name": "groups", "namespace": "urn:example:attributes", "value_type": "user", "value": "memberOf"}],
    ),
    (LOCAL, EntityType.SAML11_CONSUMER): ({"base_url": "https://consumer.example.com"}, [], []),
    (LOCAL, EntityType.WSFED_IP): (
        {
            "saml_token_type": SamlTokenType.SAML11,
            "base_url": "https://ip.example.com",
            "wsfed_specific_id": "microsoftonline",
            "wsfed_signout_confirm_url": "https://ip.example.com/signedout",
        },
        [],
        [
            {"name": "UPN", "namespace": "http://schemas.xmlsoap.org/claims", "value_type": "user", "value": "userPrincipalName"},
            {
                "name": "ImmutableID",
                "namespace": "http://schemas.microsoft.com/LiveID/Federation/2008/05",
                "value_type": "user",
                "value": "objectGUID",
            },
        ],
    ),
    (LOCAL, EntityType.WSFED_RP): ({"saml_token_type": SamlTokenType.SAML2, "base_url": "https://rp.example.com"}, [], []),
    (REMOTE, EntityType.SAML2_IDP): (
        {},
        [
            {"kind": EndpointKind.SSO, "binding": Binding.HTTP_REDIRECT, "location": SSO_URL},
            {"kind": EndpointKind.ARTIFACT_RESOLUTION, "binding": Binding.SOAP, "index": 0, "location": SSO_URL + "ars"},
        ],
        [{"name": "groups", "name_format": AttributeNameFormat.BASIC}],
    ),
    (REMOTE, EntityType.SAML2_SP): ({}, [acs()], []),
    (REMOTE, EntityType.SAML11_PRODUCER): (
        {},
        [
            {
                "kind": EndpointKind.ARTIFACT_RESOLUTION,
                "binding": Binding.SAML11_SOAP,
                "index": 0,
                "location": "https://p.example.com/ars",
            }
        ],
        [],
    ),
    (REMOTE, EntityType.SAML11_CONSUMER): (
        {},
        [{"kind": EndpointKind.ACS, "binding": Binding.SAML11_POST, "index": 0, "location": "https://c.example.com/samlcc"}],
        [],
    ),
    (REMOTE, EntityType.WSFED_IP): (
        {"saml_token_type": SamlTokenType.LEGACY, "wsfed_service_url": "https://ip.partner.example/wsfed"},
        [],
        [],
    ),
    (REMOTE, EntityType.WSFED_RP): (
        {
            "saml_token_type": SamlTokenType.SAML11,
            "wsfed_service_url": "https://login.microsoftonline.com/login.srf",
            "wsfed_signout_cleanup_url": "https://login.microsoftonline.com/login.srf",
        },
        [],
        [],
    ),
}


@pytest.mark.parametrize(("location", "entity_type"), list(SAMPLES))
def test_every_type_local_and_remote_can_be_created(location, entity_type, make_key_pair, trusted_cert):
    extra, endpoints, attributes = SAMPLES[(location, entity_type)]
    values = {
        "location": location,
        "entity_type": entity_type,
        "entity_id": f"urn:test:{entity_type}",
        "name": f"{location}-{entity_type}",
    }
    values.update(extra)
    if location == LOCAL:
        values["signing_key"] = make_key_pair("signing").alias
    else:
        values["verification_certificate"] = trusted_cert("partner")
    entity = es.create_entity(values, endpoints, attributes)

    entity.refresh_from_db()
    protocol, role = {
        EntityType.SAML2_IDP: (Protocol.SAML2, Role.ASSERTING),
        EntityType.SAML2_SP: (Protocol.SAML2, Role.RELYING),
        EntityType.SAML11_PRODUCER: (Protocol.SAML11, Role.ASSERTING),
        EntityType.SAML11_CONSUMER: (Protocol.SAML11, Role.RELYING),
        EntityType.WSFED_IP: (Protocol.WSFED, Role.ASSERTING),
        EntityType.WSFED_RP: (Protocol.WSFED, Role.RELYING),
    }[entity_type]
    assert (entity.protocol, entity.role, entity.location) == (protocol, role, location)
    assert entity.endpoints.count() == len(endpoints)
    assert [a.name for a in entity.attributes.all()] == [a["name"] for a in attributes]
    assert (entity.signing_key is not None) == (location == LOCAL)
    assert (entity.verification_certificate is not None) == (location == REMOTE)
    assert bool(entity.runtime_urls()) == (location == LOCAL)
    assert AuditEvent.objects.filter(action="create", object_type="entities.Entity", object_repr=entity.name).exists()


def test_wsfed_needs_a_token_type_and_others_have_none():
    wsfed = {
        "location": LOCAL,
        "entity_type": EntityType.WSFED_IP,
        "entity_id": "ip",
        "name": "ip",
        "base_url": "https://ip.example.com",
    }
    assert entity_messages(es.create_entity, wsfed)["saml_token_type"] == [
        "Choose the SAML token type of this WS-Federation entity."
    ]
    saml = local_saml2_idp(saml_token_type=SamlTokenType.SAML2)
    assert entity_messages(es.create_entity, saml)["saml_token_type"] == ["Only WS-Federation entities have a SAML token type."]


# ---------------------------------------------------------------- entity IDs and names


def test_remote_entity_ids_are_unique_but_local_ones_may_repeat():
    es.create_entity(remote_saml2_sp(), [acs()])
    messages = entity_messages(es.create_entity, remote_saml2_sp(name="sp1-again"), [acs()])
    assert messages["entity_id"] == ["The remote entity 'sp1' already has this entity ID; remote entity IDs are unique."]

    # Another remote type with the same ID is refused too: remote IDs are unique on the system.
    idp = {"location": REMOTE, "entity_type": EntityType.SAML2_IDP, "entity_id": "sp1", "name": "sp1-idp"}
    sso = [{"kind": EndpointKind.SSO, "binding": Binding.HTTP_POST, "location": SSO_URL}]
    assert "entity_id" in entity_messages(es.create_entity, idp, sso)

    # Local entities may share an entity ID, with each other and with a remote one.
    es.create_entity(local_saml2_idp(entity_id="sp1", name="local-a"))
    es.create_entity(local_saml2_idp(entity_id="sp1", name="local-b"))
    assert Entity.objects.filter(entity_id="sp1").count() == 3


def test_database_refuses_a_second_remote_entity_id_and_a_name_differing_only_in_case():
    Entity.objects.create(location=REMOTE, entity_type=EntityType.SAML2_SP, entity_id="dup", name="one")
    with pytest.raises(IntegrityError), transaction.atomic():
        Entity.objects.create(location=REMOTE, entity_type=EntityType.SAML2_IDP, entity_id="dup", name="two")
    Entity.objects.create(location=LOCAL, entity_type=EntityType.SAML2_IDP, entity_id="dup", name="three")
    with pytest.raises(IntegrityError), transaction.atomic():
        Entity.objects.create(location=LOCAL, entity_type=EntityType.SAML2_IDP, entity_id="other", name="THREE")


def test_entity_names_are_unique_without_regard_to_case():
    es.create_entity(local_saml2_idp(name="IdP1"))
    messages = entity_messages(es.create_entity, local_saml2_idp(name="idp1"))
    assert messages["name"] == ["The entity name 'IdP1' is already used by another entity; entity names are unique."]


@pytest.mark.parametrize("name", ["idp 1", "idp/1", "https://idp.example.org", "idp1!", "名前"])
def test_entity_name_characters(name):
    assert entity_messages(es.create_entity, local_saml2_idp(name=name))["name"] == [
        "Use only letters, digits, '_', '-' and '.' in an entity name (no spaces)."
    ]


def test_entity_name_may_use_letters_digits_underscore_hyphen_and_period():
    assert es.create_entity(local_saml2_idp(name="Corp_IdP-1.prod")).name == "Corp_IdP-1.prod"


def test_entity_id_is_required_and_has_no_spaces():
    assert entity_messages(es.create_entity, local_saml2_idp(entity_id="  "))["entity_id"] == ["Enter the entity ID."]
    assert entity_messages(es.create_entity, local_saml2_idp(entity_id="idp 1"))["entity_id"] == [
        "An entity ID cannot contain spaces or line breaks."
    ]
    assert es.create_entity(local_saml2_idp(entity_id="  https://idp1.example.com/  ")).entity_id == "https://idp1.example.com/"


# ---------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/affwebservices", "Enter an absolute URL starting with https:// (or http://), such as https://idp.example.org/."),
        (
            "ftp://idp1.example.com",
            "Enter an absolute URL starting with https:// (or http://), such as https://idp.example.org/.",
        ),
        ("https://idp1 example.com", "A URL cannot contain spaces; encode them as %20."),
        ("https://user:pw@idp1.example.com", "Do not put a user name or password in the URL."),
        ("https://idp1.example.com/#top", "Remove the #fragment; partners do not send it to the server."),
        ("https://idp1.example.com:99999", "This is not a valid URL."),
        ("https://idp1.example.com/?a=b", "A base URL is a scheme, host, port and optional path, without ?query."),
    ],
)
def test_base_url_must_be_an_absolute_http_url(url, message):
    assert entity_messages(es.create_entity, local_saml2_idp(base_url=url))["base_url"] == [message]


def test_local_entities_need_a_base_url_and_remote_ones_have_none():
    assert entity_messages(es.create_entity, local_saml2_idp(base_url=""))["base_url"] == [
        "Enter the base URL of this site's federation runtime, e.g. https://idp.example.org."
    ]
    assert entity_messages(es.create_entity, remote_saml2_sp(base_url="https://sp1.example.com"), [acs()])["base_url"] == [
        "Only local entities have a base URL; a partner's URLs are its endpoints."
    ]


def test_https_is_required_everywhere_when_the_site_setting_says_so(settings):
    es.create_entity(local_saml2_idp(base_url="http://idp1.example.com"))
    settings.FEDERATION_REQUIRE_HTTPS = True
    https_only = "This site requires https:// for every service URL (setting FEDERATION_REQUIRE_HTTPS)."
    assert entity_messages(es.create_entity, local_saml2_idp(name="idp2", base_url="http://idp2.example.com"))["base_url"] == [
        https_only
    ]
    rows = endpoint_messages(es.create_entity, remote_saml2_sp(), [acs(url="http://sp1.example.com/acs")])
    assert rows == {0: {"location": [https_only]}}
    wsfed = {
        "location": REMOTE,
        "entity_type": EntityType.WSFED_RP,
        "saml_token_type": SamlTokenType.SAML11,
        "entity_id": "urn:federation:MicrosoftOnline",
        "name": "o365",
        "wsfed_service_url": "http://login.example.com/login.srf",
    }
    assert entity_messages(es.create_entity, wsfed)["wsfed_service_url"] == [https_only]
    assert es.create_entity(local_saml2_idp(name="idp3", base_url="https://idp3.example.com")).name == "idp3"


# ---------------------------------------------------------------- endpoints


def test_saml2_acs_cannot_use_redirect():
    rows = endpoint_messages(es.create_entity, remote_saml2_sp(), [acs(binding=Binding.HTTP_REDIRECT)])
    assert rows == {
        0: {
            "binding": [
                "A SAML2 SP assertion consumer service cannot use HTTP-Redirect; choose HTTP-POST, HTTP-Artifact or PAOS (ECP)."
            ]
        }
    }


def test_artifact_resolution_is_soap():
    row = {"kind": EndpointKind.ARTIFACT_RESOLUTION, "binding": Binding.HTTP_POST, "index": 0, "location": SSO_URL}
    sso = {"kind": EndpointKind.SSO, "binding": Binding.HTTP_POST, "location": SSO_URL}
    idp = {"location": REMOTE, "entity_type": EntityType.SAML2_IDP, "entity_id": "idp1", "name": "idp1"}
    rows = endpoint_messages(es.create_entity, idp, [sso, row])
    assert rows == {1: {"binding": ["A SAML2 IdP artifact resolution service cannot use HTTP-POST; choose SOAP."]}}


def test_saml11_acs_is_post_or_artifact():
    consumer = {"location": REMOTE, "entity_type": EntityType.SAML11_CONSUMER, "entity_id": "c1", "name": "c1"}
    rows = endpoint_messages(es.create_entity, consumer, [acs(binding=Binding.HTTP_POST)])
    assert rows[0]["binding"] == [
        "A SAML1.1 Consumer assertion consumer service cannot use HTTP-POST; choose SAML 1.1 browser/POST or SAML 1.1 browser/artifact."
    ]
    entity = es.create_entity(consumer, [acs(binding=Binding.SAML11_ARTIFACT)])
    assert entity.endpoints.get().get_binding_display() == "SAML 1.1 browser/artifact"


def test_endpoint_kind_must_fit_the_entity():
    sso = {"kind": EndpointKind.SSO, "binding": Binding.HTTP_REDIRECT, "location": SSO_URL}
    rows = endpoint_messages(es.create_entity, remote_saml2_sp(), [acs(), sso])
    assert rows[1]["kind"] == [
        "A remote SAML2 SP lists only these endpoints: assertion consumer service, single logout service, "
        "artifact resolution service, manage nameid service."
    ]


def test_local_and_wsfed_entities_have_no_endpoint_rows():
    rows = endpoint_messages(es.create_entity, local_saml2_idp(), [acs()])
    assert rows[0]["kind"] == ["A local entity's service URLs come from its base URL; endpoint rows are for remote entities."]
    wsfed = {
        "location": REMOTE,
        "entity_type": EntityType.WSFED_RP,
        "saml_token_type": SamlTokenType.SAML11,
        "entity_id": "rp",
        "name": "rp",
        "wsfed_service_url": "https://rp.example.com/",
    }
    rows = endpoint_messages(es.create_entity, wsfed, [acs()])
    assert rows[0]["kind"] == ["A WS-Fed RP entity has no SAML endpoints; use its WS-Federation URLs."]


def test_acs_indexes_are_unique_and_required():
    rows = endpoint_messages(es.create_entity, remote_saml2_sp(), [acs(0), acs(0, Binding.HTTP_ARTIFACT, default=False)])
    assert rows == {1: {"index": ["Index 0 is already used by another assertion consumer service (row 1)."]}}
    rows = endpoint_messages(es.create_entity, remote_saml2_sp(), [acs(None)])
    assert rows == {0: {"index": ["Enter an index (0, 1, …) for each assertion consumer service."]}}
    rows = endpoint_messages(es.create_entity, remote_saml2_sp(), [acs("first")])
    assert rows == {0: {"index": ["The index is a whole number: 0, 1, 2, …"]}}
    entity = es.create_entity(remote_saml2_sp(), [acs(0), acs(1, Binding.HTTP_ARTIFACT, default=False)])
    assert sorted(entity.endpoints.values_list("index", flat=True)) == [0, 1]


def test_only_indexed_endpoints_have_an_index():
    slo = {"kind": EndpointKind.SLO, "binding": Binding.HTTP_REDIRECT, "location": ACS_URL, "index": 3}
    rows = endpoint_messages(es.create_entity, remote_saml2_sp(), [acs(), slo])
    assert rows == {1: {"index": ["Only assertion consumer and artifact resolution services have an index; leave it empty."]}}


def test_at_most_one_default_per_kind():
    rows = endpoint_messages(es.create_entity, remote_saml2_sp(), [acs(0), acs(1)])
    assert rows == {1: {"is_default": ["Only one assertion consumer service can be the default (row 1 is)."]}}
    slo = {"kind": EndpointKind.SLO, "binding": Binding.HTTP_REDIRECT, "location": ACS_URL, "is_default": True}
    assert es.create_entity(remote_saml2_sp(), [acs(0), slo]).endpoints.filter(is_default=True).count() == 2


def test_database_allows_one_default_and_one_index_per_kind():
    entity = es.create_entity(remote_saml2_sp(), [acs(0)])
    with pytest.raises(IntegrityError), transaction.atomic():
        Endpoint.objects.create(
            entity=entity, kind=EndpointKind.ACS, binding=Binding.HTTP_POST, location=ACS_URL, index=1, is_default=True
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        Endpoint.objects.create(entity=entity, kind=EndpointKind.ACS, binding=Binding.HTTP_POST, location=ACS_URL, index=0)


def test_one_row_per_binding_for_slo():
    slo = {"kind": EndpointKind.SLO, "binding": Binding.HTTP_REDIRECT, "location": ACS_URL}
    rows = endpoint_messages(es.create_entity, remote_saml2_sp(), [acs(), slo, dict(slo)])
    assert rows == {2: {"binding": ["Row 2 is already the single logout service for HTTP-Redirect; keep one row per binding."]}}


def test_response_location_only_for_slo_and_manage_name_id_and_not_soap():
    row = acs()
    row["response_location"] = ACS_URL
    assert endpoint_messages(es.create_entity, remote_saml2_sp(), [row])[0]["response_location"] == [
        "Only single logout and manage NameID services have a response location."
    ]
    soap = {"kind": EndpointKind.SLO, "binding": Binding.SOAP, "location": ACS_URL, "response_location": ACS_URL}
    assert endpoint_messages(es.create_entity, remote_saml2_sp(), [acs(), soap])[1]["response_location"] == [
        "SOAP answers on the same connection; leave the response location empty."
    ]
    redirect = {
        "kind": EndpointKind.SLO,
        "binding": Binding.HTTP_REDIRECT,
        "location": ACS_URL,
        "response_location": ACS_URL + "/r",
    }
    entity = es.create_entity(remote_saml2_sp(), [acs(), redirect])
    assert entity.endpoints.get(kind=EndpointKind.SLO).response_location == ACS_URL + "/r"


def test_remote_sp_needs_an_acs_and_remote_idp_an_sso_service():
    assert entity_messages(es.create_entity, remote_saml2_sp(), [])["endpoints"] == [
        "A remote SAML2 SP needs at least one assertion consumer service URL."
    ]
    idp = {"location": REMOTE, "entity_type": EntityType.SAML2_IDP, "entity_id": "idp1", "name": "idp1"}
    assert entity_messages(es.create_entity, idp, [])["endpoints"] == [
        "A remote SAML2 IdP needs at least one single sign-on service URL."
    ]


def test_endpoint_location_is_required_and_checked():
    rows = endpoint_messages(es.create_entity, remote_saml2_sp(), [acs(url="")])
    assert rows == {0: {"location": ["Enter the location URL."]}}


# ---------------------------------------------------------------- keys


def test_key_references_must_be_of_the_right_kind(make_key_pair, trusted_cert):
    partner = trusted_cert("partner-cert")
    ca = services.import_trusted_ca_chain("root-ca", make_ca().pem)[0]
    messages = entity_messages(es.create_entity, local_saml2_idp(signing_key=partner, decryption_key="root-ca"))
    assert messages["signing_key"] == [
        "'partner-cert' is a trusted certificate. The signing key must be a key pair (a private key with its certificate)."
    ]
    assert messages["decryption_key"] == [
        "'root-ca' is a trusted ca. The decryption key must be a key pair (a private key with its certificate)."
    ]
    messages = entity_messages(es.create_entity, remote_saml2_sp(verification_certificate=ca), [acs()])
    assert messages["verification_certificate"] == [
        "'root-ca' is a trusted ca. The verification certificate must be the partner's certificate (a trusted certificate), not a CA."
    ]
    # A key pair's certificate may serve as a remote entity's certificate (e.g. a loopback test partner).
    key_pair = make_key_pair("loopback")
    entity = es.create_entity(remote_saml2_sp(verification_certificate=key_pair, encryption_certificate=partner), [acs()])
    assert (entity.verification_certificate, entity.encryption_certificate) == (key_pair, partner)


def test_unknown_alias_is_named():
    assert entity_messages(es.create_entity, local_saml2_idp(signing_key="nope"))["signing_key"] == [
        "No keystore entry has the alias 'nope'."
    ]


def test_local_entities_have_no_partner_certificates_and_remote_ones_no_key_pairs(make_key_pair, trusted_cert):
    partner = trusted_cert("partner-cert")
    assert entity_messages(es.create_entity, local_saml2_idp(verification_certificate=partner))["verification_certificate"] == [
        "A local SAML2 IdP entity has no verification certificate; leave it empty."
    ]
    assert entity_messages(es.create_entity, remote_saml2_sp(signing_key=make_key_pair("k")), [acs()])["signing_key"] == [
        "A remote SAML2 SP entity has no signing key; leave it empty."
    ]


def test_saml11_and_wsfed_entities_have_no_encryption_or_decryption_keys(make_key_pair, trusted_cert):
    key = make_key_pair("dec")
    producer = {
        "location": LOCAL,
        "entity_type": EntityType.SAML11_PRODUCER,
        "entity_id": "p",
        "name": "p",
        "base_url": "https://p.example.com",
    }
    assert entity_messages(es.create_entity, {**producer, "decryption_key": key})["decryption_key"] == [
        "A local SAML1.1 Producer entity has no decryption key; leave it empty."
    ]
    rp = {
        "location": REMOTE,
        "entity_type": EntityType.WSFED_RP,
        "saml_token_type": SamlTokenType.SAML2,
        "entity_id": "rp",
        "name": "rp",
        "wsfed_service_url": "https://rp.example.com/",
        "encryption_certificate": trusted_cert("rp-cert"),
    }
    assert entity_messages(es.create_entity, rp)["encryption_certificate"] == [
        "A remote WS-Fed RP entity has no encryption certificate; leave it empty."
    ]


def test_a_key_in_use_cannot_be_deleted_and_the_message_names_the_entity(make_key_pair):
    make_key_pair("idp1-signing")
    entity = es.create_entity(local_saml2_idp(signing_key="idp1-signing", decryption_key="idp1-signing"))
    with pytest.raises(KeystoreError) as info:
        services.delete_entry("idp1-signing")
    assert info.value.field == "alias"
    assert info.value.message == (
        "'idp1-signing' cannot be deleted: it is used by entity 'idp1' (signing key, decryption key). Choose another key for them first."
    )
    assert KeystoreEntry.objects.filter(alias="idp1-signing").exists()
    assert not AuditEvent.objects.filter(action="delete").exists()

    es.update_entity(entity, {"signing_key": None, "decryption_key": None})
    services.delete_entry("idp1-signing")
    assert not KeystoreEntry.objects.filter(alias="idp1-signing").exists()


def test_a_key_used_by_several_entities_names_them_all(make_key_pair):
    make_key_pair("shared")
    for name in ("idp-b", "idp-a"):
        es.create_entity(local_saml2_idp(name=name, signing_key="shared"))
    with pytest.raises(KeystoreError) as info:
        services.delete_entry("shared")
    assert "used by entity 'idp-a' (signing key) and entity 'idp-b' (signing key)." in info.value.message


# ---------------------------------------------------------------- NameID formats, WS-Fed, attributes


def test_saml2_only_name_id_formats_are_refused_for_saml11_assertions():
    producer = {
        "location": LOCAL,
        "entity_type": EntityType.SAML11_PRODUCER,
        "entity_id": "p",
        "name": "p",
        "base_url": "https://p.example.com",
    }
    assert entity_messages(es.create_entity, {**producer, "name_id_formats": [NameIdFormat.PERSISTENT]})["name_id_formats"] == [
        "Persistent is a SAML 2.0 NameID format; SAML 1.1 assertions cannot carry it."
    ]
    wsfed = {
        "location": LOCAL,
        "entity_type": EntityType.WSFED_IP,
        "entity_id": "ip",
        "name": "ip",
        "base_url": "https://ip.example.com",
    }
    assert "name_id_formats" in entity_messages(
        es.create_entity, {**wsfed, "saml_token_type": SamlTokenType.SAML11, "name_id_formats": [NameIdFormat.TRANSIENT]}
    )
    entity = es.create_entity(
        {**wsfed, "saml_token_type": SamlTokenType.SAML2, "name_id_formats": [NameIdFormat.TRANSIENT, NameIdFormat.TRANSIENT]}
    )
    assert entity.name_id_formats == [NameIdFormat.TRANSIENT]
    assert entity.name_id_format_labels() == ["Transient"]


def test_name_id_formats_are_uris():
    assert entity_messages(es.create_entity, local_saml2_idp(name_id_formats=["email"]))["name_id_formats"] == [
        "'email' is not a NameID format URI."
    ]


def test_wsfed_fields():
    ip = {
        "location": LOCAL,
        "entity_type": EntityType.WSFED_IP,
        "saml_token_type": SamlTokenType.SAML11,
        "entity_id": "ip",
        "name": "ip",
        "base_url": "https://ip.example.com",
    }
    assert entity_messages(es.create_entity, {**ip, "wsfed_specific_id": "microsoft-online"})["wsfed_specific_id"] == [
        "Use only letters and digits in the specific ID (no spaces or other characters)."
    ]
    assert entity_messages(es.create_entity, {**ip, "wsfed_signout_confirm_url": "signedout.jsp"})[
        "wsfed_signout_confirm_url"
    ] == ["Enter an absolute URL starting with https:// (or http://), such as https://idp.example.org/."]
    assert entity_messages(es.create_entity, {**ip, "wsfed_service_url": "https://x.example.com"})["wsfed_service_url"] == [
        "A local WS-Fed IP entity has no WS-Fed service URL; leave it empty."
    ]
    remote = {
        "location": REMOTE,
        "entity_type": EntityType.WSFED_IP,
        "saml_token_type": SamlTokenType.SAML2,
        "entity_id": "rip",
        "name": "rip",
    }
    assert entity_messages(es.create_entity, remote)["wsfed_service_url"] == ["Enter the partner's single sign-on service URL."]
    assert entity_messages(es.create_entity, local_saml2_idp(wsfed_specific_id="abc"))["wsfed_specific_id"] == [
        "A local SAML2 IdP entity has no specific ID; leave it empty."
    ]


def attribute_messages(values, attributes):
    return problems(es.create_entity, values, [], attributes)["attributes"]


def test_attributes_belong_to_asserting_entities():
    sp = {
        "location": LOCAL,
        "entity_type": EntityType.SAML2_SP,
        "entity_id": "sp",
        "name": "sp",
        "base_url": "https://sp.example.com",
    }
    rows = attribute_messages(sp, [{"name": "mail", "value_type": "user", "value": "mail"}])
    assert rows[0]["name"] == ["Only asserting entities (IdP, Producer, IP) have assertion attributes."]


def test_attribute_format_or_namespace_follows_the_saml_version():
    rows = attribute_messages(local_saml2_idp(), [{"name": "mail", "namespace": "urn:x", "value_type": "user", "value": "mail"}])
    assert rows == {0: {"namespace": ["SAML 2.0 attributes have a name format, not a namespace; leave it empty."]}}
    producer = {
        "location": LOCAL,
        "entity_type": EntityType.SAML11_PRODUCER,
        "entity_id": "p",
        "name": "p",
        "base_url": "https://p.example.com",
    }
    rows = attribute_messages(producer, [{"name": "mail", "value_type": "user", "value": "mail"}])
    assert rows == {0: {"namespace": ["Enter the attribute namespace URI; SAML 1.1 requires one."]}}
    rows = attribute_messages(
        producer, [{"name": "mail", "namespace": "u", "name_format": AttributeNameFormat.URI, "value_type": "user", "value": "m"}]
    )
    assert rows == {
        0: {
            "namespace": ["The namespace must be a URI, e.g. http://schemas.xmlsoap.org/claims."],
            "name_format": ["SAML 1.1 attributes have a namespace, not a name format; leave it empty."],
        }
    }
    rows = attribute_messages(
        local_saml2_idp(), [{"name": "mail", "name_format": AttributeNameFormat.URI, "value_type": "user", "value": "mail"}]
    )
    assert rows == {0: {"name": ["With the URI name format the name must be a URI, e.g. urn:oid:0.9.2342.19200300.100.1.3."]}}


def test_local_attribute_values_and_expressions():
    rows = attribute_messages(local_saml2_idp(), [{"name": "mail", "value_type": "user", "value": ""}])
    assert rows == {0: {"value": ["Enter the value (for a user attribute: the directory attribute name)."]}}
    rows = attribute_messages(local_saml2_idp(), [{"name": "mail", "value": "x"}])
    assert rows == {0: {"value_type": ["Choose where the value comes from: static, user attribute or expression."]}}
    rows = attribute_messages(local_saml2_idp(), [{"name": "role", "value_type": "expression", "value": '#{attr["title"] == }'}])
    assert rows == {
        0: {"value": ['Expected a value (attr["…"], session_attr["…"], a quoted string or DELETE), found `}` at position 19']}
    }
    expression = "#{attr[\"title\"] == 'manager' ? 'administrator' : attr[\"title\"]}"
    entity = es.create_entity(local_saml2_idp(), [], [{"name": "role", "value_type": "expression", "value": expression}])
    assert entity.attributes.get().value == expression


def test_remote_attributes_name_what_the_partner_sends():
    idp = {"location": REMOTE, "entity_type": EntityType.SAML2_IDP, "entity_id": "idp1", "name": "idp1"}
    sso = [{"kind": EndpointKind.SSO, "binding": Binding.HTTP_POST, "location": SSO_URL}]
    rows = problems(es.create_entity, idp, sso, [{"name": "groups", "value_type": "static", "value": "x"}])["attributes"]
    assert rows == {0: {"value": ["A remote entity's attributes only name what the partner sends; leave the value empty."]}}


def test_attribute_names_are_unique_per_entity():
    rows = attribute_messages(
        local_saml2_idp(),
        [{"name": "mail", "value_type": "user", "value": "mail"}, {"name": "mail", "value_type": "static", "value": "x"}],
    )
    assert rows == {1: {"name": ["Row 1 already defines the attribute 'mail'."]}}


def test_error_lists_every_problem_in_plain_words():
    with pytest.raises(es.EntityError) as info:
        es.create_entity(remote_saml2_sp(name="sp 1"), [acs(binding=Binding.HTTP_REDIRECT)])
    assert info.value.messages() == [
        "entity name: Use only letters, digits, '_', '-' and '.' in an entity name (no spaces).",
        "endpoint row 1, binding: A SAML2 SP assertion consumer service cannot use HTTP-Redirect; "
        "choose HTTP-POST, HTTP-Artifact or PAOS (ECP).",
    ]
    assert not Entity.objects.exists() and not Endpoint.objects.exists()


# ---------------------------------------------------------------- runtime URLs


def test_runtime_urls_of_a_local_saml2_idp():
    entity = es.create_entity(local_saml2_idp(base_url="https://idp.example.org/", name="corp-idp"))
    urls = {item.label: item.url for item in entity.runtime_urls()}
    assert urls == {
        "Single sign-on service": "https://idp.example.org/affwebservices/public/saml2sso",
        "Single logout service": "https://idp.example.org/affwebservices/public/saml2slo",
        "Single logout service (SOAP)": "https://idp.example.org/affwebservices/public/saml2slosoap",
        "Artifact resolution service": "https://idp.example.org/affwebservices/saml2artifactresolution",
        "Attribute service": "https://idp.example.org/affwebservices/saml2attributeservice",
        "Manage NameID service": "https://idp.example.org/affwebservices/public/saml2nidsoap",
        "Metadata": "https://idp.example.org/affwebservices/public/saml2metadata/corp-idp",
    }


def test_runtime_urls_of_the_other_local_types():
    sp = es.create_entity(
        {
            "location": LOCAL,
            "entity_type": EntityType.SAML2_SP,
            "entity_id": "sp1",
            "name": "sp1",
            "base_url": "https://sp1.example.com:8443",
        }
    )
    urls = {item.label: item.url for item in sp.runtime_urls()}
    assert urls["Assertion consumer service"] == "https://sp1.example.com:8443/affwebservices/public/saml2assertionconsumer"
    assert urls["AuthnRequest service"] == "https://sp1.example.com:8443/affwebservices/public/saml2authnrequest"
    assert urls["Single logout service"] == "https://sp1.example.com:8443/affwebservices/public/saml2slo"
    assert urls["Metadata"] == "https://sp1.example.com:8443/affwebservices/public/saml2metadata/sp1"

    producer = es.create_entity(
        {
            "location": LOCAL,
            "entity_type": EntityType.SAML11_PRODUCER,
            "entity_id": "p",
            "name": "p",
            "base_url": "https://p.example.com",
        }
    )
    assert [u.url for u in producer.runtime_urls()] == ["https://p.example.com/affwebservices/public/intersitetransfer"]
    consumer = es.create_entity(
        {
            "location": LOCAL,
            "entity_type": EntityType.SAML11_CONSUMER,
            "entity_id": "c",
            "name": "c",
            "base_url": "https://c.example.com",
        }
    )
    assert [u.url for u in consumer.runtime_urls()] == ["https://c.example.com/affwebservices/public/samlcc"]

    ip = es.create_entity(
        {
            "location": LOCAL,
            "entity_type": EntityType.WSFED_IP,
            "saml_token_type": SamlTokenType.SAML11,
            "entity_id": "ip",
            "name": "ip",
            "base_url": "https://ip.example.com",
            "wsfed_specific_id": "microsoftonline",
        }
    )
    assert ip.runtime_urls()[0].url == "https://ip.example.com/affwebservices/public/wsfeddispatcher/microsoftonline"
    rp = es.create_entity(
        {
            "location": LOCAL,
            "entity_type": EntityType.WSFED_RP,
            "saml_token_type": SamlTokenType.SAML2,
            "entity_id": "rp",
            "name": "rp",
            "base_url": "https://rp.example.com",
        }
    )
    assert rp.runtime_urls()[0].url == "https://rp.example.com/affwebservices/public/wsfeddispatcher"

    remote = es.create_entity(remote_saml2_sp(name="remote-sp1"), [acs()])
    assert remote.runtime_urls() == []


def test_runtime_paths_are_one_table_of_constants():
    assert runtime_paths.SAML2_SSO == "/affwebservices/public/saml2sso"
    assert runtime_paths.SAML2_ARTIFACT_RESOLUTION == "/affwebservices/saml2artifactresolution"
    assert runtime_paths.WSFED_DISPATCHER == "/affwebservices/public/wsfeddispatcher"
    assert runtime_paths.local_service_urls("", "saml2", "asserting") == []
    assert runtime_paths.saml2_metadata_path("a b") == "/affwebservices/public/saml2metadata/a%20b"


# ---------------------------------------------------------------- update, delete, audit


def test_update_changes_fields_and_rows_and_audits_each_change():
    entity = es.create_entity(remote_saml2_sp(), [acs(0), acs(1, Binding.HTTP_ARTIFACT, default=False)])
    first, second = entity.endpoints.order_by("position")
    AuditEvent.objects.all().delete()

    # Move the default from row 1 to row 2 and swap their indexes: never half-way through a unique constraint.
    es.update_entity(
        entity,
        {"entity_id": "https://sp1.example.com/"},
        endpoints=[acs(1, default=False), acs(0, Binding.HTTP_ARTIFACT, default=True)],
    )
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.index, first.is_default, second.index, second.is_default) == (1, False, 0, True)
    events = {(e.object_type, e.action): e.changes for e in AuditEvent.objects.all()}
    assert events[("entities.Entity", "update")] == {"entity_id": ["sp1", "https://sp1.example.com/"]}
    endpoint_updates = AuditEvent.objects.filter(object_type="entities.Endpoint", action="update")
    assert endpoint_updates.count() == 2
    assert {"index": ["0", "1"], "is_default": ["True", "False"]} == endpoint_updates.get(object_id=str(first.pk)).changes

    es.update_entity(entity, {}, endpoints=[acs(0)])
    assert entity.endpoints.count() == 1
    assert AuditEvent.objects.filter(object_type="entities.Endpoint", action="delete").count() == 1


def test_update_keeps_attribute_rows_by_name():
    entity = es.create_entity(local_saml2_idp(), [], [{"name": "mail", "value_type": "user", "value": "mail"}])
    row = entity.attributes.get()
    es.update_entity(
        entity,
        {},
        attributes=[
            {"name": "groups", "value_type": "user", "value": "memberOf"},
            {"name": "mail", "value_type": "user", "value": "email"},
        ],
    )
    assert [(a.name, a.value, a.position) for a in entity.attributes.all()] == [("groups", "memberOf", 0), ("mail", "email", 1)]
    assert entity.attributes.get(name="mail").pk == row.pk
    es.update_entity(entity, {}, attributes=[])
    assert not EntityAttribute.objects.exists()


def test_location_and_type_cannot_change():
    entity = es.create_entity(local_saml2_idp())
    messages = entity_messages(es.update_entity, entity, {"location": REMOTE, "entity_type": EntityType.SAML2_SP})
    assert messages["location"] == [
        "The location, type and SAML token type of an entity cannot be changed; create a new entity instead."
    ]
    assert messages["entity_type"] == [
        "The location, type and SAML token type of an entity cannot be changed; create a new entity instead."
    ]
    entity.refresh_from_db()
    assert (entity.location, entity.entity_type) == (LOCAL, EntityType.SAML2_IDP)
    ip = es.create_entity(
        {
            "location": LOCAL,
            "entity_type": EntityType.WSFED_IP,
            "saml_token_type": SamlTokenType.SAML11,
            "entity_id": "ip",
            "name": "ip",
            "base_url": "https://ip.example.com",
        }
    )
    assert "saml_token_type" in entity_messages(es.update_entity, ip, {"saml_token_type": SamlTokenType.SAML2})
    assert es.update_entity(ip, {"saml_token_type": SamlTokenType.SAML11, "entity_id": "ip2"}).entity_id == "ip2"


def test_a_refused_update_changes_nothing():
    entity = es.create_entity(local_saml2_idp())
    es.create_entity(local_saml2_idp(name="other"))
    assert entity_messages(es.update_entity, entity, {"name": "OTHER", "base_url": "https://new.example.com"})["name"]
    entity.refresh_from_db()
    assert (entity.name, entity.base_url) == ("idp1", "https://idp1.example.com")
    # Renaming to itself with another case is fine (the entity is not its own duplicate).
    assert es.update_entity(entity, {"name": "IDP1"}).name == "IDP1"


def test_delete_entity_removes_rows_and_audits():
    entity = es.create_entity(remote_saml2_sp(), [acs()])
    assert es.deletion_blockers(entity) == []
    es.delete_entity(entity)
    assert not Entity.objects.exists() and not Endpoint.objects.exists()
    deleted = set(AuditEvent.objects.filter(action="delete").values_list("object_type", flat=True))
    assert deleted == {"entities.Entity", "entities.Endpoint"}
    assert entity_messages(es.delete_entity, "sp1")["name"] == ["No entity is named 'sp1'."]


def test_reference_descriptions_name_the_field():
    from entities import references

    key = services.generate_key_pair("k1", "ec-p256", "CN=k1", 30)
    entity = es.create_entity(local_saml2_idp(signing_key=key))
    assert references.blocking_references(key) == [entity]
    assert references.describe(entity, key) == "entity 'idp1' (signing key)"
    assert references.blocking_references(entity) == []


@pytest.mark.django_db
def test_next_signing_key_is_for_local_entities_and_differs_from_the_signing_key(make_key_pair):
    from django.core.exceptions import ValidationError

    from entities.models import Entity

    current, following = make_key_pair("idp-2026"), make_key_pair("idp-2027")
    entity = Entity(
        location="local",
        entity_type="saml2_idp",
        entity_id="idp",
        name="idp",
        base_url="https://idp.example.org",
        signing_key=current,
        next_signing_key=following,
    )
    entity.full_clean()
    entity.next_signing_key = current
    with pytest.raises(ValidationError, match="must differ from the current signing key"):
        entity.full_clean()
    remote = Entity(location="remote", entity_type="saml2_sp", entity_id="sp", name="sp", next_signing_key=following)
    with pytest.raises(ValidationError) as error:
        remote.clean()
    assert "next_signing_key" in error.value.message_dict
