"""``python -m grokviz``: the ``grokviz`` command."""

import sys

from grokviz.cli import main

sys.exit(main())
