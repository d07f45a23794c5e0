"""Benchmark of the SP assertion consumer against its floor and its peers, in one run (not a test).

    cd /work/main && .venv/bin/python bench/sp_consumer.py [--seconds 1] [--rounds 5] [--skip-pysaml2]
    .venv/bin/python bench/sp_consumer.py --database-url postgres://postgres@127.0.0.1:5432/bench_replay

Every row validates the same POSTed response: our signer's typical response (about 4 KB of
assertion: persistent NameID, bearer confirmation, conditions, authentication statement, 11
attributes), the assertion signed with RSA-2048 / RSA-SHA256, as a SAML 2.0 POST profile IdP
sends it. Single-threaded, so every figure is per core:

  raw xmlsec verify      parse + python-xmlsec verification of the assertion, key loaded once, no checks (floor)
  python3-saml is_valid  OneLogin_Saml2_Response(...).is_valid in strict mode (schema, signatures, every SSO check)
  pysaml2                Saml2Client.parse_authn_request_response, default configuration (forks xmlsec1)
  our consume_post       federation.saml.consumer: decryption off, then the same response with the
                         signed assertion encrypted (AES-256-GCM, RSA-OAEP) and decryption on
  replay cache           federation.replay remember_once per call: database (a fresh SQLite file, or
                         --database-url) and Redis (127.0.0.1:6379 database 15, or --redis-url)
"""

import argparse
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.simplefilter("ignore")


