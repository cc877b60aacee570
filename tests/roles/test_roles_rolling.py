"""site.yml rolls over the senders: one batch at a time (``mailstack_serial``, default 1), and a failing host
stops the roll before the next batch. Three inventory names for this machine, no change made to it: only the
argument checks run (``--tags`` matching no task), so a broken variable on the second host is the failure."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from roles_support import REPO, PlaybookRun, run_playbook

pytestmark = pytest.mark.timeout(600)

SENDERS_PLAY = "Sender nodes"


def inventory(directory: Path) -> Path:
    local = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}
    hosts = {
        "all": {
            "vars": {**local, "ansible_become": False, "mailstack_domain": "example.com"},
            "children": {
                "senders": {
                    "hosts": {
                        "roll1": {},
                        "roll2": {"mailstack_throttle": "not a mapping"},  # fails the mailstack role's check
                        "roll3": {},
                    }
                },
                "db": {"hosts": {"roll1": {}}},
            },
        }
    }
    path = directory / "hosts.yml"
    path.write_text(yaml.safe_dump(hosts))
    return path


def sender_batches(run: PlaybookRun) -> list[list[str]]:
    """The hosts of each batch of the senders' play, in order (each batch starts the play anew)."""
    batches: dict[str, list[str]] = {}
    for event in run.events:
        if event["play"] == SENDERS_PLAY and event["host"] not in batches.setdefault(event["start"], []):
            batches[event["start"]].append(event["host"])
    return list(batches.values())


def test_senders_roll_one_at_a_time_and_a_failure_stops_the_roll(tmp_path: Path) -> None:
    run = run_playbook("--tags", "no_such_tag", inventory=inventory(tmp_path))
    assert run.returncode != 0, run.describe()
    assert sender_batches(run) == [["roll1"], ["roll2"]], run.events
    assert [f for f in run.failures if f.startswith("roll2: ")] and not [
        f for f in run.failures if not f.startswith("roll2: ")
    ], run.describe()
    # roll3 got its firewall (a play before the roll) but never started the senders' play.
    ran = {(event["play"], event["host"]) for event in run.events}
    assert ("Firewall every host of the fleet", "roll3") in ran
    assert (SENDERS_PLAY, "roll3") not in ran


def test_the_batch_size_is_configurable(tmp_path: Path) -> None:
    run = run_playbook("--tags", "no_such_tag", "-e", "mailstack_serial=2", inventory=inventory(tmp_path))
    assert run.returncode != 0, run.describe()
    # roll1 and roll2 in one batch (run in parallel, so either may report first); roll2 fails there, so the
    # batch with roll3 never starts.
    assert [sorted(batch) for batch in sender_batches(run)] == [["roll1", "roll2"]], run.events
    assert (SENDERS_PLAY, "roll3") not in {(event["play"], event["host"]) for event in run.events}


def test_site_yml_declares_the_roll() -> None:
    plays = yaml.safe_load((REPO / "site.yml").read_text())
    senders = next(play for play in plays if play["name"] == SENDERS_PLAY)
    assert senders["serial"] == "{{ mailstack_serial | d(1) }}" and senders["max_fail_percentage"] == 0
