"""Tests of the Send API v3.1 request validation (mailstack.api._sendv31)."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mailstack.api._sendv31 import (
    MAX_MESSAGES,
    MessageErrors,
    ParsedMessage,
    RecipientResult,
    RequestError,
    SendError,
    SendRequest,
    error_message_json,
    overall_status,
    parse_send_request,
    sandbox_message_json,
    send_response_json,
    success_message_json,
)
from mailstack.model import Address, Attachment, MessageSpec

B64_HELLO = base64.b64encode(b"hello world").decode()


def message(**overrides: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "From": {"Email": "pilot@example.com", "Name": "Pilot"},
        "To": [{"Email": "passenger1@example.com", "Name": "Passenger 1"}],
        "Subject": "Your flight plan",
        "TextPart": "Hello",
    }
    for key, value in overrides.items():
        if value is _DROP:
            msg.pop(key, None)
        else:
            msg[key] = value
    return msg


_DROP = object()


def parse_one(msg: dict[str, Any], **kwargs: Any) -> ParsedMessage | MessageErrors:
    result = parse_send_request({"Messages": [msg]}, **kwargs)
    assert len(result.results) == 1
    return result.results[0]


def ok(msg: dict[str, Any], **kwargs: Any) -> ParsedMessage:
    result = parse_one(msg, **kwargs)
    assert isinstance(result, ParsedMessage), result
    return result


def errors(msg: dict[str, Any], **kwargs: Any) -> list[SendError]:
    result = parse_one(msg, **kwargs)
    assert isinstance(result, MessageErrors), result
    assert result.errors
    return list(result.errors)


def single_error(msg: dict[str, Any], **kwargs: Any) -> SendError:
    errs = errors(msg, **kwargs)
    assert len(errs) == 1, [e.to_json() for e in errs]
    return errs[0]


def assert_error(err: SendError, code: str, *related: str, status: int = 400) -> None:
    assert err.error_code == code, err.to_json()
    assert err.status_code == status
    assert list(err.error_related_to) == list(related), err.to_json()
    assert uuid.UUID(err.error_identifier).version == 4


def request_error(body: object) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse_send_request(body)
    return info.value


# ---------------------------------------------------------------------------------------------------
# Valid messages
# ---------------------------------------------------------------------------------------------------


def test_minimal_message() -> None:
    request = parse_send_request({"Messages": [message()]})
    assert request == SendRequest(sandbox=False, advance_error_handling=False, results=request.results)
    spec = ok(message()).spec
    assert spec.sender == Address("pilot@example.com", "Pilot")
    assert spec.to == (Address("passenger1@example.com", "Passenger 1"),)
    assert spec.cc == () and spec.bcc == ()
    assert spec.subject == "Your flight plan"
    assert spec.text == "Hello" and spec.html is None
    assert spec.priority == 2
    assert spec.track_opens == spec.track_clicks == "account_default"
    assert spec.bulk is False and spec.campaign == ""
    assert spec.reply_to is None and spec.envelope_sender is None


def test_name_is_optional_and_html_only_is_enough() -> None:
    spec = ok(message(From={"Email": "pilot@example.com"}, TextPart=_DROP, HTMLPart="<p>Hi</p>")).spec
    assert spec.sender == Address("pilot@example.com", "")
    assert spec.text is None and spec.html == "<p>Hi</p>"


def test_full_message() -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    parsed = ok(
        {
            "From": {"Email": "pilot@example.com", "Name": "Mailjet Pilot"},
            "Sender": {"Email": "bounces@example.com", "Name": "Ops"},
            "To": [{"Email": "p1@example.com", "Name": "P 1"}, {"Email": "p2@example.com"}],
            "Cc": [{"Email": "copilot@example.com", "Name": "Copilot"}],
            "Bcc": [{"Email": "atc@example.com"}],
            "ReplyTo": {"Email": "support@example.com", "Name": "Support"},
            "Subject": "Subject\twith tab",
            "TextPart": "Dear {{var:name}},\r\nhello",
            "HTMLPart": '<h3>Dear {{var:name}}</h3><img src="cid:id1">',
            "TemplateLanguage": True,
            "TemplateErrorReporting": {"Email": "dev@example.com", "Name": "Dev"},
            "TemplateErrorDeliver": True,
            "Variables": {"name": "Ann", "items": [1, {"a": None}]},
            "Attachments": [
                {"ContentType": "text/plain", "Filename": "test.txt", "Base64Content": B64_HELLO}
            ],
            "InlinedAttachments": [
                {"ContentType": "image/png", "Filename": "logo.png", "ContentID": "id1", "Base64Content": png}
            ],
            "Priority": 3,
            "CustomCampaign": "SendAPI_campaign",
            "DeduplicateCampaign": True,
            "TrackOpens": "enabled",
            "TrackClicks": "disabled",
            "CustomID": "PassengerEticket1234",
            "EventPayload": "Eticket,1234,row,15,seat,B",
            "MonitoringCategory": "Category1",
            "URLTags": "param1=1&param2=2",
            "Headers": {"X-My-Header": "X2332X-324-432-534"},
        }
    )
    spec = parsed.spec
    assert spec == MessageSpec(
        sender=Address("pilot@example.com", "Mailjet Pilot"),
        to=(Address("p1@example.com", "P 1"), Address("p2@example.com", "")),
        cc=(Address("copilot@example.com", "Copilot"),),
        bcc=(Address("atc@example.com", ""),),
        reply_to=Address("support@example.com", "Support"),
        envelope_sender=Address("bounces@example.com", "Ops"),
        subject="Subject\twith tab",
        text="Dear {{var:name}},\r\nhello",
        html='<h3>Dear {{var:name}}</h3><img src="cid:id1">',
        attachments=(Attachment("test.txt", "text/plain", b"hello world"),),
        inline_attachments=(Attachment("logo.png", "image/png", b"\x89PNG fake", "id1"),),
        headers=(("X-My-Header", "X2332X-324-432-534"),),
        custom_id="PassengerEticket1234",
        event_payload="Eticket,1234,row,15,seat,B",
        campaign="SendAPI_campaign",
        track_opens="enabled",
        track_clicks="disabled",
        priority=3,
        template_language=True,
        variables={"name": "Ann", "items": [1, {"a": None}]},
        template_error_reporting=Address("dev@example.com", "Dev"),
        template_error_deliver=True,
        bulk=True,
    )
    assert parsed.deduplicate_campaign is True
    assert parsed.monitoring_category == "Category1"
    assert parsed.url_tags == "param1=1&param2=2"
    assert MessageSpec.from_json(spec.to_json()) == spec


def test_root_flags_and_case_insensitive_property_names() -> None:
    request = parse_send_request(
        {
            "messages": [
                {
                    "from": {"email": "pilot@example.com"},
                    "to": [{"EMAIL": "p@example.com", "name": "P"}],
                    "HtmlPart": "<b>hi</b>",
                    "variables": {"Day": "Monday"},
                }
            ],
            "SANDBOXMODE": True,
            "AdvanceErrorHandling": True,
        }
    )
    assert request.sandbox is True and request.advance_error_handling is True
    result = request.results[0]
    assert isinstance(result, ParsedMessage)
    assert result.spec.html == "<b>hi</b>"
    assert result.spec.to == (Address("p@example.com", "P"),)
    assert result.spec.variables == {"Day": "Monday"}


def test_unknown_properties_are_ignored_and_null_means_absent() -> None:
    spec = ok(message(Unknown={"x": 1}, Cc=None, Subject=None, Priority=None, HTMLPart=None)).spec
    assert spec.cc == () and spec.subject == "" and spec.priority == 2 and spec.html is None
    request = parse_send_request({"Messages": [message()], "Whatever": 1, "SandboxMode": None})
    assert request.sandbox is False


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("用户@例子.广告", "用户@例子.广告"),
        ("Üser@exämple.de", "Üser@exämple.de"),
        ("jörg@bücher.example.com", "jörg@bücher.example.com"),
        ("x@EXAMPLE.COM", "x@example.com"),
        ("user+tag@xn--bcher-kva.example", "user+tag@bücher.example"),
    ],
)
def test_internationalized_addresses(given: str, normalized: str) -> None:
    spec = ok(message(To=[{"Email": given, "Name": "Jörg Müller 日本"}], From={"Email": given})).spec
    assert spec.to == (Address(normalized, "Jörg Müller 日本"),)
    assert spec.sender.email == normalized


def test_duplicate_recipients_are_counted_and_kept_once() -> None:
    spec = ok(
        message(
            To=[{"Email": "a@example.com"}, {"Email": "A@example.com"}],
            Cc=[{"Email": "a@example.com"}, {"Email": "b@example.com"}],
            Bcc=[{"Email": "b@example.com"}, {"Email": "c@example.com"}],
        )
    ).spec
    assert [a.email for a in spec.to] == ["a@example.com"]
    assert [a.email for a in spec.cc] == ["b@example.com"]
    assert [a.email for a in spec.bcc] == ["c@example.com"]


def test_recipient_limit_counts_duplicates_once() -> None:
    to = [{"Email": f"r{i}@example.com"} for i in range(30)]
    cc = [{"Email": f"r{i}@example.com"} for i in range(10, 50)]  # 20 new ones -> 50 distinct
    spec = ok(message(To=to, Cc=cc)).spec
    assert len(spec.to) + len(spec.cc) == 50


# ---------------------------------------------------------------------------------------------------
# Globals
# ---------------------------------------------------------------------------------------------------


def test_globals_are_merged_into_every_message() -> None:
    request = parse_send_request(
        {
            "Globals": {
                "From": {"Email": "pilot@example.com", "Name": "Global Pilot"},
                "Subject": "Global subject",
                "Priority": 1,
                "Headers": {"X-Global": "g", "X-Shared": "global"},
                "Variables": {"var1": "value1", "var2": "value2"},
                "Cc": [{"Email": "cc-global@example.com"}],
                "Attachments": [
                    {"ContentType": "text/plain", "Filename": "g.txt", "Base64Content": B64_HELLO}
                ],
                "TextPart": "global text",
            },
            "Messages": [
                {"To": [{"Email": "p1@example.com"}]},
                {
                    "From": {"Email": "other@example.com"},
                    "To": [{"Email": "p2@example.com"}],
                    "Subject": "Your promo code!",
                    "Headers": {"x-shared": "message"},
                    "Variables": {"var1": "value1_bis", "var3": "value3"},
                    "Cc": [{"Email": "cc-message@example.com"}],
                    "Attachments": [
                        {"ContentType": "text/plain", "Filename": "m.txt", "Base64Content": B64_HELLO}
                    ],
                },
            ],
        }
    )
    first, second = request.results
    assert isinstance(first, ParsedMessage) and isinstance(second, ParsedMessage)
    assert first.spec.sender == Address("pilot@example.com", "Global Pilot")
    assert first.spec.subject == "Global subject" and first.spec.priority == 1
    assert first.spec.text == "global text"
    # objects merged, message wins; scalars replaced; arrays appended
    assert second.spec.sender == Address("other@example.com", "Global Pilot")
    assert second.spec.subject == "Your promo code!"
    assert dict(second.spec.headers) == {"X-Global": "g", "x-shared": "message"}
    assert second.spec.variables == {"var1": "value1_bis", "var2": "value2", "var3": "value3"}
    assert [a.email for a in second.spec.cc] == ["cc-global@example.com", "cc-message@example.com"]
    assert [a.filename for a in second.spec.attachments] == ["g.txt", "m.txt"]


def test_globals_cannot_set_to() -> None:
    err = request_error({"Globals": {"To": [{"Email": "x@example.com"}]}, "Messages": [message()]})
    assert err.status_code == 400
    assert err.payload["ErrorCode"] == "mj-0005"
    assert err.payload["ErrorRelatedTo"] == ["Globals.To"]


def test_globals_must_be_an_object() -> None:
    err = request_error({"Globals": [], "Messages": [message()]})
    assert err.payload["ErrorCode"] == "mj-0004"
    assert err.payload["ErrorRelatedTo"] == ["Globals"]


def test_invalid_global_value_is_reported_in_every_message() -> None:
    request = parse_send_request({"Globals": {"Priority": 9}, "Messages": [message(), message()]})
    for result in request.results:
        assert isinstance(result, MessageErrors)
        assert_error(result.errors[0], "mj-0005", "Priority")


# ---------------------------------------------------------------------------------------------------
# Request-level errors
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, [], [{"Messages": []}], "Messages", 42, 1.5, True])
def test_body_not_an_object(body: object) -> None:
    err = request_error(body)
    assert err.status_code == 400
    assert set(err.payload) == {"ErrorIdentifier", "ErrorCode", "StatusCode", "ErrorMessage"}
    assert err.payload["ErrorCode"] == "mj-0002"
    assert err.payload["StatusCode"] == 400
    assert err.payload["ErrorMessage"] == "Malformed JSON, please review the syntax and properties types."
    assert uuid.UUID(err.payload["ErrorIdentifier"]).version == 4


@pytest.mark.parametrize(
    ("body", "code", "related"),
    [
        ({}, "mj-0003", ["Messages"]),
        ({"Messages": None}, "mj-0003", ["Messages"]),
        ({"Messages": {}}, "mj-0004", ["Messages"]),
        ({"Messages": "x"}, "mj-0004", ["Messages"]),
        ({"Messages": []}, "mj-0007", ["Messages"]),
        ({"Messages": [message()] * (MAX_MESSAGES + 1)}, "mj-0008", ["Messages"]),
        ({"Messages": [message()], "SandboxMode": "true"}, "mj-0004", ["SandboxMode"]),
        ({"Messages": [message()], "SandboxMode": 1}, "mj-0004", ["SandboxMode"]),
        ({"Messages": [message()], "AdvanceErrorHandling": "yes"}, "mj-0004", ["AdvanceErrorHandling"]),
    ],
)
def test_request_errors(body: dict[str, Any], code: str, related: list[str]) -> None:
    err = request_error(body)
    assert err.status_code == 400
    assert err.payload == {
        "ErrorIdentifier": err.payload["ErrorIdentifier"],
        "ErrorCode": code,
        "StatusCode": 400,
        "ErrorMessage": err.payload["ErrorMessage"],
        "ErrorRelatedTo": related,
    }
    assert err.payload["ErrorMessage"]
    json.dumps(err.payload)


def test_fifty_messages_are_allowed() -> None:
    request = parse_send_request({"Messages": [message()] * MAX_MESSAGES})
    assert len(request.results) == MAX_MESSAGES
    assert all(isinstance(r, ParsedMessage) for r in request.results)


# ---------------------------------------------------------------------------------------------------
# Message-level errors
# ---------------------------------------------------------------------------------------------------


def test_no_content() -> None:
    err = single_error(message(TextPart=_DROP))
    assert_error(err, "send-0003", "HTMLPart", "TextPart", "TemplateID")
    assert err.error_message == 'At least "HTMLPart", "TextPart" or "TemplateID" must be provided.'
    assert_error(
        single_error(message(TextPart="", HTMLPart="")), "send-0003", "HTMLPart", "TextPart", "TemplateID"
    )


def test_template_id_is_refused_clearly() -> None:
    err = single_error(message(TextPart=_DROP, TemplateID=1234, TemplateLanguage=True))
    assert_error(err, "send-0010", "TemplateID")
    assert "templates are not supported" in err.error_message
    # a stored template may carry its own From: only the template error is reported
    assert_error(single_error(message(From=_DROP, TextPart=_DROP, TemplateID=5)), "send-0010", "TemplateID")


def test_template_id_type() -> None:
    err = single_error(message(TemplateID="1234"))
    assert_error(err, "mj-0004", "TemplateID")
    assert err.error_message == 'Type mismatch. Expected type "int64".'


@pytest.mark.parametrize(
    ("from_", "code", "related"),
    [
        (_DROP, "mj-0003", "From"),
        ({"Name": "Pilot"}, "mj-0003", "From.Email"),
        ({"Email": None}, "mj-0003", "From.Email"),
        ({"Email": ""}, "mj-0012", "From.Email"),
        ({"Email": "not-an-email"}, "mj-0013", "From.Email"),
        ({"Email": "Pilot <pilot@example.com>"}, "mj-0013", "From.Email"),
        ({"Email": "pilot@localhost"}, "mj-0013", "From.Email"),
        ({"Email": "a" * 250 + "@example.com"}, "mj-0013", "From.Email"),
        ({"Email": 12}, "mj-0004", "From.Email"),
        ("pilot@example.com", "mj-0004", "From"),
        ([{"Email": "pilot@example.com"}], "mj-0004", "From"),
    ],
)
def test_invalid_from(from_: object, code: str, related: str) -> None:
    assert_error(single_error(message(From=from_)), code, related)


def test_invalid_email_message_format() -> None:
    err = single_error(message(To=[{"Email": "passenger1@example.com"}, {"Email": "nope"}]))
    assert_error(err, "mj-0013", "To[1].Email")
    assert err.error_message == '"nope" is an invalid email address.'
    assert single_error(message(From="x")).error_message == 'Type mismatch. Expected type "emailIn".'


@pytest.mark.parametrize(
    ("to", "code"),
    [
        (_DROP, "mj-0003"),
        ([], "mj-0007"),
        ("p@example.com", "mj-0004"),
        ({"Email": "p@example.com"}, "mj-0004"),
    ],
)
def test_to_is_mandatory_and_not_empty(to: object, code: str) -> None:
    assert_error(single_error(message(To=to, Cc=[{"Email": "cc@example.com"}])), code, "To")


@pytest.mark.parametrize("kind", ["To", "Cc", "Bcc"])
def test_recipient_entries(kind: str) -> None:
    base = {"To": [{"Email": "p@example.com"}]}
    entries = [{"Email": "ok@example.com"}, "bad@example.com", {"Name": "x"}, {"Email": "bad"}]
    errs = errors(message(**{**base, kind: entries}))
    got = [(e.error_code, list(e.error_related_to)) for e in errs]
    assert got == [
        ("mj-0004", [f"{kind}[1]"]),
        ("mj-0003", [f"{kind}[2].Email"]),
        ("mj-0013", [f"{kind}[3].Email"]),
    ]
    assert errs[0].error_message == 'Type mismatch. Expected type "emailIn".'


def test_too_many_recipients() -> None:
    to = [{"Email": f"r{i}@example.com"} for i in range(40)]
    bcc = [{"Email": f"b{i}@example.com"} for i in range(11)]
    assert_error(single_error(message(To=to, Bcc=bcc)), "send-0015", "To", "Cc", "Bcc")
    assert isinstance(parse_one(message(To=to[:10]), max_recipients=10), ParsedMessage)
    assert_error(single_error(message(To=to[:11]), max_recipients=10), "send-0015", "To", "Cc", "Bcc")


def test_subject_and_urltags_length() -> None:
    assert ok(message(Subject="é" * 255)).spec.subject == "é" * 255
    assert_error(single_error(message(Subject="x" * 256)), "mj-0006", "Subject")
    assert ok(message(URLTags="a" * 256)).url_tags == "a" * 256
    assert_error(single_error(message(URLTags="a" * 257)), "mj-0006", "URLTags")


@pytest.mark.parametrize("prop", ["TrackOpens", "TrackClicks"])
def test_tracking_values(prop: str) -> None:
    for value in ("account_default", "disabled", "enabled"):
        spec = ok(message(**{prop: value})).spec
        assert (spec.track_opens if prop == "TrackOpens" else spec.track_clicks) == value
    assert_error(single_error(message(**{prop: "always"})), "mj-0005", prop)
    assert_error(single_error(message(**{prop: True})), "mj-0004", prop)


def test_priority() -> None:
    for value in range(4):
        assert ok(message(Priority=value)).spec.priority == value
    for bad in (-1, 4, 10):
        assert_error(single_error(message(Priority=bad)), "mj-0005", "Priority")
    for wrong in ("2", 2.0, True):
        assert_error(single_error(message(Priority=wrong)), "mj-0004", "Priority")


def test_deduplicate_campaign_needs_a_campaign() -> None:
    err = single_error(message(DeduplicateCampaign=True))
    assert_error(err, "send-0012", "CustomCampaign", "DeduplicateCampaign")
    assert ok(message(DeduplicateCampaign=False)).deduplicate_campaign is False


@pytest.mark.parametrize(
    "extra",
    [{"TemplateErrorDeliver": True}, {"TemplateErrorReporting": {"Email": "dev@example.com"}}],
)
def test_template_error_options_need_template_language(extra: dict[str, Any]) -> None:
    assert_error(single_error(message(**extra)), "send-0016", "TemplateLanguage")
    assert_error(single_error(message(TemplateLanguage=False, **extra)), "send-0016", "TemplateLanguage")
    assert isinstance(parse_one(message(TemplateLanguage=True, **extra)), ParsedMessage)


def test_campaign_marks_bulk() -> None:
    assert ok(message(CustomCampaign="spring-sale")).spec.bulk is True
    assert ok(message(CustomCampaign="")).spec.bulk is False


# --- Headers ---------------------------------------------------------------------------------------

RESERVED = [
    "From",
    "Sender",
    "Subject",
    "To",
    "Cc",
    "Bcc",
    "Return-Path",
    "Delivered-To",
    "DKIM-Signature",
    "DomainKey-Status",
    "Received-SPF",
    "Authentication-Results",
    "Received",
    "X-Mailjet-Prio",
    "X-Mailjet-Debug",
    "User-Agent",
    "X-Mailer",
    "X-MJ-CustomID",
    "X-MJ-EventPayload",
    "X-MJ-Vars",
    "X-MJ-TemplateErrorDeliver",
    "X-MJ-TemplateErrorReporting",
    "X-MJ-TemplateLanguage",
    "X-Mailjet-TrackOpen",
    "X-Mailjet-TrackClick",
    "X-MJ-TemplateID",
    "X-MJ-WorkflowID",
    "X-Feedback-Id",
    "X-Mailjet-Segmentation",
    "List-Id",
    "X-MJ-MID",
    "X-MJ-ErrorMessage",
    "Date",
    "X-CSA-Complaints",
    "Message-Id",
    "X-Mailjet-Campaign",
    "X-MJ-StatisticsContactsListID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "dkim-signature",
    "MESSAGE-ID",
]


@pytest.mark.parametrize("name", RESERVED)
def test_reserved_headers(name: str) -> None:
    err = single_error(message(Headers={name: "value"}))
    assert_error(err, "send-0011", f'Headers["{name}"]')


def test_reserved_header_names_the_property_to_use() -> None:
    assert (
        'Use the "CustomID" property' in single_error(message(Headers={"X-MJ-CustomID": "1"})).error_message
    )


def test_list_unsubscribe_allowed_on_transactional_mail_only() -> None:
    headers = {
        "List-Unsubscribe": "<https://example.com/u>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    spec = ok(message(Headers=headers)).spec
    assert dict(spec.headers) == headers
    errs = errors(message(Headers=headers, CustomCampaign="promo"))
    assert [(e.error_code, list(e.error_related_to)) for e in errs] == [
        ("send-0011", ['Headers["List-Unsubscribe"]']),
        ("send-0011", ['Headers["List-Unsubscribe-Post"]']),
    ]


def test_reply_to_header() -> None:
    spec = ok(message(Headers={"Reply-To": "Support Team <support@example.com>"})).spec
    assert spec.reply_to == Address("support@example.com", "Support Team")
    assert spec.headers == ()
    err = single_error(message(ReplyTo={"Email": "a@example.com"}, Headers={"reply-to": "b@example.com"}))
    assert_error(err, "send-0011", 'Headers["reply-to"]', "ReplyTo")
    for bad in ("a@example.com, b@example.com", "", "nobody"):
        err = single_error(message(Headers={"Reply-To": bad}))
        assert err.error_code in {"mj-0005", "mj-0013"}
        assert list(err.error_related_to) == ['Headers["Reply-To"]']


@pytest.mark.parametrize("name", ["Bad Name", "X:Y", "", "X-Ünicode", "X-A\r\nBcc", "X\x00"])
def test_invalid_header_names(name: str) -> None:
    err = single_error(message(Headers={name: "v"}))
    assert err.error_code == "mj-0005"
    assert err.error_related_to[0].startswith("Headers[")


def test_header_values() -> None:
    assert dict(ok(message(Headers={"X-Unicode": "héllo wörld", "X-Tab": "a\tb"})).spec.headers) == {
        "X-Unicode": "héllo wörld",
        "X-Tab": "a\tb",
    }
    assert_error(single_error(message(Headers={"X-Num": 5})), "mj-0004", 'Headers["X-Num"]')
    assert_error(single_error(message(Headers=["X-A: b"])), "mj-0004", "Headers")
    many = {f"X-H{i}": "v" for i in range(51)}
    assert_error(single_error(message(Headers=many)), "mj-0008", "Headers")
    assert len(ok(message(Headers=dict(list(many.items())[:50]))).spec.headers) == 50


# --- Attachments -------------------------------------------------------------------------------------


def attachment(**overrides: Any) -> dict[str, Any]:
    att: dict[str, Any] = {"ContentType": "text/plain", "Filename": "test.txt", "Base64Content": B64_HELLO}
    for key, value in overrides.items():
        if value is _DROP:
            att.pop(key)
        else:
            att[key] = value
    return att


@pytest.mark.parametrize("prop", ["Attachments", "InlinedAttachments"])
@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"ContentType": _DROP}, "mj-0003", "ContentType"),
        ({"Filename": _DROP}, "mj-0003", "Filename"),
        ({"Base64Content": _DROP}, "mj-0003", "Base64Content"),
        ({"ContentType": ""}, "mj-0012", "ContentType"),
        ({"Filename": ""}, "mj-0012", "Filename"),
        ({"Base64Content": ""}, "mj-0012", "Base64Content"),
        ({"Base64Content": "not base64!"}, "mj-0005", "Base64Content"),
        ({"Base64Content": "aGVsbG8-"}, "mj-0005", "Base64Content"),
        ({"Base64Content": "aGVsbG8gd29ybGQ=é"}, "mj-0005", "Base64Content"),
        ({"ContentType": "text"}, "mj-0005", "ContentType"),
        ({"ContentType": "text/plain/x"}, "mj-0005", "ContentType"),
        ({"ContentType": 5}, "mj-0004", "ContentType"),
        ({"Filename": ["a"]}, "mj-0004", "Filename"),
    ],
)
def test_attachment_errors(prop: str, overrides: dict[str, Any], code: str, field: str) -> None:
    msg = message(**{prop: [attachment(), attachment(**overrides)]})
    assert_error(single_error(msg), code, f"{prop}[1].{field}")


@pytest.mark.parametrize("prop", ["Attachments", "InlinedAttachments"])
def test_attachment_collections(prop: str) -> None:
    assert_error(single_error(message(**{prop: attachment()})), "mj-0004", prop)
    assert_error(single_error(message(**{prop: ["x"]})), "mj-0004", f"{prop}[0]")
    assert_error(single_error(message(**{prop: [attachment()] * 51})), "mj-0008", prop)
    assert len(ok(message(**{prop: [attachment()] * 50})).spec.to_json()[prop]) == 50


def test_lenient_base64_and_content_type_parameters() -> None:
    wrapped = base64.encodebytes(b"x" * 200).decode()  # MIME-style lines
    spec = ok(
        message(
            Attachments=[
                attachment(Base64Content=wrapped),
                attachment(Base64Content="aGVsbG8"),  # padding left out
                attachment(ContentType="text/plain; charset=utf-8"),
            ]
        )
    ).spec
    assert [a.content for a in spec.attachments] == [b"x" * 200, b"hello", b"hello world"]
    assert spec.attachments[2].content_type == "text/plain; charset=utf-8"


def test_inline_content_id() -> None:
    spec = ok(message(InlinedAttachments=[attachment(ContentID="logo1"), attachment()])).spec
    assert [a.content_id for a in spec.inline_attachments] == ["logo1", None]
    assert ok(message(Attachments=[attachment(ContentID="ignored")])).spec.attachments[0].content_id is None
    for bad in ("a b", "<id>", "id>"):
        err = single_error(message(InlinedAttachments=[attachment(ContentID=bad)]))
        assert_error(err, "mj-0005", "InlinedAttachments[0].ContentID")


def test_message_size_limit() -> None:
    content = base64.b64encode(b"x" * 600).decode()
    msg = message(TextPart="t" * 200, HTMLPart="h" * 200, Attachments=[attachment(Base64Content=content)])
    assert isinstance(parse_one(msg, max_message_bytes=1000), ParsedMessage)
    err = single_error(msg, max_message_bytes=999)
    assert_error(err, "mj-0011", "TextPart", "HTMLPart", "Attachments", "InlinedAttachments")
    msg = message(InlinedAttachments=[attachment(Base64Content=content)] * 2, TextPart="é")
    assert single_error(msg, max_message_bytes=1201).error_code == "mj-0011"  # "é" is 2 bytes


# --- Variables and misc types ------------------------------------------------------------------------


def test_variables() -> None:
    assert_error(single_error(message(Variables=["a"])), "mj-0004", "Variables")
    assert_error(single_error(message(Variables={f"v{i}": i for i in range(51)})), "mj-0008", "Variables")
    assert_error(single_error(message(Variables={"a": ["\ud800"]})), "mj-0005", "Variables")


@pytest.mark.parametrize(
    ("prop", "value", "expected"),
    [
        ("Subject", 1, "string"),
        ("TextPart", ["x"], "string"),
        ("HTMLPart", {"x": 1}, "string"),
        ("CustomID", 1234, "string"),
        ("EventPayload", {"json": True}, "string"),
        ("CustomCampaign", False, "string"),
        ("MonitoringCategory", 1, "string"),
        ("URLTags", ["a=b"], "string"),
        ("TemplateLanguage", "true", "bool"),
        ("TemplateLanguage", 1, "bool"),
        ("DeduplicateCampaign", "true", "bool"),
        ("TemplateErrorDeliver", 0, "bool"),
        ("Priority", "high", "int64"),
        ("TemplateID", 1.5, "int64"),
        ("Sender", "s@example.com", "emailIn"),
        ("ReplyTo", ["r@example.com"], "emailIn"),
        ("Cc", {"Email": "c@example.com"}, "array of emails"),
        ("Bcc", "b@example.com", "array of emails"),
        ("Headers", "X-A: b", "object"),
        ("Variables", "a=b", "object"),
        ("Attachments", {}, "array of attachments"),
    ],
)
def test_type_mismatches(prop: str, value: object, expected: str) -> None:
    errs = errors(message(**{"TemplateLanguage": True, prop: value}))
    mismatch = [e for e in errs if e.error_code == "mj-0004"]
    assert len(mismatch) == 1, [e.to_json() for e in errs]
    assert_error(mismatch[0], "mj-0004", prop)
    assert mismatch[0].error_message == f'Type mismatch. Expected type "{expected}".'


def test_nested_type_mismatches() -> None:
    err = single_error(message(From={"Email": "pilot@example.com", "Name": 5}))
    assert_error(err, "mj-0004", "From.Name")
    err = single_error(message(To=[{"Email": "p@example.com", "Name": ["x"]}]))
    assert_error(err, "mj-0004", "To[0].Name")


def test_all_errors_of_a_message_are_collected() -> None:
    errs = errors(
        {
            "From": {"Email": "bad"},
            "Subject": "s" * 300,
            "TrackOpens": "yes",
            "Priority": 7,
            "Headers": {"From": "x@example.com", "X-Ok": "fine", "X-Bad": "a\r\nBcc: evil@example.com"},
            "Attachments": [{"Filename": "a.txt"}],
        }
    )
    got = {(e.error_code, tuple(e.error_related_to)) for e in errs}
    assert got == {
        ("mj-0006", ("Subject",)),
        ("send-0003", ("HTMLPart", "TextPart", "TemplateID")),
        ("mj-0013", ("From.Email",)),
        ("mj-0003", ("To",)),
        ("mj-0005", ("TrackOpens",)),
        ("mj-0005", ("Priority",)),
        ("send-0011", ('Headers["From"]',)),
        ("mj-0005", ('Headers["X-Bad"]',)),
        ("mj-0003", ("Attachments[0].ContentType",)),
        ("mj-0003", ("Attachments[0].Base64Content",)),
    }
    assert len({e.error_identifier for e in errs}) == len(errs)


def test_refused_content_does_not_also_report_missing_content() -> None:
    assert_error(single_error(message(TextPart=5)), "mj-0004", "TextPart")


def test_message_not_an_object() -> None:
    request = parse_send_request({"Messages": [message(), "hello", None, message(CustomID="c3", To=[])]})
    good, text, null, bad = request.results
    assert isinstance(good, ParsedMessage)
    assert isinstance(text, MessageErrors) and isinstance(null, MessageErrors)
    assert_error(text.errors[0], "mj-0004", "Messages[1]")
    assert_error(null.errors[0], "mj-0004", "Messages[2]")
    assert isinstance(bad, MessageErrors) and bad.custom_id == "c3"


# ---------------------------------------------------------------------------------------------------
# Header injection: CR, LF, NUL and other controls in every string that can reach a header
# ---------------------------------------------------------------------------------------------------

BAD_CHARS = ["\r\n", "\n", "\r", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\x0b", "\x0c"]


def _set(msg: dict[str, Any], path: list[Any], value: str) -> dict[str, Any]:
    msg = copy.deepcopy(msg)
    target: Any = msg
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return msg


INJECTABLE: list[tuple[str, list[Any]]] = [
    ("From.Name", ["From", "Name"]),
    ("Sender.Name", ["Sender", "Name"]),
    ("ReplyTo.Name", ["ReplyTo", "Name"]),
    ("To[0].Name", ["To", 0, "Name"]),
    ("Cc[0].Name", ["Cc", 0, "Name"]),
    ("Bcc[0].Name", ["Bcc", 0, "Name"]),
    ("TemplateErrorReporting.Name", ["TemplateErrorReporting", "Name"]),
    ("Subject", ["Subject"]),
    ("CustomID", ["CustomID"]),
    ("EventPayload", ["EventPayload"]),
    ("CustomCampaign", ["CustomCampaign"]),
    ("MonitoringCategory", ["MonitoringCategory"]),
    ("URLTags", ["URLTags"]),
    ('Headers["X-Custom"]', ["Headers", "X-Custom"]),
    ("Attachments[0].Filename", ["Attachments", 0, "Filename"]),
    ("Attachments[0].ContentType", ["Attachments", 0, "ContentType"]),
    ("InlinedAttachments[0].Filename", ["InlinedAttachments", 0, "Filename"]),
    ("InlinedAttachments[0].ContentType", ["InlinedAttachments", 0, "ContentType"]),
    ("InlinedAttachments[0].ContentID", ["InlinedAttachments", 0, "ContentID"]),
]

FULL = message(
    Sender={"Email": "s@example.com", "Name": "S"},
    ReplyTo={"Email": "r@example.com", "Name": "R"},
    Cc=[{"Email": "c@example.com", "Name": "C"}],
    Bcc=[{"Email": "b@example.com", "Name": "B"}],
    TemplateLanguage=True,
    TemplateErrorReporting={"Email": "dev@example.com", "Name": "Dev"},
    CustomID="id",
    EventPayload="payload",
    CustomCampaign="campaign",
    MonitoringCategory="cat",
    URLTags="a=b",
    Headers={"X-Custom": "value"},
    Attachments=[attachment()],
    InlinedAttachments=[attachment(ContentID="cid1")],
)


def test_full_injection_fixture_is_valid() -> None:
    assert isinstance(parse_one(FULL), ParsedMessage)


@pytest.mark.parametrize(("related", "path"), INJECTABLE, ids=[p for p, _ in INJECTABLE])
@pytest.mark.parametrize("bad", BAD_CHARS, ids=[repr(c) for c in BAD_CHARS])
def test_control_characters_are_refused(related: str, path: list[Any], bad: str) -> None:
    err = single_error(_set(FULL, path, f"innocent{bad}Bcc: victim@example.com"))
    assert_error(err, "mj-0005", related)
    assert "control characters" in err.error_message


@pytest.mark.parametrize("field", ["From", "To", "Sender", "ReplyTo"])
@pytest.mark.parametrize("bad", ["\r\n", "\n", "\x00"])
def test_control_characters_in_email_addresses(field: str, bad: str) -> None:
    value = {"Email": f"a@example.com{bad}Bcc: victim@example.com"}
    msg = message(**{field: [value] if field == "To" else value})
    err = single_error(msg)
    assert err.error_code == "mj-0013"
    assert err.error_related_to[0].endswith("Email")


def test_bodies_may_contain_line_breaks_but_not_broken_unicode() -> None:
    spec = ok(message(TextPart="line1\r\nline2\n", HTMLPart="<p>a</p>\n<p>b</p>")).spec
    assert spec.text == "line1\r\nline2\n"
    err = single_error(message(TextPart="bad \ud800 surrogate"))
    assert_error(err, "mj-0005", "TextPart")
    json.dumps(error_message_json(MessageErrors((err,)))).encode("utf-8")


def test_error_messages_echoing_user_input_are_encodable() -> None:
    err = single_error(message(To=[{"Email": "\udcff" + "x" * 500}]))
    assert err.error_code == "mj-0005"
    err = single_error(message(To=[{"Email": "y" * 500}]))
    assert err.error_code == "mj-0013" and len(err.error_message) < 200
    err = single_error(message(Headers={"Bad\udcffName": "v"}))
    json.dumps(err.to_json()).encode("utf-8")


# ---------------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------------


def test_send_error_json() -> None:
    err = SendError(error_code="send-0003", error_message="m", error_related_to=("HTMLPart", "TextPart"))
    assert err.to_json() == {
        "ErrorIdentifier": err.error_identifier,
        "ErrorCode": "send-0003",
        "StatusCode": 400,
        "ErrorMessage": "m",
        "ErrorRelatedTo": ["HTMLPart", "TextPart"],
    }
    assert SendError(error_code="x", error_message="m").error_identifier != err.error_identifier


def test_error_message_json() -> None:
    result = parse_one(message(TextPart=_DROP, CustomID="abc"))
    assert isinstance(result, MessageErrors) and result.custom_id == "abc"
    body = error_message_json(result)
    assert body == {"Status": "error", "Errors": [result.errors[0].to_json()]}


def test_success_and_sandbox_json() -> None:
    spec = ok(message(CustomID="c1", Cc=[{"Email": "cc@example.com"}])).spec
    body = success_message_json(
        spec.custom_id,
        [RecipientResult("passenger1@example.com", "uuid-1", 456)],
        [RecipientResult("cc@example.com", "uuid-2", 457)],
        api_base_url="https://mail.example.net/",
    )
    assert body == {
        "Status": "success",
        "CustomID": "c1",
        "To": [
            {
                "Email": "passenger1@example.com",
                "MessageUUID": "uuid-1",
                "MessageID": 456,
                "MessageHref": "https://mail.example.net/v3/REST/message/456",
            }
        ],
        "Cc": [
            {
                "Email": "cc@example.com",
                "MessageUUID": "uuid-2",
                "MessageID": 457,
                "MessageHref": "https://mail.example.net/v3/REST/message/457",
            }
        ],
        "Bcc": [],
    }
    sandbox = sandbox_message_json(spec)
    assert sandbox["Status"] == "success" and sandbox["CustomID"] == "c1" and sandbox["Bcc"] == []
    assert sandbox["To"] == [
        {
            "Email": "passenger1@example.com",
            "MessageUUID": "",
            "MessageID": 0,
            "MessageHref": "https://api.mailjet.com/v3/REST/message/0",
        }
    ]
    assert send_response_json([body, sandbox]) == {"Messages": [body, sandbox]}


def test_overall_status() -> None:
    good = ok(message())
    bad_400 = MessageErrors((SendError(error_code="send-0003", error_message="m"),))
    bad_403 = MessageErrors((SendError(error_code="send-0008", status_code=403, error_message="m"),))
    assert overall_status([good, good]) == 200
    assert overall_status([good, bad_400]) == 400
    assert overall_status([bad_403]) == 400
    assert overall_status([bad_403], advance_error_handling=True) == 403
    assert overall_status([good, bad_403], advance_error_handling=True) == 403
    assert overall_status([bad_400, bad_403], advance_error_handling=True) == 400
    assert overall_status([good], advance_error_handling=True) == 200


# ---------------------------------------------------------------------------------------------------
# Property: arbitrary JSON never crashes the parser
# ---------------------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
PROPERTY_NAMES = [
    "From",
    "To",
    "Cc",
    "Bcc",
    "Sender",
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
    "Email",
    "Name",
    "ContentType",
    "Filename",
    "Base64Content",
    "ContentID",
    "Reply-To",
    "List-Unsubscribe",
]
emails = st.sampled_from(["a@example.com", "bad", "", "用户@例子.广告", "a@example.com\r\n"]) | st.text(
    max_size=20
)
address_like = st.fixed_dictionaries({"Email": emails}, optional={"Name": json_scalars})
shaped_values = st.recursive(
    json_scalars | emails | address_like | st.lists(address_like, max_size=3),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(PROPERTY_NAMES) | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=25,
)
message_like = st.dictionaries(st.sampled_from(PROPERTY_NAMES), shaped_values, max_size=10)
bodies = json_values | st.fixed_dictionaries(
    {"Messages": st.lists(message_like | json_values, max_size=4) | json_values},
    optional={
        "Globals": message_like | json_values,
        "SandboxMode": json_scalars,
        "AdvanceErrorHandling": json_scalars,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_arbitrary_json_yields_results_or_request_error(body: object) -> None:
    try:
        request = parse_send_request(body)
    except RequestError as exc:
        assert exc.status_code == 400
        assert {"ErrorIdentifier", "ErrorCode", "StatusCode", "ErrorMessage"} <= set(exc.payload)
        json.dumps(exc.payload).encode("utf-8")
        return
    assert isinstance(body, dict)
    messages = next(v for k, v in body.items() if k.casefold() == "messages")
    assert len(request.results) == len(messages)
    for result in request.results:
        if isinstance(result, MessageErrors):
            assert result.errors
            json.dumps(error_message_json(result)).encode("utf-8")
            continue
        spec = result.spec
        header_values = [
            spec.subject,
            spec.custom_id,
            spec.event_payload,
            spec.campaign,
            *(a.name for a in (spec.sender, *spec.to, *spec.cc, *spec.bcc)),
            *(part for h in spec.headers for part in h),
        ]
        assert not any(c in v for v in header_values for c in "\r\n\x00")
        assert spec.to
        assert MessageSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
        json.dumps(sandbox_message_json(spec)).encode("utf-8")


# unlike the default alphabet, this one includes unpaired surrogates (valid in JSON "\udXXX" escapes)
any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=20)
field_values = json_values | shaped_values | any_text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(PROPERTY_NAMES[:26]), field_values, max_size=4), st.booleans())
def test_mutated_valid_message_never_smuggles_control_characters(
    overrides: dict[str, object], as_global: bool
) -> None:
    body: dict[str, Any] = {"Messages": [{**FULL, **overrides}]}
    if as_global:
        body = {"Globals": overrides, "Messages": [FULL]}
    try:
        request = parse_send_request(body)
    except RequestError as exc:
        assert as_global and "To" in overrides
        assert exc.payload["ErrorRelatedTo"] == ["Globals.To"]
        return
    (result,) = request.results
    event(type(result).__name__)
    if isinstance(result, MessageErrors):
        json.dumps(error_message_json(result)).encode("utf-8")
        return
    spec = result.spec
    strings = [
        spec.subject,
        spec.custom_id,
        spec.event_payload,
        spec.campaign,
        result.monitoring_category,
        result.url_tags,
        *(a.name for a in (spec.sender, *spec.to, *spec.cc, *spec.bcc)),
        *(a.email for a in (spec.sender, *spec.to, *spec.cc, *spec.bcc)),
        *(part for h in spec.headers for part in h),
        *(a.filename for a in (*spec.attachments, *spec.inline_attachments)),
        *(a.content_type for a in (*spec.attachments, *spec.inline_attachments)),
        *(a.content_id or "" for a in spec.inline_attachments),
    ]
    for value in strings:
        assert not any(ord(c) < 32 and c != "\t" for c in value), value
        value.encode("utf-8")
    assert MessageSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
