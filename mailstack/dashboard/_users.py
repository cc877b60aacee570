"""Dashboard users and their sessions.

Passwords are chosen by people, so they get argon2id (memory-hard, salted) rather than the fast hash API
secrets get. A session is a signed cookie naming the user, its expiry and a fingerprint of the password
hash: changing the password ends every session, and nothing is kept server-side.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, insert, select, update

from mailstack.storage.schema import dashboard_users
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
# Verified against when the user does not exist, so that a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash("mailstack-no-such-user")
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


def authenticate(conn: Connection, username: str, password: str) -> UserRecord | None:
    """The user, when the password is right; None otherwise (in about the same time either way)."""
    if len(password) > MAX_PASSWORD or len(username) > 100:
        return None
    user = _user(conn, username=username.strip())
    try:
        _HASHER.verify(user.password_hash if user is not None else _DUMMY_HASH, password)
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
    """At most ``limit`` failed logins per client address in ``window`` seconds."""

    def __init__(self, limit: int = 10, window: float = 900.0) -> None:
        self._limit = limit
        self._window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(client, deque())
        while failures and failures[0] < now - self._window:
            failures.popleft()
        return failures

    def allowed(self, client: str) -> bool:
        with self._lock:
            return len(self._recent(client, time.monotonic())) < self._limit

    def failed(self, client: str) -> None:
        with self._lock:
            if len(self._failures) > 100_000:  # bounded, whatever an attacker sends
                self._failures.clear()
            self._recent(client, time.monotonic()).append(time.monotonic())

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
