"""Benchmark of metadata import at national-federation scale (not a test).

    cd /work/main && .venv/bin/python bench/metadata_import.py [--entities 10000] [--skip-pysaml2]
    .venv/bin/python bench/metadata_import.py --database-url postgres://postgres@127.0.0.1:5432/bench_import

Generates (once, into var/bench/, not committed) a synthetic aggregate like a national federation's:
10,000 entities (two SPs for each IdP), 50 distinct RSA-2048 certificates reused across them,
mdui:UIInfo in two languages, organisation, contacts, registration info, entity categories,
several endpoints per entity, requested attributes; signed by the xmlsec1 tool (RSA-SHA256, an
independent signer). Then, each in its own process so that its peak RSS (ru_maxrss) is its own:

  bare lxml streaming parse   iterparse over the file, clearing each EntityDescriptor (the floor)
  our read + verify           entities.metadata_parser.read_metadata with the trust anchor: the
                              streaming signature check and every entity parsed, nothing stored
  whole-tree verify           federation.saml.signing.verify on the whole document parsed as one
                              tree: what the streaming verifier avoids (the memory trade-off)
  our full import             `manage.py metadata import FILE --trust-anchor … --all-entities`:
                              one read that verifies the document and keeps the matching entities,
                              then every entity checked and stored with its endpoints and
                              certificates in batches of 500 (entity_services.check_new_entities:
                              the rules' lookups answered per batch; bulk writes and one audit event
                              per batch) — on SQLite (a fresh file) and, with --database-url, on
                              PostgreSQL (the database is created and dropped by this script). Its
                              notes say where the time went and how many queries it made.
  pysaml2 MetadataStore.load  the same file loaded by pysaml2 (no signature check), the peer

Targets (the issue): our full import under 200 MB peak RSS and faster than pysaml2's load.
"""

import argparse
import base64
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH_DIR = ROOT / "var" / "bench"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"


# ---------------------------------------------------------------- the synthetic aggregate


def _credential(common_name, days=3650):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Benchmark Federation"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = datetime.now(UTC) - timedelta(days=1)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM), certificate.public_bytes(serialization.Encoding.DER)


def _wrap(der):
    body = base64.b64encode(der).decode()
    return "\n".join(body[i : i + 64] for i in range(0, len(body), 64))


def _key_descriptor(use, cert):
    attribute = f' use="{use}"' if use else ""
    method = (
        '      <md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes256-gcm"/>\n' if use == "encryption" else ""
    )
    return (
        f"    <md:KeyDescriptor{attribute}>\n      <ds:KeyInfo>\n        <ds:KeyName>{use or 'key'}</ds:KeyName>\n"
        f"        <ds:X509Data>\n          <ds:X509Certificate>\n{cert}\n          </ds:X509Certificate>\n"
        "        </ds:X509Data>\n      </ds:KeyInfo>\n"
        f"{method}    </md:KeyDescriptor>\n"
    )


def _ui(number, kind):
    return (
        "      <md:Extensions>\n        <mdui:UIInfo>\n"
        f'          <mdui:DisplayName xml:lang="en">{kind} {number} of the Benchmark University</mdui:DisplayName>\n'
        f'          <mdui:DisplayName xml:lang="de">{kind} {number} der Benchmark-Universität</mdui:DisplayName>\n'
        f'          <mdui:Description xml:lang="en">The {kind.lower()} of research group {number}: course material, '
        "library access and the collaboration tools of the faculty.</mdui:Description>\n"
        f'          <mdui:InformationURL xml:lang="en">https://www.unit{number}.example.edu/about</mdui:InformationURL>\n'
        f'          <mdui:PrivacyStatementURL xml:lang="en">https://www.unit{number}.example.edu/privacy</mdui:PrivacyStatementURL>\n'
        f'          <mdui:Logo height="60" width="80">https://www.unit{number}.example.edu/logo.png</mdui:Logo>\n'
        "        </mdui:UIInfo>\n      </md:Extensions>\n"
    )


