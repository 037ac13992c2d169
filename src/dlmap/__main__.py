"""``python -m dlmap``: the ``dlmap`` command (as ``python -m dlmap.cli``)."""

import sys

from dlmap.cli.main import main

sys.exit(main())
