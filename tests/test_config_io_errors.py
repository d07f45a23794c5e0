"""Configuration import refusals (partnerships.config_io): files that are not JSON/YAML, wrong format or version,
unknown fields, missing references, wrong types, duplicate names, model rules. Every problem is reported at once with
its path in the file, and nothing is applied (rows are counted before and after)."""

import copy

import pytest

from entities.models import Entity
from partnerships import catalog, config_io, services
from partnerships.config_io import ConfigError
from partnerships.models import AuthnContextTemplate, Partnership
from tests.test_config_io import AC_PPT, build_deployment, counts

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployment(saml2_idp_sp, saml2_sp_idp, make_partnership):
    build_deployment(saml2_idp_sp, saml2_sp_idp, make_partnership)


def problems_of(document, password=None):
    before = counts()
    with pytest.raises(ConfigError) as caught:
        config_io.apply(document, password=password)
    assert counts() == before, "a refused document must change nothing"
    return caught.value.messages()


def find(document, section, name):
    return next(item for item in document[section] if item.get("name", item.get("alias")) == name)


# ---------------------------------------------------------------- the file itself


@pytest.mark.parametrize(
    "data, filename, message",
    [
        (
            b'{"format": "federation-config",\n "version": 1',
            "x.json",
            "The file is not valid JSON (line 2, column 14): Expecting ',' delimiter.",
        ),
        (
            b"format: federation-config\nversion: 1\n",
            "x.json",
            "The file is not valid JSON (line 1, column 1): Expecting value (a .yaml or .yml file name reads it as YAML).",
        ),
        (
            b"format: federation-config\nkeystore: [a, b\n",
            "x.yaml",
            "The file is not valid YAML (line 3, column 1): expected ',' or ']', but got '<stream end>'.",
        ),
        (b'{"version": 1, "version": 2}', "x.json", 'The file names the key "version" twice in one object.'),
        (b"\xff\xfe{}", "x.json", "The file is not UTF-8 text."),
        (b"  \n", "x.yml", "The file is empty."),
    ],
)
def test_files_that_cannot_be_read(data, filename, message):
    with pytest.raises(ConfigError) as caught:
        config_io.load(data, filename)
    assert caught.value.messages() == [message]


def test_yaml_and_json_read_the_same_document():
    document = {"format": "federation-config", "version": 1, "partnerships": []}
    for filename in ("a.json", "a.yaml", "a.yml"):
        assert config_io.load(config_io.dump(document, filename).encode(), filename) == document


@pytest.mark.parametrize(
    "document, messages",
    [
        ([], ['The file must hold one object with "format": "federation-config" and "version": 1.']),
        ({"version": 1}, ['format: must be "federation-config" (it is missing)']),
        ({"format": "saml-metadata", "version": 1}, ['format: must be "federation-config" (not "saml-metadata")']),
        ({"format": "federation-config"}, ["version: is required (this installation reads version 1)"]),
        ({"format": "federation-config", "version": "1"}, ["version: must be a whole number"]),
        (
            {"format": "federation-config", "version": 2},
            ["version: 2 is newer than this installation understands (1); upgrade this installation first"],
        ),
        ({"format": "federation-config", "version": 1, "colour": "blue"}, ["colour: unknown field"]),
        ({"format": "federation-config", "version": 1, "entities": {"name": "x"}}, ["entities: must be a list"]),
    ],
)
def test_format_and_version(db, document, messages):
    assert problems_of(document) == messages


# ---------------------------------------------------------------- every problem at once, with its path


def test_every_problem_is_reported_with_its_path_and_nothing_is_applied(deployment):
    document = config_io.export_deployment()
    document["authn_context_templates"].append({"name": "Weak", "entries": [{"uri": AC_PPT}]})  # valid: still not applied
    document["entities"][3]["colour"] = "blue"
    idp = find(document, "entities", "idp-local")
    idp["keys"]["signing_key"] = "idp-sign"
    sso = find(document, "partnerships", "sp-to-idp")["settings"]["sso_slo"]
    sso["slo_validity_seconds"] = "sixty"
    duplicate = copy.deepcopy(find(document, "partnerships", "idp-to-sp"))
    duplicate["name"] = "IDP-to-SP"
    document["partnerships"].insert(1, duplicate)
    find(document, "partnerships", "wsfed-later")["active"] = "yes"

    messages = problems_of(document)

    assert messages == [
        f'entities[{document["entities"].index(idp)}].keys.signing_key: there is no keystore entry "idp-sign" in the file or the database',
        "entities[3].colour: unknown field",
        'partnerships[1].name: duplicate name "IDP-to-SP" (also partnerships[0])',
        "partnerships[3].settings.sso_slo.slo_validity_seconds: must be a whole number (not “sixty”)",
        "partnerships[4].active: must be true or false",
    ]
    assert not AuthnContextTemplate.objects.filter(name="Weak").exists()


