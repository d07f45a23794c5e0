"""Configuration export/import (partnerships.config_io): the round trip of a whole deployment byte for byte, idempotent
second apply, dry run, the lifecycle of active partnerships on apply, secrets and private keys, and what a partnership
export carries. Real keys, entities and partnerships made through the services (tests/partnership_fixtures.py).

The "empty database" of the round trip is the same test database after deleting everything a deployment holds
(the embedded directory stays, as it does on a fresh install); tests/test_partnership_cli.py repeats the round trip
into a second SQLite database through real manage.py processes."""

import base64
import copy
import json
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.serialization import pkcs12

from entities import entity_services
from entities import services as keystore
from entities.models import AttributeNameFormat, Binding, EndpointKind, Entity, EntityType, KeystoreEntry, Location
from federation.directories import EMBEDDED_NAME
from federation.models import AuditEvent, UserDirectory
from federation.secretbox import seal_text, unseal_text
from partnerships import authn_context_services, config_io, services
from partnerships.models import AuthnContextTemplate, Partnership, PartnershipState
from tests.keystore_fixtures import cert_pem, key_pem, make_ca, name, new_key, self_signed
from tests.partnership_fixtures import endpoint, entity

PASSWORD = "export-password-1"
BIND_PASSWORD = "bind-secret-value"
BACKCHANNEL_PASSWORD = "backchannel-secret-value"
AC_X509 = "urn:oasis:names:tc:SAML:2.0:ac:classes:X509"
AC_PPT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
RP_URL = "https://login.partner.example/wsfed"


def ldap_directory(name="corp-ldap", password=BIND_PASSWORD):
    """An LDAP directory saved as the console form saves it (the form's connection test needs a server: not here)."""
    directory = UserDirectory(
        name=name,
        kind=UserDirectory.Kind.LDAP,
        hosts="ldap1.example.org, ldap2.example.org:1389",
        port=636,
        security=UserDirectory.Security.LDAPS,
        tls_ca_alias="corp-ca",
        bind_dn="cn=federation,ou=services,dc=example,dc=org",
        search_root="dc=example,dc=org",
        user_filter="(uid=%s)",
    )
    directory.full_clean(exclude=["bind_password"])
    directory.bind_password = seal_text(password)
    directory.save()
    return directory


