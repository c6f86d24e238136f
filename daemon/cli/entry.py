"""The `awsd` command's entry point (and `python -m daemon`'s).

Python's garbage collector stays off while the command's modules load: importing them creates
~100,000 long-lived objects (classes, functions, config models, botocore's models) and almost no
garbage cycles, so the collections the allocations trigger only re-scan what will live for the
whole process — ~60 ms of a ~0.5 s start on a 2-core machine, more on a Pi. `awsd run` turns it
back on once started (`daemon.runtime.process.settle_memory`: collect, freeze the startup objects,
enable); every other command right after parsing its arguments.
"""

from __future__ import annotations

import gc


def main() -> int:
    gc.disable()
    from daemon.cli.main import main as cli_main  # noqa: PLC0415 - imported with the collector off

    return cli_main()
