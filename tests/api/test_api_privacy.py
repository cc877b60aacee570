"""Data-subject rights over HTTP: export, erase and the audit trail, for admin keys only."""

from __future__ import annotations

from engagement_support import Stack
from sqlalchemy import select

from mailstack.storage.schema import messages

ADDRESS = "ana.private@gmail.com"


def test_privacy_routes_need_the_admin_scope(stack: Stack, admin: tuple[str, str]) -> None:
    for method, path in (
        ("GET", f"/api/v1/privacy/subjects/{ADDRESS}"),
        ("DELETE", f"/api/v1/privacy/subjects/{ADDRESS}"),
        ("GET", "/api/v1/privacy/audit"),
    ):
        default_key = stack.client.request(method, path, auth=stack.auth)  # every scope but privacy
        assert default_key.status_code == 403, path
        assert "'privacy' scope" in default_key.json()["ErrorMessage"]
        assert stack.client.request(method, path).status_code == 401
    # The admin key itself cannot send: scopes are not a hierarchy.
    message = {"From": {"Email": "news@example.com"}, "To": [{"Email": ADDRESS}], "TextPart": "x"}
    assert stack.client.post("/v3.1/send", json={"Messages": [message]}, auth=admin).status_code == 403


def test_export_then_erase_through_the_api_is_audited(stack: Stack, admin: tuple[str, str]) -> None:
    stack.send(To=[{"Email": ADDRESS, "Name": "Ana Private"}], Subject="Your invoice")
    stack.deliver()
    exported = stack.client.get(f"/api/v1/privacy/subjects/{ADDRESS}", auth=admin)
    assert exported.status_code == 200, exported.text
    assert ADDRESS in exported.text and "Your invoice" in exported.text
    assert exported.headers["cache-control"] == "no-store"

    erased = stack.client.delete(f"/api/v1/privacy/subjects/{ADDRESS}", auth=admin)
    assert erased.status_code == 200, erased.text
    assert erased.json()["messages_deleted"] == 1 and erased.json()["key_shredded"] is True
    after = stack.client.get(f"/api/v1/privacy/subjects/{ADDRESS}", auth=admin)
    assert after.json()["messages"] == [] and "Your invoice" not in after.text
    # The next send to the erased address is blocked (the suppression survives as a blind index).
    (again,) = stack.send(To=[{"Email": ADDRESS}])
    with stack.runtime.engine.connect() as conn:
        status = conn.execute(select(messages.c.status).where(messages.c.id == again)).scalar_one()
    assert status == "blocked"

    audit = stack.client.get("/api/v1/privacy/audit", params={"email": ADDRESS}, auth=admin)
    assert audit.status_code == 200
    entries = audit.json()["Data"]
    actions = [(e["Action"], e["Actor"]) for e in entries]
    assert ("export", f"api:{admin[0]}") in actions and ("erase", f"api:{admin[0]}") in actions
    assert all(e["Subject"] == stack.runtime.vault.index(ADDRESS) for e in entries)
    assert ADDRESS not in audit.text  # the trail names subjects by blind index only


def test_the_audit_trail_filters_and_explains_bad_parameters(stack: Stack, admin: tuple[str, str]) -> None:
    consent = {"Email": ADDRESS, "List": "news", "From": {"Email": "news@example.com"}}
    assert stack.client.post("/api/v1/consents", json=consent, auth=stack.auth).status_code == 201
    assert stack.client.get(f"/api/v1/privacy/subjects/{ADDRESS}", auth=admin).status_code == 200
    everything = stack.client.get("/api/v1/privacy/audit", auth=admin).json()["Data"]
    assert [e["Action"] for e in everything][:2] == ["export", "consent-request"]  # newest first
    only = stack.client.get("/api/v1/privacy/audit", params={"action": "export"}, auth=admin).json()
    assert [e["Action"] for e in only["Data"]] == ["export"]
    future = stack.client.get("/api/v1/privacy/audit", params={"since": "2999-01-01T00:00:00Z"}, auth=admin)
    assert future.json()["Data"] == []
    assert len(stack.client.get("/api/v1/privacy/audit", params={"limit": 1}, auth=admin).json()["Data"]) == 1
    for params, problem in (({"since": "yesterday"}, "since"), ({"limit": "many"}, "limit"),
                            ({"email": "nobody"}, "email")):  # fmt: skip
        response = stack.client.get("/api/v1/privacy/audit", params=params, auth=admin)
        assert response.status_code == 400 and problem in response.json()["ErrorMessage"]


def test_the_privacy_and_consent_routes_are_in_the_openapi_document(stack: Stack) -> None:
    paths = stack.client.get("/openapi.json").json()["paths"]
    expected = {
        "/api/v1/privacy/subjects/{email}": {"get", "delete"},
        "/api/v1/privacy/audit": {"get"},
        "/api/v1/consents": {"post"},
        "/api/v1/consents/{email}": {"get", "delete"},
        "/consent/confirm": {"get", "post"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) == methods, path
        assert all(op["summary"] for op in paths[path].values())
