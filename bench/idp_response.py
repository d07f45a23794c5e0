"""Benchmark of the IdP protocol core: signed SAML 2.0 Responses per second per core, against its
floors and pysaml2, in one run (not a test).

    cd /work/main && .venv/bin/python bench/idp_response.py [--seconds 1] [--rounds 5] [--profile]

Every row produces the same thing: a samlp:Response holding one saml:Assertion (persistent
NameID with both qualifiers, bearer confirmation, conditions with one audience, an authentication
statement, 5 single-valued attributes) with the assertion signed, RSA-2048, serialised to bytes.
Single-threaded, so every figure is per core. Rows run round-robin and are compared by their
median, so a burst of other load on the machine does not favour one row.

  raw RSA-2048        cryptography signing bytes of the assertion's size (PKCS#1 v1.5, SHA-256)
  raw xmlsec          python-xmlsec on the equivalent unsigned Response: parse it, template with
                      KeyInfo/X509Data (xmlsec.template), SignatureContext.sign, serialise; key
                      and certificate loaded once; no checks at all
  ours                federation.saml.assertions.build_response from its settings dataclass, then
                      IssuedResponse.to_bytes (RSA-SHA256, certificate in KeyInfo)
  pysaml2             Server.create_authn_response(sign_assertion=True) in its default
                      configuration (xmlsec1 tool backend, its default algorithms)
Targets: ours >= 70 % of raw xmlsec, and >= 10x pysaml2. With --profile, cProfile of ours.
"""

import argparse
import cProfile
import os
import platform
import pstats
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
from saml2.saml import NAMEID_FORMAT_PERSISTENT  # noqa: E402
from saml2.saml import NameID as Pysaml2NameID  # noqa: E402

from federation.saml import constants as C  # noqa: E402
from federation.saml.assertions import (  # noqa: E402
    AssertionSettings,
    Attribute,
    EncryptionSettings,
    NameID,
    ResponseSettings,
    build_response,
)
from federation.saml.common import SigningKey  # noqa: E402
from federation.saml.keys import private_key_pem  # noqa: E402
from federation.saml.xml import parse_xml, to_bytes  # noqa: E402
from tests.saml import messages, peers  # noqa: E402
from tests.saml.credentials import make_credential  # noqa: E402

ASSERTION = f"{{{C.NS_SAML}}}Assertion"
ATTRIBUTES = {
    "urn:oid:0.9.2342.19200300.100.1.3": ("mail", "alice@example.org"),
    "urn:oid:2.5.4.42": ("givenName", "Alice"),
    "urn:oid:2.5.4.4": ("sn", "Liddell"),
    "urn:oid:2.16.840.1.113730.3.1.241": ("displayName", "Alice Liddell"),
    "urn:oid:1.3.6.1.4.1.5923.1.1.1.6": ("eduPersonPrincipalName", "alice@example.org"),
}


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


