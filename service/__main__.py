"""``python -m service``: the same as ``content-service``."""

from service.cli import main

raise SystemExit(main())
