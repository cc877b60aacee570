"""make compliance: the example stacks pass, violations are found, reported and fail the run."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from pulumi_policy import EnforcementLevel

from infra.harness import REPO_ROOT, ProgramRun, RecordedResource, run_stack_file
from policies import compliance
from policies.retention import load_retention
from policies.rules import RULES


@pytest.fixture(scope="module")
def dev_run() -> ProgramRun:
    return run_stack_file(REPO_ROOT / "Pulumi.dev.yaml")


def test_the_dev_stack_passes_every_mandatory_rule(dev_run: ProgramRun) -> None:
    findings = compliance.evaluate(dev_run, RULES)
    assert not [f for f in findings if f.blocking], [f for f in findings if f.blocking]
    judged = {f.rule for f in findings if f.verdict != "n/a"}
    assert judged == {rule.name for rule in RULES}  # every rule found something to judge in an AWS stack
    # The only warning: dev runs its database in one availability zone on purpose.
    assert [(f.rule, f.verdict) for f in findings if f.verdict == "fail"] == [("rds-multi-az", "fail")]


def _replace(run: ProgramRun, type_token: str, **changes: object) -> ProgramRun:
    resources: list[RecordedResource] = []
    for resource in run.resources:
        if resource.type == type_token:
            resources.append(dataclasses.replace(resource, props={**resource.props, **changes}))
        else:
            resources.append(resource)
    return dataclasses.replace(run, resources=resources)


def test_a_violation_in_the_recorded_resources_is_found_with_its_remediation(dev_run: ProgramRun) -> None:
    public_db = _replace(dev_run, "aws:rds/instance:Instance", publiclyAccessible=True)
    findings = compliance.evaluate(public_db, RULES)
    (blocking,) = [f for f in findings if f.blocking]
    assert blocking.rule == "rds-private-encrypted-backed-up"
    assert blocking.resource == "Instance database-postgres"
    assert "publicly accessible" in blocking.message and "publicly_accessible=False" in blocking.remediation
    report = compliance.render(findings, verbose=False)
    assert "FAIL" in report and "rds-private-encrypted-backed-up" in report and "remediation:" in report
    leaky_logs = _replace(dev_run, "aws:cloudwatch/logGroup:LogGroup", retentionInDays=400)
    rules = {f.rule for f in compliance.evaluate(leaky_logs, RULES) if f.blocking}
    assert rules == {"log-retention-within-policy"}


def test_the_verbose_report_lists_every_check(dev_run: ProgramRun) -> None:
    findings = compliance.evaluate(dev_run, RULES)
    report = compliance.render(findings, verbose=True)
    assert "PASS     kms-key-rotation" in report and "Key keys-storage" in report


def test_mailstack_itself_keeps_secrets_sealed_and_tables_classified(tmp_path: Path) -> None:
    findings = compliance.check_secrets_at_rest(tmp_path)
    assert findings and all(f.verdict == "pass" for f in findings), findings
    assert any("mailstack.db" in f.resource for f in findings)
    tables = compliance.check_tables_classified(load_retention())
    assert {f.resource for f in tables} >= {"table contents", "table messages", "table events"}
    assert all(f.enforcement == EnforcementLevel.MANDATORY and f.verdict == "pass" for f in tables)


def test_an_unclassified_table_is_a_mandatory_violation() -> None:
    policy = load_retention()
    without = dataclasses.replace(policy, exempt={k: v for k, v in policy.exempt.items() if k != "api_keys"})
    (failed,) = [f for f in compliance.check_tables_classified(without) if f.verdict == "fail"]
    assert failed.blocking and failed.resource == "table api_keys"


def _init(data_dir: Path) -> None:
    result = subprocess.run(
        [
            *compliance._mailstack_command(),
            "init",
            "--data-dir",
            str(data_dir),
            "--domain",
            "c.example",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_a_fresh_mailstack_purges_by_the_repository_policy(tmp_path: Path) -> None:
    _init(tmp_path / "data")
    findings = compliance.check_purges_by_itself(tmp_path / "data", load_retention())
    assert {f.resource for f in findings} == {
        "purge: enabled",
        "purge: policy file",
        "purge: classes",
        "purge: interval",
    }
    assert all(f.verdict == "pass" and f.enforcement == EnforcementLevel.MANDATORY for f in findings)


def test_purge_settings_that_break_the_policy_fail_the_check(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _init(data_dir)
    # A deployment that enforces its own, laxer copy of the policy, rarely, or not at all.
    laxer = (
        (REPO_ROOT / "policies" / "retention.yaml")
        .read_text()
        .replace("max_age_days: 30", "max_age_days: 60")
    )
    (data_dir / "laxer.yaml").write_text(laxer)
    config = data_dir / "mailstack.toml"
    settings = '[retention]\nenabled = false\ninterval_seconds = 86400\npolicy_file = "laxer.yaml"\n'
    config.write_text(config.read_text().replace("[retention]\n", settings, 1))
    findings = compliance.check_purges_by_itself(data_dir, load_retention())
    failed = {f.resource: f for f in findings if f.verdict == "fail"}
    assert set(failed) == {"purge: enabled", "purge: policy file", "purge: interval"}
    assert all(f.blocking and f.remediation for f in failed.values())
    assert "laxer.yaml" in failed["purge: policy file"].message
    assert "at most 17280" in failed["purge: interval"].remediation  # a tenth of the 2-day class
    # A policy file mailstack cannot read fails the check too, with the key it stumbled on.
    (data_dir / "laxer.yaml").write_text(laxer.replace("action: anonymise", "action: forget", 1))
    (broken,) = compliance.check_purges_by_itself(data_dir, load_retention())
    assert broken.blocking and "classes.events.action" in broken.message


@pytest.mark.parametrize(
    "report",
    [
        [],
        {"settings": None, "classes": None},
        {"settings": {"enabled": True, "interval_seconds": "3600"}, "classes": ["events"]},
    ],
)
def test_a_purge_report_of_another_shape_fails_its_checks_instead_of_the_run(report: object) -> None:
    # Another mailstack version (--data-dir) may print other JSON: each check it cannot back fails.
    findings = compliance.judge_purge(report, load_retention(), "purge")
    failed = {f.resource for f in findings if f.verdict == "fail" and f.blocking}
    assert {"purge: policy file", "purge: classes", "purge: interval"} <= failed


def test_a_broken_stack_fails_the_command(tmp_path: Path) -> None:
    broken = tmp_path / "Pulumi.broken.yaml"
    broken.write_text((REPO_ROOT / "Pulumi.dev.yaml").read_text().replace("maxSize: 2", "maxSize: many"))
    result = subprocess.run(
        [sys.executable, "-m", "policies.compliance", "--stack", str(broken), "--no-mailstack"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "program-runs" in result.stdout and "mailstack:fleet.maxSize" in result.stdout
    assert "1 mandatory violation(s)" in result.stdout


def test_the_command_passes_on_the_example_stacks() -> None:
    status, report = compliance.run(
        [REPO_ROOT / "Pulumi.prod.yaml", REPO_ROOT / "Pulumi.baremetal.yaml"], check_mailstack=False
    )
    assert status == 0, report
    assert "0 mandatory violation(s)" in report
    assert "N/A      iam-least-privilege" in report  # the baremetal stack has nothing of the kind
