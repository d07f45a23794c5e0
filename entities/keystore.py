"""Keys and certificates: pure functions over `cryptography`, no Django models.

Everything an administrator can feed in (DN strings, SAN lists, PEM/DER/PKCS#7/PKCS#12 files,
passwords) is checked here, and every problem is raised as one `KeystoreError` whose message is
plain words for an administrator, with the name of the form field it belongs to. Callers (services,
views, the CLI) show that message as it is.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Files larger than this are not keys or certificates; refusing them early bounds parsing work.
MAX_INPUT_BYTES = 1024 * 1024
MIN_RSA_KEY_BITS = 2048
MAX_VALIDITY_DAYS = 7300
MIN_PKCS12_PASSWORD_LENGTH = 8
# Self-signed certificates start a little in the past so partners with a slow clock accept them.
BACKDATE = timedelta(minutes=5)

ALGORITHMS = {
    "rsa2048": ("RSA", 2048),
    "rsa3072": ("RSA", 3072),
    "rsa4096": ("RSA", 4096),
    "ec-p256": ("EC", ec.SECP256R1),
    "ec-p384": ("EC", ec.SECP384R1),
}
ALGORITHM_CHOICES = [
    ("rsa2048", "RSA 2048"),
    ("rsa3072", "RSA 3072"),
    ("rsa4096", "RSA 4096"),
    ("ec-p256", "EC P-256"),
    ("ec-p384", "EC P-384"),
]
CURVE_LABELS = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

# Attribute names accepted in a subject DN (upper-cased), as in RFC 4514 and OpenSSL.
DN_ATTRIBUTES = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "S": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
    "E": NameOID.EMAIL_ADDRESS,
    "EMAIL": NameOID.EMAIL_ADDRESS,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "SN": NameOID.SURNAME,
    "GN": NameOID.GIVEN_NAME,
    "GIVENNAME": NameOID.GIVEN_NAME,
    "T": NameOID.TITLE,
    "TITLE": NameOID.TITLE,
    "POSTALCODE": NameOID.POSTAL_CODE,
}
_LENGTH_LIMITS = {NameOID.COUNTRY_NAME: (2, 2), NameOID.COMMON_NAME: (1, 64)}

_KEY_USAGE_LABELS = [
    ("digital_signature", "Digital signature"),
    ("content_commitment", "Non-repudiation"),
    ("key_encipherment", "Key encipherment"),
    ("data_encipherment", "Data encipherment"),
    ("key_agreement", "Key agreement"),
    ("key_cert_sign", "Certificate signing"),
    ("crl_sign", "CRL signing"),
]
_EKU_LABELS = {
    ExtendedKeyUsageOID.SERVER_AUTH: "TLS server authentication",
    ExtendedKeyUsageOID.CLIENT_AUTH: "TLS client authentication",
    ExtendedKeyUsageOID.CODE_SIGNING: "Code signing",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "E-mail protection",
    ExtendedKeyUsageOID.TIME_STAMPING: "Time stamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSP signing",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "Any purpose",
}

NOT_A_CERTIFICATE = "This file is not a certificate (PEM, DER or PKCS#12 expected)."
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)
_DNS_NAME = re.compile(
    r"^(\*\.)?([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$"
)


class KeystoreError(Exception):
    """A problem an administrator can fix; `message` is shown as it is, at `field` when given.

    `others` holds further (field, message) problems found by the same check (see check_all), so
    a form can show every mistake at once."""

    def __init__(self, message, field=None, others=()):
        super().__init__(message)
        self.message = message
        self.field = field
        self.others = list(others)

    @property
    def problems(self):
        return [(self.field, self.message), *self.others]


def check_all(*checks):
    """Run every check (a callable) and return their results; if any failed, raise the first
    KeystoreError carrying the others' problems too."""
    results, failures = [], []
    for check in checks:
        try:
            results.append(check())
        except KeystoreError as exc:
            failures.append(exc)
            results.append(None)
    if failures:
        first = failures[0]
        raise KeystoreError(first.message, first.field, [p for failure in failures for p in failure.problems][1:])
    return results


