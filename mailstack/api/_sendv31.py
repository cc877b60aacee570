"""Pure (no I/O) validation of Send API v3.1 requests, compatible with Mailjet's ``POST /v3.1/send``.

Behaviour follows Mailjet's own documentation, ``guides/_send-api.md`` in the public repository
``mailjet/api-documentation`` (sections "Send API v3.1", "Send in bulk", "Sandbox Mode", "Add Email
Headers", "Send API JSON properties" and "Send API errors"), plus the "Set global payload properties"
section of the published guide (https://dev.mailjet.com/email/guides/send-api-v31/):

* request-level ("global") errors are a single object ``{"ErrorIdentifier", "ErrorCode",
  "StatusCode", "ErrorMessage"[, "ErrorRelatedTo"]}`` answered with that status; they are raised here
  as :class:`RequestError`;
* message-level errors are collected, all of them, per message: ``{"Status": "error", "Errors": [...]}``
  where each error carries ``ErrorIdentifier`` (a fresh UUID), ``ErrorCode`` (``mj-00xx`` for
  payload/format problems, ``send-00xx`` for sending rules), ``StatusCode``, ``ErrorMessage`` and
  ``ErrorRelatedTo`` (property paths relative to the message: ``"To"``, ``"From.Email"``,
  ``"To[0].Email"``, ``'Headers["X-Foo"]'``);
* in a batch each message is processed separately: valid messages are sent even when others fail.

Decisions where the documentation is silent (see the module's tests for the exact behaviour):

* property names are matched case-insensitively (Mailjet's documentation itself writes ``HtmlPart``
  and ``variables``; the v3.1 service is written in Go whose JSON decoder matches that way), unknown
  properties are ignored and ``null`` means "absent", as in Go;
* ``TemplateID`` is type-checked, then refused with ``send-0010`` (stored templates are not supported
  by this server yet);
* every value that can reach a header (names, Subject, CustomID, EventPayload, CustomCampaign,
  MonitoringCategory, URLTags, filenames, content types, ContentID, header names and values) is
  refused with ``mj-0005`` if it contains a C0 control character other than TAB, or DEL, NEL,
  U+2028 or U+2029; any string with an unpaired surrogate is refused;
* ``Reply-To`` may be given in ``Headers`` (Mailjet does not forbid it) and becomes the reply-to
  address; ``List-Unsubscribe``/``List-Unsubscribe-Post`` may be set by the caller only on
  non-campaign mail, since campaign mail gets ours;
* user headers also pass the composer's own policy (``mailstack.compose.header_problems``): Content-*,
  ARC-*, repeats of a once-only field in another letter case... are refused here rather than failing
  at delivery;
* a recipient listed twice (To, Cc, Bcc) is counted once, as Mailjet documents, and kept once (first
  occurrence);
* a request whose templates would take more rendering than
  :data:`~mailstack.templates.MAX_RENDER_WORK` (templates' size times their recipients, see
  :func:`~mailstack.templates.render_work`) is refused whole with ``send-0901``. Codes ``send-09xx``
  are mailstack's own, for rules Mailjet does not have.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from email_validator import EmailNotValidError, validate_email

from mailstack.addresses import SendingDomainError, sending_domain
from mailstack.compose import header_problems
from mailstack.model import Address, Attachment, MessageSpec
from mailstack.templates import MAX_RENDER_WORK, PARSE_WEIGHT, render_work

from ._errors import ApiError

__all__ = [
    "MAX_ARRAY_ITEMS",
    "MAX_MESSAGES",
    "MAX_MESSAGE_BYTES",
    "MAX_RECIPIENTS",
    "MessageErrors",
    "ParsedMessage",
    "RecipientResult",
    "RequestError",
    "SendError",
    "SendRequest",
    "error_message_json",
    "overall_status",
    "parse_send_request",
    "sandbox_message_json",
    "send_response_json",
    "success_message_json",
]

# ---------------------------------------------------------------------------------------------------
# Limits and error codes (Mailjet "Send API JSON properties" and "Send API errors")
# ---------------------------------------------------------------------------------------------------

MAX_MESSAGES: Final = 50  # mj-0008 on "Messages"
MAX_RECIPIENTS: Final = 50  # To + Cc + Bcc, duplicates counted once; send-0015
MAX_MESSAGE_BYTES: Final = 15 * 1024 * 1024  # "Size of all attachments ... may not exceed 15 MB"
MAX_ARRAY_ITEMS: Final = 50  # mj-0008: Attachments, InlinedAttachments, Headers, Variables
MAX_SUBJECT_CHARS: Final = 255  # mj-0006
MAX_URLTAGS_CHARS: Final = 256  # mj-0006
MAX_EMAIL_CHARS: Final = 254  # RFC 5321 path limit; longer is refused before parsing
TRACKING_VALUES: Final = ("account_default", "disabled", "enabled")
PRIORITY_VALUES: Final = range(4)  # X-Mailjet-Prio 0..3, default 2

DEFAULT_API_BASE_URL: Final = "https://api.mailjet.com"

SEND_NO_CONTENT: Final = "send-0003"
SEND_TEMPLATE_NOT_ALLOWED: Final = "send-0010"
SEND_FORBIDDEN_HEADER: Final = "send-0011"
SEND_DEDUPLICATE_WITHOUT_CAMPAIGN: Final = "send-0012"
SEND_TOO_MANY_RECIPIENTS: Final = "send-0015"
SEND_TEMPLATE_LANGUAGE_MISSING: Final = "send-0016"
# mailstack's own sending rules are numbered from send-0901, clear of Mailjet's codes.
SEND_RENDER_BUDGET: Final = "send-0901"
MJ_MALFORMED: Final = "mj-0002"
MJ_MISSING: Final = "mj-0003"
MJ_TYPE_MISMATCH: Final = "mj-0004"
MJ_NOT_ALLOWED: Final = "mj-0005"
MJ_TOO_LONG: Final = "mj-0006"
MJ_EMPTY_ARRAY: Final = "mj-0007"
MJ_TOO_MANY_ITEMS: Final = "mj-0008"
MJ_TOO_LARGE: Final = "mj-0011"
MJ_EMPTY_STRING: Final = "mj-0012"
MJ_INVALID_EMAIL: Final = "mj-0013"

# ---------------------------------------------------------------------------------------------------
# Public types
# ---------------------------------------------------------------------------------------------------


def _new_identifier() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True, kw_only=True)
class SendError:
    """One entry of a message's ``Errors`` array."""

    error_identifier: str = field(default_factory=_new_identifier)
    error_code: str
    status_code: int = 400
    error_message: str
    error_related_to: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Mailjet's representation of the error."""
        return {
            "ErrorIdentifier": self.error_identifier,
            "ErrorCode": self.error_code,
            "StatusCode": self.status_code,
            "ErrorMessage": self.error_message,
            "ErrorRelatedTo": list(self.error_related_to),
        }


