"""The ``[throttle]`` section: the documented TOML loads, mistakes name the key, and the configured providers
join the built-in classification (MX lookups through an injected resolver, never the internet)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from mailstack.config import ConfigError, Settings, load_settings, render_default_config
from mailstack.storage import create_storage_engine
from mailstack.throttle import (
    Limit,
    classifier_from_settings,
    policy_from_settings,
    throttle_from_settings,
)


def _load(tmp_path: Path, throttle: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("MAILSTACK_DATABASE_URL", raising=False)
    (tmp_path / "mailstack.toml").write_text(f'[mail]\ndomain = "example.com"\n\n{throttle}')
    (tmp_path / "secret.key").write_text("ab" * 32)
    return load_settings(tmp_path)


def _documented_example() -> str:
    """The commented ``[throttle]`` block of the default configuration, uncommented."""
    text = render_default_config("example.com")
    block = text[text.index("[throttle]") :]
    lines = ["[throttle]"]
    for line in block.splitlines()[1:]:
        if line.startswith("["):  # the next section's examples are not the throttle's
            break
        if line.startswith("# ") and "Nothing is limited" not in line and "many may go" not in line:
            lines.append(line[2:])
    # The example shows both warm-up styles; keep the geometric one.
    return "\n".join(line for line in lines if not line.startswith("warmup_curve")) + "\n"


def test_the_default_configuration_limits_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILSTACK_DATABASE_URL", raising=False)
    (tmp_path / "mailstack.toml").write_text(render_default_config("example.com"))
    (tmp_path / "secret.key").write_text("ab" * 32)
    settings = load_settings(tmp_path)
    assert not policy_from_settings(settings.throttle).active
    engine = create_storage_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert throttle_from_settings(settings.throttle, engine) is None  # the workers skip throttling
    finally:
        engine.dispose()


def test_the_documented_example_is_valid_and_means_what_it_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _load(tmp_path, _documented_example(), monkeypatch)
    throttle = settings.throttle
    policy = policy_from_settings(throttle)
    assert policy.api_key == Limit(100.0, 200)
    assert policy.api_keys == {"<public key>": Limit(10.0, 10)}
    assert policy.providers == {
        "google": Limit(50.0, 50),
        "microsoft": Limit(20.0, 20),
        "yahoo": Limit(10.0, 10),
        "other": Limit(5.0, 5),
    }
    assert throttle.providers["google"].concurrency == 20
    (ip,) = policy.ips
    assert ip.address == "203.0.113.10" and ip.limit == Limit(20.0, 20)
    assert ip.warmup is not None and ip.warmup.start == date(2026, 12, 1)
    assert ip.warmup.cap(ip.warmup.start.toordinal() - date(1970, 1, 1).toordinal() + 1) == 100
    assert throttle.ips[0].relay == "127.0.0.1:10026"
    assert classifier_from_settings(throttle).classify("example-workspace.com") == "google"


def test_explicit_curve_and_inline_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load(
        tmp_path,
        "[throttle]\nproviders.google = { rate = 0.5 }\n"
        '[[throttle.ips]]\naddress = "2001:db8::1"\nwarmup_start = "2026-12-01"\nwarmup_curve = [5, 10]\n',
        monkeypatch,
    )
    policy = policy_from_settings(settings.throttle)
    assert policy.providers["google"] == Limit(0.5, 1)
    assert policy.ips[0].address == "2001:db8::1" and policy.ips[0].limit is None
    assert policy.ips[0].warmup is not None and policy.ips[0].warmup.curve == (5, 10)


@pytest.mark.parametrize(
    ("throttle", "named"),
    [
        ("[throttle.providers.google]\nrate = 0\n", "throttle.providers.google.rate"),
        ("[throttle.providers.google]\nrate = 10\nburst = 0\n", "throttle.providers.google.burst"),
        ("[throttle.providers.google]\nrate = 10\nrat = 5\n", "throttle.providers.google.rat"),
        ("[throttle.providers.apple]\nrate = 10\n", "throttle.providers"),  # unknown without domains
        ('[throttle.providers.other]\nrate = 1\ndomains = ["x.example"]\n', "throttle.providers"),
        ("[throttle.providers.Google]\nrate = 10\n", "throttle.providers"),
        ("[throttle]\napi_key = { burst = 5 }\n", "throttle.api_key.rate"),
        ('[[throttle.ips]]\naddress = "not-an-ip"\n', "throttle.ips.0.address"),
        ('[[throttle.ips]]\naddress = "192.0.2.1"\nrelay = "nowhere"\n', "throttle.ips.0.relay"),
        ('[[throttle.ips]]\naddress = "192.0.2.1"\nwarmup_curve = [10]\n', "throttle.ips.0"),  # no start
        (
            '[[throttle.ips]]\naddress = "192.0.2.1"\nwarmup_start = 2026-12-01\nwarmup_first = 50\n',
            "throttle.ips.0",  # no ceiling
        ),
        (
            '[[throttle.ips]]\naddress = "192.0.2.1"\nwarmup_start = 2026-12-01\n'
            "warmup_first = 50\nwarmup_ceiling = 100\nwarmup_curve = [1]\n",
            "throttle.ips.0",  # both styles
        ),
        (
            '[[throttle.ips]]\naddress = "192.0.2.1"\n[[throttle.ips]]\naddress = "192.0.2.1"\n',
            "throttle.ips",
        ),
        ("[throttle]\nmx_lookup = 3\n", "throttle.mx_lookup"),
    ],
)
def test_mistakes_name_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, throttle: str, named: str
) -> None:
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, throttle, monkeypatch)
    assert re.search(rf"^\s*{re.escape(named)}\b", str(error.value), re.MULTILINE), str(error.value)


def test_mx_lookup_is_off_unless_configured_and_then_uses_the_injected_resolver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def resolver(domain: str) -> list[str]:
        return ["aspmx.l.google.com"]

    off = _load(tmp_path, "[throttle.providers.google]\nrate = 1\n", monkeypatch).throttle
    assert classifier_from_settings(off, resolver=resolver).classify("corp.example") == "other"
    on = _load(
        tmp_path,
        '[throttle]\nmx_lookup = true\n[throttle.providers.gmx]\nrate = 1\nmx = ["gmx.net"]\n',
        monkeypatch,
    ).throttle
    classifier = classifier_from_settings(on, resolver=resolver)
    assert classifier.classify("corp.example") == "google"
    custom = classifier_from_settings(on, resolver=lambda d: ["mx00.gmx.net"])
    assert custom.classify("gmx.de") == "gmx"
