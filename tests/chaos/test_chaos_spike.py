"""Load spike against a real ``mailstack serve``: hundreds of Send API requests at once while the workers
deliver to a slow relay. Never a 5xx; every request answered 2xx is delivered (nothing lost); a request shed
by a configured limit is answered 429 with Retry-After in Mailjet's error shape, and nothing of it is sent.
Counts are small and nothing is timed here: bench/bench_spike.py measures the latencies."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from serve_support import Instance, initialised
from support import SmtpSink

REQUESTS = 400
RATE = 400.0  # requests per second the clients aim at: far beyond what serve accepts on a small machine
RELAY_DELAY = 0.005  # seconds the relay takes for each DATA: the workers stay busy


@dataclass
class Spike:
    codes: Counter[int] = field(default_factory=Counter)
    accepted: set[str] = field(default_factory=set)  # recipients of the requests answered 2xx
    shed: set[str] = field(default_factory=set)  # recipients of the requests answered 429
    problems: list[str] = field(default_factory=list)  # answers no client may get


def _message(recipient: str) -> dict[str, object]:
    return {
        "From": {"Email": "news@example.com"},
        "To": [{"Email": recipient}],
        "Subject": "Spring sale",
        "TextPart": "Everything must go.",
        "HTMLPart": "<p>Everything <b>must</b> go.</p>",
    }


async def _spike(instance: Instance) -> Spike:
    """POST ``REQUESTS`` requests at ``RATE`` (open loop), one message to its own recipient each."""
    spike = Spike()
    # Idle connections are dropped before uvicorn drops them (5 s): never reused while it closes them.
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=1.0)
    async with httpx.AsyncClient(auth=instance.auth, timeout=120, limits=limits) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def one(index: int) -> None:
            await asyncio.sleep(max(0.0, start + index / RATE - loop.time()))
            recipient = f"reader{index}@example.net"
            try:
                response = await client.post(
                    f"{instance.url}/v3.1/send", json={"Messages": [_message(recipient)]}
                )
            except httpx.TransportError as exc:
                spike.problems.append(f"request {index}: no answer ({exc!r})")
                return
            spike.codes[response.status_code] += 1
            if response.status_code == 200:
                assert response.json()["Messages"][0]["Status"] == "success"
                spike.accepted.add(recipient)
            elif response.status_code == 429:
                body = response.json()
                retry_after = response.headers.get("Retry-After", "")
                if not retry_after.isdigit() or int(retry_after) < 1:
                    spike.problems.append(f"429 without a usable Retry-After: {retry_after!r}")
                if set(body) != {"ErrorIdentifier", "ErrorCode", "StatusCode", "ErrorMessage"}:
                    spike.problems.append(f"429 not in Mailjet's error shape: {body}")
                spike.shed.add(recipient)
            else:
                spike.problems.append(f"request {index}: {response.status_code} {response.text[:200]}")

        await asyncio.gather(*(one(index) for index in range(REQUESTS)))
    return spike


@pytest.fixture(params=["sqlite", "postgresql"])
def instance_on(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Instance]:
    """An initialised data directory on each backend, killed at exit."""
    url = str(request.getfixturevalue("pg_url")) if request.param == "postgresql" else None
    with initialised(tmp_path, url) as instance:
        yield instance


def test_a_spike_is_accepted_without_errors_and_all_of_it_delivered(
    instance_on: Instance, smtp_sink: SmtpSink
) -> None:
    smtp_sink.delay = RELAY_DELAY
    instance_on.start(relay=f"{smtp_sink.host}:{smtp_sink.port}")
    spike = asyncio.run(_spike(instance_on))
    assert spike.problems == [], spike.problems[:10]
    assert spike.codes == Counter({200: REQUESTS})  # no limit configured: nothing is shed
    delivered = smtp_sink.wait_for_recipients(spike.accepted, timeout=180)
    assert spike.accepted - delivered == set(), f"lost: {sorted(spike.accepted - delivered)[:10]}"
    assert instance_on.stop() == 0


def test_a_spike_beyond_the_configured_limit_is_shed_with_429_and_retry_after(
    instance_on: Instance, smtp_sink: SmtpSink
) -> None:
    instance_on.set_config("server", "max_requests_per_second", "50")
    instance_on.set_config("server", "max_concurrent_requests", "20")
    smtp_sink.delay = RELAY_DELAY
    instance_on.start(relay=f"{smtp_sink.host}:{smtp_sink.port}")
    spike = asyncio.run(_spike(instance_on))
    assert spike.problems == [], spike.problems[:10]
    assert set(spike.codes) <= {200, 429}, spike.codes
    assert spike.codes[429] > 0 and spike.codes[200] > 0, spike.codes
    delivered = smtp_sink.wait_for_recipients(spike.accepted, timeout=180)
    assert spike.accepted - delivered == set(), f"lost: {sorted(spike.accepted - delivered)[:10]}"
    assert instance_on.stop() == 0
    received = {rcpt for mail in smtp_sink.received for rcpt in mail.rcpt_tos}
    assert received & spike.shed == set()  # a shed request stored nothing, so nothing of it went out
