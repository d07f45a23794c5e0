"""Benchmark of single logout (federation/slo_runtime.py) against its floor and a peer, in one run (not a test).

    cd /work/main && .venv/bin/python bench/slo.py [--count 200] [--rounds 5] [--skip-pysaml2] 2>/dev/null
    BENCH_TRACE=0 .venv/bin/python bench/slo.py --skip-pysaml2 2>/dev/null    # without storing trace lines

Every row handles one signed HTTP-Redirect LogoutRequest and produces the signed Redirect LogoutResponse, in one
thread, so every figure is per core:

  floor           our verify_query of the request + sign_query of the answer (one RSA-2048 verify, one sign)
  pysaml2 IdP     Server.parse_logout_request (query signature checked) + create_logout_response + apply_binding
                  signed: the message work only, no session store
  ours, IdP role  slo_runtime.front_channel: the SP's request → the IdP session found by SessionIndex, ended (the
                  session and its participant deleted), no other participant, the signed LogoutResponse, with the
                  trace lines stored as in production (a fresh SQLite file; BENCH_TRACE=0 leaves them out)
  ours, SP role   slo_runtime.front_channel: the IdP's request → the SP session found and deleted, the signed answer

Requests and sessions are made before each timed round (they are single-use); only their handling is timed.
"""

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

TRACE = os.environ.get("BENCH_TRACE", "1") == "1"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.simplefilter("ignore")


def setup_django(directory):
    for name in [name for name in os.environ if name.startswith("FEDERATION_")]:
        del os.environ[name]
    os.environ["FEDERATION_VAR_DIR"] = str(directory)
    os.environ["DJANGO_SETTINGS_MODULE"] = "federation.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)


def make_partnership(name, kind, local, remote, settings):
    """What tests/partnership_fixtures.py's factory does: the wizard's pre-filled settings, then `settings`."""
    from federation.directories import EMBEDDED_NAME
    from federation.models import UserDirectory
    from partnerships import prefill, services

    chosen = [(d.name, d.kind) for d in UserDirectory.objects.filter(name__in=[EMBEDDED_NAME])]
    facts = {"local": services.entity_facts(local), "remote": services.entity_facts(remote)}
    merged = prefill.initial_settings(kind, directories=chosen, **facts)
    for step, values in settings.items():
        merged.setdefault(step, {}).update(values)
    return services.save_partnership(
        kind=kind, name=name, local_entity=local, remote_entity=remote, directories=[EMBEDDED_NAME], settings=merged
    )


def timed(function, items):
    """Calls per second of `function` over the prepared `items`."""
    start = time.perf_counter()
    for item in items:
        function(item)
    return len(items) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="logouts per row and round (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; rows are compared by median (default 5)")
    parser.add_argument("--skip-pysaml2", action="store_true", help="leave out pysaml2 (it forks xmlsec1 per signature)")
    args = parser.parse_args()
    directory = tempfile.TemporaryDirectory()
    setup_django(directory.name)
    try:
        run(args, Path(directory.name))
    finally:
        directory.cleanup()


