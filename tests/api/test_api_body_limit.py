"""One streaming body limit for every route: 413 in Mailjet's shape past it, smaller on the public forms.

The in-process client sends bodies whole; the streaming behaviour (reading stops at the limit, the
answer comes while the client is still uploading) is checked against ``mailstack serve`` over a socket.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import httpx
import pytest
from engagement_support import Stack, make_stack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_support import Instance

LIMIT = 20_000  # server.max_body_bytes of these tests
# The public form routes take one small form each, whatever server.max_body_bytes says.
FORMS = {"/dashboard/login": 8192, "/consent/confirm": 8192, "/unsubscribe/not-a-token": 4096}
JSON_ROUTES = ["/v3.1/send", "/api/v1/suppressions", "/v3/REST/eventcallbackurl", "/api/v1/automations",
               "/api/v1/consents", "/api/v1/conversions"]  # fmt: skip


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("limit")
    with make_stack(tmp, f"sqlite:///{tmp / 'mailstack.db'}", {"server": {"max_body_bytes": LIMIT}}) as stack:
        yield stack


def _is_too_large(response_json: dict[str, object], limit: int) -> bool:
    return (
        response_json["StatusCode"] == 413
        and response_json["ErrorMessage"] == f"Request body larger than {limit} bytes."
        and {"ErrorIdentifier", "ErrorCode", "ErrorInfo"} <= set(response_json)
    )


def _chunks(size: int) -> Iterator[bytes]:
    # No Content-Length: the limit is applied while the body arrives.
    while size > 0:
        yield b"x" * min(size, 1000)
        size -= 1000


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_an_authenticated_json_body_over_the_limit_is_refused(small: Stack, path: str) -> None:
    response = small.client.post(path, content=b" " * (LIMIT + 1), auth=small.auth)
    assert response.status_code == 413
    assert _is_too_large(response.json(), LIMIT)
    assert response.headers["connection"] == "close"
    streamed = small.client.post(path, content=_chunks(LIMIT + 1), auth=small.auth)
    assert streamed.status_code == 413 and _is_too_large(streamed.json(), LIMIT)


@pytest.mark.parametrize(("path", "limit"), FORMS.items())
def test_the_public_forms_have_a_small_limit_of_their_own(small: Stack, path: str, limit: int) -> None:
    for body in (b"a=" + b"x" * (limit - 1), _chunks(limit + 1)):
        response = small.client.post(
            path, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert response.status_code == 413 and _is_too_large(response.json(), limit), path
    fits = small.client.post(
        path,
        content=b"a=" + b"x" * (limit - 2),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert fits.status_code != 413


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from([*FORMS.items(), *((path, LIMIT) for path in JSON_ROUTES)]),
    delta=st.integers(min_value=-64, max_value=64),
    chunked=st.booleans(),
)
def test_exactly_the_bodies_over_a_route_s_limit_are_refused(
    small: Stack, route: tuple[str, int], delta: int, chunked: bool
) -> None:
    path, limit = route
    size = limit + delta
    body = _chunks(size) if chunked else b"x" * size
    response = small.client.post(path, content=body, auth=small.auth)
    assert (response.status_code == 413) == (size > limit), (path, size)
    assert response.status_code < 500


def _upload(instance: Instance, path: str, *, declared: bool, total: int) -> tuple[bytes, int]:
    """POST ``total`` bytes in 64 KiB pieces until the server answers; returns (answer, bytes sent)."""
    host, port = instance.http.split(":")
    piece = b"x" * 65536
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        framing = f"Content-Length: {total}" if declared else "Transfer-Encoding: chunked"
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {instance.http}\r\n{framing}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode()
        )
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # the server answered before the upload ended
            try:
                sock.sendall(piece if declared else b"10000\r\n" + piece + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    return answer, sent


@pytest.mark.e2e
def test_the_server_stops_reading_an_oversized_upload(instance: Instance) -> None:
    """A 300 MB upload to an unauthenticated form is answered 413 while it is still being sent."""
    instance.start()
    total = 300 * 1024 * 1024
    for path in FORMS:
        for declared in (True, False):
            answer, sent = _upload(instance, path, declared=declared, total=total)
            assert answer.startswith(b"HTTP/1.1 413 "), (path, declared, answer[:200])
            # Socket buffers take a few megabytes before the answer is seen; never the whole upload.
            assert sent < total // 4, (path, declared, sent)
    assert httpx.get(f"{instance.url}/healthz").status_code == 200
    assert instance.stop() == 0
