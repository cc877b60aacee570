"""The bounce intake: an SMTP listener for mail to the bounce domain.

Postfix routes the bounce domain here (a transport map entry ``bounces.example.com smtp:[127.0.0.1]:2526``).
Only three kinds of recipient are accepted, everything else gets ``550`` (the intake is never a relay):

* a VERP return path ``b-<id36>-<mac>@<bounce domain>`` that :func:`~mailstack.compose.parse_verp`
  verifies: bounces and complaints about that message;
* ``unsubscribe+<token>@<bounce domain>``, the ``mailto:`` of List-Unsubscribe: the recipient of the
  token's message is suppressed for that message's sender domain;
* ``fbl@<bounce domain>``, the address to register with mailbox providers' feedback loops: complaints
  there are attributed through the VERP return path of the reported message (checked the same way), so a
  forged report can only ever name mail we really sent.

Each message is classified (:func:`mailstack.bounce_classify.classify`) and recorded in one transaction before
``250`` is answered; a database failure answers ``451`` and Postfix retries, and events carry a uid
made from the message itself, so a retried delivery is recorded once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller

from mailstack.bounce_classify import BounceResult, classify
from mailstack.compose import ComposeSettings, parse_verp
from mailstack.observability import get_logger
from mailstack.storage import Store
from mailstack.tokens import InvalidToken

from ._classify import pick_result
from ._recorder import Bounce, FeedbackRecorder, MessageFacts, event_uid

__all__ = ["BounceIntake", "IntakeServer", "Route"]

log = get_logger("mailstack.feedback.intake")

FBL_LOCAL_PART = "fbl"
UNSUBSCRIBE_PREFIX = "unsubscribe+"
MAX_RECIPIENTS = 100
_UNSUBSCRIBE_PURPOSE = "unsubscribe"  # the composer's List-Unsubscribe token purpose
# Mailjet names a complaint's source after the feedback loop programme that reported it.
_FBL_PROGRAMMES = (
    (("outlook", "hotmail", "live.com", "msn.com", "microsoft"), "JMRPP"),
    (("yahoo", "aol"), "Yahoo CFL"),
    (("comcast",), "Comcast FBL"),
)


@dataclass(frozen=True, slots=True)
class Route:
    """What a recipient address of the intake stands for."""

    kind: str  # "verp", "unsubscribe" or "fbl"
    message_id: int | None = None


def _programme(*hints: str) -> str:
    text = " ".join(hints).lower()
    for needles, name in _FBL_PROGRAMMES:
        if any(needle in text for needle in needles):
            return name
    return "ARF"


class BounceIntake:
    """Decides which recipients to accept and records what each received message says."""

    def __init__(self, store: Store, compose_settings: ComposeSettings, recorder: FeedbackRecorder) -> None:
        self._store = store
        self._compose = compose_settings
        self._recorder = recorder

    def route(self, address: str) -> Route | None:
        """The route of an accepted recipient, None for anything else."""
        address = address.strip().strip("<>")
        local, at, domain = address.rpartition("@")
        if not at or domain.lower().rstrip(".") != self._compose.bounce_domain:
            return None
        message_id = parse_verp(address, self._compose)
        if message_id is not None:
            return Route("verp", message_id)
        if local.lower().startswith(UNSUBSCRIBE_PREFIX):
            token = local[len(UNSUBSCRIBE_PREFIX) :]
            try:
                payload = self._compose.tokens.verify(_UNSUBSCRIBE_PURPOSE, token)
            except InvalidToken:
                return None
            if payload.isdigit() and len(payload) <= 19:
                return Route("unsubscribe", int(payload))
            return None
        if local.lower() == FBL_LOCAL_PART:
            return Route("fbl")
        return None

    def receive(self, mail_from: str, recipients: list[str], raw: bytes) -> int:
        """Record one received message for its accepted recipients; returns how many events it made."""
        routes = [route for rcpt in recipients if (route := self.route(rcpt)) is not None]
        results: list[BounceResult] | None = None
        if any(route.kind != "unsubscribe" for route in routes):
            # Classifying is CPU work: done once, before the transaction.
            verp = next((r for r in recipients if parse_verp(r, self._compose) is not None), None)
            results = classify(raw, envelope_recipient=verp)
        now = time.time()
        recorded = 0
        with self._store.begin() as conn:
            ids = {route.message_id for route in routes if route.message_id is not None}
            if results is not None:
                ids.update(i for r in results if (i := parse_verp(r.verp_address, self._compose)) is not None)
            facts = self._recorder.load(conn, ids)
            for route in routes:
                if route.kind == "unsubscribe":
                    message = facts.get(route.message_id or 0)
                    if message is not None:
                        # One unsubscribe per message, by mail or on the web (the page uses the same uid).
                        uid = f"unsub:{message.id}"
                        recorded += self._recorder.unsubscribe(
                            conn, message, method="mailto", uid=uid, now=now
                        )
                    continue
                assert results is not None
                for message, result in self._attribute(route, results, facts):
                    recorded += self._record(conn, message, result, mail_from, raw, now)
        return recorded

    def _attribute(
        self, route: Route, results: list[BounceResult], facts: dict[int, MessageFacts]
    ) -> list[tuple[MessageFacts, BounceResult]]:
        if route.kind == "verp":
            # The envelope recipient is authoritative: it is our signed return path for one message.
            message = facts.get(route.message_id or 0)
            if message is None:
                return []
            result = pick_result(results, message.recipient)
            return [] if result is None else [(message, result)]
        found = []
        for result in results:  # fbl@: each report names its message through the returned VERP address
            message_id = parse_verp(result.verp_address, self._compose)
            message = facts.get(message_id) if message_id is not None else None
            if message is not None and result.category != "not_bounce":
                found.append((message, result))
        return found

    def _record(
        self, conn: Any, message: MessageFacts, result: BounceResult, mail_from: str, raw: bytes, now: float
    ) -> int:
        uid = event_uid("intake", message.id, result.category, raw)
        extra = {"source": "intake", "remote_mta": result.remote_mta}
        if result.category == "complaint":
            source = _programme(mail_from, result.remote_mta)
            extra["feedback_type"] = result.feedback_type or "abuse"
            return int(self._recorder.complaint(conn, message, source=source, uid=uid, now=now, extra=extra))
        if result.action.lower().startswith("delayed"):
            # A delay warning is not a bounce: the reporting server is still trying.
            reply = result.diagnostic or result.status
            return int(self._recorder.deferred(conn, message, reply=reply, uid=uid, now=now, extra=extra))
        bounce = Bounce(
            hard=result.category == "hard",
            reason=result.reason,
            source="intake",
            status=result.status,
            reply_code=result.reply_code,
            diagnostic=result.diagnostic,
            extra=extra,
        )
        return int(self._recorder.bounce(conn, message, bounce, uid=uid, now=now))


class _Handler:
    """aiosmtpd hooks: refuse foreign recipients at RCPT, record at DATA (off the event loop)."""

    def __init__(self, intake: BounceIntake) -> None:
        self._intake = intake

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        if self._intake.route(address) is None:
            return "550 5.1.1 Recipient address rejected: not a feedback address of this server"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content or b""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                None, self._intake.receive, envelope.mail_from or "", list(envelope.rcpt_tos), bytes(raw)
            )
        except Exception:
            log.exception("cannot record a received bounce; the sender will retry")
            return "451 4.3.0 Temporary failure, please retry"
        return "250 2.0.0 OK: feedback recorded"


class IntakeServer:
    """The listener: an aiosmtpd controller on its own thread and event loop."""

    name = "bounce-intake"

    def __init__(self, intake: BounceIntake, host: str, port: int, *, max_bytes: int, hostname: str) -> None:
        self._controller = Controller(
            _Handler(intake),
            hostname=host,
            port=port,
            server_hostname=hostname,
            ident="mailstack bounce intake",
            data_size_limit=max_bytes,
            decode_data=False,
            enable_SMTPUTF8=True,
            timeout=60,
        )
        self.address = f"{host}:{port}"

    def start(self) -> None:
        self._controller.start()
        log.info("bounce intake listening", address=self.address)

    def stop(self) -> None:
        # Open sessions are cut: a message whose 250 is lost this way is sent again by Postfix and
        # recorded once (its events' uids).
        self._controller.stop(no_assert=True)
