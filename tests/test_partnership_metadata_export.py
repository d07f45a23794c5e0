"""Partnership-level metadata export (partnerships.metadata, reference ch01-08 F6.7): a SAML2 IdP→SP and a SAML2
SP→IdP partnership (tests/partnership_fixtures.py) exported with the partnership's own bindings, NameID format, keys
and signing flags; every document validated against the SAML 2.0 metadata XSD, signed and verified by our verifier,
by pysaml2 (xmlsec1) and by python3-saml, loaded by pysaml2's MetadataStore and python3-saml's metadata parser; a
SAML 1.1 and a WS-Fed partnership; the console dialog (download, Active → read-only but for the validity and the key
aliases, plain messages for expired keys); and `manage.py metadata_export --partnership` as a real process."""

import warnings
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pysaml2 still imports CFB from its old place in cryptography
    from saml2 import BINDING_HTTP_ARTIFACT, BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, BINDING_SOAP
    from saml2.attribute_converter import ac_factory
    from saml2.config import IdPConfig
    from saml2.mdstore import MetaDataFile, MetadataStore
    from saml2.s_utils import UnsupportedBinding
    from saml2.sigver import security_context

from entities import entity_services
from entities import metadata_export as me
from entities import services as keystore
from entities.models import AttributeNameFormat, Binding, EndpointKind, EntityType, KeystoreEntry, Location, SamlTokenType
from federation import runtime_paths
from federation.models import AuditEvent
from federation.saml import constants as c
from federation.saml import signing
from federation.saml.keys import certificate_base64, certificate_pem
from federation.saml.xml import parse_xml
from partnerships import config_io, services
from partnerships import metadata as pm
from partnerships.models import PartnershipState
from tests.partnership_fixtures import SP_ACS, endpoint, entity
from tests.processes import embedded_env, manage, migrated_env
from tests.test_metadata_export import NS, XSI_TYPE, expired_key_pair, key_descriptor_certs, one, services_of, validate
from tests.test_metadata_export_interop import certs_read_by_pysaml2, pysaml2_config, write

pytestmark = pytest.mark.django_db

IDP_SP, SP_IDP = "saml2_idp_sp", "saml2_sp_idp"
IDP_BASE, SP_BASE = "https://idp-local.example", "https://sp-local.example"
IDP_ID, SP_ID = "https://idp-local.example/", "https://sp-local.example/"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
IDP_ATTRIBUTES = [
    {"name": "mail", "name_format": AttributeNameFormat.BASIC, "value_type": "user", "value": "mailPrimaryAddress"},
    {
        "name": "urn:oid:1.3.6.1.4.1.5923.1.1.1.7",
        "name_format": AttributeNameFormat.URI,
        "value_type": "expression",
        "value": '#{attr["title"] == "manager" ? "staff-manager" : "staff"}',
    },
]


def at(base, path):
    return runtime_paths.join(base, path)


def export(partnership, **options):
    next_signing_alias = options.pop("next_signing_alias", None)
    return pm.export_partnership_metadata(partnership, me.ExportOptions(**options), next_signing_alias=next_signing_alias)


def update(partnership, **steps):
    """Save the partnership again with some step values changed (what the wizard's Modify does)."""
    settings = {step: dict(values) for step, values in partnership.settings.items()}
    for step, values in steps.items():
        settings[step].update(values)
    return services.save_partnership(
        partnership,
        kind=partnership.kind,
        name=partnership.name,
        local_entity=partnership.local_entity,
        remote_entity=partnership.remote_entity,
        directories=services.directory_names(partnership),
        settings=settings,
    )


def key(alias):
    return KeystoreEntry.objects.get(alias=alias)


def signing_certs(descriptor):
    return key_descriptor_certs(descriptor, "signing")


@pytest.fixture
def idp_to_sp(make_partnership, saml2_idp_sp):
    """A Defined SAML2 IdP→SP partnership: AuthnRequests on POST only, assertions by POST and Artifact, SOAP single
    logout, signed AuthnRequests required, the SP's Persistent format, two assertion attributes. The partner SP gets
    the Artifact ACS and the SOAP SLO service those need."""
    local, remote = saml2_idp_sp
    remote = entity_services.update_entity(
        remote,
        {},
        endpoints=[
            endpoint(EndpointKind.ACS, Binding.HTTP_POST, SP_ACS, index=0, is_default=True),
            endpoint(EndpointKind.ACS, Binding.HTTP_ARTIFACT, SP_ACS, index=1),
            endpoint(EndpointKind.SLO, Binding.SOAP, "https://sp.partner.example/slo/soap"),
        ],
    )
    partnership = make_partnership(
        "idp-to-sp",
        IDP_SP,
        local,
        remote,
        settings={
            "assertion": {"attributes": IDP_ATTRIBUTES},
            "sso_slo": {
                "authn_request_bindings": ["post"],
                "sso_bindings": ["post", "artifact"],
                "slo_enabled": True,
                "slo_bindings": ["soap"],
            },
            "signature": {"require_signed_authn_requests": True},
        },
    )
    assert partnership.state == PartnershipState.DEFINED, partnership.problems
    return partnership


