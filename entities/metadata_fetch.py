"""Downloading metadata from a URL: bounded in size and time, TLS verified, clear errors.

`fetch_metadata(url, ...)` streams the response body into a temporary file (never into memory),
refusing it as soon as it passes the size cap (announced by Content-Length or counted while
reading), and stopping when the whole download takes longer than the timeout (a server that sends
a byte every few seconds does not keep it waiting forever). TLS certificates are always verified
(the system's CA bundle, or `ca_bundle`). Redirects are followed by hand, at most five, and only to
http(s) URLs (an https URL never to plain http). Conditional GET: with the ETag / Last-Modified of
the last good copy, an unchanged document comes back as `not_modified`.

Every failure is a `FetchError` whose message names the URL and the reason in plain words.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from entities.metadata_parser import DEFAULT_MAX_BYTES, format_bytes

DEFAULT_TIMEOUT = 30.0
MAX_REDIRECTS = 5
USER_AGENT = "federation-metadata-fetch/1.0"
ACCEPT = "application/samlmetadata+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.1"
_READ_BYTES = 64 * 1024


class FetchError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message


@dataclass
class FetchResult:
    """`file` is a temporary binary file positioned at 0 (None when `not_modified`); close it."""

    url: str
    not_modified: bool = False
    file: object = None
    size: int = 0
    etag: str = ""
    last_modified: str = ""
    content_type: str = ""

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None


def check_url(url):
    """The URL stripped, or FetchError when it is not an absolute http(s) URL."""
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        raise FetchError(f"'{url}' is not a valid URL.") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise FetchError(f"'{url}' is not an http:// or https:// URL; metadata is fetched only over HTTP(S).")
    if parts.username or parts.password:
        raise FetchError("Do not put a user name or password in the metadata URL.")
    return url


def fetch_metadata(
    url,
    *,
    max_bytes=DEFAULT_MAX_BYTES,
    timeout=DEFAULT_TIMEOUT,
    etag="",
    last_modified="",
    ca_bundle=None,
    session=None,
):
    """Download `url` into a temporary file; return a FetchResult or raise FetchError."""
    url = check_url(url)
    deadline = time.monotonic() + timeout
    headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    session = session or requests.Session()
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        response = _get(session, current, headers, deadline, timeout, ca_bundle)
        if response.is_redirect:
            location = response.headers.get("Location", "")
            response.close()
            target = urljoin(current, location)
            scheme = urlsplit(target).scheme.lower()
            if scheme not in ("http", "https"):
                raise FetchError(f"{url} redirects to '{target}', which is not an http(s) URL; the redirect was not followed.")
            if urlsplit(current).scheme.lower() == "https" and scheme == "http":
                raise FetchError(f"{url} redirects from https to plain http ({target}); the redirect was not followed.")
            current = target
            continue
        return _body(response, url, current, max_bytes, deadline, timeout)
    raise FetchError(f"{url} redirects more than {MAX_REDIRECTS} times; giving up.")


def _get(session, url, headers, deadline, timeout, ca_bundle):
    remaining = max(0.1, deadline - time.monotonic())
    try:
        return session.get(
            url,
            headers=headers,
            stream=True,
            allow_redirects=False,
            timeout=(min(remaining, timeout), min(remaining, timeout)),
            verify=ca_bundle or True,
        )
    except requests.exceptions.SSLError as exc:
        raise FetchError(f"TLS verification failed for {url}: {_reason(exc)}") from None
    except requests.exceptions.Timeout:
        raise FetchError(f"{url} did not answer within {timeout:g} seconds (timed out).") from None
    except requests.exceptions.ConnectionError as exc:
        raise FetchError(f"Could not connect to {url}: {_reason(exc)}") from None
    except requests.exceptions.RequestException as exc:
        raise FetchError(f"Could not fetch {url}: {_reason(exc)}") from None


def _body(response, url, final_url, max_bytes, deadline, timeout):
    with response:
        if response.status_code == 304:
            return FetchResult(
                final_url,
                not_modified=True,
                etag=response.headers.get("ETag", ""),
                last_modified=response.headers.get("Last-Modified", ""),
            )
        if response.status_code != 200:
            reason = f" {response.reason}" if response.reason else ""
            raise FetchError(f"{url} answered HTTP {response.status_code}{reason}; the metadata was not downloaded.")
        announced = response.headers.get("Content-Length", "")
        if announced.isdigit() and max_bytes and int(announced) > max_bytes:
            raise FetchError(
                f"{url} sends {format_bytes(int(announced))}, over the size limit of {format_bytes(max_bytes)}; not downloaded."
            )
        target = tempfile.TemporaryFile(prefix="metadata-")
        size = 0
        try:
            # read1 returns whatever has arrived (at most _READ_BYTES), so a server that trickles
            # a byte at a time cannot keep one read blocked past the deadline.
            while True:
                chunk = response.raw.read1(_READ_BYTES, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if max_bytes and size > max_bytes:
                    raise FetchError(
                        f"{url} sent more than the size limit of {format_bytes(max_bytes)}; the download was stopped."
                    )
                if time.monotonic() > deadline:
                    raise FetchError(f"{url} took longer than {timeout:g} seconds to send the metadata (timed out).")
                target.write(chunk)
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            target.close()
            if isinstance(exc, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError) or "timed out" in str(exc).lower():
                raise FetchError(f"{url} stopped sending data for {timeout:g} seconds (timed out).") from None
            raise FetchError(f"The download of {url} failed: {_reason(exc)}") from None
        except FetchError:
            target.close()
            raise
        target.seek(0)
        return FetchResult(
            final_url,
            file=target,
            size=size,
            etag=response.headers.get("ETag", ""),
            last_modified=response.headers.get("Last-Modified", ""),
            content_type=response.headers.get("Content-Type", ""),
        )


def _reason(exc):
    """The innermost reason of a requests/urllib3 error, without the long wrapper text."""
    reason = exc
    for _ in range(6):
        inner = getattr(reason, "reason", None) or (reason.args[0] if getattr(reason, "args", None) else None)
        if inner is None or inner is reason or isinstance(inner, str):
            break
        reason = inner
    text = str(reason)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        detail = text.split("CERTIFICATE_VERIFY_FAILED]", 1)[-1].strip(" )'\"")
        return "certificate verify failed" + (f" ({detail.split('(_ssl')[0].strip()})" if detail else "")
    return text[:300]
