"""The postgresql role's server settings (listen address, TLS, pg_hba.conf, SCRAM), on a throwaway cluster.

The machine's own cluster belongs to the machine (the local inventory leaves its settings alone), so the
role's `postgresql__manage_server` path is proven here on a cluster this test creates and drops.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from roles_support import BIN, INVENTORY, REPO, ansible_env

pytestmark = pytest.mark.timeout(900)

VERSION, CLUSTER, PORT = "15", "mailstacktest", 5499
PASSWORD = "cluster-test-password-1234"


def playbook(*extra: str) -> tuple[int, dict[str, int], str]:
    """Run tests/roles/postgresql-cluster.yml; returns (rc, recap of localhost, output)."""
    with tempfile.TemporaryDirectory(prefix="mailstack-recap-") as scratch:
        recap = Path(scratch) / "recap.json"
        result = subprocess.run(
            [
                str(BIN / "ansible-playbook"),
                *("-i", str(INVENTORY), "tests/roles/postgresql-cluster.yml"),
                "-e",
                json.dumps(
                    {
                        "postgresql__cluster": CLUSTER,
                        "postgresql__port": PORT,
                        "postgresql__manage_server": True,
                        "postgresql__listen_addresses": ["127.0.0.1"],
                        "postgresql__clients": ["127.0.0.1"],
                        "postgresql__password": PASSWORD,
                        "postgresql__database": "mailstack_cluster_test",
                        "postgresql__user": "mailstack_cluster_test",
                    }
                ),
                *extra,
            ],
            cwd=REPO,
            env=ansible_env(recap),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        stats = json.loads(recap.read_text())["stats"].get("localhost", {}) if recap.exists() else {}
    return result.returncode, stats, result.stdout[-6000:] + result.stderr[-2000:]


def _cluster(*args: str) -> None:
    subprocess.run(args, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def cluster(roles_lock: None) -> Iterator[None]:
    _cluster("pg_dropcluster", "--stop", VERSION, CLUSTER)
    created = subprocess.run(
        ["pg_createcluster", VERSION, CLUSTER, "--port", str(PORT), "--start"],
        capture_output=True,
        text=True,
        check=False,
    )
    if created.returncode != 0:
        pytest.fail(f"pg_createcluster failed: {created.stderr}", False)
    try:
        yield
    finally:
        _cluster("pg_dropcluster", "--stop", VERSION, CLUSTER)


def connect(**options: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host="127.0.0.1",
        port=PORT,
        dbname="mailstack_cluster_test",
        user="mailstack_cluster_test",
        connect_timeout=10,
        **options,
    )


def test_role_configures_the_cluster_idempotently(cluster: None) -> None:
    rc, stats, output = playbook()
    assert rc == 0, output
    rc, stats, output = playbook()
    assert rc == 0 and stats.get("changed") == 0, (stats, output)

    conf = Path(f"/etc/postgresql/{VERSION}/{CLUSTER}/conf.d/50-mailstack.conf").read_text()
    assert "listen_addresses = '127.0.0.1'" in conf and "ssl = on" in conf
    hba = Path(f"/etc/postgresql/{VERSION}/{CLUSTER}/pg_hba.conf").read_text()
    first_rule = next(line for line in hba.splitlines() if line and not line.startswith("#"))
    assert first_rule.split() == [
        "hostssl",
        "mailstack_cluster_test",
        "mailstack_cluster_test",
        "127.0.0.1/32",
        "scram-sha-256",
    ]

    with connect(password=PASSWORD, sslmode="require") as conn:
        row = conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert row is not None and row[0] is True and row[1] in ("TLSv1.2", "TLSv1.3")
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        assert owner == ("mailstack_cluster_test",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(password="wrong", sslmode="require").close()
