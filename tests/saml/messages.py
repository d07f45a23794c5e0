"""Typical SAML messages for the tests, shaped like what real products send (the message
builders of the runtime come later; these are test data, not product code)."""

import secrets
from datetime import UTC, datetime, timedelta

from federation.saml.xml import parse_xml

IDP_ENTITY_ID = "https://idp.example.org/affwebservices"
IDP_SSO_URL = "https://idp.example.org/affwebservices/public/saml2sso"
IDP_SLO_URL = "https://idp.example.org/affwebservices/public/saml2slo"
SP_ENTITY_ID = "https://sp.example.org/sp"
SP_ACS_URL = "https://sp.example.org/sp/acs"
SP_SLO_URL = "https://sp.example.org/sp/slo"

PASSWORD_PROTECTED_TRANSPORT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"


def new_id():
    return "_" + secrets.token_hex(16)


def instant(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def assertion_xml(
    assertion_id=None,
    issuer=IDP_ENTITY_ID,
    audience=SP_ENTITY_ID,
    recipient=SP_ACS_URL,
    in_response_to=None,
    name_id="alice",
    now=None,
    groups=("admins", "staff"),
):
    """A SAML 2.0 assertion of about 4 KB unsigned with the usual parts: subject with a bearer
    confirmation, conditions, an authentication statement and attributes (`principalName`,
    multi-valued `groups`, as the APM console scenario asks)."""
    now = now or datetime.now(UTC)
    in_response = f' InResponseTo="{in_response_to}"' if in_response_to else ""
    values = "".join(f'<saml:AttributeValue xsi:type="xs:string">{group}</saml:AttributeValue>' for group in groups)
    padding = "".join(
        f'<saml:Attribute Name="urn:oid:1.3.6.1.4.1.5923.1.1.1.{index}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri" '
        f'FriendlyName="attribute{index}"><saml:AttributeValue xsi:type="xs:string">value number {index} for {name_id}</saml:AttributeValue>'
        "</saml:Attribute>"
        for index in range(1, 10)
    )
    return (
        f'<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="{assertion_id or new_id()}" Version="2.0" IssueInstant="{instant(now)}">'
        f"<saml:Issuer>{issuer}</saml:Issuer>"
        "<saml:Subject>"
        f'<saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" NameQualifier="{issuer}" SPNameQualifier="{audience}">{name_id}</saml:NameID>'
        '<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
        f'<saml:SubjectConfirmationData NotOnOrAfter="{instant(now + timedelta(minutes=5))}" Recipient="{recipient}"{in_response}/>'
        "</saml:SubjectConfirmation>"
        "</saml:Subject>"
        f'<saml:Conditions NotBefore="{instant(now - timedelta(minutes=1))}" NotOnOrAfter="{instant(now + timedelta(minutes=5))}">'
        f"<saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction>"
        "</saml:Conditions>"
        f'<saml:AuthnStatement AuthnInstant="{instant(now)}" SessionIndex="{new_id()}">'
        f"<saml:AuthnContext><saml:AuthnContextClassRef>{PASSWORD_PROTECTED_TRANSPORT}</saml:AuthnContextClassRef></saml:AuthnContext>"
        "</saml:AuthnStatement>"
        "<saml:AttributeStatement>"
        f'<saml:Attribute Name="principalName" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">'
        f'<saml:AttributeValue xsi:type="xs:string">{name_id}</saml:AttributeValue></saml:Attribute>'
        f'<saml:Attribute Name="groups" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">{values}</saml:Attribute>'
        f"{padding}"
        "</saml:AttributeStatement>"
        "</saml:Assertion>"
    )


def assertion(**kwargs):
    return parse_xml(assertion_xml(**kwargs))


def response(response_id=None, in_response_to=None, destination=SP_ACS_URL, issuer=IDP_ENTITY_ID, now=None, **assertion_kwargs):
    """A samlp:Response (status Success) holding one assertion; returns the parsed root."""
    now = now or datetime.now(UTC)
    in_response = f' InResponseTo="{in_response_to}"' if in_response_to else ""
    inner = assertion_xml(in_response_to=in_response_to, issuer=issuer, now=now, **assertion_kwargs)
    return parse_xml(
        f'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="{response_id or new_id()}" Version="2.0" IssueInstant="{instant(now)}" Destination="{destination}"{in_response}>'
        f"<saml:Issuer>{issuer}</saml:Issuer>"
        '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
        f"{inner}"
        "</samlp:Response>"
    )


def logout_request(destination=SP_SLO_URL, issuer=IDP_ENTITY_ID, name_id="alice", now=None):
    now = now or datetime.now(UTC)
    return parse_xml(
        f'<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="{new_id()}" Version="2.0" IssueInstant="{instant(now)}" Destination="{destination}" '
        f'NotOnOrAfter="{instant(now + timedelta(minutes=5))}">'
        f"<saml:Issuer>{issuer}</saml:Issuer>"
        f'<saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">{name_id}</saml:NameID>'
        f"<samlp:SessionIndex>{new_id()}</samlp:SessionIndex>"
        "</samlp:LogoutRequest>"
    )


def saml11_response(now=None, issuer=IDP_ENTITY_ID, recipient=SP_ACS_URL, audience=SP_ENTITY_ID, name="alice"):
    """A SAML 1.1 browser/POST Response (ResponseID, AssertionID, no Issuer element)."""
    now = now or datetime.now(UTC)
    return parse_xml(
        f'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:1.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:1.0:assertion" '
        f'ResponseID="{new_id()}" MajorVersion="1" MinorVersion="1" IssueInstant="{instant(now)}" Recipient="{recipient}">'
        '<samlp:Status><samlp:StatusCode Value="samlp:Success"/></samlp:Status>'
        f'<saml:Assertion AssertionID="{new_id()}" MajorVersion="1" MinorVersion="1" Issuer="{issuer}" IssueInstant="{instant(now)}">'
        f'<saml:Conditions NotBefore="{instant(now - timedelta(minutes=1))}" NotOnOrAfter="{instant(now + timedelta(minutes=5))}">'
        f"<saml:AudienceRestrictionCondition><saml:Audience>{audience}</saml:Audience></saml:AudienceRestrictionCondition>"
        "</saml:Conditions>"
        f'<saml:AuthenticationStatement AuthenticationMethod="urn:oasis:names:tc:SAML:1.0:am:password" AuthenticationInstant="{instant(now)}">'
        f'<saml:Subject><saml:NameIdentifier Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified">{name}</saml:NameIdentifier>'
        "<saml:SubjectConfirmation><saml:ConfirmationMethod>urn:oasis:names:tc:SAML:1.0:cm:bearer</saml:ConfirmationMethod>"
        "</saml:SubjectConfirmation></saml:Subject>"
        "</saml:AuthenticationStatement>"
        "</saml:Assertion>"
        "</samlp:Response>"
    )


def idp_metadata_xml(signing_cert_base64, entity_id=IDP_ENTITY_ID, entity_xml_id=None):
    """IdP metadata with one signing certificate, Redirect SSO and SLO endpoints."""
    return (
        f'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
        f'entityID="{entity_id}" ID="{entity_xml_id or new_id()}">'
        '<md:IDPSSODescriptor WantAuthnRequestsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f'<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{signing_cert_base64}</ds:X509Certificate>'
        "</ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        f'<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{IDP_SLO_URL}"/>'
        "<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>"
        f'<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{IDP_SSO_URL}"/>'
        "</md:IDPSSODescriptor>"
        "</md:EntityDescriptor>"
    )


def sp_metadata_xml(cert_base64, entity_id=SP_ENTITY_ID):
    """SP metadata: one certificate for signing and encryption, POST ACS, Redirect SLO."""
    key_info = f"<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert_base64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
    return (
        f'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity_id}">'
        '<md:SPSSODescriptor AuthnRequestsSigned="true" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f'<md:KeyDescriptor use="signing">{key_info}</md:KeyDescriptor>'
        f'<md:KeyDescriptor use="encryption">{key_info}</md:KeyDescriptor>'
        f'<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{SP_SLO_URL}"/>'
        "<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>"
        f'<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{SP_ACS_URL}" index="0" isDefault="true"/>'
        "</md:SPSSODescriptor>"
        "</md:EntityDescriptor>"
    )


def authn_request(issuer=SP_ENTITY_ID, destination=IDP_SSO_URL, acs=SP_ACS_URL, now=None):
    now = now or datetime.now(UTC)
    return parse_xml(
        f'<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="{new_id()}" Version="2.0" IssueInstant="{instant(now)}" Destination="{destination}" '
        f'ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" AssertionConsumerServiceURL="{acs}">'
        f"<saml:Issuer>{issuer}</saml:Issuer>"
        '<samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" AllowCreate="true"/>'
        "</samlp:AuthnRequest>"
    )
