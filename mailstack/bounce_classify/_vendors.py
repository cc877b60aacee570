"""What a few large mail systems mean by their own codes (documented in their NDR references)."""

from __future__ import annotations

import re
from email.message import Message

__all__ = [
    "SOURCES",
    "gmail_state_reason",
    "is_microsoft",
    "microsoft_reason",
    "orange_reason",
    "powermta_reason",
]

# The families whose own documentation a rule here comes from: a leave-one-family-out measurement
# switches a family's rules off while it scores that family (see RuleSet).
SOURCES = {
    "microsoft": "Exchange Online / Outlook.com NDR codes (5.1.10, 5.7.5xx...), Hotmail's JMRP reports",
    "orange": "Orange / La Poste error numbers (OFR_nnn, LPNnnn_nnn)",
    "google": "Gmail's \"(state N)\" markers, Google Groups' refusals",
    "powermta": "PowerMTA's X-PowerMTA-BounceCategory",
    "amazon": "Amazon SES / SNS JSON notifications",
}

# Exchange Online / Office 365 enhanced status codes, some of which mean something else elsewhere
# (5.1.10 is "recipient not found" there, a null MX in RFC 7505).
_MICROSOFT: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), reason)
    for pattern, reason in (
        (r"4\.4\.7", "expired"),
        (r"4\.4\.312", "networkerror"),
        (r"4\.4\.316", "expired"),
        (r"4\.7\.26", "authfailure"),
        (r"4\.7\.650", "badreputation"),
        (r"4\.7\.[56]\d\d", "blocked"),
        (r"4\.7\.8[5-9]\d", "blocked"),
        (r"5\.0\.350", "contenterror"),
        (r"5\.1\.10", "userunknown"),
        (r"5\.1\.351", "userunknown"),
        (r"5\.4\.1", "norelaying"),
        (r"5\.4\.6", "networkerror"),
        (r"5\.4\.14", "networkerror"),
        (r"5\.4\.312", "networkerror"),
        (r"5\.4\.316", "expired"),
        (r"5\.4\.300", "expired"),
        (r"5\.6\.11", "contenterror"),
        (r"5\.7\.1", "rejected"),
        (r"5\.7\.1[23]", "rejected"),
        (r"5\.7\.124", "rejected"),
        (r"5\.7\.13[3-6]", "rejected"),
        (r"5\.7\.23", "authfailure"),
        (r"5\.7\.50[1-3]", "spamdetected"),
        (r"5\.7\.50[45]", "filtered"),
        (r"5\.7\.50[67]", "blocked"),
        (r"5\.7\.508", "toomanyconn"),
        (r"5\.7\.509", "authfailure"),
        (r"5\.7\.510", "notaccept"),
        (r"5\.7\.511", "rejected"),
        (r"5\.7\.512", "policyviolation"),
        (r"5\.7\.513", "blocked"),
        (r"5\.7\.57", "securityerror"),
        (r"5\.7\.60[6-9]", "blocked"),
        (r"5\.7\.6[1-4]\d", "blocked"),
        (r"5\.7\.7[0-4]\d", "toomanyconn"),
        (r"5\.7\.750", "rejected"),
    )
)
_MS_HOST = re.compile(r"\.(?:outbound\.protection|protection|prod)\.outlook\.com\b|\.outlook\.com\b", re.I)

# PowerMTA's X-PowerMTA-BounceCategory values.
_POWERMTA = {
    "bad-mailbox": "userunknown",
    "bad-domain": "hostunknown",
    "bad-connection": "networkerror",
    "bad-configuration": "systemerror",
    "content-related": "contenterror",
    "inactive-mailbox": "suspend",
    "invalid-sender": "rejected",
    "message-expired": "expired",
    "no-answer-from-host": "expired",
    "policy-related": "policyviolation",
    "quota-issues": "mailboxfull",
    "routing-errors": "systemerror",
    "spam-related": "spamdetected",
    "virus-related": "virusdetected",
    "relaying-issues": "norelaying",
    "protocol-errors": "syntaxerror",
}


def is_microsoft(msg: Message, note: str) -> bool:
    """True when the bounce was written by Exchange Online / Office 365 / Outlook.com."""
    if msg.get("x-ms-exchange-message-is-ndr") is not None:
        return True
    if "Diagnostic information for administrators" in note or "Generating server:" in note:
        return True
    hits = 0
    for value in msg.get_all("received", []) or []:
        if _MS_HOST.search(str(value)):
            hits += 1
    if _MS_HOST.search(str(msg.get("message-id", ""))):
        hits += 1
    return hits >= 1 and any(k.lower().startswith("x-ms-exchange") for k in msg.keys())  # noqa: SIM118 - Message is not a dict


def microsoft_reason(status: str) -> str:
    """The reason of an Exchange Online status code, ``""`` when it has no special meaning."""
    for pattern, reason in _MICROSOFT:
        if pattern.fullmatch(status):
            return reason
    return ""


def powermta_reason(category: str) -> str:
    """The reason of a PowerMTA bounce category, ``""`` when unknown."""
    return _POWERMTA.get(category.strip().lower(), "")


# Orange and La Poste put their own error number in the reply: "... LPN007_426", "OFR_506", "OUK_513".
_ORANGE_CODE = re.compile(r"\b(?:lpn|ofr|ouk)(?:_\d{3}|\d{3}[-_]\d{3})\b", re.I)
_ORANGE = {
    "102": "blocked",
    "103": "blocked",
    "104": "toomanyconn",
    "305": "securityerror",
    "401": "blocked",
    "402": "securityerror",
    "403": "rejected",
    "405": "rejected",
    "415": "rejected",
    "416": "userunknown",
    "417": "mailboxfull",
    "418": "userunknown",
    "420": "suspend",
    "421": "rejected",
    "426": "suspend",
    "505": "systemerror",
    "506": "spamdetected",
    "510": "blocked",
    "514": "mesgtoobig",
    "999": "blocked",
    # Numbers documented as "try again later" without a cause.
    "105": "undefined",
    "108": "undefined",
    "109": "undefined",
    "201": "undefined",
    "423": "undefined",
    "424": "undefined",
    "513": "undefined",
}


def orange_reason(text: str) -> str:
    """The reason of an Orange / La Poste error number in ``text``; ``undefined`` for numbers that say
    only "try later", ``""`` when there is none or it is not known."""
    match = _ORANGE_CODE.search(text)
    if match is None:
        return ""
    return _ORANGE.get(match.group(0)[-3:], "")


# Gmail's older notices end the remote reply with "(state N)": the stage of its SMTP client.
_GMAIL_STATE = re.compile(r"\(state (\d{1,2})\)")
_GMAIL_STATES = {
    "6": "systemerror",
    "8": "systemerror",
    "9": "systemerror",
    "12": "norelaying",
    "13": "blocked",
    "14": "userunknown",
    "15": "filtered",
    "17": "filtered",
    "18": "filtered",
}


def gmail_state_reason(text: str) -> str:
    """The reason implied by a Gmail "(state N)" marker in ``text``, ``""`` without one."""
    match = _GMAIL_STATE.search(text)
    return _GMAIL_STATES.get(match.group(1), "") if match else ""
