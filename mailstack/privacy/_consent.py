"""Consent records: double opt-in, with the time and address of the request and of the confirmation.

A record belongs to the API key that requested it: each key has its own lists, reads and withdraws only
its own records, and has its own confirmation quota per address. A record names its subject by blind
index only; the address and both IP addresses are sealed by the
vault under the subject's data key, so erasing the subject crypto-shreds them with the rest. Every change
is an audit entry. The confirmation link carries a signed token naming the record and the request's time:
a new request for the same list makes older links useless, and links expire.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from mailstack.storage import Vault, normalize_address, sealed_purpose
from mailstack.storage.schema import consents
from mailstack.tokens import InvalidToken, TokenSigner

from ._audit import record_audit

__all__ = [
    "CONFIRM_TTL_SECONDS",
    "CONSENT_STATUSES",
    "ConsentError",
    "ConsentRecord",
    "ConsentThrottledError",
    "RequestOutcome",
    "all_consents",
    "check_consent_link",
    "confirm_consent",
    "consent_token",
    "list_consents",
    "request_consent",
    "withdraw_consent",
]

CONFIRM_TTL_SECONDS = 72 * 3600  # a confirmation link works for three days
CONSENT_STATUSES = ("pending", "confirmed", "withdrawn")
# A repeated request within this time sends no second mail: the API must not become a way to flood a
# mailbox with confirmation requests.
RESEND_AFTER_SECONDS = 3600.0
MAX_LIST_NAME = 200
MAX_PENDING_PER_HOUR = 3  # confirmation mails from one API key to one address in an hour, whatever the lists
_TOKEN_PURPOSE = "consent-confirm"  # noqa: S105 - a token purpose, not a secret
# Vault purposes: each sealed column's own name (bound into its blobs).
_ADDRESS = sealed_purpose(consents.c.address)
_REQUESTED_IP = sealed_purpose(consents.c.requested_ip)
_CONFIRMED_IP = sealed_purpose(consents.c.confirmed_ip)


class ConsentError(ValueError):
    """A request that cannot be honoured; the message says why (no state was changed)."""


class ConsentThrottledError(ConsentError):
    """Too many confirmation mails to one address lately."""


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One subject's consent to one list, opened (address and IPs in clear) for its owner."""

    id: int
    address: str | None  # None once the subject was erased (its data key is gone)
    list_name: str
    status: str
    requested_at: float
    requested_ip: str | None
    confirmed_at: float | None
    confirmed_ip: str | None
    withdrawn_at: float | None

    def as_dict(self) -> dict[str, Any]:
        """The record as plain data (for exports and the API)."""
        return {
            "id": self.id,
            "address": self.address,
            "list": self.list_name,
            "status": self.status,
            "requested_at": self.requested_at,
            "requested_ip": self.requested_ip,
            "confirmed_at": self.confirmed_at,
            "confirmed_ip": self.confirmed_ip,
            "withdrawn_at": self.withdrawn_at,
        }


def _check_list(list_name: object) -> str:
    if not isinstance(list_name, str) or not 0 < len(list_name.strip()) <= MAX_LIST_NAME:
        raise ConsentError(f"List must be a name of 1-{MAX_LIST_NAME} characters, e.g. newsletter")
    name = list_name.strip()
    if not name.isprintable():
        raise ConsentError("List must be printable text")
    return name


# Every personal value goes through these two: nothing reaches the table unsealed.
def _seal(vault: Vault, conn: Connection, text: str, purpose: str, subject: str) -> bytes:
    return vault.seal(conn, text.encode("utf-8"), purpose=purpose, subject=subject)


def _open(vault: Vault, conn: Connection, blob: bytes | None, purpose: str) -> str | None:
    opened = vault.open_optional(conn, blob, purpose=purpose)
    return None if opened is None else opened.decode("utf-8")