def settings_for(idp, sign="assertion", encryption=None):
    assertion = AssertionSettings(
        issuer=messages.IDP_ENTITY_ID,
        audiences=(messages.SP_ENTITY_ID,),
        recipient=messages.SP_ACS_URL,
        name_id=NameID("alice-7f3a", C.NAMEID_PERSISTENT, messages.IDP_ENTITY_ID, messages.SP_ENTITY_ID),
        in_response_to="_request-1",
        attributes=tuple(Attribute(name, (value,), C.ATTRNAME_URI, friendly) for name, (friendly, value) in ATTRIBUTES.items()),
        authn_context_class=C.AC_PASSWORD_PROTECTED_TRANSPORT,
        session_index="_session-1",
    )
    return ResponseSettings(
        assertion, messages.SP_ACS_URL, SigningKey(idp.key, idp.certificate), sign=sign, encryption=encryption
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per row and round (default 1)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; rows are compared by median (default 5)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of our row (2,000 responses)")
    args = parser.parse_args()

    idp, sp = make_credential("rsa", "bench idp"), make_credential("rsa", "bench sp")
    settings = settings_for(idp)

    def ours():
        return build_response(settings).to_bytes()

    signed = ours()
    unsigned = to_bytes(build_response(settings_for(idp, sign="none")).element)
    payload = os.urandom(len(to_bytes(parse_xml(unsigned).find(ASSERTION))))

    def raw_rsa():
        idp.key.sign(payload, padding.PKCS1v15(), hashes.SHA256())

    xmlsec_key = xmlsec.Key.from_memory(private_key_pem(idp.key), xmlsec.KeyFormat.PEM, None)
    xmlsec_key.load_cert_from_memory(idp.cert_pem, xmlsec.KeyFormat.PEM)

    def raw_xmlsec():
        response = parse_xml(unsigned)
        assertion = response.find(ASSERTION)
        signature = xmlsec.template.create(assertion, xmlsec.Transform.EXCL_C14N, xmlsec.Transform.RSA_SHA256, ns="ds")
        assertion.insert(1, signature)
        reference = xmlsec.template.add_reference(signature, xmlsec.Transform.SHA256, uri="#" + assertion.get("ID"))
        xmlsec.template.add_transform(reference, xmlsec.Transform.ENVELOPED)
        xmlsec.template.add_transform(reference, xmlsec.Transform.EXCL_C14N)
        xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
        context = xmlsec.SignatureContext()
        context.key = xmlsec_key
        context.register_id(assertion, "ID")
        context.sign(signature)
        return to_bytes(response)

    both = settings_for(idp, sign="both")
    encrypted = settings_for(idp, encryption=EncryptionSettings(sp.certificate, encrypt_assertion=True))
    ec = make_credential("ec", "bench idp ec")
    ec_settings = settings_for(idp)
    ec_settings = ResponseSettings(
        ec_settings.assertion, ec_settings.destination, SigningKey(ec.key, ec.certificate, C.ECDSA_SHA256)
    )

    rows = [
        ("raw RSA-2048 sign (cryptography)", raw_rsa, "floor"),
        ("raw xmlsec sign of the same Response", raw_xmlsec, "floor (target: ours >= 70 %)"),
        ("ours: build + sign assertion + bytes", ours, "measured"),
        ("ours: sign response and assertion", lambda: build_response(both).to_bytes(), "measured (2 signatures)"),
        ("ours: signed + encrypted assertion", lambda: build_response(encrypted).to_bytes(), "measured (AES-256-GCM, RSA-OAEP)"),
        ("ours: ECDSA P-256 signed assertion", lambda: build_response(ec_settings).to_bytes(), "measured"),
    ]

    with tempfile.TemporaryDirectory() as directory:
        server = peers.pysaml2_idp(directory, idp, sp)
        identity = {friendly: [value] for friendly, value in ATTRIBUTES.values()}

        def pysaml2():
            return str(
                server.create_authn_response(
                    identity=identity,
                    in_response_to="_request-1",
                    destination=messages.SP_ACS_URL,
                    sp_entity_id=messages.SP_ENTITY_ID,
                    name_id=Pysaml2NameID(format=NAMEID_FORMAT_PERSISTENT, text="alice-7f3a"),
                    userid="alice",
                    authn={"class_ref": C.AC_PASSWORD_PROTECTED_TRANSPORT, "authn_auth": messages.IDP_ENTITY_ID},
                    sign_assertion=True,
                    sign_response=False,
                )
            )

        pysaml2_size = len(pysaml2())
        rows.append(("pysaml2 create_authn_response", pysaml2, "peer (target: ours >= 10x)"))

        print(f"# IdP Response benchmark - Python {platform.python_version()}, {os.cpu_count()} CPUs, one thread")
        print(
            f"# Response: {len(unsigned)} bytes unsigned, {len(signed)} bytes with the signed assertion; pysaml2's {pysaml2_size}"
        )
        print(f"# {args.rounds} interleaved rounds of {args.seconds:g} s per row; median and best round shown\n")
        results = {name: [] for name, _, _ in rows}
        for _ in range(args.rounds):
            for name, function, _ in rows:
                results[name].append(rate(function, args.seconds))

    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"| {'measurement':<40} | {'median /s':>9} | {'best /s':>7} | {'ms/op':>6} | note")
    print(f"|{'-' * 42}|{'-' * 10}:|{'-' * 8}:|{'-' * 7}:|------")
    for name, _, note in rows:
        median = medians[name]
        print(f"| {name:<40} | {median:>9.0f} | {max(results[name]):>7.0f} | {1000 / median:>6.3f} | {note}")
    # Ratios per round (rows of one round ran back to back, under the same load), then their
    # median: steadier than a ratio of medians on a machine that other work shares.
    ours_rates = results["ours: build + sign assertion + bytes"]
    of_xmlsec = statistics.median(o / x for o, x in zip(ours_rates, results["raw xmlsec sign of the same Response"], strict=True))
    of_pysaml2 = statistics.median(o / p for o, p in zip(ours_rates, results["pysaml2 create_authn_response"], strict=True))
    print()
    print(
        f"ours / raw xmlsec = {of_xmlsec:.0%} (median of per-round ratios; target >= 70 %: {'met' if of_xmlsec >= 0.7 else 'NOT MET'})"
    )
    print(
        f"ours / pysaml2    = {of_pysaml2:.1f}x (median of per-round ratios; target >= 10x: {'met' if of_pysaml2 >= 10 else 'NOT MET'})"
    )

    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(2000):
            ours()
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
