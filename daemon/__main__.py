"""`python -m daemon` is the same as the `awsd` command."""

from daemon.cli import main

raise SystemExit(main())
