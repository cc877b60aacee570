"""The classifier: DSNs (RFC 3464), complaints (RFC 5965), provider notifications and plain-text bounces."""

from __future__ import annotations

import email.policy
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser

from mailstack.bounce_classify._mime import (
    Field,
    Parsed,
    decode_header_value,
    parse,
    parse_fields,
    split_returned,
)
from mailstack.bounce_classify._reasons import (
    ALL_RULES,
    Evidence,
    Rules,
    RuleSet,
    compiled,
    decide,
    find_reply_code,
    find_status,
    normalise,
    status_reason,
)
from mailstack.bounce_classify._types import BounceResult, category_of
from mailstack.bounce_classify._vendors import (
    gmail_state_reason,
    is_microsoft,
    microsoft_reason,
    orange_reason,
    powermta_reason,
)

__all__ = ["classify", "evidence_text"]

_ADDRESS = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])"
    r"([\w.!#$%&'*+/=?^`{|}~-]{1,64}@(?:[\w-]{1,63}\.)+[A-Za-z\u00a0-\uffff][\w-]{0,62}|"
    r"[\w.!#$%&'*+/=?^`{|}~-]{1,64}@\[[\d.:a-fA-F]+\])"
    r"(?![\w-]|\.[\w-])"
)
_VERP_LOCAL = re.compile(r"b-[0-9a-z]{1,13}-[a-z2-7]{16}", re.I)
_SERVICE_LOCALS = frozenset(
    {"postmaster", "mailer-daemon", "mailerdaemon", "double-bounce", "mailer_daemon", "mdaemon"}
)
_MESSAGE_ID = re.compile(r"<([^<>\s@]+@[^<>\s]+)>")
_RECIPIENT_LINE = re.compile(r"[ \t]*<([^<>\s@]{1,64}@[^<>\s@]{1,255})>:(?:\s|$)")
_MAX_RECIPIENTS = 500
_HEADER_PARSER = HeaderParser(policy=email.policy.compat32)
_MAX_BLOCK_LINES = 30
# Reasons a status code gives for a whole class (5.7.1 "not authorized", 5.3.0 "mail system"): too
# vague to stop listening to the rest of the report.
_CATCH_ALL = frozenset({"securityerror", "systemerror", "contenterror"})

