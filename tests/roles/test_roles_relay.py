"""Seen from outside (a network namespace this test creates): not an open relay, submission needs AUTH,
and the firewall admits only the ports a sender needs."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import pytest
from roles_support import BOUNCE_DOMAIN, HOST_ADDRESS, OutsideHost

pytestmark = pytest.mark.timeout(1500)

# Runs inside the namespace: one SMTP dialogue, its replies as JSON.
SMTP_PROBE = r"""
import json, smtplib, ssl, sys
args = json.loads(sys.argv[1])
out = {"rcpt": {}}
try:
    client = smtplib.SMTP(args["host"], args["port"], timeout=10)
except OSError as exc:
    print(json.dumps({"connect": repr(exc)}))
    sys.exit(0)
out["banner"] = client.ehlo("outside.example.org")[0]
out["features"] = sorted(client.esmtp_features)
if args.get("starttls"):
    out["starttls"] = client.starttls(context=ssl._create_unverified_context())[0]
    client.ehlo("outside.example.org")
    out["features_tls"] = sorted(client.esmtp_features)
code, reply = client.mail(args["mail_from"])
out["mail"] = [code, reply.decode()]
if code == 250:
    for rcpt in args["rcpts"]:
        code, reply = client.rcpt(rcpt)
        out["rcpt"][rcpt] = [code, reply.decode()]
client.rset()
client.quit()
print(json.dumps(out))
"""

CONNECT_PROBE = r"""
import json, socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print(json.dumps("connected"))
except TimeoutError:
    print(json.dumps("timeout"))
except OSError as exc:
    print(json.dumps(type(exc).__name__))
"""


def smtp(outside: OutsideHost, port: int, mail_from: str, *rcpts: str, starttls: bool = False) -> Any:
    args = {
        "host": HOST_ADDRESS,
        "port": port,
        "mail_from": mail_from,
        "rcpts": list(rcpts),
        "starttls": starttls,
    }
    return outside.python(SMTP_PROBE, json.dumps(args))


def connect(outside: OutsideHost, port: int, timeout: float = 3.0) -> str:
    return str(outside.python(CONNECT_PROBE, HOST_ADDRESS, str(port), str(timeout)))


def test_port_25_refuses_to_relay_for_strangers(outside: OutsideHost) -> None:
    result = smtp(outside, 25, "spammer@example.org", "victim@example.org", "someone@gmail.com")
    assert result.get("banner") == 250, result
    assert result["mail"][0] == 250, result
    for rcpt, (code, reply) in result["rcpt"].items():
        assert code == 554 and "Relay access denied" in reply, (rcpt, code, reply)


def test_port_25_accepts_only_verp_addresses_at_the_bounce_domain(outside: OutsideHost) -> None:
    verp = f"b-1a-{'a' * 16}@{BOUNCE_DOMAIN}"
    other = f"anyone@{BOUNCE_DOMAIN}"
    result = smtp(outside, 25, "mailer-daemon@example.org", verp, other)
    assert result["rcpt"][verp][0] == 250, result
    assert result["rcpt"][other][0] == 550, result  # unknown in relay recipient table: no backscatter


def test_submission_refuses_mail_without_authentication(outside: OutsideHost) -> None:
    plain = smtp(outside, 587, "app@example.com", "customer@example.org")
    assert plain.get("banner") == 250, plain
    assert "starttls" in plain["features"] and "auth" not in plain["features"], plain
    assert plain["mail"][0] == 530, plain  # Authentication required
    encrypted = smtp(outside, 587, "app@example.com", "customer@example.org", starttls=True)
    assert encrypted["starttls"] == 220 and "auth" in encrypted["features_tls"], encrypted
    assert encrypted["mail"][0] == 530 and not encrypted["rcpt"], encrypted


@pytest.mark.parametrize("port", [25, 443, 587])
def test_firewall_admits_the_senders_ports(outside: OutsideHost, port: int) -> None:
    assert connect(outside, port) == "connected"


def test_firewall_drops_everything_else(outside: OutsideHost) -> None:
    """A service listening on every interface is still unreachable from outside; loopback stays open."""
    with socket.create_server(("0.0.0.0", 0)) as server:
        port = server.getsockname()[1]
        accepted: list[object] = []
        thread = threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True)
        thread.start()
        assert connect(outside, port, timeout=2.0) == "timeout"
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        thread.join(5)
        assert accepted, "loopback must stay open"


@pytest.mark.parametrize("port", [8825, 2526, 5432])
def test_loopback_services_are_not_reachable_from_outside(outside: OutsideHost, port: int) -> None:
    assert connect(outside, port, timeout=2.0) in ("timeout", "ConnectionRefusedError")
