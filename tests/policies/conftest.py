"""The policy tests import policies/ and infra/ from the repository root (they are not installed)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
