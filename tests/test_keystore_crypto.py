"""entities.keystore: pure crypto, no database."""

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from entities import keystore
from entities.keystore import KeystoreError
from tests.keystore_fixtures import DER, cert_pem, key_pem, make_ca, name, new_key, self_signed


def error_of(call, *args, **kwargs):
    with pytest.raises(KeystoreError) as caught:
        call(*args, **kwargs)
    return caught.value


# ---------------------------------------------------------------- generation


@pytest.mark.parametrize(
    "algorithm, key_type, size, curve",
    [
        ("rsa2048", "RSA", 2048, ""),
        ("rsa3072", "RSA", 3072, ""),
        ("rsa4096", "RSA", 4096, ""),
        ("ec-p256", "EC", 256, "secp256r1"),
        ("ec-p384", "EC", 384, "secp384r1"),
    ],
)
def test_each_algorithm_makes_a_working_self_signed_certificate(algorithm, key_type, size, curve):
    key = keystore.generate_private_key(algorithm)
    cert = keystore.self_signed_certificate(
        key, "CN=idp.example.org,O=Example", 30, ["idp.example.org", "https://idp.example.org/"]
    )

    facts = keystore.certificate_facts(cert)
    assert (facts.key_type, facts.key_size, facts.curve) == (key_type, size, curve)
    assert facts.subject == facts.issuer == "CN=idp.example.org,O=Example"
    assert facts.self_signed and not facts.is_ca
    assert facts.subject_alt_names == ["DNS:idp.example.org", "URI:https://idp.example.org/"]
    assert keystore.public_key_matches(cert, key)
    cert.verify_directly_issued_by(cert)  # the signature is real
    assert timedelta(days=30) <= facts.not_after - facts.not_before <= timedelta(days=30, minutes=6)
    expected_usage = "Digital signature, Key encipherment" if key_type == "RSA" else "Digital signature, Key agreement"
    assert facts.key_usage == expected_usage
    expected_hash = hashes.SHA384 if algorithm == "ec-p384" else hashes.SHA256
    assert isinstance(cert.signature_hash_algorithm, expected_hash)


def test_unknown_algorithm_is_a_plain_error():
    error = error_of(keystore.generate_private_key, "rsa1024")
    assert error.field == "algorithm"
    assert "rsa2048" in error.message


@pytest.mark.parametrize("days", [0, -1, 7301, "ten"])
def test_validity_days_are_bounded(days):
    error = error_of(keystore.self_signed_certificate, new_key(), "CN=x", days)
    assert error.field == "days"


def test_private_key_pem_is_pkcs8_and_reloads():
    key = keystore.generate_private_key("ec-p256")
    pem = keystore.private_key_to_pem(key)
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert keystore.load_private_key_pem(pem).private_numbers() == key.private_numbers()


# ---------------------------------------------------------------- subject and SAN parsing


@pytest.mark.parametrize(
    "text, expected",
    [
        ("CN=idp.example.org,O=Example", "CN=idp.example.org,O=Example"),
        ("  cn = idp.example.org ,  o = Example , c=JP ", "CN=idp.example.org,O=Example,C=JP"),
        ("/C=JP/O=Example Ltd/CN=vpn.example.jp", "CN=vpn.example.jp,O=Example Ltd,C=JP"),
        ('CN="Doe, John",O=Example', "CN=Doe\\, John,O=Example"),
        ("CN=Doe\\, John,O=A\\+B", "CN=Doe\\, John,O=A\\+B"),
        ("CN=host+UID=42,DC=example,DC=org", "CN=host+UID=42,DC=example,DC=org"),
        ("CN=caf\\C3\\A9", "CN=café"),
        ("CN=x;O=y", "CN=x,O=y"),
        ("E=admin@example.org,CN=x", "1.2.840.113549.1.9.1=admin@example.org,CN=x"),
        ("2.5.4.3=by-oid", "CN=by-oid"),
    ],
)
def test_subject_dn_parsing(text, expected):
    assert keystore.parse_subject(text).rfc4514_string() == expected


