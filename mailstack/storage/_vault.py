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
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from mailstack.config import PrivacySettings
from mailstack.keyring import DecryptionError, Keyring

from ._blind import address_index
from ._key_providers import KeyProvider, provider_from_settings
from ._privacy import data_keys, key_versions

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


# How often data_keys_for asks again for keys that concurrent transactions created meanwhile (once is
# enough but for a pathological run of erasures and re-creations of the same subject).
_KEY_ATTEMPTS = 5

# PostgreSQL: every subject's data key in one round trip, creating the missing ones (see Vault._pg_keys).
# Arrays keep the statement text the same whatever the batch size, so psycopg converts it once and the
# server prepares it once (a multi-row VALUES list has more parameters than psycopg caches, 50: its text
# was parsed again for every batch). One unique-index lookup per subject (LATERAL ... LIMIT 1) rather
# than ``subject = ANY(...)``: a prepared statement's generic plan is made once, often while data_keys
# is still small, and for ``= ANY`` that plan was a sequential scan, slower with every new subject until
# autovacuum's next ANALYZE (measured: 0.2 ms a batch by index, 5 ms by that scan at 20,000 keys).
_PG_KEYS = text(
    """
WITH existing AS MATERIALIZED (
    SELECT d.id, d.subject, d.key_version, d.wrapped
    FROM unnest(CAST(:subjects AS VARCHAR[])) AS s(subject)
    CROSS JOIN LATERAL (
        SELECT id, subject, key_version, wrapped FROM data_keys AS k
        WHERE k.subject = s.subject LIMIT 1 FOR KEY SHARE
    ) AS d
), shared AS MATERIALIZED (
    SELECT id, subject, key_version, wrapped FROM data_keys
    WHERE subject IS NULL AND scope = CAST(:scope AS VARCHAR)
    ORDER BY id LIMIT 1
), made AS (
    INSERT INTO data_keys (id, subject, scope, key_version, wrapped, created_at)
    SELECT n.id, n.subject, CASE WHEN n.subject IS NULL THEN CAST(:scope AS VARCHAR) END,
           CAST(:version AS INTEGER), n.wrapped, CAST(:now AS DOUBLE PRECISION)
    FROM unnest(CAST(:ids AS BIGINT[]), CAST(:candidates AS VARCHAR[]), CAST(:wrapped AS BYTEA[]))
        AS n(id, subject, wrapped)
    WHERE CASE WHEN n.subject IS NULL THEN NOT EXISTS (SELECT FROM shared)
               ELSE NOT EXISTS (SELECT FROM existing AS e WHERE e.subject = n.subject) END
    ON CONFLICT (subject) DO NOTHING
    RETURNING id, subject, key_version, NULL::BYTEA AS wrapped
)
SELECT id, subject, key_version, wrapped FROM existing
UNION ALL SELECT id, subject, key_version, wrapped FROM shared
UNION ALL SELECT id, subject, key_version, wrapped FROM made
"""
)