class RequestError(ApiError):
    """The whole request is refused: answer ``payload`` (a Mailjet global error) with ``status_code``."""

    def __init__(self, status_code: int, payload: dict[str, Any]) -> None:
        super().__init__(status_code, str(payload.get("ErrorMessage", "")))
        self.payload = payload  # exactly Mailjet's global error (the renderer adds ErrorInfo)


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """A valid message. The extra fields are accepted properties that :class:`MessageSpec` lacks."""

    spec: MessageSpec
    deduplicate_campaign: bool = False
    monitoring_category: str = ""
    url_tags: str = ""


@dataclass(frozen=True, slots=True)
class MessageErrors:
    """An invalid message: every problem found in it."""

    errors: tuple[SendError, ...]
    custom_id: str = ""


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A request that passed request-level validation; one result per input message, in order."""

    sandbox: bool
    advance_error_handling: bool
    results: tuple[ParsedMessage | MessageErrors, ...]


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """What the response reports for one recipient of a sent message."""

    email: str
    message_uuid: str
    message_id: int

    def to_json(self, api_base_url: str = DEFAULT_API_BASE_URL) -> dict[str, Any]:
        """``{"Email", "MessageUUID", "MessageID", "MessageHref"}``."""
        return {
            "Email": self.email,
            "MessageUUID": self.message_uuid,
            "MessageID": self.message_id,
            "MessageHref": f"{api_base_url.rstrip('/')}/v3/REST/message/{self.message_id}",
        }


# ---------------------------------------------------------------------------------------------------
# Response helpers
# ---------------------------------------------------------------------------------------------------


def error_message_json(m: MessageErrors) -> dict[str, Any]:
    """The ``Messages[]`` entry of a refused message: ``{"Status": "error", "Errors": [...]}``.

    Mailjet's documented error entries carry no ``CustomID``, so none is added.
    """
    return {"Status": "error", "Errors": [e.to_json() for e in m.errors]}


def success_message_json(
    custom_id: str,
    to: Sequence[RecipientResult],
    cc: Sequence[RecipientResult] = (),
    bcc: Sequence[RecipientResult] = (),
    *,
    api_base_url: str = DEFAULT_API_BASE_URL,
) -> dict[str, Any]:
    """The ``Messages[]`` entry of an accepted message (one result per recipient)."""
    return {
        "Status": "success",
        "CustomID": custom_id,
        "To": [r.to_json(api_base_url) for r in to],
        "Cc": [r.to_json(api_base_url) for r in cc],
        "Bcc": [r.to_json(api_base_url) for r in bcc],
    }


def sandbox_message_json(spec: MessageSpec, *, api_base_url: str = DEFAULT_API_BASE_URL) -> dict[str, Any]:
    """The entry for a valid message under ``SandboxMode``: normal shape, empty UUIDs and ID 0."""

    def blank(addresses: Sequence[Address]) -> list[RecipientResult]:
        return [RecipientResult(a.email, "", 0) for a in addresses]

    return success_message_json(
        spec.custom_id, blank(spec.to), blank(spec.cc), blank(spec.bcc), api_base_url=api_base_url
    )


def send_response_json(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The response body: ``{"Messages": [...]}`` in input order."""
    return {"Messages": [dict(e) for e in entries]}


