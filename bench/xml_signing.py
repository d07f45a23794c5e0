"""Benchmark of the XML signing core against its floors, in one run (not a test).

    cd /work/main && .venv/bin/python bench/xml_signing.py [--seconds 1] [--rounds 5] [--skip-pysaml2]

Measures, single-threaded (so each figure is per core):
  raw RSA-2048       cryptography signing 4 KB of bytes (PKCS#1 v1.5, SHA-256)
  raw xmlsec sign    python-xmlsec signing a ~4 KB assertion, key loaded once, no checks
  our sign           federation.saml.signing.sign on the same assertion (RSA-SHA256)
  our sign EC        the same with an EC P-256 key (ECDSA-SHA256)
  raw xmlsec verify  python-xmlsec verifying it, key loaded once, no checks
  our verify         federation.saml.signing.verify (all wrapping checks, isolated copy)
  python3-saml sign / verify   OneLogin_Saml2_Utils.add_sign / validate_sign
  pysaml2 sign       SecurityContext.sign_statement (runs the xmlsec1 tool per signature)
  our sign_query / verify_query   Redirect-binding query signatures
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.simplefilter("ignore")

import xmlsec  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402
from onelogin.saml2.utils import OneLogin_Saml2_Utils  # noqa: E402
from saml2.saml import assertion_from_string  # noqa: E402
from saml2.sigver import pre_signature_part  # noqa: E402

from federation.saml import constants as C  # noqa: E402
from federation.saml.bindings import deflate_encode  # noqa: E402
from federation.saml.keys import xmlsec_private_key, xmlsec_public_key  # noqa: E402
from federation.saml.signing import sign, sign_query, verify, verify_query  # noqa: E402
from federation.saml.xml import parse_xml, to_bytes  # noqa: E402
from tests.saml import messages, peers  # noqa: E402
from tests.saml.credentials import make_credential  # noqa: E402

DS_SIGNATURE = f"{{{C.NS_DS}}}Signature"


def rate(function, seconds):
    """Calls per second of `function`, run repeatedly for about `seconds` after a warm-up."""
    for _ in range(3):
        function()
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        function()
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per row and round (default 1)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; rows are compared by median (default 5)")
    parser.add_argument("--skip-pysaml2", action="store_true", help="leave out pysaml2 (it forks xmlsec1 per call)")
    args = parser.parse_args()

    rsa, ec = make_credential("rsa", "bench idp"), make_credential("ec", "bench idp ec")
    unsigned = messages.assertion_xml(assertion_id="_bench").encode()
    payload = os.urandom(len(unsigned))

    def raw_rsa():
        rsa.key.sign(payload, padding.PKCS1v15(), hashes.SHA256())

    xmlsec_key = xmlsec_private_key(rsa.key)

    def raw_xmlsec_sign():
        assertion = parse_xml(unsigned)
        signature = xmlsec.template.create(assertion, xmlsec.Transform.EXCL_C14N, xmlsec.Transform.RSA_SHA256, ns="ds")
        assertion.insert(1, signature)
        reference = xmlsec.template.add_reference(signature, xmlsec.Transform.SHA256, uri="#_bench")
        xmlsec.template.add_transform(reference, xmlsec.Transform.ENVELOPED)
        xmlsec.template.add_transform(reference, xmlsec.Transform.EXCL_C14N)
        context = xmlsec.SignatureContext()
        context.key = xmlsec_key
        context.register_id(assertion, "ID")
        context.sign(signature)

    def our_sign():
        sign(parse_xml(unsigned), rsa.key, rsa.certificate)

    def our_sign_ec():
        sign(parse_xml(unsigned), ec.key, ec.certificate, algorithm=C.ECDSA_SHA256)

    signed_assertion = parse_xml(unsigned)
    sign(signed_assertion, rsa.key, rsa.certificate)
    signed = to_bytes(signed_assertion)
    public_key = xmlsec_public_key(rsa.certificate)

    def raw_xmlsec_verify():
        assertion = parse_xml(signed)
        context = xmlsec.SignatureContext()
        context.key = public_key
        context.register_id(assertion, "ID")
        context.verify(assertion.find(DS_SIGNATURE))

    def our_verify():
        assertion = parse_xml(signed)
        verify(assertion, assertion, [rsa.certificate])

    key_pem, cert_pem = rsa.key_pem.decode(), rsa.cert_pem.decode()

    def python3saml_sign():
        OneLogin_Saml2_Utils.add_sign(unsigned, key_pem, cert_pem)

    def python3saml_verify():
        assert OneLogin_Saml2_Utils.validate_sign(signed, cert=cert_pem, xpath="/saml:Assertion/ds:Signature")

    query_message = deflate_encode(to_bytes(messages.authn_request()))
    query = sign_query([("SAMLRequest", query_message), ("RelayState", "https://sp.example.org/app")], rsa.key)

    def our_sign_query():
        sign_query([("SAMLRequest", query_message), ("RelayState", "https://sp.example.org/app")], rsa.key)

    def our_verify_query():
        verify_query(query, [rsa.certificate])

    rows = [
        ("raw RSA-2048 sign (cryptography)", raw_rsa, "floor: ceiling of any RSA signer"),
        ("raw xmlsec sign, ~4 KB assertion", raw_xmlsec_sign, "floor: xmlsec, no checks"),
        ("our sign (RSA-SHA256)", our_sign, ""),
        ("our sign (ECDSA P-256)", our_sign_ec, ""),
        ("python3-saml add_sign", python3saml_sign, "peer"),
        ("raw xmlsec verify", raw_xmlsec_verify, "floor: xmlsec, no checks"),
        ("our verify (all checks)", our_verify, ""),
        ("python3-saml validate_sign", python3saml_verify, "peer"),
        ("our sign_query (Redirect)", our_sign_query, ""),
        ("our verify_query (Redirect)", our_verify_query, ""),
    ]

    with tempfile.TemporaryDirectory() as directory:
        if not args.skip_pysaml2:
            server = peers.pysaml2_idp(directory, rsa, make_credential("rsa", "bench sp"))
            statement = assertion_from_string(unsigned.decode())
            statement.signature = pre_signature_part("_bench", server.sec.my_cert, 1, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256)
            prepared = str(statement)

            def pysaml2_sign():
                server.sec.sign_statement(prepared, f"{C.NS_SAML}:Assertion", node_id="_bench")

            rows.insert(5, ("pysaml2 sign (xmlsec1 tool)", pysaml2_sign, "peer: floor to beat"))

        print(f"# XML signing benchmark - Python {platform.python_version()}, {os.cpu_count()} CPUs, one thread")
        print(f"# assertion: {len(unsigned)} bytes unsigned, {len(signed)} bytes signed")
        print(f"# {args.rounds} interleaved rounds of {args.seconds:g} s per row; median and best round shown\n")
        results = {name: [] for name, _, _ in rows}
        for _ in range(args.rounds):
            for name, function, _ in rows:
                results[name].append(rate(function, args.seconds))
        print(f"| {'measurement':<36} | {'median ops/s':>12} | {'best ops/s':>10} | {'ms/op':>6} | note")
        print(f"|{'-' * 38}|{'-' * 13}:|{'-' * 11}:|{'-' * 7}:|------")
        for name, _, note in rows:
            median = statistics.median(results[name])
            print(f"| {name:<36} | {median:>12.0f} | {max(results[name]):>10.0f} | {1000 / median:>6.3f} | {note}")


if __name__ == "__main__":
    main()
