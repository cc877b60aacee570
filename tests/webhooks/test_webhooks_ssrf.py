"""Webhook destinations: only public addresses, unless the operator allows a network."""

from __future__ import annotations

import pytest

from mailstack.webhooks import DestinationRefusedError, check_destination


def resolver(*addresses: str):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


PUBLIC = "93.184.215.14"


def test_a_public_destination_is_pinned_to_its_checked_address() -> None:
    destination = check_destination(
        "https://user:p%40ss@hooks.example.com:8443/in?x=1", resolve=resolver(PUBLIC)
    )
    assert (destination.scheme, destination.host, destination.port) == ("https", "hooks.example.com", 8443)
    assert destination.path == "/in?x=1" and destination.address == PUBLIC
    assert (destination.username, destination.password) == ("user", "p@ss")
    assert check_destination("http://hooks.example.com", resolve=resolver(PUBLIC)).path == "/"


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # AWS/GCP/Azure instance metadata
        ("fd00:ec2::254", "private"),  # AWS metadata over IPv6
        ("fe80::1", "link-local"),
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "private|reserved"),
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 wrapping 10.0.0.1
    ],
)
def test_non_public_addresses_are_refused(address: str, why: str) -> None:
    with pytest.raises(DestinationRefusedError, match=why):
        check_destination("https://hooks.example.com/", resolve=resolver(address))


def test_one_private_answer_among_public_ones_is_enough_to_refuse() -> None:
    with pytest.raises(DestinationRefusedError, match="private"):
        check_destination("https://hooks.example.com/", resolve=resolver(PUBLIC, "10.0.0.5"))


def test_allowed_networks_open_exactly_what_they_list() -> None:
    allowed = check_destination("http://internal.example/", ["10.1.2.0/24"], resolver("10.1.2.9"))
    assert allowed.address == "10.1.2.9"
    with pytest.raises(DestinationRefusedError, match="private"):
        check_destination("http://internal.example/", ["10.1.2.0/24"], resolver("10.1.3.9"))


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/",
        "http://127.1/",
        "http://2130706433/",  # 127.0.0.1 as one decimal number
        "http://0x7f000001/",
        "http://[::1]:8080/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
    ],
)
def test_real_resolution_of_sneaky_spellings_of_internal_hosts(url: str) -> None:
    with pytest.raises(DestinationRefusedError):
        check_destination(url)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
        "ftp://hooks.example.com/",
        "javascript:alert(1)",
        "https:///nohost",
        "https://hooks.example.com:0/",
        "https://hooks.example.com:99999/",
        "https://hooks example.com/",
        "https://hooks.example.com/\r\nX: y",
        "",
        "https://hooks.example.com/" + "a" * 2000,
    ],
)
def test_malformed_or_non_web_urls_are_refused(url: str) -> None:
    with pytest.raises(DestinationRefusedError):
        check_destination(url, resolve=resolver(PUBLIC))
