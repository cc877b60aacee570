"""Accepting a Send API request: validate, check senders, store and queue atomically, answer as Mailjet."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError

from mailstack.accept import Acceptor
from mailstack.model import MessageSpec, RecipientKind
from mailstack.runtime import Runtime
from mailstack.storage import (
    ApiKeyRecord,
    get_idempotent_response,
    reading,
    save_idempotent_response,
    urgent_writes,
)

from ._sendv31 import (
    MessageErrors,
    ParsedMessage,
    RecipientResult,
    RequestError,
    SendError,
    error_message_json,
    overall_status,
    parse_send_request,
    sandbox_message_json,
    send_response_json,
    success_message_json,
)

MAX_IDEMPOTENCY_KEY = 255
# Mailjet's error for a From address the account may not send as (403 per message).
SENDER_NOT_ALLOWED = "send-0008"


def _global_error(status: int, code: str, message: str) -> RequestError:
    return RequestError(
        status,
        {
            "ErrorIdentifier": str(uuid.uuid4()),
            "ErrorCode": code,
            "StatusCode": status,
            "ErrorMessage": message,
        },
    )


def malformed_json_error() -> RequestError:
    """The answer to a body that is not JSON (Mailjet's mj-0002)."""
    return _global_error(400, "mj-0002", "Malformed JSON, please review the syntax and properties types.")


def check_senders(results: list[ParsedMessage | MessageErrors], acceptor: Acceptor) -> None:
    # Mail is only sent for domains whose DKIM keys we hold: never unsigned mail, never a stranger's domain.
    for index, result in enumerate(results):
        if isinstance(result, ParsedMessage) and not acceptor.may_send_from(result.spec.sender.domain):
            results[index] = MessageErrors(
                (
                    SendError(
                        error_code=SENDER_NOT_ALLOWED,
                        status_code=403,
                        error_message=(
                            f'"{result.spec.sender.email}" is not an authorized sender email address for '
                            f"your account: this server holds no DKIM key for {result.spec.sender.domain} "
                            "(add one with `mailstack dkim rotate --domain`)."
                        ),
                        error_related_to=("From.Email",),
                    ),
                ),
                result.spec.custom_id,
            )


def _entry(spec: MessageSpec, recipients: list[Any], base_url: str) -> dict[str, Any]:
    grouped: dict[RecipientKind, list[RecipientResult]] = {kind: [] for kind in RecipientKind}
    for accepted in recipients:
        grouped[accepted.kind].append(
            RecipientResult(accepted.email, accepted.message_uuid, accepted.message_id)
        )
    return success_message_json(
        spec.custom_id,
        grouped[RecipientKind.TO],
        grouped[RecipientKind.CC],
        grouped[RecipientKind.BCC],
        api_base_url=base_url,
    )


def accept_send_request(
    runtime: Runtime,
    api_key: ApiKeyRecord,
    body: object,
    idempotency_key: str | None,
    request_hash: str,
) -> tuple[int, dict[str, Any], bool]:
    """Validate and accept a request; returns ``(status, body, replayed)``. Raises :class:`RequestError`.

    The valid messages of a batch are stored, queued and answered in one transaction together with the
    idempotency record, so a retried request never sends twice and a failure sends nothing.
    """
    if idempotency_key is not None:
        if not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY or not idempotency_key.isprintable():
            raise _global_error(
                400, "mj-0005", f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable characters."
            )
        replay = _replay(runtime, api_key, idempotency_key, request_hash)
        if replay is not None:
            return replay
    settings = runtime.settings
    request = parse_send_request(
        body, max_recipients=settings.mail.max_recipients, max_message_bytes=settings.mail.max_message_bytes
    )
    results = list(request.results)
    check_senders(results, runtime.acceptor)
    status = overall_status(results, advance_error_handling=request.advance_error_handling)
    base_url = settings.public_url
    valid = [r.spec for r in results if isinstance(r, ParsedMessage)]
    if request.sandbox:
        # SandboxMode validates only: nothing is stored or sent, as with Mailjet.
        entries = [
            sandbox_message_json(r.spec, api_base_url=base_url)
            if isinstance(r, ParsedMessage)
            else error_message_json(r)
            for r in results
        ]
        return status, send_response_json(entries), False
    now = time.time()
    try:
        # A client waits on this transaction: it goes before the background writers (delivery).
        with urgent_writes(), runtime.engine.begin() as conn:
            accepted = runtime.acceptor.accept(conn, api_key.id, valid, now=now)
            entries = []
            position = 0
            for result in results:
                if isinstance(result, ParsedMessage):
                    entries.append(_entry(result.spec, accepted[position], base_url))
                    position += 1
                else:
                    entries.append(error_message_json(result))
            payload = send_response_json(entries)
            if idempotency_key is not None:
                save_idempotent_response(
                    conn,
                    api_key.id,
                    idempotency_key,
                    request_hash,
                    status,
                    payload,
                    now=now,
                    vault=runtime.vault,
                )
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key committed first: answer as it did.
        if idempotency_key is None:
            raise
        replay = _replay(runtime, api_key, idempotency_key, request_hash)
        if replay is None:
            raise
        return replay
    runtime.acceptor.notify(accepted)
    if len(valid) < len(results):
        runtime.metrics.rejected.inc(len(results) - len(valid))
    return status, payload, False


def _replay(
    runtime: Runtime, api_key: ApiKeyRecord, idempotency_key: str, request_hash: str
) -> tuple[int, dict[str, Any], bool] | None:
    with reading(runtime.engine) as conn:
        stored = get_idempotent_response(conn, api_key.id, idempotency_key, vault=runtime.vault)
    if stored is None:
        return None
    if stored.request_hash != request_hash:
        raise _global_error(
            422, "mj-0005", "This Idempotency-Key was already used with a different request body."
        )
    return stored.status_code, stored.body, True
