"""SAML 2.0 Responses and Assertions as the IdP issues them (SAML core §2, §3.2.2; profiles §4.1).

The runtime fills plain dataclasses from a partnership's activated snapshot and calls
`build_response` (or `build_error_response` for a negative answer). Everything is built with
lxml, never from string templates, so every value is escaped by construction; the part that is
the same for every response of a partnership is built once and copied (see "Building" below).

Order of work, which is what receivers expect: build the assertion; encrypt the NameID and the
attributes marked for encryption; sign the assertion; encrypt the whole assertion; sign the
response. Each element is signed once, with `signing.sign`.

The pieces the SAML 1.1 and WS-Federation builders reuse: `NameID`, `Attribute`,
`validity_window`, `attribute_value_element`, and (from `common`) `SigningKey` with
`sign_element`.
"""

import base64
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from lxml import etree

from .common import SigningKey, build_status, format_instant, new_id, sign_element, utc_now
from .constants import (
    AC_UNSPECIFIED,
    AES256_GCM,
    ATTRNAME_UNSPECIFIED,
    BINDING_HTTP_POST,
    CM_BEARER,
    NAMEID_UNSPECIFIED,
    NS_SAML,
    NS_SAMLP,
    NS_XS,
    NS_XSI,
    RSA_OAEP_MGF1P,
    STATUS_RESPONDER,
    STATUS_SUCCESS,
)
from .encryption import encrypt_assertion, encrypt_attribute, encrypt_name_id
from .errors import EncryptionError, SAMLError
from .xml import to_bytes

_S = f"{{{NS_SAML}}}"
_P = f"{{{NS_SAMLP}}}"
_XSI_TYPE = f"{{{NS_XSI}}}type"
_XSI_NIL = f"{{{NS_XSI}}}nil"
_ASSERTION_NSMAP = {"saml": NS_SAML, "xs": NS_XS, "xsi": NS_XSI}
_RESPONSE_NSMAP = {"samlp": NS_SAMLP, "saml": NS_SAML}


class SignatureOption(StrEnum):
    """What the IdP signs in a Response (the partnership's POST / Artifact signature options)."""

    ASSERTION = "assertion"
    RESPONSE = "response"
    BOTH = "both"
    NONE = "none"  # only when the partnership disables signature processing for tests


class AssertionBuildError(SAMLError):
    """The settings cannot produce a valid assertion (a configuration problem at our side)."""


# --- Settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NameID:
    """A `saml:NameID` (also the value of SAML 1.1's NameIdentifier and WS-Fed's subject)."""

    value: str
    format: str = NAMEID_UNSPECIFIED
    name_qualifier: str | None = None
    sp_name_qualifier: str | None = None
    sp_provided_id: str | None = None


@dataclass(frozen=True)
class Attribute:
    """One assertion attribute. `values` may hold several values (multi-valued LDAP
    attributes); `str` values are written as xs:string, `bytes` as xs:base64Binary (e.g. an
    objectGUID), None as xsi:nil. `name_format` None leaves NameFormat out (SAML 1.1-style
    use); `encrypt` asks for an EncryptedAttribute (SAML 2.0 only)."""

    name: str
    values: tuple = ()
    name_format: str | None = ATTRNAME_UNSPECIFIED
    friendly_name: str | None = None
    encrypt: bool = False


@dataclass(frozen=True)
class EncryptionSettings:
    """The SP's encryption certificate and algorithms (AES-128/256 CBC or GCM; RSA-OAEP or
    RSA-1.5 key transport), and what to encrypt: the whole assertion and/or the NameID.
    Attributes are encrypted one by one when their `Attribute.encrypt` is set."""

    certificate: object
    block_algorithm: str = AES256_GCM
    key_transport: str = RSA_OAEP_MGF1P
    encrypt_assertion: bool = False
    encrypt_name_id: bool = False


