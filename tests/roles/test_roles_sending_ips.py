"""Per-IP sending on the deployed machine: each sending IP's loopback listener hands its mail to that IP's
copies of the provider transports, which send from the IP. The "IPs" are loopback aliases (127.0.0.2 and
127.0.0.3, inventories/local); the destination is the smtp-sink that the transport map routes example.net
to, and it records the address each connection came from (X-Client-Addr)."""

from __future__ import annotations

import re
import smtplib
import tomllib
import uuid
from email.message import EmailMessage
from typing import Any

import pytest
from roles_support import DATA_DIR, SENDING_IPS, SINK_DOMAIN, Deployment, Sink
from test_roles_e2e import send

pytestmark = [pytest.mark.timeout(1500), pytest.mark.usefixtures("deployment")]


def peer(dump: bytes) -> str:
    found = re.search(rb"^X-Client-Addr: (\S+)$", dump, re.M)
    assert found, dump[:400]
    return found.group(1).decode()


def key(address: str) -> str:
    return "ip" + address.replace(".", "_")


@pytest.mark.parametrize(("port", "address"), sorted(SENDING_IPS.items()))
def test_mail_injected_on_an_ips_listener_leaves_from_that_ip(sink: Sink, port: int, address: str) -> None:
    marker = f"ip-{port}-{uuid.uuid4().hex[:12]}"
    message = EmailMessage()
    message["From"] = "news@example.com"
    message["To"] = f"reader@{SINK_DOMAIN}"
    message["Subject"] = marker
    message.set_content("sent from one sending IP")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.send_message(message)
    assert peer(sink.wait_for(marker.encode())) == address


def test_mailstack_relays_to_the_listeners_from_the_same_list() -> None:
    """One source of truth: [[throttle.ips]] in mailstack.toml names the listeners Postfix runs."""
    config = tomllib.loads((DATA_DIR / "mailstack.toml").read_text())
    assert [(ip["address"], ip["relay"]) for ip in config["throttle"]["ips"]] == [
        (address, f"127.0.0.1:{port}") for port, address in sorted(SENDING_IPS.items())
    ]


def test_each_ips_transports_keep_the_providers_pacing(host: Any) -> None:
    providers = tomllib.loads((DATA_DIR / "mailstack.toml").read_text())["throttle"]["providers"]
    for address in SENDING_IPS.values():
        for name, limits in providers.items():
            transport = f"{name}_{key(address)}"
            entry = host.check_output("postconf -M %s/unix", transport)
            assert f"smtp_bind_address={address}" in entry and "inet_protocols=ipv4" in entry, entry
            assert (
                int(host.check_output("postconf -h %s", f"{transport}_destination_concurrency_limit"))
                == (limits["concurrency"])
            )
        routes = host.check_output("postmap -q gmail.com texthash:/etc/postfix/sending_ips/%s", key(address))
        assert routes == f"FILTER google_{key(address)}:"


def test_mail_sent_through_the_api_leaves_from_a_sending_ip(deployment: Deployment, sink: Sink) -> None:
    marker = f"api-ip-{uuid.uuid4().hex[:12]}"
    send(deployment, f"reader@{SINK_DOMAIN}", f"Through an IP {marker}")
    assert peer(sink.wait_for(marker.encode())) in SENDING_IPS.values()