def _entity_head(number, entity_id):
    return (
        f'  <md:EntityDescriptor entityID="{entity_id}">\n'
        "    <md:Extensions>\n"
        '      <mdrpi:RegistrationInfo registrationAuthority="https://federation.example.org/" registrationInstant="2020-01-01T00:00:00Z">\n'
        '        <mdrpi:RegistrationPolicy xml:lang="en">https://federation.example.org/policy</mdrpi:RegistrationPolicy>\n'
        "      </mdrpi:RegistrationInfo>\n"
        "      <mdattr:EntityAttributes>\n"
        '        <saml:Attribute Name="http://macedir.org/entity-category" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri">\n'
        "          <saml:AttributeValue>http://refeds.org/category/research-and-scholarship</saml:AttributeValue>\n"
        "        </saml:Attribute>\n"
        "      </mdattr:EntityAttributes>\n"
        "    </md:Extensions>\n"
    )


def _entity_tail(number):
    return (
        "    <md:Organization>\n"
        f'      <md:OrganizationName xml:lang="en">Benchmark University {number}</md:OrganizationName>\n'
        f'      <md:OrganizationDisplayName xml:lang="en">Benchmark University {number}</md:OrganizationDisplayName>\n'
        f'      <md:OrganizationURL xml:lang="en">https://www.unit{number}.example.edu/</md:OrganizationURL>\n'
        "    </md:Organization>\n"
        '    <md:ContactPerson contactType="technical">\n'
        f"      <md:GivenName>Operations {number}</md:GivenName>\n"
        f"      <md:EmailAddress>mailto:ops@unit{number}.example.edu</md:EmailAddress>\n"
        "    </md:ContactPerson>\n"
        '    <md:ContactPerson contactType="support">\n'
        f"      <md:EmailAddress>mailto:help@unit{number}.example.edu</md:EmailAddress>\n"
        "    </md:ContactPerson>\n"
        "  </md:EntityDescriptor>\n"
    )


def _sp(number, certs):
    host = f"sp{number}.unit{number // 3}.example.edu"
    post, art, paos = (f"urn:oasis:names:tc:SAML:2.0:bindings:{b}" for b in ("HTTP-POST", "HTTP-Artifact", "PAOS"))
    redirect, soap = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect", "urn:oasis:names:tc:SAML:2.0:bindings:SOAP"
    attributes = "".join(
        f'        <md:RequestedAttribute FriendlyName="{friendly}" Name="{oid}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri" isRequired="true"/>\n'
        for friendly, oid in (
            ("eduPersonPrincipalName", "urn:oid:1.3.6.1.4.1.5923.1.1.1.6"),
            ("mail", "urn:oid:0.9.2342.19200300.100.1.3"),
            ("displayName", "urn:oid:2.16.840.1.113730.3.1.241"),
            ("eduPersonScopedAffiliation", "urn:oid:1.3.6.1.4.1.5923.1.1.1.9"),
        )
    )
    return (
        _entity_head(number, f"https://{host}/shibboleth")
        + '    <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">\n'
        + _ui(number, "Service")
        + _key_descriptor("signing", certs[number % len(certs)])
        + _key_descriptor("encryption", certs[(number * 7 + 3) % len(certs)])
        + f'    <md:ArtifactResolutionService Binding="{soap}" Location="https://{host}/Shibboleth.sso/Artifact/SOAP" index="1"/>\n'
        + f'    <md:SingleLogoutService Binding="{redirect}" Location="https://{host}/Shibboleth.sso/SLO/Redirect"/>\n'
        + f'    <md:SingleLogoutService Binding="{post}" Location="https://{host}/Shibboleth.sso/SLO/POST"/>\n'
        + "    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:transient</md:NameIDFormat>\n"
        + "    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>\n"
        + f'    <md:AssertionConsumerService Binding="{post}" Location="https://{host}/Shibboleth.sso/SAML2/POST" index="1" isDefault="true"/>\n'
        + f'    <md:AssertionConsumerService Binding="{art}" Location="https://{host}/Shibboleth.sso/SAML2/Artifact" index="2"/>\n'
        + f'    <md:AssertionConsumerService Binding="{paos}" Location="https://{host}/Shibboleth.sso/SAML2/ECP" index="3"/>\n'
        + '    <md:AttributeConsumingService index="1">\n'
        + f'        <md:ServiceName xml:lang="en">Service {number}</md:ServiceName>\n'
        + attributes
        + "    </md:AttributeConsumingService>\n"
        + "    </md:SPSSODescriptor>\n"
        + _entity_tail(number)
    )


