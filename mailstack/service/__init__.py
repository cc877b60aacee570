"""Assembly of the running service: runtime parts, DKIM key management and ``serve``."""

from ._keys import PublishedKey, create_domain_keys, published_keys, signing_keys
from ._runtime import Runtime, SignerCache
from ._serve import serve

__all__ = [
    "PublishedKey",
    "Runtime",
    "SignerCache",
    "create_domain_keys",
    "published_keys",
    "serve",
    "signing_keys",
]
