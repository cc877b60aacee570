"""DKIM signing keys: generation, PEM import/export and the DNS TXT record that publishes them."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

Algorithm: TypeAlias = Literal["rsa-sha256", "ed25519-sha256"]
PrivateKey: TypeAlias = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)

# RFC 8301 §3.2: signers MUST use RSA keys of at least 1024 bits; verifiers may reject anything smaller.
MIN_RSA_BITS = 1024
RSA_BITS = 2048
RSA_PUBLIC_EXPONENT = 65537

# Domain and selector end up verbatim in the d=/s= tags and in a DNS name, so anything that is not a plain
# dot-separated LDH name (underscores tolerated, as in the wild) could corrupt the signature header.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_NAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def _check_name(kind: str, value: str) -> None:
    if len(value) > 253 or not _NAME_RE.fullmatch(value):
        raise ValueError(
            f"invalid DKIM {kind} {value!r}: expected dot-separated ASCII labels (use the xn-- form for IDNs)"
        )


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A DKIM private key bound to its signing domain (d=) and selector (s=).

    ``domain`` is stored lower-case without a trailing dot. The key type must match ``algorithm``.
    """

    domain: str
    selector: str
    algorithm: Algorithm
    private_key: PrivateKey

    def __post_init__(self) -> None:
        # Normalize once here so lookups by From domain and the d= tag agree without re-normalizing.
        object.__setattr__(self, "domain", self.domain.rstrip(".").lower())
        _check_name("domain", self.domain)
        _check_name("selector", self.selector)
        if self.algorithm == "rsa-sha256":
            if not isinstance(self.private_key, rsa.RSAPrivateKey):
                raise ValueError(
                    f"DKIM selector {self.selector!r}: algorithm rsa-sha256 needs an RSA private key, "
                    f"got {type(self.private_key).__name__}"
                )
            if self.private_key.key_size < MIN_RSA_BITS:
                raise ValueError(
                    f"DKIM selector {self.selector!r}: RSA key of {self.private_key.key_size} bits is "
                    f"below the RFC 8301 minimum of {MIN_RSA_BITS}"
                )
        elif self.algorithm == "ed25519-sha256":
            if not isinstance(self.private_key, ed25519.Ed25519PrivateKey):
                raise ValueError(
                    f"DKIM selector {self.selector!r}: algorithm ed25519-sha256 needs an Ed25519 private "
                    f"key, got {type(self.private_key).__name__}"
                )
        else:
            raise ValueError(f"unsupported DKIM algorithm {self.algorithm!r}; expected one of {ALGORITHMS}")

    def dns_name(self) -> str:
        """Return the DNS name of the key record: ``<selector>._domainkey.<domain>``."""
        return f"{self.selector}._domainkey.{self.domain}"

    def dns_txt(self) -> str:
        """Return the TXT record value publishing the public key (RFC 6376 §3.6.1, RFC 8463 §4)."""
        public = self.private_key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            der = public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"
        # RFC 8463 publishes the bare 32-byte key, not a SubjectPublicKeyInfo.
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"

    def private_pem(self, password: bytes | None = None) -> bytes:
        """Return the private key as PKCS#8 PEM, encrypted with ``password`` when one is given."""
        encryption: serialization.KeySerializationEncryption
        if password is None:
            encryption = serialization.NoEncryption()
        else:
            encryption = serialization.BestAvailableEncryption(password)
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )


def generate_key(domain: str, selector: str, algorithm: Algorithm) -> DkimKey:
    """Generate a new key: RSA-2048 (e=65537) for rsa-sha256, Ed25519 for ed25519-sha256."""
    private_key: PrivateKey
    if algorithm == "rsa-sha256":
        private_key = rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=RSA_BITS)
    elif algorithm == "ed25519-sha256":
        private_key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unsupported DKIM algorithm {algorithm!r}; expected one of {ALGORITHMS}")
    return DkimKey(domain=domain, selector=selector, algorithm=algorithm, private_key=private_key)


def load_key(
    domain: str, selector: str, algorithm: Algorithm, pem: bytes, password: bytes | None = None
) -> DkimKey:
    """Load a PEM private key (PKCS#8 or traditional) for ``selector``; ValueError if unusable."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unsupported DKIM algorithm {algorithm!r}; expected one of {ALGORITHMS}")
    try:
        loaded = serialization.load_pem_private_key(pem, password=password)
    # cryptography signals a missing/unexpected password with TypeError and bad data with ValueError;
    # callers only need to know which selector is broken and why.
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(
            f"cannot load DKIM private key for selector {selector!r} of {domain!r}: {exc}"
        ) from exc
    if not isinstance(loaded, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError(
            f"DKIM private key for selector {selector!r} of {domain!r} is not an RSA or Ed25519 key "
            f"({type(loaded).__name__}); {algorithm} cannot use it"
        )
    # DkimKey checks that the key type matches the algorithm; its message names the selector.
    return DkimKey(domain=domain, selector=selector, algorithm=algorithm, private_key=loaded)