@pytest.fixture
def sp_to_idp(make_partnership, saml2_sp_idp):
    """A Defined SAML2 SP→IdP partnership: assertions by Artifact only, signed AuthnRequests, AllowCreate, legacy
    encryption accepted (the SP's signing key is also its decryption key). The partner IdP gets the artifact
    resolution service Artifact needs."""
    local, remote = saml2_sp_idp
    remote = entity_services.update_entity(
        remote,
        {},
        endpoints=[
            *(
                {"kind": e.kind, "binding": e.binding, "location": e.location, "is_default": e.is_default}
                for e in remote.endpoints.all()
            ),
            endpoint(EndpointKind.ARTIFACT_RESOLUTION, Binding.SOAP, "https://idp.partner.example/ars", index=0, is_default=True),
        ],
    )
    partnership = make_partnership(
        "sp-to-idp",
        SP_IDP,
        local,
        remote,
        settings={
            "sso_slo": {"sso_bindings": ["artifact"]},
            "user_identification": {"allow_create": True},
            "signature": {"sign_authn_requests": True, "require_signed_assertions": True, "accept_legacy_encryption": True},
        },
    )
    assert partnership.state == PartnershipState.DEFINED, partnership.problems
    return partnership


# ---------------------------------------------------------------- SAML2 IdP → SP


def test_idp_partnership_publishes_its_own_bindings_format_attributes_and_flags(idp_to_sp):
    result = export(idp_to_sp, sign_with=key("idp-signing"), valid_days=30)
    assert result.filename == "idp-to-sp-metadata.xml" and result.entity_id == IDP_ID
    root = validate(result.xml)
    assert signing.verify(root, root, [key("idp-signing").certificate()]).get("entityID") == IDP_ID
    assert root.get("validUntil")
    idp = one(root, "md:IDPSSODescriptor")
    assert idp.get("protocolSupportEnumeration") == c.PROTOCOL_SAML2
    assert idp.get("WantAuthnRequestsSigned") == "true"
    # Only what the partnership enables: AuthnRequests on POST (not Redirect), artifact resolution (Artifact is on),
    # SLO over SOAP only; no Manage Name ID and no attribute service (both off).
    assert services_of(idp, "SingleSignOnService") == [(c.BINDING_HTTP_POST, at(IDP_BASE, runtime_paths.SAML2_SSO), None, None)]
    assert services_of(idp, "SingleLogoutService") == [(c.BINDING_SOAP, at(IDP_BASE, runtime_paths.SAML2_SLO_SOAP), None, None)]
    assert services_of(idp, "ArtifactResolutionService") == [
        (c.BINDING_SOAP, at(IDP_BASE, runtime_paths.SAML2_ARTIFACT_RESOLUTION), "0", "true")
    ]
    assert not idp.findall("md:ManageNameIDService", NS) and not root.findall("md:AttributeAuthorityDescriptor", NS)
    assert [e.text for e in idp.findall("md:NameIDFormat", NS)] == [c.NAMEID_PERSISTENT]  # the assertion step's format
    assert [(a.get("Name"), a.get("NameFormat")) for a in idp.findall("saml:Attribute", NS)] == [
        ("mail", AttributeNameFormat.BASIC),
        ("urn:oid:1.3.6.1.4.1.5923.1.1.1.7", AttributeNameFormat.URI),
    ]
    assert not idp.findall("saml:Attribute/saml:AttributeValue", NS)
    assert b"mailPrimaryAddress" not in result.xml and b"staff-manager" not in result.xml  # names, never values
    assert signing_certs(idp) == [certificate_base64(key("idp-signing").certificate())]
    assert key_descriptor_certs(idp, "encryption") == []  # the local IdP entity has no decryption key


