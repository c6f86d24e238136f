"""`python -m daemon` is the same as the `awsd` command."""

from daemon.cli.entry import main

raise SystemExit(main())