def test_subject_order_is_kept_in_the_certificate():
    parsed = keystore.parse_subject("CN=idp.example.org,O=Example,C=JP")
    # Stored least specific first, as OpenSSL prints it: C, O, CN.
    assert [attribute.oid for attribute in parsed] == [NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME]


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "Enter a subject"),
        ("idp.example.org", "not of the form NAME=value"),
        ("XX=1", "Unknown attribute 'XX'"),
        ("C=Japan", "two-letter code"),
        ("CN=", "has no value"),
        ('CN="open', "not closed"),
        ('CN="a"b', "Text follows a quoted value"),
        ("=x", "attribute name is missing"),
        ("CN=" + "x" * 65, "longer than 64"),
    ],
)
def test_bad_subjects_get_plain_messages(text, words):
    error = error_of(keystore.parse_subject, text)
    assert error.field == "subject"
    assert words in error.message


def test_san_list_detects_kinds_and_prefixes():
    names = keystore.parse_san_list(
        ["idp.example.org, https://idp.example.org/saml", "10.0.0.1\nurn:example:sp admin@example.org DNS:*.example.org"]
    )
    assert keystore.san_strings(names) == [
        "DNS:idp.example.org",
        "URI:https://idp.example.org/saml",
        "IP:10.0.0.1",
        "URI:urn:example:sp",
        "email:admin@example.org",
        "DNS:*.example.org",
    ]
    assert keystore.parse_san_list("a.example.org a.example.org") == [x509.DNSName("a.example.org")]
    assert keystore.parse_san_list("") == []


@pytest.mark.parametrize("value", ["bad_host!", "IP:999.1.1.1", "-leading.example.org", "URI:not a uri"])
def test_bad_san_entries_are_refused(value):
    error = error_of(keystore.parse_san_list, value)
    assert error.field == "san"


# ---------------------------------------------------------------- CSR and CA signing


def test_csr_is_signed_by_the_key_and_a_ca_can_sign_it():
    key = keystore.generate_private_key("ec-p384")
    csr = keystore.create_csr(key, "CN=vpn.example.jp,O=Example,C=JP", ["vpn.example.jp"])
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=vpn.example.jp,O=Example,C=JP"
    assert keystore.san_strings(keystore.subject_alt_names(csr)) == ["DNS:vpn.example.jp"]
    pem = keystore.csr_to_pem(csr)
    assert pem.startswith("-----BEGIN CERTIFICATE REQUEST-----")

    ca = make_ca()
    signed = ca.sign_csr(pem)
    assert keystore.public_key_matches(signed, key)
    assert not keystore.public_key_matches(signed, new_key())
    assert keystore.verify_chain(signed, [ca.certificate]) == [signed, ca.certificate]


# ---------------------------------------------------------------- reading certificates


def test_load_certificates_from_pem_der_and_pkcs7():
    _k, one = self_signed("one.example.org")
    _k, two = self_signed("two.example.org")
    assert keystore.load_certificates(cert_pem(one, two)) == [one, two]
    assert keystore.load_certificates(one.public_bytes(DER)) == [one]
    bundle_der = pkcs7.serialize_certificates([one, two], DER)
    assert set(keystore.load_certificates(bundle_der)) == {one, two}
    bundle_pem = pkcs7.serialize_certificates([one], serialization.Encoding.PEM)
    assert keystore.load_certificates(bundle_pem) == [one]
    # Text around the PEM blocks (as openssl x509 -text writes it) does not matter.
    assert keystore.load_certificates(b"Certificate:\n  Data: ...\n" + cert_pem(one)) == [one]


@pytest.mark.parametrize(
    "data, words",
    [
        (b"hello, this is a text file\n", keystore.NOT_A_CERTIFICATE),
        (b"\x00\x01\x02 binary junk", keystore.NOT_A_CERTIFICATE),
        (b"   \n", "The file is empty."),
        (b"x" * (keystore.MAX_INPUT_BYTES + 1), "too large"),
    ],
)
def test_not_a_certificate(data, words):
    error = error_of(keystore.load_certificates, data)
    assert error.field == "file"
    assert words in error.message


def test_a_csr_or_a_key_or_a_pkcs12_given_as_certificate_is_named():
    key = new_key()
    csr_pem = keystore.csr_to_pem(keystore.create_csr(key, "CN=x"))
    assert "certificate signing request" in error_of(keystore.load_certificates, csr_pem).message
    assert "private key but no certificate" in error_of(keystore.load_certificates, key_pem(key)).message
    _k, cert = self_signed(key=key)
    p12 = pkcs12.serialize_key_and_certificates(b"x", key, cert, None, serialization.BestAvailableEncryption(b"password1"))
    assert "PKCS#12" in error_of(keystore.load_certificates, p12).message