def overall_status(
    results: Sequence[ParsedMessage | MessageErrors], *, advance_error_handling: bool = False
) -> int:
    """HTTP status of a whole response whose messages were processed (no :class:`RequestError`).

    Mailjet (``guides/_send-api.md``, "Send in bulk"): "In case of errors on one or several of the
    messages, the API will not stop the processing of other successful messages. All validated messages
    will be processed for sending and the response will include both MessageIDs and Error reports."
    So the valid messages of a batch are sent whatever this returns.

    The response is ``200`` when every message succeeded, otherwise ``400`` — the status Mailjet answers
    a batch with one or more failed messages (mailjet/mailjet-apiv3-java#121, pointing at the "Send
    API errors" section). With ``AdvanceErrorHandling`` the status is the errors' own ``StatusCode``
    (mailjet-apiv3-go answers a lone ``send-0008`` with 403) when they all agree, else ``400``.
    """
    statuses = {e.status_code for r in results if isinstance(r, MessageErrors) for e in r.errors}
    if not any(isinstance(r, MessageErrors) for r in results):
        return 200
    if advance_error_handling and len(statuses) == 1:
        return statuses.pop()
    return 400


# ---------------------------------------------------------------------------------------------------
# Property names
# ---------------------------------------------------------------------------------------------------

_MESSAGE_PROPERTIES: Final = (
    "From",
    "Sender",
    "To",
    "Cc",
    "Bcc",
    "ReplyTo",
    "Subject",
    "TextPart",
    "HTMLPart",
    "TemplateID",
    "TemplateLanguage",
    "TemplateErrorReporting",
    "TemplateErrorDeliver",
    "Attachments",
    "InlinedAttachments",
    "Priority",
    "CustomCampaign",
    "DeduplicateCampaign",
    "TrackOpens",
    "TrackClicks",
    "CustomID",
    "EventPayload",
    "MonitoringCategory",
    "URLTags",
    "Headers",
    "Variables",
)
_ROOT_PROPERTIES: Final = ("Messages", "Globals", "SandboxMode", "AdvanceErrorHandling")
_ADDRESS_PROPERTIES: Final = ("Email", "Name")
_ATTACHMENT_PROPERTIES: Final = ("ContentType", "Filename", "Base64Content", "ContentID")

# Globals merge rules ("Set global payload properties").
_MERGED_OBJECTS: Final = frozenset(
    {"From", "Sender", "ReplyTo", "TemplateErrorReporting", "Headers", "Variables"}
)
_ADDRESS_OBJECTS: Final = frozenset({"From", "Sender", "ReplyTo", "TemplateErrorReporting"})
_APPENDED_ARRAYS: Final = frozenset({"Cc", "Bcc", "Attachments", "InlinedAttachments"})


def _fold_map(names: Sequence[str]) -> dict[str, str]:
    return {n.casefold(): n for n in names}


_MESSAGE_FOLD: Final = _fold_map(_MESSAGE_PROPERTIES)
_ROOT_FOLD: Final = _fold_map(_ROOT_PROPERTIES)
_ADDRESS_FOLD: Final = _fold_map(_ADDRESS_PROPERTIES)
_ATTACHMENT_FOLD: Final = _fold_map(_ATTACHMENT_PROPERTIES)


def _canonical(obj: Mapping[str, object], fold: Mapping[str, str]) -> dict[str, object]:
    """Known properties under their documented names; unknown ones dropped; ``null`` means absent."""
    out: dict[str, object] = {}
    for key, value in obj.items():
        name = fold.get(key.casefold()) if isinstance(key, str) else None
        if name is not None and value is not None:
            out[name] = value
    return out


# Headers that cannot be set through ``Headers`` (send-0011), with the property to use instead.
# Mailjet's list of forbidden headers, plus the MIME structure headers this server generates.
_RESERVED_HEADERS: Final[Mapping[str, str | None]] = {
    "from": "From",
    "sender": "Sender",
    "subject": "Subject",
    "to": "To",
    "cc": "Cc",
    "bcc": "Bcc",
    "x-mj-customid": "CustomID",
    "x-mj-eventpayload": "EventPayload",
    "x-mj-vars": "Variables",
    "x-mj-templateerrordeliver": "TemplateErrorDeliver",
    "x-mj-templateerrorreporting": "TemplateErrorReporting",
    "x-mj-templatelanguage": "TemplateLanguage",
    "x-mj-templateid": "TemplateID",
    "x-mailjet-trackopen": "TrackOpens",
    "x-mailjet-trackclick": "TrackClicks",
    "x-mailjet-campaign": "CustomCampaign",
    "x-mailjet-deduplicatecampaign": "DeduplicateCampaign",
    "x-mailjet-prio": "Priority",
    "return-path": None,
    "delivered-to": None,
    "dkim-signature": None,
    "domainkey-status": None,
    "received-spf": None,
    "authentication-results": None,
    "received": None,
    "x-mailjet-debug": None,
    "user-agent": None,
    "x-mailer": None,
    "x-mj-workflowid": None,
    "x-feedback-id": None,
    "x-mailjet-segmentation": None,
    "list-id": None,
    "x-mj-mid": None,
    "x-mj-errormessage": None,
    "date": None,
    "x-csa-complaints": None,
    "message-id": None,
    "x-mj-statisticscontactslistid": None,
    "mime-version": None,
    "content-type": None,
    "content-transfer-encoding": None,
}
_CAMPAIGN_HEADERS: Final = frozenset({"list-unsubscribe", "list-unsubscribe-post"})