def build_deployment(saml2_idp_sp, saml2_sp_idp, make_partnership):
    """Four partnerships of four kinds (Active, Defined, Inactive, Incomplete), eight entities with endpoints,
    attributes and keys, a CA-signed key pair with its chain, a trusted CA, an LDAP directory and a template."""
    ca = make_ca("Corp Root CA")
    keystore.import_trusted_ca_chain("corp-ca", ca.pem)
    chained_key = new_key("rsa")
    keystore.import_key_pair(
        "chained-signing",
        key_pem(chained_key) + cert_pem(ca.issue(chained_key.public_key(), name("chained.example")), ca.certificate),
    )
    ldap_directory()
    authn_context_services.create_template(
        "Corporate",
        description="Agreed with the partners in 2026.",
        protection_levels=True,
        entries=[{"uri": AC_X509}, {"uri": AC_PPT, "max_level": 10}],
    )
    idp_local, sp_partner = saml2_idp_sp
    entity_services.update_entity(
        idp_local,
        {"next_signing_key": "chained-signing", "description": "Our IdP"},
        attributes=[
            {"name": "mail", "name_format": AttributeNameFormat.BASIC, "value_type": "user", "value": "mail"},
            {"name": "display", "name_format": "", "value_type": "expression", "value": '#{attr["cn"]}'},
        ],
    )
    sp_local, idp_partner = saml2_sp_idp
    fs_local = entity(
        "fs-local",
        Location.LOCAL,
        EntityType.WSFED_IP,
        saml_token_type="saml2",
        signing_key="idp-signing",
        wsfed_specific_id="o365",
    )
    entity(  # a remote WS-Fed RP, not yet in a partnership
        "rp-partner",
        Location.REMOTE,
        EntityType.WSFED_RP,
        saml_token_type="saml2",
        wsfed_service_url=RP_URL,
        wsfed_signout_cleanup_url=RP_URL,
        verification_certificate="sp-partner-cert",
    )
    producer = entity("producer-local", Location.LOCAL, EntityType.SAML11_PRODUCER, signing_key="idp-signing")
    consumer = entity(
        "consumer-partner",
        Location.REMOTE,
        EntityType.SAML11_CONSUMER,
        [endpoint(EndpointKind.ACS, Binding.SAML11_POST, "https://consumer.partner.example/acs", index=0, is_default=True)],
        verification_certificate="sp-partner-cert",
    )
    active = make_partnership(
        "idp-to-sp",
        "saml2_idp_sp",
        idp_local,
        sp_partner,
        settings={
            "assertion": {"name_id_value": "mail"},
            "signature": {"signing_key": "idp-signing"},
            "sso_slo": {"backchannel_in_auth": "basic", "backchannel_in_password": BACKCHANNEL_PASSWORD},
        },
        description="The partner SP",
    )
    services.activate(active)
    make_partnership(
        "sp-to-idp",
        "saml2_sp_idp",
        sp_local,
        idp_partner,
        directories=[EMBEDDED_NAME, "corp-ldap"],
        settings={
            "user_identification": {
                "search_specs": [
                    {"directory": EMBEDDED_NAME, "search_spec": "username=%s"},
                    {"directory": "corp-ldap", "search_spec": "(uid=%s)"},
                ]
            },
            "authn_context": {"template": "Corporate"},
            "signature": {"verification_certificate": "idp-partner-cert"},
            "application": {"target": "https://app.example/"},
        },
    )
    inactive = make_partnership(
        "saml11-producer",
        "saml11_producer_consumer",
        producer,
        consumer,
        settings={"assertion": {"name_id_value": "mail"}, "signature": {"signing_key": "idp-signing"}},
    )
    services.activate(inactive)
    services.deactivate(inactive)
    make_partnership("wsfed-later", "wsfed_ip_rp", fs_local, None)  # the remote entity put off: Incomplete
    states = dict(Partnership.objects.values_list("name", "state"))
    assert states == {
        "idp-to-sp": PartnershipState.ACTIVE,
        "sp-to-idp": PartnershipState.DEFINED,
        "saml11-producer": PartnershipState.INACTIVE,
        "wsfed-later": PartnershipState.INCOMPLETE,
    }, [services.stored_problems(p) for p in Partnership.objects.all()]


@pytest.fixture
def deployment(saml2_idp_sp, saml2_sp_idp, make_partnership):
    build_deployment(saml2_idp_sp, saml2_sp_idp, make_partnership)


def wipe_deployment():
    """Delete everything a deployment holds, leaving what a fresh install has (the embedded directory)."""
    Partnership.objects.all().delete()
    Entity.objects.all().delete()
    AuthnContextTemplate.objects.all().delete()
    KeystoreEntry.objects.all().delete()
    UserDirectory.objects.exclude(kind=UserDirectory.Kind.EMBEDDED).delete()


def counts():
    return {
        model.__name__: model.objects.count()
        for model in (Partnership, Entity, AuthnContextTemplate, KeystoreEntry, UserDirectory, AuditEvent)
    }


def full_export():
    return config_io.export_deployment(include_secrets=True, include_private_keys=True, password=PASSWORD)


def secrets_opened(document):
    """The document with every encrypted value and PKCS#12 replaced by what it holds (they are re-encrypted with a
    fresh salt and nonce on every export, so only their contents can be compared)."""
    document = copy.deepcopy(document)
    cipher = config_io.SecretCipher.from_header(document.pop("encryption"), PASSWORD)

    def open_values(value):
        if isinstance(value, dict):
            if set(value) == {"encrypted"}:
                return {"clear": cipher.open(value["encrypted"])}
            return {key: open_values(item) for key, item in value.items()}
        if isinstance(value, list):
            return [open_values(item) for item in value]
        return value

    document = open_values(document)
    for entry in document["keystore"]:
        if "private_key" in entry:
            key, certificate, chain = pkcs12.load_key_and_certificates(
                base64.b64decode(entry["private_key"]["pkcs12_base64"]), PASSWORD.encode()
            )
            entry["private_key"] = {
                "key_pem": key_pem(key).decode(),
                "certificate": cert_pem(certificate).decode(),
                "chain": [cert_pem(c).decode() for c in chain],
            }
    return document


