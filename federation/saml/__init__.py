"""The SAML / WS-Federation protocol core: pure functions over lxml trees, no Django, no HTTP.

Modules: `constants` (namespaces, URIs, allow-lists), `errors`, `xml` (hardened parsing and
element helpers), `keys` (key and certificate conversions), `signing` (enveloped XML signatures
and Redirect-binding query signatures), `bindings` (Redirect-binding DEFLATE encoding),
`encryption` (XML Encryption of assertions, NameIDs and attributes), `common` (IDs, instants,
status, SOAP envelopes, inbound message reading and outbound encoders shared by every role).

Asserting party (docs/idp-protocol-core.md): `authn_requests` (parse and verify AuthnRequests, choose
the ACS), `assertions` (Responses and Assertions: signing, encryption, negative responses),
`artifacts` (type 0x0004 artifacts, ArtifactResolve / ArtifactResponse), `logout`
(LogoutRequest / LogoutResponse on Redirect, POST and SOAP).

Relying party (docs/sp-protocol-core.md): `sp_requests` (AuthnRequests, ArtifactResolve and the
ArtifactResponse reader), `consumer` (the assertion consumer's validation into a
ValidatedAssertion). The replay cache is federation.replay (it needs the database or Redis).
"""
