"""DKIM signing (RFC 6376, relaxed/relaxed) with rsa-sha256 and ed25519-sha256 (RFC 8463) keys.

Typical use::

    signer = Signer([load_key("example.com", "s1", "rsa-sha256", pem)])
    signed = signer.sign_message(message_bytes)  # message_bytes should use CRLF line endings
"""

from mailstack.signing._keys import Algorithm, DkimKey, PrivateKey, generate_key, load_key
from mailstack.signing._signer import DEFAULT_SIGNED_HEADERS, Signer, SigningError, header_from_domain

__all__ = [
    "DEFAULT_SIGNED_HEADERS",
    "Algorithm",
    "DkimKey",
    "PrivateKey",
    "Signer",
    "SigningError",
    "generate_key",
    "header_from_domain",
    "load_key",
]