# ---------------------------------------------------------------- round trip


def test_round_trip_into_an_empty_database_gives_the_same_document_byte_for_byte(deployment):
    before_json = config_io.dump(config_io.export_deployment())
    before_yaml = config_io.dump(config_io.export_deployment(), "backup.yaml")
    carried = full_export()
    wipe_deployment()
    assert not Partnership.objects.exists() and not KeystoreEntry.objects.exists()

    changes = config_io.apply(config_io.load(config_io.dump(carried)), password=PASSWORD)

    assert {c.action for c in changes} == {"create", "unchanged"}
    assert [c.path for c in changes if c.action == "unchanged"] == ["directories[1]"]  # the embedded one
    assert config_io.dump(config_io.export_deployment()) == before_json
    assert config_io.dump(config_io.export_deployment(), "backup.yaml") == before_yaml
    assert secrets_opened(full_export()) == secrets_opened(carried)
    states = dict(Partnership.objects.values_list("name", "state"))
    assert states["idp-to-sp"] == PartnershipState.ACTIVE and states["wsfed-later"] == PartnershipState.INCOMPLETE
    assert unseal_text(UserDirectory.objects.get(name="corp-ldap").bind_password) == BIND_PASSWORD
    assert services.read_secrets(Partnership.objects.get(name="idp-to-sp")) == {
        "sso_slo.backchannel_in_password": BACKCHANNEL_PASSWORD
    }
    entry = KeystoreEntry.objects.get(alias="chained-signing")
    assert entry.has_private_key and len(entry.chain()) == 1


def test_the_document_has_the_documented_shape(deployment):
    document = config_io.export_deployment()
    assert list(json.loads(config_io.dump(document))) == [
        "format",
        "version",
        "keystore",
        "directories",
        "authn_context_templates",
        "entities",
        "partnerships",
    ]
    assert document["format"] == "federation-config" and document["version"] == 1
    assert [e["alias"] for e in document["keystore"]] == sorted(e["alias"] for e in document["keystore"])
    sp = next(e for e in document["entities"] if e["name"] == "sp-partner")
    assert sp["endpoints"][0]["kind"] == "acs" and sp["keys"] == {
        "encryption_certificate": "sp-partner-cert",
        "verification_certificate": "sp-partner-cert",
    }
    idp = next(e for e in document["entities"] if e["name"] == "idp-local")
    assert [a["name"] for a in idp["attributes"]] == ["mail", "display"]
    partnership = next(p for p in document["partnerships"] if p["name"] == "sp-to-idp")
    assert partnership["directories"] == [EMBEDDED_NAME, "corp-ldap"] and partnership["active"] is False
    assert partnership["settings"]["authn_context"]["template"] == "Corporate"
    assert next(p for p in document["partnerships"] if p["name"] == "wsfed-later")["remote_entity"] is None
    assert yaml.safe_load(config_io.dump(document, "x.yml")) == json.loads(config_io.dump(document))


# ---------------------------------------------------------------- idempotency and dry run


def test_applying_the_same_document_again_changes_nothing_and_audits_nothing(deployment):
    document = full_export()
    events = AuditEvent.objects.count()
    snapshots = list(Partnership.objects.get(name="idp-to-sp").snapshots.values_list("version", flat=True))
    changes = config_io.apply(document, password=PASSWORD)
    assert {c.action for c in changes} == {"unchanged"}
    assert len(changes) == sum(len(document[s]) for s in config_io.SECTIONS)
    assert AuditEvent.objects.count() == events
    assert list(Partnership.objects.get(name="idp-to-sp").snapshots.values_list("version", flat=True)) == snapshots
    # The export without secrets keeps the stored ones: still nothing to do.
    assert {c.action for c in config_io.apply(config_io.export_deployment())} == {"unchanged"}
    assert AuditEvent.objects.count() == events