def test_idp_partnership_metadata_loads_in_pysaml2_and_python3saml(idp_to_sp, tmp_path):
    entry = key("idp-signing")
    result = export(idp_to_sp, sign_with=entry, valid_days=7)
    metadata_file = write(tmp_path, "idp.xml", result.xml)
    config = pysaml2_config()
    checked = MetaDataFile(
        ac_factory(),
        metadata_file,
        cert=write(tmp_path, "idp.crt", certificate_pem(entry.certificate())),
        security=security_context(config),
    )
    assert checked.load() is True  # pysaml2 verified the signature with xmlsec1
    store = MetadataStore(ac_factory(), config)
    store.load("local", metadata_file)
    sso = at(IDP_BASE, runtime_paths.SAML2_SSO)
    assert [s["location"] for s in store.single_sign_on_service(IDP_ID, BINDING_HTTP_POST)] == [sso]
    with pytest.raises(UnsupportedBinding):  # HTTP-Redirect is not enabled for AuthnRequests
        store.single_sign_on_service(IDP_ID, BINDING_HTTP_REDIRECT)
    assert [s["location"] for s in store.single_logout_service(IDP_ID, BINDING_SOAP, "idpsso")] == [
        at(IDP_BASE, runtime_paths.SAML2_SLO_SOAP)
    ]
    with pytest.raises(UnsupportedBinding):
        store.single_logout_service(IDP_ID, BINDING_HTTP_REDIRECT, "idpsso")
    assert certs_read_by_pysaml2(store, IDP_ID, "idpsso", "signing") == [certificate_base64(entry.certificate())]

    xml = result.xml.decode()
    data = OneLogin_Saml2_IdPMetadataParser.parse(
        xml, required_sso_binding=c.BINDING_HTTP_POST, required_slo_binding=c.BINDING_SOAP
    )
    assert data["idp"]["entityId"] == IDP_ID
    assert data["idp"]["singleSignOnService"] == {"url": sso, "binding": c.BINDING_HTTP_POST}
    assert data["idp"]["singleLogoutService"]["url"] == at(IDP_BASE, runtime_paths.SAML2_SLO_SOAP)
    assert data["idp"]["x509cert"] == certificate_base64(entry.certificate())
    assert data["sp"]["NameIDFormat"] == c.NAMEID_PERSISTENT
    assert data["security"] == {"authnRequestsSigned": True}
    assert (
        "singleSignOnService"
        not in OneLogin_Saml2_IdPMetadataParser.parse(xml, required_sso_binding=c.BINDING_HTTP_REDIRECT)["idp"]
    )
    assert OneLogin_Saml2_Utils.validate_metadata_sign(xml, cert=certificate_pem(entry.certificate()).decode())


def test_the_document_follows_the_partnership_settings(idp_to_sp, make_partnership, saml2_idp_sp):
    before = validate(export(idp_to_sp).xml)
    changed = update(
        idp_to_sp,
        assertion={"name_id_format": EMAIL, "attributes": IDP_ATTRIBUTES[:1]},
        sso_slo={
            "authn_request_bindings": ["redirect", "post"],
            "sso_bindings": ["post"],
            "slo_enabled": False,
            "mni_enabled": True,
            "attribute_service_enabled": True,
        },
        signature={"require_signed_authn_requests": False},
    )
    after = validate(export(changed).xml)
    idp_before, idp_after = one(before, "md:IDPSSODescriptor"), one(after, "md:IDPSSODescriptor")
    assert [e.text for e in idp_before.findall("md:NameIDFormat", NS)] == [c.NAMEID_PERSISTENT]
    assert [e.text for e in idp_after.findall("md:NameIDFormat", NS)] == [EMAIL]
    assert [s[0] for s in services_of(idp_after, "SingleSignOnService")] == [c.BINDING_HTTP_REDIRECT, c.BINDING_HTTP_POST]
    assert idp_after.get("WantAuthnRequestsSigned") == "false"
    assert services_of(idp_after, "SingleLogoutService") == [] and services_of(idp_after, "ArtifactResolutionService") == []
    assert services_of(idp_after, "ManageNameIDService") == [
        (c.BINDING_SOAP, at(IDP_BASE, runtime_paths.SAML2_MANAGE_NAME_ID_SOAP), None, None)
    ]
    authority = one(after, "md:AttributeAuthorityDescriptor")
    assert services_of(authority, "AttributeService") == [
        (c.BINDING_SOAP, at(IDP_BASE, runtime_paths.SAML2_ATTRIBUTE_SERVICE), None, None)
    ]
    assert [a.get("Name") for a in idp_after.findall("saml:Attribute", NS)] == ["mail"]

    # Another partnership of the same local entity publishes its own values, with its own base URL and key.
    keystore.generate_key_pair("idp-signing-2", "rsa2048", "CN=idp2.example", 365, [])
    other = make_partnership(
        "idp-to-sp-2",
        IDP_SP,
        *saml2_idp_sp,
        settings={"configure": {"base_url": "https://sso.example.net/"}, "signature": {"signing_key": "idp-signing-2"}},
    )
    root = validate(export(other).xml)
    idp = one(root, "md:IDPSSODescriptor")
    assert {s[1] for s in services_of(idp, "SingleSignOnService")} == {at("https://sso.example.net", runtime_paths.SAML2_SSO)}
    assert signing_certs(idp) == [certificate_base64(key("idp-signing-2").certificate())]
    assert idp.get("WantAuthnRequestsSigned") == "false"


def test_single_logout_is_not_published_while_the_session_store_is_off(idp_to_sp, settings):
    assert services_of(one(validate(export(idp_to_sp).xml), "md:IDPSSODescriptor"), "SingleLogoutService") != []
    settings.FEDERATION_SESSION_STORE = False  # SLO needs the session store; the runtime would not serve it
    assert services_of(one(validate(export(idp_to_sp).xml), "md:IDPSSODescriptor"), "SingleLogoutService") == []


