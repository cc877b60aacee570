"""Hostile input gets a clear 4xx in Mailjet's error shape, never a 500: JSON nested too deep, IDs past
64 bits and non-integers in paths and query strings, unknown routes and methods. The connection stays
usable after each refusal."""

from __future__ import annotations

import base64
import http.client
from collections.abc import Iterator
from typing import Any

import pytest
from engagement_support import Stack, make_stack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_support import Instance

from mailstack.storage import API_SCOPES, create_api_key

MAILJET_ERROR = {"ErrorIdentifier", "ErrorCode", "StatusCode", "ErrorMessage", "ErrorInfo"}
JSON_ROUTES = ["/v3.1/send", "/api/v1/suppressions", "/v3/REST/eventcallbackurl", "/api/v1/automations",
               "/api/v1/consents", "/api/v1/conversions"]  # fmt: skip
# Every route with an integer id in its path ({id} stands for it).
ID_ROUTES = [
    ("GET", "/v3/REST/message/{id}"),
    ("GET", "/v3/REST/messagehistory/{id}"),
    ("GET", "/api/v1/outbox/{id}"),
    ("GET", "/v3/REST/eventcallbackurl/{id}"),
    ("DELETE", "/v3/REST/eventcallbackurl/{id}"),
    ("GET", "/v3/REST/eventcallbackurl/{id}/deliveries"),
    ("DELETE", "/api/v1/automations/{id}"),
    ("GET", "/api/v1/automations/{id}/runs"),
]
# Every integer query parameter: (path, name).
INTEGER_QUERIES = [
    ("/api/v1/outbox", "limit"),
    ("/api/v1/suppressions", "limit"),
    ("/api/v1/suppressions", "offset"),
    ("/api/v1/automations/1/runs", "Limit"),
    ("/api/v1/automations/1/runs", "Offset"),
    ("/v3/REST/eventcallbackurl/1/deliveries", "Limit"),
    ("/api/v1/privacy/audit", "limit"),
]
TIMESTAMP_QUERIES = [
    ("/api/v1/privacy/audit", "since"),
    ("/v3/REST/statistics/recipient-esp", "FromTS"),
    ("/v3/REST/statistics/recipient-esp", "ToTS"),
]
BIG = str(2**63)
_TEXT = st.characters(blacklist_categories=("Cc", "Cs"))  # what a URL can carry


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("hostile")
    with make_stack(tmp, f"sqlite:///{tmp / 'mailstack.db'}") as running:
        yield running


@pytest.fixture(scope="module")
def key(stack: Stack) -> tuple[str, str]:
    """A key holding every scope, so that no route stops at 403 before looking at its input."""
    with stack.runtime.engine.begin() as conn:
        return create_api_key(conn, "everything", API_SCOPES)


def _assert_mailjet_error(response: Any, status: int | tuple[int, ...]) -> None:
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, response.text
    body = response.json()
    assert set(body) >= MAILJET_ERROR, body
    assert body["StatusCode"] == response.status_code


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_json_nested_too_deep_is_malformed_json(
    stack: Stack, key: tuple[str, str], path: str, depth: int
) -> None:
    for body in (_nested(depth), b'{"a":' * depth + b"1" + b"}" * depth):
        response = stack.client.post(path, content=body, auth=key)
        _assert_mailjet_error(response, 400)
        assert response.json()["ErrorCode"] == "mj-0002"


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_json_numbers_are_malformed_json(
    stack: Stack, key: tuple[str, str], path: str, constant: bytes
) -> None:
    response = stack.client.post(path, content=b'{"Value": ' + constant + b"}", auth=key)
    _assert_mailjet_error(response, 400)
    assert response.json()["ErrorCode"] == "mj-0002"


@pytest.mark.parametrize(("method", "template"), ID_ROUTES)
@pytest.mark.parametrize("value", [BIG, "99999999999999999999999999", "abc", "1.5", "-1", "0", "²"])
def test_ids_out_of_range_or_not_integers_are_refused(
    stack: Stack, key: tuple[str, str], method: str, template: str, value: str
) -> None:
    response = stack.client.request(method, template.replace("{id}", value), auth=key)
    _assert_mailjet_error(response, (400, 404))


