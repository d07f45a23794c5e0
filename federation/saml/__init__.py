"""The SAML / WS-Federation protocol core: pure functions over lxml trees, no Django, no HTTP.

Modules: `constants` (namespaces, URIs, allow-lists), `errors`, `xml` (hardened parsing and
element helpers), `keys` (key and certificate conversions), `signing` (enveloped XML signatures
and Redirect-binding query signatures), `bindings` (Redirect-binding DEFLATE encoding),
`encryption` (XML Encryption of assertions, NameIDs and attributes).
"""