def test_rollover_announces_the_next_signing_key(idp_to_sp):
    keystore.generate_key_pair("idp-next", "rsa2048", "CN=idp-next.example", 365, [])
    assert signing_certs(one(validate(export(idp_to_sp, next_signing_alias="idp-next").xml), "md:IDPSSODescriptor")) == [
        certificate_base64(key("idp-signing").certificate()),
        certificate_base64(key("idp-next").certificate()),
    ]
    expired_key_pair("idp-next-old")
    with pytest.raises(
        me.MetadataExportError, match="The next signing key 'idp-next-old' has a certificate that expired"
    ) as caught:
        export(idp_to_sp, next_signing_alias="idp-next-old")
    assert caught.value.field == "next_signing_key"


def test_an_incomplete_partnership_exports_what_it_has(make_partnership, saml2_idp_sp):
    local, _remote = saml2_idp_sp
    partnership = make_partnership("idp-later", IDP_SP, local, None)
    assert partnership.state == PartnershipState.INCOMPLETE
    root = validate(export(partnership, sign_with=key("idp-signing")).xml)
    signing.verify(root, root, [key("idp-signing").certificate()])
    idp = one(root, "md:IDPSSODescriptor")
    assert [s[0] for s in services_of(idp, "SingleSignOnService")] == [c.BINDING_HTTP_REDIRECT, c.BINDING_HTTP_POST]
    assert services_of(idp, "ArtifactResolutionService") == []  # POST only by default


def test_keys_the_partner_could_not_use_are_refused_in_plain_words(idp_to_sp):
    expired_key_pair("idp-expired")
    stale = update(idp_to_sp, signature={"signing_key": "idp-expired"})
    with pytest.raises(me.MetadataExportError) as caught:
        export(stale)
    assert caught.value.message.startswith(
        "The signing key 'idp-expired' of partnership 'idp-to-sp' has a certificate that expired on"
    )
    keyless = update(idp_to_sp, signature={"signing_key": ""})
    with pytest.raises(
        me.MetadataExportError, match="Partnership 'idp-to-sp' has no signing key pair, so partners could not verify"
    ):
        export(keyless)
    no_requests = update(idp_to_sp, sso_slo={"authn_request_bindings": []})
    with pytest.raises(me.MetadataExportError, match="accepts AuthnRequests on no binding"):
        export(no_requests)
    with pytest.raises(me.MetadataExportError, match="always uses the partnership's name"):
        export(idp_to_sp, partnership_name="another-name")


def test_an_active_partnership_only_takes_a_new_validity_and_signing_key(idp_to_sp):
    services.activate(idp_to_sp)
    idp_to_sp.refresh_from_db()
    other = keystore.generate_key_pair("metadata-signer", "ec-p256", "CN=metadata.example", 365, [])
    result = export(idp_to_sp, valid_days=3, sign_with=other)
    root = validate(result.xml)
    signing.verify(root, root, [other.certificate()])
    assert result.algorithm == "ecdsa-sha256"  # the partnership's RSA-SHA256 does not suit an EC key
    # Its own values restated are not changes.
    export(idp_to_sp, entity_id=IDP_ID, overrides={"want_authn_requests_signed": True})
    for options, field in (
        ({"entity_id": "urn:other"}, "entity_id"),
        ({"overrides": {"want_authn_requests_signed": False}}, "want_authn_requests_signed"),
        ({"cache_duration": timedelta(hours=1)}, "cache_hours"),
    ):
        with pytest.raises(
            me.MetadataExportError, match="is active: only the validity and the key aliases can be changed"
        ) as caught:
            export(idp_to_sp, **options)
        assert caught.value.field == field


def test_the_partnership_signature_algorithm_signs_the_file_when_it_suits_the_key(idp_to_sp):
    sha512 = update(idp_to_sp, signature={"signature_algorithm": "rsa-sha512"})
    result = export(sha512, sign_with=key("idp-signing"))
    assert result.algorithm == "rsa-sha512"
    assert one(parse_xml(result.xml), "ds:Signature/ds:SignedInfo/ds:SignatureMethod").get("Algorithm") == c.RSA_SHA512
    assert export(sha512, sign_with=key("idp-signing"), algorithm="rsa-sha256").algorithm == "rsa-sha256"


# ---------------------------------------------------------------- SAML2 SP → IdP