def run(args, directory):
    import logging
    from datetime import timedelta

    from django.contrib.auth import get_user_model

    from federation import slo_runtime, sso_sessions, tracing
    from federation.directories import EMBEDDED_NAME
    from federation.models import SpSession
    from federation.saml import constants as C
    from federation.saml.assertions import NameID
    from federation.saml.common import SigningKey, encode_redirect, new_id, utc_now
    from federation.saml.logout import LogoutRequestSettings, build_logout_request, build_logout_response
    from federation.saml.signing import verify_query
    from tests import slo_support
    from tests import sp_runtime_support as sp_support

    for noisy in ("saml2", "xmlschema", "federation", "entities", "partnerships"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    # --- our IdP with one SP; our SP with the IdP (the test support builds both with the real services) ----------
    site = slo_support.build_idp(get_user_model())
    alpha = slo_support.add_sp(site, make_partnership, "alpha", slo_bindings=("redirect",))
    idp_key, sp_key = sp_support.keys()
    slo_support.make_sp_world(idp_key, sp_key, slo_bindings=("redirect",))
    for noisy in ("federation", "entities", "partnerships"):
        logging.getLogger(noisy).setLevel(logging.INFO)  # the runtime's trace lines are part of the cost
    store = sso_sessions.session_store()
    alpha_signing = SigningKey(alpha.key.key, alpha.key.certificate)
    idp_signing = SigningKey(idp_key.key, idp_key.certificate)
    email = "alice@example.test"

    def idp_role_items():
        items = []
        for _ in range(args.count):
            record = store.create(username="alice", directory=EMBEDDED_NAME)
            index = new_id()
            store.record_participant(
                record,
                sso_sessions.Participant(alpha.partnership.name, 0, alpha.entity_id, email, C.NAMEID_EMAIL, session_index=index),
            )
            issued = build_logout_request(
                LogoutRequestSettings(
                    issuer=alpha.entity_id,
                    destination=slo_support.IDP_SLO,
                    name_id=NameID(email, C.NAMEID_EMAIL),
                    session_indexes=(index,),
                )
            )
            items.append(urlsplit(encode_redirect(slo_support.IDP_SLO, issued.element, signing=alpha_signing)).query)
        return items

    def sp_role_items():
        items = []
        now = utc_now()
        sessions = []
        for _ in range(args.count):
            index = new_id()
            sessions.append(
                SpSession(
                    key=new_id()[:64],
                    partnership="DemoSP",
                    snapshot_id=0,
                    remote_entity_id=slo_support.PEER_IDP_ENTITY_ID,
                    name_id="alice-" + index,
                    session_index=index,
                    last_seen_at=now,
                    idle_expires_at=now + timedelta(hours=1),
                    expires_at=now + timedelta(hours=1),
                )
            )
            issued = build_logout_request(
                LogoutRequestSettings(
                    issuer=slo_support.PEER_IDP_ENTITY_ID,
                    destination=slo_support.SP_SLO,
                    name_id=NameID("alice-" + index, C.NAMEID_PERSISTENT),
                    session_indexes=(index,),
                )
            )
            items.append(urlsplit(encode_redirect(slo_support.SP_SLO, issued.element, signing=idp_signing)).query)
        SpSession.objects.bulk_create(sessions)
        return items

    def handle(query):
        with tracing.transaction() if TRACE else contextlib.nullcontext():
            params = slo_runtime.parameters(parse_qsl(query, keep_blank_values=True))
            outcome = slo_runtime.front_channel("GET", query, params)
        assert isinstance(outcome.result, slo_runtime.Redirect), outcome.result

    handle(idp_role_items()[0])  # both paths work before anything is timed
    handle(sp_role_items()[0])
    SpSession.objects.all().delete()

    alpha_certificates = [alpha.key.certificate]
    our_signing = slo_runtime.signing_key(slo_runtime.partner_for("idp", alpha.entity_id))

    def floor(query):
        verify_query(query, alpha_certificates)
        answer = build_logout_response(issuer=slo_support.IDP_ENTITY_ID, destination=alpha.slo, in_response_to="_x")
        encode_redirect(alpha.slo, answer.element, signing=our_signing)

    rows = [
        ("floor: verify_query + build and sign_query of the answer", idp_role_items, floor, "floor"),
        ("ours, IdP role: SP-initiated Redirect logout", idp_role_items, handle, "measured"),
        ("ours, SP role: IdP's Redirect LogoutRequest", sp_role_items, handle, "measured"),
    ]
    if not args.skip_pysaml2:
        from saml2 import BINDING_HTTP_REDIRECT

        server = slo_support.pysaml2_idp(directory, idp_key, sp_key)
        sp_signing = SigningKey(sp_key.key, sp_key.certificate)

        def pysaml2_items():
            items = []
            for _ in range(args.count):
                issued = build_logout_request(
                    LogoutRequestSettings(
                        issuer=slo_support.SP_ENTITY_ID,
                        destination=slo_support.PEER_IDP_SLO,
                        name_id=NameID("alice", C.NAMEID_PERSISTENT),
                        session_indexes=(new_id(),),
                    )
                )
                url = encode_redirect(slo_support.PEER_IDP_SLO, issued.element, relay_state="rs", signing=sp_signing)
                items.append(dict(parse_qsl(urlsplit(url).query)))
            return items

        def pysaml2_handle(values):
            request = server.parse_logout_request(
                values["SAMLRequest"],
                BINDING_HTTP_REDIRECT,
                relay_state=values["RelayState"],
                sigalg=values["SigAlg"],
                signature=values["Signature"],
            )
            response = server.create_logout_response(request.message, [BINDING_HTTP_REDIRECT])
            server.apply_binding(
                BINDING_HTTP_REDIRECT, response, slo_support.SP_SLO, "rs", response=True, sign=True, sigalg=C.RSA_SHA256
            )

        pysaml2_handle(pysaml2_items()[0])
        rows.insert(1, ("pysaml2 IdP: parse + signed LogoutResponse", pysaml2_items, pysaml2_handle, "peer"))

    from django.db import connection

    print(f"# single logout benchmark - Python {platform.python_version()}, {os.cpu_count()} CPUs, one thread")
    print(f"# {connection.vendor} database (fresh file), {args.rounds} interleaved rounds of {args.count} logouts per row\n")
    results = {name: [] for name, *_ in rows}
    for _ in range(args.rounds):
        for name, prepare, function, _ in rows:
            items = prepare()
            results[name].append(timed(function, items))
    print("| measurement | median /s | best /s | ms/op | kind |")
    print("|---|---:|---:|---:|---|")
    for name, *_, kind in rows:
        median = statistics.median(results[name])
        print(f"| {name} | {median:.0f} | {max(results[name]):.0f} | {1000 / median:.3f} | {kind} |")


if __name__ == "__main__":
    main()