def test_dry_run_shows_the_diff_and_writes_nothing(deployment):
    document = config_io.export_deployment()
    sp = next(e for e in document["entities"] if e["name"] == "sp-partner")
    sp["endpoints"][0]["location"] = "https://sp.partner.example/new-acs"
    document["authn_context_templates"].append({"name": "Weak", "entries": [{"uri": AC_PPT}]})
    later = next(p for p in document["partnerships"] if p["name"] == "wsfed-later")
    later["settings"]["configure"]["skew_seconds"] = 90
    before = counts()
    changes = config_io.apply(document, dry_run=True)
    assert counts() == before
    assert Entity.objects.get(name="sp-partner").endpoints.get().location != "https://sp.partner.example/new-acs"
    by_name = {c.name: c for c in changes}
    assert by_name["Weak"].action == "create"
    assert by_name["sp-partner"].action == "update"
    assert [f.describe() for f in by_name["sp-partner"].fields] == [
        'endpoints[0].location: "https://sp.partner.example/affwebservices/public/saml2assertionconsumer" → '
        '"https://sp.partner.example/new-acs"'
    ]
    assert by_name["wsfed-later"].lines()[:2] == [
        'update    partnerships[3] partnership "wsfed-later"',
        "    settings.configure.skew_seconds: 30 → 90",
    ]
    assert by_name["idp-to-sp"].action == "unchanged"
    assert config_io.summary(changes).startswith("1 to create, 2 to update")


# ---------------------------------------------------------------- lifecycle on apply