def consent_token(signer: TokenSigner, consent_id: int, requested_at: float) -> str:
    """The confirmation token for the request of ``consent_id`` made at ``requested_at``."""
    return signer.sign(_TOKEN_PURPOSE, f"{consent_id}:{int(requested_at)}")


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """What :func:`request_consent` did: the record, and whether a confirmation mail is due."""

    record: ConsentRecord
    send_confirmation: bool
    token: str


def request_consent(
    conn: Connection,
    vault: Vault,
    signer: TokenSigner,
    address: str,
    list_name: object,
    *,
    actor: str,
    api_key_id: int,
    ip: str,
    now: float | None = None,
) -> RequestOutcome:
    """Record a pending consent of ``address`` to the list ``list_name`` of ``api_key_id`` (or find the
    existing one).

    A confirmed consent stays confirmed and gets no mail; a withdrawn one starts over as pending; a
    pending one gets a new link unless one was sent within the last hour.
    """
    now = time.time() if now is None else now
    name = _check_list(list_name)
    subject = vault.index(address)
    owned = (consents.c.api_key_id == api_key_id, consents.c.subject == subject)
    row = conn.execute(select(consents).where(*owned, consents.c.list_name == name)).first()
    if row is not None and (
        row.status == "confirmed"
        or (row.status == "pending" and now - row.requested_at < RESEND_AFTER_SECONDS)
    ):
        record = _record(conn, vault, row)
        return RequestOutcome(record, False, consent_token(signer, row.id, row.requested_at))
    recent = conn.execute(
        select(func.count()).where(
            *owned,
            consents.c.status == "pending",
            consents.c.requested_at > now - RESEND_AFTER_SECONDS,
        )
    ).scalar_one()
    if recent >= MAX_PENDING_PER_HOUR:
        # Many lists, one mailbox: still no way to flood it with confirmation requests. Counted per key,
        # so one key cannot use up another's quota.
        raise ConsentThrottledError("Too many confirmation requests for this address; try again in an hour.")
    values = {
        "address": _seal(vault, conn, normalize_address(address), _ADDRESS, subject),
        "status": "pending",
        "api_key_id": api_key_id,
        "requested_at": now,
        "requested_ip": _seal(vault, conn, ip, _REQUESTED_IP, subject) if ip else None,
        "confirmed_at": None,
        "confirmed_ip": None,
        "withdrawn_at": None,
    }
    if row is None:
        consent_id = int(
            conn.execute(
                insert(consents).values(subject=subject, list_name=name, **values).returning(consents.c.id)
            ).scalar_one()
        )
    else:
        consent_id = row.id
        conn.execute(update(consents).where(consents.c.id == consent_id).values(**values))
    record_audit(conn, actor=actor, action="consent-request", subject=subject, detail={"list": name}, now=now)
    found = conn.execute(select(consents).where(consents.c.id == consent_id)).one()
    return RequestOutcome(_record(conn, vault, found), True, consent_token(signer, consent_id, now))


def _linked_row(conn: Connection, signer: TokenSigner, token: str, now: float) -> Any:
    try:
        payload = signer.verify(_TOKEN_PURPOSE, token)
    except InvalidToken:
        raise ConsentError(
            "This confirmation link is not valid: it was altered or copied incompletely."
        ) from None
    consent_text, _, requested_text = payload.partition(":")
    if not consent_text.isdigit() or not requested_text.isdigit():
        raise ConsentError("This confirmation link is not valid.")
    if now - int(requested_text) > CONFIRM_TTL_SECONDS:
        raise ConsentError("This confirmation link has expired; please subscribe again.")
    row = conn.execute(select(consents).where(consents.c.id == int(consent_text))).first()
    if row is None or int(row.requested_at) != int(requested_text):
        raise ConsentError("This confirmation link is no longer valid; a newer one was sent.")
    if row.status == "withdrawn":
        raise ConsentError("This subscription was withdrawn; please subscribe again.")
    return row