# ---------------------------------------------------------------------------------------------------
# Character checks
# ---------------------------------------------------------------------------------------------------

_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")
# C0 controls except TAB, DEL, NEL and the Unicode line/paragraph separators: anything that could end a
# header line in one MIME or SMTP implementation or another.
_HEADER_UNSAFE_RE: Final = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_HEADER_NAME_RE: Final = re.compile("[\x21-\x39\x3b-\x7e]+")  # RFC 5322 ftext
_MIME_NAME_CHARS: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # RFC 2045 token
_CONTENT_TYPE_RE: Final = re.compile(rf"{_MIME_NAME_CHARS}/{_MIME_NAME_CHARS}(?:[ \t]*;.*)?")
_CONTENT_ID_UNSAFE_RE: Final = re.compile(r"[\s<>]")
_ECHO_CHARS: Final = 100


def _echo(value: str) -> str:
    """A user value, shortened and made encodable, for use inside an error message."""
    short = value if len(value) <= _ECHO_CHARS else value[:_ECHO_CHARS] + "…"
    return short.encode("utf-8", "replace").decode("utf-8")


def _quoted_path(prefix: str, key: str) -> str:
    return f"{prefix}[{json.dumps(_echo(key))}]"


# ---------------------------------------------------------------------------------------------------
# Error collection
# ---------------------------------------------------------------------------------------------------


class _Errors:
    def __init__(self) -> None:
        self.items: list[SendError] = []

    def add(self, code: str, message: str, *related: str, status: int = 400) -> None:
        self.items.append(
            SendError(error_code=code, status_code=status, error_message=message, error_related_to=related)
        )

    def missing(self, path: str) -> None:
        self.add(MJ_MISSING, f"The {path} is mandatory but missing from the input", path)

    def mismatch(self, path: str, expected: str) -> None:
        self.add(MJ_TYPE_MISMATCH, f'Type mismatch. Expected type "{expected}".', path)

    def empty(self, path: str) -> None:
        self.add(MJ_EMPTY_STRING, f"The {path} property cannot be an empty string.", path)

    def not_allowed(self, path: str, why: str) -> None:
        self.add(MJ_NOT_ALLOWED, f"Invalid value for {path}: {why}", path)

    def too_many(self, path: str, limit: int) -> None:
        self.add(
            MJ_TOO_MANY_ITEMS,
            f"The {path} property contains more than the maximum allowed number of elements."
            f" Max Allowed item limit is {limit}.",
            path,
        )


def _global_error(code: str, message: str, *related: str, status: int = 400) -> RequestError:
    payload: dict[str, Any] = {
        "ErrorIdentifier": _new_identifier(),
        "ErrorCode": code,
        "StatusCode": status,
        "ErrorMessage": message,
    }
    if related:
        payload["ErrorRelatedTo"] = list(related)
    return RequestError(status, payload)


# ---------------------------------------------------------------------------------------------------
# Scalar readers: each returns None (after recording an error when there is one) or the valid value.
# ---------------------------------------------------------------------------------------------------


def _text_ok(errs: _Errors, path: str, value: str, *, header: bool) -> bool:
    if not value.isascii() and _SURROGATE_RE.search(value):  # isascii() is O(1) in CPython
        errs.not_allowed(path, "the string contains invalid Unicode (an unpaired surrogate).")
        return False
    if header and _HEADER_UNSAFE_RE.search(value):
        errs.not_allowed(path, "control characters (CR, LF, NUL...) are not allowed.")
        return False
    return True


def _string(
    errs: _Errors,
    value: object,
    path: str,
    *,
    header: bool,
    required: bool = False,
    max_chars: int | None = None,
) -> str | None:
    if value is None:
        if required:
            errs.missing(path)
        return None
    if not isinstance(value, str):
        errs.mismatch(path, "string")
        return None
    if required and value == "":
        errs.empty(path)
        return None
    if not _text_ok(errs, path, value, header=header):
        return None
    if max_chars is not None and len(value) > max_chars:
        errs.add(
            MJ_TOO_LONG,
            f"The {path} property is longer than the maximum allowed ({max_chars} characters).",
            path,
        )
        return None
    return value


