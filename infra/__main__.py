"""What ``pulumi up`` runs (``main: infra/`` in Pulumi.yaml)."""

import sys
from pathlib import Path

# Pulumi runs this file by path, with infra/ itself on sys.path; the repository root makes `infra` and
# `policies` (the retention policy) importable as packages.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.program import main

main()
