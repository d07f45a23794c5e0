"""Keystore fixtures: a test CA made with `cryptography`, certificates with chosen validity, and
factories for keystore entries. Registered as a pytest plugin in conftest.py."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


def name(common_name, organisation="Test CA Org"):
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def new_key(kind="ec"):
    return ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)


def key_pem(key, password=None):
    encryption = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, encryption)


def cert_pem(*certificates):
    return b"".join(cert.public_bytes(PEM) for cert in certificates)


@dataclass
class TestCA:
    """A CA for tests: issues certificates for CSRs and public keys."""

    __test__ = False  # not a test class, whatever its name
    key: object
    certificate: x509.Certificate

    @property
    def pem(self):
        return cert_pem(self.certificate)

    def issue(self, public_key, subject, days=365, not_before=None, san=(), ca=False, path_length=None):
        not_before = not_before or datetime.now(UTC) - timedelta(minutes=1)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_before + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def sign_csr(self, csr_pem, days=365):
        csr = x509.load_pem_x509_csr(csr_pem.encode() if isinstance(csr_pem, str) else csr_pem)
        assert csr.is_signature_valid
        try:
            san = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            san = []
        return self.issue(csr.public_key(), csr.subject, days=days, san=san)

    def intermediate(self, common_name="Test Intermediate CA"):
        key = new_key()
        return TestCA(key, self.issue(key.public_key(), name(common_name), days=1000, ca=True, path_length=0))


def make_ca(common_name="Test Root CA", days=3650):
    key = new_key()
    subject = name(common_name)
    now = datetime.now(UTC) - timedelta(minutes=1)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return TestCA(key, certificate)


def self_signed(common_name="partner.example.org", expires_in=timedelta(days=365), valid_for=None, key=None):
    """A self-signed end-entity certificate whose not-after is now + expires_in (may be negative)."""
    key = key or new_key()
    not_after = datetime.now(UTC) + expires_in
    not_before = not_after - (valid_for or max(expires_in, timedelta(days=1)) + timedelta(days=1))
    subject = name(common_name, "Partner Org")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


@pytest.fixture
def test_ca():
    return make_ca()


@pytest.fixture
def make_key_pair(db):
    """Factory: a key pair entry generated through the service (self-signed)."""
    from entities import services

    def make(alias="signing", algorithm="ec-p256", subject="CN=idp.example.org,O=Example", days=365, san=("idp.example.org",)):
        return services.generate_key_pair(alias, algorithm, subject, days, list(san))

    return make


@pytest.fixture
def make_expiring_certificate(db):
    """Factory: a trusted certificate entry whose certificate expires in `days` days (negative: expired)."""
    from entities import services

    def make(alias, days):
        _key, certificate = self_signed(f"{alias}.example.org", timedelta(days=days, minutes=5 if days >= 0 else 0))
        return services.import_trusted_certificate(alias, cert_pem(certificate))

    return make


@pytest.fixture
def ca_and_leaf():
    """A root CA, an intermediate CA it issued, and a leaf (key + certificate) the intermediate issued."""
    root = make_ca()
    intermediate = root.intermediate()
    leaf_key = new_key()
    leaf = intermediate.issue(leaf_key.public_key(), name("partner.example.org", "Partner Org"), days=200)
    return root, intermediate, leaf_key, leaf