@dataclass(frozen=True)
class AssertionSettings:
    """The content of one assertion, as the partnership and the login produced it.

    Times: IssueInstant is now; Conditions NotBefore = now − skew and NotOnOrAfter = now +
    validity + skew (the reference's formula), and SubjectConfirmationData NotOnOrAfter is the
    same upper bound. `authn_instant` defaults to now, `session_index` to a fresh ID.
    `authn_statement` False leaves the AuthnStatement out (attribute-query answers).
    `typed_attribute_values` writes xsi:type="xs:string" on each value (most SPs expect it);
    False leaves it out, for consumers that re-serialise the XML and lose the `xs` declaration
    (pysaml2 reading an ArtifactResponse over SOAP does)."""

    issuer: str
    audiences: tuple
    recipient: str
    name_id: NameID
    in_response_to: str | None = None
    attributes: tuple = ()
    authn_context_class: str = AC_UNSPECIFIED
    authn_instant: datetime | None = None
    session_index: str | None = None
    session_not_on_or_after: datetime | None = None
    validity_seconds: int = 60
    skew_seconds: int = 30
    one_time_use: bool = False
    authn_statement: bool = True
    typed_attribute_values: bool = True


@dataclass(frozen=True)
class ResponseSettings:
    """A Response around one assertion. `destination` is the ACS URL the Response is delivered
    to; `binding` is how (POST requires a signed assertion unless signing is off for tests)."""

    assertion: AssertionSettings
    destination: str | None
    signing: SigningKey | None = None
    sign: SignatureOption = SignatureOption.ASSERTION
    encryption: EncryptionSettings | None = None
    binding: str = BINDING_HTTP_POST
    consent: str | None = None


@dataclass
class IssuedResponse:
    """What `build_response` made: the element and the values the runtime records (session
    index for logout, assertion ID and expiry for artifacts and traces)."""

    element: etree._Element
    response_id: str
    issue_instant: datetime
    assertion_id: str | None = None
    session_index: str | None = None
    not_on_or_after: datetime | None = None

    def to_bytes(self):
        return to_bytes(self.element)


# --- Time ------------------------------------------------------------------------------------


def validity_window(now, validity_seconds, skew_seconds):
    """(NotBefore, NotOnOrAfter) of an assertion issued at `now`: now − skew and
    now + validity + skew. Both must be non-negative."""
    if validity_seconds < 0 or skew_seconds < 0:
        raise AssertionBuildError("validity duration and skew time must not be negative")
    return now - timedelta(seconds=skew_seconds), now + timedelta(seconds=validity_seconds + skew_seconds)


# --- Building --------------------------------------------------------------------------------
#
# Creating and filling lxml elements one call at a time costs one to two microseconds per call
# from Python, which made building as slow as a quarter of the signature it waits for. Most of
# an assertion is the same for every response of a partnership (issuer, audiences, recipient,
# NameID format and qualifiers, authentication context, attribute names and formats), so that
# part is built once into a skeleton, kept per thread (lxml trees are not shared between
# threads) under a key of exactly those settings, and each response starts as a C-level copy of
# its skeleton with the per-response values set into it: IDs, instants, InResponseTo, the NameID
# value, the session index, the attribute values. Values only ever go in through `set` and
# `.text`, so they are escaped by construction.

_STRING = "xs:string"
_BASE64 = "xs:base64Binary"
_SKELETON_LIMIT = 512
_skeletons = threading.local()


def _set_value(element, value, typed):
    """Write one attribute value into an empty AttributeValue-like element that already carries
    xsi:type="xs:string" when `typed`."""
    if isinstance(value, str):
        element.text = value
    elif value is None:
        if typed:
            del element.attrib[_XSI_TYPE]
        element.set(_XSI_NIL, "true")
    elif isinstance(value, bytes | bytearray):
        if typed:
            element.set(_XSI_TYPE, _BASE64)
        element.text = base64.b64encode(value).decode("ascii")
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    else:
        element.text = str(value)


def attribute_value_element(parent, tag, value, typed=True):
    """Append one attribute value to `parent` (the `xs`/`xsi` prefixes must be in scope there)
    and return it: xs:string for text, xs:base64Binary for bytes (the base64 text), xsi:nil for
    None. With `typed` False the xsi:type is left out (the value is then plain text)."""
    element = etree.SubElement(parent, tag, {_XSI_TYPE: _STRING} if typed else None)
    _set_value(element, value, typed)
    return element


