"""Turning events into webhook deliveries, and delivering them with retries.

Fan-out reads the events table from the ``webhooks`` cursor and, in the same transaction, writes one
delivery per subscribed endpoint: one event per request (Mailjet's Version 1), or every event of the
batch in one JSON array (Version 2, "grouped"). Sending claims due deliveries (``SKIP LOCKED`` on
PostgreSQL, so a fleet shares the work), POSTs them signed, and records each attempt. A failed attempt
is retried with exponential backoff until the delivery is ``give_up_after_seconds`` old (24 hours by
default), then marked failed; the log keeps every delivery's last status and error.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, text, update

from mailstack.config import WebhookSettings
from mailstack.keyring import Keyring
from mailstack.observability import get_logger
from mailstack.storage import (
    PURPOSE_RECIPIENT,
    PURPOSE_SPEC,
    PURPOSE_WEBHOOK_PAYLOAD,
    EventTail,
    OutageNotice,
    Vault,
    open_details,
    open_json,
    reading,
    seal_json,
)
from mailstack.storage.schema import contents, events, messages, webhook_deliveries, webhook_endpoints

from ._client import PostResult, post
from ._payload import MessageInfo, mailjet_event
from ._signing import SIGNATURE_HEADER, sign
from ._ssrf import DestinationRefusedError, Resolver, check_destination, resolve_host
from ._store import endpoint_secret

# Queued payloads name their recipients: sealed under the day's shared key (a batch mixes several).

__all__ = ["CURSOR", "Dispatcher", "retry_delay"]

log = get_logger("mailstack.webhooks")

CURSOR = "webhooks"
CLAIM_BATCH = 20
SENDERS = 4


def retry_delay(attempts: int, settings: WebhookSettings, *, jitter: float | None = None) -> float:
    """Seconds before the next try after ``attempts`` failed ones: exponential, capped, 10% jitter."""
    delay: float = min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** (attempts - 1))
    spread = random.random() if jitter is None else jitter  # noqa: S311 - jitter, not security
    return delay * (1 + 0.1 * spread)


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    endpoint_id: int
    payload: Any
    attempts: int
    created_at: float


class Dispatcher:
    """Fan-out and delivery of webhooks; :meth:`run_once` does one round of each."""

    def __init__(
        self,
        engine: Engine,
        keyring: Keyring,
        settings: WebhookSettings,
        *,
        sent_is_delivery: bool = False,
        resolve: Resolver = resolve_host,
        clock: Callable[[], float] = time.time,
        post_fn: Callable[..., PostResult] = post,
        gap_grace_seconds: float | None = None,
        vault: Vault,
    ) -> None:
        """``vault`` opens the sealed recipients and seals the queued payloads (they name them)."""
        self._engine = engine
        self._keyring = keyring
        self._vault = vault
        self._settings = settings
        self._sent_is_delivery = sent_is_delivery
        self._resolve = resolve
        self._clock = clock
        self._post = post_fn
        self._tail = (
            EventTail(CURSOR, start_at_end=True)
            if gap_grace_seconds is None
            else EventTail(CURSOR, start_at_end=True, gap_grace_seconds=gap_grace_seconds)
        )

    # --- loop ------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        outage = OutageNotice(log, "webhook round")
        with ThreadPoolExecutor(SENDERS, thread_name_prefix="webhook-send") as pool:
            while not stop.is_set():
                try:
                    worked = self.fan_out() + self.send_due(pool)
                    outage.succeeded()
                except Exception as exc:  # the thread must not die; what failed is retried next round
                    outage.failed(exc)
                    worked = 0
                if not worked:
                    stop.wait(self._settings.poll_seconds)

    def run_once(self) -> tuple[int, int]:
        """One fan-out batch and one round of sending (in this thread): ``(events, deliveries)``."""
        return self.fan_out(), self.send_due(None)

    def start(self) -> None:
        """Make sure the cursor exists, so that only events from now on are reported."""
        with self._engine.begin() as conn:
            self._tail.read(conn, 0)

    # --- fan-out ---------------------------------------------------------------------------------------

    def fan_out(self, limit: int = 1000) -> int:
        """Turn the next events into deliveries; returns how many events were read."""
        with self._engine.begin() as conn:
            rows = self._tail.read(
                conn,
                limit,
                [events.c.id, events.c.message_id, events.c.type, events.c.created_at, events.c.detail],
            )
            if not rows:
                return 0
            owners = _api_keys(conn, {row.message_id for row in rows})
            subscribed = _endpoints(conn, set(owners.values()))
            # Recipients and contents are opened only for the messages someone subscribed to hear of.
            with_endpoints = {api_key_id for api_key_id, _event in subscribed}
            infos = _message_infos(
                conn, self._vault, [m for m, api_key_id in owners.items() if api_key_id in with_endpoints]
            )
            grouped: dict[int, list[dict[str, Any]]] = {}
            versions: dict[int, int] = {}
            wanted = [row for row in rows if row.message_id in infos]
            details = dict(
                zip(
                    (row.id for row in wanted),
                    open_details(conn, self._vault, [row.detail for row in wanted]),
                    strict=True,
                )
            )
            for row in wanted:
                info = infos[row.message_id]
                detail = details[row.id]
                payload = mailjet_event(
                    row.type, row.created_at, detail, info, sent_is_delivery=self._sent_is_delivery
                )
                if payload is None:
                    continue
                for endpoint_id, version in subscribed.get((info.api_key_id, payload["event"]), ()):
                    grouped.setdefault(endpoint_id, []).append(payload)
                    versions[endpoint_id] = version
            now = self._clock()
            deliveries: list[dict[str, Any]] = []
            for endpoint_id, payloads in grouped.items():
                if versions[endpoint_id] == 2:
                    size = self._settings.max_group
                    bodies: list[Any] = [payloads[i : i + size] for i in range(0, len(payloads), size)]
                else:
                    bodies = payloads
                for body in bodies:
                    count = len(body) if isinstance(body, list) else 1
                    deliveries.append(
                        {
                            "endpoint_id": endpoint_id,
                            "payload": seal_json(
                                conn, self._vault, body, purpose=PURPOSE_WEBHOOK_PAYLOAD, subject=None
                            ),
                            "event_count": count,
                            "state": "pending",
                            "created_at": now,
                            "next_attempt_at": now,
                        }
                    )
            if deliveries:
                conn.execute(insert(webhook_deliveries), deliveries)
            self._tail.advance(conn, rows[-1].id)
            return len(rows)

    # --- delivery --------------------------------------------------------------------------------------

    def send_due(self, pool: ThreadPoolExecutor | None) -> int:
        """Claim and send the deliveries that are due; returns how many were attempted."""
        claimed = self._claim()
        if not claimed:
            return 0
        if pool is None:
            for item in claimed:
                self._deliver(item)
        else:
            list(pool.map(self._deliver, claimed))
        return len(claimed)

    def _claim(self) -> list[_Claimed]:
        now = self._clock()
        with self._engine.begin() as conn:
            query = (
                select(
                    webhook_deliveries.c.id,
                    webhook_deliveries.c.endpoint_id,
                    webhook_deliveries.c.payload,
                    webhook_deliveries.c.attempts,
                    webhook_deliveries.c.created_at,
                )
                .where(webhook_deliveries.c.state == "pending", webhook_deliveries.c.next_attempt_at <= now)
                .order_by(webhook_deliveries.c.next_attempt_at, webhook_deliveries.c.id)
                .limit(CLAIM_BATCH)
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = conn.execute(query).all()
            if rows:
                # A lease: if this process dies mid-request, the delivery is due again after it.
                lease = now + self._settings.timeout_seconds * 3 + 30
                conn.execute(
                    update(webhook_deliveries)
                    .where(webhook_deliveries.c.id.in_([r.id for r in rows]))
                    .values(next_attempt_at=lease)
                )
            payloads = [
                open_json(conn, self._vault, r.payload, purpose=PURPOSE_WEBHOOK_PAYLOAD) for r in rows
            ]
        return [
            _Claimed(r.id, r.endpoint_id, payload, r.attempts, r.created_at)
            for r, payload in zip(rows, payloads, strict=True)
        ]

    def _deliver(self, item: _Claimed) -> None:
        with reading(self._engine) as conn:
            endpoint = conn.execute(
                select(webhook_endpoints.c.url, webhook_endpoints.c.secret, webhook_endpoints.c.status).where(
                    webhook_endpoints.c.id == item.endpoint_id
                )
            ).first()
        if endpoint is None:
            return  # deleted meanwhile; its deliveries went with it
        body = json.dumps(item.payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        try:
            # Checked again at every attempt, and the connection goes to the address checked here.
            destination = check_destination(endpoint.url, self._settings.allow_networks, self._resolve)
        except DestinationRefusedError as exc:
            result = PostResult(0, f"refused: {exc}")
        else:
            secret = endpoint_secret(self._keyring, endpoint.secret)
            headers = {SIGNATURE_HEADER: sign(secret, body, int(self._clock()))}
            result = self._post(destination, body, headers, timeout=self._settings.timeout_seconds)
        self._record(item, result)

    def _record(self, item: _Claimed, result: PostResult) -> None:
        now = self._clock()
        attempts = item.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_attempt_at": now,
            "last_status": result.status or None,
            "last_error": result.error or None,
        }
        if result.ok:
            values["state"] = "delivered"
        else:
            retry_at = now + retry_delay(attempts, self._settings)
            if retry_at - item.created_at > self._settings.give_up_after_seconds:
                values["state"] = "failed"
                log.warning("webhook delivery abandoned", delivery=item.id, attempts=attempts)
            else:
                values["next_attempt_at"] = retry_at
        with self._engine.begin() as conn:
            conn.execute(
                update(webhook_deliveries).where(webhook_deliveries.c.id == item.id).values(**values)
            )


# PostgreSQL: one statement text whatever the number of messages (an ``IN`` list of more than 50
# parameters is converted again by psycopg for every batch, and the server cannot reuse its plan). One
# primary-key lookup per id (LATERAL, kept a subquery by OFFSET 0) rather than ``id = ANY(...)``, whose
# generic plan, made once while messages may be small, can be a sequential scan (see
# mailstack.storage._vault._PG_KEYS).
_PG_API_KEYS = text(
    """