def _boolean(errs: _Errors, value: object, path: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    errs.mismatch(path, "bool")
    return None


def _integer(errs: _Errors, value: object, path: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    errs.mismatch(path, "int64")
    return None


def _email(errs: _Errors, value: object, path: str, *, sending: bool = False) -> str | None:
    """A valid address; with ``sending``, one whose domain may send (``sending_domain``'s message)."""
    raw = _string(errs, value, path, header=False, required=True)
    if raw is None:
        return None
    if len(raw) <= MAX_EMAIL_CHARS and not _HEADER_UNSAFE_RE.search(raw):
        try:
            checked = validate_email(raw, check_deliverability=False)
            if sending:
                sending_domain(checked.ascii_domain)
            return checked.normalized
        except SendingDomainError as exc:
            errs.add(MJ_INVALID_EMAIL, str(exc), path)
            return None
        except (EmailNotValidError, UnicodeError, ValueError):
            if sending and _domain_refused(errs, raw, path):
                return None
    errs.add(MJ_INVALID_EMAIL, f'"{_echo(raw)}" is an invalid email address.', path)
    return None


def _domain_refused(errs: _Errors, raw: str, path: str) -> bool:
    # A sender refused for its domain (special-use, say) is told so in the words init and SMTP use.
    local, at, domain = raw.rpartition("@")
    if not (local and at and domain):
        return False
    try:
        sending_domain(domain)
    except SendingDomainError as exc:
        errs.add(MJ_INVALID_EMAIL, str(exc), path)
        return True
    return False


def _address(errs: _Errors, value: object, path: str, *, sending: bool = False) -> Address | None:
    if not isinstance(value, dict):
        errs.mismatch(path, "emailIn")
        return None
    props = _canonical(value, _ADDRESS_FOLD)
    email_ = _email(errs, props.get("Email"), f"{path}.Email", sending=sending)
    name = _string(errs, props.get("Name"), f"{path}.Name", header=True)
    if email_ is None:
        return None
    return Address(email=email_, name=name or "")


# ---------------------------------------------------------------------------------------------------
# Structured properties
# ---------------------------------------------------------------------------------------------------


def _recipient_key(item: object, position: int) -> str:
    if isinstance(item, dict):
        raw = _canonical(item, _ADDRESS_FOLD).get("Email")
        if isinstance(raw, str):
            return raw.strip().lower()
    return f"\x00{position}"  # not an address: counts as its own recipient


def _recipients(errs: _Errors, props: Mapping[str, object], max_recipients: int) -> dict[str, list[Address]]:
    lists: dict[str, list[Address]] = {"To": [], "Cc": [], "Bcc": []}
    raw_lists: dict[str, list[object]] = {}
    for kind in lists:
        value = props.get(kind)
        if value is None:
            continue
        if isinstance(value, list):
            raw_lists[kind] = value
        else:
            errs.mismatch(kind, "array of emails")
    if "To" not in props:
        errs.missing("To")
    elif raw_lists.get("To") == []:
        errs.add(MJ_EMPTY_ARRAY, "The To array cannot be empty.", "To")

    keys = {_recipient_key(item, n) for n, item in enumerate(i for lst in raw_lists.values() for i in lst)}
    if len(keys) > max_recipients:
        errs.add(
            SEND_TOO_MANY_RECIPIENTS,
            f"The total number of recipients (To, Cc and Bcc) is over the limit of {max_recipients}.",
            "To",
            "Cc",
            "Bcc",
        )
        return lists  # not worth validating each address of a refused message

    seen: set[str] = set()
    for kind, items in raw_lists.items():
        for i, item in enumerate(items):
            address = _address(errs, item, f"{kind}[{i}]")
            if address is not None and address.email.lower() not in seen:
                seen.add(address.email.lower())
                lists[kind].append(address)
    return lists


def _headers(
    errs: _Errors, value: object, *, campaign: bool, subject: bool, reply_to_property: bool
) -> tuple[list[tuple[str, str]], Address | None]:
    headers: list[tuple[str, str]] = []
    given: list[tuple[str, str]] = []
    reply_to: Address | None = None
    if not isinstance(value, dict):
        errs.mismatch("Headers", "object")
        return headers, reply_to
    if len(value) > MAX_ARRAY_ITEMS:
        errs.too_many("Headers", MAX_ARRAY_ITEMS)
        return headers, reply_to
    for name, raw in value.items():
        path = _quoted_path("Headers", str(name))
        if not isinstance(name, str) or not _HEADER_NAME_RE.fullmatch(name):
            errs.not_allowed(path, 'a header name is printable US-ASCII characters other than ":".')
            continue
        lowered = name.lower()
        if lowered in _RESERVED_HEADERS or (campaign and lowered in _CAMPAIGN_HEADERS):
            instead = _RESERVED_HEADERS.get(lowered)
            hint = f' Use the "{instead}" property instead.' if instead else ""
            errs.add(SEND_FORBIDDEN_HEADER, f'The "{name}" header cannot be set through Headers.{hint}', path)
            continue
        text = _string(errs, raw, path, header=True)
        if text is None:
            continue
        if lowered == "reply-to" and reply_to_property:
            errs.add(
                SEND_FORBIDDEN_HEADER,
                'Reply-To is given both as the "ReplyTo" property and in Headers; keep only one.',
                path,
                "ReplyTo",
            )
            continue
        given.append((name, text))
    # The composer's own header policy, so that what is accepted here composes at delivery.
    problems = header_problems(
        given, bulk=campaign, subject=subject, label=lambda _index, name: _quoted_path("Headers", name)
    )
    for problem in problems:
        code = MJ_NOT_ALLOWED if problem.kind in ("name", "value") else SEND_FORBIDDEN_HEADER
        errs.add(code, problem.message, _quoted_path("Headers", problem.name))
    refused = {problem.index for problem in problems}
    for index, (name, text) in enumerate(given):
        if index in refused:
            continue
        if name.lower() == "reply-to":
            reply_to = _reply_to_header(errs, text, _quoted_path("Headers", name))
        else:
            headers.append((name, text))
    return headers, reply_to


def _reply_to_header(errs: _Errors, text: str, path: str) -> Address | None:
    try:
        pairs = [(n, a) for n, a in email.utils.getaddresses([text]) if a]
    except (ValueError, TypeError, IndexError, AttributeError):
        pairs = []
    if len(pairs) != 1:
        errs.not_allowed(path, "Reply-To must hold exactly one address.")
        return None
    name, addr = pairs[0]
    checked = _email(errs, addr, path)
    return Address(email=checked, name=name) if checked is not None else None


def _decode_base64(text: str) -> bytes | None:
    compact = "".join(text.split())  # encoders commonly wrap lines
    candidates = [compact]
    if len(compact) % 4 in (2, 3):  # padding left out
        candidates.append(compact + "=" * (-len(compact) % 4))
    for candidate in candidates:
        try:
            return base64.b64decode(candidate, validate=True)
        except (binascii.Error, ValueError):
            continue
    return None


def _attachments(
    errs: _Errors, value: object, prop: str, *, inline: bool, decode: Callable[[str], bytes | None]
) -> list[Attachment]:
    out: list[Attachment] = []
    if not isinstance(value, list):
        errs.mismatch(prop, "array of attachments")
        return out
    if len(value) > MAX_ARRAY_ITEMS:
        errs.too_many(prop, MAX_ARRAY_ITEMS)
        return out
    for i, item in enumerate(value):
        path = f"{prop}[{i}]"
        if not isinstance(item, dict):
            errs.mismatch(path, "attachment")
            continue
        props = _canonical(item, _ATTACHMENT_FOLD)
        ctype = _string(errs, props.get("ContentType"), f"{path}.ContentType", header=True, required=True)
        if ctype is not None and not _CONTENT_TYPE_RE.fullmatch(ctype):
            errs.not_allowed(f"{path}.ContentType", 'expected a MIME type such as "text/plain".')
            ctype = None
        filename = _string(errs, props.get("Filename"), f"{path}.Filename", header=True, required=True)
        encoded = _string(
            errs, props.get("Base64Content"), f"{path}.Base64Content", header=False, required=True
        )
        content = decode(encoded) if encoded is not None else None
        if encoded is not None and content is None:
            errs.not_allowed(f"{path}.Base64Content", "the content is not valid base64.")
        content_id: str | None = None
        if inline:
            content_id = _string(errs, props.get("ContentID"), f"{path}.ContentID", header=True)
            if content_id is not None and _CONTENT_ID_UNSAFE_RE.search(content_id):
                errs.not_allowed(f"{path}.ContentID", "spaces and angle brackets are not allowed.")
                continue
            content_id = content_id or None
        if ctype is not None and filename is not None and content is not None:
            out.append(
                Attachment(filename=filename, content_type=ctype, content=content, content_id=content_id)
            )
    return out


def _walk_strings(value: object) -> Iterator[str]:
    """Every string (keys included) inside a JSON value, iteratively (no recursion limit)."""
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, str):
            yield current
        elif isinstance(current, dict):
            yield from (k for k in current if isinstance(k, str))
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)


