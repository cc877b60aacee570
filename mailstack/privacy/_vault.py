"""Envelope encryption of personal data at rest (AES-256-GCM).

Three levels, so that a cloud deployment calls its KMS once per KEK version and process, and erasing a
person can crypto-shred every copy of their data:

- a **KEK** (key-encryption key) per version in ``key_versions``, stored wrapped by a key provider;
- **data keys** in ``data_keys``, wrapped by a KEK: one per data subject (the blind index of an address),
  and shared ones (one a day) for data that mixes several people;
- **blobs** in the tables: ``format byte | data key id (8 bytes) | nonce (12) | AES-GCM ciphertext``, the
  purpose (e.g. ``"messages.recipient"``) bound in as associated data so that a blob cannot be moved to
  another column.

Deleting a subject's data key makes everything sealed under it unreadable, including backups and rows
not yet purged. Rotation adds a KEK version and re-wraps data keys in batches; old versions stay readable
until nothing uses them, so nothing stops while it runs.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    String,
    any_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError

from mailstack.config import PrivacySettings
from mailstack.keyring import DecryptionError, Keyring
from mailstack.storage.schema import data_keys, key_versions

from ._blind import address_index
from ._providers import KeyProvider, provider_from_settings

__all__ = ["ERASED", "RotationReport", "ShreddedDataError", "Vault"]

_FORMAT = 0x02
_ID_BYTES = 8
_NONCE_BYTES = 12
_HEADER = 1 + _ID_BYTES + _NONCE_BYTES
_TAG_BYTES = 16
# What a sealed column that may not be NULL holds once anonymised: a blob in this format whose data key
# (id 0, which _new_id never makes) does not exist, so every reader takes it for erased data.
ERASED = bytes([_FORMAT]) + bytes(_ID_BYTES + _NONCE_BYTES + _TAG_BYTES)
_DAY = 86400
_CHUNK = 500  # stay far below every backend's bound-parameter limit
# How long a process trusts its idea of the active KEK version (another node may have rotated).
_KEK_REFRESH_SECONDS = 60.0


class ShreddedDataError(DecryptionError):
    """The data key is gone: the data subject was erased (crypto-shredded)."""


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What :meth:`Vault.rotate` did."""

    new_version: int
    rewrapped: int
    removed_versions: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, for the audit trail and the CLI."""
        return {**asdict(self), "removed_versions": list(self.removed_versions)}


def _is_blob(value: bytes) -> bool:
    return len(value) >= _HEADER + _TAG_BYTES and value[0] == _FORMAT


def is_sealed(value: object) -> bool:
    """Whether ``value`` looks like a vault blob (used to convert old plaintext rows once)."""
    return isinstance(value, bytes | bytearray | memoryview) and _is_blob(bytes(value))


class Vault:
    """Seals and opens personal data; owns the KEK versions and data keys of one database."""

    def __init__(
        self, engine: Engine, keyring: Keyring, provider: KeyProvider, *, cache_size: int = 100_000
    ) -> None:
        """Bind to ``engine``; the first vault of a database creates its first KEK, in a transaction of
        its own (so create that one before opening any: it needs the write lock on SQLite)."""
        self.keyring = keyring
        self.provider = provider
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._ciphers: OrderedDict[int, AESGCM] = OrderedDict()  # data key id -> unwrapped key, LRU
        self._keks: dict[int, AESGCM] = {}  # KEK version -> unwrapped KEK
        self._active: tuple[int, float] | None = None  # (version, when it was read)
        if not _has_kek(engine):
            with engine.begin() as conn:
                if conn.execute(select(func.count()).select_from(key_versions)).scalar_one() == 0:
                    self._add_version(conn)

    @classmethod
    def from_settings(cls, engine: Engine, keyring: Keyring, settings: PrivacySettings) -> Vault:
        """The vault with the key provider ``[privacy]`` names."""
        return cls(engine, keyring, provider_from_settings(settings, keyring))

    # --- blind index ---------------------------------------------------------------------------------

    def index(self, address: str) -> str:
        """The blind index of ``address`` (see :func:`mailstack.privacy.address_index`)."""
        return address_index(self.keyring, address)

    # --- sealing ------------------------------------------------------------------------------------

    def seal(self, conn: Connection, plaintext: bytes, *, purpose: str, subject: str | None) -> bytes:
        """Encrypt ``plaintext`` under ``subject``'s data key (created if needed), or today's shared key
        when ``subject`` is None. ``subject`` is a blind index, never an address."""
        return self.seal_many(conn, [(plaintext, subject)], purpose=purpose)[0]

    def seal_many(
        self, conn: Connection, items: Sequence[tuple[bytes, str | None]], *, purpose: str
    ) -> list[bytes]:
        """Seal a batch: one SELECT for all the subjects' keys, at most one INSERT for missing ones."""
        keys = self.data_keys_for(conn, {subject for _plain, subject in items})
        return [self.seal_with(keys[subject], plain, purpose=purpose) for plain, subject in items]

    def seal_with(self, key_id: int, plaintext: bytes, *, purpose: str) -> bytes:
        """Seal with a data key already fetched by :meth:`data_keys_for` (hot paths seal many values)."""
        cipher = self._cached(key_id)
        if cipher is None:
            raise KeyError(f"data key {key_id} is not loaded (use data_keys_for first)")
        nonce = os.urandom(_NONCE_BYTES)
        head = bytes([_FORMAT]) + key_id.to_bytes(_ID_BYTES, "big") + nonce
        return head + cipher.encrypt(nonce, plaintext, _aad(purpose))

    def data_keys_for(self, conn: Connection, subjects: Iterable[str | None]) -> dict[str | None, int]:
        """The data key id for each subject (None: today's shared key), creating missing ones in the
        caller's transaction: if it rolls back, so do they, and nothing refers to them."""
        wanted = set(subjects)
        scope = _shared_scope(time.time()) if None in wanted else None
        named = sorted(s for s in wanted if s is not None)
        found: dict[str | None, int] = {}
        rows: list[Any] = []
        for start in range(0, max(len(named), 1), _CHUNK):
            chunk = named[start : start + _CHUNK]
            condition: ColumnElement[bool]
            if conn.dialect.name == "postgresql":
                # One statement text whatever the batch size: psycopg parses it once, not per batch.
                condition = data_keys.c.subject == any_(bindparam("subjects", chunk, type_=ARRAY(String)))
            else:
                condition = data_keys.c.subject.in_(chunk)
            if scope is not None and start == 0:
                condition = or_(condition, data_keys.c.scope == scope)
            if not chunk and scope is None:
                break
            query = select(data_keys.c.id, data_keys.c.subject, data_keys.c.key_version, data_keys.c.wrapped)
            rows.extend(conn.execute(query.where(condition).order_by(data_keys.c.id)))
        for row in rows:
            key = row.subject  # None for the shared key: the first (lowest id) wins
            if key not in found:
                found[key] = row.id
                if self._cached(row.id) is None:
                    self._remember(row.id, self._unwrap(conn, row.id, row.key_version, row.wrapped))
        missing = [s for s in wanted if s not in found]
        if missing:
            version, kek = self._active_kek(conn)
            now = time.time()
            new_rows: list[dict[str, Any]] = []
            for subject in missing:
                key_id = _new_id()
                key = os.urandom(32)
                nonce = os.urandom(_NONCE_BYTES)
                wrapped = nonce + kek.encrypt(nonce, key, _wrap_aad(key_id))
                new_rows.append(
                    {
                        "id": key_id,
                        "subject": subject,
                        "scope": scope if subject is None else None,
                        "key_version": version,
                        "wrapped": wrapped,
                        "created_at": now,
                    }
                )
                self._remember(key_id, AESGCM(key))
                found[subject] = key_id
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(data_keys).on_conflict_do_nothing(index_elements=["subject"])
            inserted = set(conn.execute(statement.returning(data_keys.c.id), new_rows).scalars())
            made = [(row["id"], subject) for row, subject in zip(new_rows, missing, strict=True)]
            lost = [(key_id, subject) for key_id, subject in made if key_id not in inserted]
            if lost:
                # Another transaction created these subjects' keys meanwhile: use theirs.
                for key_id, subject in lost:
                    self._forget(key_id)
                    del found[subject]
                found.update(self.data_keys_for(conn, {subject for _key_id, subject in lost}))
        return found

    # --- opening ------------------------------------------------------------------------------------

    def open(self, conn: Connection, blob: bytes, *, purpose: str) -> bytes:
        """Decrypt a blob sealed for ``purpose``. Raises DecryptionError when it was altered or sealed
        for another purpose, ShreddedDataError when its subject was erased."""
        return self.open_many(conn, [blob], purpose=purpose)[0]

    def open_many(self, conn: Connection, blobs: Sequence[bytes], *, purpose: str) -> list[bytes]:
        """Decrypt a batch: one SELECT at most, for the data keys not cached yet."""
        parsed = [_parse(bytes(blob)) for blob in blobs]
        self._load(conn, {key_id for key_id, _nonce, _sealed in parsed})
        aad = _aad(purpose)
        result = []
        for key_id, nonce, sealed in parsed:
            cipher = self._cached(key_id)
            if cipher is None:
                raise ShreddedDataError("this data was erased (its data key is gone)")
            try:
                result.append(cipher.decrypt(nonce, sealed, aad))
            except InvalidTag:
                raise DecryptionError(
                    f"cannot decrypt {purpose}: altered, or sealed for another use"
                ) from None
        return result

    def open_many_optional(
        self, conn: Connection, blobs: Sequence[bytes | None], *, purpose: str
    ) -> list[bytes | None]:
        """:meth:`open_many`, with None for None and for erased data (its data key is gone)."""
        parsed = [None if b is None else _parse(bytes(b)) for b in blobs]
        self._load(conn, {p[0] for p in parsed if p is not None})
        aad = _aad(purpose)
        result: list[bytes | None] = []
        for item in parsed:
            cipher = None if item is None else self._cached(item[0])
            if item is None or cipher is None:
                result.append(None)
                continue
            try:
                result.append(cipher.decrypt(item[1], item[2], aad))
            except InvalidTag:
                raise DecryptionError(
                    f"cannot decrypt {purpose}: altered, or sealed for another use"
                ) from None
        return result

    def open_optional(self, conn: Connection, blob: bytes | None, *, purpose: str) -> bytes | None:
        """:meth:`open`, with None for None and for erased data (listings show what is left)."""
        if blob is None:
            return None
        try:
            return self.open(conn, blob, purpose=purpose)
        except ShreddedDataError:
            return None

    def key_id_of(self, blob: bytes) -> int:
        """Which data key sealed ``blob``."""
        return _parse(bytes(blob))[0]

    # --- erasure and rotation -------------------------------------------------------------------------

    def shred_subject(self, conn: Connection, subject: str) -> bool:
        """Delete ``subject``'s data key: whatever was sealed under it can never be read again."""
        ids = conn.execute(select(data_keys.c.id).where(data_keys.c.subject == subject)).scalars().all()
        for key_id in ids:
            self._forget(key_id)
        conn.execute(delete(data_keys).where(data_keys.c.subject == subject))
        return bool(ids)

    def rotate(self, conn: Connection, *, batch: int = 500) -> RotationReport:
        """Make a new KEK version active, re-wrap every data key under it, drop unused old versions.

        Commits after each step and batch (``conn`` must not be inside the caller's transaction): data
        keys under old versions stay readable throughout, so sending and reading never stop.
        """
        if conn.in_transaction():
            conn.commit()
        version, kek = self._add_version(conn)
        conn.commit()
        rewrapped = 0
        last_id: int | None = None
        while True:
            query = select(data_keys.c.id, data_keys.c.key_version, data_keys.c.wrapped).where(
                data_keys.c.key_version != version
            )
            if last_id is not None:
                query = query.where(data_keys.c.id > last_id)
            rows = conn.execute(query.order_by(data_keys.c.id).limit(batch)).all()
            if not rows:
                break
            for row in rows:
                plain = self._unwrap_raw(conn, row.id, row.key_version, row.wrapped)
                nonce = os.urandom(_NONCE_BYTES)
                conn.execute(
                    update(data_keys)
                    .where(data_keys.c.id == row.id, data_keys.c.key_version == row.key_version)
                    .values(key_version=version, wrapped=nonce + kek.encrypt(nonce, plain, _wrap_aad(row.id)))
                )
            conn.commit()
            rewrapped += len(rows)
            last_id = rows[-1].id
        removed = []
        old = conn.execute(select(key_versions.c.version).where(key_versions.c.version != version)).scalars()
        for old_version in list(old):
            used = conn.execute(
                select(func.count()).select_from(data_keys).where(data_keys.c.key_version == old_version)
            ).scalar_one()
            if used:
                continue  # a node still on the old version wrapped a key meanwhile: next rotation
            try:
                conn.execute(delete(key_versions).where(key_versions.c.version == old_version))
                conn.commit()
            except IntegrityError:
                conn.rollback()
                continue
            removed.append(old_version)
            with self._lock:
                self._keks.pop(old_version, None)
        return RotationReport(version, rewrapped, tuple(removed))

    # --- keys -----------------------------------------------------------------------------------------

    def _add_version(self, conn: Connection) -> tuple[int, AESGCM]:
        plain, wrapped, provider_key_id = self.provider.generate_kek()
        latest = conn.execute(select(func.max(key_versions.c.version))).scalar()
        version = int(latest or 0) + 1
        conn.execute(update(key_versions).values(active=False))
        conn.execute(
            insert(key_versions).values(
                version=version,
                provider=self.provider.name,
                provider_key_id=provider_key_id,
                wrapped_kek=wrapped,
                created_at=time.time(),
                active=True,
            )
        )
        kek = AESGCM(plain)
        with self._lock:
            self._keks[version] = kek
            self._active = (version, time.monotonic())
        return version, kek

    def _active_kek(self, conn: Connection) -> tuple[int, AESGCM]:
        active = self._active
        if active is None or time.monotonic() - active[1] > _KEK_REFRESH_SECONDS:
            version = conn.execute(
                select(func.max(key_versions.c.version)).where(key_versions.c.active.is_(True))
            ).scalar()
            if version is None:
                raise DecryptionError("no active key-encryption key (was key_versions emptied?)")
            active = (int(version), time.monotonic())
            with self._lock:
                self._active = active
        return active[0], self._kek(conn, active[0])

    def _kek(self, conn: Connection, version: int) -> AESGCM:
        kek = self._keks.get(version)
        if kek is None:
            row = conn.execute(select(key_versions).where(key_versions.c.version == version)).first()
            if row is None:
                raise DecryptionError(f"key-encryption key version {version} is missing")
            if row.provider != self.provider.name:
                raise DecryptionError(
                    f"key version {version} was made by the {row.provider!r} key provider, "
                    f"but privacy.key_provider is {self.provider.name!r}"
                )
            kek = AESGCM(self.provider.unwrap_kek(bytes(row.wrapped_kek), row.provider_key_id))
            with self._lock:
                self._keks[version] = kek
        return kek

    def _unwrap_raw(self, conn: Connection, key_id: int, version: int, wrapped: bytes) -> bytes:
        wrapped = bytes(wrapped)
        try:
            return self._kek(conn, version).decrypt(
                wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _wrap_aad(key_id)
            )
        except InvalidTag:
            raise DecryptionError(f"data key {key_id} does not unwrap: altered or wrong KEK") from None

    def _unwrap(self, conn: Connection, key_id: int, version: int, wrapped: bytes) -> AESGCM:
        return AESGCM(self._unwrap_raw(conn, key_id, version, wrapped))

    def _load(self, conn: Connection, key_ids: set[int]) -> None:
        missing = sorted(k for k in key_ids if self._cached(k) is None)
        for start in range(0, len(missing), _CHUNK):
            query = select(data_keys.c.id, data_keys.c.key_version, data_keys.c.wrapped).where(
                data_keys.c.id.in_(missing[start : start + _CHUNK])
            )
            for row in conn.execute(query):
                self._remember(row.id, self._unwrap(conn, row.id, row.key_version, row.wrapped))

    def _cached(self, key_id: int) -> AESGCM | None:
        with self._lock:
            cipher = self._ciphers.get(key_id)
            if cipher is not None:
                self._ciphers.move_to_end(key_id)
            return cipher

    def _remember(self, key_id: int, cipher: AESGCM) -> None:
        with self._lock:
            self._ciphers[key_id] = cipher
            self._ciphers.move_to_end(key_id)
            while len(self._ciphers) > self._cache_size:
                self._ciphers.popitem(last=False)

    def _forget(self, key_id: int) -> None:
        with self._lock:
            self._ciphers.pop(key_id, None)