# What says "this is a failure report" (as opposed to a reply written by a person or a robot).
_BOUNCE_SENDER = re.compile(
    r"mailer-daemon|post_?master|mail ?delivery|mdaemon|bounce|daemon@|\bmta\b|mailadmin|mail administrator|"
    r"delivery (?:subsystem|system)|microsoftexchange|notification",
    re.I,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (?:status|fail|notification|problem|report|has failed|error|incomplete)|"
    r"returned mail|return(?:ed)? to sender|failure notice|mail delivery failed|non[- ]?remis|"
    r"could not be delivered|not delivered|nondeliverable|non-deliverable|delivery failure|"
    r"mail system error|warning: could not send|message not delivered|unzustellbar|non recapitabile|"
    r"no se puede entregar|unable to deliver|rejected|bounced?|dsn|mail failure|failed delivery|"
    r"delayed mail|delivery delayed|message delayed|delivery notification|nicht zustellbar|"
    r"\u914d\u4fe1|\u4e0d\u80fd|\u9000\u4fe1|\u30a8\u30e9\u30fc|error sending|mail could not|returned|failed|"
    r"failure|not (?:a )?member",
    re.I,
)
_BOUNCE_BODY = re.compile(
    r"could not be delivered|couldn't be delivered|undeliverable|permanent (?:error|failure)|"
    r"delivery (?:has )?failed|was not delivered|failed permanently|delivery to the following|"
    r"following address(?:es|\(es\))? failed|wasn't able to deliver|unable to deliver|"
    r"delivery has failed|returned to (?:the )?sender|this is the mail system at host|"
    r"could not deliver|not be delivered|message you sent|delivery status notification|"
    r"fatal errors?|transcript of session|has not yet been delivered|delivery is delayed|"
    r"delivery attempts will continue|your message (?:to|was|could|has)|mail delivery|"
    r"was undeliverable|not deliver|error occurred|failed to deliver|rejected your message|"
    r"did not reach|couldn't deliver|delivery problem|the following recipient|reporting-mta:|"
    r"final-recipient:|diagnostic-code:|invalid user|not a member of this mailing list|"
    r"\u9001\u4fe1\u3067\u304d\u307e\u305b\u3093",
    re.I,
)
_AUTOREPLY_SUBJECT = re.compile(
    r"^(?:auto(?:matic)?[ -]?(?:reply|response|answer|antwort)|auto:|autoreply|out of (?:the )?office|"
    r"away|on vacation|vacation|abwesen|r[ée]ponse automatique|respuesta autom|risposta automatica|"
    r"fuera de la oficina|absence|automatisch)",
    re.I,
)
_COMPLAINT_SUBJECT = re.compile(
    r"\b(?:complaint|abuse report|spam report|fbl report|feedback loop|scomp)\b", re.I
)
_CMD_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"in reply to (?:the )?(?:end of data|data)\b", re.I), "DATA"),
    (re.compile(r"in reply to (?:the )?rcpt", re.I), "RCPT"),
    (re.compile(r"in reply to (?:the )?mail", re.I), "MAIL"),
    (re.compile(r"in reply to (?:the )?(?:helo|ehlo)", re.I), "EHLO"),
    (re.compile(r"after (?:end of data|data)\b", re.I), "DATA"),
    (re.compile(r"after rcpt to", re.I), "RCPT"),
    (re.compile(r"after mail from", re.I), "MAIL"),
    (re.compile(r"after (?:helo|ehlo)", re.I), "EHLO"),
    (re.compile(r"after (?:initial connection|connection|banner|greeting)", re.I), "CONN"),
    (re.compile(r"after pipelined (?:rcpt|mail)", re.I), "RCPT"),
    (re.compile(r"most progress was rcpt", re.I), "RCPT"),
    (re.compile(r"most progress was mail", re.I), "MAIL"),
    (re.compile(r"most progress was data", re.I), "DATA"),
    (re.compile(r"but sender was rejected", re.I), "MAIL"),
    (re.compile(r"but my name was rejected", re.I), "EHLO"),
    (re.compile(r"does not like recipient", re.I), "RCPT"),
    (re.compile(r"does not like sender", re.I), "MAIL"),
    (re.compile(r"failed after i sent the message", re.I), "DATA"),
    (re.compile(r"failed on data command", re.I), "DATA"),
    (re.compile(r"did not like our (?:final )?data", re.I), "DATA"),
    (re.compile(r"did not like our rcpt", re.I), "RCPT"),
    (re.compile(r"did not like our mail", re.I), "MAIL"),
    (re.compile(r"did not like our (?:helo|ehlo)", re.I), "EHLO"),
    (re.compile(r"but greeting failed", re.I), "CONN"),
    (re.compile(r"\[rcpt_to\]", re.I), "RCPT"),
    (re.compile(r"\[mail_from\]", re.I), "MAIL"),
    (re.compile(r"\[(?:body|end_of_data|data)\]", re.I), "DATA"),
    (re.compile(r"refused to talk to me", re.I), "CONN"),
    (re.compile(r"unknown recipient or mailbox unavailable ->", re.I), "RCPT"),
    (re.compile(r"(?:>>>|smtp command:?|command:?) *(rcpt|mail|data|helo|ehlo|\.)\b", re.I), "@"),
)


@dataclass(slots=True)
class _Recipient:
    address: str
    original: str = ""
    status: str = ""
    reply_code: str = ""
    diagnostic: str = ""
    diagnostic_type: str = ""
    action: str = ""
    remote_mta: str = ""
    command: str = ""
    reason: str = ""
    text: list[str] = field(default_factory=list)  # raw lines about this recipient from the notification