@dataclass
class Bundle:
    """What a key-pair file holds: the private key, the certificate of that key and the rest of its chain."""

    private_key: object
    certificate: x509.Certificate
    chain: list = field(default_factory=list)


@dataclass
class CertificateFacts:
    subject: str
    issuer: str
    serial_number: str
    not_before: datetime
    not_after: datetime
    key_type: str
    key_size: int
    curve: str
    fingerprint_sha256: str
    key_usage: str
    extended_key_usage: str
    subject_alt_names: list
    is_ca: bool
    self_signed: bool

    @property
    def key_description(self):
        return describe_key(self.key_type, self.key_size, self.curve)


def describe_key(key_type, key_size, curve=""):
    if key_type == "EC":
        return f"EC {CURVE_LABELS.get(curve, curve)}"
    return f"{key_type} {key_size}" if key_size else key_type


# ---------------------------------------------------------------- keys


def check_algorithm(algorithm):
    if algorithm not in ALGORITHMS:
        choices = ", ".join(ALGORITHMS)
        raise KeystoreError(f"Unknown algorithm '{algorithm}'; choose one of {choices}.", "algorithm")
    return algorithm


def generate_private_key(algorithm):
    """A new private key for one of ALGORITHMS ("rsa2048", "ec-p384", ...)."""
    family, parameter = ALGORITHMS[check_algorithm(algorithm)]
    if family == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=parameter)
    return ec.generate_private_key(parameter())


