"""Test key pairs and self-signed certificates made with `cryptography` (the keystore app is not
used here), and the committed test credentials under tests/fixtures/saml/keys/."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "saml"
KEYS = FIXTURES / "keys"


@dataclass
class Credential:
    """A private key and its certificate, with the encodings the peers want."""

    key: object
    certificate: x509.Certificate

    @property
    def key_pem(self):
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    @property
    def cert_pem(self):
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_base64(self):
        """The bare base64 body, as in metadata and in python3-saml settings."""
        return "".join(line for line in self.cert_pem.decode().splitlines() if not line.startswith("-----"))

    def write(self, directory, name):
        """Write `<name>.key` and `<name>.crt` into `directory`; return their paths (for pysaml2,
        which reads keys from files)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key_path, cert_path = directory / f"{name}.key", directory / f"{name}.crt"
        key_path.write_bytes(self.key_pem)
        cert_path.write_bytes(self.cert_pem)
        return str(key_path), str(cert_path)


def make_credential(kind="rsa", common_name="test", days=3650):
    """A fresh RSA-2048 or EC P-256 key with a self-signed certificate (SHA-256)."""
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "federation tests"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )
    now = datetime.now(UTC) - timedelta(minutes=5)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Credential(key, certificate)


def committed_credential(name):
    """A committed test credential (tests/fixtures/saml/keys/<name>.key/.crt): the keys the
    committed vectors were made with. Test keys only, published on purpose."""
    key = serialization.load_pem_private_key((KEYS / f"{name}.key").read_bytes(), password=None)
    certificate = x509.load_pem_x509_certificate((KEYS / f"{name}.crt").read_bytes())
    return Credential(key, certificate)