def _idp(number, certs):
    host = f"idp.unit{number}.example.edu"
    redirect, post = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect", "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
    soap = "urn:oasis:names:tc:SAML:2.0:bindings:SOAP"
    extensions = _ui(number, "Login").replace(
        "      <md:Extensions>\n",
        f'      <md:Extensions>\n        <shibmd:Scope regexp="false">unit{number}.example.edu</shibmd:Scope>\n',
        1,
    )
    return (
        _entity_head(number, f"https://{host}/idp/shibboleth")
        + '    <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">\n'
        + extensions
        + _key_descriptor("", certs[number % len(certs)])
        + f'    <md:ArtifactResolutionService Binding="{soap}" Location="https://{host}:8443/idp/profile/SAML2/SOAP/ArtifactResolution" index="1"/>\n'
        + f'    <md:SingleLogoutService Binding="{redirect}" Location="https://{host}/idp/profile/SAML2/Redirect/SLO"/>\n'
        + f'    <md:SingleLogoutService Binding="{post}" Location="https://{host}/idp/profile/SAML2/POST/SLO"/>\n'
        + "    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:transient</md:NameIDFormat>\n"
        + "    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>\n"
        + f'    <md:SingleSignOnService Binding="{redirect}" Location="https://{host}/idp/profile/SAML2/Redirect/SSO"/>\n'
        + f'    <md:SingleSignOnService Binding="{post}" Location="https://{host}/idp/profile/SAML2/POST/SSO"/>\n'
        + f'    <md:SingleSignOnService Binding="{soap}" Location="https://{host}/idp/profile/SAML2/SOAP/ECP"/>\n'
        + "    </md:IDPSSODescriptor>\n"
        + _entity_tail(number)
    )


def generate(path, count, signer_key, signer_cert, certificates=50):
    """Write the unsigned aggregate (with a signature template) and sign it with the xmlsec1 tool."""
    certs = [_wrap(_credential(f"member{n}.example.edu")[2]) for n in range(certificates)]
    template = path.with_suffix(".template.xml")
    until = (datetime.now(UTC) + timedelta(days=14)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with template.open("w", encoding="utf-8") as out:
        out.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<md:EntitiesDescriptor xmlns:md="{MD}" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
            'xmlns:mdui="urn:oasis:names:tc:SAML:metadata:ui" xmlns:mdrpi="urn:oasis:names:tc:SAML:metadata:rpi" '
            'xmlns:mdattr="urn:oasis:names:tc:SAML:metadata:attribute" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
            'xmlns:shibmd="urn:mace:shibboleth:metadata:1.0" '
            f'ID="benchmark-federation" Name="https://federation.example.org/metadata" validUntil="{until}" cacheDuration="PT6H">\n'
            "  <ds:Signature>\n    <ds:SignedInfo>\n"
            '      <ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>\n'
            '      <ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>\n'
            '      <ds:Reference URI="#benchmark-federation">\n        <ds:Transforms>\n'
            '          <ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>\n'
            '          <ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>\n'
            "        </ds:Transforms>\n"
            '        <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>\n'
            "        <ds:DigestValue></ds:DigestValue>\n      </ds:Reference>\n    </ds:SignedInfo>\n"
            "    <ds:SignatureValue></ds:SignatureValue>\n  </ds:Signature>\n"
        )
        for number in range(count):
            out.write(_idp(number, certs) if number % 3 == 0 else _sp(number, certs))
        out.write("</md:EntitiesDescriptor>\n")
    key_file, cert_file = path.with_suffix(".signer.key"), path.with_suffix(".signer.crt")
    key_file.write_bytes(signer_key)
    cert_file.write_bytes(signer_cert)
    subprocess.run(
        [
            "xmlsec1",
            "--sign",
            "--privkey-pem",
            f"{key_file},{cert_file}",
            "--id-attr:ID",
            f"{MD}:EntitiesDescriptor",
            "--output",
            str(path),
            str(template),
        ],
        check=True,
    )
    template.unlink()


