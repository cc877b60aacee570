"""The command line as a user runs it: rotation, provided DKIM keys, API keys, clear errors."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import select

from mailstack.config import load_settings
from mailstack.domains import signing_keys
from mailstack.keyring import Keyring
from mailstack.privacy import list_audit
from mailstack.storage import create_storage_engine, schema

MAILSTACK = str(Path(sys.executable).parent / "mailstack")


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MAILSTACK, *args], capture_output=True, text=True, check=check)


def test_dkim_rotate_prints_new_records_and_keeps_the_old_ones(tmp_path: Path) -> None:
    init = json.loads(_run("init", "--data-dir", str(tmp_path), "--domain", "example.com", "--json").stdout)
    rotated = json.loads(
        _run("dkim", "rotate", "--data-dir", str(tmp_path), "--domain", "example.com", "--json").stdout
    )
    old = {k["selector"] for k in init["dkim"]}
    new = {k["selector"] for k in rotated["dkim"]}
    assert len(new) == 2 and old.isdisjoint(new)
    assert all(k["txt"].startswith("v=DKIM1; k=") for k in rotated["dkim"])
    listed = json.loads(_run("dkim", "list", "--data-dir", str(tmp_path), "--json").stdout)
    assert {k["selector"] for k in listed} == old | new


def test_apikey_create_gives_a_working_new_key(tmp_path: Path) -> None:
    _run("init", "--data-dir", str(tmp_path), "--domain", "example.com", "--json")
    created = json.loads(_run("apikey", "create", "--data-dir", str(tmp_path), "--json").stdout)
    assert len(created["api_key"]) == 32 and len(created["api_secret"]) == 64


def test_apikey_scopes_are_chosen_at_creation_and_changed_later(tmp_path: Path) -> None:
    data_dir = str(tmp_path)
    _run("init", "--data-dir", data_dir, "--domain", "example.com", "--json")
    default = json.loads(_run("apikey", "create", "--data-dir", data_dir, "--json").stdout)
    assert "privacy" not in default["scopes"] and "send" in default["scopes"]
    reader = json.loads(
        _run(
            "apikey", "create", "--data-dir", data_dir, "--scope", "read", "--scope", "privacy", "--json"
        ).stdout
    )
    assert reader["scopes"] == ["read", "privacy"]
    changed = _run("apikey", "scopes", reader["api_key"], "--data-dir", data_dir, "--scope", "send,read")
    assert changed.stdout.strip() == f"{reader['api_key']}: send,read"
    wrong = _run("apikey", "create", "--data-dir", data_dir, "--scope", "admin", check=False)
    assert wrong.returncode == 2 and "unknown scope admin" in wrong.stderr
    missing = _run("apikey", "scopes", "nosuchkey", "--data-dir", data_dir, "--scope", "read", check=False)
    assert missing.returncode == 1 and "no API key" in missing.stderr
    # Who handed out which powers is in the audit trail.
    engine = create_storage_engine(f"sqlite:///{tmp_path / 'mailstack.db'}")
    try:
        with engine.connect() as conn:
            trail = [
                (e.action, e.detail["scopes"])
                for e in reversed(list_audit(conn))
                if e.actor.startswith("cli:")
            ]
    finally:
        engine.dispose()
    assert ("apikey-create", ["read", "privacy"]) in trail and trail[-1] == (
        "apikey-scopes",
        ["send", "read"],
    )


def test_errors_are_clear_and_exit_non_zero(tmp_path: Path) -> None:
    bad_domain = _run("init", "--data-dir", str(tmp_path), "--domain", "not a domain", check=False)
    assert bad_domain.returncode == 2 and "not a valid domain" in bad_domain.stderr
    missing = _run("serve", "--data-dir", str(tmp_path / "nowhere"), check=False)
    assert missing.returncode == 2 and "mailstack init" in missing.stderr
    _run("init", "--data-dir", str(tmp_path), "--domain", "example.com", "--json")
    bad_relay = _run("serve", "--data-dir", str(tmp_path), "--relay", "no-port", check=False)
    assert bad_relay.returncode == 2 and "delivery.relay" in bad_relay.stderr
    no_mail = _run("outbox", "show", "--data-dir", str(tmp_path), "99", check=False)
    assert no_mail.returncode == 1 and "no message 99" in no_mail.stderr


# --- dkim import: provided keys (Ansible's dkim_keys role and the cloud's Secrets Manager keys use it) ---


def _write_key(
    path: Path, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, *, pkcs1: bool = False
) -> Path:
    private_format = (
        serialization.PrivateFormat.TraditionalOpenSSL if pkcs1 else serialization.PrivateFormat.PKCS8
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, private_format, serialization.NoEncryption())
    )
    return path


def _said(result: subprocess.CompletedProcess[str]) -> str:
    """stderr with the console's line wrapping undone."""
    return " ".join(result.stderr.split())


