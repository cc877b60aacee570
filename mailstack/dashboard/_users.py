"""Dashboard users and their sessions.

Passwords are chosen by people, so they get argon2id (memory-hard, salted) rather than the fast hash API
secrets get. A session is a signed cookie naming the user, its expiry and a fingerprint of the password
hash: changing the password ends every session, and nothing is kept server-side.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Engine, case, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mailstack.storage.schema import dashboard_users, login_attempts
from mailstack.tokens import InvalidToken, TokenSigner

__all__ = [
    "MIN_PASSWORD",
    "LoginThrottle",
    "Sessions",
    "UserRecord",
    "authenticate",
    "create_user",
    "set_password",
]

MIN_PASSWORD = 12
MAX_PASSWORD = 1024
_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters
_SESSION = "dashboard-session"


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    username: str
    password_hash: str

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValueError(f"the password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters long")


def _check_username(username: str) -> str:
    name = username.strip()
    if not 0 < len(name) <= 100 or not name.isprintable():
        raise ValueError("the user name must be 1-100 printable characters")
    return name


def create_user(conn: Connection, username: str, password: str) -> UserRecord:
    """Add a user; raises ValueError for a weak password or a taken name."""
    name = _check_username(username)
    _check_password(password)
    if conn.execute(select(dashboard_users.c.id).where(dashboard_users.c.username == name)).first():
        raise ValueError(f"the user {name!r} already exists")
    hashed = _HASHER.hash(password)
    new_id = conn.execute(
        insert(dashboard_users)
        .values(username=name, password_hash=hashed, created_at=time.time())
        .returning(dashboard_users.c.id)
    ).scalar_one()
    return UserRecord(new_id, name, hashed)


def set_password(conn: Connection, username: str, password: str) -> bool:
    """Change a user's password (which ends their sessions); False when there is no such user."""
    _check_password(password)
    changed = conn.execute(
        update(dashboard_users)
        .where(dashboard_users.c.username == username.strip())
        .values(password_hash=_HASHER.hash(password))
    ).rowcount
    return bool(changed)


def _user(conn: Connection, **where: object) -> UserRecord | None:
    query = select(dashboard_users.c.id, dashboard_users.c.username, dashboard_users.c.password_hash)
    for column, value in where.items():
        query = query.where(dashboard_users.c[column] == value)
    row = conn.execute(query).first()
    return None if row is None else UserRecord(row.id, row.username, row.password_hash)


@functools.cache
def _dummy_hash() -> str:
    # Verified against when the user does not exist, so that a wrong name costs as long as a wrong
    # password. Made at the first login, not at import: hashing takes a quarter of a second.
    return _HASHER.hash("mailstack-no-such-user")


def authenticate(conn: Connection, username: str, password: str) -> UserRecord | None:
    """The user, when the password is right; None otherwise (in about the same time either way)."""
    if len(password) > MAX_PASSWORD or len(username) > 100:
        return None
    user = _user(conn, username=username.strip())
    try:
        _HASHER.verify(user.password_hash if user is not None else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if _HASHER.check_needs_rehash(user.password_hash):
        set_password(conn, user.username, password)
        user = _user(conn, id=user.id)
    return user


class Sessions:
    """Signed session cookies valid for ``lifetime`` seconds."""

    def __init__(self, signer: TokenSigner, lifetime: float) -> None:
        self._signer = signer
        self._lifetime = lifetime

    def issue(self, user: UserRecord, *, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self._lifetime)
        return self._signer.sign(_SESSION, f"{user.id}:{expires}:{user.fingerprint}")

    def user(self, conn: Connection, cookie: str | None, *, now: float | None = None) -> UserRecord | None:
        """The session's user, if the cookie is genuine, unexpired and the password unchanged."""
        if not cookie:
            return None
        try:
            payload = self._signer.verify(_SESSION, cookie)
        except InvalidToken:
            return None
        user_id, _, rest = payload.partition(":")
        expires, _, fingerprint = rest.partition(":")
        if not user_id.isdigit() or not expires.isdigit():
            return None
        if int(expires) < (time.time() if now is None else now):
            return None
        user = _user(conn, id=int(user_id))
        if user is None or user.fingerprint != fingerprint:
            return None
        return user


class LoginThrottle:
    """Sign-in attempts counted in the database, so every process of a fleet sees the same counts.

    A client address may try ``limit`` times per ``window`` seconds; one user name ``user_limit`` times
    (from however many addresses: a botnet guessing one password). :meth:`take` counts an attempt
    *before* the password is checked, in one conditional upsert per counter, so simultaneous guesses
    cannot all pass a count none of them has added to yet; past either limit even the right password is
    refused. A window starts at its first attempt; a success starts both counters afresh. Counters are
    keyed HMACs, so the table holds neither addresses nor names.
    """

    def __init__(
        self,
        engine: Engine,
        key: bytes,
        *,
        limit: int = 10,
        user_limit: int = 50,
        window: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._key = key
        self._limit = limit
        self._user_limit = user_limit
        self._window = window
        self._clock = clock  # wall clock: the processes sharing the table share no monotonic clock

    def _keys(self, client: str, username: str) -> tuple[str, str]:
        def mac(text: str) -> str:
            return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

        return mac("ip:" + client), mac("user:" + username.strip().lower()[:100])

    def take(self, client: str, username: str) -> bool:
        """Count a sign-in attempt from ``client`` as ``username``; False (nothing counted) when either
        limit is reached, and then the password must not be checked."""
        now = self._clock()
        by_ip, by_user = self._keys(client, username)
        with self._engine.connect() as conn, conn.begin() as transaction:
            # Always the address first, then the user: two attempts never wait on each other in a cycle.
            if not (
                self._take_one(conn, by_ip, self._limit, now)
                and self._take_one(conn, by_user, self._user_limit, now)
            ):
                transaction.rollback()
                return False
            self._forget_expired(conn, now)
        return True

    def _take_one(self, conn: Connection, key: str, limit: int, now: float) -> bool:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        table = login_attempts
        expired = table.c.window_start <= now - self._window
        statement = dialect.insert(table).values(client=key, window_start=now, attempts=1)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.client],
            set_={
                "attempts": case((expired, 1), else_=table.c.attempts + 1),
                "window_start": case((expired, now), else_=table.c.window_start),
            },
            # The row is locked (PostgreSQL) or the database is (SQLite) while this is decided.
            where=or_(expired, table.c.attempts < limit),
        )
        return conn.execute(statement.returning(table.c.attempts)).first() is not None

    def _forget_expired(self, conn: Connection, now: float) -> None:
        stale = select(login_attempts.c.client).where(login_attempts.c.window_start <= now - self._window)
        if conn.dialect.name == "postgresql":
            # Rows another attempt holds are left for later: waiting on them could close a lock cycle.
            stale = stale.with_for_update(skip_locked=True)
        conn.execute(delete(login_attempts).where(login_attempts.c.client.in_(stale.scalar_subquery())))

    def succeeded(self, client: str, username: str) -> None:
        """A right password: that address and that user start afresh."""
        with self._engine.begin() as conn:
            conn.execute(
                delete(login_attempts).where(login_attempts.c.client.in_(self._keys(client, username)))
            )
