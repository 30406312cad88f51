"""``python -m fastoptim`` runs the ``fastoptim`` command (see fastoptim.cli)."""

import sys

from .cli import main

sys.exit(main())
