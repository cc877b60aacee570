"""The CrossGuard policy pack: ``pulumi preview --policy-pack policies`` (or ``pulumi policy publish``).

Building a ``PolicyPack`` starts Pulumi's analyzer gRPC server and blocks, so it happens only here; the
rules themselves live in :mod:`policies.rules`, where tests and ``make compliance`` call them directly.
"""

import sys
from pathlib import Path

# The Pulumi CLI runs this file by path; make the repository root importable (policies, infra).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack

from policies.rules import PACK_ENFORCEMENT, RULES

PolicyPack(
    name="mailstack",
    enforcement_level=PACK_ENFORCEMENT,
    policies=[rule.policy for rule in RULES],
)
