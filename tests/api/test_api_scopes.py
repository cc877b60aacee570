"""API key scopes: each route needs one scope; a genuine key without it gets 403, never the data."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from alembic import command
from engagement_support import Stack
from sqlalchemy import select, text

from mailstack.storage import (
    API_SCOPES,
    DEFAULT_API_SCOPES,
    create_api_key,
    create_storage_engine,
    find_api_key,
    migrate,
    parse_scopes,
)
from mailstack.storage._migrate import alembic_config
from mailstack.storage.schema import api_keys

MESSAGE = {
    "From": {"Email": "news@example.com"},
    "To": [{"Email": "ana@example.org"}],
    "Subject": "Hi",
    "TextPart": "Hi",
}

# One request per scope: (method, path, json body).
ROUTES: dict[str, tuple[str, str, object]] = {
    "send": ("POST", "/v3.1/send", {"Messages": [MESSAGE]}),
    "read": ("GET", "/v3/REST/statcounters?CounterSource=APIKey&CounterTiming=Message&CounterResolution=Lifetime", None),  # noqa: E501
    "webhooks": ("GET", "/v3/REST/eventcallbackurl", None),
    "suppressions": ("GET", "/api/v1/suppressions", None),
}  # fmt: skip


def key_with(stack: Stack, *scopes: str) -> tuple[str, str]:
    with stack.runtime.engine.begin() as conn:
        return create_api_key(conn, "scoped", scopes)


def call(stack: Stack, scope: str, auth: tuple[str, str]) -> int:
    method, path, body = ROUTES[scope]
    return stack.client.request(method, path, json=body, auth=auth).status_code


@pytest.mark.parametrize("scope", sorted(ROUTES))
def test_a_key_without_the_routes_scope_is_refused_with_403(stack: Stack, scope: str) -> None:
    others = [s for s in API_SCOPES if s != scope]
    without = key_with(stack, *others)
    response = stack.client.request(ROUTES[scope][0], ROUTES[scope][1], json=ROUTES[scope][2], auth=without)
    assert response.status_code == 403
    assert f"'{scope}' scope" in response.json()["ErrorMessage"]
    assert call(stack, scope, key_with(stack, scope)) in (200, 201)


def test_a_read_only_key_cannot_send_or_change_anything(stack: Stack) -> None:
    reader = key_with(stack, "read")
    assert call(stack, "send", reader) == 403
    add = stack.client.post("/api/v1/suppressions", json={"Email": "a@example.org"}, auth=reader)
    assert add.status_code == 403
    hook = {"EventType": "open", "Url": "https://hooks.example.net/"}
    assert stack.client.post("/v3/REST/eventcallbackurl", json=hook, auth=reader).status_code == 403
    conversion = {"MessageID": 1, "Name": "buy"}
    assert stack.client.post("/api/v1/conversions", json=conversion, auth=reader).status_code == 403
    with stack.runtime.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM messages")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM suppressions")).scalar_one() == 0


def test_wrong_credentials_still_get_401_not_a_hint_about_scopes(stack: Stack) -> None:
    response = stack.client.post("/v3.1/send", json={"Messages": [MESSAGE]}, auth=(stack.api_key, "wrong"))
    assert response.status_code == 401 and "scope" not in response.text


def test_new_keys_get_everything_but_the_admin_privacy_scope(stack: Stack) -> None:
    assert frozenset(API_SCOPES) - {"privacy"} == DEFAULT_API_SCOPES
    with stack.runtime.engine.connect() as conn:
        record = find_api_key(conn, stack.api_key)
    assert record is not None and record.scopes == DEFAULT_API_SCOPES and not record.allows("privacy")
    # The column's server default (for keys made before scopes) is the same set.
    default = api_keys.c.scopes.server_default
    assert default is not None and parse_scopes(str(getattr(default, "arg", ""))) == DEFAULT_API_SCOPES


def test_secrets_are_stored_only_as_hashes(stack: Stack) -> None:
    with stack.runtime.engine.connect() as conn:
        stored = conn.execute(select(api_keys.c.secret_hash).where(api_keys.c.public_key == stack.api_key))
        secret_hash = stored.scalar_one()
    assert secret_hash == hashlib.sha256(stack.api_secret.encode()).hexdigest()
    assert stack.api_secret not in secret_hash
    dump = "\n".join(str(row) for row in stack.runtime.engine.connect().execute(select(api_keys)))
    assert stack.api_secret not in dump


def test_unknown_scopes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown scope admin"):
        parse_scopes("send,admin")
    with pytest.raises(ValueError, match="at least one"):
        parse_scopes(" , ")
    assert parse_scopes("*") == frozenset(API_SCOPES)
    assert parse_scopes(" Send , READ ") == {"send", "read"}


def test_keys_made_before_scopes_keep_what_they_could_do(tmp_path: Path) -> None:
    engine = create_storage_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = alembic_config()
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0004_throttle")
        # The 0004 table has no scopes column: insert as the previous version did.
        conn.execute(
            text(
                "INSERT INTO api_keys (public_key, secret_hash, name, created_at, disabled) "
                "VALUES ('old', 'x', 'old', 0, false)"
            )
        )
        conn.commit()
    migrate(engine)
    with engine.connect() as conn:
        record = find_api_key(conn, "old")
    engine.dispose()
    assert record is not None and record.scopes == DEFAULT_API_SCOPES


PUBLIC = ("/t/", "/unsubscribe/", "/consent/confirm", "/healthz", "/metrics", "/dashboard")
PARAMS = {"email": "a@example.org", "message_id": "1", "endpoint_id": "1", "rule_id": "1"}


def test_no_api_route_is_open_to_a_key_without_its_scope(stack: Stack) -> None:
    # Every documented route but the public ones: a key holding only the admin scope gets 403 on all
    # of them except the privacy routes, and the default key (everything but privacy) on exactly those.
    admin_only = key_with(stack, "privacy")
    checked = 0
    for template, operations in stack.client.get("/openapi.json").json()["paths"].items():
        if template.startswith(PUBLIC):
            continue
        path = template
        for name, value in PARAMS.items():
            path = path.replace("{" + name + "}", value)
        for method in operations:
            privacy = template.startswith("/api/v1/privacy/")
            refused = stack.client.request(method, path, auth=stack.auth if privacy else admin_only, json={})
            assert refused.status_code == 403, (method, template, refused.text)
            assert stack.client.request(method, path, json={}).status_code == 401, (method, template)
            checked += 1
    assert checked >= 20
