"""The vault: envelope encryption at rest, per-subject keys (crypto-shredding), rotation, KMS."""

from __future__ import annotations

import threading
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import Engine, func, select, update
from support import make_vault

from mailstack.config import ConfigError, load_settings, render_default_config
from mailstack.keyring import DecryptionError, Keyring
from mailstack.storage import (
    KmsKeyProvider,
    LocalKeyProvider,
    ShreddedDataError,
    Vault,
    address_index,
    create_storage_engine,
    migrate,
    provider_from_settings,
)
from mailstack.storage.schema import data_keys, key_versions

SECRET = bytes(range(32))


def _subject(address: str) -> str:
    return address_index(Keyring(SECRET), address)


def test_sealed_data_opens_again_and_reads_nothing_like_the_plaintext(engine: Engine) -> None:
    vault = make_vault(engine, SECRET)
    ana = _subject("ana@example.net")
    with engine.begin() as conn:
        mine = vault.seal(conn, b"ana@example.net", purpose="messages.recipient", subject=ana)
        shared = vault.seal(conn, b'{"Subject":"hello"}', purpose="contents.spec", subject=None)
    assert b"ana@example.net" not in mine and b"hello" not in shared
    # Another process (a fresh vault, empty caches) reads both.
    with engine.connect() as conn:
        other = make_vault(engine, SECRET)
        assert other.open(conn, mine, purpose="messages.recipient") == b"ana@example.net"
        assert other.open(conn, shared, purpose="contents.spec") == b'{"Subject":"hello"}'
    # The same plaintext never gives the same blob (fresh nonces).
    with engine.begin() as conn:
        again = vault.seal(conn, b"ana@example.net", purpose="messages.recipient", subject=ana)
    assert again != mine


def test_altered_data_and_another_purpose_are_refused(engine: Engine) -> None:
    vault = make_vault(engine, SECRET)
    with engine.begin() as conn:
        blob = vault.seal(conn, b"secret body", purpose="outbox.data", subject=_subject("a@example.net"))
    tampered = bytearray(blob)
    tampered[-1] ^= 0x01
    with engine.connect() as conn:
        with pytest.raises(DecryptionError, match="altered"):
            vault.open(conn, bytes(tampered), purpose="outbox.data")
        # Moving a sealed value to another column is refused: the purpose is bound into it.
        with pytest.raises(DecryptionError, match="another use"):
            vault.open(conn, blob, purpose="messages.recipient")
        with pytest.raises(DecryptionError, match="unknown format"):
            vault.open(conn, b"ana@example.net", purpose="outbox.data")


def test_one_key_per_subject_and_a_batch_costs_one_insert(engine: Engine) -> None:
    vault = make_vault(engine, SECRET)
    subjects = [_subject(f"r{i}@example.net") for i in range(50)]
    with engine.begin() as conn:
        keys = vault.data_keys_for(conn, [*subjects, *subjects[:10], None])
        again = vault.data_keys_for(conn, subjects)
        count = conn.execute(select(func.count()).select_from(data_keys)).scalar_one()
    assert count == 51  # 50 subjects and today's shared key
    assert len(set(keys.values())) == 51
    assert all(again[s] == keys[s] for s in subjects)


def test_a_rolled_back_key_is_never_used_later(engine: Engine) -> None:
    vault = make_vault(engine, SECRET)
    zoe = _subject("zoe@example.net")
    with pytest.raises(RuntimeError), engine.begin() as conn:
        vault.seal(conn, b"lost", purpose="p", subject=zoe)
        raise RuntimeError("the caller's transaction fails")
    with engine.begin() as conn:
        blob = vault.seal(conn, b"kept", purpose="p", subject=zoe)
    with engine.connect() as conn:
        assert make_vault(engine, SECRET).open(conn, blob, purpose="p") == b"kept"


def test_shredding_a_subject_makes_its_data_unreadable_and_spares_the_others(engine: Engine) -> None:
    vault = make_vault(engine, SECRET)
    gone, kept = _subject("gone@example.net"), _subject("kept@example.net")
    with engine.begin() as conn:
        gone_blob = vault.seal(conn, b"gone@example.net", purpose="r", subject=gone)
        kept_blob = vault.seal(conn, b"kept@example.net", purpose="r", subject=kept)
    with engine.begin() as conn:
        assert vault.shred_subject(conn, gone)
    with engine.connect() as conn:
        for reader in (vault, make_vault(engine, SECRET)):
            with pytest.raises(ShreddedDataError):
                reader.open(conn, gone_blob, purpose="r")
            assert reader.open_optional(conn, gone_blob, purpose="r") is None
            assert reader.open(conn, kept_blob, purpose="r") == b"kept@example.net"


def test_another_master_secret_reads_nothing(engine: Engine) -> None:
    vault = make_vault(engine, SECRET)
    with engine.begin() as conn:
        blob = vault.seal(conn, b"x", purpose="r", subject=None)
    stranger = make_vault(engine, bytes(32))
    with engine.connect() as conn, pytest.raises(DecryptionError, match="master secret"):
        stranger.open(conn, blob, purpose="r")