@pytest.mark.parametrize(("path", "name"), INTEGER_QUERIES)
@pytest.mark.parametrize("value", [BIG, "abc", "1e3", "²", "-5"])
def test_integer_query_parameters_are_validated(
    stack: Stack, key: tuple[str, str], path: str, name: str, value: str
) -> None:
    response = stack.client.get(path, params={name: value}, auth=key)
    _assert_mailjet_error(response, (400, 404))
    if response.status_code == 400:
        assert name in response.json()["ErrorMessage"]


@pytest.mark.parametrize(("path", "name"), TIMESTAMP_QUERIES)
@pytest.mark.parametrize("value", [BIG, "9" * 30, "²", "10000-01-01T00:00:00Z", "-1"])
def test_timestamps_out_of_range_are_refused(
    stack: Stack, key: tuple[str, str], path: str, name: str, value: str
) -> None:
    response = stack.client.get(path, params={name: value}, auth=key)
    _assert_mailjet_error(response, 400)


def test_outbox_limit_abc_is_a_400(stack: Stack) -> None:
    response = stack.client.get("/api/v1/outbox?limit=abc", auth=stack.auth)
    _assert_mailjet_error(response, 400)
    assert "limit" in response.json()["ErrorMessage"]


def test_unknown_routes_and_methods_answer_in_mailjet_s_shape(stack: Stack) -> None:
    _assert_mailjet_error(stack.client.get("/v3/REST/nothing-here"), 404)
    wrong_method = stack.client.put("/v3.1/send", auth=stack.auth)
    _assert_mailjet_error(wrong_method, 405)
    assert wrong_method.headers["allow"] == "POST"
    unauthenticated = stack.client.get("/api/v1/outbox")
    _assert_mailjet_error(unauthenticated, 401)
    assert unauthenticated.headers["www-authenticate"].startswith("Basic")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(ID_ROUTES),
    value=st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.text(_TEXT, min_size=1, max_size=30).filter(
            lambda s: "/" not in s and "?" not in s and "#" not in s
        ),
    ),
)
def test_any_path_id_gets_an_answer_not_a_server_error(
    stack: Stack, key: tuple[str, str], route: tuple[str, str], value: str
) -> None:
    method, template = route
    response = stack.client.request(method, template.replace("{id}", value), auth=key)
    assert response.status_code in (200, 204, 400, 404), (template, value, response.text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    query=st.sampled_from(INTEGER_QUERIES + TIMESTAMP_QUERIES),
    value=st.one_of(st.integers(min_value=-(2**70), max_value=2**70).map(str), st.text(_TEXT, max_size=30)),
)
def test_any_query_value_gets_an_answer_not_a_server_error(
    stack: Stack, key: tuple[str, str], query: tuple[str, str], value: str
) -> None:
    path, name = query
    response = stack.client.get(path, params={name: value}, auth=key)
    assert response.status_code in (200, 400, 404), (path, name, value, response.text)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(JSON_ROUTES),
    depth=st.integers(min_value=1, max_value=3000),
    opener=st.sampled_from([b"[", b'{"a":']),
)
def test_any_nesting_depth_is_answered_without_a_server_error(
    stack: Stack, key: tuple[str, str], path: str, depth: int, opener: bytes
) -> None:
    closer = b"]" if opener == b"[" else b"}"
    body = opener * depth + (b"" if opener == b"[" else b"1") + closer * depth
    response = stack.client.post(path, content=body, auth=key)
    assert response.status_code < 500
    if depth > 64:
        assert response.status_code == 400 and response.json()["ErrorCode"] == "mj-0002"


@pytest.mark.e2e
def test_the_connection_stays_usable_after_a_refusal(instance: Instance) -> None:
    instance.start()
    host, port = instance.http.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    credentials = ":".join(instance.auth).encode()
    headers = {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
    try:
        requests: list[tuple[str, str, bytes | None, int]] = [
            ("GET", f"/v3/REST/message/{BIG}", None, 400),
            ("GET", "/api/v1/outbox?limit=abc", None, 400),
            ("POST", "/v3.1/send", _nested(10_000), 400),
            ("GET", "/nowhere", None, 404),
            ("PUT", "/v3.1/send", None, 405),
            ("GET", "/api/v1/outbox", None, 200),
        ]
        sockets = set()
        for method, path, body, status in requests:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.status == status, (method, path)
            assert response.getheader("connection") != "close", (method, path)
            sockets.add(id(conn.sock))
        assert len(sockets) == 1  # one connection served every request
    finally:
        conn.close()
    assert instance.stop() == 0
