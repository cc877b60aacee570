"""``mailstack serve`` with ``[metrics]`` enabled publishes what it sends to CloudWatch (moto_server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from support import free_port

MAILSTACK = str(Path(sys.executable).parent / "mailstack")
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


@pytest.fixture
def moto_endpoint(tmp_path: Path) -> Iterator[str]:
    """moto's AWS server on a loopback port."""
    port = free_port()
    log = (tmp_path / "moto.log").open("wb")
    server = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=1)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"moto_server did not start; see {tmp_path / 'moto.log'}")
            time.sleep(0.1)
    try:
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def _sent(cloudwatch: Any) -> float:
    now = time.time()
    answer = cloudwatch.get_metric_statistics(
        Namespace="Mailstack",
        MetricName="Sent",
        Dimensions=[{"Name": "Stack", "Value": "dev"}],
        StartTime=datetime.fromtimestamp(now - 3600, UTC),
        EndTime=datetime.fromtimestamp(now + 3600, UTC),
        Period=3600,
        Statistics=["Sum"],
    )
    return float(sum(point["Sum"] for point in answer["Datapoints"]))


@pytest.mark.e2e
def test_serve_publishes_the_mail_it_sends(
    tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    env = {k: v for k, v in os.environ.items() if k != "MAILSTACK_DATABASE_URL"} | AWS_ENV
    data_dir = tmp_path / "data"
    init = subprocess.run(
        [MAILSTACK, "init", "--data-dir", str(data_dir), "--domain", "example.com", "--json"],
        capture_output=True,
        env=env,
        check=False,
    )
    assert init.returncode == 0, init.stderr.decode()
    credentials = json.loads(init.stdout)
    # What the mailstack role renders from the mailstack_metrics_* variables (infra/README.md).
    path = data_dir / "mailstack.toml"
    path.write_text(
        path.read_text().replace(
            "\n[metrics]\n",
            '\n[metrics]\nenabled = true\nstack = "dev"\nregion = "eu-west-1"\n'
            f'endpoint_url = "{moto_endpoint}"\ninterval_seconds = 1\n',
        )
    )
    http = f"127.0.0.1:{free_port()}"
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [MAILSTACK, "serve", "--data-dir", str(data_dir), "--http", http],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://{http}"
    cloudwatch = boto3.client("cloudwatch", endpoint_url=moto_endpoint, region_name="eu-west-1")
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        messages = [
            {
                "From": {"Email": "news@example.com"},
                "To": [{"Email": f"r{i}@example.net"}],
                "Subject": "Hi",
                "TextPart": "Hello",
            }
            for i in range(3)
        ]
        auth = (credentials["api_key"], credentials["api_secret"])
        sent = httpx.post(f"{base}/v3.1/send", json={"Messages": messages}, auth=auth, timeout=10)
        assert sent.status_code == 200, sent.text
        deadline = time.monotonic() + 30
        while _sent(cloudwatch) < 3:  # the sandbox outbox takes them; the publisher reports them
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        time.sleep(1.5)  # another interval: nothing is published twice
        assert _sent(cloudwatch) == 3
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    assert process.returncode == 0, log_path.read_text()
    assert "cloudwatch_metrics" in log_path.read_text()