def test_rotation_rewraps_every_data_key_and_old_data_stays_readable(engine: Engine) -> None:
    vault = make_vault(engine, SECRET)
    blobs = []
    with engine.begin() as conn:
        for i in range(7):
            subject = _subject(f"s{i}@example.net")
            blobs.append(vault.seal(conn, f"s{i}".encode(), purpose="r", subject=subject))
        wrapped_before = dict(conn.execute(select(data_keys.c.id, data_keys.c.wrapped)).all())
    with engine.connect() as conn:
        report = vault.rotate(conn, batch=3)
    assert report.new_version == 2 and report.rewrapped == 7 and report.removed_versions == (1,)
    fresh = make_vault(engine, SECRET)  # another process, nothing cached
    with engine.connect() as conn:
        assert conn.execute(select(key_versions.c.version, key_versions.c.active)).all() == [(2, True)]
        rows = conn.execute(select(data_keys.c.id, data_keys.c.key_version, data_keys.c.wrapped)).all()
        assert {r.key_version for r in rows} == {2}
        assert all(wrapped_before[r.id] != r.wrapped for r in rows)
        assert [fresh.open(conn, b, purpose="r") for b in blobs] == [f"s{i}".encode() for i in range(7)]
    # New data after the rotation is wrapped by the new version.
    with engine.begin() as conn:
        vault.seal(conn, b"new", purpose="r", subject=_subject("new@example.net"))
        versions = set(conn.execute(select(data_keys.c.key_version)).scalars())
    assert versions == {2}


def test_reads_never_fail_while_a_rotation_runs(sqlite_url: str) -> None:
    engine = create_storage_engine(sqlite_url)
    migrate(engine)
    vault = make_vault(engine, SECRET)
    with engine.begin() as conn:
        blobs = [
            vault.seal(conn, f"m{i}".encode(), purpose="r", subject=_subject(f"m{i}@example.net"))
            for i in range(60)
        ]
    errors: list[BaseException] = []
    reads = 0
    done = threading.Event()

    def read() -> None:
        nonlocal reads
        while not done.is_set():
            try:
                reader = make_vault(engine, SECRET)  # a fresh process's view: nothing cached
                with engine.connect() as conn:
                    assert reader.open_many(conn, blobs, purpose="r")[59] == b"m59"
                reads += 1
            except BaseException as exc:
                errors.append(exc)
                return

    thread = threading.Thread(target=read)
    thread.start()
    try:
        with engine.connect() as conn:
            vault.rotate(conn, batch=1)
            vault.rotate(conn, batch=7)
    finally:
        done.set()
        thread.join()
        engine.dispose()
    assert errors == [] and reads > 0


@mock_aws
def test_the_kms_provider_wraps_keks_with_kms(engine: Engine) -> None:
    kms = boto3.client("kms", region_name="eu-west-1")
    key_id = kms.create_key(Description="mailstack test")["KeyMetadata"]["KeyId"]
    keyring = Keyring(SECRET)
    vault = Vault(engine, keyring, KmsKeyProvider(kms, key_id))
    with engine.begin() as conn:
        blob = vault.seal(conn, b"ana@example.net", purpose="r", subject=_subject("ana@example.net"))
        (provider, provider_key_id, wrapped) = conn.execute(
            select(key_versions.c.provider, key_versions.c.provider_key_id, key_versions.c.wrapped_kek)
        ).one()
    assert provider == "kms" and key_id in provider_key_id
    # KMS unwraps it for a fresh process; the database alone (the local provider) cannot.
    fresh = Vault(engine, keyring, KmsKeyProvider(boto3.client("kms", region_name="eu-west-1"), key_id))
    with engine.connect() as conn:
        assert fresh.open(conn, blob, purpose="r") == b"ana@example.net"
        with pytest.raises(DecryptionError, match="'kms' key provider"):
            Vault(engine, keyring, LocalKeyProvider(keyring)).open(conn, blob, purpose="r")
        with pytest.raises(DecryptionError):
            KmsKeyProvider(kms, key_id).unwrap_kek(bytes(wrapped)[:-1] + b"\x00", provider_key_id)
        # Rotation asks KMS for a new KEK.
        assert fresh.rotate(conn).new_version == 2
        assert Vault(engine, keyring, KmsKeyProvider(kms, key_id)).open(conn, blob, purpose="r")


def test_the_privacy_section_chooses_the_provider_and_refuses_unknown_values(tmp_path: Path) -> None:
    path = tmp_path / "mailstack.toml"
    base = render_default_config("example.com")
    assert "\n[privacy]\n" in base  # documented in the default configuration

    def privacy(keys: str) -> str:
        return base.replace("\n[privacy]\n", f"\n[privacy]\n{keys}\n", 1)

    path.write_text(privacy('key_provider = "vault"'))
    with pytest.raises(ConfigError, match=r"privacy\.key_provider"):
        load_settings(tmp_path)
    path.write_text(privacy('key_provider = "kms"'))
    with pytest.raises(ConfigError, match=r"privacy\.kms_key_id"):
        load_settings(tmp_path)
    path.write_text(privacy('key_provider = "kms"\nkms_key_id = "alias/x"\nkms_region = "eu-west-1"'))
    settings = load_settings(tmp_path)
    assert isinstance(provider_from_settings(settings.privacy, Keyring(SECRET)), KmsKeyProvider)
    path.write_text(base)
    assert isinstance(
        provider_from_settings(load_settings(tmp_path).privacy, Keyring(SECRET)), LocalKeyProvider
    )


def test_the_local_provider_refuses_a_tampered_kek(engine: Engine) -> None:
    make_vault(engine, SECRET)
    with engine.begin() as conn:
        wrapped = bytes(conn.execute(select(key_versions.c.wrapped_kek)).scalar_one())
        conn.execute(update(key_versions).values(wrapped_kek=wrapped[:-1] + bytes([wrapped[-1] ^ 1])))
    fresh = make_vault(engine, SECRET)
    with engine.connect() as conn, pytest.raises(DecryptionError):
        fresh.data_keys_for(conn, [None])
