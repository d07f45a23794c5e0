"""Metadata export (entities.metadata_export): what is published for each of the six local entity
types and for remote entities, key rollover, validity, signing choices, the errors for absent,
expired and unsuitable keys, partnership-level overrides, schema validation of every document, and
`manage.py metadata_export`.

Helpers here (`local_entity`, `validate`, `export`, ...) are imported by the console and interop
test modules."""

import re
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import CommandError, call_command
from lxml import etree

from entities import entity_services as es
from entities import metadata_export as me
from entities import services
from entities.models import (
    AttributeNameFormat,
    Binding,
    EndpointKind,
    EntityType,
    Location,
    NameIdFormat,
    SamlTokenType,
)
from federation import runtime_paths
from federation.models import AuditEvent
from federation.saml import constants as c
from federation.saml import signing
from federation.saml.errors import SignatureError
from federation.saml.keys import certificate_base64
from federation.saml.xml import parse_xml
from tests.keystore_fixtures import cert_pem, key_pem, new_key, self_signed

SCHEMAS = Path(__file__).resolve().parent / "schemas"
NS = {
    "md": c.NS_MD,
    "ds": c.NS_DS,
    "saml": c.NS_SAML,
    "xenc": c.NS_XENC,
    "fed": c.NS_FED,
    "wsa": c.NS_WSA,
    "auth": c.NS_AUTH,
    "xsi": c.NS_XSI,
}
XSI_TYPE = f"{{{c.NS_XSI}}}type"

_schema = None


def metadata_schema():
    """The SAML 2.0 metadata schema (official OASIS/W3C files) plus the WS-Fed stand-in; loaded once."""
    global _schema
    if _schema is None:
        _schema = etree.XMLSchema(etree.parse(str(SCHEMAS / "metadata-validation.xsd")))
    return _schema


def validate(xml):
    """Schema-validate a document (bytes or element); fails the test with the schema's messages."""
    document = etree.fromstring(xml) if isinstance(xml, bytes) else xml
    schema = metadata_schema()
    assert schema.validate(document), [str(error) for error in schema.error_log]
    return document


def schema_errors(document):
    schema = metadata_schema()
    return [] if schema.validate(document) else [error.message for error in schema.error_log]


def rsa_key_pair(alias, subject=None, days=365):
    return services.generate_key_pair(alias, "rsa2048", subject or f"CN={alias}.example.org,O=Example", days, [])


def ec_key_pair(alias):
    return services.generate_key_pair(alias, "ec-p256", f"CN={alias}.example.org,O=Example", 365, [])


def expired_key_pair(alias):
    key, certificate = self_signed(f"{alias}.example.org", expires_in=-timedelta(days=2), key=new_key("rsa"))
    return services.import_key_pair(alias, key_pem(key) + cert_pem(certificate))


def trusted_certificate(alias):
    _key, certificate = self_signed(f"{alias}.example.com", key=new_key("rsa"))
    return services.import_trusted_certificate(alias, cert_pem(certificate))


BASES = {
    EntityType.SAML2_IDP: "https://idp.example.org",
    EntityType.SAML2_SP: "https://sp.example.org",
    EntityType.SAML11_PRODUCER: "https://producer.example.org",
    EntityType.SAML11_CONSUMER: "https://consumer.example.org",
    EntityType.WSFED_IP: "https://ip.example.org",
    EntityType.WSFED_RP: "https://rp.example.org",
}


def local_entity(entity_type, name=None, attributes=(), **values):
    """A local entity of this type through the entity service (so every model rule applies)."""
    name = name or str(entity_type).replace("_", "-")
    data = {
        "location": Location.LOCAL,
        "entity_type": entity_type,
        "entity_id": f"https://{name}.example.org/",
        "name": name,
        "base_url": BASES[EntityType(entity_type)],
    }
    if str(entity_type).startswith("wsfed"):
        data["saml_token_type"] = SamlTokenType.SAML11
    data.update(values)
    return es.create_entity(data, attributes=list(attributes))


def local_idp(signing_key="idp-signing", **values):
    values.setdefault("name_id_formats", [NameIdFormat.PERSISTENT, NameIdFormat.EMAIL])
    return local_entity(
        EntityType.SAML2_IDP,
        "idp1",
        attributes=[
            {"name": "mail", "name_format": AttributeNameFormat.BASIC, "value_type": "user", "value": "mail"},
            {"name": "groups", "name_format": AttributeNameFormat.BASIC, "value_type": "user", "value": "memberOf"},
        ],
        signing_key=signing_key,
        **values,
    )


def export(entity, **options):
    return me.export_entity_metadata(entity, me.ExportOptions(**options))


def root_of(result):
    return validate(result.xml)


def one(element, path):
    found = element.findall(path, NS)
    assert len(found) == 1, f"{path}: {len(found)} found"
    return found[0]


def services_of(descriptor, local):
    return [
        (e.get("Binding"), e.get("Location"), e.get("index"), e.get("isDefault")) for e in descriptor.findall(f"md:{local}", NS)
    ]


