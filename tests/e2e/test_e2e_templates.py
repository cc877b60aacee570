"""Templates through the whole pipeline: rendered per message, errors reported as Mailjet does."""

from __future__ import annotations

import email
import email.policy
import time
from typing import Any

import httpx
from serve_support import Instance
from support import SmtpSink


def _send(instance: Instance, **message: Any) -> int:
    base: dict[str, Any] = {
        "From": {"Email": "shop@example.com"},
        "To": [{"Email": "ana@example.net"}],
        "TemplateLanguage": True,
    }
    payload = {"Messages": [{**base, **message}]}
    response = httpx.post(f"{instance.url}/v3.1/send", auth=instance.auth, json=payload)
    assert response.status_code == 200, response.text
    return int(response.json()["Messages"][0]["To"][0]["MessageID"])


def _status(instance: Instance, message_id: int, wanted: str) -> str:
    status = ""
    for _ in range(200):
        data = httpx.get(f"{instance.url}/v3/REST/message/{message_id}", auth=instance.auth).json()["Data"][0]
        status = data["Status"]
        if status == wanted:
            break
        time.sleep(0.05)
    return status


def test_variables_are_rendered_and_escaped_in_html(instance: Instance, smtp_sink: SmtpSink) -> None:
    instance.start("--relay", f"{smtp_sink.host}:{smtp_sink.port}")
    _send(
        instance,
        Subject="Hello {{var:name}}",
        TextPart="{% for item in var:items %}- {{item.title}}\n{% endfor %}Total: {{var:total}}",
        HTMLPart="<p>Hi {{var:name}}</p>",
        Variables={"name": "Ana <3", "items": [{"title": "Boots"}, {"title": "Hat"}], "total": 42},
    )
    (mail,) = smtp_sink.wait_for(1)
    parsed = email.message_from_bytes(mail.data, policy=email.policy.default)
    assert str(parsed["Subject"]) == "Hello Ana <3"
    text = parsed.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.rstrip("\n") == "- Boots\n- Hat\nTotal: 42"
    assert "<p>Hi Ana &lt;3</p>" in parsed.get_body(("html",)).get_content()


def test_a_template_error_fails_the_message_and_reports_it(instance: Instance, smtp_sink: SmtpSink) -> None:
    instance.start("--relay", f"{smtp_sink.host}:{smtp_sink.port}")
    message_id = _send(
        instance,
        Subject="Hi",
        TextPart="Hello {{var:missing}}",
        TemplateErrorReporting={"Email": "dev@example.org"},
    )
    assert _status(instance, message_id, "failed") == "failed"
    (report,) = smtp_sink.wait_for(1)
    assert report.rcpt_tos == ["dev@example.org"]
    parsed = email.message_from_bytes(report.data, policy=email.policy.default)
    body = parsed.get_body(("plain",)).get_content()
    assert "Unknown identifier: var:missing" in body
    time.sleep(0.5)
    assert all("ana@example.net" not in m.rcpt_tos for m in smtp_sink.received)


def test_template_error_deliver_sends_it_unrendered(instance: Instance, smtp_sink: SmtpSink) -> None:
    instance.start("--relay", f"{smtp_sink.host}:{smtp_sink.port}")
    message_id = _send(instance, Subject="Hi", TextPart="Hello {{var:missing}}", TemplateErrorDeliver=True)
    assert _status(instance, message_id, "sent") == "sent"
    (mail,) = smtp_sink.wait_for(1)
    assert b"Hello {{var:missing}}" in mail.data
