"""``python -m fastoptim.cli`` runs the ``fastoptim`` command, as ``python -m fastoptim``
does."""

import sys

from . import main

sys.exit(main())