def private_key_to_pem(key) -> str:
    """Unencrypted PKCS#8 PEM; callers seal it before it is stored."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(
        "ascii"
    )


def load_private_key_pem(pem, password=None):
    if isinstance(pem, str):
        pem = pem.encode()
    try:
        key = serialization.load_pem_private_key(pem, password=_password_bytes(password))
    except TypeError:
        if password:
            raise KeystoreError("This private key is not encrypted; leave the password empty.", "password") from None
        raise KeystoreError("This private key is encrypted; enter its password.", "password") from None
    except ValueError:
        if password:
            raise KeystoreError("The password does not open this private key.", "password") from None
        raise KeystoreError("The private key in this file cannot be read.", "file") from None
    except UnsupportedAlgorithm:
        raise KeystoreError("The private key uses an algorithm this keystore does not support.", "file") from None
    check_key_pair_key(key)
    return key


def check_key_pair_key(key):
    """Only keys that SAML signing and encryption can use: RSA of 2048 bits or more, EC on a NIST curve."""
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_KEY_BITS:
            raise KeystoreError(
                f"RSA keys shorter than {MIN_RSA_KEY_BITS} bits are not accepted (this one has {key.key_size}).", "file"
            )
        return
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in CURVE_LABELS:
            raise KeystoreError(f"The EC curve '{key.curve.name}' is not supported; use P-256, P-384 or P-521.", "file")
        return
    raise KeystoreError("Only RSA and EC private keys are supported.", "file")


def public_key_matches(certificate, private_key) -> bool:
    """True when the certificate was issued for this private key."""
    return _spki(certificate.public_key()) == _spki(private_key.public_key())


def _spki(public_key):
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _password_bytes(password):
    if password is None or password == "" or password == b"":
        return None
    return password.encode() if isinstance(password, str) else password


# ---------------------------------------------------------------- subject and SAN


def parse_subject(text) -> x509.Name:
    """A subject DN from text: RFC 4514 ("CN=idp.example.org, O=Example, C=JP") or the OpenSSL
    slash form ("/C=JP/O=Example/CN=idp.example.org"). Escapes (\\, \\+ \\2C), quoted values and
    multi-valued RDNs (a+b) are understood."""
    text = (text or "").strip()
    if not text:
        raise KeystoreError("Enter a subject, for example CN=idp.example.org,O=Example.", "subject")
    slash_form = text.startswith("/")
    rdns = _split_dn(text[1:] if slash_form else text, "/" if slash_form else ",;")
    # RFC 4514 writes the most specific RDN first; a certificate stores the least specific first.
    if not slash_form:
        rdns.reverse()
    built = []
    for rdn in rdns:
        attributes = []
        for name, value in rdn:
            oid = _dn_oid(name)
            low, high = _LENGTH_LIMITS.get(oid, (1, 1024))
            if not value:
                raise KeystoreError(f"The subject attribute {name} has no value.", "subject")
            if not low <= len(value) <= high:
                if oid == NameOID.COUNTRY_NAME:
                    raise KeystoreError(f"C (country) must be a two-letter code such as JP or DE, not '{value}'.", "subject")
                raise KeystoreError(f"The subject attribute {name} is longer than {high} characters.", "subject")
            attributes.append(x509.NameAttribute(oid, value))
        built.append(x509.RelativeDistinguishedName(attributes))
    return x509.Name(built)


def _dn_oid(name):
    key = name.strip().upper()
    if key in DN_ATTRIBUTES:
        return DN_ATTRIBUTES[key]
    if re.fullmatch(r"\d+(\.\d+)+", key):
        return x509.ObjectIdentifier(key)
    known = ", ".join(["CN", "O", "OU", "L", "ST", "C", "DC", "UID", "E", "STREET", "SERIALNUMBER"])
    raise KeystoreError(f"Unknown attribute '{name.strip()}' in the subject; use {known} (or a dotted OID).", "subject")


def _split_dn(text, separators):
    """[[(name, value), ...] per RDN] from a DN string, honouring escapes and quotes."""
    rdns, rdn = [], []
    name, value = None, []
    i, in_quotes, quoted = 0, False, False

    def finish_attribute():
        nonlocal name, value, quoted
        if name is None:
            stray = "".join(value).strip()
            if stray or rdn:
                raise KeystoreError(f"'{stray or text}' in the subject is not of the form NAME=value.", "subject")
            return False
        text_value = "".join(value)
        rdn.append((name.strip(), text_value if quoted else text_value.strip()))
        name, value, quoted = None, [], False
        return True

    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            pair = text[i + 1 : i + 3]
            if re.fullmatch(r"[0-9A-Fa-f]{2}", pair):
                # Hex escapes may spell multi-byte UTF-8; collect the bytes, decode at the end.
                hex_bytes = bytearray()
                while re.fullmatch(r"\\[0-9A-Fa-f]{2}", text[i : i + 3] or ""):
                    hex_bytes.append(int(text[i + 1 : i + 3], 16))
                    i += 3
                value.append(hex_bytes.decode("utf-8", errors="replace"))
                continue
            value.append(text[i + 1])
            i += 2
            continue
        if in_quotes:
            if char == '"':
                in_quotes = False
            else:
                value.append(char)
            i += 1
            continue
        if char == '"' and name is not None and not "".join(value).strip():
            in_quotes, quoted, value = True, True, []
            i += 1
            continue
        if quoted and char not in separators and char != "+":
            # Only spaces may follow a closing quote before the next separator.
            if not char.isspace():
                raise KeystoreError("Text follows a quoted value in the subject; put it inside the quotes.", "subject")
            i += 1
            continue
        if char == "=" and name is None:
            name = "".join(value)
            if not name.strip():
                raise KeystoreError("An attribute name is missing before '=' in the subject.", "subject")
            value = []
            i += 1
            continue
        if char == "+":
            finish_attribute()
            i += 1
            continue
        if char in separators:
            if finish_attribute():
                rdns.append(rdn)
            rdn = []
            i += 1
            continue
        value.append(char)
        i += 1
    if in_quotes:
        raise KeystoreError("A quoted value in the subject is not closed.", "subject")
    if finish_attribute():
        rdns.append(rdn)
    if not rdns:
        raise KeystoreError("Enter a subject, for example CN=idp.example.org,O=Example.", "subject")
    return rdns


def parse_san_list(values):
    """General names from a list (or a comma/space/newline separated text) of host names, URIs,
    IP addresses and e-mail addresses. Prefixes DNS:, URI:, IP:, email: force the kind."""
    if isinstance(values, str):
        values = [values]
    items = [item for value in values or () for item in re.split(r"[\s,]+", value or "") if item]
    names = []
    for item in items:
        prefix, _, rest = item.partition(":")
        kind = prefix.lower() if rest and prefix.lower() in ("dns", "uri", "ip", "email") else ""
        value = rest if kind else item
        if not kind:
            if "://" in item or item.lower().startswith("urn:"):
                kind = "uri"
            elif "@" in item:
                kind = "email"
            elif _looks_like_ip(item):
                kind = "ip"
            else:
                kind = "dns"
        names.append(_general_name(kind, value, item))
    # Keep order, drop repeats: a duplicated SAN is legal but pointless.
    unique = []
    for name in names:
        if name not in unique:
            unique.append(name)
    return unique


def _looks_like_ip(value):
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def _general_name(kind, value, original):
    if kind == "uri":
        if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$", value):
            raise KeystoreError(f"'{original}' is not a URI.", "san")
        return x509.UniformResourceIdentifier(value)
    if kind == "ip":
        try:
            return x509.IPAddress(ipaddress.ip_address(value))
        except ValueError:
            raise KeystoreError(f"'{original}' is not an IP address.", "san") from None
    if kind == "email":
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", value):
            raise KeystoreError(f"'{original}' is not an e-mail address.", "san")
        return x509.RFC822Name(value)
    if not _DNS_NAME.match(value) or len(value) > 253:
        raise KeystoreError(
            f"'{original}' is not a DNS name; use host names like idp.example.org, or URIs like https://idp.example.org/.",
            "san",
        )
    return x509.DNSName(value.lower())


def san_strings(general_names):
    """Readable strings for SAN general names, in the prefix syntax parse_san_list reads back."""
    out = []
    for name in general_names:
        if isinstance(name, x509.DNSName):
            out.append(f"DNS:{name.value}")
        elif isinstance(name, x509.UniformResourceIdentifier):
            out.append(f"URI:{name.value}")
        elif isinstance(name, x509.IPAddress):
            out.append(f"IP:{name.value}")
        elif isinstance(name, x509.RFC822Name):
            out.append(f"email:{name.value}")
        elif isinstance(name, x509.DirectoryName):
            out.append(f"DirName:{name.value.rfc4514_string()}")
        else:
            out.append(str(name.value))
    return out


def subject_alt_names(certificate_or_csr):
    try:
        return list(certificate_or_csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


# ---------------------------------------------------------------- certificates and CSRs


def _signature_hash(key):
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def check_validity_days(days):
    try:
        days = int(days)
    except (TypeError, ValueError):
        raise KeystoreError("Validity must be a whole number of days.", "days") from None
    if not 1 <= days <= MAX_VALIDITY_DAYS:
        raise KeystoreError(f"Validity must be between 1 and {MAX_VALIDITY_DAYS} days.", "days")
    return days


def self_signed_certificate(private_key, subject, days=365, san=(), now=None):
    """A self-signed end-entity certificate for signing and encryption (SAML metadata style)."""
    name = subject if isinstance(subject, x509.Name) else parse_subject(subject)
    days = check_validity_days(days)
    general_names = san if san and isinstance(san[0], x509.GeneralName) else parse_san_list(san)
    now = now or datetime.now(UTC)
    public_key = private_key.public_key()
    is_rsa = isinstance(private_key, rsa.RSAPrivateKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                # RSA keys also decrypt (key transport); EC keys agree keys instead.
                key_encipherment=is_rsa,
                data_encipherment=False,
                key_agreement=not is_rsa,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if general_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    return builder.sign(private_key, _signature_hash(private_key))


def random_serial_number():
    # 159 bits: positive and within the 20-octet limit of RFC 5280.
    return secrets.randbits(159) | 1


def create_csr(private_key, subject, san=()):
    name = subject if isinstance(subject, x509.Name) else parse_subject(subject)
    general_names = san if san and isinstance(san[0], x509.GeneralName) else parse_san_list(san)
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if general_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    return builder.sign(private_key, _signature_hash(private_key))


def csr_to_pem(csr) -> str:
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def certificate_to_pem(certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def certificates_to_pem(certificates) -> str:
    return "".join(certificate_to_pem(cert) for cert in certificates)


def certificate_to_der(certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def load_certificate_pem(pem) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


def load_certificates_pem(pem) -> list:
    pem = pem.encode() if isinstance(pem, str) else pem
    return x509.load_pem_x509_certificates(pem) if pem.strip() else []


# ---------------------------------------------------------------- reading files


def _as_bytes(data):
    if isinstance(data, str):
        data = data.encode()
    if not data or not data.strip():
        raise KeystoreError("The file is empty.", "file")
    if len(data) > MAX_INPUT_BYTES:
        raise KeystoreError("This file is too large to be a certificate or key (limit 1 MB).", "file")
    return data


def _pem_blocks(data):
    return [(match.group(1).decode(), match.group(0)) for match in _PEM_BLOCK.finditer(data)]


def looks_like_pkcs12(data) -> bool:
    """PFX ::= SEQUENCE { version INTEGER 3, authSafe ContentInfo, ... } (RFC 7292)."""
    if len(data) < 8 or data[0] != 0x30:
        return False
    length_byte = data[1]
    offset = 2 if length_byte < 0x80 else 2 + (length_byte & 0x7F)
    return data[offset : offset + 3] == b"\x02\x01\x03"


def _certificates_from_pem_blocks(blocks):
    certificates = []
    for label, block in blocks:
        if label in ("CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"):
            try:
                certificates.append(x509.load_pem_x509_certificate(block.replace(b"TRUSTED CERTIFICATE", b"CERTIFICATE")))
            except ValueError:
                raise KeystoreError("A certificate in this file is damaged and cannot be read.", "file") from None
        elif label == "PKCS7":
            try:
                certificates.extend(pkcs7.load_pem_pkcs7_certificates(block))
            except ValueError:
                raise KeystoreError("The PKCS#7 bundle in this file cannot be read.", "file") from None
    return certificates


def load_certificates(data) -> list:
    """The certificates in a PEM (one or more), DER or PKCS#7 (.p7b) file, in file order.

    Files that hold something else get a message saying what they are instead."""
    data = _as_bytes(data)
    blocks = _pem_blocks(data)
    if blocks:
        labels = {label for label, _ in blocks}
        certificates = _certificates_from_pem_blocks(blocks)
        if certificates:
            return certificates
        if labels & {"CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"}:
            raise KeystoreError(
                "This is a certificate signing request, not a certificate; send it to your CA and import the certificate it returns.",
                "file",
            )
        if any(label.endswith("PRIVATE KEY") for label in labels):
            raise KeystoreError("This file holds a private key but no certificate.", "file")
        raise KeystoreError(NOT_A_CERTIFICATE, "file")
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        pass
    try:
        return list(pkcs7.load_der_pkcs7_certificates(data))
    except ValueError:
        pass
    if looks_like_pkcs12(data):
        raise KeystoreError("This is a PKCS#12 file, which holds a private key; import it as a key pair.", "file")
    raise KeystoreError(NOT_A_CERTIFICATE, "file")


def load_key_pair(data, password=None) -> Bundle:
    """A private key with its certificate (and chain) from a PEM bundle or a PKCS#12 file.

    PEM: one private key (PKCS#8, PKCS#1 or SEC1; encrypted with `password` or not) and the
    certificates; the one whose public key matches is the key pair's certificate, the rest its chain.
    """
    data = _as_bytes(data)
    blocks = _pem_blocks(data)
    if blocks:
        keys = [block for label, block in blocks if label.endswith("PRIVATE KEY")]
        certificates = _certificates_from_pem_blocks(blocks)
        if not keys:
            if certificates:
                raise KeystoreError(
                    "This file holds certificates but no private key; a key pair needs both "
                    "(to add a certificate alone, import it as a trusted certificate).",
                    "file",
                )
            raise KeystoreError("This file holds neither a private key nor a certificate.", "file")
        if len(keys) > 1:
            raise KeystoreError(f"This file holds {len(keys)} private keys; a key pair file must hold exactly one.", "file")
        key = load_private_key_pem(keys[0], password)
        if not certificates:
            raise KeystoreError(
                "This file holds a private key but no certificate; add the certificate to the same PEM file "
                "(or choose the certificate file too).",
                "file",
            )
        return _bundle(key, certificates)
    if looks_like_pkcs12(data):
        return _load_pkcs12(data, password)
    raise KeystoreError("This file is not a key pair (a PEM file with key and certificate, or PKCS#12 expected).", "file")


def _load_pkcs12(data, password):
    try:
        key, certificate, additional = pkcs12.load_key_and_certificates(data, _password_bytes(password))
    except ValueError as exc:
        if "password" in str(exc).lower():
            if password:
                raise KeystoreError("The password does not open this PKCS#12 file.", "password") from None
            raise KeystoreError("This PKCS#12 file is protected by a password; enter it.", "password") from None
        raise KeystoreError("This PKCS#12 file is damaged and cannot be read.", "file") from None
    except UnsupportedAlgorithm:
        raise KeystoreError(
            "This PKCS#12 file uses an encryption this keystore cannot read; export it again with AES.", "file"
        ) from None
    if key is None:
        raise KeystoreError("This PKCS#12 file holds no private key; import its certificates as trusted certificates.", "file")
    check_key_pair_key(key)
    certificates = ([certificate] if certificate else []) + list(additional or [])
    if not certificates:
        raise KeystoreError("This PKCS#12 file holds a private key but no certificate.", "file")
    return _bundle(key, certificates)


def _bundle(key, certificates):
    leaf = next((cert for cert in certificates if public_key_matches(cert, key)), None)
    if leaf is None:
        raise KeystoreError("The certificate's public key does not match the private key in this file.", "file")
    chain = order_chain(leaf, [cert for cert in certificates if cert is not leaf])
    return Bundle(private_key=key, certificate=leaf, chain=chain)


def order_chain(leaf, others):
    """`others` ordered from the leaf's issuer upwards where the links can be found; the rest after."""
    ordered, remaining, current = [], list(others), leaf
    while remaining:
        issuer = next((cert for cert in remaining if cert.subject == current.issuer and cert is not current), None)
        if issuer is None or current.subject == current.issuer:
            break
        ordered.append(issuer)
        remaining.remove(issuer)
        current = issuer
    return ordered + remaining


# ---------------------------------------------------------------- facts


def fingerprint_sha256(certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


def certificate_facts(certificate) -> CertificateFacts:
    public_key = certificate.public_key()
    key_type, key_size, curve = _key_facts(public_key)
    try:
        basic = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = basic.ca
    except x509.ExtensionNotFound:
        is_ca = False
    serial = f"{certificate.serial_number:X}"
    return CertificateFacts(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        serial_number=serial if len(serial) % 2 == 0 else "0" + serial,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        key_type=key_type,
        key_size=key_size,
        curve=curve,
        fingerprint_sha256=fingerprint_sha256(certificate),
        key_usage=_key_usage_text(certificate),
        extended_key_usage=_extended_key_usage_text(certificate),
        subject_alt_names=san_strings(subject_alt_names(certificate)),
        is_ca=is_ca,
        self_signed=certificate.subject == certificate.issuer and _signed_by(certificate, certificate),
    )


def _key_facts(public_key):
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA", public_key.key_size, ""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "EC", public_key.curve.key_size, public_key.curve.name
    if isinstance(public_key, dsa.DSAPublicKey):
        return "DSA", public_key.key_size, ""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, ""
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448", 456, ""
    return "other", 0, ""


def _key_usage_text(certificate):
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return ""
    labels = [label for attr, label in _KEY_USAGE_LABELS if getattr(usage, attr)]
    if usage.key_agreement:
        # encipher_only/decipher_only are defined only together with key agreement.
        labels += [
            label
            for attr, label in (("encipher_only", "Encipher only"), ("decipher_only", "Decipher only"))
            if getattr(usage, attr)
        ]
    return ", ".join(labels)


def _extended_key_usage_text(certificate):
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return ""
    return ", ".join(_EKU_LABELS.get(oid, oid.dotted_string) for oid in usages)


# ---------------------------------------------------------------- export


def export_pkcs12(private_key, certificate, chain=(), password="", friendly_name="") -> bytes:
    if not password or len(password) < MIN_PKCS12_PASSWORD_LENGTH:
        raise KeystoreError(
            f"Use a password of at least {MIN_PKCS12_PASSWORD_LENGTH} characters for the PKCS#12 file.", "password"
        )
    return pkcs12.serialize_key_and_certificates(
        (friendly_name or "").encode() or None,
        private_key,
        certificate,
        list(chain) or None,
        serialization.BestAvailableEncryption(password.encode()),
    )


# ---------------------------------------------------------------- chain verification


def _signed_by(certificate, issuer) -> bool:
    """Issuer name matches and the signature verifies with the issuer's public key."""
    try:
        certificate.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False


def _is_ca(certificate):
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _check_time(certificate, at, what):
    if at < certificate.not_valid_before_utc:
        raise KeystoreError(
            f"{what} ({certificate.subject.rfc4514_string()}) is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC."
        )
    if at > certificate.not_valid_after_utc:
        raise KeystoreError(
            f"{what} ({certificate.subject.rfc4514_string()}) expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC."
        )


MAX_CHAIN_DEPTH = 10


def verify_chain(certificate, trusted, intermediates=(), at=None) -> list:
    """The path [certificate, ..., trust anchor] if `certificate` chains to one of the `trusted`
    certificates: each link's issuer name matches, its signature verifies with the issuer's key, each
    certificate is within its validity at `at`, and every issuer above the leaf is a CA (Basic
    Constraints; a trust anchor without the extension, e.g. an old v1 root, is accepted) whose path
    length allows the chain. A certificate that is itself in `trusted` is trusted directly.
    Raises KeystoreError saying which link failed."""
    at = at or datetime.now(UTC)
    trusted = list(trusted)
    trusted_prints = {fingerprint_sha256(cert) for cert in trusted}
    _check_time(certificate, at, "The certificate")
    path = [certificate]
    current = certificate
    while True:
        if fingerprint_sha256(current) in trusted_prints:
            return path
        if len(path) > MAX_CHAIN_DEPTH:
            raise KeystoreError(f"The chain is longer than {MAX_CHAIN_DEPTH} certificates.")
        issuer_name = current.issuer.rfc4514_string()
        candidates = [cert for cert in trusted + list(intermediates) if cert.subject == current.issuer]
        if not candidates:
            raise KeystoreError(f"No trusted CA issued this certificate (issuer: {issuer_name}).")
        issuer = next((cert for cert in candidates if _signed_by(current, cert)), None)
        if issuer is None:
            raise KeystoreError(
                f"The signature of {current.subject.rfc4514_string()} does not verify with the key of {issuer_name}."
            )
        if fingerprint_sha256(issuer) == fingerprint_sha256(current):
            # Self-signed and not trusted: the walk ends without an anchor.
            raise KeystoreError(f"The chain ends at {issuer_name}, which is not a trusted CA.")
        is_anchor = fingerprint_sha256(issuer) in trusted_prints
        constraints = _is_ca(issuer)
        if (constraints is not None and not constraints.ca) or (constraints is None and not is_anchor):
            raise KeystoreError(f"{issuer_name} is not a CA certificate (Basic Constraints), so it cannot issue certificates.")
        intermediates_below = len(path) - 1
        if constraints is not None and constraints.path_length is not None and intermediates_below > constraints.path_length:
            raise KeystoreError(f"The chain is longer than the path length that {issuer_name} allows.")
        _check_time(issuer, at, "The CA certificate")
        path.append(issuer)
        current = issuer
