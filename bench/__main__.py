"""`python -m bench [NAME ...]` runs the named benchmarks, or all of them."""

from __future__ import annotations

import importlib
import sys
import time

# Module names under bench/, in the order `make bench` runs them.
BENCHES: list[str] = [
    "footprint",
    "kinesis",
    "metrics",
    "outbox",
    "probes",
    "reconciler",
    "sqs",
    "first_run",
]


def main(argv: list[str]) -> int:
    names = argv or BENCHES
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHES)}")
        return 2
    for name in names:
        print(f"\n=== bench {name} ===", flush=True)
        began = time.perf_counter()
        importlib.import_module(f"bench.{name}").main()
        print(f"=== {name} took {time.perf_counter() - began:.1f}s ===", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