def test_a_changed_active_partnership_is_deactivated_updated_and_reactivated(deployment):
    document = config_io.export_deployment()
    active = next(p for p in document["partnerships"] if p["name"] == "idp-to-sp")
    active["settings"]["configure"]["skew_seconds"] = 45
    active["description"] = "Changed by the file"
    changes = config_io.apply(document)
    change = next(c for c in changes if c.name == "idp-to-sp")
    assert change.action == "update" and {f.field for f in change.fields} == {"description", "settings.configure.skew_seconds"}
    partnership = Partnership.objects.get(name="idp-to-sp")
    assert partnership.state == PartnershipState.ACTIVE
    snapshot = partnership.current_snapshot()
    assert snapshot.version == 2 and snapshot.data["settings"]["configure"]["skew_seconds"] == 45
    actions = list(
        AuditEvent.objects.filter(object_repr="idp-to-sp", action__in=["activate", "deactivate"])
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions[-2:] == ["deactivate", "activate"]
    assert services.read_secrets(partnership) == {"sso_slo.backchannel_in_password": BACKCHANNEL_PASSWORD}


def test_apply_activates_and_deactivates_as_the_file_says(deployment):
    document = config_io.export_deployment()
    for partnership in document["partnerships"]:
        if partnership["name"] in ("sp-to-idp", "saml11-producer"):
            partnership["active"] = True
        if partnership["name"] == "idp-to-sp":
            partnership["active"] = False
    changes = config_io.apply(document)
    assert {c.name: [f.describe() for f in c.fields] for c in changes if c.action == "update"} == {
        "idp-to-sp": ["active: true → false"],
        "sp-to-idp": ["active: false → true"],
        "saml11-producer": ["active: false → true"],
    }
    states = dict(Partnership.objects.values_list("name", "state"))
    assert states == {
        "idp-to-sp": PartnershipState.INACTIVE,
        "sp-to-idp": PartnershipState.ACTIVE,
        "saml11-producer": PartnershipState.ACTIVE,
        "wsfed-later": PartnershipState.INCOMPLETE,
    }
    assert Partnership.objects.get(name="saml11-producer").current_snapshot().version == 2


def test_a_file_that_cannot_be_active_is_refused_before_anything_is_written(deployment):
    document = config_io.export_deployment()
    later = next(p for p in document["partnerships"] if p["name"] == "wsfed-later")
    later["active"] = True
    document["authn_context_templates"].append({"name": "Weak", "entries": [{"uri": AC_PPT}]})
    before = counts()
    with pytest.raises(config_io.ConfigError) as caught:
        config_io.apply(document)
    assert (
        "partnerships[3].remote_entity: an active partnership needs its remote entity (this stops activation, and the file says active: true)"
        in caught.value.messages()
    )
    assert counts() == before


# ---------------------------------------------------------------- secrets and private keys


def test_secrets_and_private_keys_are_left_out_by_default(deployment):
    text = config_io.dump(config_io.export_deployment())
    document = json.loads(text)
    assert "encryption" not in document
    assert all("private_key" not in e for e in document["keystore"])
    assert all("bind_password" not in d for d in document["directories"])
    idp_to_sp = next(p for p in document["partnerships"] if p["name"] == "idp-to-sp")
    assert "backchannel_in_password" not in idp_to_sp["settings"]["sso_slo"]
    assert BIND_PASSWORD not in text and BACKCHANNEL_PASSWORD not in text and "PRIVATE KEY" not in text


def test_secrets_are_encrypted_and_need_the_password(deployment):
    with pytest.raises(config_io.ConfigError, match="at least 8 characters"):
        config_io.export_deployment(include_secrets=True)
    text = config_io.dump(config_io.export_deployment(include_secrets=True, password=PASSWORD))
    document = json.loads(text)
    assert BIND_PASSWORD not in text and BACKCHANNEL_PASSWORD not in text
    assert all("private_key" not in e for e in document["keystore"])  # keys only when asked for
    corp = next(d for d in document["directories"] if d["name"] == "corp-ldap")
    assert set(corp["bind_password"]) == {"encrypted"}
    with pytest.raises(config_io.ConfigError) as caught:
        config_io.plan(document)
    assert caught.value.messages() == [
        "encryption: this file holds encrypted secrets or private keys: give the password it was exported with (--password-file)"
    ]
    with pytest.raises(config_io.ConfigError) as caught:
        config_io.plan(document, password="wrong-password")
    assert caught.value.messages() == ["encryption: the password does not open this file's secrets and private keys"]


def test_private_keys_only_with_a_password_as_pkcs12(deployment):
    document = config_io.export_deployment(include_private_keys=True, password=PASSWORD)
    pairs = [e for e in document["keystore"] if e["kind"] == "key_pair"]
    assert pairs and all("private_key" in e for e in pairs)
    assert all("private_key" not in e for e in document["keystore"] if e["kind"] != "key_pair")
    entry = next(e for e in pairs if e["alias"] == "chained-signing")
    key, certificate, chain = pkcs12.load_key_and_certificates(
        base64.b64decode(entry["private_key"]["pkcs12_base64"]), PASSWORD.encode()
    )
    assert cert_pem(certificate).decode() == entry["certificate_pem"] and len(chain) == 1
    assert AuditEvent.objects.filter(object_repr="chained-signing", summary__contains="PKCS#12").exists()


def test_a_key_pair_without_its_private_key_cannot_be_created(deployment):
    document = config_io.export_deployment()
    wipe_deployment()
    with pytest.raises(config_io.ConfigError) as caught:
        config_io.plan(document)
    messages = caught.value.messages()
    assert (
        'keystore[0].private_key: the key pair "chained-signing" is not in the database and the file does not carry '
        "its private key (export with --include-private-keys)" in messages
    )
    assert not KeystoreEntry.objects.exists()


# ---------------------------------------------------------------- partnership export


def test_a_partnership_export_carries_what_it_needs(deployment):
    document = config_io.export_partnerships([Partnership.objects.get(name="sp-to-idp")])
    assert [p["name"] for p in document["partnerships"]] == ["sp-to-idp"]
    assert [e["name"] for e in document["entities"]] == ["idp-partner", "sp-local"]
    assert [e["alias"] for e in document["keystore"]] == ["corp-ca", "idp-partner-cert", "sp-signing"]
    assert [d["name"] for d in document["directories"]] == ["corp-ldap", EMBEDDED_NAME]
    assert [t["name"] for t in document["authn_context_templates"]] == ["Corporate"]
    assert {c.action for c in config_io.plan(document)} == {"unchanged"}


def test_a_partnership_moves_into_an_empty_database(deployment):
    carried = config_io.export_partnerships(
        [Partnership.objects.get(name="idp-to-sp")], include_secrets=True, include_private_keys=True, password=PASSWORD
    )
    expected = config_io.dump(config_io.export_partnerships([Partnership.objects.get(name="idp-to-sp")]))
    wipe_deployment()
    config_io.apply(carried, password=PASSWORD)
    assert config_io.dump(config_io.export_partnerships([Partnership.objects.get(name="idp-to-sp")])) == expected
    assert Partnership.objects.get().state == PartnershipState.ACTIVE


def test_the_hand_written_example_of_the_format_guide_applies(saml2_idp_sp):
    guide = (Path(__file__).resolve().parent.parent / "docs" / "config-format.md").read_text()
    example = guide.split("```yaml\n", 1)[1].split("```", 1)[0]
    partner_key = keystore.generate_key_pair("apm-key", "rsa2048", "CN=apm.example.org", 365, [])
    keystore.import_trusted_certificate("apm-signing", partner_key.certificate_pem)  # "already in the database"
    changes = config_io.apply(config_io.load(example, "example.yaml"))
    assert [(c.path, c.action) for c in changes] == [("entities[0]", "create"), ("partnerships[0]", "create")]
    partnership = Partnership.objects.get(name="idp-to-apm")
    assert partnership.state == PartnershipState.ACTIVE
    assert [a["name"] for a in partnership.settings["assertion"]["attributes"]] == ["principalName", "groups"]
    assert {c.action for c in config_io.apply(config_io.load(example, "example.yaml"))} == {"unchanged"}


def find(document, section, name):
    return next(item for item in document[section] if item.get("name", item.get("alias")) == name)


def test_certificates_in_the_file_replace_stored_ones_but_never_a_key_without_its_private_key(deployment):
    document = config_io.export_deployment()
    renewed = cert_pem(make_ca("Renewal CA").sign_csr(keystore.create_csr("sp-signing").encode())).decode()
    find(document, "keystore", "sp-signing")["certificate_pem"] = renewed  # the same key, a CA-signed certificate
    _, test_installation = self_signed("idp.test.example")
    find(document, "keystore", "idp-signing")["certificate_pem"] = cert_pem(test_installation).decode()  # another key
    _, partner = self_signed("sp.partner.example")
    find(document, "keystore", "sp-partner-cert")["certificate_pem"] = cert_pem(partner).decode()  # a partner's renewal
    stored_idp = KeystoreEntry.objects.get(alias="idp-signing").certificate_pem

    changes = {c.name: c for c in config_io.apply(document)}

    assert [f.field for f in changes["sp-signing"].fields] == ["certificate"]
    assert "Renewal CA" in changes["sp-signing"].fields[0].new
    sp_signing = KeystoreEntry.objects.get(alias="sp-signing")
    assert sp_signing.certificate_pem == renewed and sp_signing.issuer.startswith("CN=Renewal CA")
    assert sp_signing.private_key_object().public_key().public_numbers() == sp_signing.certificate().public_key().public_numbers()
    assert changes["idp-signing"].action == "unchanged"
    assert changes["idp-signing"].notes == [
        "the file's certificate is for another key and the file does not carry the private key: "
        "the key pair in the database is kept as it is"
    ]
    assert KeystoreEntry.objects.get(alias="idp-signing").certificate_pem == stored_idp
    assert changes["sp-partner-cert"].action == "update"
    assert KeystoreEntry.objects.get(alias="sp-partner-cert").certificate_pem == cert_pem(partner).decode()
    assert AuditEvent.objects.filter(action="update", object_repr="sp-partner-cert").exists()


def test_a_bind_password_typed_in_clear_and_a_directory_without_one(deployment):
    document = config_io.export_deployment()
    find(document, "directories", "corp-ldap")["bind_password"] = "typed-by-a-pipeline"
    document["directories"].append(
        {"name": "hr-ldap", "hosts": "hr.example.org", "bind_dn": "cn=fed,dc=hr,dc=example", "search_root": "dc=hr,dc=example"}
    )
    changes = {c.name: c for c in config_io.apply(document)}
    assert [f.describe() for f in changes["corp-ldap"].fields] == ["bind_password: (set) → (changed)"]
    assert changes["hr-ldap"].action == "create" and changes["hr-ldap"].notes == [
        "no bind password in the file or the database: set it in the console (or export with --include-secrets)"
    ]
    assert unseal_text(UserDirectory.objects.get(name="corp-ldap").bind_password) == "typed-by-a-pipeline"
    hr = UserDirectory.objects.get(name="hr-ldap")
    assert (hr.port, hr.security, hr.user_filter, hr.bind_password) == (389, "none", "(uid=%s)", "")
    event = AuditEvent.objects.filter(action="update", object_repr="corp-ldap").latest("id")
    assert "typed-by-a-pipeline" not in json.dumps(event.changes)
