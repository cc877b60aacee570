"""The sender's boot script: claim an Elastic IP, check out mailstack, run the same Ansible playbook that
owned servers use — one installation path for the cloud and for bare metal."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from .boot_types import CloudVars

BOOT_SCRIPT = Path(__file__).with_name("boot.py")
INVENTORY = "/etc/mailstack/inventory.ini"
CLOUD_VARS = "/etc/mailstack/cloud-vars.json"
IP_VARS = "/etc/mailstack/ip-vars.json"
SECRET_VARS = "/etc/mailstack/secret-vars.json"  # noqa: S105 - a path
CHECKOUT = "/opt/mailstack/src"
# Debian's full ansible package carries the collections the roles use (ansible-core alone does not).
PACKAGES = ("ansible", "git", "python3-boto3")
_SAFE_REF = re.compile(r"^[A-Za-z0-9._/-]+$")
# EC2 refuses user data over 16 KB (before base64).
MAX_USER_DATA = 16 * 1024


def render_user_data(
    cloud_vars: CloudVars[str], *, repository: str, ref: str, role_vars: Mapping[str, object] | None = None
) -> str:
    """The cloud-init shell script. ``cloud_vars`` reach the playbook as ``mailstack_cloud``, ``role_vars``
    (the roles' own inventory variables: ``mailstack_domain`` ...) as they are.

    Only identifiers go in (URLs, ARNs, names): the secrets stay in Secrets Manager and the boot script
    fetches them with the instance role into a root-only file that is deleted after the playbook ran, so
    nothing sensitive is readable from the user data.
    """
    if not _SAFE_REF.match(ref):
        raise ValueError(f"release ref {ref!r}: letters, digits and ._/- only")
    document = json.dumps({**(role_vars or {}), "mailstack_cloud": cloud_vars}, indent=2, sort_keys=True)
    boot = BOOT_SCRIPT.read_text()
    for text, marker in ((document, "MAILSTACK_VARS"), (boot, "MAILSTACK_BOOT")):
        if marker in text:
            raise ValueError(f"{marker} may not appear inside its here-document")
    script = f"""#!/bin/bash
# mailstack sender bootstrap, rendered by infra/userdata.py. Log: /var/log/mailstack-bootstrap.log
set -euo pipefail
exec >>/var/log/mailstack-bootstrap.log 2>&1
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q {" ".join(PACKAGES)}
install -d -m 0700 /etc/mailstack
cat >{CLOUD_VARS} <<'MAILSTACK_VARS'
{document}
MAILSTACK_VARS
cat >/usr/local/sbin/mailstack-boot <<'MAILSTACK_BOOT'
{boot}MAILSTACK_BOOT
chmod 0755 /usr/local/sbin/mailstack-boot
# The sending address (and its warm-up start) before anything sends: Postfix binds to it, mailstack's
# throttle caps it by its warm-up day.
/usr/local/sbin/mailstack-boot claim-ip {CLOUD_VARS} {IP_VARS}
/usr/local/sbin/mailstack-boot fetch-secrets {CLOUD_VARS} {SECRET_VARS}
trap 'rm -f {SECRET_VARS}' EXIT
rm -rf {CHECKOUT}
install -d {CHECKOUT}
git -C {CHECKOUT} init -q
git -C {CHECKOUT} fetch -q --depth 1 {shlex.quote(repository)} {shlex.quote(ref)}
git -C {CHECKOUT} checkout -q FETCH_HEAD
cd {CHECKOUT}
# `ansible-playbook -i localhost, -c local site.yml` would leave this host in no group, and site.yml
# applies the sender roles to the `senders` group: name the group in a one-host inventory.
printf '[senders]\\nlocalhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\\n' \\
  >{INVENTORY}
ansible-playbook -i {INVENTORY} -c local site.yml --limit senders \\
  -e @{CLOUD_VARS} -e @{IP_VARS} -e @{SECRET_VARS}
"""
    if len(script.encode()) > MAX_USER_DATA:
        raise ValueError(f"the boot script is {len(script.encode())} bytes; EC2 accepts {MAX_USER_DATA}")
    return script
