"""Shared fixtures for the DKIM signing tests: keys and a dkimpy-based verifier."""

from __future__ import annotations

import base64
import types
from collections.abc import Callable, Iterable

import dkim
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mailstack.signing import DkimKey, generate_key

Verify = Callable[[bytes, Iterable[DkimKey]], list[str]]


@pytest.fixture(scope="session")
def rsa_key() -> DkimKey:
    return generate_key("example.com", "rsa2024", "rsa-sha256")


@pytest.fixture(scope="session")
def ed_key() -> DkimKey:
    return generate_key("example.com", "ed2024", "ed25519-sha256")


@pytest.fixture(params=["rsa-sha256", "ed25519-sha256"])
def any_key(request: pytest.FixtureRequest, rsa_key: DkimKey, ed_key: DkimKey) -> DkimKey:
    return rsa_key if request.param == "rsa-sha256" else ed_key


class _BadSignatureError(Exception):
    pass


class _VerifyKey:
    """The slice of nacl.signing.VerifyKey that dkimpy uses, backed by `cryptography`."""

    def __init__(self, key: bytes, encoder: object = None) -> None:
        self._key = Ed25519PublicKey.from_public_bytes(base64.b64decode(key))

    def verify(self, message: bytes, signature: bytes) -> bytes:
        try:
            self._key.verify(signature, message)
        except InvalidSignature as exc:
            raise _BadSignatureError(str(exc)) from exc
        return message


def _nacl_stand_in() -> types.SimpleNamespace:
    return types.SimpleNamespace(
        signing=types.SimpleNamespace(VerifyKey=_VerifyKey),
        encoding=types.SimpleNamespace(Base64Encoder=None),
        exceptions=types.SimpleNamespace(ValueError=ValueError, BadSignatureError=_BadSignatureError),
    )


@pytest.fixture
def dkimpy_verify(monkeypatch: pytest.MonkeyPatch) -> Verify:
    """Return ``verify(message, keys) -> [result of each DKIM-Signature, top to bottom]``.

    A result is "pass", "fail" (bad signature) or "fail: <reason>" (dkimpy rejected the signature
    before checking it, e.g. on a body hash mismatch).

    dkimpy verifies ed25519 through PyNaCl, which is not a dependency of this project; when it is
    missing, dkimpy's two NaCl calls (VerifyKey(...), .verify()) are served by `cryptography`. All DKIM
    logic (tag parsing, canonicalization, hashing) stays dkimpy's own.
    """
    if not hasattr(dkim, "nacl"):
        monkeypatch.setattr(dkim, "nacl", _nacl_stand_in(), raising=False)

    def verify(message: bytes, keys: Iterable[DkimKey]) -> list[str]:
        records = {f"{k.dns_name()}.".encode(): k.dns_txt().encode() for k in keys}

        def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
            return records.get(name)

        d = dkim.DKIM(message)
        count = sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")
        results = []
        for i in range(count):
            try:
                results.append("pass" if d.verify(idx=i, dnsfunc=dnsfunc) else "fail")
            except dkim.ValidationError as exc:
                results.append(f"fail: {exc}")
        return results

    return verify
