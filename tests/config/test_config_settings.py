"""Configuration: validated at start, with errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstack.config import ConfigError, load_settings, render_default_config


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "mailstack.toml").write_text(text)
    (tmp_path / "secret.key").write_text("ab" * 32)
    return tmp_path


def test_the_default_file_loads_with_documented_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAILSTACK_DATABASE_URL", raising=False)
    settings = load_settings(_write(tmp_path, render_default_config("example.com")))
    assert settings.mail.domain == "example.com"
    assert settings.hostname == "mail.example.com" and settings.bounce_domain == "bounces.example.com"
    assert settings.database_url == f"sqlite:///{tmp_path / 'mailstack.db'}"
    assert settings.delivery.relay == "" and settings.public_url == "http://127.0.0.1:8800"
    assert settings.secret_key() == bytes.fromhex("ab" * 32)


def test_environment_overrides_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSTACK_DATABASE_URL", "postgresql://u@db.internal/mail")
    settings = load_settings(_write(tmp_path, render_default_config("example.com")))
    assert settings.database_url == "postgresql://u@db.internal/mail"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[mail]\ndomain = "example.com"\n[delivery]\nworkers = "four"\n', "delivery.workers"),
        ('[mail]\ndomain = "example.com"\n[delivery]\nrelay = "localhost"\n', "delivery.relay"),
        ('[mail]\ndomain = "example.com"\n[server]\nhttp = "127.0.0.1:99999"\n', "server.http"),
        ('[mail]\ndomain = "example.com"\n[delivery]\nretries = 3\n', "delivery.retries"),
        ("[server]\n", "mail"),
        ('[mail]\ndomain = "example.com"\n[queue]\nlease_seconds = -1\n', "queue.lease_seconds"),
    ],
)
def test_invalid_settings_name_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(_write(tmp_path, text))
    assert named in str(error.value)
    assert str(tmp_path / "mailstack.toml") in str(error.value)


def test_broken_toml_and_missing_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mailstack init"):
        load_settings(tmp_path)
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(_write(tmp_path, "[mail\n"))


def test_a_short_or_missing_secret_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILSTACK_SECRET_KEY", raising=False)
    settings = load_settings(_write(tmp_path, render_default_config("example.com")))
    (tmp_path / "secret.key").write_text("abcd")
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        settings.secret_key()
    (tmp_path / "secret.key").unlink()
    with pytest.raises(ConfigError, match="missing"):
        settings.secret_key()
    monkeypatch.setenv("MAILSTACK_SECRET_KEY", "cd" * 32)
    assert settings.secret_key() == bytes.fromhex("cd" * 32)


@pytest.mark.parametrize(
    ("relay", "postfix_log", "sent_is_delivery"),
    [
        ("", "", True),  # the sandbox outbox is the destination
        ("127.0.0.1:25", "", True),  # any MTA or smarthost: its 250 is the last word
        ("127.0.0.1:25", "/var/log/postfix.log", False),  # Postfix's log says what the destination did
        ("", "/var/log/postfix.log", True),  # sandbox: nothing reaches Postfix to be logged
    ],
)
def test_one_source_decides_delivery(
    tmp_path: Path, relay: str, postfix_log: str, sent_is_delivery: bool
) -> None:
    overrides = {"delivery": {"relay": relay}, "feedback": {"postfix_log": postfix_log}}
    settings = load_settings(_write(tmp_path, render_default_config("example.com")), overrides)
    assert settings.sent_is_delivery is sent_is_delivery