def _has_kek(engine: Engine) -> bool:
    # Through the driver, outside SQLAlchemy's transaction (which is BEGIN IMMEDIATE on SQLite): a
    # vault made while another connection is in a transaction must not wait for its write lock.
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SELECT count(*) FROM key_versions")
        (count,) = cursor.fetchone() or (0,)
        cursor.close()
        return bool(count)
    finally:
        raw.close()


def _aad(purpose: str) -> bytes:
    return b"mailstack:" + purpose.encode()


def _wrap_aad(key_id: int) -> bytes:
    return b"mailstack:data-key:" + key_id.to_bytes(_ID_BYTES, "big")


def _new_id() -> int:
    # Random, positive, 63 bits (fits BIGINT): never reused, so an id always names the same key.
    return int.from_bytes(os.urandom(_ID_BYTES), "big") >> 1 or 1


def _shared_scope(now: float) -> str:
    return f"day:{int(now // _DAY)}"


def _parse(blob: bytes) -> tuple[int, bytes, bytes]:
    if not _is_blob(blob):
        raise DecryptionError("not a sealed value (unknown format)")
    key_id = int.from_bytes(blob[1 : 1 + _ID_BYTES], "big")
    return key_id, blob[1 + _ID_BYTES : _HEADER], blob[_HEADER:]