def test_unknown_fields_at_every_level(deployment):
    document = config_io.export_deployment()
    document["keystore"][0]["password"] = "x"
    document["directories"][1]["hosts"] = "ldap.example.org"  # the embedded directory has no hosts
    document["authn_context_templates"][0]["entries"][0]["strength"] = 3
    sp = find(document, "entities", "sp-partner")
    sp["endpoints"][0]["priority"] = 1
    sp["keys"]["tls_key"] = "x"
    settings = find(document, "partnerships", "idp-to-sp")["settings"]
    settings["configure"]["colour"] = "blue"
    settings["wizard_extras"] = {}
    settings["federation_users"]["rules"] = [{"directory": "Embedded directory", "kind": "user", "value": "a", "shade": 1}]
    messages = problems_of(document)
    index = document["entities"].index(sp)
    assert messages == [
        "keystore[0].password: unknown field",
        "directories[1].hosts: the embedded directory has only a name and a description",
        "authn_context_templates[0].entries[0].strength: unknown field",
        f"entities[{index}].keys.tls_key: unknown field",
        f"entities[{index}].endpoints[0].priority: unknown field",
        "partnerships[0].settings.configure.colour: unknown field",
        "partnerships[0].settings.federation_users.rules[0].shade: unknown field",
        "partnerships[0].settings.wizard_extras: unknown step",
    ]


def test_wrong_types(deployment):
    document = config_io.export_deployment()
    sp = find(document, "entities", "sp-partner")
    sp["name_id_formats"] = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
    sp["endpoints"][0]["index"] = "first"
    sp["endpoints"][0]["is_default"] = 1
    find(document, "directories", "corp-ldap")["port"] = "636"
    find(document, "authn_context_templates", "Corporate")["protection_levels"] = "yes"
    partnership = find(document, "partnerships", "idp-to-sp")
    partnership["directories"] = "Embedded directory"
    partnership["settings"]["configure"]["skew_seconds"] = 1.5
    index = document["entities"].index(sp)
    assert problems_of(document) == [
        "directories[0].port: must be a whole number",
        "authn_context_templates[0].protection_levels: must be true or false",
        f"entities[{index}].name_id_formats: must be a list of text",
        f"entities[{index}].endpoints[0].index: must be a whole number",
        f"entities[{index}].endpoints[0].is_default: must be true or false",
        "partnerships[0].directories: must be a list of text",
        "partnerships[0].settings.configure.skew_seconds: must be a whole number",
    ]


def test_duplicates_in_every_section(deployment):
    document = config_io.export_deployment()
    for section in ("keystore", "directories", "authn_context_templates", "entities"):
        document[section].append(copy.deepcopy(document[section][0]))
    sp = copy.deepcopy(find(document, "entities", "sp-partner"))
    sp["name"] = "sp-partner-2"
    document["entities"].append(sp)
    messages = problems_of(document)
    keystore_count, entity_count = len(document["keystore"]), len(document["entities"])
    assert messages == [
        f'keystore[{keystore_count - 1}].alias: duplicate alias "chained-signing" (also keystore[0])',
        'directories[2].name: duplicate name "corp-ldap" (also directories[0])',
        'authn_context_templates[1].name: duplicate name "Corporate" (also authn_context_templates[0])',
        f'entities[{entity_count - 2}].name: duplicate name "consumer-partner" (also entities[0])',
        f'entities[{entity_count - 1}].entity_id: duplicate remote entity ID "https://sp-partner.example/" '
        f"(also entities[{document['entities'].index(find(document, 'entities', 'sp-partner'))}])",
    ]


def test_missing_references(deployment):
    document = config_io.export_deployment()
    partnership = find(document, "partnerships", "sp-to-idp")
    partnership["directories"] = ["Embedded directory", "hr-ldap"]
    partnership["settings"]["authn_context"]["template"] = "Strong"
    partnership["settings"]["signature"]["verification_certificate"] = "gone"
    find(document, "directories", "corp-ldap")["tls_ca_alias"] = "other-ca"
    other = copy.deepcopy(find(document, "partnerships", "idp-to-sp"))
    other.update(name="new-one", local_entity="nobody", remote_entity="sp-partner")
    document["partnerships"].append(other)
    assert problems_of(document) == [
        'directories[0].tls_ca_alias: there is no keystore entry "other-ca" in the file or the database',
        'partnerships[2].directories[1]: there is no directory "hr-ldap" in the file or the database',
        'partnerships[2].settings.authn_context.template: there is no authentication context template "Strong" in the '
        "file or the database",
        'partnerships[2].settings.signature.verification_certificate: there is no keystore entry "gone" in the file or '
        "the database",
        'partnerships[4].local_entity: there is no entity "nobody" in the file or the database',
    ]


