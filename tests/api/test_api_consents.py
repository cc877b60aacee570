"""Double opt-in through the API: request, the mailed link, confirmation, look-up, withdrawal, audit."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from engagement_support import Stack
from sqlalchemy import select

from mailstack.privacy import ConsentError, confirm_consent, list_audit
from mailstack.privacy._consent import CONFIRM_TTL_SECONDS, consent_token
from mailstack.storage import create_api_key
from mailstack.storage.schema import consents, messages

ADDRESS = "Ana.Consent@Example.org"
REQUEST = {"Email": ADDRESS, "List": "newsletter", "From": {"Email": "news@example.com", "Name": "News"}}
BROWSER = {"Content-Type": "application/x-www-form-urlencoded"}


def mailed_token(stack: Stack, message_id: int) -> str:
    stack.deliver()
    body = stack.outbox_message(message_id).get_body(("plain",))
    assert body is not None
    found = re.search(r"https://track\.example\.com/consent/confirm\?token=(\S+)", body.get_content())
    assert found, "the confirmation mail has no link"
    return unquote(found.group(1))


def status_of(stack: Stack) -> dict[str, object]:
    response = stack.client.get(f"/api/v1/consents/{ADDRESS}", auth=stack.auth)
    assert response.status_code == 200, response.text
    (record,) = response.json()["Data"]
    return dict(record)


def test_double_opt_in_from_request_to_confirmation(stack: Stack) -> None:
    created = stack.client.post("/api/v1/consents", json=REQUEST, auth=stack.auth)
    assert created.status_code == 201, created.text
    assert created.json()["Data"][0]["Status"] == "pending"
    token = mailed_token(stack, created.json()["MessageID"])

    # The link opens a page; only its button confirms (scanners follow links by themselves).
    page = stack.client.get("/consent/confirm", params={"token": token})
    assert page.status_code == 200 and "<form method=post" in page.text and "newsletter" in page.text
    assert status_of(stack)["Status"] == "pending"
    confirmed = stack.client.post("/consent/confirm", content=f"token={token}", headers=BROWSER)
    assert confirmed.status_code == 200 and "confirmed" in confirmed.text
    record = status_of(stack)
    assert record["Status"] == "confirmed" and record["Email"] == ADDRESS.lower()
    assert record["ConfirmedAt"] and record["ConfirmedIP"] == "testclient" and record["RequestedIP"]

    # Asking again for a confirmed list sends nothing.
    again = stack.client.post("/api/v1/consents", json=REQUEST, auth=stack.auth)
    assert again.status_code == 200 and "MessageID" not in again.json()

    withdrawn = stack.client.delete(
        f"/api/v1/consents/{ADDRESS}", params={"list": "newsletter"}, auth=stack.auth
    )
    assert withdrawn.status_code == 200 and withdrawn.json()["Data"][0]["Status"] == "withdrawn"
    assert stack.client.delete(f"/api/v1/consents/{ADDRESS}", auth=stack.auth).status_code == 404
    # A withdrawn consent's old link confirms nothing.
    stale = stack.client.post("/consent/confirm", content=f"token={token}", headers=BROWSER)
    assert stale.status_code == 400 and status_of(stack)["Status"] == "withdrawn"

    with stack.runtime.engine.connect() as conn:
        entries = list_audit(conn, subject=stack.runtime.vault.index(ADDRESS))
    actions = [(e.action, e.actor) for e in reversed(entries)]
    assert actions == [
        ("consent-request", f"api:{stack.api_key}"),
        ("consent-confirm", "subject:confirmation-link"),
        ("consent-withdraw", f"api:{stack.api_key}"),
    ]
    assert all(ADDRESS.lower() not in str(e.detail).lower() for e in entries)


def test_no_plaintext_address_or_ip_in_the_consent_table(stack: Stack) -> None:
    created = stack.client.post("/api/v1/consents", json=REQUEST, auth=stack.auth)
    assert created.status_code == 201
    with stack.runtime.engine.connect() as conn:
        row = conn.execute(select(consents)).one()
    stored = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
    assert ADDRESS.lower().encode() not in stored.lower() and b"testclient" not in stored
    assert row.subject == stack.runtime.vault.index(ADDRESS)


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "MTox.AAAAAAAAAAAAAAAAAAAAAA", "MToxNzAwMDAwMDAw.AAAAAAAAAAAAAAAAAAAAAA"],
    ids=["empty", "garbage", "forged-mac", "forged-id-and-time"],
)
def test_forged_links_show_an_error_and_change_nothing(stack: Stack, token: str) -> None:
    created = stack.client.post("/api/v1/consents", json=REQUEST, auth=stack.auth)
    assert created.status_code == 201
    page = stack.client.get("/consent/confirm", params={"token": token})
    assert page.status_code == 400 and "not valid" in page.text
    posted = stack.client.post("/consent/confirm", content=f"token={token}", headers=BROWSER)
    assert posted.status_code == 400 and "not valid" in posted.text
    assert status_of(stack)["Status"] == "pending"


def test_expired_and_superseded_links_are_refused(stack: Stack) -> None:
    created = stack.client.post("/api/v1/consents", json=REQUEST, auth=stack.auth)
    token = mailed_token(stack, created.json()["MessageID"])
    with stack.runtime.engine.begin() as conn:
        row = conn.execute(select(consents)).one()
        with pytest.raises(ConsentError, match="expired"):
            confirm_consent(
                conn,
                stack.runtime.vault,
                stack.runtime.compose_settings.tokens,
                token,
                ip="192.0.2.1",
                now=row.requested_at + CONFIRM_TTL_SECONDS + 1,
            )
        older = consent_token(stack.runtime.compose_settings.tokens, row.id, row.requested_at - 7200)
    page = stack.client.post("/consent/confirm", content=f"token={older}", headers=BROWSER)
    assert page.status_code == 400 and "newer one" in page.text
    assert status_of(stack)["Status"] == "pending"


def test_bad_requests_are_explained_and_store_nothing(stack: Stack) -> None:
    cases = [
        ({**REQUEST, "Email": "not an address"}, "Email"),
        ({**REQUEST, "List": ""}, "List"),
        ({key: value for key, value in REQUEST.items() if key != "From"}, "From"),
        ({**REQUEST, "TextPart": "no link here"}, "{ConfirmURL}"),
        ({**REQUEST, "Extra": 1}, "Unknown properties: Extra"),
        ({**REQUEST, "From": {"Email": "news@not-ours.example"}}, "cannot be sent"),
    ]
    for body, problem in cases:
        response = stack.client.post("/api/v1/consents", json=body, auth=stack.auth)
        assert response.status_code == 400 and problem in response.text, (body, response.text)
    with stack.runtime.engine.connect() as conn:
        assert conn.execute(select(consents)).first() is None  # the refused mail rolled its record back
        assert conn.execute(select(messages)).first() is None


def test_consent_routes_need_the_consents_scope(stack: Stack) -> None:
    with stack.runtime.engine.begin() as conn:
        sender = create_api_key(conn, "sender", ["send"])
    assert stack.client.post("/api/v1/consents", json=REQUEST, auth=sender).status_code == 403
    assert stack.client.get(f"/api/v1/consents/{ADDRESS}", auth=sender).status_code == 403
    assert stack.client.delete(f"/api/v1/consents/{ADDRESS}", auth=sender).status_code == 403
    assert stack.client.get(f"/api/v1/consents/{ADDRESS}").status_code == 401


def test_one_mailbox_cannot_be_flooded_with_confirmation_requests(stack: Stack) -> None:
    sent = []
    for list_name in ("news", "offers", "events", "jobs"):
        response = stack.client.post("/api/v1/consents", json={**REQUEST, "List": list_name}, auth=stack.auth)
        sent.append(response.status_code)
    # Again for the same list within the hour: answered, no second mail.
    repeat = stack.client.post("/api/v1/consents", json={**REQUEST, "List": "news"}, auth=stack.auth)
    assert sent == [201, 201, 201, 429] and repeat.status_code == 200
    assert (
        "try again"
        in stack.client.post("/api/v1/consents", json={**REQUEST, "List": "more"}, auth=stack.auth).json()[
            "ErrorMessage"
        ]
    )
    with stack.runtime.engine.connect() as conn:
        assert len(conn.execute(select(messages)).all()) == 3


# --- each API key has its own lists -----------------------------------------------------------------


def test_another_key_can_neither_read_nor_withdraw_a_key_s_consents(
    stack: Stack, admin: tuple[str, str]
) -> None:
    with stack.runtime.engine.begin() as conn:
        other = create_api_key(conn, "other tenant", ["send", "consents"])
    created = stack.client.post("/api/v1/consents", json=REQUEST, auth=stack.auth)
    assert created.status_code == 201
    # Key B sees nothing of key A's record (nor its IP addresses), and cannot withdraw it.
    assert stack.client.get(f"/api/v1/consents/{ADDRESS}", auth=other).status_code == 404
    assert stack.client.delete(f"/api/v1/consents/{ADDRESS}", auth=other).status_code == 404
    gone = stack.client.delete(f"/api/v1/consents/{ADDRESS}", params={"list": "newsletter"}, auth=other)
    assert gone.status_code == 404 and status_of(stack)["Status"] == "pending"
    # Its own request for a list of the same name is its own record, with its own confirmation mail.
    own = stack.client.post("/api/v1/consents", json=REQUEST, auth=other)
    assert own.status_code == 201 and "MessageID" in own.json()
    token = mailed_token(stack, own.json()["MessageID"])
    assert stack.client.post("/consent/confirm", content=f"token={token}", headers=BROWSER).status_code == 200
    (mine,) = stack.client.get(f"/api/v1/consents/{ADDRESS}", auth=other).json()["Data"]
    assert mine["Status"] == "confirmed" and mine["ID"] != created.json()["Data"][0]["ID"]
    assert status_of(stack)["Status"] == "pending"  # A's record is untouched by B's confirmation
    # The data subject's export (admin) holds both.
    export = stack.client.get(f"/api/v1/privacy/subjects/{ADDRESS}", auth=admin).json()
    assert sorted(c["status"] for c in export["consents"]) == ["confirmed", "pending"]


def test_the_confirmation_quota_is_per_key(stack: Stack) -> None:
    with stack.runtime.engine.begin() as conn:
        other = create_api_key(conn, "other tenant", ["send", "consents"])
    answers = [
        stack.client.post("/api/v1/consents", json={**REQUEST, "List": name}, auth=stack.auth).status_code
        for name in ("news", "offers", "events", "jobs")
    ]
    assert answers == [201, 201, 201, 429]
    # Key A used up its own quota for the address; key B still has all of its own.
    theirs = stack.client.post("/api/v1/consents", json={**REQUEST, "List": "news"}, auth=other)
    assert theirs.status_code == 201 and "MessageID" in theirs.json()
