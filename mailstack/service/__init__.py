"""Assembly of the running service: runtime parts, DKIM key management and ``serve``."""

from ._keys import (
    DuplicateSelectorError,
    ImportedKey,
    PublishedKey,
    create_domain_keys,
    import_domain_key,
    published_keys,
    signing_keys,
)
from ._runtime import Runtime, SignerCache
from ._serve import serve

__all__ = [
    "DuplicateSelectorError",
    "ImportedKey",
    "PublishedKey",
    "Runtime",
    "SignerCache",
    "create_domain_keys",
    "import_domain_key",
    "published_keys",
    "serve",
    "signing_keys",
]