def test_sp_partnership_publishes_its_acs_bindings_flags_and_keys(sp_to_idp):
    result = export(sp_to_idp, sign_with=key("sp-signing"), valid_days=1)
    assert result.filename == "sp-to-idp-metadata.xml"
    root = validate(result.xml)
    signing.verify(root, root, [key("sp-signing").certificate()])
    sp = one(root, "md:SPSSODescriptor")
    assert sp.get("AuthnRequestsSigned") == "true" and sp.get("WantAssertionsSigned") == "true"
    acs = at(SP_BASE, runtime_paths.SAML2_ASSERTION_CONSUMER)
    assert services_of(sp, "AssertionConsumerService") == [(c.BINDING_HTTP_ARTIFACT, acs, "1", "true")]  # Artifact only
    assert services_of(sp, "SingleLogoutService") == [] and services_of(sp, "ManageNameIDService") == []
    assert [e.text for e in sp.findall("md:NameIDFormat", NS)] == [c.NAMEID_PERSISTENT]  # AllowCreate asks for Persistent
    certificate = certificate_base64(key("sp-signing").certificate())
    assert signing_certs(sp) == [certificate] and key_descriptor_certs(sp, "encryption") == [certificate]
    methods = [e.get("Algorithm") for e in sp.findall("md:KeyDescriptor[@use='encryption']/md:EncryptionMethod", NS)]
    assert methods == [*me.ENCRYPTION_METHODS, c.TRIPLEDES_CBC, c.RSA_1_5]  # legacy accepted by this partnership


def test_sp_partnership_metadata_loads_in_pysaml2_and_python3saml(sp_to_idp, tmp_path):
    result = export(sp_to_idp, sign_with=key("sp-signing"), valid_days=1)
    config = pysaml2_config(IdPConfig, entityid="https://idp.partner.example/idp")
    store = MetadataStore(ac_factory(), config)
    store.load("local", write(tmp_path, "sp.xml", result.xml))
    acs = at(SP_BASE, runtime_paths.SAML2_ASSERTION_CONSUMER)
    assert [s["location"] for s in store.assertion_consumer_service(SP_ID, BINDING_HTTP_ARTIFACT)] == [acs]
    with pytest.raises(UnsupportedBinding):  # assertions travel by Artifact only
        store.assertion_consumer_service(SP_ID, BINDING_HTTP_POST)
    assert certs_read_by_pysaml2(store, SP_ID, "spsso", "encryption") == [certificate_base64(key("sp-signing").certificate())]

    xml = result.xml.decode()
    settings = OneLogin_Saml2_Settings(
        {"sp": {"entityId": "urn:x", "assertionConsumerService": {"url": acs}}}, sp_validation_only=True
    )
    assert settings.validate_metadata(xml) == []
    assert OneLogin_Saml2_Utils.validate_metadata_sign(xml, cert=certificate_pem(key("sp-signing").certificate()).decode())
    # python3-saml's metadata parser reads no IdP in an SP's metadata, and says so by returning nothing for it.
    assert OneLogin_Saml2_IdPMetadataParser.parse(xml) == {}


def test_sp_partnership_follows_its_settings(sp_to_idp):
    changed = update(
        sp_to_idp,
        sso_slo={"sso_bindings": ["post", "artifact"], "slo_enabled": True, "slo_bindings": ["redirect", "post"]},
        user_identification={"allow_create": False},
        signature={"sign_authn_requests": False, "accept_legacy_encryption": False, "decryption_key": ""},
    )
    sp = one(validate(export(changed).xml), "md:SPSSODescriptor")
    acs = at(SP_BASE, runtime_paths.SAML2_ASSERTION_CONSUMER)
    assert services_of(sp, "AssertionConsumerService") == [
        (c.BINDING_HTTP_POST, acs, "0", "true"),
        (c.BINDING_HTTP_ARTIFACT, acs, "1", None),
    ]
    assert [s[0] for s in services_of(sp, "SingleLogoutService")] == [c.BINDING_HTTP_REDIRECT, c.BINDING_HTTP_POST]
    assert sp.get("AuthnRequestsSigned") == "false"
    assert sp.findall("md:NameIDFormat", NS) == []  # no AllowCreate, and the local SP entity lists no format
    assert key_descriptor_certs(sp, "encryption") == []  # no decryption key: nothing to encrypt to


def test_disabled_signature_processing_states_that_nothing_is_signed(sp_to_idp):
    sp = one(validate(export(update(sp_to_idp, signature={"disable_signature_processing": True})).xml), "md:SPSSODescriptor")
    assert sp.get("AuthnRequestsSigned") == "false" and sp.get("WantAssertionsSigned") == "false"
    assert signing_certs(sp) == []


# ---------------------------------------------------------------- SAML 1.1 and WS-Federation


