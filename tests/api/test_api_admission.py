"""Admission control: beyond a configured limit the API sheds requests with 429, Retry-After and an error in
Mailjet's shape, before doing any work for them; nothing else is ever shed, and no limit is set by default."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
from engagement_support import make_stack
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from starlette.types import Receive, Scope, Send

from mailstack.api._admission import TOO_MANY_REQUESTS, Admission
from mailstack.config import ServerSettings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Backend:
    """The app behind the middleware: answers 200, or waits for ``release`` when ``hold`` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.hold = False
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        if self.hold:
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def _basic(key: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()}


def _admission(backend: Backend, clock: Clock, **limits: Any) -> httpx.AsyncClient:
    middleware = Admission(backend, settings=ServerSettings(**limits), clock=clock)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url="http://api.test")


def _assert_shed(response: httpx.Response) -> int:
    """A 429 in Mailjet's error shape with Retry-After in whole seconds; returns those seconds."""
    assert response.status_code == 429
    body = response.json()
    assert set(body) == {"ErrorIdentifier", "ErrorCode", "StatusCode", "ErrorMessage"}
    assert body["ErrorCode"] == TOO_MANY_REQUESTS
    assert body["StatusCode"] == 429
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    return int(retry_after)


async def test_a_global_rate_admits_a_seconds_worth_then_sheds_until_a_token_is_back() -> None:
    backend, clock = Backend(), Clock()
    async with _admission(backend, clock, max_requests_per_second=5) as client:
        codes = [(await client.post("/v3.1/send", json={})).status_code for _ in range(5)]
        assert codes == [200] * 5
        shed = await client.post("/v3.1/send", json={})
        assert _assert_shed(shed) == 1
        assert backend.calls == 5  # the shed request did no work
        clock.now += 0.2  # one token back
        assert (await client.get("/v3/REST/message/1")).status_code == 200
        assert (await client.get("/api/v1/outbox")).status_code == 429


async def test_retry_after_is_when_a_slow_rate_admits_again() -> None:
    backend, clock = Backend(), Clock()
    async with _admission(backend, clock, max_requests_per_second=0.25) as client:  # one per 4 s
        assert (await client.post("/v3.1/send")).status_code == 200
        clock.now += 1
        assert _assert_shed(await client.post("/v3.1/send")) == 3
        clock.now += 3
        assert (await client.post("/v3.1/send")).status_code == 200


async def test_each_api_key_has_its_own_allowance_that_a_wrong_secret_cannot_use_up() -> None:
    backend, clock = Backend(), Clock()
    async with _admission(backend, clock, max_requests_per_second_per_key=2) as client:
        ana, bob = _basic("ana", "s1"), _basic("bob", "s2")
        for _ in range(5):  # someone who knows ana's public key but not her secret
            await client.post("/v3.1/send", headers=_basic("ana", "guess"))
        assert [(await client.post("/v3.1/send", headers=ana)).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        assert [(await client.post("/v3.1/send", headers=bob)).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]


async def test_concurrent_requests_beyond_the_limit_are_shed_and_admitted_again_once_one_ends() -> None:
    backend, clock = Backend(), Clock()
    backend.hold = True
    async with _admission(backend, clock, max_concurrent_requests=2) as client:
        first = [asyncio.create_task(client.post("/v3.1/send")) for _ in range(2)]
        while backend.calls < 2:
            await asyncio.sleep(0.01)
        assert _assert_shed(await client.post("/v3.1/send")) == 1
        backend.release.set()
        assert [(await task).status_code for task in first] == [200, 200]
        assert (await client.post("/v3.1/send")).status_code == 200


@pytest.mark.parametrize(
    "path", ["/healthz", "/metrics", "/t/o/token", "/t/c/token", "/unsubscribe/token", "/dashboard", "/v3x"]
)
async def test_health_metrics_tracking_and_pages_are_never_shed(path: str) -> None:
    backend, clock = Backend(), Clock()
    async with _admission(backend, clock, max_requests_per_second=1, max_concurrent_requests=1) as client:
        assert [(await client.get(path)).status_code for _ in range(10)] == [200] * 10


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(min_value=0.1, max_value=50),
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=200),
)
def test_a_rate_never_admits_more_than_its_burst_plus_its_rate_and_retry_after_is_enough(
    rate: float, gaps: list[float]
) -> None:
    async def scenario() -> None:
        backend, clock = Backend(), Clock()
        start = clock.now
        async with _admission(backend, clock, max_requests_per_second=rate) as client:
            for gap in gaps:
                clock.now += gap
                response = await client.post("/v3.1/send")
                assert response.status_code in (200, 429)
                if response.status_code == 429:
                    # Retrying after Retry-After is admitted (nothing else arrived meanwhile).
                    clock.now += _assert_shed(response)
                    assert (await client.post("/v3.1/send")).status_code == 200
            elapsed = clock.now - start
            assert backend.calls <= max(1.0, rate) + rate * elapsed + 1e-6
            assert backend.calls >= min(len(gaps), 1)

    asyncio.run(scenario())


def test_limits_are_off_by_default() -> None:
    defaults = ServerSettings()
    assert (
        defaults.max_requests_per_second,
        defaults.max_requests_per_second_per_key,
        defaults.max_concurrent_requests,
    ) == (0, 0, 0)


def test_the_app_sheds_send_requests_beyond_the_configured_limit(tmp_path: Path, sqlite_url: str) -> None:
    overrides = {"server": {"max_requests_per_second_per_key": 3}}
    with make_stack(tmp_path, sqlite_url, overrides) as stack:
        message = {
            "From": {"Email": "news@example.com"},
            "To": [{"Email": "ana@example.net"}],
            "Subject": "Hi",
            "TextPart": "Hello",
        }
        auth = (stack.api_key, stack.api_secret)
        responses = [
            stack.client.post("/v3.1/send", json={"Messages": [message]}, auth=auth) for _ in range(6)
        ]
        codes = [r.status_code for r in responses]
        assert codes.count(200) >= 3 and set(codes) <= {200, 429} and 429 in codes
        for response in responses:
            if response.status_code == 429:
                _assert_shed(response)
        assert stack.client.get("/healthz").status_code == 200
        metrics = stack.client.get("/metrics").text
        assert f'mailstack_http_requests_shed_total{{limit="key"}} {float(codes.count(429))}' in metrics
        with stack.runtime.engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM messages")).scalar_one()
        assert stored == codes.count(200)  # a shed request stored nothing
