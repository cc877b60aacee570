"""The entry point (infra/__main__.py, as `pulumi up` runs it) with each example stack's configuration."""

from __future__ import annotations

import base64
import functools
import json

import pytest
import yaml

from infra.common import (
    METRIC_BOUNCED,
    METRIC_COMPLAINED,
    METRIC_SENT,
    METRICS_DIMENSION,
    METRICS_NAMESPACE,
)
from infra.harness import REPO_ROOT, ProgramRun, run_stack_file, stack_files

COMPONENTS = {
    "mailstack:infra:KmsKeys",
    "mailstack:infra:Network",
    "mailstack:infra:MailSecrets",
    "mailstack:infra:MailQueue",
    "mailstack:infra:Database",
    "mailstack:infra:ArchiveBucket",
    "mailstack:infra:HostedZone",
    "mailstack:infra:ApiEdge",
    "mailstack:infra:Monitoring",
    "mailstack:infra:SenderFleet",
    "mailstack:infra:MailDns",
}


@functools.cache
def _run(name: str) -> ProgramRun:
    # One run per stack for the whole module: each takes a few seconds.
    return run_stack_file(REPO_ROOT / f"Pulumi.{name}.yaml")


def test_the_project_file_points_at_the_program() -> None:
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "mailstack"
    assert project["runtime"]["name"] == "python"
    assert (REPO_ROOT / project["main"] / "__main__.py").is_file()
    assert {path.name for path in stack_files()} >= {
        "Pulumi.dev.yaml",
        "Pulumi.prod.yaml",
        "Pulumi.baremetal.yaml",
    }


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_an_aws_stack_builds_every_component(name: str) -> None:
    run = _run(name)
    components = {resource.type for resource in run.resources if not resource.custom}
    assert components == COMPONENTS
    for resource in run.resources:
        if resource.custom:
            # Every cloud resource belongs to a component (parent=self), none hangs off the stack.
            assert resource.parent is not None and "mailstack:infra:" in resource.parent, resource.urn
    queue_url = run.outputs["queue_url"]
    assert queue_url.endswith(f"/mailstack-{name}")
    assert run.outputs["api_url"].startswith("https://api.")
    assert len(run.outputs["dkim_records"]) == 2


def test_the_api_secret_is_exported_only_as_a_secret() -> None:
    for name in ("dev", "prod"):
        run = _run(name)
        secret = run.outputs["api_secret"]
        assert run.secret_outputs == {"api_secret"}
        assert len(secret) == 64
        for key, value in run.outputs.items():
            if key != "api_secret":
                assert secret not in str(value), f"the API secret leaks through output {key}"


def test_prod_is_bigger_and_safer_than_dev() -> None:
    dev, prod = _run("dev"), _run("prod")
    assert len(prod.of_type("aws:ec2/subnet:Subnet")) == 6 and len(dev.of_type("aws:ec2/subnet:Subnet")) == 4
    assert prod.one("aws:rds/instance:Instance").props["multiAz"] is True
    assert dev.one("aws:rds/instance:Instance").props["multiAz"] is False
    assert len(prod.of_type("aws:ec2/eip:Eip")) == 6
    assert prod.of_type("aws:route53/zone:Zone") == []  # prod uses its existing zone
    assert prod.outputs["name_servers"] == []
    assert len(dev.outputs["name_servers"]) == 4


def test_the_user_data_carries_no_secret() -> None:
    run = _run("dev")
    script = base64.b64decode(run.one("aws:ec2/launchTemplate:LaunchTemplate").props["userData"]).decode()
    assert run.outputs["api_secret"] not in script
    assert "PRIVATE KEY" not in script
    for version in run.of_type("aws:secretsmanager/secretVersion:SecretVersion"):
        stored = json.loads(version.props["secretString"])
        for field in ("private_key_pem", "password", "api_secret", "secret_key"):
            if field in stored:
                assert stored[field] not in script, f"{version.name} leaks into the user data"
    assert "fetch-secrets" in script and "rm -f /etc/mailstack/secret-vars.json" in script
    assert '"backend": "sqs"' in script and "secret_arn" in script  # ARNs, fetched at boot


def test_the_baremetal_stack_only_runs_ansible() -> None:
    run = _run("baremetal")
    assert [resource.type for resource in run.resources] == [
        "mailstack:infra:Baremetal",
        "command:local:Command",
    ]
    assert run.outputs == {"target": "baremetal", "hosts": ["mta1", "mta2", "db1"]}
    assert not any(resource.type.startswith("aws:") for resource in run.resources)


def test_senders_publish_the_metrics_their_alarms_read_and_may_publish_nothing_else() -> None:
    run = _run("dev")
    script = base64.b64decode(run.one("aws:ec2/launchTemplate:LaunchTemplate").props["userData"]).decode()
    variables = json.loads(script.split("<<'MAILSTACK_VARS'\n", 1)[1].split("\nMAILSTACK_VARS\n", 1)[0])
    region = variables["mailstack_cloud"]["region"]
    # What the mailstack role renders into mailstack.toml's [metrics] (infra/README.md, the contract).
    assert {key: value for key, value in variables.items() if key.startswith("mailstack_metrics_")} == {
        "mailstack_metrics_enabled": True,
        "mailstack_metrics_namespace": METRICS_NAMESPACE,
        "mailstack_metrics_stack": "dev",
        "mailstack_metrics_region": region,
    }
    alarms = {r.props["name"]: r.props for r in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    for name, counter in (("bounce-rate", METRIC_BOUNCED), ("complaint-rate", METRIC_COMPLAINED)):
        metrics = {
            q["id"]: q["metric"] for q in alarms[f"mailstack-dev-{name}"]["metricQueries"] if "metric" in q
        }
        assert {(m["namespace"], m["metricName"]) for m in metrics.values()} == {
            (METRICS_NAMESPACE, METRIC_SENT),
            (METRICS_NAMESPACE, counter),
        }
        assert all(m["dimensions"] == {METRICS_DIMENSION: "dev"} for m in metrics.values())
    statements = json.loads(run.one("aws:iam/rolePolicy:RolePolicy").props["policy"])["Statement"]
    publishing = [s for s in statements if "cloudwatch:PutMetricData" in s["Action"]]
    assert publishing == [
        {
            "Sid": "Metrics",
            "Effect": "Allow",
            "Action": ["cloudwatch:PutMetricData"],
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
        }
    ]
    assert not any(
        action.startswith("cloudwatch:") and action != "cloudwatch:PutMetricData"
        for s in statements
        for action in s["Action"]
    )
