"""Mailbox provider classification, shared by throttling and statistics: consumer domains from the built-in
lists, other domains by their MX hosts through an injected resolver (never the internet), answers cached."""

from __future__ import annotations

from mailstack.providers import PROVIDERS, WELL_KNOWN_DOMAINS, ProviderClassifier


def test_consumer_domains_are_known_without_dns() -> None:
    classifier = ProviderClassifier()
    assert classifier.classify("gmail.com") == "google"
    assert classifier.classify("GoogleMail.com.") == "google"
    assert classifier.classify("hotmail.fr") == "microsoft"
    assert classifier.classify("outlook.com") == "microsoft"
    assert classifier.classify("yahoo.co.uk") == "yahoo"
    assert classifier.classify("aol.com") == "yahoo"
    assert classifier.classify("example.net") == "other"  # no resolver: no lookup at all


def test_mx_reveals_hosted_domains_and_is_cached() -> None:
    answers = {
        "corp.example": ["alt1.aspmx.l.google.com", "aspmx.l.google.com"],
        "ms.example": ["ms-example.mail.protection.outlook.com"],
        "yh.example": ["mta6.am0.yahoodns.net"],
        "self.example": ["mx.self.example"],
        "notgoogle.example": ["mx.fakegoogle.com"],  # a suffix match needs a dot boundary
    }
    asked: list[str] = []

    def resolver(domain: str) -> list[str]:
        asked.append(domain)
        return answers.get(domain, [])

    clock = [0.0]
    classifier = ProviderClassifier(resolver=resolver, clock=lambda: clock[0], cache_seconds=60)
    assert classifier.classify("corp.example") == "google"
    assert classifier.classify("ms.example") == "microsoft"
    assert classifier.classify("yh.example") == "yahoo"
    assert classifier.classify("self.example") == "other"
    assert classifier.classify("notgoogle.example") == "other"
    assert classifier.classify("gmail.com") == "google"  # static map: never asks
    assert classifier.classify("corp.example") == "google"
    assert asked.count("corp.example") == 1 and "gmail.com" not in asked
    clock[0] = 61.0
    classifier.classify("corp.example")
    assert asked.count("corp.example") == 2  # the cached answer expired


def test_a_failed_lookup_is_cached_briefly() -> None:
    calls: list[str] = []

    def failing(domain: str) -> list[str]:
        calls.append(domain)
        return []

    clock = [0.0]
    classifier = ProviderClassifier(resolver=failing, clock=lambda: clock[0], negative_cache_seconds=5)
    assert classifier.classify("down.example") == "other"
    assert classifier.classify("down.example") == "other"
    clock[0] = 6.0
    classifier.classify("down.example")
    assert calls == ["down.example", "down.example"]


def test_every_built_in_domain_maps_to_its_provider_and_providers_are_reported_in_order() -> None:
    classifier = ProviderClassifier()
    for provider, domains in WELL_KNOWN_DOMAINS.items():
        assert {classifier.classify(domain.upper() + ".") for domain in domains} == {provider}
    assert PROVIDERS == ("google", "microsoft", "yahoo", "other")


def test_mx_hosts_match_on_a_label_boundary_whatever_their_case_or_trailing_dot() -> None:
    answers = {"a.example": ["ASPMX.L.GOOGLE.COM."], "b.example": ["mx.notoutlook.com"]}
    classifier = ProviderClassifier(resolver=lambda domain: answers.get(domain, []))
    assert classifier.classify("a.example") == "google"
    assert classifier.classify("b.example") == "other"