def _addresses(text: str) -> list[str]:
    return [m.group(1).strip(".") for m in _ADDRESS.finditer(text)]


def _clean_address(value: str) -> str:
    """The bare address of a DSN/ARF recipient field value (``rfc822; <a@b>`` -> ``a@b``)."""
    if ";" in value:
        kind, _, rest = value.partition(";")
        if "@" not in kind:
            value = rest
    value = value.strip().strip("<>\"' ").strip()
    found = _addresses(value)
    return found[0] if found else (value if "@" in value and " " not in value else "")


def _field(fields: Iterable[Field], name: str) -> str:
    for key, value in fields:
        if key == name:
            return value
    return ""


def _header_addresses(msg: Message, *names: str) -> list[str]:
    out: list[str] = []
    for name in names:
        for value in msg.get_all(name, []) or []:
            out.extend(_addresses(decode_header_value(value)))
    return out


def _is_service(address: str) -> bool:
    return address.split("@", 1)[0].lower() in _SERVICE_LOCALS


_CMD_WORDS = (
    ("DATA", re.compile(r"(?<![\w@.-])DATA(?![\w@-])")),
    ("RCPT", re.compile(r"(?<![\w@.-])RCPT(?![\w@-])")),
    ("MAIL", re.compile(r"(?<![\w@.-])MAIL F")),
    ("AUTH", re.compile(r"(?<![\w@.-])AUTH (?:PLAIN|LOGIN|CRAM-|DIGEST-)")),
    ("STARTTLS", re.compile(r"(?<![\w@.-])STARTTLS(?![\w@-])")),
    ("EHLO", re.compile(r"(?<![\w@.-])(?:EHLO|HELO)(?![\w@-])")),
)


def _command(text: str) -> str:
    """The SMTP command the remote server was answering, from the wording of the error."""
    found = ""
    for pattern, name in _CMD_PATTERNS:
        for match in pattern.finditer(text):
            if name != "@":
                return name
            word = match.group(1).upper()
            found = {"RCPT": "RCPT", "MAIL": "MAIL", "DATA": "DATA", ".": "DATA"}.get(word, "EHLO")
    if found:
        return found
    # Upper-case command names quoted in the text: the latest stage of the session wins.
    for name, pattern in _CMD_WORDS:
        if pattern.search(text):
            return name
    return ""


# ---------------------------------------------------------------------------------------------------
# Delivery-status fields (RFC 3464), in their own part or pasted into the text.


def _dsn_recipients(blocks: list[list[Field]], rules: Rules) -> tuple[list[_Recipient], list[Field]]:
    recipients: list[_Recipient] = []
    per_message: list[Field] = []
    for block in blocks:
        current: _Recipient | None = None
        for name, value in block:
            if name in ("final-recipient", "original-recipient", "x-actual-recipient"):
                address = _clean_address(value)
                if name == "final-recipient":
                    if current is None or current.address:
                        current = _Recipient(address="")
                        recipients.append(current)
                    current.address = address
                elif name == "original-recipient":
                    if current is None or (current.original and current.address):
                        current = _Recipient(address="")
                        recipients.append(current)
                    current.original = address
                continue
            if current is None:
                per_message.append((name, value))
                continue
            if name == "status":
                current.status = find_status(value) or current.status
                if not current.status and re.match(r"\s*[245]\d\d\b", value):
                    current.reply_code = value.strip()[:3]
            elif name == "diagnostic-code":
                kind, sep, rest = value.partition(";")
                if sep and re.fullmatch(r"\s*[A-Za-z][\w-]*\s*", kind):
                    current.diagnostic_type = kind.strip().upper()
                    current.diagnostic = rest.strip()
                else:
                    current.diagnostic = value.strip()
            elif name == "action":
                current.action = value.strip().lower().split(" ", 1)[0] if value.strip() else ""
            elif name == "x-powermta-bouncecategory" and rules.allows("powermta"):
                current.reason = powermta_reason(value) or current.reason
            elif name == "remote-mta":
                current.remote_mta = value.partition(";")[2].strip() or value.strip()
    for rcpt in recipients:
        if not rcpt.address and rcpt.original:
            rcpt.address = rcpt.original
    return [r for r in recipients if r.address], per_message


