"""``python -m iopopt.distributed``: run one plan distributed (see :mod:`iopopt.app.distributed`)."""

import sys

from ..app.distributed import main

if __name__ == "__main__":
    sys.exit(main())