# ---------------------------------------------------------------- reading key pairs


def test_pem_key_pair_with_chain_in_any_order():
    ca = make_ca()
    intermediate = ca.intermediate()
    key = new_key("rsa")
    leaf = intermediate.issue(key.public_key(), name("sp.example.org"))
    bundle = keystore.load_key_pair(cert_pem(ca.certificate) + key_pem(key) + cert_pem(leaf, intermediate.certificate))
    assert bundle.certificate == leaf
    assert bundle.chain == [intermediate.certificate, ca.certificate]  # ordered upwards from the leaf
    assert keystore.public_key_matches(bundle.certificate, bundle.private_key)


def test_encrypted_pem_key_needs_its_password():
    key = new_key()
    _k, cert = self_signed(key=key)
    data = key_pem(key, password="pem-secret") + cert_pem(cert)
    assert keystore.load_key_pair(data, "pem-secret").certificate == cert
    assert error_of(keystore.load_key_pair, data, "wrong").message == "The password does not open this private key."
    assert error_of(keystore.load_key_pair, data).message == "This private key is encrypted; enter its password."
    assert error_of(keystore.load_key_pair, data).field == "password"


def test_pkcs12_right_wrong_and_missing_password():
    ca = make_ca()
    key = new_key()
    leaf = ca.issue(key.public_key(), name("idp.example.org"))
    p12 = pkcs12.serialize_key_and_certificates(
        b"idp", key, leaf, [ca.certificate], serialization.BestAvailableEncryption(b"open-sesame")
    )

    bundle = keystore.load_key_pair(p12, "open-sesame")
    assert bundle.certificate == leaf and bundle.chain == [ca.certificate]

    wrong = error_of(keystore.load_key_pair, p12, "not-the-password")
    assert (wrong.message, wrong.field) == ("The password does not open this PKCS#12 file.", "password")
    missing = error_of(keystore.load_key_pair, p12)
    assert (missing.message, missing.field) == ("This PKCS#12 file is protected by a password; enter it.", "password")


def test_key_pair_file_problems_have_plain_messages():
    key, cert = self_signed()
    other_key = new_key()
    assert "does not match the private key" in error_of(keystore.load_key_pair, key_pem(other_key) + cert_pem(cert)).message
    assert "no private key" in error_of(keystore.load_key_pair, cert_pem(cert)).message
    assert "no certificate" in error_of(keystore.load_key_pair, key_pem(key)).message
    assert "2 private keys" in error_of(keystore.load_key_pair, key_pem(key) + key_pem(other_key) + cert_pem(cert)).message
    assert "not a key pair" in error_of(keystore.load_key_pair, b"just some text").message
    weak = rsa.generate_private_key(65537, 1024)
    _k, weak_cert = self_signed(key=weak)
    assert "shorter than 2048 bits" in error_of(keystore.load_key_pair, key_pem(weak) + cert_pem(weak_cert)).message


def test_unsupported_curve_is_refused():
    key = ec.generate_private_key(ec.SECP256K1())
    _k, cert = self_signed(key=key)
    assert "not supported" in error_of(keystore.load_key_pair, key_pem(key) + cert_pem(cert)).message


# ---------------------------------------------------------------- facts and export


def test_certificate_facts():
    ca = make_ca("Facts CA")
    key = new_key("rsa")
    builder_cert = ca.issue(key.public_key(), name("tls.example.org"), san=[x509.DNSName("tls.example.org")])
    facts = keystore.certificate_facts(builder_cert)
    assert facts.issuer == "CN=Facts CA,O=Test CA Org"
    assert facts.serial_number == f"{builder_cert.serial_number:X}".rjust(len(facts.serial_number), "0")
    assert len(facts.serial_number) % 2 == 0
    assert facts.fingerprint_sha256 == builder_cert.fingerprint(hashes.SHA256()).hex(":").upper()
    assert len(facts.fingerprint_sha256) == 95
    assert facts.not_after == builder_cert.not_valid_after_utc
    assert not facts.self_signed and not facts.is_ca
    assert facts.key_description == "RSA 2048"

    ca_facts = keystore.certificate_facts(ca.certificate)
    assert ca_facts.is_ca and ca_facts.self_signed
    assert ca_facts.key_usage == "Certificate signing, CRL signing"
    assert ca_facts.key_description == "EC P-256"