def _set_name_id(element, name_id):
    if name_id.name_qualifier:
        element.set("NameQualifier", name_id.name_qualifier)
    if name_id.sp_name_qualifier:
        element.set("SPNameQualifier", name_id.sp_name_qualifier)
    if name_id.format:
        element.set("Format", name_id.format)
    if name_id.sp_provided_id:
        element.set("SPProvidedID", name_id.sp_provided_id)
    element.text = name_id.value


def name_id_element(parent, name_id, tag=_S + "NameID"):
    """Append a `saml:NameID` (or `tag`, e.g. SAML 1.1's NameIdentifier) for `name_id` to `parent`."""
    element = etree.SubElement(parent, tag)
    _set_name_id(element, name_id)
    return element


def _values_of(attribute):
    values = attribute.values
    return (values,) if isinstance(values, str | bytes) else tuple(values)


def _skeleton_key(settings, values, response):
    """Everything the skeleton holds: the partnership's constant settings and the shape."""
    name_id = settings.name_id
    return (
        response,
        settings.issuer,
        tuple(settings.audiences),
        settings.recipient,
        name_id.name_qualifier,
        name_id.sp_name_qualifier,
        name_id.format,
        settings.one_time_use,
        settings.authn_statement and (settings.authn_context_class or AC_UNSPECIFIED),
        settings.typed_attribute_values,
        tuple(
            (attribute.name, attribute.name_format, attribute.friendly_name, len(attribute_values))
            for attribute, attribute_values in zip(settings.attributes, values, strict=True)
        ),
    )


def _skeleton(key):
    """The elements and constant values of `key`; the per-response attributes are present
    (empty) so that they keep the schema's order. With a response part (destination, consent),
    a Response holding Issuer, a Success Status and the assertion."""
    (
        response_part,
        issuer,
        audiences,
        recipient,
        qualifier,
        sp_qualifier,
        name_format,
        one_time_use,
        context,
        typed,
        attributes,
    ) = key
    sub = etree.SubElement
    header = {"ID": "", "Version": "2.0", "IssueInstant": ""}
    if response_part is not None:
        destination, consent = response_part
        response = etree.Element(_P + "Response", header, nsmap=_RESPONSE_NSMAP)
        if destination:
            response.set("Destination", destination)
        if consent:
            response.set("Consent", consent)
        sub(response, _S + "Issuer").text = issuer
        sub(sub(response, _P + "Status"), _P + "StatusCode", {"Value": STATUS_SUCCESS})
        assertion = sub(response, _S + "Assertion", header, nsmap=_ASSERTION_NSMAP)
    else:
        assertion = etree.Element(_S + "Assertion", header, nsmap=_ASSERTION_NSMAP)
    sub(assertion, _S + "Issuer").text = issuer
    subject = sub(assertion, _S + "Subject")
    name_id = sub(subject, _S + "NameID")
    for name, value in (("NameQualifier", qualifier), ("SPNameQualifier", sp_qualifier), ("Format", name_format)):
        if value:
            name_id.set(name, value)
    confirmation = sub(subject, _S + "SubjectConfirmation", {"Method": CM_BEARER})
    sub(confirmation, _S + "SubjectConfirmationData", {"NotOnOrAfter": "", "Recipient": recipient})
    conditions = sub(assertion, _S + "Conditions", {"NotBefore": "", "NotOnOrAfter": ""})
    restriction = sub(conditions, _S + "AudienceRestriction")
    for audience in audiences:
        sub(restriction, _S + "Audience").text = audience
    if one_time_use:
        sub(conditions, _S + "OneTimeUse")
    if context:
        statement = sub(assertion, _S + "AuthnStatement", {"AuthnInstant": "", "SessionIndex": ""})
        sub(sub(statement, _S + "AuthnContext"), _S + "AuthnContextClassRef").text = context
    if attributes:
        statement = sub(assertion, _S + "AttributeStatement")
        value_attributes = {_XSI_TYPE: _STRING} if typed else None
        for name, name_format, friendly_name, count in attributes:
            attribute = sub(statement, _S + "Attribute", {"Name": name})
            if name_format:
                attribute.set("NameFormat", name_format)
            if friendly_name:
                attribute.set("FriendlyName", friendly_name)
            for _ in range(count):
                sub(attribute, _S + "AttributeValue", value_attributes)
    return response if response_part is not None else assertion