def rate(function, seconds):
    """Calls per second of `function`, run repeatedly for about `seconds` after a warm-up."""
    for _ in range(2):
        function()
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        function()
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def setup_django(database_url, directory):
    """Django on a database of its own: a fresh SQLite file under `directory`, or `database_url`
    (created if missing, dropped afterwards by the caller)."""
    for name in [name for name in os.environ if name.startswith("FEDERATION_")]:
        del os.environ[name]
    os.environ["FEDERATION_VAR_DIR"] = str(directory)
    if database_url:
        os.environ["FEDERATION_DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "federation.settings"
    if database_url and database_url.startswith("postgres"):
        import psycopg

        base, _, name = database_url.rpartition("/")
        with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connection.execute(f'CREATE DATABASE "{name}"')
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def drop_database(database_url):
    if database_url and database_url.startswith("postgres"):
        import psycopg
        from django.db import connections

        connections.close_all()
        base, _, name = database_url.rpartition("/")
        with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per row and round (default 1)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; rows are compared by median (default 5)")
    parser.add_argument("--skip-pysaml2", action="store_true", help="leave out pysaml2 (it forks xmlsec1 per call)")
    parser.add_argument("--database-url", help="replay cache database (default: a fresh SQLite file)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15", help="replay cache Redis (default database 15)")
    args = parser.parse_args()

    directory = tempfile.TemporaryDirectory()
    setup_django(args.database_url, directory.name)
    try:
        run(args, directory.name)
    finally:
        drop_database(args.database_url)
        directory.cleanup()


def run(args, directory):
    import logging

    import xmlsec
    from onelogin.saml2.response import OneLogin_Saml2_Response
    from saml2 import BINDING_HTTP_POST

    from federation import replay
    from federation.saml import constants as C
    from federation.saml.consumer import SignatureRequirement, consume_post
    from federation.saml.keys import xmlsec_public_key
    from federation.saml.xml import children, parse_xml
    from tests.saml import peers, sp_peers
    from tests.saml.credentials import make_credential

    for noisy in ("saml2", "xmlschema"):  # pysaml2 logs every NameID it reads at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    idp, sp = make_credential("rsa", "bench idp"), make_credential("rsa", "bench sp")
    # Valid for 5 minutes from now (the rounds take about a minute with the defaults).
    plain = sp_peers.our_response(idp, sign_response=False)
    encrypted = sp_peers.our_response(idp, sign_response=False, encrypt_for=sp)
    plain_value, encrypted_value = sp_peers.post_value(plain), sp_peers.post_value(encrypted)
    settings = sp_peers.consumer_settings(idp, sp, require_signed=SignatureRequirement.ASSERTION)
    encrypted_settings = sp_peers.consumer_settings(idp, sp, require_encrypted_assertion=True)
    assert consume_post(plain_value, settings).name_id == "alice"
    assert consume_post(encrypted_value, encrypted_settings).assertion_encrypted

    public_key = xmlsec_public_key(idp.certificate)
    signature_tag = f"{{{C.NS_DS}}}Signature"

    def raw_xmlsec_verify():
        assertion = children(parse_xml(plain), C.NS_SAML, "Assertion")[0]
        context = xmlsec.SignatureContext()
        context.key = public_key
        context.register_id(assertion, "ID")
        context.verify(assertion.find(signature_tag))

    def ours_plain():
        consume_post(plain_value, settings)

    def ours_encrypted():
        consume_post(encrypted_value, encrypted_settings)

    python3saml = peers.python3saml_settings(sp, idp.cert_base64, want_messages_signed=False)
    request = peers.python3saml_request("/sp/acs", post_data={"SAMLResponse": plain_value})
    assert OneLogin_Saml2_Response(python3saml, plain_value).is_valid(request, request_id="_request-1", raise_exceptions=True)

    def python3saml_is_valid():
        assert OneLogin_Saml2_Response(python3saml, plain_value).is_valid(request, request_id="_request-1")

    expires = datetime.now(UTC) + timedelta(minutes=10)
    redis_cache = replay.RedisReplayCache(args.redis_url, prefix=f"bench-replay:{secrets.token_hex(4)}:")

    def database_replay():
        assert replay.DatabaseReplayCache().remember_once("_" + secrets.token_hex(20), C.NS_SAML, expires)

    def redis_replay():
        assert redis_cache.remember_once("_" + secrets.token_hex(20), C.NS_SAML, expires)

    def ours_with_database_replay():
        # A new ID per call is not possible for a signed assertion, so the cache write is added
        # after the validation: the cost of the whole ACS step.
        validated = consume_post(plain_value, settings)
        assert replay.DatabaseReplayCache().remember_once(
            "_" + secrets.token_hex(20), validated.issuer, validated.replay_expires_at
        )

    rows = [
        ("raw xmlsec verify of the assertion", raw_xmlsec_verify, "floor: xmlsec, no checks"),
        ("python3-saml is_valid (strict)", python3saml_is_valid, "peer: bar 1 (≥ 2×)"),
        ("our consume_post, decryption off", ours_plain, "measured"),
        ("our consume_post, decryption on", ours_encrypted, "measured"),
        ("our consume_post + database replay cache", ours_with_database_replay, "measured"),
        ("replay cache alone: database", database_replay, "measured"),
        ("replay cache alone: Redis", redis_replay, "measured"),
    ]
    if not args.skip_pysaml2:
        client = peers.pysaml2_sp(directory, sp, idp)

        def pysaml2_parse():
            response = client.parse_authn_request_response(plain_value, BINDING_HTTP_POST, outstanding={"_request-1": "/"})
            assert response.name_id.text == "alice"

        pysaml2_parse()
        rows.insert(2, ("pysaml2 parse_authn_request_response", pysaml2_parse, "peer: bar 2 (≥ 10×)"))

    from django.db import connection

    print(f"# SP consumer benchmark - Python {platform.python_version()}, {os.cpu_count()} CPUs, one thread")
    print(f"# response: {len(plain)} bytes ({len(plain_value)} as POSTed), encrypted variant {len(encrypted)} bytes")
    print(f"# replay cache: {connection.vendor} database, Redis {args.redis_url}")
    print(f"# {args.rounds} interleaved rounds of {args.seconds:g} s per row; median and best round shown\n")
    results = {name: [] for name, _, _ in rows}
    try:
        for _ in range(args.rounds):
            for name, function, _ in rows:
                results[name].append(rate(function, args.seconds))
    finally:
        for key in redis_cache.client.scan_iter(match=redis_cache.prefix + "*"):
            redis_cache.client.delete(key)
    print(f"| {'measurement':<42} | {'median ops/s':>12} | {'best ops/s':>10} | {'ms/op':>7} | note")
    print(f"|{'-' * 44}|{'-' * 13}:|{'-' * 11}:|{'-' * 8}:|------")
    for name, _, note in rows:
        median = statistics.median(results[name])
        print(f"| {name:<42} | {median:>12.0f} | {max(results[name]):>10.0f} | {1000 / median:>7.3f} | {note}")
    ours = statistics.median(results["our consume_post, decryption off"])
    print(f"\nours / python3-saml: {ours / statistics.median(results['python3-saml is_valid (strict)']):.1f}x")
    if not args.skip_pysaml2:
        print(f"ours / pysaml2: {ours / statistics.median(results['pysaml2 parse_authn_request_response']):.1f}x")


if __name__ == "__main__":
    main()