# ---------------------------------------------------------------------------------------------------
# Plain-text bounces: find the failed addresses in the notification and the lines about each.


def _notification(parsed: Parsed) -> tuple[str, list[Message]]:
    """The human-readable notification and any returned messages found inside plain text."""
    texts = parsed.texts or parsed.html
    returned: list[Message] = []
    notes: list[str] = []
    for text in texts:
        note, rest = split_returned(text)
        notes.append(note)
        if rest.strip() and not parsed.returned:
            # Only the returned headers matter; the body can be large.
            head = rest.lstrip()[:65536]
            returned.append(_HEADER_PARSER.parsestr(re.split(r"\r?\n\r?\n", head, maxsplit=1)[0] + "\n"))
    return "\n".join(notes), returned


def _text_recipients(note: str, exclude: set[str]) -> list[tuple[str, int]]:
    """Failed addresses in ``note`` with the index of the line each is first named on."""
    # postmaster@ and friends are usually contact addresses in the text, but can be the failed ones.
    return _scan_recipients(note, exclude, skip_service=True) or _scan_recipients(
        note, exclude, skip_service=False
    )


def _scan_recipients(note: str, exclude: set[str], skip_service: bool) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    seen: set[str] = set()
    for index, line in enumerate(note.splitlines()):
        lowered = line.lower()
        for match in _ADDRESS.finditer(line):
            address = match.group(1).strip(".")
            key = address.lower()
            if key in seen or key in exclude or (skip_service and _is_service(address)):
                continue
            before = lowered[: match.start()]
            # Addresses in links, Message-IDs and "From:" lines are not the failed recipients.
            if before.endswith(("mailto:", "/", "=", "message-id: <", "message-id:<")) or re.search(
                r"(?:^|\s)(?:from|sender|reply-to|return-path|message-id|in-reply-to|references)\s*:\s*[^:]*$",
                before,
            ):
                continue
            seen.add(key)
            found.append((address, index))
            if len(found) >= _MAX_RECIPIENTS:
                return found
    return found


def _block(lines: list[str], start: int, end: int) -> list[str]:
    """Lines about the recipient named on line ``start``: up to ``end``, the block size, or the end of
    its paragraph (a blank line followed by unindented text, which is the notice's next section)."""
    end = min(end, start + _MAX_BLOCK_LINES, len(lines))
    seen_text = False
    for i in range(start + 1, end):
        if lines[i].strip():
            seen_text = True
            continue
        following = next((line for line in lines[i + 1 : end] if line.strip()), "")
        if seen_text and following and following[0] not in " \t":
            return lines[start:i]
    return lines[start:end]


# ---------------------------------------------------------------------------------------------------
# Complaints (ARF) and Amazon SES notifications.


def _arf(parsed: Parsed, returned: list[Message], rules: Rules) -> list[_Recipient]:
    fields = [f for block in parsed.feedback for f in block]
    addresses = [_clean_address(v) for k, v in fields if k in ("original-rcpt-to", "removal-recipient")]
    addresses = [a for a in addresses if a]
    # Hotmail's JMRP reports name the complainer in their own header.
    hotmail = ("x-hmxmroriginalrecipient",) if rules.allows("microsoft") else ()
    if not addresses:
        for msg in returned:
            addresses = _header_addresses(msg, "to", *hotmail, "delivered-to")
            if addresses:
                break
    if not addresses and hotmail:
        addresses = _header_addresses(parsed.message, *hotmail)
    kind = _field(fields, "feedback-type").lower() or "abuse"
    return [_Recipient(address=a, reason="feedback", diagnostic_type=kind) for a in addresses] or [
        _Recipient(address="", reason="feedback", diagnostic_type=kind)
    ]


