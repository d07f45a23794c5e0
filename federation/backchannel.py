"""Incoming back-channel authentication, one rule for every SOAP endpoint a partner calls: artifact resolution,
single logout over SOAP and name-ID management over SOAP.

A partnership's "incoming back-channel authentication" (`sso_slo.backchannel_in_auth`) is one of:

- `none`: anyone may call (the caller logs a warning on every use);
- `basic`: HTTP Basic, the user name being the partnership's name and the password its back-channel password;
- `client_cert`: a client certificate presented to the TLS-terminating proxy in front of this site, which forwards it
  in a header (`FEDERATION_CLIENT_CERT_HEADER`, default `X-SSL-Client-Cert`: nginx's `$ssl_client_escaped_cert`, a
  URL-encoded PEM). The header is believed only from the proxies listed in `FEDERATION_CLIENT_CERT_TRUSTED_PROXIES`;
  the certificate's subject CN must be the partnership's name and it must be within its validity period. (The proxy
  checks the chain and the proof of possession; it must remove the header from anything else.)

No HTTP objects here: the views pass the Authorization header, the request headers and the peer address.
"""

import base64
import binascii
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote

from cryptography import x509

from federation.sso_sessions import runtime_setting

NONE, BASIC, CLIENT_CERT = "none", "basic", "client_cert"


@dataclass(frozen=True)
class Refusal:
    """Why a caller is not let in: `message` for the caller, `detail` for the log."""

    status: int  # 401 (Basic: with the challenge in `headers`) or 403
    message: str
    detail: str
    headers: dict = field(default_factory=dict)


def client_certificate(headers, remote_addr):
    """The client certificate a trusted TLS-terminating proxy forwarded, or (None, why not)."""
    trusted = [
        item.strip() for item in str(runtime_setting("FEDERATION_CLIENT_CERT_TRUSTED_PROXIES", "")).split(",") if item.strip()
    ]
    header = str(runtime_setting("FEDERATION_CLIENT_CERT_HEADER", "X-SSL-Client-Cert"))
    if not trusted:
        return (
            None,
            "no trusted proxy is configured (FEDERATION_CLIENT_CERT_TRUSTED_PROXIES), so no client certificate is accepted",
        )
    if remote_addr not in trusted:
        return None, f"the request came from {remote_addr}, not from a trusted proxy"
    value = (headers or {}).get(header, "")
    if not value:
        return None, f"the trusted proxy sent no {header} header (no client certificate)"
    try:
        return x509.load_pem_x509_certificate(unquote(value).encode()), ""
    except ValueError:
        return None, f"the {header} header does not hold a PEM certificate"


def refusal(method, *, partnership_name, password, realm, authorization="", headers=None, remote_addr="", now=None):
    """None when the caller authenticated as `method` demands (always for `none`), else the `Refusal`.

    `password` is called for the expected Basic password only when one is needed (it is stored sealed); `realm` goes
    into the Basic challenge."""
    if method == NONE:
        return None
    if method == BASIC:
        challenge = {"WWW-Authenticate": f'Basic realm="{realm}", charset="UTF-8"'}
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() != "basic" or not credentials:
            return Refusal(401, "Authentication required.", "no Basic credentials", challenge)
        try:
            user, _, given = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return Refusal(401, "Authentication required.", "bad Basic header", challenge)
        expected = password() or ""
        good_user = hmac.compare_digest(user.encode(), partnership_name.encode())
        good_password = bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
        if not (good_user and good_password):
            detail = f"Basic user {user!r}: {'wrong password' if good_user else 'not the partnership name'}"
            return Refusal(401, "Authentication failed.", detail, challenge)
        return None
    if method != CLIENT_CERT:
        return Refusal(403, "The back channel of this partnership is misconfigured.", f"unknown authentication {method!r}")
    certificate, why = client_certificate(headers, remote_addr)
    if certificate is None:
        return Refusal(403, "A client certificate is required.", why)
    names = certificate.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    common_name = names[0].value if names else ""
    if common_name != partnership_name:
        detail = f"subject CN {common_name!r} is not the partnership name {partnership_name!r}"
        return Refusal(403, "The client certificate is not accepted.", detail)
    now = now or datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        return Refusal(403, "The client certificate is not accepted.", "expired or not yet valid")
    return None
