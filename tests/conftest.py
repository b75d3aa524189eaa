"""Shared pytest set-up: one torch thread per test process, and the ``slow`` marker.

Tests marked ``@pytest.mark.slow`` (whole-zoo acceptance sweeps) are skipped
unless ``--runslow`` is given: ``.venv/bin/python -m pytest --runslow -m slow``.
"""

import pytest
import torch
from hypothesis import settings

torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow acceptance test: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# Property tests draw the same examples on every run (reproducible CI); explore new ones with
# `pytest --hypothesis-profile=explore`.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("repeatable")
