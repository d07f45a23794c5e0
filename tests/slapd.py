"""Fixtures for the LDAP tests: a real slapd on a loopback port (filled by the directories work)."""
