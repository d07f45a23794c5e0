"""Round trip: this site's local entities of all six types, exported signed with their own key
(entities.metadata_export), imported back as remote entities with that key as the trust anchor:
the same entity ID, every published endpoint, the WS-Fed URL and the certificate. And pysaml2 SP
metadata imported, exported again and loaded by pysaml2."""

import io
import warnings

import pytest

from entities import metadata_export
from entities import metadata_import as mi
from entities.entity_services import create_entity
from entities.models import EntityType, Location, Protocol, type_protocol, type_role
from tests import metadata_fixtures as mf
from tests.saml.credentials import make_credential

pytestmark = pytest.mark.django_db

BASE = "https://fed.example.org"


@pytest.mark.parametrize("entity_type", EntityType.values)
def test_export_then_import_each_entity_type(entity_type, make_key_pair, tmp_path):
    key = make_key_pair(f"{entity_type}-key", algorithm="rsa2048", subject=f"CN={entity_type}.example.org")
    values = {
        "location": Location.LOCAL,
        "entity_type": entity_type,
        "entity_id": f"urn:example:{entity_type}",
        "name": f"local-{entity_type}",
        "base_url": BASE,
        "signing_key": key,
    }
    if type_protocol(entity_type) == Protocol.WSFED:
        values["saml_token_type"] = "saml2"
    local = create_entity(values)
    exported = metadata_export.export_entity_metadata(local, metadata_export.ExportOptions(sign_with=key))
    path = tmp_path / "ours.xml"
    path.write_bytes(exported.xml)

    remote, plan, info = mi.import_entity(mi.Source(path=str(path)), name=f"remote-{entity_type}", trust_alias=key.alias)
    assert info.verified and (remote.location, remote.entity_type, remote.entity_id) == (
        Location.REMOTE,
        entity_type,
        local.entity_id,
    )
    assert remote.verification_certificate == key  # the same certificate: the keystore entry is reused
    expected = {
        (e.kind, e.binding, e.location, e.index, e.is_default)
        for e in metadata_export.local_endpoints(BASE, type_protocol(entity_type), type_role(entity_type))
    }
    imported = {(e.kind, e.binding, e.location, e.index, e.is_default) for e in remote.endpoints.all()}
    assert imported == expected
    if type_protocol(entity_type) == Protocol.WSFED:
        assert remote.wsfed_service_url == metadata_export.local_wsfed_url(BASE)
        # An IP offers its token type; RP metadata names none, and the import's default is SAML 1.1.
        assert remote.saml_token_type == ("saml2" if entity_type == EntityType.WSFED_IP else "saml11")
    assert not plan.notes or all("Skipped" not in note for note in plan.notes)


def test_pysaml2_metadata_in_and_out_again(tmp_path):
    document = mf.pysaml2_sp(tmp_path, make_credential("rsa", "sp.example.org"), encryption=make_credential("rsa", "enc"))
    path = tmp_path / "sp.xml"
    path.write_bytes(document)
    remote, _plan, _ = mi.import_entity(mi.Source(path=str(path)), name="sp1", allow_unsigned=True)
    again = metadata_export.export_entity_metadata(remote, metadata_export.ExportOptions()).xml
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from saml2 import config
        from saml2.attribute_converter import ac_factory
        from saml2.mdstore import MetadataStore

        conf = config.Config()
        conf.load({"entityid": "https://check.example.org/", "xmlsec_binary": mf.XMLSEC1})
        store = MetadataStore(ac_factory(), conf)
        store.load("inline", again.decode())
        from saml2 import BINDING_HTTP_ARTIFACT, BINDING_HTTP_POST

    post = store.assertion_consumer_service("https://sp.example.org/sp", binding=BINDING_HTTP_POST)
    artifact = store.assertion_consumer_service("https://sp.example.org/sp", binding=BINDING_HTTP_ARTIFACT)
    assert [s["location"] for s in post] == ["https://sp.example.org/acs/post"]
    assert [s["location"] for s in artifact] == ["https://sp.example.org/acs/artifact"]
    # And read back by our own parser: the same endpoints as first imported.
    entities = []
    from entities.metadata_parser import read_metadata

    read_metadata(io.BytesIO(again), entities.append, allow_unsigned=True)
    role = entities[0].role_for(EntityType.SAML2_SP)
    assert {(e.kind, e.location, e.index) for e in role.endpoints} == {
        (e.kind, e.location, e.index) for e in remote.endpoints.all()
    }
