"""``python -m dlmap.cli``: the ``dlmap`` command."""

import sys

from dlmap.cli.main import main

sys.exit(main())