def _ses_json(text: str) -> tuple[list[_Recipient], str] | None:
    start = text.find("{")
    if start < 0 or ("notificationType" not in text and '"eventType"' not in text):
        return None
    end = text.rfind("}")
    chunk = text[start : end + 1]
    data = None
    # Mail transport folds long lines ("\n "): undo the folding, then try without any line breaks.
    for candidate in (re.sub(r"\r?\n ", "", chunk), re.sub(r"\r?\n", "", chunk)):
        try:
            data = json.loads(candidate)
            break
        except ValueError:
            continue
    if isinstance(data, dict) and isinstance(data.get("Message"), str):
        # An SNS envelope around the SES notification.
        try:
            data = json.loads(data["Message"])
        except ValueError:
            return None
    if not isinstance(data, dict):
        return None
    kind = str(data.get("notificationType") or data.get("eventType") or "")
    mail = data.get("mail") if isinstance(data.get("mail"), dict) else {}
    headers = mail.get("commonHeaders") if isinstance(mail, dict) else None
    message_id = str(headers.get("messageId", "")) if isinstance(headers, dict) else ""
    out: list[_Recipient] = []
    if kind == "Bounce" and isinstance(data.get("bounce"), dict):
        bounce = data["bounce"]
        for item in bounce.get("bouncedRecipients") or []:
            if isinstance(item, dict) and item.get("emailAddress"):
                rcpt = _Recipient(
                    address=str(item["emailAddress"]),
                    status=find_status(str(item.get("status", ""))),
                    diagnostic=str(item.get("diagnosticCode", "")),
                    action=str(item.get("action", "")).lower(),
                    remote_mta=str(bounce.get("remoteMtaIp", "")),
                )
                rcpt.diagnostic_type = "SMTP" if rcpt.diagnostic.lower().startswith("smtp") else ""
                rcpt.diagnostic = re.sub(r"^smtp;\s*", "", rcpt.diagnostic, flags=re.I)
                if bounce.get("bounceSubType") == "Suppressed":
                    rcpt.reason = "suppressed"
                out.append(rcpt)
    elif kind == "Complaint" and isinstance(data.get("complaint"), dict):
        for item in data["complaint"].get("complainedRecipients") or []:
            if isinstance(item, dict) and item.get("emailAddress"):
                out.append(_Recipient(address=str(item["emailAddress"]), reason="feedback"))
    elif kind == "Delivery" and isinstance(data.get("delivery"), dict):
        delivery = data["delivery"]
        for address in delivery.get("recipients") or []:
            smtp = str(delivery.get("smtpResponse", ""))
            out.append(
                _Recipient(
                    address=str(address), reason="delivered", diagnostic=smtp, status=find_status(smtp)
                )
            )
    else:
        return None
    return out, message_id


# ---------------------------------------------------------------------------------------------------


def _returned_info(returned: list[Message]) -> tuple[str, list[str], list[str]]:
    """(Message-ID, To addresses, Return-Path addresses) of the first returned message."""
    for msg in returned:
        message_id = decode_header_value(msg.get("message-id", ""))
        match = _MESSAGE_ID.search(message_id)
        to = _header_addresses(msg, "to", "cc")
        paths = _header_addresses(msg, "return-path", "x-original-return-path", "sender", "from")
        if message_id or to or paths:
            return (match.group(1) if match else message_id.strip("<> ")), to, paths
    return "", [], []


def _verp(candidates: Iterable[str]) -> str:
    for address in candidates:
        local = address.rsplit("@", 1)[0]
        if _VERP_LOCAL.fullmatch(local):
            return address
    return ""


# Failures only a mail system reports: a person's or a robot's reply never says them about itself.
_FAILURE_TABLES = ("userunknown-definite", "userunknown", "hostunknown", "mailboxfull", "mesgtoobig")


