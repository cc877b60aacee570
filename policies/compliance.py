"""``make compliance``: prove, without a cloud account, that every example stack passes the policy pack
and that mailstack itself keeps its data as policies/retention.yaml says.

1. Runs the Pulumi program (``infra/``) under Pulumi's mocks once per example stack (``Pulumi.*.yaml``).
2. Evaluates every rule of :mod:`policies.rules` over what each run registered: resource rules on each
   resource they apply to, stack rules on the whole stack, through the same validate callbacks that
   ``pulumi up --policy-pack policies`` calls.
3. Checks mailstack's own side: the retention policy is valid, every database table is classified, a
   freshly initialised data directory stores DKIM private keys encrypted and API secrets hashed, and its
   purge (``mailstack privacy purge --dry-run --json``) is enabled, enforces this very policy file and
   runs often enough (``--data-dir`` judges a deployment's settings instead).
4. Prints a report (rule, resource, verdict, remediation) and exits 1 on any mandatory violation.

Usage: ``.venv/bin/python -m policies.compliance [--verbose] [--stack Pulumi.dev.yaml ...]``
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy

from infra.harness import REPO_ROOT, ProgramRun, RecordedResource, run_stack_file, stack_files

from .retention import RETENTION_FILE, RetentionError, RetentionPolicy, load_retention
from .rules import Rule, build_rules

Verdict = Literal["pass", "fail", "n/a"]
# PKCS#8 "version 0, algorithm rsaEncryption" and "version 0, algorithm Ed25519": the start of an
# unencrypted private key. Public keys (SubjectPublicKeyInfo) have no version field, so they never match.
PLAINTEXT_KEY_MARKERS = (
    bytes.fromhex("020100300d06092a864886f70d0101010500"),
    bytes.fromhex("020100300506032b6570"),
    b"PRIVATE KEY-----",
)


@dataclass(frozen=True)
class Finding:
    """One verdict of one rule on one resource (or on the whole stack)."""

    scope: str  # the stack name, or "mailstack"
    rule: str
    enforcement: EnforcementLevel
    resource: str
    verdict: Verdict
    message: str = ""
    remediation: str = ""

    @property
    def blocking(self) -> bool:
        """A mandatory violation: fails ``make compliance``."""
        return self.verdict == "fail" and self.enforcement == EnforcementLevel.MANDATORY


def _options(parent: str | None) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
        parent=parent,
    )


def _label(resource: RecordedResource) -> str:
    return f"{resource.type.rsplit(':', 1)[-1]} {resource.name}"


def policy_resources(run: ProgramRun) -> list[PolicyResource]:
    """The recorded registrations as CrossGuard's stack-validation resources, parents linked."""
    by_urn: dict[str, PolicyResource] = {}
    for recorded in run.resources:
        by_urn[recorded.urn] = PolicyResource(
            resource_type=recorded.type,
            props=unknown_checking_proxy(dict(recorded.props)),
            urn=recorded.urn,
            name=recorded.name,
            opts=_options(recorded.parent),
            provider=None,
            parent=None,
            dependencies=[],
            property_dependencies={},
        )
    for recorded in run.resources:
        if recorded.parent in by_urn:
            by_urn[recorded.urn].parent = by_urn[recorded.parent]
    return list(by_urn.values())


def _collector(into: list[tuple[str, str | None]]) -> ReportViolation:
    """A report_violation callback that keeps (message, urn) pairs."""

    def report(message: str, urn: str | None = None) -> None:
        into.append((message, urn))

    return report


def evaluate(run: ProgramRun, rules: Sequence[Rule]) -> list[Finding]:
    """Every rule over one program run."""
    findings: list[Finding] = []
    labels = {resource.urn: _label(resource) for resource in run.resources}
    for rule in rules:
        level, remedy = rule.enforcement, rule.remediation
        applicable = [resource for resource in run.resources if resource.type in rule.resource_types]
        if not applicable:
            findings.append(Finding(run.stack, rule.name, level, "(none)", "n/a", "no resource of its types"))
            continue
        if isinstance(rule.policy, StackValidationPolicy):
            messages: list[tuple[str, str | None]] = []
            rule.policy.validate(StackValidationArgs(policy_resources(run)), _collector(messages))
            if not messages:
                findings.extend(Finding(run.stack, rule.name, level, _label(r), "pass") for r in applicable)
            for message, urn in messages:
                where = labels.get(urn or "", "(stack)")
                findings.append(Finding(run.stack, rule.name, level, where, "fail", message, remedy))
            continue
        for resource in applicable:
            problems: list[tuple[str, str | None]] = []
            args = ResourceValidationArgs(
                resource.type,
                unknown_checking_proxy(dict(resource.props)),
                resource.urn,
                resource.name,
                _options(resource.parent),
                None,
            )
            rule.policy.validate(args, _collector(problems))
            if not problems:
                findings.append(Finding(run.stack, rule.name, level, _label(resource), "pass"))
            for problem, _urn in problems:
                findings.append(
                    Finding(run.stack, rule.name, level, _label(resource), "fail", problem, remedy)
                )
    return findings