def _import(
    data_dir: Path, selector: str, algorithm: str, pem: Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return _run(
        "dkim",
        "import",
        "--data-dir",
        str(data_dir),
        "--domain",
        "Example.COM",
        "--selector",
        selector,
        "--algorithm",
        algorithm,
        "--pem-file",
        str(pem),
        "--json",
        check=check,
    )


def test_dkim_import_stores_a_provided_key_encrypted_and_it_signs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _run("init", "--data-dir", str(data), "--domain", "example.com", "--json")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = _write_key(tmp_path / "rsa.pem", key)
    result = json.loads(_import(data, "provided1", "rsa-sha256", pem).stdout)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert result == {
        "domain": "example.com",
        "status": "created",
        "dkim": [
            {
                "selector": "provided1",
                "algorithm": "rsa-sha256",
                "dns_name": "provided1._domainkey.example.com",
                "txt": f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}",
            }
        ],
    }
    listed = json.loads(_run("dkim", "list", "--data-dir", str(data), "--json").stdout)
    assert "provided1" in {k["selector"] for k in listed}
    # Encrypted at rest like a generated key, and the newest active RSA key: new mail is signed with it.
    settings = load_settings(data)
    engine = create_storage_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            blobs = conn.execute(select(schema.dkim_keys.c.private_key)).scalars().all()
            signing = signing_keys(conn, Keyring(settings.secret_key()), now=time.time() + 1)
    finally:
        engine.dispose()
    assert blobs and all(b"PRIVATE KEY" not in blob for blob in blobs)
    rsa_signer = next(k for k in signing if k.algorithm == "rsa-sha256")
    assert rsa_signer.selector == "provided1"
    assert rsa_signer.private_key.private_numbers() == key.private_numbers()  # type: ignore[union-attr]


def test_dkim_import_of_the_same_key_is_unchanged_and_another_key_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _run("init", "--data-dir", str(data), "--domain", "example.com", "--json")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = _write_key(tmp_path / "ed.pem", key)
    assert json.loads(_import(data, "ed1", "ed25519-sha256", pem).stdout)["status"] == "created"
    again = json.loads(_import(data, "ed1", "ed25519-sha256", pem).stdout)
    assert again["status"] == "unchanged" and again["dkim"][0]["txt"].startswith("v=DKIM1; k=ed25519; p=")
    other = _write_key(tmp_path / "other.pem", ed25519.Ed25519PrivateKey.generate())
    refused = _import(data, "ed1", "ed25519-sha256", other, check=False)
    assert refused.returncode == 1 and "selector 'ed1' of example.com already holds another" in _said(refused)
    # A selector that `init` generated is just as protected.
    generated = json.loads(_run("dkim", "list", "--data-dir", str(data), "--json").stdout)[0]["selector"]
    taken = _import(data, generated, "ed25519-sha256", other, check=False)
    assert taken.returncode == 1 and "already holds another" in _said(taken)
    listed = json.loads(_run("dkim", "list", "--data-dir", str(data), "--json").stdout)
    assert [k["selector"] for k in listed].count("ed1") == 1


def test_dkim_import_accepts_pkcs1_and_warns_below_2048_bits(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _run("init", "--data-dir", str(data), "--domain", "example.com", "--json")
    pem = _write_key(
        tmp_path / "r1024.pem", rsa.generate_private_key(public_exponent=65537, key_size=1024), pkcs1=True
    )
    assert pem.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    result = _import(data, "small", "rsa-sha256", pem)
    assert json.loads(result.stdout)["status"] == "created"
    assert "1024 bits" in _said(result) and "2048 bits are recommended" in _said(result)


def test_dkim_import_refuses_unusable_keys_with_clear_errors(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _run("init", "--data-dir", str(data), "--domain", "example.com", "--json")
    before = json.loads(_run("dkim", "list", "--data-dir", str(data), "--json").stdout)
    ed = _write_key(tmp_path / "ed.pem", ed25519.Ed25519PrivateKey.generate())
    wrong_type = _import(data, "s1", "rsa-sha256", ed, check=False)
    assert wrong_type.returncode == 2 and "rsa-sha256 needs an RSA private key" in _said(wrong_type)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    unparsable = _import(data, "s2", "rsa-sha256", garbage, check=False)
    assert unparsable.returncode == 2 and "cannot load DKIM private key" in _said(unparsable)
    tiny = tmp_path / "r768.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(tiny), "768"], capture_output=True, check=True)
    too_small = _import(data, "s3", "rsa-sha256", tiny, check=False)
    assert too_small.returncode == 2 and "768 bits is below the RFC 8301 minimum of 1024" in _said(too_small)
    unknown = _import(data, "s4", "rsa-sha1", ed, check=False)
    assert unknown.returncode == 2 and "--algorithm must be one of rsa-sha256, ed25519-sha256" in _said(
        unknown
    )
    missing = _import(data, "s5", "rsa-sha256", tmp_path / "nowhere.pem", check=False)
    assert missing.returncode == 2 and "cannot read" in _said(missing)
    # Nothing was stored by the refused imports.
    assert json.loads(_run("dkim", "list", "--data-dir", str(data), "--json").stdout) == before