def test_saml11_partnerships_use_saml2_metadata_terms_with_the_saml11_protocol(make_partnership):
    keystore.generate_key_pair("producer-signing", "rsa2048", "CN=producer.example", 365, [])
    producer = entity("producer-local", Location.LOCAL, EntityType.SAML11_PRODUCER, signing_key="producer-signing")
    consumer = entity("consumer-local", Location.LOCAL, EntityType.SAML11_CONSUMER)
    remote_consumer = entity(
        "consumer-partner",
        Location.REMOTE,
        EntityType.SAML11_CONSUMER,
        [endpoint(EndpointKind.ACS, Binding.SAML11_POST, "https://consumer.partner.example/acs", 0, True)],
    )
    to_consumer = make_partnership(
        "producer-to-consumer",
        "saml11_producer_consumer",
        producer,
        remote_consumer,
        settings={
            "assertion": {
                "name_id_format": EMAIL,
                "attributes": [
                    {"name": "groups", "namespace": "urn:example:attributes", "value_type": "user", "value": "memberOf"}
                ],
            }
        },
    )
    root = validate(export(to_consumer, sign_with=key("producer-signing")).xml)
    signing.verify(root, root, [key("producer-signing").certificate()])
    descriptor = one(root, "md:IDPSSODescriptor")
    assert descriptor.get("protocolSupportEnumeration") == c.PROTOCOL_SAML11
    assert services_of(descriptor, "SingleSignOnService") == [
        (
            me.SAML11_BINDING_AUTHN_REQUEST,
            at("https://producer-local.example", runtime_paths.SAML11_INTERSITE_TRANSFER),
            None,
            None,
        )
    ]
    assert [e.text for e in descriptor.findall("md:NameIDFormat", NS)] == [EMAIL]
    assert [(a.get("Name"), a.get("NameFormat")) for a in descriptor.findall("saml:Attribute", NS)] == [
        ("groups", "urn:example:attributes")
    ]
    assert key_descriptor_certs(descriptor, "encryption") == [] and "WantAuthnRequestsSigned" not in descriptor.attrib

    from_producer = make_partnership(
        "consumer-from-producer", "saml11_consumer_producer", consumer, None, settings={"sso_slo": {"sso_bindings": ["post"]}}
    )
    root = validate(export(from_producer).xml)
    descriptor = one(root, "md:SPSSODescriptor")
    assert descriptor.get("protocolSupportEnumeration") == c.PROTOCOL_SAML11
    assert services_of(descriptor, "AssertionConsumerService") == [
        (c.SAML1_PROFILE_BROWSER_POST, at("https://consumer-local.example", runtime_paths.SAML11_CONSUMER), "0", "true")
    ]
    assert signing_certs(descriptor) == []  # a consumer signs nothing


def test_wsfed_partnership_is_a_security_token_service_at_its_base_url(make_partnership, admin_client):
    keystore.generate_key_pair("ip-signing", "rsa2048", "CN=ip.example", 365, [])
    ip = entity(
        "ip-local",
        Location.LOCAL,
        EntityType.WSFED_IP,
        signing_key="ip-signing",
        saml_token_type=SamlTokenType.SAML11,
        wsfed_specific_id="office365",
    )
    partnership = make_partnership(
        "ip-to-office",
        "wsfed_ip_rp",
        ip,
        None,
        settings={
            "configure": {"base_url": "https://sts.example.net"},
            "assertion": {
                "attributes": [
                    {"name": "UPN", "namespace": "http://schemas.xmlsoap.org/claims", "value_type": "user", "value": "uid"},
                ]
            },
        },
    )
    result = export(partnership, sign_with=key("ip-signing"), valid_days=2)
    root = validate(result.xml)
    signing.verify(root, root, [key("ip-signing").certificate()])
    descriptor = one(root, "md:RoleDescriptor")
    assert descriptor.get(XSI_TYPE) == "fed:SecurityTokenServiceType"
    dispatcher = at("https://sts.example.net", runtime_paths.wsfed_dispatcher_path("office365"))
    assert [e.text for e in descriptor.findall("fed:PassiveRequestorEndpoint/wsa:EndpointReference/wsa:Address", NS)] == [
        dispatcher
    ]
    assert [e.get("Uri") for e in descriptor.findall("fed:TokenTypesOffered/fed:TokenType", NS)] == [c.TOKEN_TYPE_SAML11]
    assert [e.get("Uri") for e in descriptor.findall("fed:ClaimTypesOffered/auth:ClaimType", NS)] == [
        "http://schemas.xmlsoap.org/claims/UPN"
    ]
    assert signing_certs(descriptor) == [certificate_base64(key("ip-signing").certificate())]
    assert not root.findall("md:IDPSSODescriptor", NS)
    page = admin_client.get(reverse("partnerships:export_metadata", args=[partnership.pk]))
    assert page.status_code == 200 and dispatcher in page.content.decode()
    assert not {"want_authn_requests_signed", "authn_requests_signed", "want_assertions_signed"} & set(
        page.context["form"].fields
    )


# ---------------------------------------------------------------- console


def export_url(partnership):
    return reverse("partnerships:export_metadata", args=[partnership.pk])