SELECT m.id, m.api_key_id FROM unnest(CAST(:ids AS BIGINT[])) AS k(id)
CROSS JOIN LATERAL (SELECT id, api_key_id FROM messages WHERE id = k.id OFFSET 0) AS m
"""
)


def _api_keys(conn: Connection, ids: set[int]) -> dict[int, int]:
    wanted = sorted(ids)
    if conn.dialect.name == "postgresql":
        if not wanted:
            return {}
        return {row.id: row.api_key_id for row in conn.execute(_PG_API_KEYS, {"ids": wanted})}
    found: dict[int, int] = {}
    for start in range(0, len(wanted), 500):
        query = select(messages.c.id, messages.c.api_key_id).where(
            messages.c.id.in_(wanted[start : start + 500])
        )
        found.update({row.id: row.api_key_id for row in conn.execute(query)})
    return found


def _message_infos(conn: Connection, vault: Vault, ids: Iterable[int]) -> dict[int, MessageInfo]:
    wanted = sorted(set(ids))
    found: dict[int, MessageInfo] = {}
    for start in range(0, len(wanted), 500):
        query = (
            select(
                messages.c.id,
                messages.c.uuid,
                messages.c.api_key_id,
                messages.c.recipient,
                messages.c.campaign,
                messages.c.custom_id,
                contents.c.spec,
            )
            .join(contents, contents.c.id == messages.c.content_id)
            .where(messages.c.id.in_(wanted[start : start + 500]))
        )
        for row in conn.execute(query):
            email = vault.open_optional(conn, row.recipient, purpose=PURPOSE_RECIPIENT)
            spec = vault.open_optional(conn, row.spec, purpose=PURPOSE_SPEC)
            if email is None or spec is None:
                continue  # erased: nothing left to report about
            found[row.id] = MessageInfo(
                row.id,
                row.uuid,
                row.api_key_id,
                email.decode(),
                row.campaign,
                row.custom_id,
                json.loads(spec).get("EventPayload") or "",
            )
    return found


def _endpoints(conn: Connection, api_key_ids: set[int]) -> dict[tuple[int, str], list[tuple[int, int]]]:
    if not api_key_ids:
        return {}
    rows = conn.execute(
        select(
            webhook_endpoints.c.id,
            webhook_endpoints.c.api_key_id,
            webhook_endpoints.c.event_type,
            webhook_endpoints.c.version,
        ).where(
            webhook_endpoints.c.api_key_id.in_(sorted(api_key_ids)), webhook_endpoints.c.status == "alive"
        )
    )
    found: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for row in rows:
        found.setdefault((row.api_key_id, row.event_type), []).append((row.id, row.version))
    return found
