"""Provided DKIM keys (mailstack_dkim_provided_keys): copied to the sender for the service user only,
imported into mailstack, published in the DNS records file; re-applying changes nothing (the deployment's
second run has changed=0)."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from roles_support import CONTROLLER_DIR, DATA_DIR, Deployment, provided_dkim_keys
from test_roles_host import zone_txt_records

pytestmark = [pytest.mark.timeout(1500), pytest.mark.usefixtures("deployment")]


def expected_txt(pem: str) -> str:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"


def test_provided_keys_are_imported_and_published() -> None:
    listed = json.loads(
        subprocess.run(
            [
                *("runuser", "-u", "mailstack", "--", "/opt/mailstack/venv/bin/mailstack"),
                *("dkim", "list", "--data-dir", str(DATA_DIR), "--json"),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    records = {key["selector"]: key["txt"] for key in listed if key["domain"] == "example.com"}
    zone = zone_txt_records((CONTROLLER_DIR / "dns-records.zone").read_text())
    for provided in provided_dkim_keys():
        txt = expected_txt(provided["private_key_pem"])
        assert records[provided["selector"]] == txt
        assert zone[f"{provided['selector']}._domainkey.example.com"] == txt


def test_the_copies_on_the_sender_are_the_provided_keys() -> None:
    for provided in provided_dkim_keys():
        copy = DATA_DIR / "dkim-provided" / f"{provided['selector']}._domainkey.example.com.pem"
        assert copy.read_text().strip() == provided["private_key_pem"].strip()


def test_reapplying_imports_nothing_new(deployment: Deployment) -> None:
    """The second run imported the keys again (the role always asks mailstack) and nothing changed."""
    imports = [e for e in deployment.second.events if "Import the provided keys" in e["task"]]
    assert [e["outcome"] for e in imports] == ["ok"], deployment.second.events
    assert not [task for task in deployment.second.changed_tasks if "dkim" in task.lower()]