def _variables(errs: _Errors, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        errs.mismatch("Variables", "object")
        return {}
    if len(value) > MAX_ARRAY_ITEMS:
        errs.too_many("Variables", MAX_ARRAY_ITEMS)
        return {}
    if any(_SURROGATE_RE.search(s) for s in _walk_strings(value)):
        errs.not_allowed("Variables", "a string contains invalid Unicode (an unpaired surrogate).")
        return {}
    return dict(value)


# ---------------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------------


def _merge_globals(globals_: Mapping[str, object], message: Mapping[str, object]) -> dict[str, object]:
    """Apply Mailjet's Globals rules: scalars replaced, objects merged, arrays appended (globals first)."""
    merged = dict(globals_)
    for key, value in message.items():
        base = merged.get(key)
        if key in _MERGED_OBJECTS and isinstance(base, dict) and isinstance(value, dict):
            if key in _ADDRESS_OBJECTS:
                merged[key] = {**_canonical(base, _ADDRESS_FOLD), **_canonical(value, _ADDRESS_FOLD)}
            elif key == "Headers":
                overridden = {str(k).lower() for k in value}
                merged[key] = {**{k: v for k, v in base.items() if str(k).lower() not in overridden}, **value}
            else:
                merged[key] = {**base, **value}
        elif key in _APPENDED_ARRAYS and isinstance(base, list) and isinstance(value, list):
            merged[key] = base + value
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True, slots=True)
class _Limits:
    max_recipients: int
    max_message_bytes: int


