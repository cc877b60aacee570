"""Run every benchmark (or ``--only NAME``) and write bench/results.json.

Each benchmark measures its own baseline in the same run and reports the ratio, since these machines are
noisy: compare ratios across runs, not raw numbers.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# Module name → the benchmark names it provides.
MODULES = {
    "bench_dkim": ("dkim-rsa", "dkim-ed25519"),
    "bench_pipeline": ("pipeline-sqlite", "pipeline-postgres"),
    "bench_postfix": ("postfix-e2e",),
    "bench_stats": ("stats-aggregate", "stats-query"),
    "bench_tracking": ("tracking-pixel", "tracking-links"),
    "bench_templates": ("templates-1mb",),
    "bench_classify": ("bounce-classify", "bounce-generalisation"),
    "bench_throttle": ("throttle-sqlite", "throttle-postgres"),
    "bench_chaos": ("chaos", "chaos-postgres", "spike"),
    "bench_body_limit": ("body-limit-rss",),
}


def main() -> int:
    known = [name for names in MODULES.values() for name in names]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=known, help="run one benchmark")
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    parser.add_argument("--table", action="store_true", help="also print the tables benchmarks provide")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    for module_name, names in MODULES.items():
        if args.only is not None and args.only not in names:
            continue
        module = importlib.import_module(module_name)
        for result in module.run(args.only):
            print(json.dumps(result), flush=True)
            if args.table and hasattr(module, "table") and "families" in result:
                print(module.table(result), flush=True)
            results.append(result)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
