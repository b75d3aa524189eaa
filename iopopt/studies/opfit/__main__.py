"""``python -m iopopt.studies.opfit``: the same as ``iopopt opfit``."""

import sys

from . import main

sys.exit(main())