def test_model_rules_are_reported_at_their_path(deployment):
    document = config_io.export_deployment()
    sp = find(document, "entities", "sp-partner")
    sp["endpoints"][0]["location"] = "not a url"
    sp["keys"]["verification_certificate"] = "chained-signing"  # a key pair may verify: allowed
    consumer = find(document, "entities", "consumer-partner")
    consumer["endpoints"] = []
    idp = find(document, "entities", "idp-local")
    idp["keys"]["decryption_key"] = "sp-partner-cert"
    find(document, "directories", "corp-ldap")["security"] = "tls"
    find(document, "authn_context_templates", "Corporate")["entries"][1]["max_level"] = 2000
    find(document, "partnerships", "sp-to-idp")["name"] = "sp to idp"
    entities = document["entities"]
    assert problems_of(document) == [
        "directories[0].security: Value 'tls' is not a valid choice.",
        "authn_context_templates[0].entries[1].max_level: 2000 is out of range: protection levels run from 1 to 1000.",
        f"entities[{entities.index(consumer)}].endpoints: A remote SAML1.1 Consumer needs at least one assertion consumer "
        "service URL.",
        f"entities[{entities.index(idp)}].keys.decryption_key: 'sp-partner-cert' is a trusted certificate. The decryption key "
        "must be a key pair (a private key with its certificate).",
        f"entities[{entities.index(sp)}].endpoints[0].location: A URL cannot contain spaces; encode them as %20.",
        f"partnerships[2].name: {catalog.validate_name('sp to idp')}",
    ]


def test_what_cannot_change_in_place(deployment):
    document = config_io.export_deployment()
    find(document, "keystore", "corp-ca")["kind"] = "trusted_certificate"
    find(document, "entities", "sp-partner")["location"] = "local"
    partnership = find(document, "partnerships", "sp-to-idp")
    partnership["remote_entity"] = "idp-partner-2"
    idp2 = copy.deepcopy(find(document, "entities", "idp-partner"))
    idp2.update(name="idp-partner-2", entity_id="https://idp2.partner.example/")
    document["entities"].append(idp2)
    messages = problems_of(document)
    assert (
        'keystore[1].kind: "corp-ca" is a trusted ca in the database; the kind of an entry cannot change (use another alias)'
        in messages
    )
    assert any(
        m.endswith("The location, type and SAML token type of an entity cannot be changed; create a new entity instead.")
        for m in messages
    )
    assert (
        'partnerships[2].remote_entity: partnership "sp-to-idp" uses the remote entity "idp-partner" in the database; '
        "the entities of a partnership cannot be swapped" in messages
    )


def test_a_refusal_while_writing_rolls_everything_back(deployment, monkeypatch):
    # No document the checks let through makes a service refuse (that is what the checks are for), so the service
    # is made to refuse here: what is tested is that the writes already done are rolled back.
    document = config_io.export_deployment()
    document["authn_context_templates"].append({"name": "Weak", "entries": [{"uri": AC_PPT}]})
    find(document, "entities", "sp-partner")["description"] = "changed"
    find(document, "partnerships", "sp-to-idp")["active"] = True

    def refuse(partnership):
        raise services.PartnershipError([services.Problem("signature", "signing_key", "The signing key has expired.")])

    monkeypatch.setattr(services, "activate", refuse)
    messages = problems_of(document)
    assert messages == ["partnerships[2].settings.signature.signing_key: The signing key has expired."]
    assert not AuthnContextTemplate.objects.filter(name="Weak").exists()
    assert Entity.objects.get(name="sp-partner").description == ""
    assert Partnership.objects.get(name="sp-to-idp").state == "defined"


def test_a_tampered_secret_and_a_bad_private_key(deployment):
    document = config_io.export_deployment(include_secrets=True, include_private_keys=True, password="export-password-1")
    corp = find(document, "directories", "corp-ldap")
    token = corp["bind_password"]["encrypted"]
    corp["bind_password"]["encrypted"] = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    find(document, "keystore", "chained-signing")["private_key"]["pkcs12_base64"] = "bm90IGEgcGtjczEy"
    assert problems_of(document, password="export-password-1") == [
        "keystore[0].private_key: This file is not a key pair (a PEM file with key and certificate, or PKCS#12 expected).",
        "directories[0].bind_password: does not decrypt with the file's password (the value was altered)",
    ]