def test_detail_page_offers_export_to_administrators_also_while_active(admin_client, auditor_user, idp_to_sp):
    detail = reverse("partnerships:detail", args=[idp_to_sp.pk])
    link = f'href="{export_url(idp_to_sp)}"'
    assert link in admin_client.get(detail).content.decode()
    services.activate(idp_to_sp)
    assert link in admin_client.get(detail).content.decode()
    auditor = Client()
    auditor.force_login(auditor_user)
    assert link not in auditor.get(detail).content.decode()
    assert auditor.get(export_url(idp_to_sp)).status_code == 403
    assert auditor.post(export_url(idp_to_sp), {"entity_id": IDP_ID}).status_code == 403


def test_dialog_starts_at_the_partnership_values_and_downloads_the_file(admin_client, idp_to_sp):
    response = admin_client.get(export_url(idp_to_sp))
    assert response.status_code == 200
    form = response.context["form"]
    assert "partnership_name" not in form.fields
    assert form["sign"].initial is True and form["sign_with"].initial == "idp-signing"
    assert form["entity_id"].initial == IDP_ID and form["want_authn_requests_signed"].initial == "true"
    text = response.content.decode()
    assert "idp-to-sp-metadata.xml" in text and at(IDP_BASE, runtime_paths.SAML2_SLO_SOAP) in text
    assert not any(field.disabled for field in form.fields.values())

    before = datetime.now(UTC)
    response = admin_client.post(
        export_url(idp_to_sp),
        {"entity_id": IDP_ID, "valid_days": "30", "sign": "on", "sign_with": "idp-signing", "want_authn_requests_signed": "true"},
    )
    assert response.status_code == 200, response.content.decode()[:2000]
    assert response["Content-Type"] == "application/samlmetadata+xml"
    assert response["Content-Disposition"] == 'attachment; filename="idp-to-sp-metadata.xml"'
    root = validate(response.content)
    signing.verify(root, root, [key("idp-signing").certificate()])
    valid_until = datetime.strptime(root.get("validUntil"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before + timedelta(days=30) - timedelta(seconds=1) <= valid_until <= datetime.now(UTC) + timedelta(days=30)
    event = AuditEvent.objects.get(action="other", object_repr="idp-to-sp")
    assert event.object_type == "partnerships.Partnership" and event.actor == "alice-admin"
    assert event.summary.startswith(f"metadata exported (console); entityID {IDP_ID}; signed with idp-signing (rsa-sha256)")
    assert event.changes["file"] == [None, "idp-to-sp-metadata.xml"]


def test_an_active_partnership_dialog_changes_only_the_validity_and_the_keys(admin_client, idp_to_sp):
    services.activate(idp_to_sp)
    other = keystore.generate_key_pair("metadata-signer", "rsa2048", "CN=metadata.example", 365, [])
    form = admin_client.get(export_url(idp_to_sp)).context["form"]
    assert "sign" not in form.fields
    assert {name for name, field in form.fields.items() if not field.disabled} == {"valid_days", "sign_with", "next_signing_key"}
    response = admin_client.post(
        export_url(idp_to_sp),
        {
            "entity_id": "urn:changed",
            "want_authn_requests_signed": "false",
            "cache_hours": "5",
            "algorithm": "rsa-sha1",
            "valid_days": "10",
            "sign_with": "metadata-signer",
        },
    )
    assert response["Content-Disposition"] == 'attachment; filename="idp-to-sp-metadata.xml"'
    root = validate(response.content)
    signing.verify(root, root, [other.certificate()])  # the changed key signs; SHA-1 was read-only
    assert root.get("entityID") == IDP_ID and root.get("cacheDuration") is None
    assert one(root, "md:IDPSSODescriptor").get("WantAuthnRequestsSigned") == "true"
    valid_until = datetime.strptime(root.get("validUntil"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert timedelta(days=9) < valid_until - datetime.now(UTC) <= timedelta(days=10)
    unsigned = admin_client.post(export_url(idp_to_sp), {"valid_days": "0", "sign_with": ""})
    assert not validate(unsigned.content).findall("ds:Signature", NS)


def test_an_expired_signing_key_gives_the_plain_message_and_no_file(admin_client, idp_to_sp):
    expired_key_pair("idp-expired")
    stale = update(idp_to_sp, signature={"signing_key": "idp-expired"})
    page = admin_client.get(export_url(stale))
    assert "of partnership &#x27;idp-to-sp&#x27; has a certificate that expired on" in page.content.decode()
    response = admin_client.post(
        export_url(stale), {"entity_id": IDP_ID, "valid_days": "1", "sign": "on", "sign_with": "idp-signing"}
    )
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    errors = response.context["form"].non_field_errors()
    assert len(errors) == 1 and errors[0].startswith("The signing key 'idp-expired' of partnership 'idp-to-sp' has a certificate")
    assert not AuditEvent.objects.filter(action="other").exists()
    keyless = update(idp_to_sp, signature={"signing_key": ""})
    response = admin_client.post(export_url(keyless), {"entity_id": IDP_ID, "valid_days": "1"})
    assert response["Content-Type"].startswith("text/html")
    assert response.context["form"].non_field_errors() == [
        "Partnership 'idp-to-sp' has no signing key pair, so partners could not verify its assertions. "
        "Choose one in its Signature step first."
    ]


def test_an_expired_key_chosen_to_sign_the_file_is_shown_at_its_field(admin_client, idp_to_sp):
    expired_key_pair("old-signer")
    response = admin_client.post(export_url(idp_to_sp), {"entity_id": IDP_ID, "sign": "on", "sign_with": "old-signer"})
    assert (
        response.context["form"]
        .errors["sign_with"][0]
        .startswith("The key pair 'old-signer' chosen to sign the metadata has a certificate that expired on")
    )


def test_export_post_needs_the_csrf_token(admin_user, idp_to_sp):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.post(export_url(idp_to_sp), {"entity_id": IDP_ID}).status_code == 403


# ---------------------------------------------------------------- manage.py metadata_export --partnership


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("metadata_export", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_cli_partnership_option_in_process(idp_to_sp, tmp_path):
    out, err = run("--partnership", "IDP-TO-SP", "--out", str(tmp_path), "--valid-days", "5")
    target = tmp_path / "idp-to-sp-metadata.xml"
    assert out == "" and err.strip() == (
        f"metadata of partnership 'idp-to-sp' ({IDP_ID}) written to {target}, signed with 'idp-signing' (rsa-sha256)"
    )
    root = validate(target.read_bytes())
    signing.verify(root, root, [key("idp-signing").certificate()])
    assert AuditEvent.objects.get(action="other", object_repr="idp-to-sp").actor.startswith("cli")
    out, _err = run("--partnership", "idp-to-sp", "--no-sign", "--want-authn-requests-signed", "false")
    assert one(validate(out.encode()), "md:IDPSSODescriptor").get("WantAuthnRequestsSigned") == "false"
    # Also as `manage.py metadata export`, which reuses the arguments and the action.
    out = StringIO()
    call_command("metadata", "export", "--partnership", "idp-to-sp", "--next-signing-key", "", stdout=out, stderr=StringIO())
    root = validate(out.getvalue().encode())
    signing.verify(root, root, [key("idp-signing").certificate()])
    services.activate(idp_to_sp)
    with pytest.raises(CommandError, match="is active: only the validity and the key aliases can be changed"):
        run("--partnership", "idp-to-sp", "--entity-id", "urn:other")
    with pytest.raises(CommandError, match="^--next-signing-key applies to a partnership export"):
        run("--entity", "idp-local", "--next-signing-key", "idp-signing")
    # The entity-level meaning of --partnership (a NEW partnership's name) is unchanged.
    with pytest.raises(CommandError, match="A partnership named 'idp-to-sp' already exists"):
        run("--entity", "idp-local", "--partnership", "idp-to-sp")


PASSWORD = "partnership-export-1"


def test_cli_partnership_option_as_a_real_process(idp_to_sp, tmp_path):
    """The partnership travels into a second installation (`fedconfig apply`, private keys as PKCS#12), where
    `manage.py metadata_export --partnership` runs as a process of its own."""
    document = tmp_path / "deployment.yaml"
    document.write_text(
        config_io.dump(config_io.export_deployment(include_secrets=True, include_private_keys=True, password=PASSWORD), "x.yaml")
    )
    password_file = tmp_path / "password.txt"
    password_file.write_text(PASSWORD + "\n")
    env = migrated_env(tmp_path / "var")
    done = manage(env, "fedconfig", "apply", str(document), "--password-file", str(password_file))
    assert done.returncode == 0, done.stderr
    done = manage(
        embedded_env(tmp_path / "var"),
        "metadata_export",
        "--partnership",
        "idp-to-sp",
        "--out",
        str(tmp_path),
        "--valid-days",
        "7",
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0] == (
        f"metadata of partnership 'idp-to-sp' ({IDP_ID}) written to {tmp_path / 'idp-to-sp-metadata.xml'}, "
        "signed with 'idp-signing' (rsa-sha256)"
    )
    root = validate((tmp_path / "idp-to-sp-metadata.xml").read_bytes())
    signing.verify(root, root, [key("idp-signing").certificate()])  # the same key pair, carried over
    idp = one(root, "md:IDPSSODescriptor")
    assert idp.get("WantAuthnRequestsSigned") == "true"
    assert [s[0] for s in services_of(idp, "SingleSignOnService")] == [c.BINDING_HTTP_POST]
    # Errors: one line on stderr (Django prints a CommandError raised while running as "error: ..."), exit 1.
    done = manage(env, "metadata_export", "--partnership", "nope")
    assert (done.returncode, done.stdout, done.stderr.strip()) == (1, "", "error: No partnership is named 'nope'.")
    done = manage(env, "metadata_export")
    assert done.returncode == 1 and done.stderr.strip() == (
        "error: Name what to export: --entity NAME (an entity) or --partnership NAME (an existing partnership)."
    )
