"""The AWS contract (infra/README.md, "Contract with the Ansible roles"): the variable files a booting sender
passes to site.yml are rendered by the roles into a mailstack.toml that mailstack's own loader accepts, with
the SQS queue and the claimed Elastic IP as a warmed-up sending IP, and a Postfix listener sending from it."""

from __future__ import annotations

import datetime
import importlib.util
import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from roles_support import BIN, REPO, ansible_env

from mailstack.config import Settings, load_settings

pytestmark = pytest.mark.timeout(600)


def _boot_module() -> Any:
    """infra/boot.py as the boot script ships it (loaded by path: `infra` is also a test directory name)."""
    spec = importlib.util.spec_from_file_location("mailstack_boot", REPO / "infra" / "boot.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/mailstack-prod-delivery"
DEAD_LETTER_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/mailstack-prod-dead-letter"
PRIVATE_ADDRESS = "10.0.1.23"  # the instance's primary private address, which AWS maps to the Elastic IP
# What infra/program.py puts in cloud-vars.json: the roles' own variables and mailstack_cloud.
CLOUD_VARS = {
    "mailstack_domain": "example.com",
    "mailstack_bounce_domain": "bounces.example.com",
    "mailstack_public_url": "https://api.example.com",
    "mailstack_database_host": "mailstack-prod.abcdefgh.eu-west-1.rds.amazonaws.com",
    "mailstack_database_port": 5432,
    "mailstack_database_name": "mailstack",
    "mailstack_database_user": "mailstack",
    "mailstack_database_sslmode": "require",
    "mailstack_cloud": {
        "stack": "prod",
        "region": "eu-west-1",
        "queue": {
            "backend": "sqs",
            "sqs_url": QUEUE_URL,
            "sqs_dead_letter_url": DEAD_LETTER_URL,
            "lease_seconds": 300,
            "max_attempts": 12,
        },
        "ip_pool": "mailstack-prod",
        "warmup": {"first": 50, "growth": 1.5, "ceiling": 200000},
        "metrics_namespace": "Mailstack",
    },
    "mailstack_metrics_enabled": True,
    "mailstack_metrics_namespace": "Mailstack",
    "mailstack_metrics_stack": "prod",
    "mailstack_metrics_region": "eu-west-1",
}
# What infra/boot.py's claim writes to ip-vars.json.
CLAIMED = {
    "address": "198.51.100.7",
    "allocation_id": "eipalloc-0123",
    "hostname": "mta-3.example.com",
    "warmup_start": "2026-11-20",
}
SECRET_VARS = {"mailstack_secret_key": "ab" * 32, "mailstack_database_password": "from-secrets-manager"}


@pytest.fixture(scope="module")
def rendered() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mailstack-cloud-") as scratch:
        work = Path(scratch)
        # The boot script's one-host inventory; the private address comes with the claim (ip-vars.json).
        (work / "inventory.ini").write_text("[senders]\nlocalhost ansible_connection=local\n")
        for name, document in (
            ("cloud-vars.json", CLOUD_VARS),
            ("ip-vars.json", _boot_module().ip_variables(CLAIMED, PRIVATE_ADDRESS)),
            ("secret-vars.json", SECRET_VARS),
        ):
            (work / name).write_text(json.dumps(document))
        out = work / "out"
        result = subprocess.run(
            [
                str(BIN / "ansible-playbook"),
                *("-i", str(work / "inventory.ini"), "tests/roles/render/render-example.yml"),
                *("-e", f"render_dir={out}"),
                *(arg for name in ("cloud", "ip", "secret") for arg in ("-e", f"@{work / name}-vars.json")),
            ],
            cwd=REPO,
            env=ansible_env(work / "recap.json"),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        yield out / "localhost"


def settings(rendered: Path, tmp_path: Path) -> Settings:
    """The rendered file through mailstack's own loader: it must parse and validate."""
    (tmp_path / "mailstack.toml").write_text((rendered / "var/lib/mailstack/mailstack.toml").read_text())
    return load_settings(tmp_path)


def test_the_sqs_queue_of_the_stack_is_mailstacks_queue(rendered: Path, tmp_path: Path) -> None:
    loaded = settings(rendered, tmp_path)
    assert loaded.queue.backend == "sqs"
    assert loaded.queue.sqs_url == QUEUE_URL and loaded.queue.sqs_dead_letter_url == DEAD_LETTER_URL
    assert loaded.queue.lease_seconds == 300 and loaded.delivery.max_attempts == 12
    # (the render playbook stands in a password of its own for the role's)
    assert loaded.database.url.endswith(
        "@mailstack-prod.abcdefgh.eu-west-1.rds.amazonaws.com:5432/mailstack?sslmode=require"
    )
    assert loaded.mail.hostname == "mta-3.example.com"


def test_senders_publish_the_metrics_the_alarms_read(rendered: Path, tmp_path: Path) -> None:
    metrics = settings(rendered, tmp_path).metrics
    assert metrics.enabled
    assert (metrics.namespace, metrics.stack, metrics.region) == ("Mailstack", "prod", "eu-west-1")


def test_the_claimed_elastic_ip_is_a_sending_ip_warming_up_from_its_claim(
    rendered: Path, tmp_path: Path
) -> None:
    (ip,) = settings(rendered, tmp_path).throttle.ips
    assert ip.address == "198.51.100.7" and ip.relay == "127.0.0.1:10026"
    assert ip.warmup_start == datetime.date(2026, 11, 20)
    assert (ip.warmup_first, ip.warmup_growth, ip.warmup_ceiling) == (50, 1.5, 200000)


def test_postfix_listens_for_the_elastic_ip_and_sends_from_the_private_address(rendered: Path) -> None:
    master = (rendered / "etc/postfix/master.cf").read_text()
    assert "127.0.0.1:10026 inet n" in master
    transports = master.split("127.0.0.1:10026 inet n", 1)[1]
    # The instance does not hold the Elastic IP; AWS translates its primary private address to it.
    assert f"-o smtp_bind_address={PRIVATE_ADDRESS}\n" in transports
    assert "-o smtp_helo_name=mta-3.example.com\n" in transports
    assert "-o content_filter=other_ip198_51_100_7:" in transports
    routes = (rendered / "etc/postfix/sending_ips/ip198_51_100_7").read_text()
    assert "gmail.com\tFILTER google_ip198_51_100_7:\n" in routes
