"""``python -m grokviz.cli``: the ``grokviz`` command."""

import sys

from grokviz.cli import main

sys.exit(main())