def _mailstack_command() -> list[str]:
    script = Path(sys.executable).with_name("mailstack")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from mailstack.cli import main; main()"]


def check_secrets_at_rest(workdir: Path) -> list[Finding]:
    """Initialise a throwaway data directory and look for secrets in the clear in everything it wrote."""
    rule = "mailstack-secrets-at-rest"
    remedy = "Store DKIM private keys sealed with the keyring and API secrets as hashes (mailstack/storage)."
    mandatory = EnforcementLevel.MANDATORY
    data_dir = workdir / "data"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAILSTACK_")}
    result = subprocess.run(
        [
            *_mailstack_command(),
            "init",
            "--data-dir",
            str(data_dir),
            "--domain",
            "compliance.example",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        message = f"`mailstack init` failed: {result.stderr.strip()[-300:]}"
        return [Finding("mailstack", rule, mandatory, "mailstack init", "fail", message, remedy)]
    created = json.loads(result.stdout)
    secret = str(created["api_secret"]).encode()
    findings = []
    files = [path for path in data_dir.rglob("*") if path.is_file() and path.name != "credentials.json"]
    for path in files:
        blob = path.read_bytes()
        where = str(path.relative_to(workdir))
        if secret in blob:
            findings.append(
                Finding("mailstack", rule, mandatory, where, "fail", "API secret stored in clear", remedy)
            )
        elif path.name.startswith("mailstack.db") and any(marker in blob for marker in PLAINTEXT_KEY_MARKERS):
            findings.append(
                Finding(
                    "mailstack",
                    rule,
                    mandatory,
                    where,
                    "fail",
                    "an unencrypted private key is stored",
                    remedy,
                )
            )
        else:
            findings.append(Finding("mailstack", rule, mandatory, where, "pass"))
    key_file = data_dir / "secret.key"
    if key_file.exists() and stat.S_IMODE(key_file.stat().st_mode) & 0o077:
        findings.append(
            Finding(
                "mailstack",
                rule,
                mandatory,
                "secret.key",
                "fail",
                "the master secret is readable by others",
                remedy,
            )
        )
    return findings


def check_tables_classified(retention: RetentionPolicy) -> list[Finding]:
    """Every table of mailstack's schema is in a retention class or exempt with a reason."""
    from mailstack.storage import schema  # noqa: PLC0415 - the service's schema only for this check

    rule = "mailstack-tables-classified"
    # Mandatory: mailstack purges by the policy, so a table in no class would keep its data forever.
    level = EnforcementLevel.MANDATORY
    remedy = (
        f"List the table under a class's tables, or under exempt with the reason, in {RETENTION_FILE.name}."
    )
    findings = []
    for table in sorted(schema.metadata.tables):
        data_class = retention.class_of_table(table)
        if data_class is not None:
            findings.append(Finding("mailstack", rule, level, f"table {table}", "pass", data_class.name))
        elif table in retention.exempt:
            findings.append(Finding("mailstack", rule, level, f"table {table}", "pass", "exempt"))
        else:
            findings.append(
                Finding("mailstack", rule, level, f"table {table}", "fail", "not classified", remedy)
            )
    return findings


PURGE_RULE = "mailstack-purges-by-itself"
# The purge may run this much later than a record's limit, as a share of the smallest max age it enforces.
PURGE_INTERVAL_SHARE = 0.1


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def judge_purge(report: object, retention: RetentionPolicy, where: str) -> list[Finding]:
    """mailstack's own account of its purge (``mailstack privacy purge --dry-run --json``) against the
    policy: enabled, enforcing this very policy file, every class covered, and run often enough.

    ``report`` is the command's JSON as parsed: a part missing or of another shape (another mailstack
    version) fails the checks that need it, never the whole run."""
    mandatory = EnforcementLevel.MANDATORY
    document = _mapping(report)
    settings = _mapping(document.get("settings"))
    findings: list[Finding] = []

    def verdict(name: str, ok: bool, problem: str, remedy: str) -> None:
        resource = f"{where}: {name}"
        if ok:
            findings.append(Finding("mailstack", PURGE_RULE, mandatory, resource, "pass"))
        else:
            findings.append(Finding("mailstack", PURGE_RULE, mandatory, resource, "fail", problem, remedy))

    verdict(
        "enabled",
        settings.get("enabled") is True,
        "[retention] enabled = false: nothing deletes old rows",
        "Remove `enabled = false` from the [retention] section of mailstack.toml.",
    )
    verdict(
        "policy file",
        settings.get("policy_sha256") == retention.digest,
        f"mailstack enforces {settings.get('policy_file')!r}, which differs from {RETENTION_FILE.name}",
        "Leave [retention] policy_file unset (the shipped policy is policies/retention.yaml), or point it "
        "at a copy of the same file.",
    )
    reported = set(_mapping(document.get("classes")))
    missing = sorted(set(retention.classes) - reported)
    verdict(
        "classes",
        not missing,
        f"classes not enforced: {', '.join(missing)}",
        "Enforce the repository's policy (see above).",
    )
    enforced = [c.max_age_days for c in retention.classes.values() if c.tables]
    smallest = min(enforced) if enforced else 0
    limit = smallest * 86_400 * PURGE_INTERVAL_SHARE
    interval = settings.get("interval_seconds")
    verdict(
        "interval",
        isinstance(interval, int | float) and not isinstance(interval, bool) and 0 < interval <= limit,
        f"the purge runs every {interval} s: rows of the {smallest}-day class may outlive it by more "
        f"than a tenth ({limit:.0f} s)",
        f"Set [retention] interval_seconds to at most {limit:.0f}.",
    )
    return findings


def check_purges_by_itself(data_dir: Path, retention: RetentionPolicy) -> list[Finding]:
    """Ask mailstack, for ``data_dir``, what its purge would do and with which settings, and judge it."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAILSTACK_")}
    result = subprocess.run(
        [*_mailstack_command(), "privacy", "purge", "--data-dir", str(data_dir), "--dry-run", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        message = f"`mailstack privacy purge --dry-run` failed: {result.stderr.strip()[-300:]}"
        remedy = "Fix the [retention] settings or the policy file the message names."
        return [
            Finding("mailstack", PURGE_RULE, EnforcementLevel.MANDATORY, "purge", "fail", message, remedy)
        ]
    return judge_purge(json.loads(result.stdout), retention, "purge")


def mailstack_findings(
    retention: RetentionPolicy | None, retention_error: str | None, data_dir: Path | None = None
) -> list[Finding]:
    """mailstack's own retention and encryption settings, on a fresh data directory; the purge settings
    are ``data_dir``'s instead when given (a deployment's)."""
    mandatory = EnforcementLevel.MANDATORY
    if retention is None:
        return [
            Finding(
                "mailstack",
                "retention-policy-valid",
                mandatory,
                str(RETENTION_FILE.relative_to(REPO_ROOT)),
                "fail",
                retention_error or "unreadable",
                "Fix the file; its format is documented at its top.",
            )
        ]
    findings = [
        Finding(
            "mailstack",
            "retention-policy-valid",
            mandatory,
            str(RETENTION_FILE.relative_to(REPO_ROOT)),
            "pass",
        )
    ]
    findings.extend(check_tables_classified(retention))
    with tempfile.TemporaryDirectory(prefix="mailstack-compliance-") as workdir:
        findings.extend(check_secrets_at_rest(Path(workdir)))
        findings.extend(check_purges_by_itself(data_dir or Path(workdir) / "data", retention))
    return findings


def render(findings: Iterable[Finding], *, verbose: bool) -> str:
    """The readable report: failures in full, passes summarised per rule (all of them with verbose)."""
    lines: list[str] = []
    by_scope: dict[str, list[Finding]] = {}
    for finding in findings:
        by_scope.setdefault(finding.scope, []).append(finding)
    for scope, items in by_scope.items():
        lines.append("")
        lines.append(f"== {scope}")
        lines.append(f"   {'VERDICT':8} {'RULE':38} {'LEVEL':10} RESOURCE")
        rules: dict[str, list[Finding]] = {}
        for item in items:
            rules.setdefault(item.rule, []).append(item)
        for rule, results in rules.items():
            level = results[0].enforcement.value
            failed = [r for r in results if r.verdict == "fail"]
            passed = [r for r in results if r.verdict == "pass"]
            skipped = [r for r in results if r.verdict == "n/a"]
            if verbose:
                for result in results:
                    note = f" — {result.message}" if result.message and result.verdict != "fail" else ""
                    if result.verdict != "fail":
                        lines.append(
                            f"   {result.verdict.upper():8} {rule:38} {level:10} {result.resource}{note}"
                        )
            elif passed and not failed:
                lines.append(f"   {'PASS':8} {rule:38} {level:10} {len(passed)} checked")
            elif skipped and not failed:
                lines.append(f"   {'N/A':8} {rule:38} {level:10} {skipped[0].message}")
            for result in failed:
                verdict = "FAIL" if result.enforcement == EnforcementLevel.MANDATORY else "WARN"
                lines.append(f"   {verdict:8} {rule:38} {level:10} {result.resource}: {result.message}")
                if result.remediation:
                    lines.append(f"   {'':8} remediation: {result.remediation}")
    return "\n".join(lines)


def run(
    stacks: Sequence[Path],
    *,
    verbose: bool = False,
    check_mailstack: bool = True,
    data_dir: Path | None = None,
) -> tuple[int, str]:
    """Evaluate everything; returns the exit status (1 on a mandatory violation) and the report."""
    findings: list[Finding] = []
    header = [f"mailstack compliance — retention policy {RETENTION_FILE.relative_to(REPO_ROOT)}"]
    try:
        retention: RetentionPolicy | None = load_retention()
        retention_error = None
    except RetentionError as exc:
        retention, retention_error = None, str(exc)
    if retention is not None:
        rules = build_rules(retention)
        header.append(f"{len(rules)} rules; stacks: {', '.join(path.name for path in stacks) or 'none'}")
        for path in stacks:
            try:
                program_run = run_stack_file(path)
            except Exception as exc:  # a stack that does not even build fails everything
                findings.append(
                    Finding(
                        path.name,
                        "program-runs",
                        EnforcementLevel.MANDATORY,
                        "(program)",
                        "fail",
                        f"{type(exc).__name__}: {exc}",
                        "Fix the stack configuration or the program.",
                    )
                )
                continue
            scope = f"{program_run.stack} ({path.name}, {len(program_run.resources)} resources)"
            findings.append(Finding(scope, "program-runs", EnforcementLevel.MANDATORY, "(program)", "pass"))
            findings.extend(
                Finding(scope, f.rule, f.enforcement, f.resource, f.verdict, f.message, f.remediation)
                for f in evaluate(program_run, rules)
            )
    if check_mailstack:
        findings.extend(mailstack_findings(retention, retention_error, data_dir))
    blocking = [f for f in findings if f.blocking]
    warnings = [f for f in findings if f.verdict == "fail" and not f.blocking]
    summary = (
        f"\n{len(blocking)} mandatory violation(s), {len(warnings)} advisory warning(s), "
        f"{sum(1 for f in findings if f.verdict == 'pass')} checks passed."
    )
    report = "\n".join(header) + render(findings, verbose=verbose) + "\n" + summary
    return (1 if blocking else 0), report


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m policies.compliance", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", action="append", type=Path, help="a Pulumi.<stack>.yaml (default: all)")
    parser.add_argument("--verbose", action="store_true", help="list every passing check too")
    parser.add_argument("--no-mailstack", action="store_true", help="skip the checks of mailstack itself")
    parser.add_argument(
        "--data-dir", type=Path, help="also judge this deployment's purge settings (default: a fresh one)"
    )
    args = parser.parse_args(argv)
    stacks = args.stack or stack_files(REPO_ROOT)
    status, report = run(
        stacks, verbose=args.verbose, check_mailstack=not args.no_mailstack, data_dir=args.data_dir
    )
    print(report)
    return status


if __name__ == "__main__":
    sys.exit(main())