def key_descriptor_certs(descriptor, use):
    return [
        node.text for node in descriptor.findall(f"md:KeyDescriptor[@use='{use}']/ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)
    ]


def at(base, path):
    return runtime_paths.join(base, path)


pytestmark = pytest.mark.django_db


# ---------------------------------------------------------------- what each local entity type publishes


def test_saml2_idp_publishes_sso_slo_artifact_manage_nameid_formats_attributes_and_keys():
    signing_entry = rsa_key_pair("idp-signing")
    decryption = rsa_key_pair("idp-decryption")
    idp = local_idp(decryption_key="idp-decryption")
    root = root_of(export(idp))
    base = BASES[EntityType.SAML2_IDP]

    assert root.tag == f"{{{c.NS_MD}}}EntityDescriptor"
    assert root.get("entityID") == "https://idp1.example.org/"
    assert re.fullmatch(r"_[0-9a-f]{40}", root.get("ID"))
    assert root.get("validUntil") is None and root.get("cacheDuration") is None
    idp_descriptor = one(root, "md:IDPSSODescriptor")
    assert idp_descriptor.get("protocolSupportEnumeration") == c.PROTOCOL_SAML2
    assert "WantAuthnRequestsSigned" not in idp_descriptor.attrib  # the entity model has no such setting
    assert services_of(idp_descriptor, "SingleSignOnService") == [
        (c.BINDING_HTTP_REDIRECT, at(base, runtime_paths.SAML2_SSO), None, None),
        (c.BINDING_HTTP_POST, at(base, runtime_paths.SAML2_SSO), None, None),
    ]
    assert services_of(idp_descriptor, "SingleLogoutService") == [
        (c.BINDING_HTTP_REDIRECT, at(base, runtime_paths.SAML2_SLO), None, None),
        (c.BINDING_HTTP_POST, at(base, runtime_paths.SAML2_SLO), None, None),
        (c.BINDING_SOAP, at(base, runtime_paths.SAML2_SLO_SOAP), None, None),
    ]
    assert services_of(idp_descriptor, "ArtifactResolutionService") == [
        (c.BINDING_SOAP, at(base, runtime_paths.SAML2_ARTIFACT_RESOLUTION), "0", "true")
    ]
    assert services_of(idp_descriptor, "ManageNameIDService") == [
        (c.BINDING_SOAP, at(base, runtime_paths.SAML2_MANAGE_NAME_ID_SOAP), None, None)
    ]
    assert [e.text for e in idp_descriptor.findall("md:NameIDFormat", NS)] == [NameIdFormat.PERSISTENT, NameIdFormat.EMAIL]
    assert [(a.get("Name"), a.get("NameFormat")) for a in idp_descriptor.findall("saml:Attribute", NS)] == [
        ("mail", AttributeNameFormat.BASIC),
        ("groups", AttributeNameFormat.BASIC),
    ]
    # Where the value comes from (a directory attribute, an expression) is internal and never published.
    assert b"memberOf" not in export(idp).xml

    assert key_descriptor_certs(idp_descriptor, "signing") == [certificate_base64(signing_entry.certificate())]
    assert key_descriptor_certs(idp_descriptor, "encryption") == [certificate_base64(decryption.certificate())]
    methods = [e.get("Algorithm") for e in idp_descriptor.findall("md:KeyDescriptor[@use='encryption']/md:EncryptionMethod", NS)]
    assert methods == list(me.ENCRYPTION_METHODS)
    assert c.AES256_GCM in methods and c.RSA_OAEP_MGF1P in methods
    assert c.RSA_1_5 not in methods and c.TRIPLEDES_CBC not in methods  # legacy only when a partnership allows it

    authority = one(root, "md:AttributeAuthorityDescriptor")
    assert services_of(authority, "AttributeService") == [
        (c.BINDING_SOAP, at(base, runtime_paths.SAML2_ATTRIBUTE_SERVICE), None, None)
    ]
    assert key_descriptor_certs(authority, "signing") == [certificate_base64(signing_entry.certificate())]


def test_saml2_sp_publishes_acs_post_default_and_artifact_slo_and_signing_flags():
    rsa_key_pair("sp-signing")
    decryption = rsa_key_pair("sp-decryption")
    sp = local_entity(EntityType.SAML2_SP, "sp1", signing_key="sp-signing", decryption_key="sp-decryption")
    root = root_of(export(sp))
    base = BASES[EntityType.SAML2_SP]
    descriptor = one(root, "md:SPSSODescriptor")
    assert descriptor.get("protocolSupportEnumeration") == c.PROTOCOL_SAML2
    assert descriptor.get("WantAssertionsSigned") == "true"  # the runtime requires signed assertions on POST
    assert "AuthnRequestsSigned" not in descriptor.attrib  # a partnership decides; stated only when asked
    acs = at(base, runtime_paths.SAML2_ASSERTION_CONSUMER)
    assert services_of(descriptor, "AssertionConsumerService") == [
        (c.BINDING_HTTP_POST, acs, "0", "true"),
        (c.BINDING_HTTP_ARTIFACT, acs, "1", None),
    ]
    assert [s[0] for s in services_of(descriptor, "SingleLogoutService")] == [
        c.BINDING_HTTP_REDIRECT,
        c.BINDING_HTTP_POST,
        c.BINDING_SOAP,
    ]
    assert services_of(descriptor, "ManageNameIDService") == [
        (c.BINDING_SOAP, at(base, runtime_paths.SAML2_MANAGE_NAME_ID_SOAP), None, None)
    ]
    assert key_descriptor_certs(descriptor, "encryption") == [certificate_base64(decryption.certificate())]
    assert not root.findall("md:IDPSSODescriptor", NS)


def test_saml11_producer_uses_saml2_metadata_terms_with_the_saml11_protocol():
    signing_entry = rsa_key_pair("producer-signing")
    producer = local_entity(
        EntityType.SAML11_PRODUCER,
        "producer1",
        signing_key="producer-signing",
        name_id_formats=[NameIdFormat.EMAIL],
        attributes=[{"name": "groups", "namespace": "urn:example:attributes", "value_type": "user", "value": "memberOf"}],
    )
    root = root_of(export(producer))
    descriptor = one(root, "md:IDPSSODescriptor")
    assert descriptor.get("protocolSupportEnumeration") == "urn:oasis:names:tc:SAML:1.1:protocol"
    assert services_of(descriptor, "SingleSignOnService") == [
        (
            Binding.SAML11_AUTHN_REQUEST,
            at(BASES[EntityType.SAML11_PRODUCER], runtime_paths.SAML11_INTERSITE_TRANSFER),
            None,
            None,
        )
    ]
    assert [e.text for e in descriptor.findall("md:NameIDFormat", NS)] == [NameIdFormat.EMAIL]
    # The SAML 1.x attribute namespace is written as the NameFormat (SAML 1.x metadata profile).
    assert [(a.get("Name"), a.get("NameFormat")) for a in descriptor.findall("saml:Attribute", NS)] == [
        ("groups", "urn:example:attributes")
    ]
    assert key_descriptor_certs(descriptor, "signing") == [certificate_base64(signing_entry.certificate())]
    assert key_descriptor_certs(descriptor, "encryption") == []  # SAML 1.1 has no encryption
    assert not descriptor.findall("md:SingleLogoutService", NS) and not root.findall("md:AttributeAuthorityDescriptor", NS)


def test_saml11_consumer_publishes_browser_post_and_artifact_acs():
    consumer = local_entity(EntityType.SAML11_CONSUMER, "consumer1")
    root = root_of(export(consumer))
    descriptor = one(root, "md:SPSSODescriptor")
    assert descriptor.get("protocolSupportEnumeration") == c.PROTOCOL_SAML11
    acs = at(BASES[EntityType.SAML11_CONSUMER], runtime_paths.SAML11_CONSUMER)
    assert services_of(descriptor, "AssertionConsumerService") == [
        (c.SAML1_PROFILE_BROWSER_POST, acs, "0", "true"),
        (c.SAML1_PROFILE_ARTIFACT, acs, "1", None),
    ]
    assert "WantAssertionsSigned" not in descriptor.attrib  # a SAML 2.0 notion
    assert not descriptor.findall("md:KeyDescriptor", NS)  # no signing key set: nothing to publish


def test_wsfed_ip_is_a_security_token_service_role_descriptor():
    signing_entry = rsa_key_pair("ip-signing")
    ip = local_entity(
        EntityType.WSFED_IP,
        "ip1",
        signing_key="ip-signing",
        wsfed_specific_id="office365",
        attributes=[
            {"name": "UPN", "namespace": "http://schemas.xmlsoap.org/claims", "value_type": "user", "value": "userPrincipalName"},
            {
                "name": "ImmutableID",
                "namespace": "http://schemas.microsoft.com/LiveID/Federation/2008/05",
                "value_type": "user",
                "value": "objectGUID",
            },
        ],
    )
    root = root_of(export(ip))
    descriptor = one(root, "md:RoleDescriptor")
    assert descriptor.get(XSI_TYPE) == "fed:SecurityTokenServiceType"
    assert descriptor.get("protocolSupportEnumeration") == c.PROTOCOL_WSFED
    dispatcher = at(BASES[EntityType.WSFED_IP], runtime_paths.wsfed_dispatcher_path("office365"))
    assert [e.text for e in descriptor.findall("fed:PassiveRequestorEndpoint/wsa:EndpointReference/wsa:Address", NS)] == [
        dispatcher
    ]
    assert [e.text for e in descriptor.findall("fed:SecurityTokenServiceEndpoint/wsa:EndpointReference/wsa:Address", NS)] == [
        dispatcher
    ]
    assert [e.get("Uri") for e in descriptor.findall("fed:TokenTypesOffered/fed:TokenType", NS)] == [c.TOKEN_TYPE_SAML11]
    assert [e.get("Uri") for e in descriptor.findall("fed:ClaimTypesOffered/auth:ClaimType", NS)] == [
        "http://schemas.xmlsoap.org/claims/UPN",
        "http://schemas.microsoft.com/LiveID/Federation/2008/05/ImmutableID",
    ]
    assert key_descriptor_certs(descriptor, "signing") == [certificate_base64(signing_entry.certificate())]
    assert not root.findall("md:IDPSSODescriptor", NS)


def test_wsfed_rp_is_an_application_service_with_its_realm_as_target_scope():
    rp = local_entity(EntityType.WSFED_RP, "rp1", saml_token_type=SamlTokenType.SAML2)
    root = root_of(export(rp))
    descriptor = one(root, "md:RoleDescriptor")
    assert descriptor.get(XSI_TYPE) == "fed:ApplicationServiceType"
    dispatcher = at(BASES[EntityType.WSFED_RP], runtime_paths.WSFED_DISPATCHER)
    assert one(descriptor, "fed:TargetScopes/wsa:EndpointReference/wsa:Address").text == "https://rp1.example.org/"
    assert one(descriptor, "fed:ApplicationServiceEndpoint/wsa:EndpointReference/wsa:Address").text == dispatcher
    assert one(descriptor, "fed:PassiveRequestorEndpoint/wsa:EndpointReference/wsa:Address").text == dispatcher


def test_endpoints_follow_a_base_url_with_a_path_and_trailing_slash():
    rsa_key_pair("idp-signing")
    idp = local_idp(base_url="https://sso.example.org/federation/")
    descriptor = one(root_of(export(idp)), "md:IDPSSODescriptor")
    assert (
        services_of(descriptor, "SingleSignOnService")[0][1]
        == "https://sso.example.org/federation/affwebservices/public/saml2sso"
    )
    # ... and they are the URLs the entity page shows partners.
    shown = {item.url for item in idp.runtime_urls()}
    assert {location for _b, location, _i, _d in services_of(descriptor, "SingleSignOnService")} <= shown


# ---------------------------------------------------------------- keys: rollover, absent, expired, unsuitable


def test_rollover_publishes_the_current_and_the_next_signing_key():
    current = rsa_key_pair("idp-signing")
    upcoming = rsa_key_pair("idp-signing-2027")
    idp = local_idp(next_signing_key="idp-signing-2027")
    root = root_of(export(idp))
    certs = key_descriptor_certs(one(root, "md:IDPSSODescriptor"), "signing")
    assert certs == [certificate_base64(current.certificate()), certificate_base64(upcoming.certificate())]
    assert key_descriptor_certs(one(root, "md:AttributeAuthorityDescriptor"), "signing") == certs


def test_same_key_pair_for_signing_and_decryption_gives_one_descriptor_per_use():
    entry = rsa_key_pair("idp-signing")
    idp = local_idp(decryption_key="idp-signing")
    descriptor = one(root_of(export(idp)), "md:IDPSSODescriptor")
    assert key_descriptor_certs(descriptor, "signing") == key_descriptor_certs(descriptor, "encryption")
    assert key_descriptor_certs(descriptor, "signing") == [certificate_base64(entry.certificate())]


def test_asserting_party_without_signing_key_is_refused_with_a_plain_message():
    idp = local_entity(EntityType.SAML2_IDP, "idp-nokey")
    with pytest.raises(me.MetadataExportError) as caught:
        export(idp)
    assert caught.value.message == (
        "The entity 'idp-nokey' has no signing key, so partners could not verify its assertions. "
        "Set a signing key on the entity first."
    )


def test_relying_party_without_keys_exports_without_key_descriptors():
    sp = local_entity(EntityType.SAML2_SP, "sp-nokey")
    root = root_of(export(sp))
    assert not root.findall(".//md:KeyDescriptor", NS)
    assert not root.findall("ds:Signature", NS)


def test_expired_signing_key_is_refused():
    expired = expired_key_pair("old-signing")
    idp = local_idp(signing_key="old-signing")
    with pytest.raises(me.MetadataExportError) as caught:
        export(idp)
    message = caught.value.message
    assert message.startswith("The signing key 'old-signing' has a certificate that expired on")
    assert f"expired on {expired.not_after:%Y-%m-%d}" in message
    assert "Renew it" in message


def test_expired_next_signing_key_is_refused():
    rsa_key_pair("idp-signing")
    expired_key_pair("stale-next")
    idp = local_idp(next_signing_key="stale-next")
    with pytest.raises(me.MetadataExportError, match="The next signing key 'stale-next' has a certificate that expired"):
        export(idp)


def test_ec_decryption_key_is_refused_because_partners_encrypt_with_rsa():
    rsa_key_pair("idp-signing")
    ec_key_pair("ec-decrypt")
    idp = local_idp(decryption_key="ec-decrypt")
    with pytest.raises(me.MetadataExportError, match="decryption key 'ec-decrypt' is not an RSA key"):
        export(idp)


# ---------------------------------------------------------------- signing the document


def test_signed_by_default_algorithm_rsa_sha256_and_verifies_with_the_certificate():
    entry = rsa_key_pair("idp-signing")
    idp = local_idp()
    result = export(idp, sign_with=entry)
    assert (result.signed_with, result.algorithm) == ("idp-signing", "rsa-sha256")
    root = parse_xml(result.xml)
    validate(root)
    signature = root[0]
    assert signature.tag == f"{{{c.NS_DS}}}Signature"  # first child, as the schema wants
    assert one(signature, "ds:SignedInfo/ds:SignatureMethod").get("Algorithm") == c.RSA_SHA256
    assert one(signature, "ds:SignedInfo/ds:Reference/ds:DigestMethod").get("Algorithm") == c.SHA256
    assert one(signature, "ds:SignedInfo/ds:Reference").get("URI") == "#" + root.get("ID") == "#" + result.document_id
    verified = signing.verify(root, root, [entry.certificate()])
    assert verified.get("entityID") == idp.entity_id


def test_signature_breaks_when_anything_is_changed():
    entry = rsa_key_pair("idp-signing")
    result = export(local_idp(), sign_with=entry)
    tampered = result.xml.replace(b"https://idp.example.org/affwebservices/public/saml2sso", b"https://evil.example/sso")
    root = parse_xml(tampered)
    with pytest.raises(SignatureError, match="modified after signing"):
        signing.verify(root, root, [entry.certificate()])


def test_signature_does_not_verify_with_another_certificate():
    entry = rsa_key_pair("idp-signing")
    other = rsa_key_pair("other")
    root = parse_xml(export(local_idp(), sign_with=entry).xml)
    with pytest.raises(SignatureError):
        signing.verify(root, root, [other.certificate()])


def test_sha1_only_on_request():
    entry = rsa_key_pair("idp-signing")
    root = parse_xml(export(local_idp(), sign_with=entry, algorithm="rsa-sha1").xml)
    assert one(root, "ds:Signature/ds:SignedInfo/ds:SignatureMethod").get("Algorithm") == c.RSA_SHA1
    assert one(root, "ds:Signature/ds:SignedInfo/ds:Reference/ds:DigestMethod").get("Algorithm") == c.SHA1
    # Our own verifier refuses SHA-1 unless a partnership allows it; allowed, it verifies.
    with pytest.raises(SignatureError, match="rsa-sha1 not allowed"):
        signing.verify(root, root, [entry.certificate()])
    signing.verify(root, root, [entry.certificate()], signing.allowed_signature_algorithms(sha1=True))


@pytest.mark.parametrize("name", ["rsa-sha384", "rsa-sha512"])
def test_other_rsa_algorithms(name):
    entry = rsa_key_pair("idp-signing")
    root = parse_xml(export(local_idp(), sign_with=entry, algorithm=name).xml)
    assert one(root, "ds:Signature/ds:SignedInfo/ds:SignatureMethod").get("Algorithm") == me.SIGNATURE_ALGORITHMS[name][0]
    signing.verify(root, root, [entry.certificate()])


def test_ec_key_signs_with_ecdsa_sha256_by_default():
    rsa_key_pair("idp-signing")
    entry = ec_key_pair("ec-signer")
    result = export(local_idp(), sign_with=entry)
    assert result.algorithm == "ecdsa-sha256"
    root = parse_xml(result.xml)
    assert one(root, "ds:Signature/ds:SignedInfo/ds:SignatureMethod").get("Algorithm") == c.ECDSA_SHA256
    signing.verify(root, root, [entry.certificate()])


def test_algorithm_that_does_not_fit_the_key_is_refused():
    rsa_key_pair("idp-signing")
    entry = ec_key_pair("ec-signer")
    with pytest.raises(me.MetadataExportError) as caught:
        export(local_idp(), sign_with=entry, algorithm="rsa-sha256")
    assert caught.value.field == "algorithm"
    assert caught.value.message == "RSA-SHA256 needs an RSA key, but the chosen key is an EC key; choose ecdsa-sha256."


def test_signing_with_a_certificate_only_entry_or_an_expired_key_is_refused():
    rsa_key_pair("idp-signing")
    idp = local_idp()
    partner = trusted_certificate("partner-cert")
    with pytest.raises(me.MetadataExportError, match="'partner-cert' is a trusted certificate, not a key pair") as caught:
        export(idp, sign_with=partner)
    assert caught.value.field == "sign_with"
    expired = expired_key_pair("expired-signer")
    with pytest.raises(
        me.MetadataExportError, match="The key pair 'expired-signer' chosen to sign the metadata has a certificate that expired"
    ) as caught:
        export(idp, sign_with=expired)
    assert caught.value.field == "sign_with"


def test_unknown_algorithm_name_is_refused():
    entry = rsa_key_pair("idp-signing")
    with pytest.raises(me.MetadataExportError, match="Unknown signature algorithm 'md5'"):
        export(local_idp(), sign_with=entry, algorithm="md5")


# ---------------------------------------------------------------- validity, cache, names, overrides


def test_valid_days_sets_valid_until_and_cache_duration_is_written():
    rsa_key_pair("idp-signing")
    now = datetime(2026, 5, 1, 12, 30, 15, 999, tzinfo=UTC)
    result = me.export_entity_metadata(local_idp(), me.ExportOptions(valid_days=30, cache_duration=timedelta(hours=6)), now=now)
    root = root_of(result)
    assert root.get("validUntil") == "2026-05-31T12:30:15Z"
    assert root.get("cacheDuration") == "PT6H"
    assert result.valid_until == now + timedelta(days=30)


@pytest.mark.parametrize("days", [-1, me.MAX_VALID_DAYS + 1])
def test_validity_out_of_range_is_refused(days):
    rsa_key_pair("idp-signing")
    with pytest.raises(me.MetadataExportError, match="Enter a validity from 0") as caught:
        export(local_idp(), valid_days=days)
    assert caught.value.field == "valid_days"


@pytest.mark.parametrize(
    "delta, text",
    [
        (timedelta(hours=6), "PT6H"),
        (timedelta(days=1, hours=12), "P1DT12H"),
        (timedelta(seconds=90), "PT1M30S"),
        (timedelta(days=7), "P7D"),
    ],
)
def test_xml_duration(delta, text):
    assert me.xml_duration(delta) == text


def test_entity_id_override_and_partnership_name_name_the_file():
    rsa_key_pair("idp-signing")
    idp = local_idp()
    result = export(idp, partnership_name="idp1-to-apm", entity_id="urn:example:idp:apm")
    assert result.filename == "idp1-to-apm-metadata.xml"
    assert result.entity_id == "urn:example:idp:apm"
    assert root_of(result).get("entityID") == "urn:example:idp:apm"
    plain = export(idp)
    assert plain.filename == "idp1-metadata.xml" and root_of(plain).get("entityID") == idp.entity_id


@pytest.mark.parametrize(
    "name, message",
    [
        ("has space", "Use only letters, digits, '_', '-' and '.' in a partnership name"),
        ("x" * 101, "Use only letters, digits, '_', '-' and '.' in a partnership name"),
        ("", "Enter the name of the new partnership"),
    ],
)
def test_partnership_name_rules(name, message):
    with pytest.raises(me.MetadataExportError, match=re.escape(message)) as caught:
        me.check_partnership_name(name)
    assert caught.value.field == "partnership_name"


def test_entity_id_override_with_spaces_is_refused():
    rsa_key_pair("idp-signing")
    with pytest.raises(me.MetadataExportError, match="An entity ID has no spaces") as caught:
        export(local_idp(), entity_id="urn:a b")
    assert caught.value.field == "entity_id"


def test_partnership_level_values_override_the_entity():
    """What partnership-level export will do: start from the local entity, replace what the
    partnership overrides (entity ID, NameID formats, signing flags, encryption methods)."""
    rsa_key_pair("idp-signing")
    rsa_key_pair("idp-decryption")
    idp = local_idp(decryption_key="idp-decryption")
    content = me.content_for_entity(
        idp,
        entity_id="urn:partnership:idp1-apm",
        name_id_formats=(NameIdFormat.UNSPECIFIED,),
        want_authn_requests_signed=True,
        encryption_methods=(c.AES128_CBC, c.RSA_1_5),
    )
    root = validate(me.build_entity_descriptor(content, document_id="_fixed-id"))
    assert root.get("entityID") == "urn:partnership:idp1-apm" and root.get("ID") == "_fixed-id"
    descriptor = one(root, "md:IDPSSODescriptor")
    assert descriptor.get("WantAuthnRequestsSigned") == "true"
    assert [e.text for e in descriptor.findall("md:NameIDFormat", NS)] == [NameIdFormat.UNSPECIFIED]
    assert [e.get("Algorithm") for e in descriptor.findall("md:KeyDescriptor/md:EncryptionMethod", NS)] == [
        c.AES128_CBC,
        c.RSA_1_5,
    ]
    # Through the export options too, e.g. an SP partnership that signs its AuthnRequests.
    rsa_key_pair("sp-signing")
    sp = local_entity(EntityType.SAML2_SP, "sp1", signing_key="sp-signing")
    sp_descriptor = one(
        root_of(export(sp, overrides={"authn_requests_signed": True, "want_assertions_signed": None})), "md:SPSSODescriptor"
    )
    assert sp_descriptor.get("AuthnRequestsSigned") == "true"
    assert "WantAssertionsSigned" not in sp_descriptor.attrib


def test_builder_is_pure_data_in_element_out():
    """No database: plain values and a cryptography certificate make a valid, signable document."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _key, certificate = self_signed("pure.example.org", key=key)
    content = me.MetadataContent(
        entity_id="https://pure.example.org/",
        protocol="saml2",
        role="relying",
        endpoints=me.local_endpoints("https://pure.example.org", "saml2", "relying"),
        signing_certificates=(certificate,),
    )
    element = me.build_entity_descriptor(content, valid_until=datetime(2030, 1, 1, tzinfo=UTC))
    me.sign_entity_descriptor(element, key, certificate)
    root = validate(parse_xml(me.serialize(element)))
    assert root.get("validUntil") == "2030-01-01T00:00:00Z"
    signing.verify(root, root, [certificate])


def test_missing_base_url_endpoints_are_a_clear_error():
    content = me.MetadataContent(entity_id="urn:x", protocol="saml2", role="asserting")
    with pytest.raises(me.MetadataExportError, match="needs a single sign-on service URL"):
        me.build_entity_descriptor(content)
    with pytest.raises(me.MetadataExportError, match="needs an assertion consumer service URL"):
        me.build_entity_descriptor(me.MetadataContent(entity_id="urn:x", protocol="saml2", role="relying"))
    with pytest.raises(me.MetadataExportError, match="needs its passive requestor URL"):
        me.build_entity_descriptor(me.MetadataContent(entity_id="urn:x", protocol="wsfed", role="relying"))


# ---------------------------------------------------------------- remote entities (re-emitted as stored)


def test_remote_sp_is_reemitted_from_its_endpoint_rows_and_certificates():
    verification = trusted_certificate("partner-sp-signing")
    encryption = trusted_certificate("partner-sp-encryption")
    sp = es.create_entity(
        {
            "location": Location.REMOTE,
            "entity_type": EntityType.SAML2_SP,
            "entity_id": "urn:partner:sp",
            "name": "partner-sp",
            "verification_certificate": "partner-sp-signing",
            "encryption_certificate": "partner-sp-encryption",
            "name_id_formats": [NameIdFormat.TRANSIENT],
        },
        [
            {
                "kind": EndpointKind.ACS,
                "binding": Binding.HTTP_POST,
                "index": 3,
                "is_default": True,
                "location": "https://partner.example.com/acs",
            },
            {
                "kind": EndpointKind.SLO,
                "binding": Binding.HTTP_REDIRECT,
                "location": "https://partner.example.com/slo",
                "response_location": "https://partner.example.com/slo/done",
            },
        ],
    )
    root = root_of(export(sp))
    descriptor = one(root, "md:SPSSODescriptor")
    assert services_of(descriptor, "AssertionConsumerService") == [
        (c.BINDING_HTTP_POST, "https://partner.example.com/acs", "3", "true")
    ]
    assert one(descriptor, "md:SingleLogoutService").get("ResponseLocation") == "https://partner.example.com/slo/done"
    assert key_descriptor_certs(descriptor, "signing") == [certificate_base64(verification.certificate())]
    assert key_descriptor_certs(descriptor, "encryption") == [certificate_base64(encryption.certificate())]
    assert "WantAssertionsSigned" not in descriptor.attrib  # we do not know the partner's wishes


def test_remote_wsfed_rp_is_reemitted_with_its_service_url():
    rp = es.create_entity(
        {
            "location": Location.REMOTE,
            "entity_type": EntityType.WSFED_RP,
            "saml_token_type": SamlTokenType.SAML11,
            "entity_id": "urn:federation:MicrosoftOnline",
            "name": "office365",
            "wsfed_service_url": "https://login.microsoftonline.com/login.srf",
        }
    )
    descriptor = one(root_of(export(rp)), "md:RoleDescriptor")
    assert one(descriptor, "fed:PassiveRequestorEndpoint/wsa:EndpointReference/wsa:Address").text == (
        "https://login.microsoftonline.com/login.srf"
    )


# ---------------------------------------------------------------- the schema check itself is real


def test_schema_files_resolve_locally_only():
    locations = []
    for path in SCHEMAS.glob("*.xsd"):
        tree = etree.parse(str(path))
        for node in tree.iter("{http://www.w3.org/2001/XMLSchema}import", "{http://www.w3.org/2001/XMLSchema}include"):
            location = node.get("schemaLocation")
            locations.append(location)
            assert location and "://" not in location, f"{path.name} imports {location}"
            assert (SCHEMAS / location).is_file(), f"{path.name} imports missing {location}"
        assert tree.docinfo.doctype == "", f"{path.name} has a DTD"
    assert "saml-schema-assertion-2.0.xsd" in locations and "xmldsig-core-schema.xsd" in locations


def test_schema_rejects_a_broken_saml_document():
    rsa_key_pair("idp-signing")
    root = root_of(export(local_idp()))
    descriptor = one(root, "md:IDPSSODescriptor")
    # NameIDFormat after SingleSignOnService is out of schema order.
    descriptor.append(one(descriptor, "md:NameIDFormat[1]"))
    assert any("NameIDFormat" in error for error in schema_errors(root))
    root.set("validUntil", "next week")
    assert any("validUntil" in error for error in schema_errors(root))


def test_schema_rejects_a_broken_wsfed_document():
    rsa_key_pair("ip-signing")
    root = root_of(export(local_entity(EntityType.WSFED_IP, "ip1", signing_key="ip-signing")))
    descriptor = one(root, "md:RoleDescriptor")
    descriptor.remove(one(descriptor, "fed:SecurityTokenServiceEndpoint"))
    assert schema_errors(root)
    descriptor.set(XSI_TYPE, "fed:NoSuchType")
    assert schema_errors(root)


# ---------------------------------------------------------------- audit


def test_audit_export_records_who_what_and_how():
    entry = rsa_key_pair("idp-signing")
    idp = local_idp()
    result = export(idp, partnership_name="idp1-apm", sign_with=entry, valid_days=10)
    me.audit_export(idp, result, "console")
    event = AuditEvent.objects.get(action="other", object_repr="idp1")
    assert event.object_type == "entities.Entity" and event.object_id == str(idp.pk)
    assert event.summary.startswith(
        "metadata exported (console); entityID https://idp1.example.org/; signed with idp-signing (rsa-sha256)"
    )
    assert event.changes["file"] == [None, "idp1-apm-metadata.xml"]
    assert event.changes["document_id"] == [None, result.document_id]


# ---------------------------------------------------------------- manage.py metadata_export


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("metadata_export", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_error(*args):
    with pytest.raises(CommandError) as caught:
        run(*args)
    return str(caught.value)


class TestCommand:
    def test_writes_a_file_signed_with_the_entity_key_and_audits(self, tmp_path):
        entry = rsa_key_pair("idp-signing")
        rsa_key_pair("idp-signing-next")
        local_idp(next_signing_key="idp-signing-next")
        target = tmp_path / "idp1.xml"
        out, err = run("--entity", "idp1", "--out", str(target), "--valid-days", "30", "--cache-hours", "12")
        assert out == ""
        assert err.strip() == (
            f"metadata of 'idp1' (https://idp1.example.org/) written to {target}, signed with 'idp-signing' (rsa-sha256)"
        )
        root = validate(parse_xml(target.read_bytes()))
        signing.verify(root, root, [entry.certificate()])
        assert root.get("cacheDuration") == "PT12H" and root.get("validUntil")
        assert len(key_descriptor_certs(one(root, "md:IDPSSODescriptor"), "signing")) == 2
        event = AuditEvent.objects.get(action="other", object_repr="idp1")
        assert event.actor.startswith("cli") and "metadata exported (cli)" in event.summary

    def test_stdout_unsigned_with_overrides(self):
        rsa_key_pair("idp-signing")
        local_idp()
        out, _err = run(
            "--entity",
            "IDP1",
            "--no-sign",
            "--entity-id",
            "urn:other",
            "--partnership",
            "p1",
            "--want-authn-requests-signed",
            "true",
        )
        root = validate(out.encode())
        assert root.get("entityID") == "urn:other"
        assert not root.findall("ds:Signature", NS)
        assert one(root, "md:IDPSSODescriptor").get("WantAuthnRequestsSigned") == "true"

    def test_sign_with_another_key_and_sha1(self, tmp_path):
        rsa_key_pair("idp-signing")
        other = rsa_key_pair("metadata-signer")
        local_idp()
        target = tmp_path / "md.xml"
        run("--entity", "idp1", "--out", str(target), "--sign-with", "metadata-signer", "--algorithm", "rsa-sha1")
        root = parse_xml(target.read_bytes())
        signing.verify(root, root, [other.certificate()], signing.allowed_signature_algorithms(sha1=True))

    def test_errors_are_one_line(self):
        rsa_key_pair("idp-signing")
        ec_key_pair("ec-signer")
        local_idp()
        assert run_error("--entity", "nope") == "No entity is named 'nope'."
        assert run_error("--entity", "idp1", "--sign-with", "missing") == "No keystore entry has the alias 'missing'."
        assert run_error("--entity", "idp1", "--sign-with", "ec-signer", "--algorithm", "rsa-sha256") == (
            "RSA-SHA256 needs an RSA key, but the chosen key is an EC key; choose ecdsa-sha256."
        )
        assert "invalid choice: 'md5'" in run_error("--entity", "idp1", "--algorithm", "md5")
        assert "expected true or false" in run_error("--entity", "idp1", "--authn-requests-signed", "maybe")
        assert run_error("--entity", "idp1", "--partnership", "bad name") == (
            "Use only letters, digits, '_', '-' and '.' in a partnership name (at most 100, no spaces)."
        )
        assert not AuditEvent.objects.filter(action="other").exists()

    def test_expired_key_error(self):
        expired_key_pair("old")
        local_idp(signing_key="old")
        assert run_error("--entity", "idp1").startswith("The signing key 'old' has a certificate that expired on")

    def test_unwritable_output(self, tmp_path):
        rsa_key_pair("idp-signing")
        local_idp()
        message = run_error("--entity", "idp1", "--out", str(tmp_path / "missing-dir" / "x.xml"))
        assert message.startswith("No such file or directory")
        assert not AuditEvent.objects.filter(action="other").exists()

    def test_reusable_as_a_subcommand(self):
        """How `manage.py metadata export` can reuse the arguments and the action."""
        import argparse

        from entities.management.commands import metadata_export as command_module

        parser = argparse.ArgumentParser(prog="metadata")
        sub = parser.add_subparsers(dest="action")
        command_module.add_export_arguments(sub.add_parser("export"))
        options = vars(parser.parse_args(["export", "--entity", "idp1", "--valid-days", "3"]))
        assert options["entity"] == "idp1" and options["valid_days"] == 3 and options["algorithm"] is None
