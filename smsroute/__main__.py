"""``python -m smsroute``: the same command line as the ``smsroute`` script."""

from smsroute.cli import main

raise SystemExit(main())
