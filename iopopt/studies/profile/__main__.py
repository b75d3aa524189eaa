"""``python -m iopopt.studies.profile``: the same as ``iopopt profile``."""

import sys

from . import main

sys.exit(main())