def test_extended_key_usage_text():
    key = new_key()
    subject = name("client")
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, x509.ObjectIdentifier("1.2.3.4")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    assert keystore.certificate_facts(cert).extended_key_usage == "TLS client authentication, 1.2.3.4"


def test_export_pem_der_and_pkcs12_round_trip():
    ca = make_ca()
    key = new_key()
    leaf = ca.issue(key.public_key(), name("idp.example.org"))
    assert x509.load_pem_x509_certificate(keystore.certificate_to_pem(leaf).encode()) == leaf
    assert x509.load_der_x509_certificate(keystore.certificate_to_der(leaf)) == leaf

    p12 = keystore.export_pkcs12(key, leaf, [ca.certificate], "export-pass", "idp")
    loaded_key, loaded_cert, extra = pkcs12.load_key_and_certificates(p12, b"export-pass")
    assert loaded_cert == leaf and extra == [ca.certificate]
    assert keystore.public_key_matches(loaded_cert, loaded_key)
    error = error_of(keystore.export_pkcs12, key, leaf, [], "short")
    assert error.field == "password" and "at least 8" in error.message


# ---------------------------------------------------------------- chain verification


def test_chain_walk_to_a_trusted_root(ca_and_leaf):
    root, intermediate, _key, leaf = ca_and_leaf
    path = keystore.verify_chain(leaf, [root.certificate], [intermediate.certificate])
    assert path == [leaf, intermediate.certificate, root.certificate]
    # Trusting the intermediate directly is enough on its own.
    assert keystore.verify_chain(leaf, [intermediate.certificate]) == [leaf, intermediate.certificate]
    # A certificate that is itself trusted (a pinned partner certificate).
    assert keystore.verify_chain(leaf, [leaf]) == [leaf]


def test_chain_failures_say_which_link(ca_and_leaf):
    root, intermediate, key, leaf = ca_and_leaf
    other_root = make_ca("Other Root")
    assert (
        "No trusted CA issued this certificate"
        in error_of(keystore.verify_chain, leaf, [other_root.certificate], [intermediate.certificate]).message
    )
    assert "not a trusted CA" in error_of(keystore.verify_chain, intermediate.certificate, [], [root.certificate]).message

    # Same issuer name, but signed by another key: the signature does not verify.
    impostor = make_ca(intermediate.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
    forged = impostor.issue(key.public_key(), name("partner.example.org"))
    forged = x509.load_pem_x509_certificate(cert_pem(forged))
    error = error_of(keystore.verify_chain, forged, [root.certificate], [intermediate.certificate])
    assert "does not verify" in error.message

    later = datetime.now(UTC) + timedelta(days=400)
    assert "expired on" in error_of(keystore.verify_chain, leaf, [root.certificate], [intermediate.certificate], at=later).message
    earlier = datetime.now(UTC) - timedelta(days=2)
    assert (
        "not valid before"
        in error_of(keystore.verify_chain, leaf, [root.certificate], [intermediate.certificate], at=earlier).message
    )


def test_non_ca_issuer_and_path_length_are_enforced():
    root = make_ca()
    # An end-entity certificate used as an issuer.
    ee_key = new_key()
    end_entity = root.issue(ee_key.public_key(), name("not-a-ca"))
    from tests.keystore_fixtures import TestCA

    fake_ca = TestCA(ee_key, end_entity)
    victim = fake_ca.issue(new_key().public_key(), name("victim"))
    assert "is not a CA certificate" in error_of(keystore.verify_chain, victim, [root.certificate], [end_entity]).message

    # The intermediate has path length 0: it may not issue another CA.
    intermediate = root.intermediate()
    sub_key = new_key()
    sub = TestCA(sub_key, intermediate.issue(sub_key.public_key(), name("Sub CA"), ca=True, path_length=0))
    deep_leaf = sub.issue(new_key().public_key(), name("deep"))
    error = error_of(keystore.verify_chain, deep_leaf, [root.certificate], [intermediate.certificate, sub.certificate])
    assert "path length" in error.message