def check_consent_link(
    conn: Connection, vault: Vault, signer: TokenSigner, token: str, *, now: float | None = None
) -> ConsentRecord:
    """The record a link names, changing nothing; raises :class:`ConsentError` as :func:`confirm_consent`."""
    return _record(conn, vault, _linked_row(conn, signer, token, time.time() if now is None else now))


def confirm_consent(
    conn: Connection, vault: Vault, signer: TokenSigner, token: str, *, ip: str, now: float | None = None
) -> ConsentRecord:
    """Confirm the consent a link's token names. Raises :class:`ConsentError` (and changes nothing)
    for a forged, altered, expired or superseded link, or a withdrawn consent."""
    now = time.time() if now is None else now
    row = _linked_row(conn, signer, token, now)
    if row.status == "pending":
        conn.execute(
            update(consents)
            .where(consents.c.id == row.id)
            .values(
                status="confirmed",
                confirmed_at=now,
                confirmed_ip=_seal(vault, conn, ip, _CONFIRMED_IP, row.subject) if ip else None,
            )
        )
        record_audit(
            conn,
            actor="subject:confirmation-link",
            action="consent-confirm",
            subject=row.subject,
            detail={"list": row.list_name},
            now=now,
        )
    return _record(conn, vault, conn.execute(select(consents).where(consents.c.id == row.id)).one())


def withdraw_consent(
    conn: Connection,
    vault: Vault,
    address: str,
    list_name: str | None,
    *,
    api_key_id: int,
    actor: str,
    now: float | None = None,
) -> list[ConsentRecord]:
    """Withdraw ``address``'s consent to ``api_key_id``'s list ``list_name`` (every list of that key when
    None); returns the records withdrawn now (empty when there was nothing to withdraw)."""
    now = time.time() if now is None else now
    subject = vault.index(address)
    query = select(consents).where(
        consents.c.api_key_id == api_key_id, consents.c.subject == subject, consents.c.status != "withdrawn"
    )
    if list_name is not None:
        query = query.where(consents.c.list_name == _check_list(list_name))
    rows = conn.execute(query.order_by(consents.c.id)).all()
    withdrawn = []
    for row in rows:
        conn.execute(
            update(consents).where(consents.c.id == row.id).values(status="withdrawn", withdrawn_at=now)
        )
        record_audit(
            conn,
            actor=actor,
            action="consent-withdraw",
            subject=subject,
            detail={"list": row.list_name, "was": row.status},
            now=now,
        )
        withdrawn.append(
            _record(conn, vault, conn.execute(select(consents).where(consents.c.id == row.id)).one())
        )
    return withdrawn


def list_consents(conn: Connection, vault: Vault, address: str, *, api_key_id: int) -> list[ConsentRecord]:
    """``api_key_id``'s consent records of ``address``, oldest first."""
    rows = conn.execute(
        select(consents)
        .where(consents.c.api_key_id == api_key_id, consents.c.subject == vault.index(address))
        .order_by(consents.c.id)
    ).all()
    return [_record(conn, vault, row) for row in rows]


def all_consents(conn: Connection, vault: Vault, address: str) -> list[ConsentRecord]:
    """Every consent record of ``address``, whatever key holds it, oldest first: the data subject's
    export (admin scope) sees them all."""
    rows = conn.execute(
        select(consents).where(consents.c.subject == vault.index(address)).order_by(consents.c.id)
    ).all()
    return [_record(conn, vault, row) for row in rows]


def _record(conn: Connection, vault: Vault, row: Any) -> ConsentRecord:
    return ConsentRecord(
        id=row.id,
        address=_open(vault, conn, row.address, _ADDRESS),
        list_name=row.list_name,
        status=row.status,
        requested_at=row.requested_at,
        requested_ip=_open(vault, conn, row.requested_ip, _REQUESTED_IP),
        confirmed_at=row.confirmed_at,
        confirmed_ip=_open(vault, conn, row.confirmed_ip, _CONFIRMED_IP),
        withdrawn_at=row.withdrawn_at,
    )