def _is_bounce(parsed: Parsed, note: str, rules: Rules = ALL_RULES) -> bool:
    msg = parsed.message
    if parsed.report_type or parsed.dsn or msg.get("x-failed-recipients"):
        return True
    sender = decode_header_value(msg.get("from", "")) + " " + decode_header_value(msg.get("return-path", ""))
    subject = decode_header_value(msg.get("subject", ""))
    if _BOUNCE_SENDER.search(sender) or str(msg.get("return-path", "")).strip() == "<>":
        if _BOUNCE_BODY.search(note) or _BOUNCE_SUBJECT.search(subject) or _is_dsnish(note):
            return True
        # A null-sender notice (RFC 5321 4.5.5) in no known layout that names a failure of delivery.
        head = normalise(note[:2000])
        return any(rules.has(t, head) for t in _FAILURE_TABLES) and not rules.has("vacation", head)
    if _BOUNCE_SUBJECT.search(subject) and _BOUNCE_BODY.search(note):
        return True
    return _is_dsnish(note)


def _is_dsnish(note: str) -> bool:
    lowered = note.lower()
    return "final-recipient:" in lowered or ("diagnostic-code:" in lowered and "status:" in lowered)


def _autoreply(parsed: Parsed, note: str, rules: Rules) -> bool:
    msg = parsed.message
    auto = str(msg.get("auto-submitted", "")).lower()
    subject = decode_header_value(msg.get("subject", ""))
    flagged = (
        auto.startswith("auto-replied")
        or msg.get("x-autoreply") is not None
        or msg.get("x-autorespond") is not None
        or str(msg.get("precedence", "")).lower() == "auto_reply"
        or str(msg.get("x-auto-response-suppress", "")) != ""
        or bool(_AUTOREPLY_SUBJECT.search(subject))
    )
    return flagged or rules.has("vacation", normalise(note[:4000]))


def _finish(
    rcpt: _Recipient,
    context: str,
    message_id: str,
    verp: str,
    rules: Rules,
    microsoft: bool = False,
) -> BounceResult:
    diag_raw = " ".join(rcpt.diagnostic.split())
    text = normalise(rcpt.diagnostic + " " + " ".join(rcpt.text)) if rcpt.text else normalise(rcpt.diagnostic)
    status = rcpt.status
    # A DSN's status field is often generic (5.0.0) while the remote server's reply is specific.
    own = normalise(rcpt.diagnostic)
    # The remote server's own code (in the Diagnostic-Code) beats the reporting MTA's summary, and a
    # specific code in the text beats a generic x.0.0 one.
    quoted = find_status(own, status[:1])
    if quoted and not quoted.endswith(".0.0") and quoted != status:
        status = quoted
    specific = find_status(text, status[:1])
    if (
        specific
        and (not status or status.endswith(".0.0") or status == "4.4.7")
        and not specific.endswith(".0.0")
    ) or not status:
        status = specific
    reply = rcpt.reply_code or find_reply_code(text, status[:1]) or find_reply_code(text)
    command = rcpt.command or _command(rcpt.diagnostic + "\n" + "\n".join(rcpt.text))
    reason = rcpt.reason
    if (
        not reason
        and status
        and rules.allows("microsoft")
        and (microsoft or re.fullmatch(r"[45]\.\d\.\d{3}", status))
    ):
        # Three-digit detail codes are Exchange Online's own; 5.1.10 and friends only from Microsoft.
        reason = microsoft_reason(status)
    if not reason and rules.allows("orange"):
        reason = orange_reason(own or text)
    if not reason and rules.allows("google") and (not status or ".0" in status[1:]):
        # Only when no specific status code tells more (the code wins over the state).
        reason = gmail_state_reason(text)
    if not reason:
        diagnostic_type = rcpt.diagnostic_type if rcpt.diagnostic_type not in ("SMTP", "") else ""
        if own and own != text:
            # The DSN's Diagnostic-Code is the remote server's own words: it is heard first, and the
            # surrounding lines (a transcript, other recipients' errors) only when it says nothing.
            reason = decide(
                Evidence(
                    status=status,
                    reply_code=reply,
                    diagnostic=own,
                    command=command,
                    action=rcpt.action,
                    diagnostic_type=diagnostic_type,
                    rules=rules,
                )
            )
            by_code = reason == status_reason(status) and reason not in _CATCH_ALL
            if not (by_code or rules.has(reason, own)):
                reason = ""  # only a guess from the status class: let the whole text speak
    if not reason:
        reason = decide(
            Evidence(
                status=status,
                reply_code=reply,
                diagnostic=text,
                command=command,
                action=rcpt.action,
                diagnostic_type=diagnostic_type,
                context=context,
                rules=rules,
            )
        )
    if (
        reason in ("", "onhold", "undefined")
        and not status
        and rules.allows("google")
        and rcpt.address.lower().endswith("@googlegroups.com")
    ):
        # Google Groups refuses posts from non-members, whatever language the notice is in.
        reason = "rejected"
    if reason == "suppressed":
        reason = "onhold"
    if not diag_raw and rcpt.text:
        diag_raw = " ".join(" ".join(rcpt.text).split())[:1000]
    return BounceResult(
        recipient=rcpt.address,
        category=category_of(reason, status, reply),
        reason=reason,
        status=status,
        reply_code=reply,
        diagnostic=diag_raw[:1000],
        action=rcpt.action,
        smtp_command=command,
        remote_mta=rcpt.remote_mta,
        original_recipient=rcpt.original if rcpt.original.lower() != rcpt.address.lower() else "",
        original_message_id=message_id,
        verp_address=verp,
        feedback_type=rcpt.diagnostic_type if reason == "feedback" else "",
    )


