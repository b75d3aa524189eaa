"""Cost-model fidelity experiment: measured distributed latency vs the calibrated model.

Thin wrapper of ``python -m iopopt.fidelity`` (see :mod:`iopopt.fidelity`); the
Hydra app runs one solver per job, while this experiment needs one process
group per (model, ranks) running every solver's plan, so it is a script.
Run from the repository root::

    .venv/bin/python scripts/fidelity.py --out outputs/fidelity/$(date +%F_%H-%M-%S)
    .venv/bin/python scripts/fidelity.py --out DIR --profile outputs/profile/<stamp>   # reuse a profile
"""

import sys

from iopopt.studies.fidelity import main

if __name__ == "__main__":
    sys.exit(main())
