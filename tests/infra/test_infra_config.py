"""Stack configuration: the examples parse, and every mistake is refused with the key named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from infra_mocks import Mocked

from infra.config import StackConfigError, load_stack_config
from infra.harness import REPO_ROOT, config_from_stack_file, run_program

BASE = {
    "mailstack:domain": "example.com",
    "mailstack:release": json.dumps({"repository": "https://git.example.com/mailstack.git", "ref": "v1"}),
}


def _with(**structured: object) -> dict[str, str]:
    config = dict(BASE)
    for key, value in structured.items():
        config[f"mailstack:{key}"] = value if isinstance(value, str) else json.dumps(value)
    return config


def test_the_example_stacks_parse(mocked: Mocked) -> None:
    mocked.configure(config_from_stack_file(REPO_ROOT / "Pulumi.prod.yaml"))
    prod = load_stack_config()
    assert prod.target == "aws" and prod.aws is not None
    assert (prod.aws.fleet.max_size, prod.aws.fleet.ip_pool_size, prod.aws.network.az_count) == (6, 6, 3)
    assert prod.aws.database.multi_az and prod.aws.dns.mta_sts_mode == "enforce"
    assert prod.aws.fleet.warmup.growth == 1.5
    mocked.configure(config_from_stack_file(REPO_ROOT / "Pulumi.dev.yaml"))
    dev = load_stack_config()
    assert dev.aws is not None and not dev.aws.database.multi_az
    assert dev.aws.dns.api_host == "api.dev.example.com"  # defaults follow the domain
    mocked.configure(config_from_stack_file(REPO_ROOT / "Pulumi.baremetal.yaml"))
    metal = load_stack_config()
    assert metal.target == "baremetal" and metal.baremetal is not None
    assert [(h.name, h.groups) for h in metal.baremetal.hosts][-1] == ("db1", ("db",))
    # mta1 names its private address; db1's address is already private (an IP, so it is the default).
    assert [h.private_address for h in metal.baremetal.hosts] == ["10.0.0.10", "10.0.0.11", "10.0.0.5"]


def test_defaults_fill_everything_optional(mocked: Mocked) -> None:
    mocked.configure(BASE)
    config = load_stack_config()
    assert config.aws is not None
    assert (
        config.aws.fleet.min_size == 1 and config.aws.queue.max_receive_count > config.aws.queue.max_attempts
    )
    assert config.aws.api_allowed_cidrs == ("0.0.0.0/0",)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"mailstack:release": BASE["mailstack:release"]}, "mailstack:domain: missing required value"),
        (_with(domain="not a domain"), "mailstack:domain: expected a domain name"),
        (_with(target="gcp"), "mailstack:target: expected aws or baremetal"),
        (_with(fleet={"maxSize": "ten"}), "mailstack:fleet.maxSize: expected a whole number"),
        (_with(fleet={"maxSzie": 3}), "mailstack:fleet.maxSzie: unknown key"),
        (_with(fleet={"minSize": 3, "maxSize": 2}), "mailstack:fleet.maxSize: must be at least minSize"),
        (
            _with(fleet={"maxSize": 4, "ipPoolSize": 2}),
            "mailstack:fleet.ipPoolSize: must be at least maxSize",
        ),
        (
            _with(fleet={"architecture": "sparc"}),
            "mailstack:fleet.architecture: expected one of amd64, arm64",
        ),
        (_with(fleet={"warmup": {"first": 0}}), "mailstack:fleet.warmup.first: expected a whole number"),
        (_with(fleet="[1, 2]"), "mailstack:fleet: expected an object"),
        (_with(network={"cidr": "10.0.0.0/33"}), "mailstack:network.cidr: expected an IPv4 CIDR"),
        (_with(network={"cidr": "10.0.0.0/24"}), "mailstack:network.cidr: needs at least a /20"),
        (_with(network={"azCount": 1}), "mailstack:network.azCount: expected a whole number from 2 to 6"),
        (
            _with(queue={"maxReceiveCount": 5, "maxAttempts": 8}),
            "mailstack:queue.maxReceiveCount: must exceed",
        ),
        (_with(database={"multiAz": "yes"}), "mailstack:database.multiAz: expected true or false"),
        (_with(database={"engineVersion": "9.6"}), "mailstack:database.engineVersion: expected one of"),
        (_with(dns={"dmarcPolicy": "strict"}), "mailstack:dns.dmarcPolicy: expected one of none, quarantine"),
        (_with(dns={"apiHost": "not a host"}), "mailstack:dns.apiHost: expected a host name"),
        (
            _with(dns={"dkimRsaSelector": "same", "dkimEd25519Selector": "same"}),
            "mailstack:dns.dkimEd25519Selector: must differ",
        ),
        (_with(alerts={"email": "nobody"}), "mailstack:alerts.email: expected an email address"),
        (_with(api={"allowedCidrs": ["everyone"]}), "mailstack:api.allowedCidrs[0]: expected an IPv4 CIDR"),
        ({"mailstack:domain": "example.com"}, "mailstack:release.repository: missing required value"),
        (_with(target="baremetal"), "mailstack:baremetal.hosts: expected a non-empty list"),
        (
            _with(
                target="baremetal",
                baremetal={"hosts": [{"name": "a", "address": "192.0.2.1", "groups": ["db"]}]},
            ),
            "at least one host must be in the senders group",
        ),
        (
            _with(
                target="baremetal",
                baremetal={"hosts": [{"name": "a", "address": "192.0.2.1", "groups": ["web"]}]},
            ),
            "mailstack:baremetal.hosts[0].groups: unknown group 'web'",
        ),
        (
            _with(target="baremetal", baremetal={"hosts": [{"name": "a"}]}),
            "mailstack:baremetal.hosts[0].address: missing required value",
        ),
        (
            _with(
                target="baremetal",
                baremetal={"hosts": [{"name": "a", "address": "mta.example.com"}]},
            ),
            "mailstack:baremetal.hosts[0].privateAddress: missing required value (the host's private IP "
            "address; address 'mta.example.com' is a name, not an IP)",
        ),
        (
            _with(
                target="baremetal",
                baremetal={"hosts": [{"name": "a", "address": "192.0.2.1", "privateAddress": "10.0.0"}]},
            ),
            "mailstack:baremetal.hosts[0].privateAddress: expected an IP address, got '10.0.0'",
        ),
        (
            _with(
                target="baremetal",
                baremetal={"hosts": [{"name": "a", "address": "192.0.2.1", "privateAddress": 10}]},
            ),
            "mailstack:baremetal.hosts[0].privateAddress: expected the host's private IP address, got 10",
        ),
        (
            _with(
                target="baremetal",
                baremetal={
                    "hosts": [
                        {"name": "a", "address": "192.0.2.1", "privateAddress": "10.0.0.1"},
                        {"name": "b", "address": "10.0.0.1", "groups": ["db"]},
                    ]
                },
            ),
            "mailstack:baremetal.hosts[1].privateAddress: 10.0.0.1 is already the private address of "
            "hosts[0] (a)",
        ),
    ],
)
def test_a_broken_config_names_the_key(mocked: Mocked, config: dict[str, str], message: str) -> None:
    mocked.configure(config)
    with pytest.raises(StackConfigError) as raised:
        load_stack_config()
    assert message in str(raised.value)


def test_a_broken_stack_fails_the_program_before_anything_is_created(tmp_path: Path) -> None:
    broken = config_from_stack_file(REPO_ROOT / "Pulumi.dev.yaml")
    broken["mailstack:fleet"] = json.dumps({"minSize": 1, "maxSize": "two"})
    with pytest.raises(
        StackConfigError, match=r"mailstack:fleet\.maxSize: expected a whole number"
    ) as raised:
        run_program("dev", broken)
    # Raised as a pulumi.RunError: Pulumi prints the message alone, no traceback.
    assert "Traceback" not in str(raised.value)


def test_encrypted_values_in_an_example_stack_are_refused(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.leaky.yaml"
    stack.write_text("config:\n  mailstack:domain: example.com\n  mailstack:token:\n    secure: v1:abc\n")
    with pytest.raises(ValueError, match="encrypted"):
        config_from_stack_file(stack)


def test_a_stack_file_that_is_not_a_mapping_is_refused_with_its_path(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.list.yaml"
    stack.write_text("- config\n- mailstack:domain\n")
    with pytest.raises(ValueError, match=r"Pulumi\.list\.yaml: a stack file is a mapping"):
        config_from_stack_file(stack)
    numbered = tmp_path / "Pulumi.numbered.yaml"
    numbered.write_text("config:\n  mailstack:domain: example.com\n  2: two\n")
    assert config_from_stack_file(numbered)["mailstack:2"] == "two"


def test_a_pool_too_large_for_the_mta_sts_policy_is_a_config_error() -> None:
    config = config_from_stack_file(REPO_ROOT / "Pulumi.dev.yaml")
    config["mailstack:fleet"] = json.dumps(
        {"maxSize": 40, "ipPoolSize": 40, "hostnamePrefix": "sender-outbound"}
    )
    with pytest.raises(StackConfigError, match=r"mailstack:fleet\.ipPoolSize: 40 sender host names"):
        run_program("dev", config)


_RELEASE = {"repository": "https://git.example.com/mailstack.git", "ref": "v1"}
_HOST = {"name": "mta1", "address": "192.0.2.1"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        # An empty text is no value: it used to skip the pattern and reach the resources as it was.
        (_with(release={**_RELEASE, "ref": ""}), "mailstack:release.ref: expected the git tag or commit"),
        (_with(release={**_RELEASE, "repository": ""}), "mailstack:release.repository: expected the git URL"),
        (_with(fleet={"hostnamePrefix": ""}), "mailstack:fleet.hostnamePrefix: expected a DNS label"),
        (_with(fleet={"instanceType": ""}), "mailstack:fleet.instanceType: expected a string, got ''"),
        (_with(dns={"apiHost": ""}), "mailstack:dns.apiHost: expected a host name, got ''"),
        (_with(dns={"dkimRsaSelector": ""}), "mailstack:dns.dkimRsaSelector: expected a DNS label"),
        (_with(dns={"dmarcReports": ""}), "mailstack:dns.dmarcReports: expected an address, got ''"),
        (
            _with(target="baremetal", baremetal={"hosts": [{**_HOST, "name": ""}]}),
            "mailstack:baremetal.hosts[0].name: expected an inventory host name",
        ),
        (
            _with(target="baremetal", baremetal={"hosts": [{**_HOST, "user": ""}]}),
            "mailstack:baremetal.hosts[0].user: expected a string, got ''",
        ),
        # Only an absent object is empty; a falsy value of another type is a mistake.
        (_with(fleet={"warmup": []}), "mailstack:fleet.warmup: expected an object (a YAML mapping), got []"),
        (_with(fleet={"warmup": False}), "mailstack:fleet.warmup: expected an object"),
        (
            _with(target="baremetal", baremetal={"hosts": [_HOST], "extraVars": []}),
            "mailstack:baremetal.extraVars: expected an object of Ansible variables, got []",
        ),
    ],
)
def test_an_empty_value_is_refused_with_the_key_named(
    mocked: Mocked, config: dict[str, str], message: str
) -> None:
    mocked.configure(config)
    with pytest.raises(StackConfigError) as raised:
        load_stack_config()
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("dns", "message"),
    [
        ({"apiHost": "api.example.org"}, "mailstack:dns.apiHost: api.example.org is outside example.com"),
        (
            {"bounceDomain": "bounces.example.net"},
            "mailstack:dns.bounceDomain: bounces.example.net is outside",
        ),
        ({"trackingHost": "notexample.com"}, "mailstack:dns.trackingHost: notexample.com is outside"),
        ({"trackingHost": "api.example.com"}, "mailstack:dns.trackingHost: the API, tracking and MTA-STS"),
    ],
)
def test_hosts_the_new_zone_cannot_hold_are_refused(
    mocked: Mocked, dns: dict[str, str], message: str
) -> None:
    mocked.configure(_with(dns=dns))
    with pytest.raises(StackConfigError) as raised:
        load_stack_config()
    assert message in str(raised.value)


def test_an_existing_zone_may_hold_hosts_outside_the_sending_domain(mocked: Mocked) -> None:
    # mail.example.com sending, its hosts in the example.com zone the operator already has.
    mocked.configure(
        {
            **_with(dns={"zoneId": "Z123", "apiHost": "api.example.com"}),
            "mailstack:domain": "mail.example.com",
        }
    )
    config = load_stack_config()
    assert config.aws is not None and config.aws.dns.api_host == "api.example.com"


def test_empty_text_still_means_unset_where_unset_is_allowed(mocked: Mocked) -> None:
    mocked.configure(_with(dns={"zoneId": ""}, alerts={"email": ""}))
    config = load_stack_config()
    assert config.aws is not None
    assert (config.aws.dns.zone_id, config.aws.alerts.email) == ("", "")  # a new zone, no subscription
    mocked.configure(
        _with(
            target="baremetal",
            baremetal={"hosts": [{**_HOST, "privateAddress": ""}], "sshPrivateKeyFile": ""},
        )
    )
    metal = load_stack_config()
    assert metal.baremetal is not None
    assert metal.baremetal.hosts[0].private_address == "192.0.2.1"
    assert metal.baremetal.ssh_private_key_file == ""


_SECTIONS = {
    "network": ("cidr", "azCount"),
    "fleet": ("instanceType", "architecture", "minSize", "maxSize", "ipPoolSize", "hostnamePrefix", "warmup"),
    "queue": ("leaseSeconds", "maxAttempts", "maxReceiveCount"),
    "database": ("instanceClass", "allocatedStorageGb", "multiAz", "engineVersion"),
    "dns": ("zoneId", "apiHost", "dkimRsaSelector", "dmarcPolicy", "dmarcReports", "mtaStsMode"),
    "alerts": ("email", "queueAgeSeconds", "bounceRatePercent"),
    "release": ("repository", "ref"),
    "api": ("allowedCidrs",),
    "baremetal": ("hosts", "playbook", "extraVars"),
}
_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-10, 10**6)
    | st.floats(allow_nan=True)
    | st.sampled_from(["", "mta", "10.0.0.0/16", "192.0.2.1", "a@b.example", "none", "arm64", "*"])
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["name", "address", "first", "growth", "ceiling", "groups"]), inner)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    target=st.sampled_from(["aws", "baremetal"]),
    sections=st.dictionaries(
        st.sampled_from(sorted(_SECTIONS)),
        st.none() | _VALUE,
        max_size=4,
    ).flatmap(
        lambda chosen: st.fixed_dictionaries(
            {
                name: st.dictionaries(st.sampled_from(_SECTIONS[name]), _VALUE, max_size=3)
                if value is None
                else st.just(value)
                for name, value in chosen.items()
            }
        )
    ),
)
def test_any_stack_configuration_loads_or_names_its_key(
    mocked: Mocked, target: str, sections: dict[str, object]
) -> None:
    # Whatever a stack file holds, `pulumi up` ends in a config or a StackConfigError (no traceback).
    mocked.configure(_with(target=target, **{"release": _RELEASE, **sections}))
    try:
        load_stack_config()
    except StackConfigError as refused:
        assert str(refused).startswith("mailstack:")
