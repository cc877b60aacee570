"""Event API webhooks: Mailjet's payloads, grouped or not, HMAC-signed, retried for 24 hours, SSRF-safe.

:class:`Dispatcher` fans events out to the subscribed endpoints and delivers them; :func:`check_destination`
refuses URLs that resolve to private, loopback, link-local or metadata addresses (unless allowed);
:func:`sign` / :func:`verify` are the ``X-Mailstack-Signature`` header; ``mailstack.api._webhooks`` holds
the ``/v3/REST/eventcallbackurl`` routes.
"""

from __future__ import annotations

from mailstack.webhooks._client import PostResult, post
from mailstack.webhooks._dispatch import CURSOR, Dispatcher, retry_delay
from mailstack.webhooks._payload import EVENT_TYPES, MessageInfo, mailjet_event
from mailstack.webhooks._signing import SIGNATURE_HEADER, sign, verify
from mailstack.webhooks._ssrf import (
    Destination,
    DestinationRefusedError,
    check_destination,
    check_url,
    resolve_host,
)
from mailstack.webhooks._store import (
    DeliveryRecord,
    EndpointRecord,
    create_endpoint,
    delete_endpoint,
    get_endpoint,
    list_deliveries,
    list_endpoints,
)

__all__ = [
    "CURSOR",
    "EVENT_TYPES",
    "SIGNATURE_HEADER",
    "DeliveryRecord",
    "Destination",
    "DestinationRefusedError",
    "Dispatcher",
    "EndpointRecord",
    "MessageInfo",
    "PostResult",
    "check_destination",
    "check_url",
    "create_endpoint",
    "delete_endpoint",
    "get_endpoint",
    "list_deliveries",
    "list_endpoints",
    "mailjet_event",
    "post",
    "resolve_host",
    "retry_delay",
    "sign",
    "verify",
]