def _parse_message(
    props: Mapping[str, object], limits: _Limits, decode: Callable[[str], bytes | None]
) -> ParsedMessage | MessageErrors:
    errs = _Errors()
    get = props.get

    custom_id = _string(errs, get("CustomID"), "CustomID", header=True) or ""
    event_payload = _string(errs, get("EventPayload"), "EventPayload", header=True) or ""
    campaign = _string(errs, get("CustomCampaign"), "CustomCampaign", header=True) or ""
    monitoring = _string(errs, get("MonitoringCategory"), "MonitoringCategory", header=True) or ""
    url_tags = _string(errs, get("URLTags"), "URLTags", header=True, max_chars=MAX_URLTAGS_CHARS) or ""
    subject = _string(errs, get("Subject"), "Subject", header=True, max_chars=MAX_SUBJECT_CHARS) or ""
    text = _string(errs, get("TextPart"), "TextPart", header=False) or None
    html = _string(errs, get("HTMLPart"), "HTMLPart", header=False) or None

    template_id = _integer(errs, get("TemplateID"), "TemplateID")
    template_given = get("TemplateID") is not None and template_id != 0
    if template_id:
        errs.add(
            SEND_TEMPLATE_NOT_ALLOWED,
            f"TemplateID {template_id} cannot be used: stored templates are not supported by this server;"
            " send the content in TextPart and/or HTMLPart.",
            "TemplateID",
        )
    if text is None and html is None and not template_given and not _content_errors(errs):
        errs.add(
            SEND_NO_CONTENT,
            'At least "HTMLPart", "TextPart" or "TemplateID" must be provided.',
            "HTMLPart",
            "TextPart",
            "TemplateID",
        )

    sender: Address | None = None
    if get("From") is not None:
        sender = _address(errs, get("From"), "From", sending=True)
    elif not template_given:  # a stored template may carry its own From
        errs.missing("From")
    envelope_sender = _address(errs, get("Sender"), "Sender") if get("Sender") is not None else None
    reply_to = _address(errs, get("ReplyTo"), "ReplyTo") if get("ReplyTo") is not None else None
    recipients = _recipients(errs, props, limits.max_recipients)

    template_language = _boolean(errs, get("TemplateLanguage"), "TemplateLanguage") or False
    error_reporting = (
        _address(errs, get("TemplateErrorReporting"), "TemplateErrorReporting")
        if get("TemplateErrorReporting") is not None
        else None
    )
    error_deliver = _boolean(errs, get("TemplateErrorDeliver"), "TemplateErrorDeliver")
    if not template_language and (get("TemplateErrorReporting") is not None or error_deliver is not None):
        errs.add(
            SEND_TEMPLATE_LANGUAGE_MISSING,
            "TemplateErrorReporting and TemplateErrorDeliver can only be used when"
            ' "TemplateLanguage" is true.',
            "TemplateLanguage",
        )
    variables = _variables(errs, get("Variables")) if get("Variables") is not None else {}

    deduplicate = _boolean(errs, get("DeduplicateCampaign"), "DeduplicateCampaign") or False
    if deduplicate and not campaign:
        errs.add(
            SEND_DEDUPLICATE_WITHOUT_CAMPAIGN,
            '"DeduplicateCampaign" can only be used when "CustomCampaign" is set.',
            "CustomCampaign",
            "DeduplicateCampaign",
        )

    tracking: dict[str, str] = {}
    for prop in ("TrackOpens", "TrackClicks"):
        value = _string(errs, get(prop), prop, header=True)
        if value and value not in TRACKING_VALUES:
            errs.not_allowed(prop, "allowed values are " + ", ".join(f'"{v}"' for v in TRACKING_VALUES) + ".")
            value = None
        tracking[prop] = value or "account_default"

    priority = _integer(errs, get("Priority"), "Priority")
    if priority is not None and priority not in PRIORITY_VALUES:
        errs.not_allowed(
            "Priority", f"allowed values are {PRIORITY_VALUES.start} to {PRIORITY_VALUES.stop - 1}."
        )
        priority = None

    headers: list[tuple[str, str]] = []
    if get("Headers") is not None:
        headers, header_reply_to = _headers(
            errs,
            get("Headers"),
            campaign=bool(campaign),
            subject=bool(subject),
            reply_to_property=get("ReplyTo") is not None,
        )
        reply_to = reply_to or header_reply_to

    attachments = (
        _attachments(errs, get("Attachments"), "Attachments", inline=False, decode=decode)
        if get("Attachments") is not None
        else []
    )
    inlined = (
        _attachments(errs, get("InlinedAttachments"), "InlinedAttachments", inline=True, decode=decode)
        if get("InlinedAttachments") is not None
        else []
    )
    size = sum(len(a.content) for a in (*attachments, *inlined))
    size += sum(len(part.encode("utf-8")) for part in (text, html) if part is not None)
    if size > limits.max_message_bytes:
        errs.add(
            MJ_TOO_LARGE,
            f"The message is {size} bytes (text, HTML and decoded attachments), over the limit of"
            f" {limits.max_message_bytes} bytes.",
            "TextPart",
            "HTMLPart",
            "Attachments",
            "InlinedAttachments",
        )

    if errs.items or sender is None:
        return MessageErrors(errors=tuple(errs.items), custom_id=custom_id)
    spec = MessageSpec(
        sender=sender,
        to=tuple(recipients["To"]),
        cc=tuple(recipients["Cc"]),
        bcc=tuple(recipients["Bcc"]),
        reply_to=reply_to,
        envelope_sender=envelope_sender,
        subject=subject,
        text=text,
        html=html,
        attachments=tuple(attachments),
        inline_attachments=tuple(inlined),
        headers=tuple(headers),
        custom_id=custom_id,
        event_payload=event_payload,
        campaign=campaign,
        track_opens=tracking["TrackOpens"],
        track_clicks=tracking["TrackClicks"],
        priority=2 if priority is None else priority,
        template_language=template_language,
        variables=variables,
        template_error_reporting=error_reporting,
        template_error_deliver=bool(error_deliver),
        bulk=bool(campaign),
    )
    return ParsedMessage(
        spec=spec,
        deduplicate_campaign=deduplicate,
        monitoring_category=monitoring,
        url_tags=url_tags,
    )


