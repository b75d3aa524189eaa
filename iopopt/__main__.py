"""``python -m iopopt``: the same Hydra application as the ``iopopt`` console script."""

from .app import main

if __name__ == "__main__":
    main()
