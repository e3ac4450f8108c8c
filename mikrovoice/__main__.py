"""``python -m mikrovoice``: the same as the ``mikrovoice`` console script."""

from mikrovoice.cli import main

raise SystemExit(main())
