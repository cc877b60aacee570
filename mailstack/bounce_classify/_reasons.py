"""Bounce reasons in Sisimai's vocabulary: status codes, error-message phrases and the decision order.

Every table here is about what receiving mail systems say, not about any one message: enhanced status
codes (RFC 3463 and the IANA registry), reply codes (RFC 5321) and the phrases MTAs and mailbox
providers use for each kind of failure. Phrases are matched against the diagnostic text lower-cased
with its whitespace collapsed, so each one is written lower-case with single spaces.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ALL_RULES",
    "Evidence",
    "RuleSet",
    "Rules",
    "compiled",
    "decide",
    "find_reply_code",
    "find_status",
    "match_reason",
    "normalise",
    "phrase_in",
    "phrase_tables",
    "standard_phrases",
    "status_reason",
]

# Enhanced status code -> reason. Codes not listed (x.0.0, 4.4.0, 4.7.0, ...) say too little.
_STATUS: dict[str, str] = {
    "4.1.1": "userunknown",
    "4.1.2": "hostunknown",
    "4.1.3": "userunknown",
    "4.1.4": "filtered",
    "4.1.6": "hasmoved",
    "4.1.7": "rejected",
    "4.1.8": "rejected",
    "4.1.9": "systemerror",
    "4.2.1": "suspend",
    "4.2.2": "mailboxfull",
    "4.2.3": "exceedlimit",
    "4.2.4": "filtered",
    "4.3.1": "systemfull",
    "4.3.2": "notaccept",
    "4.3.3": "systemerror",
    "4.3.5": "systemerror",
    "4.4.1": "expired",
    "4.4.2": "networkerror",
    "4.4.3": "systemerror",
    "4.4.4": "networkerror",
    "4.4.5": "systemfull",
    "4.4.6": "networkerror",
    "4.4.7": "expired",
    "4.4.8": "networkerror",
    "4.5.3": "systemerror",
    "4.5.5": "systemerror",
    "4.6.0": "contenterror",
    "4.6.2": "contenterror",
    "4.6.5": "contenterror",
    "4.7.1": "blocked",
    "4.7.2": "blocked",
    "4.7.5": "securityerror",
    "4.7.6": "securityerror",
    "4.7.7": "securityerror",
    "4.7.12": "securityerror",
    "4.7.15": "securityerror",
    "4.7.16": "mesgtoobig",
    "4.7.24": "authfailure",
    "4.7.25": "requireptr",
    "4.7.26": "authfailure",
    "5.1.0": "userunknown",
    "5.1.1": "userunknown",
    "5.1.2": "hostunknown",
    "5.1.3": "userunknown",
    "5.1.4": "filtered",
    "5.1.6": "hasmoved",
    "5.1.7": "rejected",
    "5.1.8": "rejected",
    "5.1.9": "systemerror",
    "5.1.10": "notaccept",
    "5.2.0": "filtered",
    "5.2.1": "filtered",
    "5.2.2": "mailboxfull",
    "5.2.3": "exceedlimit",
    "5.2.4": "filtered",
    "5.3.0": "systemerror",
    "5.3.1": "systemfull",
    "5.3.2": "notaccept",
    "5.3.3": "systemerror",
    "5.3.4": "mesgtoobig",
    "5.3.5": "systemerror",
    "5.4.0": "networkerror",
    "5.4.3": "systemerror",
    "5.4.4": "hostunknown",
    "5.5.2": "syntaxerror",
    "5.5.3": "toomanyconn",
    "5.5.4": "systemerror",
    "5.5.5": "systemerror",
    "5.5.6": "syntaxerror",
    "5.6.0": "contenterror",
    "5.6.1": "contenterror",
    "5.6.2": "contenterror",
    "5.6.3": "contenterror",
    "5.6.5": "contenterror",
    "5.6.6": "contenterror",
    "5.6.7": "contenterror",
    "5.6.8": "contenterror",
    "5.6.9": "contenterror",
    "5.7.0": "securityerror",
    "5.7.1": "securityerror",
    "5.7.2": "securityerror",
    "5.7.3": "securityerror",
    "5.7.4": "securityerror",
    "5.7.5": "securityerror",
    "5.7.6": "securityerror",
    "5.7.7": "securityerror",
    "5.7.8": "securityerror",
    "5.7.9": "securityerror",
    "5.7.10": "securityerror",
    "5.7.11": "securityerror",
    "5.7.13": "suspend",
    "5.7.14": "securityerror",
    "5.7.15": "securityerror",
    "5.7.16": "mesgtoobig",
    "5.7.17": "hasmoved",
    "5.7.18": "hasmoved",
    "5.7.19": "securityerror",
    "5.7.20": "authfailure",
    "5.7.21": "authfailure",
    "5.7.22": "authfailure",
    "5.7.23": "authfailure",
    "5.7.24": "authfailure",
    "5.7.25": "requireptr",
    "5.7.26": "authfailure",
    "5.7.27": "notaccept",
}

# Phrases per reason. Plain strings are substrings; entries starting with "re:" are regular expressions.
_PHRASES: dict[str, tuple[str, ...]] = {
    # Mailbox providers' own wording for "this account does not exist": definitive whatever the SMTP stage.
    "userunknown-definite": (
        "email account that you tried to reach does not exist",
        "re:this user doesn'?t have a [^ ]+ account",
        "re:address couldn'?t be found",
        "re:wasn'?t found at the destination domain",
        "recipientnotfound",
        "recipient not found by smtp address lookup",
        "the recipient name is not recognized",
        "re:not listed in (?:the )?domino directory",
        "not listed in public name & address book",
        "and other recipients in the same domain",
        "\u30c7\u30a3\u30ec\u30af\u30c8\u30ea",  # "directory" (Domino/Notes in Japanese)
        "requested action not taken: mailbox unavailable",
        "unknown user: ",
    ),
    "mailboxfull": (
        "\u30e1\u30fc\u30eb\u30dc\u30c3\u30af\u30b9\u304c\u4e00\u676f",
        "account is exceeding their quota",
        "account is over quota",
        "account is temporarily over quota",
        "boite du destinataire pleine",
        "delivery failed: over quota",
        "disc quota exceeded",
        "disk quota exceeded",
        "does not have enough space",
        "exceeded storage allocation",
        "exceeding its mailbox quota",
        "full mailbox",
        "inbox is out of storage space",
        "insufficient disk space",
        "is over disk quota",
        "is over quota",
        "is over its quota",
        "mail quota exceeded",
        "mailbox exceeded the local limit",
        "mailbox full",
        "mailbox has exceeded its disk space limit",
        "mailbox is full",
        "mailbox over quota",
        "mailbox quota usage exceeded",
        "mailbox size limit exceeded",
        "mailbox is over quota",
        "mailfolder is full",
        "no space left on device",
        "not enough storage space in",
        "not enough disk space",
        "not enough space on the disk",
        "over the allowed quota",
        "over quota",
        "quota exceeded",
        "quota violation for",
        "quota full",
        "recipient reached disk quota",
        "recipient rejected: mailbox would exceed maximum allowed storage",
        "the recipient mailbox has exceeded its disk space limit",
        "the user's space has been used up",
        "user has exceeded quota",
        "user has too many messages on the server",
        "user is over quota",
        "user is over the quota",
        "user over quota",
        "storage quota",
        "too much mail data",
        "would be over the allowed quota",
        "exceeded its storage quota",
        "mailbox has exceeded",
        "re:maildir delivery failed: (?:user|domain)disk quota ?.* exceeded",
        "re:mailbox .{0,40}(?:is|was) full",
    ),
    "mesgtoobig": (
        "exceeded maximum inbound message size",
        "exceeded google's message size limits",
        "exceeds google's message size limit",
        "max message size exceeded",
        "message file too big",
        "message length exceeds administrative limit",
        "message size exceeds fixed limit",
        "message size exceeds fixed maximum message size",
        "message size exceeds maximum value",
        "message size exceeds the maximum",
        "message too big",
        "message is too big",
        "message is too large",
        "message too large",
        "message exceeds maximum size",
        "message exceeds the maximum size",
        "size exceeds the maximum allowed",
        "size limit exceeded",
        "exceeds size limit",
        "message size limit",
        "re:message too large for this (?!recipient)",
    ),
    "exceedlimit": (
        "the message exeeded the maximum size the user accepts",
        "message too large for this recipient",
        "recipsizelimit",
        "exceeded the limit",
        "message length exceeds limit",
    ),
    "suspend": (
        "recipient account is blocked",
        "account is blocked",
        "compte du destinataire est bloque",
        "mailaddress is administratively disabled",
        "mailaddress is administrativley disabled",
        " is currently suspended",
        " temporary locked",
        "account disabled",
        "account has been disabled",
        "account has been suspended",
        "account is disabled",
        "account is inactive",
        "account is suspended",
        "account suspended",
        "account that you tried to reach is disabled",
        "account that you tried to reach is inactive",
        "boite du destinataire archivee",
        "invalid/inactive user",
        "is a deactivated mailbox",
        "mailbox currently suspended",
        "mailbox disabled",
        "mailbox is disabled",
        "mailbox is frozen",
        "mailbox unavailable or access denied",
        "recipient rejected: temporarily inactive",
        "recipient suspend the service",
        "this account has been disabled or discontinued",
        "this mailbox is disabled",
        "user suspended",
        "user account disabled",
        "user account is inactive",
        "vdelivermail: account is locked email bounced",
        "account is locked",
        "inactive user",
        "user inactive",
    ),
    "hasmoved": (
        " has been replaced by ",
        "no longer on server",
        "user has moved",
        "mailbox has moved",
        "address has changed",
    ),
    "norelaying": (
        "email address is not verified",
        "identities failed the check",
        "as a relay",
        "insecure mail relay",
        "is not permitted to relay through this server without authentication",
        "mail server requires authentication when attempting to send to a non-local e-mail address",
        "not a gateway",
        "not allowed to relay",
        "not an open relay, so get lost",
        "not local host",
        "relay access denied",
        "relay denied",
        "relay not permitted",
        "relaying denied",
        "relaying mail to ",
        "relaying not allowed",
        "relay prohibited",
        "that domain isn't in my list of allowed rcpthost",
        "this system is not configured to relay mail",
        "unable to relay",
        "we don't handle mail for",
        "mail relay denied",
        "invalid credentials for relay",
        "we do not relay",
        "no relaying",
        "relaying is prohibited",
        "re:relay(?:ing)? (?:is )?(?:denied|not allowed|not permitted|prohibited)",
    ),
    "authfailure": (
        "does not have authentication information",
        "//spf.pobox.com",
        "bad spf records for",
        "dmarc policy",
        "dmarc verification",
        "fails to pass authentication checks",
        "fails to pass spf checks",
        "has an spf record with a hard fail policy",
        "please inspect your spf settings",
        "sender policy framework (spf) fail",
        "sender policy framework violation",
        "senders to authenticate with",
        "senders to authenticate their email",
        "spf (sender policy framework) domain authentication fail",
        "spf check: fail",
        "spf validation fail",
        "spf check failed",
        "spf fail",
        "failed spf",
        "dkim validation fail",
        "dkim signature verification failed",
        "must pass either spf or dkim",
        "does not pass dmarc",
        "failed dmarc",
        "dmarc check failed",
        "the spf record of the sending domain",
        "is not allowed to send mail. ",
        "re:is not allowed to send from <.{0,80} per it's spf record",
        "re:is not (?:allowed|authorized|permitted) to send (?:mail )?(?:from|on behalf of|for) .{0,80}spf",
        "re:\\bspf\\b.{0,40}\\b(?:fail|failed|failure|softfail|hardfail)\\b",
        "re:\\bdmarc\\b.{0,40}\\b(?:fail|failed|failure|reject)",
    ),
    "userunknown": (
        "no valid recipients",
        "and other recipients in the same domain",
        "\u30c7\u30a3\u30ec\u30af\u30c8\u30ea\u306e\u30ea\u30b9\u30c8\u306b\u3042\u308a\u307e\u305b\u3093",
        "\u30c7\u30a3\u30ec\u30af\u30c8\u30ea\u306b\u306f\u898b\u3064\u304b\u308a\u307e\u305b\u3093",
        "invalid user address",
        "not listed in domino directory",
        "not listed in public name & address book",
        "not listed in the domino directory",
        "#5.1.1 bad address",
        "550 address invalid",
        "5.0.0. mail rejected.",
        "5.1.0 address rejected.",
        "address does not exist",
        "address not present in directory",
        "address unknown",
        "archived recipient",
        "bad destination mailbox address",
        "can't accept user",
        "destination addresses were unknown",
        "destination server rejected recipients",
        "email address does not exist",
        "email address could not be found",
        "email account that you tried to reach does not exist",
        "the address couldn't be found",
        "wasn't found at the destination domain",
        "address couldn't be found",
        "invalid address",
        "invalid mailbox",
        "invalid recipient",
        "is not a known user",
        "is not a valid mailbox",
        "is not an active address at this host",
        "mailbox does not exist",
        "mailbox invalid",
        "mailbox is inactive",
        "mailbox is unavailable",
        "mailbox not present",
        "mailbox not found",
        "mailbox unavailable",
        "nessun utente simile in questo indirizzo",
        "no account by that name here",
        "no existe dicha persona",
        "no existe ese usuario ",
        "no mail box available for this user",
        "no mailbox by that name is currently available",
        "no mailbox found",
        "no matches to nameserver query",
        "no such address here",
        "no such mailbox",
        "no such person at this address",
        "no such recipient",
        "no such user",
        "no such local user",
        "no thank you rejected: account unavailable:",
        "no valid recipients, bye",
        "non-existent user",
        "nonexistent user",
        "non existent user",
        "not a valid recipient",
        "not a valid user here",
        "not a local address",
        "not email addresses",
        "not our customer",
        "recipient address rejected. (in reply to rcpt to command)",
        "recipient address rejected: access denied",
        "recipient address rejected: invalid user",
        "recipient address rejected: unknown user",
        "recipient address rejected: undeliverable address",
        "recipient does not exist",
        "recipient is not local",
        "recipient not exist",
        "recipient not found",
        "recipient not ok",
        "recipient unknown",
        "recipientnotfound",
        "requested action not taken: mailbox unavailable",
        "sorry, user unknown",
        "sorry, badrcptto",
        "sorry, no mailbox here by that name",
        "the email account that you tried to reach does not exist",
        "the following recipients was undeliverable",
        "the user's email name is not found",
        "there is no one at this address",
        "this address no longer accepts mail",
        "this email address is wrong or no longer valid",
        "this spectator does not exist",
        "unknown e-mail address",
        "unknown email address",
        "unknown local part",
        "unknown local-part",
        "unknown mailbox",
        "unknown recipient",
        "unknown user",
        "user does not exist",
        "user missing home directory",
        "user not active",
        "user not exist",
        "user not found",
        "user not known",
        "user unknown",
        "userunknown",
        "utilisateur inconnu",
        "vdeliver: invalid or unknown virtual user",
        "your envelope recipient is in my badrcptto list",
        "no mailbox here by that name",
        "unrouteable address",
        "no such account",
        "account does not exist",
        "invalid recipient address",
        "recipient no longer",
        "not a valid address",
        "address is not valid",
        "addressee unknown",
        "unknown address",
        "unknown or illegal alias",
        "re:<[^ ]+> not found",
        "re:<[^ ]+@[^ ]+>\\.\\.\\. blocked by ",
        "re:account [^ ]+ does not exist at the organization",
        "re:adresse d au moins un destinataire invalide",
        "re:mailbox [^ ]+ does not exist",
        "re:mailbox [^ ]+@[^ ]+ unavailable",
        "re:no [^ ]+ in name directory",
        "re:rcpt <[^ ]+> does not exist",
        "re:recipient [^ ]+ was not found in",
        "re:recipient address rejected: user [^ ]+ does not exist",
        "re:recipient address rejected: user unknown in [^ ]+ table",
        "re:user [^ ]+ (?:was not found|does not exist)",
        "re:this user doesn'?t have a [^ ]+ account",
        "re:said: 550[- ]5\\.1\\.1 [^ ]+ user unknown",
        "re:\\b(?:user|mailbox|recipient|address|account)\\b.{0,30}"
        "\\b(?:does not exist|doesn't exist|not exist)",
    ),
    "filtered": (
        "account is protected by",
        "has restricted sms e-mail",
        "is not accepting any mail",
        "message filtered",
        "message rejected due to user rules",
        "not found recipient account",
        "recipient id refuse to receive mail",
        "recipient is only accepting mail from specific email addresses",
        "refused due to recipient preferences",
        "user refuses to receive this mail",
        "user reject",
        "you have been blocked by the recipient",
        "rejected by recipient",
        "blocked by the recipient",
        "recipient has blocked",
    ),
    "rejected": (
        "you are not a member of this mailing list",
        "are not member",
        "not a member of this list",
        "may not have permission to post messages",
        "permission to post messages to the group",
        "you do not have permission to post",
        "not allowed to post",
        "access denied (in reply to mail from command)",
        "administrative prohibition",
        "all recipient addresses rejected : access denied",
        "badsendermx",
        "backscatter protection detected an invalid or expired email address",
        "can't determine purported responsible address",
        "connections not accepted from servers without a valid sender domain",
        "denied by secumail valid-address-filter",
        "domain of sender address ",
        "email address is on senderfilterconfig list",
        "emetteur invalide",
        "empty email address",
        "empty envelope senders not allowed",
        "from: domain is invalid. please provide a valid from:",
        "fully qualified email address required",
        "has an outgoing mail suspension",
        "invalid sender",
        "is not a registered gateway user",
        "mail from not owned by user",
        "mailfrom domain is listed in spamhaus",
        "not member article from ",
        "null sender is not allowed",
        "returned mail not accepted here",
        "sending this from a different address or alias using the ",
        "sender is spammer",
        "sender not pre-approved",
        "sender domain is empty",
        "sender domain listed at ",
        "sender verify failed",
        "sendernoa",
        "server does not accept mail from",
        "spam reporting address",
        "too many spam complaints",
        "unroutable sender address",
        "you are not allowed to post to this mailing list",
        "your access to submit messages to this e-mail system has been rejected",
        "your email address has been blacklisted",
        "sender address rejected",
        "sender rejected",
        "sender denied",
        "sender address is blocked",
        "sender blocked",
        "unknown sender",
        "bad sender",
        "sender unknown",
        "sender not allowed",
        "sender is not allowed",
        "mail sending denied",
        "unauthenticated email is not accepted",
        "access denied, bad outbound sender",
        "sender not in allowed-senders list",
        "sender not authenticated for group",
        "sender was not authenticated",
        "delivery not authorized, message refused",
        "re:domain [^ ]+ is a dead domain",
        "re:email address [^ ]+ is not ",
        "re:reject mail from [^ ]+@",
        "re:\\bsend[^ ]* .{0,40}blacklisted",
        "re:\\bsender\\b.{0,60} rejected",
        "re:\\bsender is .{0,40} list",
        "re:after (?:mail from|end of data):.{0,80}\\. .{0,40} does not exist",
    ),
    "hostunknown": (
        "re:(?<![@\\w.-])(?:[a-z0-9-]+\\.)+[a-z]{2,} does not exist",
        "re:host [^ ]+ not found",
        "dns error: domain name not found",
        "dns server returned answer with no data",
        "all host address lookups failed permanently",
        "all relevant mx records point to non-existent hosts",
        "domain does not exist",
        "domain is not reachable",
        "domain must exist",
        "host or domain name not found",
        "host unknown",
        "host unreachable",
        "mail domain mentioned in email address is unknown",
        "name or service not known",
        "no such domain",
        "recipient address rejected: unknown domain name",
        "recipient domain must exist",
        "the account or domain may not exist",
        "unknown host",
        "unrouteable address",
        "domain not found",
        "nonexistent domain",
        "non-existent domain",
        "unknown domain",
        "domain name not found",
        "no mx for",
        "couldn't find any host named",
        "could not find any host named",
        "can't find any host named",
        "domain doesn't exist",
        "domain isn't in my list of allowed rcpthosts",
    ),
    "spamdetected": (
        "rejected due to spam classification",
        "spam classification",
        '"the mail server detected your message as spam and has prevented delivery."',
        "appears to be unsolicited",
        "blacklisted url in message",
        "block for spam",
        "blocked by policy: no spam please",
        "blocked by spamassassin",
        "blocked for abuse. see http://att.net/blocks",
        "bulk email",
        "content filter rejection",
        "denied due to spam list",
        "greylisted",
        "likely unsolicited mail",
        "listed in work.drbl.imedia.ru",
        "mail appears to be unsolicited",
        "mail content denied",
        "may consider spam",
        "message content rejected",
        "message filtered. please see the faqs section on spam",
        "message filtered. refer to the troubleshooting page at ",
        "message looks like spam",
        "message not accepted for policy reasons. see http:",
        "message refused by mailmarshal spamprofiler",
        "message rejected as spam",
        "message rejected because of unacceptable content",
        "message rejected due to suspected spam content",
        "message rejected for policy reasons",
        "our email server thinks this email is spam",
        "our system has detected that this message is",
        "probable spam",
        "reject bulk.advertising",
        "rejected: spamassassin score ",
        "rejected due to spam content",
        "rejecting banned content",
        "related to content with spam-like characteristics",
        "sending address not accepted due to spam filter",
        "spam blocked",
        "spam check",
        "spam content matched",
        "spam detected",
        "spam email",
        "spam email not accepted",
        "spam message rejected.",
        "spam not accepted",
        "spam refused",
        "spam rejection",
        "spam score ",
        "spambouncer identified spam",
        "spamming not allowed",
        "too much spam.",
        "the message has been rejected by spam filtering engine",
        "the message was rejected due to classification as bulk mail",
        "the content of this message looked like spam",
        "this e-mail cannot be forwarded because it was detected as spam",
        "this mail cannot be forwarded because it was detected as spam",
        "this e-mail is classified as spam and is rejected",
        "this mail is classified as spam and is rejected",
        "this message appears to be spam",
        "this message has been identified as spam",
        "this message has been scored as spam with a probability",
        "this message was classified as spam",
        "this message was rejected by recurrent pattern detection system",
        "transaction failed spam message not queued",
        "we dont accept spam",
        "your email appears similar to spam we have received before",
        "your email breaches local uribl policy",
        "your email had spam-like ",
        "your email is considered spam",
        "your email is probably spam",
        "your email was detected as spam",
        "your message as spam and has prevented delivery",
        "your message has been temporarily blocked by our filter",
        "your message has been rejected because it appears to be spam",
        "your message has triggered a spam block",
        "your message may contain the spam contents",
        "your message failed several antispam checks",
        "due to the nature of the content or the links within",
        "identified as spam",
        "detected as spam",
        "considered as spam",
        "classified as spam",
        "looks like spam",
        "suspected spam",
        "message is spam",
        "high spam",
        "spam content",
        "spamhaus.org/query",
        "re:(?:\\d\\.\\d\\.\\d|\\d{3}) spam$",
        "re:dt:spm mx.+ http://mail\\.163\\.com/help/help_spam_16\\.htm",
        "re:mail rejete.+[a-z]{3}.+506",
        "re:our filters rate at and above .+ percent probability of being spam",
        "re:reject,.+ - spam\\. ",
        "re:rejected by .+ \\(spam\\)",
        "re:rule imposed as .+is blacklisted on",
        "re:spam .+ exceeded",
        "re:this message scored .+ spam points",
    ),
    "speeding": (
        "please try again slower",
        "receiving mail at a rate that prevents additional messages from being delivered",
        "is receiving mail too quickly",
        "receiving mail too quickly",
        "peak smtp relay limit exceeded",
        "daily sending quota exceeded",
        "daily user sending limit exceeded",
        "daily smtp relay limit exceeded",
        "daily smtp relay sending limit exceeded",
        "this mail has been rate limited",
        "rate limit exceeded",
        "sending rate",
        "too fast",
    ),
    "toomanyconn": (
        "all available ips are at maximum connection limit",
        "connection rate limit exceeded",
        "exceeds per-domain connection limit for",
        "has exceeded the max emails per hour ",
        "throttling failure: daily message quota exceeded",
        "throttling failure: maximum sending rate exceeded",
        "too many connections",
        "too many concurrent smtp connections",
        "too many errors from your ip",
        "too many recipients",
        "too many smtp sessions for this host",
        "trop de connexions, ",
        "we have already made numerous attempts to deliver this message",
        "too many simultaneous connections",
        "connection limit",
        "too many sessions",
    ),
    "blocked": (
        "not accepting connections",
        "access denied. ip name lookup failed",
        "access from ip address",
        "bad sender ip address",
        "blacklisted by",
        "blocked - see http",
        "refused - see http",
        "blocked using",
        "cannot resolve your address",
        "client host rejected",
        "confirm this mail server",
        "connection dropped",
        "connection refused by",
        "connection reset by peer",
        "connection was dropped by remote host",
        "connections not accepted from ip addresses on spamhaus xbl",
        "currently sending spam see: ",
        "dnsbl:attrbl",
        "dynamic/zombied/spam ips blocked",
        "email blocked by spamhaus",
        "go away",
        "hosts with dynamic ip",
        "http://spf.pobox.com/why.html",
        "http://www.spamcop.net/bl.",
        "invalid ip for sending mail of domain",
        "ip/domain reputation problems",
        "is in a black list at",
        "is in an rbl",
        "is blocked by earthlink",
        "re:(?<!\\bnot )\\blisted in\\b",  # not "not listed in" (a directory lookup that failed)
        "message from ip",
        "not currently accepting mail from your ip",
        "no access from mail server",
        "part of their network is on our block list",
        "please use the smtp server of your isp",
        "rejecting open proxy",
        "sender ip address rejected",
        "server ip .{0,40} listed as abusive",
        "server access forbidden by your ip",
        "smtp error from remote mail server after initial connection:",
        "sorry, your remotehost looks suspiciously like spammer",
        "too many spams from your ip",
        "was blocked by",
        "we do not accept mail from dynamic ips",
        "you are not allowed to connect",
        "you are sending spam",
        "your network is temporary blacklisted",
        "your server requires confirmation",
        "is on our block list",
        "ip not in whitelist for rcpt domain",
        "try again later, closing connection.",
        "helo/ehlo argument is invalid",
        "empty helo/ehlo argument not allowed",
        "an unusual rate of unsolicited mail",
        "an unusual rate of mail",
        "access denied, banned sending ip",
        "access denied, bad helo",
        "access denied, rejected by recipient",
        "access denied, banned sender",
        "using customer block list",
        "blocked by spamhaus",
        "blocklist",
        "blacklist",
        "block list",
        "black list",
        "dnsbl",
        "re:rbl\\b",  # a list name ends in it ("cdrbl"); not the letters inside "marble" or "Zorblax"
        "re:ip \\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3} is blocked",
        "re:mail server at .+ is blocked",
        "re:messages from .+ temporarily deferred due to user complaints",
        "re:mail from \\d+\\.\\d+\\.\\d+\\.\\d+ refused",
        "re:message from .+ rejected based on blacklist",
        "re:client host .+ blocked using",
        "re:host .+ refused to talk to me: \\d+ blocked",
        "re:veuillez essayer plus tard.+[a-z]{3}.+(?:103|510)",
        "re:\\b(?:your|the sending|sender|client) ip\\b.{0,60}"
        "\\b(?:blocked|banned|blacklisted|listed|rejected)\\b",
        "re:\\bblocked\\b.{0,60}\\b(?:ip|spamhaus|spamcop|dnsbl|rbl)\\b",
    ),
    "requireptr": (
        "access denied. ip name lookup failed",
        "all mail servers must have a ptr record with a valid reverse dns entry",
        "bad dns ptr resource record",
        "cannot find your hostname",
        "fix reverse dns for ",
        "ips with missing ptr records",
        "no ptr record found.",
        "please get a custom reverse dns name from your isp for your host",
        "ptr record setup",
        "reverse dns failed",
        "reverse dns required",
        "sender ip reverse lookup rejected",
        "does not have a ptr record",
        "have a ptr record, or the ptr record",
        "the corresponding forward dns entry does not point to the sending ip",
        "this system will not accept messages from servers/devices with no reverse dns",
        "unresolvable relay host name",
        "we do not accept mail from hosts with dynamic ip or generic dns ptr-records",
        "must have a reverse dns record",
        "does not meet ipv6 sending guidelines regarding ptr records",
        "does not match the ip address of the hostname",
        "reverse dns lookup",
        "no reverse dns",
        "rdns",
        "re:domain .+ mismatches client ip",
        "re:dns lookup failure: .+ try again later",
        "re:reverse dns lookup for host .+ failed permanently",
        "re:server access .+ forbidden by invalid rdns record of your mail server",
        "re:service permits .+ unverifyable sending ips",
    ),
    "policyviolation": (
        "an illegal attachment on your message",
        "because the recipient is not accepting mail with ",
        "by non-member to a members-only list",
        "closed mailing list",
        "denied by policy",
        "email not accepted for policy reasons",
        "email rejected due to security policies",
        "header are not accepted",
        "header error",
        "local policy violation",
        "message bounced due to organizational settings",
        "message given low priority",
        "message not accepted for policy reasons",
        "message rejected due to local policy",
        "messages with multiple addresses",
        "rejected for policy reasons",
        "protocol violation",
        "the email address used to send your message is not subscribed to this group",
        "the message was rejected by organization policy",
        "this message was blocked because its content presents a potential",
        "we do not accept messages containing images or other attachments",
        "you have exceeded the allowable number of posts without solving a captcha",
        "you have exceeded the the allowable number of posts without solving a captcha",
        "you're using a mass mailer",
        "has a policy that prohibited the mail that you sent",
        "sending messages with the same message-id",
        "policy violation",
        "violates our policy",
        "violation of policy",
        "prohibited attachment",
        "re:mail from .+ rejected for policy reasons",
    ),
    "virusdetected": (
        "it has a potentially executable attachment",
        "the message was rejected because it contains prohibited virus or spam content",
        "this form of attachment has been used by recent viruses or other malware",
        "virus detected",
        "virus phishing/malicious_url detected",
        "your message was infected with a virus",
        "infected with a virus",
        "contains a virus",
        "virus found",
        "malware detected",
        "re:\\bvirus\\b.{0,40}\\b(?:found|detected|infected)",
    ),
    "securityerror": (
        "account not subscribed to ses",
        "authentication credentials invalid",
        "authentication failure",
        "authentication required",
        "authentication turned on in your email client",
        "unauthenticated senders not allowed",
        "verification failure",
        "you are not authorized to send mail, authentication is required",
        "you don't authenticate or the domain isn't in my list of allowed rcpthosts",
        "too many login attempts",
        "no identity changes permitted",
        "application-specific password required",
        "please log in with your web browser",
        "please log in through your web browser",
        "username and password not accepted",
        "must issue a starttls command first",
        "re:authentication failed; server .+ said: ",
        "re:authentification invalide.+305",
        "re:authentification requise.+402",
        "re:user .+ is not authorized to perform ses:sendrawemail on resource",
    ),
    "systemerror": (
        "delivery to file forbidden",
        "delivery to pipe forbidden",
        "local delivery failed",
        "lmtp error after ",
        "bad interpreter: no such file or directory",
        "automatic homedir creator crashed",
        "illegal value in ldap attribute",
        "ldap attribute is not given but mandatory",
        "timeout while performing search on ldap server",
        "temporary failure in ldap lookup",
        "aliasing/forwarding loop broken",
        "can't create user output file",
        "could not load drd for domain",
        "internal error reading data",
        "internal server error: operation now in progress",
        "interrupted system call",
        "it encountered an error while being processed",
        "it would create a mail loop",
        "local configuration error",
        "local error in processing",
        "loop was found in the mail exchanger",
        "loops back to myself",
        "mail system configuration error",
        "queue file write error",
        "recipient deferred because there is no mdb",
        "remote server is misconfigured",
        "server configuration error",
        "service currently unavailable",
        "system config error",
        "temporary local problem",
        "timeout waiting for input",
        "transaction failed ",
        "temporary system problem",
        "server busy",
        "multiple destination domains per transaction is unsupported",
        "mail server has temporarily rejected this message",
        "mail server temporarily rejected message",
        "domain policy size per transaction exceeded",
        "unable to contact ldap server",
        "internal error",
        "system error",
        "re:unable to connect .+daemon",
    ),
    "networkerror": (
        "sorry, i wasn't able to establish an smtp connection",
        "although i'm listed as a best-preference mx or a for that host",
        "could not connect and send the mail to",
        "dns records for the destination computer could not be found",
        "hop count exceeded - possible mail loop",
        "host is unreachable",
        "host name lookup failure",
        "host not found, try again",
        "mail forwarding loop for ",
        "malformed name server reply",
        "malformed or unexpected name server reply",
        "maximum forwarding loop count exceeded",
        "message looping",
        "message probably in a routing loop",
        "no route to host",
        "too many hops",
        "unable to resolve route ",
        "unrouteable mail domain",
        "routing loop detected",
        "message exceeded 50 hops",
        "network error",
        "network is unreachable",
        "temporary failure in name resolution",
        "dns lookup failed",
        "mail loop",
        "loop detected",
    ),
    "expired": (
        "host not reachable",
        "dns error: could not contact dns servers",
        "delivery to the following recipient has been delayed",
        "the recipient server did not accept our requests to connect",
        "no action is required on your part",
        "all hosts have been failing for a long time",
        "delay reason: ",
        "has been frozen",
        "was frozen on arrival",
        "envelope expired",
        "unable to deliver message after multiple retries",
        "could not deliver for the last",
        "message will be retried for",
        "has not yet been delivered",
        "could not be delivered for",
        "a message is delayed for more than",
        "this is only a temporary failure report",
        "connection timed out",
        "could not find a gateway for",
        "delivery time expired",
        "failed to deliver to domain ",
        "giving up on",
        "it has not been collected after",
        "message expired after sitting in queue for",
        "message timed out",
        "retry time not reached for any host after a long failure period",
        "server did not respond",
        "this message has been in the queue too long",
        "was not reachable within the allowed queue period",
        "your message could not be delivered for more than",
        "retry timeout exceeded",
        "message expired",
        "queue expired",
        "connection expired",
        "timeout - closing connection",
        "delivery attempts will continue",
        "could not be delivered within",
        "has been delayed",
        "delivery has been delayed",
        "delivery is delayed",
        "message delayed",
        "have not been able to deliver",
        "still could not be delivered",
        "connection timeout",
        "timed out",
        "no answer from host",
        "re:(?:was|been) undeliverable for .{0,20}(?:days|hours)",
        "re:could not be delivered (?:for|in) (?:the )?(?:last )?\\d+",
    ),
    "contenterror": (
        'too many "received" headers',
        "duplicate header",
        "header size exceeds maximum permitted",
        "improper use of 8-bit data in message header",
        "message header size, or recipient list, exceeds policy limit",
        "message mime complexity exceeds the policy maximum",
        "routing loop detected -- too many received: headers",
        "this message contain invalid mime headers",
        "this message contain improperly-formatted binary content",
        "this message contain text that uses unnecessary base64 encoding",
        "mail message is malformed",
        "invalid characters",
        "invalid message content",
        "too many related errors",
        "agent generated message depth exceeded",
        "malformed message",
        "message content error",
    ),
    "systemfull": (
        "mailbox unavailable (not enough free space)",
        "mail system full",
        "requested mail action aborted: exceeded storage allocation",
        "system storage",
        "insufficient system storage",
    ),
    "notaccept": (
        "sorry, i couldn't find a mail exchanger or ip address",
        "type=mx: malformed or unexpected name server reply",
        "an mx or srv record indicated no smtp service",
        "no host found for existing smtp connection",
        "host/domain does not accept mail",
        "host does not accept mail",
        "name server: .: host not found",
        "no mx record found for domain=",
        "smtp protocol returned a permanent error",
        "null mx",
        # A host that takes no mail at all, not one refusing some mail ("... with attachments").
        "re:does not accept mail(?! with| from| containing| that)",
        "system not accepting network messages",
        "re:not accepting mail(?! with| from| containing| that)",
    ),
    "mailererror": (
        "re:^procmail: ",
        "re:bin/(?:procmail|maildrop)",
        "re:command (?:failed: |died with status \\d+|output:)",
        "re:exit \\d+",
        "re:mailer error",
        "re:pipe to \\|/[^ ]+",
        "re:x-unix; \\d+",
    ),
    "badreputation": (
        "a poor email reputation score",
        "has been temporarily rate limited due to ip reputation",
        "ip/domain reputation problems",
        "likely suspicious due to the very low reputation",
        "very low reputation of the sending",
        "the sending mta's poor reputation",
        "poor reputation",
        "low reputation",
        "bad reputation",
    ),
    "notcompliantrfc": (
        "duplicate header",
        "this message is not rfc 5322 compliant",
        "is not rfc 5322 compliant",
        "https://support.google.com/mail/?p=rfcmessagenoncompliant",
        "missing a valid address in the from: header",
        "multiple addresses in from: header are not accepted",
        "missing a valid message-id: header",
        "contains a unicode character in a disallowed header",
        "encoded-word syntax is not permitted",
        "re: multiple .+ header",
    ),
    "syntaxerror": (
        "angle-brackets nested too deep",
        'expected word or "<"',
        "domain missing in source-routed address",
        "malformed address:",
        "syntax error",
        "bad sequence of commands",
        "unrecognized command",
        "unimplemented command",
        "command unrecognized",
        "command not implemented",
    ),
    "onhold": (),
    "vacation": (
        "i am away on vacation",
        "i am away until",
        "i am out of the office",
        "i will be traveling for work on",
        "out of the office",
        "out of office",
        "on vacation",
        "on leave",
        "i am currently away",
        "i'm currently away",
        "i am away",
        "i'm away",
        "away from the office",
        "away from my desk",
        "limited access to email",
        "limited access to e-mail",
        "will respond to you upon my return",
        "when i return",
        "upon my return",
    ),
}


# How mail systems in general word each failure: a subject and what is wrong with it, within a few
# words. One form per entry, so that a measurement can attribute each form to the families that use it
# (see RuleSet); an entry may spell one statement in more than one voice ("X not found" / "couldn't
# find X"), never two different statements, and each voice still counts as a form of its own (see
# _alternatives). They come after the phrase lists above, which stay the most specific evidence.
# Words, not parts of an address or host name ("recipient@example.net", "host1.example.org").
_WHO = (
    r"(?<![\w@.-])(?:user|recipient|mailbox|address|account|addressee|local[ -]?part|e-?mail)(?![\w@-]|\.\w)"
)
_HOST = r"(?<![\w@.-])(?:host|domain|hostname|host name|mail domain)(?![\w@-]|\.\w)"
# Between a subject and what is said of it: a few characters, or up to three words however long (the
# address itself often stands there: "User <someone@example.org> unknown", "mailbox
# someone.else@example.net does not exist"). Bounded both ways: linear on any input.
_GAP = r"(?:.{0,30}|[^ ]{0,3}(?: [^ ]{1,100}){1,3} )"
_CONCEPTS: dict[str, tuple[str, ...]] = {
    "userunknown-definite": (
        rf"re:{_WHO}.{{0,30}}\b(?:(?:couldn'?t|could not|cannot|can'?t) be|wasn'?t|was not) found\b",
    ),
    # One form per word order of "this recipient does not exist", its synonymous predicates together
    # (as for hosts below): which predicate an MTA picks says nothing about the statement.
    "userunknown": (
        # Subject first: Sendmail/Postfix "User unknown", Exchange "Recipient not found", Courier
        # "Mailbox does not exist", "address not recognised/known/listed/valid", "user is invalid".
        rf"re:{_WHO}{_GAP}\b(?:unknown|not found|(?:does ?n[o']t|did ?n[o']t|not) exist|"
        rf"not (?:recogni[sz]ed|known|listed|valid|active)|invalid)\b",
        # Attribute first: "unknown user", "invalid recipient", "no such mailbox", "not a known user",
        # "non-existent address".
        rf"re:\b(?:unknown|invalid|non-?existent|no such|bad|not an? (?:known|valid|active|existing|local))\b"
        rf".{{0,10}}{_WHO}",
        # Existential: qmail "no mailbox here by that name", "no such user here", "no mailbox found",
        # "no mail box available".
        rf"re:\bno (?:such )?(?:{_WHO}|mail box)\b.{{0,10}}\b(?:here|by that name|found|available|exists?)\b",
    ),
    "hostunknown": (
        # The name lookup found nothing, said of the host (passive) or by the sender (active): Postfix
        # "Host or domain name not found", Sendmail "Host unknown", OpenSMTPD "Domain does not
        # exist", qmail "couldn't find any host named", resolvers' "unable to resolve host".
        rf"re:{_HOST}.{{0,30}}\b(?:unknown|not found|does ?n[o']t exist|not exist)\b|"
        rf"\b(?:couldn'?t|could not|can'?t|cannot|unable to|failed to) (?:find|resolve) "
        rf"(?:any |the |a )?{_HOST}",
        rf"re:\b(?:unknown|no such|non-?existent|invalid)\b.{{0,10}}{_HOST}",
        r"re:\bnxdomain\b",
    ),
    "mailboxfull": (
        r"re:\b(?:mailbox|inbox|mail ?box|quota|disk|storage|mail ?folder)\b.{0,30}\bfull\b",
        r"re:\b(?:mailbox|inbox|mail ?box|quota|disk|storage|mail ?folder)\b.{0,30}\bexceed(?:s|ed)?\b",
        r"re:\bover ?(?:the )?(?:allowed )?quota\b",
        rf"re:{_WHO}.{{0,20}}\btoo many (?:messages|mails)\b",
        r"re:\b(?:insufficient|not enough|no) (?:disk |storage )?space\b",
    ),
    "mesgtoobig": (
        r"re:\b(?:message|mail|e-?mail)\b.{0,20}\btoo (?:large|big)\b",
        r"re:\b(?:message )?size\b.{0,30}\b(?:exceed(?:s|ed)?|too large|limit)\b",
    ),
    "suspend": (
        rf"re:{_WHO}.{{0,30}}\b(?:suspended|disabled|deactivated|locked|frozen)\b",
        rf"re:\b(?:suspended|disabled|deactivated|locked|frozen)\b.{{0,10}}{_WHO}",
    ),
    "norelaying": (
        r"re:\brelay(?:ing)?\b.{0,30}\b(?:denied|not (?:permitted|allowed)|prohibited|refused|rejected)\b",
        r"re:\b(?:no|not|unable to|cannot|can'?t|won'?t) (?:configured to )?relay(?:ing)?\b",
        r"re:\b(?:insecure|open) (?:mail )?relay\b",
        r"re:\bas an? relay\b",
    ),
    "authfailure": (
        r"re:\b(?:spf|dkim|dmarc)\b.{0,40}\b(?:fail|failed|fails|failure|invalid|reject|rejected)\b",
        r"re:\b(?:fail|failed|fails|failure|not pass|does not pass)\b.{0,40}\b(?:spf|dkim|dmarc)\b",
        r"re:\bsender policy framework\b",
        # RFC 7372 X.7.26 "multiple authentication checks failed", and providers' "fails to pass
        # authentication checks": a rejection that names the checks names why.
        r"re:\bauthentication checks?\b(?! (?:passed|succeeded))",
        r"re:\b(?:bad|invalid|broken|missing|no|per (?:its|it'?s))\b.{0,10}\bspf records?\b",
    ),
    "requireptr": (
        r"re:\b(?:ptr|rdns)\b.{0,30}\b(?:record|lookup|missing|fail(?:ed|s|ure)?|invalid|required|mismatch)",
        r"re:\b(?:no|missing|invalid|without|bad) (?:ptr|rdns)\b",
        r"re:\breverse (?:dns|lookup|name)\b",
        r"re:\bip name lookup\b",
    ),
    "spamdetected": (
        r"re:\bspam(?!haus|cop| ?trap| complaints?)(?:ming|mer|my)?\b",
        r"re:\bspam ?(?:profiler|filter|score|signature|check|assassin)",
        r"re:\bunsolicited\b",
        r"re:\bjunk ?mail\b",
    ),
    "virusdetected": (r"re:\b(?:virus|malware|infected)\b",),
    "blocked": (
        r"re:\b(?:black ?list(?:ed)?|block ?list(?:ed)?|deny ?list(?:ed)?|dnsbl|rbl)\b",
        r"re:\b(?:spamhaus|spamcop|sorbs|barracudacentral)\b",
        r"re:\b(?:ip|client|host|server|network)\b.{0,40}\b(?:blocked|banned|blacklisted)\b",
        r"re:\b(?:ip|client|host|server|network)\b.{0,40}\b(?:refused|denied|not allowed)\b",
        r"re:\bnot accepting (?:connections|mail from)\b",
        r"re:\bconnection (?:refused|reset|dropped|closed)\b",
    ),
    "policyviolation": (
        r"re:\bpolic(?:y|ies)\b",
        r"re:\bnot accept(?:ing|ed)? (?:mail|messages?|e-?mails?) (?:with|containing)\b",
    ),
    "toomanyconn": (
        r"re:\btoo many (?:connections|concurrent|sessions|recipients|simultaneous)\b",
        r"re:\bconnection (?:rate|frequency|count|limit)",
        r"re:\b(?:rate|connection) limit(?:ed)?\b",
    ),
    "speeding": (r"re:\btoo (?:fast|quickly)\b", r"re:\b(?:slow down|try again slower)\b"),
    "systemerror": (
        r"re:\b(?:system|internal|server|configuration|config) (?:error|problem|failure)\b",
        r"re:\bldap\b.{0,30}\b(?:error|fail\w*|timeout|unable|lookup)\b",
        r"re:\bunable to (?:contact|connect to|reach)\b.{0,20}\b(?:daemon|ldap|database)\b",
        r"re:\btransaction failed\b",
        r"re:\b(?:server|system) (?:busy|misconfigured)\b",
    ),
    "networkerror": (
        r"re:\b(?:no route|network (?:is )?unreachable|network error)\b",
        # The name service failed (not: found nothing): "name service error", "DNS failure",
        # "malformed or unexpected name server reply".
        r"re:\b(?:name server|nameserver|name service|dns)\b.{0,40}"
        r"\b(?:error|failure|failed|timeout|timed out)\b|"
        r"\bmalformed (?:or unexpected )?(?:name server |dns )?reply\b",
        r"re:\b(?:mail|routing|forwarding) loop\b",
        r"re:\btoo many hops\b",
    ),
    "expired": (
        r"re:\b(?:expired|timed out|time ?out)\b",
        r"re:\b(?:giving|gave) up\b",
        r"re:\bcould not (?:be )?deliver(?:ed)? (?:for|in|within)\b",
        r"re:\b(?:delayed|retr(?:y|ies|ying))\b",
        r"re:\btoo long\b",
        # Undelivered for a stated time, then given up: exim "failing for a long time", sendmail
        # "could not be delivered for 5 days", "cannot send message for 4 days", "aborted after 5 hours".
        r"re:\b(?:for|after) (?:more than |over )?(?:a long time|too long|"
        r"\d+(?:\.\d+)? ?(?:hours?|days?|hour\(s\)|day\(s\)))\b",
    ),
    "notaccept": (
        r"re:\bnull mx\b",
        r"re:\bno mx\b",
        r"re:\b(?:does ?n[o']t|not) (?:accept|receive) (?:e-?)?mail\b(?! with| from| containing| that)",
    ),
    "mailererror": (r"re:\b(?:pipe to|procmail|maildrop)\b", r"re:\bexit (?:code|status)\b"),
    "syntaxerror": (
        r"re:\bsyntax\b",
        r"re:\b(?:unrecognized|unknown|unimplemented|bad) command\b",
        r"re:\bmalformed (?:address|command)\b",
    ),
    "contenterror": (r"re:\b(?:header|mime|content|encoding)\b.{0,30}\b(?:invalid|malformed|illegal)\b",),
    "rejected": (
        r"re:\bsender\b.{0,30}\b(?:rejected|refused|denied|blocked|not allowed|invalid|unknown)\b",
        # A list refusing a post from someone not on it: fml and Mailman "not a member", Mailman
        # "members-only list", Google Groups and Sympa "(not) have permission to post/send".
        r"re:\b(?:not a member|non-?member|members[ -]only)\b|"
        r"\b(?:not|n't) (?:have )?(?:the )?(?:permission|allowed|permitted|authori[sz]ed) to "
        r"(?:post|send (?:messages )?to (?:this|the) (?:list|group))\b",
    ),
    "filtered": (r"re:\b(?:filtered|refuses? to (?:receive|accept))\b",),
    "securityerror": (r"re:\b(?:unauthenticated (?:senders?|users?)|authentication (?:is )?required)\b",),
    "badreputation": (r"re:\b(?:ip|sender|sending|domain|poor|low|bad)\b.{0,20}\breputation\b",),
    # A name server's "try again" (SERVFAIL) says nothing about whether the domain exists.
    # The resolver's TRY_AGAIN in its usual spellings: Postfix "Host not found, try again", the C
    # library's "Host name lookup failure" (hstrerror) and "Temporary failure in name resolution".
    "dns-temporary": (
        r"re:\bnot found, try again\b|\bhost ?name lookup failure\b",
        r"re:\btemporary failure in name resolution\b",
    ),
}
# Wording fixed by standards rather than by any one mail system: the reply texts of RFC 5321, the
# descriptions of the enhanced status codes (RFC 3463, RFC 7505, the IANA registry) and the operating
# system's error strings (POSIX strerror, getaddrinfo) that every MTA quotes. A measurement never
# attributes these to a family (see standard_phrases()).
_STANDARD: dict[str, tuple[str, ...]] = {
    "userunknown": (
        "mailbox unavailable",  # RFC 5321 450/550
        "no valid recipients",  # RFC 5321 554
        "bad destination mailbox address",  # X.1.1, X.1.3
    ),
    "hostunknown": ("bad destination system address", "name or service not known"),  # X.1.2, EAI_NONAME
    "hasmoved": ("mailbox has moved",),  # X.1.6
    "rejected": (
        "bad sender's mailbox address syntax",  # X.1.7
        "bad sender's system address",  # X.1.8
        "delivery not authorized, message refused",  # X.7.1
    ),
    "suspend": ("mailbox disabled",),  # X.2.1
    "mailboxfull": (
        "mailbox full",  # X.2.2
        "exceeded storage allocation",  # RFC 5321 552
        "disk quota exceeded",  # EDQUOT
        "disc quota exceeded",
        "no space left on device",  # ENOSPC
    ),
    "mesgtoobig": (
        "message length exceeds administrative limit",
        "message too big for system",
    ),  # X.2.3, X.3.4
    "systemfull": ("mail system full", "insufficient system storage"),  # X.3.1, RFC 5321 452
    "notaccept": (
        "system not accepting network messages",  # X.3.2
        "recipient address has null mx",  # X.1.10, RFC 7505
        "no smtp service here",  # RFC 5321 554 at connection
    ),
    "expired": (
        "no answer from host",
        "delivery time expired",
        "connection timed out",
    ),  # X.4.1, X.4.7, ETIMEDOUT
    "networkerror": (
        "bad connection",  # X.4.2
        "routing loop detected",  # X.4.6
        "no route to host",  # EHOSTUNREACH
        "network is unreachable",  # ENETUNREACH
        "host is unreachable",
        "temporary failure in name resolution",  # EAI_AGAIN
    ),
    "blocked": ("connection refused", "connection reset by peer"),  # ECONNREFUSED, ECONNRESET
    "toomanyconn": ("too many recipients",),  # RFC 5321 452, X.5.3
    "systemerror": ("local error in processing", "transaction failed"),  # RFC 5321 451, 554
    "syntaxerror": (
        "syntax error",  # RFC 5321 500/501
        "command unrecognized",
        "command not implemented",  # 502
        "bad sequence of commands",  # 503
    ),
    "securityerror": ("message integrity failure", "cryptographic failure"),  # X.7.7, X.7.5
    "requireptr": ("reverse dns validation failed",),  # X.7.25
    "authfailure": (
        "spf validation failed",
        "dkim validation failed",
        "multiple authentication checks failed",
    ),
}
for _name, _forms in _STANDARD.items():
    _PHRASES[_name] = _PHRASES[_name] + tuple(f for f in _forms if f not in _PHRASES[_name])
for _name, _forms in _CONCEPTS.items():
    _PHRASES[_name] = _PHRASES.get(_name, ()) + _forms


def _alternatives(phrase: str) -> list[str]:
    """The forms of one table entry: a regular expression split at its top-level ``|`` (outside groups
    and character classes); a literal phrase is one form."""
    if not phrase.startswith("re:"):
        return [phrase]
    regex = phrase[3:]
    forms: list[str] = []
    depth, start, index, in_class = 0, 0, 0, False
    while index < len(regex):
        char = regex[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            forms.append(regex[start:index])
            start = index + 1
        index += 1
    forms.append(regex[start:])
    return [f"re:{form}" for form in forms]


# A measurement attributes each form to the families whose messages show it (see RuleSet): an entry
# joining forms with a top-level "|" is split back into them here, so that joining never hides which
# family a form was learnt from. Matching is the same either way (the union of the forms).
for _name, _phrases in _PHRASES.items():
    _PHRASES[_name] = tuple(dict.fromkeys(form for phrase in _phrases for form in _alternatives(phrase)))


def _trie_regex(words: list[str]) -> str:
    """One regular expression matching any of ``words``, factored as a trie: the regex engine then
    follows one branch per character instead of trying every phrase at every position."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def render(node: dict[str, Any]) -> str:
        ends = "" in node
        branches = [re.escape(char) + render(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 and not ends else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if ends else body

    return render(trie)


# An unbounded ".+" or "[^ ]+" in a phrase rescans the rest of the text from every place its prefix
# occurs: quadratic on hostile input ("user user user ...", "<<<<..."). A phrase is about one sentence
# of a reply, so each such repetition is bounded.
_UNBOUNDED = re.compile(r"(?<!\\)(\.|\[\^[^\]]*\])([+*])(?![?+])")
_SPAN = 200


def _bounded(regex: str) -> str:
    """``regex`` with every unbounded ``.+``/``.*``/``[^...]+`` limited to a sentence's length."""
    return _UNBOUNDED.sub(lambda m: f"{m.group(1)}{{{1 if m.group(2) == '+' else 0},{_SPAN}}}", regex)


def _compile(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    literals = sorted({p for p in phrases if not p.startswith("re:")})
    parts = [_bounded(p[3:]) for p in phrases if p.startswith("re:")]
    if literals:
        parts.insert(0, _trie_regex(literals))
    return re.compile("|".join(f"(?:{p})" for p in parts)) if parts else None


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Which of the classifier's rules are in force; all of them by default.

    Used to measure generalisation honestly (``bench/bench_classify.py``, leave-one-family-out): when
    the samples of one MTA or provider family are scored, the phrases only that family's samples
    contain (``without_phrases``: (table, phrase) pairs, see :func:`phrase_tables`) and the rules taken
    from that family's own documentation (``without_sources``, see ``SOURCES`` in ``_vendors``) are off.
    """

    without_phrases: frozenset[tuple[str, str]] = frozenset()
    without_sources: frozenset[str] = frozenset()


class Rules:
    """A :class:`RuleSet` made ready for matching (each phrase table compiled when first used: compiling
    them all took a third of a second of every start, and a node may never see a bounce)."""

    __slots__ = ("_off", "_patterns", "sources_off")

    def __init__(self, ruleset: RuleSet) -> None:
        self._off = ruleset.without_phrases
        self._patterns: dict[str, re.Pattern[str] | None] = {}
        self.sources_off = ruleset.without_sources

    def pattern(self, table: str) -> re.Pattern[str] | None:
        """The compiled phrases of ``table`` in force (None: none)."""
        try:
            return self._patterns[table]
        except KeyError:
            phrases = tuple(p for p in _PHRASES.get(table, ()) if (table, p) not in self._off)
            # Two threads may both compile it; either result is the same.
            compiled = self._patterns[table] = _compile(phrases)
            return compiled

    def allows(self, source: str) -> bool:
        """True unless the rules documented for ``source`` (a vendor family) are switched off."""
        return source not in self.sources_off

    def has(self, table: str, text: str) -> bool:
        """True when the normalised ``text`` contains one of the phrases of ``table``."""
        pattern = self.pattern(table)
        return pattern is not None and pattern.search(text) is not None


@functools.lru_cache(maxsize=256)
def compiled(ruleset: RuleSet) -> Rules:
    """The compiled form of ``ruleset`` (cached: a measurement run uses one per family)."""
    return Rules(ruleset)


ALL_RULES = compiled(RuleSet())


def phrase_tables() -> dict[str, tuple[str, ...]]:
    """Every phrase table (name -> phrases); a phrase starting with ``re:`` is a regular expression."""
    return dict(_PHRASES)


def standard_phrases() -> frozenset[tuple[str, str]]:
    """(table, phrase) pairs whose wording comes from standards (RFCs, the IANA registry, POSIX), not
    from any mail system's own messages."""
    return frozenset((name, phrase) for name, phrases in _STANDARD.items() for phrase in phrases)


def phrase_in(phrase: str, text: str) -> bool:
    """True when one phrase of a table (as :func:`phrase_tables` gives it) occurs in normalised ``text``."""
    if phrase.startswith("re:"):
        return re.search(_bounded(phrase[3:]), text) is not None
    return phrase in text


# SMTP commands a server answers before it has seen any of the message.
_BEFORE_DATA = frozenset({"CONN", "EHLO", "HELO", "STARTTLS", "AUTH", "MAIL", "RCPT"})
_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower-case ``text`` and collapse runs of whitespace (what the phrase tables expect)."""
    return _SPACES.sub(" ", text).strip().lower()


def match_reason(name: str, text: str, rules: Rules = ALL_RULES) -> bool:
    """True when the normalised ``text`` contains one of the phrases of reason ``name``."""
    return rules.has(name, text)


def status_reason(status: str) -> str:
    """The reason an enhanced status code stands for, or ``""`` when it is not specific."""
    return _STATUS.get(status, "")


# x.y.z where x is 2, 4 or 5 and y 0-7; not inside a longer dotted number, a version or an IP address.
_STATUS_RE = re.compile(r"(?<![\w.\-/])([245])\.([0-7])\.(\d{1,3})(?![\w]|\.\d)")
_REPLY_RE = re.compile(r"(?<![\w.\-:/#=+])([245][0-5]\d)(?=[ \-]|$|\.\s|\s|\)|,|;|:(?!\d))")


def find_status(text: str, klass: str = "") -> str:
    """The first specific enhanced status code in ``text`` (x.0.0 and 4.4.7 only if nothing better)."""
    fallback = ""
    for match in _STATUS_RE.finditer(text):
        if klass and match.group(1) != klass:
            continue
        code = f"{match.group(1)}.{match.group(2)}.{int(match.group(3))}"
        if code.endswith(".0.0") or code == "4.4.7":
            fallback = fallback or code
            continue
        return code
    return fallback


def find_reply_code(text: str, klass: str = "") -> str:
    """The first SMTP reply code (2xx/4xx/5xx) in ``text``, of class ``klass`` when given."""
    for match in _REPLY_RE.finditer(text):
        code = match.group(1)
        if klass and code[0] != klass:
            continue
        if code[0] == "2" and not klass:
            continue  # "250 OK" lines of a transcript are not the error
        return code
    return ""


@dataclass(slots=True)
class Evidence:
    """What is known about one recipient's failure, as input to :func:`decide`."""

    status: str = ""
    reply_code: str = ""
    diagnostic: str = ""  # normalised (see :func:`normalise`)
    command: str = ""  # CONN, EHLO, HELO, MAIL, RCPT, DATA or ""
    action: str = ""  # failed, delayed, delivered, relayed, expanded or ""
    diagnostic_type: str = ""  # SMTP, X-UNIX, X-POSTFIX, ... (upper-case) or ""
    context: str = ""  # normalised text of the whole notification, for when the diagnostic is empty
    rules: Rules = ALL_RULES
    _seen: dict[str, bool] = field(default_factory=dict, repr=False)

    def has(self, name: str) -> bool:
        """True when the diagnostic contains a phrase of reason ``name`` (each list is searched once)."""
        found = self._seen.get(name)
        if found is None:
            found = self._seen[name] = self.rules.has(name, self.diagnostic)
        return found


def _userunknown(ev: Evidence, temp: str) -> bool:
    if temp == "suspend":
        return False
    if temp == "userunknown":
        # A 5.1.1 whose text really says something else (relaying, blocking, a full mailbox...).
        return not any(
            ev.has(r) for r in ("norelaying", "blocked", "mailboxfull", "hasmoved", "rejected")
        ) or ev.has("userunknown")
    if temp in ("", "filtered", "onhold", "undefined", "systemerror", "securityerror") and (
        ev.has("userunknown-definite")
    ):
        return True
    if ev.status[1:] in (".1.3", ".1.10") and ev.has("userunknown") and not ev.has(temp):
        # An addressing status (RFC 3463 X.1.x) about the recipient whose own meaning the text does
        # not bear out (a syntax error, a null MX), while the text says the mailbox is unknown.
        return True
    # Otherwise only a refusal of RCPT TO proves the mailbox unknown; after DATA it is a filter.
    if ev.command == "RCPT":
        return ev.has("userunknown")
    # No SMTP reply quoted and no status: the reporting system's own directory lookup (Exchange,
    # Domino, GroupWise "recipient not recognized"), not a remote server's reply after DATA.
    return not (ev.command or ev.reply_code or temp) and ev.has("userunknown") and not ev.has("filtered")


def _filtered(ev: Evidence, temp: str) -> bool:
    if temp in ("suspend", "rejected"):
        return False
    if temp == "filtered":
        return ev.has("userunknown") or ev.has("filtered")
    if ev.command in _BEFORE_DATA:
        return False
    # After DATA (or when the command is unknown) a "no such user" is the recipient's filter speaking.
    return ev.has("filtered") or ev.has("userunknown")


def _rejected(ev: Evidence, temp: str) -> bool:
    if temp == "rejected":
        return True
    text = ev.diagnostic
    if "recipient address rejected" in text or "5.1.0 address rejected" in text:
        return False
    if ev.command == "MAIL":
        return ev.has("rejected")
    if ev.command == "DATA":
        return temp != "userunknown" and ev.has("rejected")
    if temp in ("", "securityerror", "systemerror", "onhold", "undefined"):
        return ev.has("rejected")
    return False


def _first_pass(ev: Evidence, temp: str) -> str:
    """Reasons decided by the status code together with the diagnostic (Sisimai's ``true()`` checks)."""
    if temp == "mailboxfull" or (ev.has("mailboxfull") and temp != "systemfull"):
        # Unless the status says the whole mail system is out of storage (RFC 3463 X.3.1, X.4.5):
        # then "insufficient disk space" is the server's disk, not the recipient's mailbox.
        return "mailboxfull"
    if temp == "mesgtoobig" or (temp != "exceedlimit" and ev.has("mesgtoobig")):
        return "mesgtoobig"
    if temp == "exceedlimit" or ev.has("exceedlimit"):
        return "exceedlimit"
    if ev.has("suspend"):
        return "suspend"
    if temp == "hasmoved" or ev.has("hasmoved"):
        return "hasmoved"
    if ev.has("norelaying"):
        return "norelaying"
    if temp == "authfailure" or ev.has("authfailure"):
        return "authfailure"
    if temp == "requireptr" or ev.has("requireptr"):
        return "requireptr"
    if ev.has("badreputation"):
        return "badreputation"
    if ev.command == "MAIL" and temp in ("userunknown", "hostunknown"):
        # An addressing status (RFC 3463 X.1.x) in reply to MAIL FROM is about the sender's address
        # (RFC 5321 3.3): the recipient was never looked at.
        return "rejected"
    if ev.command in ("CONN", "EHLO", "HELO") and ev.status[:1] != "2" and ev.status[1:3] != ".4":
        # Refused before the envelope: the server objects to the connecting host itself (unless the
        # status says the connection itself failed: RFC 3463 X.4.x, network and routing).
        return "blocked"
    if _userunknown(ev, temp):
        return "userunknown"
    if _filtered(ev, temp):
        return "filtered"
    if _rejected(ev, temp):
        return "rejected"
    if (temp == "hostunknown" and not ev.has("networkerror")) or (
        ev.has("hostunknown") and not ev.has("dns-temporary")
    ):
        return "hostunknown"
    if temp == "spamdetected" or ev.has("spamdetected"):
        return "spamdetected"
    if ev.has("speeding"):
        return "speeding"
    if temp == "toomanyconn" or ev.has("toomanyconn"):
        return "toomanyconn"
    if temp == "blocked" or ev.has("blocked"):
        return "blocked"
    return ""


_RETRY = frozenset(
    {"", "undefined", "onhold", "systemerror", "securityerror", "expired", "suspend", "networkerror"}
    | {"hostunknown", "userunknown"}
)
_SECOND_ORDER = (
    "notaccept",
    "mailboxfull",
    "spamdetected",
    "policyviolation",
    "virusdetected",
    "notcompliantrfc",
    "norelaying",
    "authfailure",
    "badreputation",
    "securityerror",
    "systemerror",
    "hostunknown",
    "networkerror",
    "speeding",
    "suspend",
    "expired",
    "contenterror",
    "systemfull",
    "notaccept",
    "mailererror",
)


def _second_pass(ev: Evidence, temp: str) -> str:
    """Phrase lists for what the first pass left open, then the status class, action and command."""
    reason = temp
    if reason in _RETRY or ev.diagnostic_type not in ("", "SMTP"):
        for name in _SECOND_ORDER:
            if ev.has(name) and not (name == "hostunknown" and ev.has("dns-temporary")):
                return name
        if reason:
            return reason
        klass = ev.status[:3]
        if klass in ("5.6", "4.6"):
            return "contenterror"
        if klass in ("5.7", "4.7"):
            return "securityerror"
        if ev.command in ("HELO", "EHLO", "CONN"):
            return "blocked"
        if ev.diagnostic_type == "X-UNIX":
            return "mailererror"
        if re.fullmatch(r"[45]0[0-7]", ev.reply_code or ""):
            return "syntaxerror"
        if ev.action.startswith(("delayed", "expired")):
            return "expired"
        if ev.command in ("HELO", "EHLO", "CONN"):
            return "blocked"
        if ev.command == "MAIL" and not ev.status:
            # Only the refused command is known (qmail and friends): the sender was refused.
            return "rejected"
    return reason


def decide(ev: Evidence) -> str:
    """The Sisimai reason for one recipient's failure (``onhold`` when there is text but no verdict)."""
    reason = _decide(ev)
    if ev.status.startswith("4") or (not ev.status and ev.reply_code.startswith("4")):
        # A temporary failure cannot prove an address dead: DNS trouble or a delayed delivery.
        if reason == "hostunknown":
            return "networkerror"
        if reason in ("userunknown", "hasmoved") and ev.action.startswith("delayed"):
            return "expired"
    return reason


def _local_mailer(ev: Evidence) -> bool:
    """A local delivery program's own failure (X-Unix, or X-Postfix quoting a command's output):
    its words ("no such user" from procmail...) are not a mail system's verdict. Postfix's own
    agents' words (local(8) "unknown user", smtp(8) "host not found") are."""
    if ev.diagnostic_type == "X-UNIX":
        return True
    return (
        ev.diagnostic_type == "X-POSTFIX"
        and not _REMOTE_REPLY.search(ev.diagnostic)
        and _COMMAND_OUTPUT.search(ev.diagnostic) is not None
    )


_REMOTE_REPLY = re.compile(r"\bsaid: [245]\d\d\b|\b[45]\d\d[ -][245]\.\d{1,3}\.\d{1,3}\b")
# How Postfix's local(8) and pipe(8) report a delivery command's failure.
_COMMAND_OUTPUT = re.compile(r"\bcommand (?:died|output|failed|time limit)|\bpipe\b|\bexit status\b")


# RFC 5321 4.2.2 reply codes that name one cause: 451 "local error in processing", 452 "insufficient
# system storage", 552 "exceeded storage allocation".
_REPLY_MEANING = {"451": "systemerror", "452": "systemfull", "552": "mailboxfull"}


def _decide(ev: Evidence) -> str:
    if ev.status.startswith("2.") or ev.action in ("delivered", "relayed", "expanded"):
        return "delivered"
    temp = status_reason(ev.status)
    reason = ""
    if not _local_mailer(ev):
        reason = _first_pass(ev, temp)
    if not reason:
        reason = _second_pass(ev, temp)
    if not reason and ev.context and ev.context != ev.diagnostic:
        # Nothing in the recipient's own lines: let the whole notification speak.
        sub = Evidence(
            status=ev.status,
            reply_code=ev.reply_code,
            diagnostic=ev.context,
            command=ev.command,
            action=ev.action,
            diagnostic_type=ev.diagnostic_type,
            rules=ev.rules,
        )
        reason = "" if _local_mailer(ev) else _first_pass(sub, temp)
        reason = reason or _second_pass(sub, temp)
    if not reason:
        if ev.action.startswith("delayed"):
            return "expired"
        # Nothing in the words: the reply code's own meaning (RFC 5321 4.2.2), where it names one.
        reason = _REPLY_MEANING.get(ev.reply_code, "")
        if reason:
            return reason
        if ev.diagnostic or ev.status:
            return "onhold"
        return "undefined"
    return reason
