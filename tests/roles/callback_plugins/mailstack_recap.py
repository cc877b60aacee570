"""Ansible callback for the role tests: write the recap, the changed/failed tasks and, in order, which host
ran which task in which play (the rolling-update test reads the batches from it) as JSON.

Enabled with ANSIBLE_CALLBACKS_ENABLED=mailstack_recap and ANSIBLE_CALLBACK_PLUGINS pointing here; the file
is MAILSTACK_RECAP_FILE. (ansible-core 2.19 no longer ships a json stdout callback.)
"""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: mailstack_recap
    type: aggregate
    short_description: write the play recap and the changed or failed tasks to a JSON file
    description: For the mailstack role tests.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "mailstack_recap"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.changed: list[str] = []
        self.failed: list[str] = []
        self.play = ""
        self.plays_started = 0  # with `serial`, each batch starts the play again
        self.events: list[dict[str, str]] = []

    def _event(self, result: Any, outcome: str) -> None:
        self.events.append(
            {
                "play": self.play,
                "start": str(self.plays_started),
                "host": result._host.get_name(),
                "task": result._task.get_name(),
                "outcome": outcome,
            }
        )

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self.play = play.get_name()
        self.plays_started += 1

    def _name(self, result: Any) -> str:
        return f"{result._host.get_name()}: {result._task.get_name()}"

    def v2_runner_on_ok(self, result: Any) -> None:
        self._event(result, "ok")
        if result._result.get("changed"):
            self.changed.append(self._name(result))

    def v2_runner_item_on_ok(self, result: Any) -> None:
        if result._result.get("changed"):
            self.changed.append(f"{self._name(result)} ({self._get_item_label(result._result)})")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._event(result, "failed")
        if not ignore_errors:
            message = result._result.get("msg") or result._result.get("stderr") or ""
            self.failed.append(f"{self._name(result)}: {str(message)[:2000]}")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self.failed.append(f"{self._name(result)}: unreachable")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        path = os.environ.get("MAILSTACK_RECAP_FILE")
        if not path:
            return
        recap = {host: stats.summarize(host) for host in sorted(stats.processed)}
        with open(path, "w") as handle:
            json.dump(
                {"stats": recap, "changed": self.changed, "failed": self.failed, "events": self.events},
                handle,
            )
