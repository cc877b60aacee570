"""Sending domains: their DKIM keys at rest (created, imported, rotated, published) and the signer built
from them, which decides which From domains this server may send for."""

from ._keys import (
    ALGORITHMS,
    DuplicateSelectorError,
    ImportedKey,
    PublishedKey,
    create_domain_keys,
    import_domain_key,
    published_keys,
    signing_keys,
)
from ._signers import KEY_RELOAD_SECONDS, SignerCache, normalized_domain

__all__ = [
    "ALGORITHMS",
    "KEY_RELOAD_SECONDS",
    "DuplicateSelectorError",
    "ImportedKey",
    "PublishedKey",
    "SignerCache",
    "create_domain_keys",
    "import_domain_key",
    "normalized_domain",
    "published_keys",
    "signing_keys",
]