def _content_errors(errs: _Errors) -> bool:
    """Whether a content property was given but refused (then "no content" would be misleading)."""
    return any(r in ("TextPart", "HTMLPart", "TemplateID") for e in errs.items for r in e.error_related_to)


# ---------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------


def _root_flag(root: Mapping[str, object], name: str) -> bool:
    value = root.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _global_error(MJ_TYPE_MISMATCH, 'Type mismatch. Expected type "bool".', name)
    return value


def parse_send_request(
    body: object,
    *,
    max_recipients: int = MAX_RECIPIENTS,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    max_render_work: int = MAX_RENDER_WORK,
) -> SendRequest:
    """Validate a JSON-decoded ``POST /v3.1/send`` body.

    Raises :class:`RequestError` when the request as a whole is unusable; otherwise returns one
    :class:`ParsedMessage` or :class:`MessageErrors` per entry of ``Messages``, in order.
    """
    if not isinstance(body, dict):
        raise _global_error(MJ_MALFORMED, "Malformed JSON, please review the syntax and properties types.")
    root = _canonical(body, _ROOT_FOLD)
    sandbox = _root_flag(root, "SandboxMode")
    advance = _root_flag(root, "AdvanceErrorHandling")

    globals_: dict[str, object] = {}
    if "Globals" in root:
        raw_globals = root["Globals"]
        if not isinstance(raw_globals, dict):
            raise _global_error(MJ_TYPE_MISMATCH, 'Type mismatch. Expected type "object".', "Globals")
        globals_ = _canonical(raw_globals, _MESSAGE_FOLD)
        if "To" in globals_:
            raise _global_error(
                MJ_NOT_ALLOWED, "To cannot be set in Globals: give it in each message.", "Globals.To"
            )

    messages = root.get("Messages")
    if messages is None:
        raise _global_error(MJ_MISSING, "The Messages is mandatory but missing from the input", "Messages")
    if not isinstance(messages, list):
        raise _global_error(MJ_TYPE_MISMATCH, 'Type mismatch. Expected type "array of messages".', "Messages")
    if not messages:
        raise _global_error(MJ_EMPTY_ARRAY, "The Messages array cannot be empty.", "Messages")
    if len(messages) > MAX_MESSAGES:
        raise _global_error(
            MJ_TOO_MANY_ITEMS,
            "The Messages property contains more than the maximum allowed number of elements."
            f" Max Allowed item limit is {MAX_MESSAGES}.",
            "Messages",
        )

    decoded: dict[str, bytes | None] = {}  # Globals attachments are shared by every message

    def decode(text: str) -> bytes | None:
        if text not in decoded:
            decoded[text] = _decode_base64(text)
        return decoded[text]

    limits = _Limits(max_recipients=max_recipients, max_message_bytes=max_message_bytes)
    results: list[ParsedMessage | MessageErrors] = []
    for index, raw in enumerate(messages):
        if not isinstance(raw, dict):
            errs = _Errors()
            errs.mismatch(f"Messages[{index}]", "message")
            results.append(MessageErrors(errors=tuple(errs.items)))
            continue
        props = _merge_globals(globals_, _canonical(raw, _MESSAGE_FOLD))
        results.append(_parse_message(props, limits, decode))
    work = render_work(r.spec for r in results if isinstance(r, ParsedMessage))
    if work > max_render_work:
        raise _global_error(
            SEND_RENDER_BUDGET,
            f"The request's templates would take {work} units of rendering, over the limit of"
            f" {max_render_work}: each recipient's copy counts the characters of its message's Subject,"
            f" TextPart and HTMLPart, and each distinct template {PARSE_WEIGHT} times its characters."
            " Send fewer recipients per request, or smaller templates.",
            "Messages",
        )
    return SendRequest(sandbox=sandbox, advance_error_handling=advance, results=tuple(results))
