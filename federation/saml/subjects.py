"""The user a LogoutRequest (core §3.7.1) or a ManageNameIDRequest (core §3.6.1) names: a
`saml:NameID`, or a `saml:EncryptedID` when the partnership encrypts Name IDs, written and read.

Reading takes the partner's policy (a `LogoutPolicy` or `ManageNameIDPolicy`: anything with
`decryption_key`, `allowed_encryption_algorithms` and `max_bytes`) and the message family's
`ProtocolError` subclass, raised for a subject that is well-formed but that we cannot use.
"""

from .assertions import NameID, name_id_element
from .common import InvalidMessage
from .constants import AES256_GCM, NAMEID_UNSPECIFIED, NS_SAML, RSA_OAEP_MGF1P, STATUS_UNKNOWN_PRINCIPAL
from .encryption import decrypt, encrypt_name_id
from .xml import child_elements, is_element, local_name

_S = f"{{{NS_SAML}}}"
_IDENTIFIERS = (_S + "NameID", _S + "EncryptedID", _S + "BaseID")


def append_subject(parent, name_id, encryption_certificate=None, block_algorithm=AES256_GCM, key_transport=RSA_OAEP_MGF1P):
    """Append `name_id` to the request `parent`; as an EncryptedID for `encryption_certificate`
    (the partner's) when one is given."""
    element = name_id_element(parent, name_id)
    if encryption_certificate is not None:
        encrypt_name_id(element, encryption_certificate, block_algorithm, key_transport)


def subject_identifiers(element):
    """The NameID, EncryptedID and BaseID children of a request; a valid one has exactly one."""
    return [child for child in child_elements(element) if child.tag in _IDENTIFIERS]


def read_subject(identifier, policy, message_name, error):
    """The `NameID` that `identifier` (one of `subject_identifiers`) names, decrypted when it is an
    EncryptedID. `message_name` names the request in error messages."""
    if is_element(identifier, NS_SAML, "BaseID"):
        raise error(
            f"the {message_name} identifies the user with a BaseID, which is not supported", sub_status=STATUS_UNKNOWN_PRINCIPAL
        )
    if is_element(identifier, NS_SAML, "EncryptedID"):
        identifier = decrypt_from_partner(identifier, policy, message_name, "NameID", error)
        if not is_element(identifier, NS_SAML, "NameID"):
            raise InvalidMessage(f"the EncryptedID holds a {local_name(identifier)}, not a NameID")
    value = (identifier.text or "").strip()
    if not value:
        raise InvalidMessage(f"the {message_name} NameID is empty")
    return NameID(
        value=value,
        format=identifier.get("Format") or NAMEID_UNSPECIFIED,
        name_qualifier=identifier.get("NameQualifier"),
        sp_name_qualifier=identifier.get("SPNameQualifier"),
        sp_provided_id=identifier.get("SPProvidedID"),
    )


def decrypt_from_partner(encrypted, policy, message_name, what, error):
    """The element inside `encrypted` (an EncryptedID, a NewEncryptedID), decrypted with our key
    for this partner; `error` when the partnership has none configured."""
    if policy.decryption_key is None:
        raise error(f"the {message_name} carries an encrypted {what}, and no decryption key is configured for this partner")
    return decrypt(encrypted, policy.decryption_key, policy.allowed_encryption_algorithms, policy.max_bytes)
