"""Message encodings of the SAML 2.0 HTTP-Redirect binding (bindings §3.4.4): raw DEFLATE
(RFC 1951, no zlib header) then base64. Query signatures are in `signing`."""

import base64
import binascii
import zlib

from .constants import MAX_REDIRECT_MESSAGE_BYTES
from .errors import BindingError


def deflate_encode(message):
    """The `SAMLRequest`/`SAMLResponse` value for a message: raw DEFLATE, then base64 (not yet
    URL-encoded; `signing.sign_query` does that)."""
    if isinstance(message, str):
        message = message.encode("utf-8")
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    return base64.b64encode(compressor.compress(message) + compressor.flush()).decode("ascii")


def inflate_decode(value, max_bytes=MAX_REDIRECT_MESSAGE_BYTES):
    """The message bytes from a Redirect-binding value (already URL-decoded).

    Decompression stops as soon as the output would exceed `max_bytes`, so a DEFLATE bomb
    costs at most that much memory. Raises `BindingError` for bad base64, data that is not a
    complete raw DEFLATE stream, trailing bytes, or oversize output.
    """
    if isinstance(value, str):
        value = value.encode("ascii", "replace")
    try:
        compressed = base64.b64decode(b"".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BindingError("the Redirect message is not valid base64") from None
    decompressor = zlib.decompressobj(-15)
    try:
        output = decompressor.decompress(compressed, max_bytes + 1)
        if len(output) > max_bytes or decompressor.unconsumed_tail:
            raise BindingError(f"the Redirect message is larger than {max_bytes} bytes after decompression")
        output += decompressor.flush()
    except zlib.error:
        raise BindingError("the Redirect message is not valid DEFLATE data") from None
    if len(output) > max_bytes:
        raise BindingError(f"the Redirect message is larger than {max_bytes} bytes after decompression")
    if not decompressor.eof:
        raise BindingError("the Redirect message is a truncated DEFLATE stream")
    if decompressor.unused_data:
        raise BindingError("the Redirect message has data after the end of its DEFLATE stream")
    return output
