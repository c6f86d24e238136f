"""`python -m bench [NAME ...] [OPTIONS]` runs the named benchmarks, or all of them.

Options (`--rtt 0,20,60`, ...) go to every named benchmark that takes options (its `main`
accepts an argument list); `python -m bench NAME --help` lists a benchmark's own.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import time

# Module names under bench/, in the order `make bench` runs them.
BENCHES: list[str] = [
    "footprint",
    "kinesis",
    "kinesis_checkpoints",
    "metrics",
    "outbox",
    "probes",
    "reconciler",
    "sqs",
    "first_run",
]


def main(argv: list[str]) -> int:
    first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, options = argv[:first_option] or BENCHES, argv[first_option:]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHES)}")
        return 2
    modules = {name: importlib.import_module(f"bench.{name}") for name in names}
    takes = {name: bool(inspect.signature(m.main).parameters) for name, m in modules.items()}
    if options and not any(takes.values()):
        print(f"{', '.join(names)}: no options taken ({' '.join(options)})")
        return 2
    for name, module in modules.items():
        print(f"\n=== bench {name} ===", flush=True)
        began = time.perf_counter()
        if takes[name]:
            module.main(options)
        else:
            module.main()
        print(f"=== {name} took {time.perf_counter() - began:.1f}s ===", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
