"""Key pairs for the SAML tests: fresh ones per test session (RSA 2048 and EC P-256, made with
`cryptography`) and the committed ones the fixture vectors were made with."""

import pytest

from .credentials import FIXTURES, committed_credential, make_credential


@pytest.fixture(scope="session")
def idp_rsa():
    return make_credential("rsa", "idp.example.org")


@pytest.fixture(scope="session")
def idp_ec():
    return make_credential("ec", "idp.example.org EC")


@pytest.fixture(scope="session")
def sp_rsa():
    return make_credential("rsa", "sp.example.org")


@pytest.fixture(scope="session")
def attacker_rsa():
    return make_credential("rsa", "attacker")


@pytest.fixture(scope="session")
def committed():
    """The committed test credentials by name: idp-rsa, sp-rsa, attacker-rsa."""
    return {name: committed_credential(name) for name in ("idp-rsa", "sp-rsa", "attacker-rsa")}


@pytest.fixture
def fixture_bytes():
    def read(relative):
        return (FIXTURES / relative).read_bytes()

    return read
