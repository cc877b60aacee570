"""The purge as an operator meets it: `mailstack privacy purge`, the [retention] settings, the
background job of `mailstack serve`, and a broken policy file refused with the key it stumbles on."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from mailstack.config import ConfigError, load_settings
from mailstack.keyring import Keyring
from mailstack.model import Address, MessageSpec
from mailstack.privacy import (
    ERASED,
    POLICY_FILE,
    LocalKeyProvider,
    RetentionJob,
    Vault,
    list_audit,
    load_retention,
    policy_path,
)
from mailstack.storage import SentRecord, create_api_key, insert_messages, record_sent
from mailstack.storage.schema import messages

MAILSTACK = str(Path(sys.executable).parent / "mailstack")
DAY = 86_400.0


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MAILSTACK, *args], capture_output=True, text=True, check=False, timeout=120)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    result = _run("init", "--data-dir", str(tmp_path / "data"), "--domain", "shop.example", "--json")
    assert result.returncode == 0, result.stderr
    return tmp_path / "data"


def _configure(data_dir: Path, settings: str) -> None:
    config = data_dir / "mailstack.toml"
    config.write_text(config.read_text().replace("[retention]\n", f"[retention]\n{settings}\n", 1))


def _audit_entries(data_dir: Path) -> int:
    engine = create_engine(load_settings(data_dir).database_url)
    try:
        with engine.connect() as conn:
            return len(list_audit(conn, action="purge"))
    finally:
        engine.dispose()


def test_the_command_purges_and_reports_what_it_enforced(data_dir: Path) -> None:
    dry = _run("privacy", "purge", "--data-dir", str(data_dir), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["dry_run"] is True and report["policy_sha256"] == load_retention().digest
    assert report["settings"]["enabled"] is True and report["settings"]["interval_seconds"] == 3600
    assert report["classes"]["archives"]["enforced_by"] == "infrastructure"
    assert _audit_entries(data_dir) == 0  # a dry run leaves no trace
    text = _run("privacy", "purge", "--data-dir", str(data_dir))
    assert text.returncode == 0 and "delivery_logs" in text.stdout and "infrastructure" in text.stdout
    assert _audit_entries(data_dir) == 1


def test_a_broken_policy_file_is_refused_naming_the_key(data_dir: Path) -> None:
    broken = POLICY_FILE.read_text().replace("max_age_days: 90", "max_age_days: ninety", 1)
    (data_dir / "policy.yaml").write_text(broken)
    _configure(data_dir, 'policy_file = "policy.yaml"')
    result = _run("privacy", "purge", "--data-dir", str(data_dir))
    assert result.returncode == 2
    assert "policy.yaml" in result.stderr and "classes.delivery_logs.max_age_days" in result.stderr
    assert _audit_entries(data_dir) == 0
    # serve refuses to start rather than run without its purge.
    served = _run("serve", "--data-dir", str(data_dir))
    assert served.returncode == 1
    assert "classes.delivery_logs.max_age_days" in served.stdout + served.stderr


def test_settings_choose_the_policy_file_and_reject_nonsense(data_dir: Path) -> None:
    settings = load_settings(data_dir)
    assert policy_path(settings.data_dir, settings.retention.policy_file) == POLICY_FILE
    assert policy_path(data_dir, "mine.yaml") == data_dir / "mine.yaml"
    _configure(data_dir, "batch_size = 0")
    with pytest.raises(ConfigError, match=r"retention\.batch_size"):
        load_settings(data_dir)


def test_the_background_job_purges_on_its_schedule_and_stops_promptly(engine: Engine) -> None:
    keyring = Keyring(secrets.token_bytes(32))
    vault = Vault(engine, keyring, LocalKeyProvider(keyring))
    old = time.time() - 100 * DAY
    spec = MessageSpec(
        sender=Address("news@shop.example"), to=(Address("ana@example.net", "Ana"),), text="hi"
    )
    with engine.begin() as conn:
        create_api_key(conn)
        (accepted,) = insert_messages(conn, 1, [spec], now=old, vault=vault)
        record_sent(conn, [SentRecord(accepted[0].message_id, 1, "250 ok", None)], now=old, vault=vault)
    job = RetentionJob(engine, load_retention(), interval_seconds=3600, batch_size=10)
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if list_audit(conn, action="purge"):
                    break
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()  # waiting for the next run ends with the stop signal
    with engine.connect() as conn:
        (entry,) = list_audit(conn, action="purge")
        recipient = conn.execute(messages.select()).one().recipient
    assert entry.detail["classes"]["delivery_logs"]["tables"]["messages"]["anonymised"] == 1
    assert recipient == ERASED