# ---------------------------------------------------------------- measured children


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_lxml(path):
    from lxml import etree

    start = time.perf_counter()
    count = 0
    for _event, element in etree.iterparse(
        str(path), events=("end",), tag=f"{{{MD}}}EntityDescriptor", resolve_entities=False, no_network=True
    ):
        count += 1
        element.clear(keep_tail=True)
        while element.getprevious() is not None:
            del element.getparent()[0]
    return {"seconds": time.perf_counter() - start, "entities": count}


def child_verify(path, signer_cert):
    import django

    django.setup()
    from cryptography import x509

    from entities.metadata_parser import TrustAnchor, read_metadata

    start = time.perf_counter()
    seen = [0]
    with open(path, "rb") as stream:
        info = read_metadata(
            stream,
            lambda data: seen.__setitem__(0, seen[0] + 1),
            trust=TrustAnchor("bench", [x509.load_pem_x509_certificate(signer_cert.encode())]),
        )
    return {"seconds": time.perf_counter() - start, "entities": seen[0], "verified": info.verified}


def child_core_verify(path, signer_cert):
    """The alternative the streaming verifier avoids: the whole document as one tree through
    federation.saml.signing.verify (which verifies a re-parsed copy)."""
    from cryptography import x509

    from federation.saml.signing import verify
    from federation.saml.xml import parse_xml

    start = time.perf_counter()
    root = parse_xml(Path(path).read_bytes(), max_bytes=1024 * 1024 * 1024)
    verified = verify(root, root, [x509.load_pem_x509_certificate(signer_cert.encode())])
    count = sum(1 for _ in verified.iterchildren(f"{{{MD}}}EntityDescriptor"))
    return {"seconds": time.perf_counter() - start, "entities": count, "verified": True}


def _time_calls(owner, name, totals, bucket, only=None):
    """Wrap owner.name to add its run time to totals[bucket] (when `only(*args)` is true); measurement
    only: the wrapped function does exactly what it did."""
    import functools

    original = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        if only is not None and not only(*args):
            return original(*args, **kwargs)
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[bucket] += time.perf_counter() - start

    setattr(owner, name, timed)


def child_import(path, signer_cert):
    import django

    django.setup()
    from collections import defaultdict
    from io import StringIO

    from django.core.management import call_command
    from django.db import connection

    from entities import entity_services, metadata_import, models, services
    from entities.models import Endpoint, Entity, KeystoreEntry

    services.import_trusted_certificate("bench-federation-signer", signer_cert.encode())
    # Where the time goes (the phases nest: a batch includes its checks and writes; the checks
    # include the batch's prefetch of the rules' answers).
    totals = defaultdict(float)
    _time_calls(metadata_import, "_import_batch", totals, "batches")
    _time_calls(entity_services, "check_new_entities", totals, "checks")
    _time_calls(models.PrefetchedLookups, "_fetch", totals, "prefetch")
    _time_calls(entity_services, "create_entities", totals, "writes")
    _time_calls(KeystoreEntry.objects, "bulk_create", totals, "writes")
    queries = [0]

    def count(execute, sql, params, many, context):
        queries[0] += 1
        return execute(sql, params, many, context)

    out = StringIO()
    start = time.perf_counter()
    with connection.execute_wrapper(count):
        call_command(
            "metadata",
            "import",
            str(path),
            "--trust-anchor",
            "bench-federation-signer",
            "--all-entities",
            stdout=out,
            stderr=StringIO(),
        )
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "entities": Entity.objects.count(),
        "endpoints": Endpoint.objects.count(),
        "certificates": KeystoreEntry.objects.count() - 1,
        "queries": queries[0],
        "result": out.getvalue().splitlines()[0],
        "breakdown": {"reading": seconds - totals["batches"], **totals},
    }


def child_pysaml2(path):
    import warnings

    warnings.simplefilter("ignore")
    from saml2 import config
    from saml2.attribute_converter import ac_factory
    from saml2.mdstore import MetadataStore

    conf = config.Config()
    conf.load({"entityid": "https://bench.example.org/", "xmlsec_binary": "/usr/bin/xmlsec1"})
    start = time.perf_counter()
    store = MetadataStore(ac_factory(), conf)
    store.load("local", str(path))
    count = len(list(store.keys())) and len(store.metadata[str(path)].items())
    return {"seconds": time.perf_counter() - start, "entities": count}