def _classify(raw: bytes, envelope_recipient: str | None, rules: Rules = ALL_RULES) -> list[BounceResult]:
    parsed = parse(raw)
    msg = parsed.message
    note, inline_returned = _notification(parsed)
    returned = parsed.returned or inline_returned
    message_id, returned_to, returned_paths = _returned_info(returned)

    own = _header_addresses(msg, "delivered-to", "x-original-to", "envelope-to", "to")
    verp = _verp(
        ([envelope_recipient] if envelope_recipient else [])
        + own
        + _addresses(" ".join(t for t in parsed.dsn))
        + returned_paths
    )

    # Complaints: a feedback report, an ARF-style report pasted as text, or a provider's own format
    # (a complaint subject with the reported message attached, Hotmail's X-HmXmrOriginalRecipient).
    if (
        parsed.feedback
        or parsed.report_type == "feedback-report"
        or re.search(r"^feedback-type:\s*\w", note, re.I | re.M)
        or (
            returned
            and rules.allows("microsoft")
            and any(m.get("x-hmxmroriginalrecipient") for m in returned)
        )
        or (returned and _COMPLAINT_SUBJECT.search(decode_header_value(msg.get("subject", ""))))
    ):
        if not parsed.feedback:
            parsed.feedback = [f for f in parse_fields(note) if any(k == "feedback-type" for k, _ in f)]
        rcpts = _arf(parsed, returned, rules)
        return [_finish(r, "", message_id, verp, rules) for r in rcpts]

    if rules.allows("amazon") and ("notificationType" in note or '"eventType"' in note):
        ses = _ses_json(note)
        if ses is not None and ses[0]:
            rcpts, ses_id = ses
            return [_finish(r, "", message_id or ses_id, verp, rules) for r in rcpts]

    context = normalise(note[:20000])
    microsoft = rules.allows("microsoft") and is_microsoft(msg, note)
    lines = note.splitlines()

    # Delivery-status fields: their own MIME part, or (non-standard) pasted into the text.
    blocks = [b for text in parsed.dsn for b in parse_fields(text)]
    if not blocks and _is_dsnish(note):
        blocks = parse_fields(note)
    dsn_rcpts, _ = _dsn_recipients(blocks, rules) if blocks else ([], [])

    sender_side = {
        a.lower() for a in _header_addresses(msg, "to", "from", "return-path", "reply-to", "sender")
    }
    sender_side.update(a.lower() for a in returned_paths)
    sender_side.discard("")

    if dsn_rcpts:
        text_found = _text_recipients(note, set())
        positions = {a.lower(): i for a, i in text_found}
        ordered = sorted(text_found, key=lambda t: t[1])
        for rcpt in dsn_rcpts:
            key = rcpt.address.lower()
            index = positions.get(key, positions.get(rcpt.original.lower(), -1))
            if index >= 0:
                following = [i for _, i in ordered if i > index]
                rcpt.text = _block(lines, index, following[0] if following else len(lines))
            elif len(dsn_rcpts) == 1:
                rcpt.text = lines[: _MAX_BLOCK_LINES * 2]
        return [_finish(r, context, message_id, verp, rules, microsoft) for r in dsn_rcpts[:_MAX_RECIPIENTS]]

    bounce = _is_bounce(parsed, note, rules)
    if not bounce:
        if _autoreply(parsed, note, rules):
            froms = _header_addresses(msg, "from", "sender", "reply-to")
            rcpt = _Recipient(address=froms[0] if froms else "", reason="vacation")
            return [_finish(rcpt, "", message_id, verp, rules)]
        return [BounceResult(recipient="", category="not_bounce", reason="undefined", verp_address=verp)]

    failed = _header_addresses(msg, "x-failed-recipients")
    found = _text_recipients(note, sender_side)
    if failed:
        positions = {a.lower(): i for a, i in _text_recipients(note, set())}
        found = [(a, positions.get(a.lower(), -1)) for a in dict.fromkeys(failed)]
    if not found:
        # "<address>:" opening a line is how qmail and Postfix name the failed recipient, even when it
        # is also the sender's own address (mail to oneself).
        found = [
            (m.group(1), i)
            for i, line in enumerate(lines[:2000])
            if (m := _RECIPIENT_LINE.match(line)) is not None
        ][:_MAX_RECIPIENTS]
    if not found:
        fallback = [a for a in returned_to if a.lower() not in sender_side and not _is_service(a)]
        found = [(a, -1) for a in dict.fromkeys(fallback)]
    if not found:
        rcpt = _Recipient(address="", text=lines[: _MAX_BLOCK_LINES * 2])
        return [_finish(rcpt, context, message_id, verp, rules)]

    located = sorted(i for _, i in found if i >= 0)
    rcpts = []
    for address, index in found[:_MAX_RECIPIENTS]:
        rcpt = _Recipient(address=address)
        if index >= 0:
            following = [i for i in located if i > index]
            rcpt.text = _block(lines, index, following[0] if following else len(lines))
        rcpts.append(rcpt)
    if len(rcpts) == 1:
        # One recipient: lines before its address (a heading, a reason) count too.
        rcpts[0].text = lines[: _MAX_BLOCK_LINES * 2]
    return [_finish(r, context, message_id, verp, rules, microsoft) for r in rcpts]


def evidence_text(raw: bytes) -> str:
    """The normalised text phrase tables are matched against in ``raw`` (its subject, notification and
    delivery-status fields, without the returned message): what a measurement checks phrases in."""
    try:
        parsed = parse(bytes(raw))
        note, _ = _notification(parsed)
        subject = decode_header_value(parsed.message.get("subject", ""))
        return normalise("\n".join([subject, note, *parsed.dsn]))
    except Exception:
        return ""


def classify(
    raw: bytes, *, envelope_recipient: str | None = None, rules: RuleSet | None = None
) -> list[BounceResult]:
    """Classify one bounce, complaint or auto-reply: one result per recipient it reports.

    Never raises: a message that cannot be read, or that is no bounce at all, gives one result with
    category ``not_bounce`` and reason ``undefined`` (``vacation`` for auto-replies).
    ``envelope_recipient`` is the address the bounce was delivered to (the VERP return path), when the
    caller knows it. ``rules`` switches some rules off (for measurement, see :class:`RuleSet`).
    """
    try:
        results = _classify(bytes(raw), envelope_recipient, compiled(rules) if rules else ALL_RULES)
    except Exception:
        results = []
    return results or [BounceResult(recipient="", category="not_bounce", reason="undefined")]