def _copy_of_skeleton(key):
    cache = getattr(_skeletons, "cache", None)
    if cache is None:
        cache = _skeletons.cache = {}
    skeleton = cache.get(key)
    if skeleton is None:
        if len(cache) >= _SKELETON_LIMIT:
            cache.clear()
        try:
            skeleton = _skeleton(key)
        except ValueError as error:
            # lxml refuses text that XML cannot carry (control characters, lone surrogates).
            raise AssertionBuildError(f"a value cannot be written into the assertion: {error}") from None
        cache[key] = skeleton
    return skeleton.__copy__()  # lxml copies the whole subtree, as deepcopy does, without its memo overhead


def _check_assertion_settings(settings, encryption):
    if not settings.audiences:
        raise AssertionBuildError("an assertion needs at least one audience (the SP's entity ID)")
    marked = [attribute.name for attribute in settings.attributes if attribute.encrypt]
    if marked and encryption is None:
        names = ", ".join(marked)
        raise EncryptionError(f"attributes {names} are marked for encryption but the partnership has no encryption certificate")


def build_assertion(settings, now=None, assertion_id=None, encryption=None):
    """The `saml:Assertion` element for `settings`, unsigned. With `encryption`, the NameID
    (when `encrypt_name_id`) and every attribute marked `encrypt` are already encrypted.
    Returns (assertion, session_index, not_on_or_after)."""
    now = now or utc_now()
    _check_assertion_settings(settings, encryption)
    values = [_values_of(attribute) for attribute in settings.attributes]
    assertion = _copy_of_skeleton(_skeleton_key(settings, values, None))
    session_index, not_on_or_after = _fill_assertion(assertion, settings, values, now, assertion_id, encryption)
    return assertion, session_index, not_on_or_after


def _fill_assertion(assertion, settings, values, now, assertion_id, encryption):
    """Set the per-response values of `settings` into a copy of the assertion skeleton, then
    encrypt the NameID and the marked attributes. Returns (session_index, not_on_or_after)."""
    not_before, not_on_or_after = validity_window(now, settings.validity_seconds, settings.skew_seconds)
    issued = format_instant(now)
    expires = format_instant(not_on_or_after)
    session_index = None
    try:
        assertion.set("ID", assertion_id or new_id())
        assertion.set("IssueInstant", issued)
        _, subject, conditions, *statements = assertion
        name_id, confirmation = subject
        name_id.text = settings.name_id.value
        if settings.name_id.sp_provided_id:
            name_id.set("SPProvidedID", settings.name_id.sp_provided_id)
        data = confirmation[0]
        data.set("NotOnOrAfter", expires)
        if settings.in_response_to:
            data.set("InResponseTo", settings.in_response_to)
        conditions.set("NotBefore", format_instant(not_before))
        conditions.set("NotOnOrAfter", expires)
        if settings.authn_statement:
            statement = statements.pop(0)
            session_index = settings.session_index or new_id()
            statement.set("AuthnInstant", issued if settings.authn_instant is None else format_instant(settings.authn_instant))
            statement.set("SessionIndex", session_index)
            if settings.session_not_on_or_after is not None:
                statement.set("SessionNotOnOrAfter", format_instant(settings.session_not_on_or_after))
        attribute_elements = list(statements[0]) if statements else []
        typed = settings.typed_attribute_values
        for element, attribute_values in zip(attribute_elements, values, strict=True):
            for value_element, value in zip(element, attribute_values, strict=True):
                _set_value(value_element, value, typed)
    except ValueError as error:
        # lxml refuses text that XML cannot carry (control characters, lone surrogates).
        raise AssertionBuildError(f"a value cannot be written into the assertion: {error}") from None

    if encryption is not None:
        if encryption.encrypt_name_id:
            encrypt_name_id(name_id, encryption.certificate, encryption.block_algorithm, encryption.key_transport)
        for element, attribute in zip(attribute_elements, settings.attributes, strict=True):
            if attribute.encrypt:
                encrypt_attribute(element, encryption.certificate, encryption.block_algorithm, encryption.key_transport)
    return session_index, not_on_or_after