class _NewKey(NamedTuple):
    id: int
    subject: str | None
    key: bytes
    wrapped: bytes


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
        # Subjects (and shared scopes) whose key this process saw lately: only a hint, never trusted as
        # to which key, or whether any, exists (see _pg_keys), LRU.
        self._subjects: OrderedDict[str, None] = OrderedDict()
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
        """The blind index of ``address`` (see :func:`mailstack.storage.address_index`)."""
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
        caller's transaction: if it rolls back, so do they, and nothing refers to them.

        Which key a subject has is asked of the database each time, in the caller's transaction, never
        taken from a cache: a key another process shredded is never handed out (see :meth:`_pg_keys` for
        the race with an erasure). Only unwrapped keys are cached, by id (ids are never reused).
        """
        wanted = set(subjects)
        scope = _shared_scope(time.time()) if None in wanted else None
        named = sorted(s for s in wanted if s is not None)
        pending: list[str | None] = [*([None] if scope is not None else []), *named]
        found: dict[str | None, int] = {}
        fetch = self._pg_keys if conn.dialect.name == "postgresql" else self._sql_keys
        for attempt in range(_KEY_ATTEMPTS):
            if not pending:
                return found
            found.update(fetch(conn, pending, scope, attempt == 0))
            # Left out: another transaction created the key after this statement's snapshot was taken
            # (ON CONFLICT DO NOTHING returns nothing then; the next statement sees and uses theirs), or,
            # on PostgreSQL, a key this process had seen is gone (shredded, rolled back): a new one is made.
            pending = [s for s in pending if s not in found]
        if pending:
            raise RuntimeError(f"could not get data keys for {len(pending)} subjects (concurrent changes)")
        return found

    def _new_keys(self, conn: Connection, subjects: Sequence[str | None]) -> tuple[int, list[_NewKey]]:
        """Fresh data keys for ``subjects``, wrapped by the active KEK (not stored yet)."""
        version, kek = self._active_kek(conn)
        made = []
        for subject in subjects:
            key_id = _new_id()
            key = os.urandom(32)
            nonce = os.urandom(_NONCE_BYTES)
            made.append(_NewKey(key_id, subject, key, nonce + kek.encrypt(nonce, key, _wrap_aad(key_id))))
        return version, made

    def _adopt(self, conn: Connection, rows: Iterable[Any], made: Sequence[_NewKey]) -> dict[str | None, int]:
        """Subject -> key id from rows (id, subject, key_version, wrapped) that exist now, caching their
        unwrapped keys: ours (in ``made``) need no unwrapping, the others are unwrapped once."""
        ours = {key.id: key for key in made}
        found: dict[str | None, int] = {}
        for row in rows:
            if row.subject in found:
                continue  # the shared key: the first (lowest id) wins
            found[row.subject] = row.id
            new = ours.get(row.id)
            if new is not None:
                self._remember(row.id, AESGCM(new.key))
            elif self._cached(row.id) is None:
                self._remember(row.id, self._unwrap(conn, row.id, row.key_version, row.wrapped))
        return found

    def _pg_keys(
        self, conn: Connection, subjects: Sequence[str | None], scope: str | None, first: bool
    ) -> dict[str | None, int]:
        """PostgreSQL: one round trip for every subject, existing keys and new ones alike.

        A fresh key is made in Python (microseconds) and offered for each subject, except, on the first
        attempt, subjects this process saw a key for lately (offering costs the server more than
        finding); the statement stores only those whose subject has none, in the caller's transaction.
        That hint only saves work, it never names a key: a subject whose key is gone is not found, and
        is offered a new key on the next attempt. Key ids always come from rows of this transaction.

        Shredding: existing subject keys are locked FOR KEY SHARE until the caller commits, as a foreign
        key would lock them. An erasure deleting one meanwhile either waits for this transaction (and
        then shreds what it sealed, as if the sealing had come first), or deleted it first: the lock
        then waits for the erasure to commit, skips the deleted row, and a new key is stored. So no
        commit ever seals data under a key an erasure deleted (a plain SELECT still sees a row whose
        deletion is not committed yet: a message sealed under it could never be read nor delivered).
        Shared keys are never deleted, so they are not locked (every transaction would contend for one).
        """
        offer = [s for s in subjects if not first or not self._seen(s if s is not None else scope)]
        version, made = self._new_keys(conn, offer)
        rows = conn.execute(
            _PG_KEYS,
            {
                "subjects": [s for s in subjects if s is not None],
                "scope": scope,
                "ids": [k.id for k in made],
                "candidates": [k.subject for k in made],
                "wrapped": [k.wrapped for k in made],
                "version": version,
                "now": time.time(),
            },
        )
        found = self._adopt(conn, rows, made)
        self._saw([s if s is not None else scope for s in found])
        return found

    def _sql_keys(
        self, conn: Connection, subjects: Sequence[str | None], scope: str | None, _first: bool
    ) -> dict[str | None, int]:
        """Other backends (SQLite): a SELECT, then an INSERT of the missing keys. SQLite transactions
        here are BEGIN IMMEDIATE (one writer at a time), so no erasure can run between the two."""
        named = [s for s in subjects if s is not None]
        rows: list[Any] = []
        for start in range(0, max(len(named), 1), _CHUNK):
            chunk = named[start : start + _CHUNK]
            condition: ColumnElement[bool] = data_keys.c.subject.in_(chunk)
            if scope is not None and start == 0:
                condition = or_(condition, data_keys.c.scope == scope)
            if not chunk and scope is None:
                break
            query = select(data_keys.c.id, data_keys.c.subject, data_keys.c.key_version, data_keys.c.wrapped)
            rows.extend(conn.execute(query.where(condition).order_by(data_keys.c.id)))
        found = self._adopt(conn, rows, ())
        missing = [s for s in subjects if s not in found]
        if not missing:
            return found
        version, made = self._new_keys(conn, missing)
        now = time.time()
        statement = sqlite.insert(data_keys).on_conflict_do_nothing(index_elements=["subject"])
        inserted = set(
            conn.execute(
                statement.returning(data_keys.c.id),
                [
                    {
                        "id": key.id,
                        "subject": key.subject,
                        "scope": scope if key.subject is None else None,
                        "key_version": version,
                        "wrapped": key.wrapped,
                        "created_at": now,
                    }
                    for key in made
                ],
            ).scalars()
        )
        # A key not inserted lost to another transaction's: the caller asks again and finds theirs.
        for key in made:
            if key.id in inserted:
                self._remember(key.id, AESGCM(key.key))
                found[key.subject] = key.id
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
        with self._lock:
            self._subjects.pop(subject, None)
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

    def _saw(self, subjects: Iterable[str | None]) -> None:
        with self._lock:
            for subject in subjects:
                if subject is not None:
                    self._subjects[subject] = None
                    self._subjects.move_to_end(subject)
            while len(self._subjects) > self._cache_size:
                self._subjects.popitem(last=False)

    def _seen(self, subject: str | None) -> bool:
        with self._lock:
            return subject in self._subjects


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
