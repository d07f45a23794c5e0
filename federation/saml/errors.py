"""Exceptions of the protocol core. Every message is plain English, safe to show an administrator
in a trace, and never contains key material; runtime views map them to status pages or negative
SAML responses."""


class SAMLError(Exception):
    """Base class: the message or the request is not acceptable."""


class MalformedXML(SAMLError):
    """The input is not well-formed XML (or not XML at all)."""


class XMLSecurityError(SAMLError):
    """The input is XML but uses a feature we refuse: a DTD, entities, excessive size or depth."""


class SignatureError(SAMLError):
    """A signature is missing, does not cover what it must, uses a refused algorithm or transform,
    or does not verify with any trusted certificate."""


class EncryptionError(SAMLError):
    """Encryption could not be done with the given certificate or algorithms."""


class DecryptionError(SAMLError):
    """An encrypted element uses a refused algorithm, has an unexpected shape, or cannot be
    decrypted with our key. Cryptographic failures share one message on purpose (no oracle)."""


class BindingError(SAMLError):
    """A binding-level encoding is broken: bad base64, bad DEFLATE data, or too large."""