def run_child(mode, path, env_extra=None, signer_cert=""):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDERATION_")}
    env.update(env_extra or {})
    env["DJANGO_SETTINGS_MODULE"] = "federation.settings"
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--file", str(path), "--signer-cert", signer_cert],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _migrate(env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDERATION_")}
    env.update(env_extra, DJANGO_SETTINGS_MODULE="federation.settings")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=600)


def _postgres(url, action):
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        if action == "create":
            connection.execute(f'CREATE DATABASE "{name}"')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=10000)
    parser.add_argument("--database-url", help="Also import into this PostgreSQL database (created and dropped here).")
    parser.add_argument("--skip-pysaml2", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--signer-cert", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        path = Path(args.file)
        result = {
            "lxml": lambda: child_lxml(path),
            "verify": lambda: child_verify(path, args.signer_cert),
            "core-verify": lambda: child_core_verify(path, args.signer_cert),
            "import": lambda: child_import(path, args.signer_cert),
            "pysaml2": lambda: child_pysaml2(path),
        }[args.child]()
        result["peak_mb"] = _peak_mb()
        print(json.dumps(result))
        return

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    path = BENCH_DIR / f"aggregate-{args.entities}.xml"
    signer_file = path.with_suffix(".signer.crt")
    if args.regenerate or not path.exists() or not signer_file.exists():
        print(f"generating {path} ...", flush=True)
        key_pem, cert_pem, _der = _credential("Benchmark Federation metadata signer")
        generate(path, args.entities, key_pem, cert_pem)
    signer_cert = signer_file.read_text()
    size = path.stat().st_size
    print(
        f"{path}: {args.entities} entities, {size / 1024 / 1024:.1f} MB; Python {platform.python_version()}, {os.cpu_count()} CPUs",
        flush=True,
    )

    rows = []
    result = run_child("lxml", path)
    rows.append(("bare lxml streaming parse (floor)", "-", result))
    result = run_child("verify", path, signer_cert=signer_cert)
    rows.append(("our read + streaming signature verification", "-", result))
    result = run_child("core-verify", path, signer_cert=signer_cert)
    rows.append(("whole-tree parse_xml + signing.verify (not used for aggregates)", "-", result))
    label = "our full import (verify + store all)"
    if not args.skip_sqlite:
        db = BENCH_DIR / "bench-import.sqlite3"
        db.unlink(missing_ok=True)
        env = {"FEDERATION_DATABASE_URL": f"sqlite:///{db}", "FEDERATION_VAR_DIR": str(BENCH_DIR / "var-sqlite")}
        _migrate(env)
        rows.append((label, "SQLite", run_child("import", path, env, signer_cert)))
        db.unlink(missing_ok=True)
    if args.database_url:
        _postgres(args.database_url, "create")
        try:
            env = {"FEDERATION_DATABASE_URL": args.database_url, "FEDERATION_VAR_DIR": str(BENCH_DIR / "var-pg")}
            _migrate(env)
            rows.append((label, "PostgreSQL", run_child("import", path, env, signer_cert)))
        finally:
            _postgres(args.database_url, "drop")
    if not args.skip_pysaml2:
        rows.append(("pysaml2 MetadataStore.load (no signature check)", "-", run_child("pysaml2", path)))

    print()
    print("| measurement | database | seconds | peak RSS (MB) | entities | notes |")
    print("|---|---|---:|---:|---:|---|")
    for label, database, result in rows:
        notes = []
        if "endpoints" in result:
            notes.append(f"{result['endpoints']} endpoints, {result['certificates']} certificates stored")
        if "breakdown" in result:
            part = result["breakdown"]
            notes.append(
                f"reading, verifying and the rest {part['reading']:.1f} s, batches {part['batches']:.1f} s: entity checks "
                f"{part['checks']:.1f} s (of which the prefetch of the rules' answers {part['prefetch']:.1f} s), "
                f"bulk writes {part['writes']:.1f} s; {result['queries']} queries"
            )
        if result.get("verified"):
            notes.append("signature verified")
        print(
            f"| {label} | {database} | {result['seconds']:.1f} | {result['peak_mb']:.0f} | {result['entities']} | {'; '.join(notes)} |"
        )


if __name__ == "__main__":
    main()
