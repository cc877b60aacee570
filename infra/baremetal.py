"""Owned servers from the same program: ``pulumi up`` runs the Ansible playbook against the stack's hosts."""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import TypedDict

import pulumi
import pulumi_command as command

from .config import BaremetalConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
# What the playbook run depends on: a change to any of these re-runs it on the next `pulumi up`.
PLAYBOOK_INPUTS = ("site.yml", "ansible.cfg", "roles", "group_vars", "host_vars")


class HostVars(TypedDict):
    ansible_host: str
    ansible_user: str
    mailstack_private_address: str


class InventoryGroup(TypedDict):
    hosts: dict[str, HostVars]


class InventoryChildren(TypedDict):
    children: dict[str, InventoryGroup]


class Inventory(TypedDict):
    all: InventoryChildren


def inventory(config: BaremetalConfig) -> Inventory:
    """An Ansible YAML/JSON inventory: each host under its groups (``senders``, ``db``), with the
    address the roles bind and allow between hosts (``mailstack_private_address``)."""
    groups: dict[str, InventoryGroup] = {}
    for host in config.hosts:
        for group in host.groups:
            hosts = groups.setdefault(group, {"hosts": {}})["hosts"]
            hosts[host.name] = {
                "ansible_host": host.address,
                "ansible_user": host.user,
                "mailstack_private_address": host.private_address or host.address,
            }
    return {"all": {"children": groups}}


def playbook_digest(root: Path, names: Iterable[str] = PLAYBOOK_INPUTS) -> str:
    """SHA-256 over the playbook, roles and variables in ``root`` (paths and contents, sorted)."""
    digest = hashlib.sha256()
    for name in names:
        base = root / name
        files = sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else [base]
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def playbook_command(config: BaremetalConfig, ansible_playbook: str) -> str:
    """The shell script the command runs: inventory and variables from the environment, in a private
    temporary directory that is removed afterwards."""
    key = f" --private-key {shlex.quote(config.ssh_private_key_file)}" if config.ssh_private_key_file else ""
    playbook = shlex.quote(config.playbook)
    return (
        "set -eu\n"
        f'test -f {playbook} || {{ echo "{config.playbook} not found in $PWD: the Ansible playbook and '
        'roles/ are part of the mailstack checkout" >&2; exit 1; }\n'
        "work=$(mktemp -d)\ntrap 'rm -rf \"$work\"' EXIT\n"
        'printf \'%s\' "$MAILSTACK_INVENTORY" >"$work/inventory.json"\n'
        'printf \'%s\' "$MAILSTACK_EXTRA_VARS" >"$work/extra-vars.json"\n'
        f'{shlex.quote(ansible_playbook)} -i "$work/inventory.json" {playbook}'
        f' -e "@$work/extra-vars.json"{key}\n'
    )


class Baremetal(pulumi.ComponentResource):
    """One ``command.local.Command`` that converges every host with ``site.yml``.

    It runs on create and whenever the inventory, the variables or the playbook tree change (their digest
    is a trigger); Ansible is idempotent, so a re-run changes only what drifted. Destroying the stack
    leaves the servers as they are.
    """

    def __init__(
        self, name: str, *, config: BaremetalConfig, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mailstack:infra:Baremetal", name, None, opts)
        venv_playbook = REPO_ROOT / ".venv" / "bin" / "ansible-playbook"
        ansible_playbook = str(venv_playbook) if venv_playbook.exists() else "ansible-playbook"
        hosts = json.dumps(inventory(config), sort_keys=True)
        extra = json.dumps({"mailstack_domain": config.domain, **config.extra_vars}, sort_keys=True)
        script = playbook_command(config, ansible_playbook)
        self.run = command.local.Command(
            f"{name}-ansible",
            create=script,
            update=script,
            dir=str(REPO_ROOT),
            environment={"MAILSTACK_INVENTORY": hosts, "MAILSTACK_EXTRA_VARS": extra},
            triggers=[hosts, extra, playbook_digest(REPO_ROOT)],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.hosts = [host.name for host in config.hosts]
        self.register_outputs({"hosts": self.hosts, "stdout": self.run.stdout})