def _set_response_header(response, in_response_to, now, response_id):
    response.set("ID", response_id or new_id())
    response.set("IssueInstant", format_instant(now))
    if in_response_to:
        response.set("InResponseTo", in_response_to)


def check_signature_option(option, binding, signing):
    """The partnership's signing rules: a signing key unless signing is off, and on the POST
    binding the assertion itself signed (the reference product's rule) unless signing is off."""
    option = SignatureOption(option)
    if option != SignatureOption.NONE and signing is None:
        raise AssertionBuildError(f"signing option '{option}' needs a signing key, and the partnership has none")
    if binding == BINDING_HTTP_POST and option == SignatureOption.RESPONSE:
        raise AssertionBuildError("on the HTTP-POST binding the assertion must be signed: choose 'assertion' or 'both'")
    return option


def build_response(settings, now=None, *, response_id=None, assertion_id=None):
    """A `samlp:Response` (status Success) holding one assertion built from
    `settings.assertion`, signed and encrypted as `settings` says. Returns `IssuedResponse`."""
    now = now or utc_now()
    option = check_signature_option(settings.sign, settings.binding, settings.signing)
    content = settings.assertion
    encryption = settings.encryption
    _check_assertion_settings(content, encryption)
    values = [_values_of(attribute) for attribute in content.attributes]
    response = _copy_of_skeleton(_skeleton_key(content, values, (settings.destination, settings.consent)))
    try:
        _set_response_header(response, content.in_response_to, now, response_id)
    except ValueError as error:
        raise AssertionBuildError(f"a value cannot be written into the response: {error}") from None
    assertion = response[2]
    session_index, not_on_or_after = _fill_assertion(assertion, content, values, now, assertion_id, encryption)
    assertion_id = assertion.get("ID")
    if option in (SignatureOption.ASSERTION, SignatureOption.BOTH):
        sign_element(assertion, settings.signing)
    if encryption is not None and encryption.encrypt_assertion:
        encrypt_assertion(assertion, encryption.certificate, encryption.block_algorithm, encryption.key_transport)
    if option in (SignatureOption.RESPONSE, SignatureOption.BOTH):
        sign_element(response, settings.signing)
    return IssuedResponse(response, response.get("ID"), now, assertion_id, session_index, not_on_or_after)


def build_error_response(
    *,
    issuer,
    destination,
    in_response_to=None,
    status=STATUS_RESPONDER,
    sub_status=None,
    message=None,
    signing=None,
    consent=None,
    now=None,
    response_id=None,
):
    """A negative `samlp:Response` (no assertion) with a non-success status, signed when
    `signing` is given: the answer to a request the IdP cannot or will not satisfy, sent to the
    SP's ACS instead of leaving the user on an error page. `common.status_for_error` gives the
    status for a `SAMLError`."""
    if status == STATUS_SUCCESS:
        raise ValueError("an error response needs a non-success status")
    now = now or utc_now()
    header = {"ID": response_id or new_id(), "Version": "2.0", "IssueInstant": format_instant(now)}
    for name, value in (("Destination", destination), ("InResponseTo", in_response_to), ("Consent", consent)):
        if value:
            header[name] = value
    response = etree.Element(_P + "Response", header, nsmap=_RESPONSE_NSMAP)
    etree.SubElement(response, _S + "Issuer").text = issuer
    response.append(build_status(status, sub_status, message))
    if signing is not None:
        sign_element(response, signing)
    return IssuedResponse(response, response.get("ID"), now)
