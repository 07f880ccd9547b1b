"""Test-wide settings. Notebooks run under nbval in the ``tiny`` budget unless told otherwise."""

import os


def pytest_configure(config):
    # read by the notebook kernels nbval starts (they inherit this process's environment)
    os.environ.setdefault("EQHELPERS_BUDGET", "tiny")
    os.environ.setdefault("MPLBACKEND", "Agg")
