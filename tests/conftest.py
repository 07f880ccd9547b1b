"""Test-wide settings. Notebooks run under nbval in the ``tiny`` budget unless told otherwise."""

import os


def pytest_configure(config):
    # read by the notebook kernels nbval starts (they inherit this process's environment)
    os.environ.setdefault("EQHELPERS_BUDGET", "tiny")
    os.environ.setdefault("MPLBACKEND", "Agg")
    # the notebooks' running results table (eqhelpers.results.CourseTable): a fresh one per run
    import tempfile

    os.environ.setdefault("EQHELPERS_COURSE_RESULTS",
                          os.path.join(tempfile.mkdtemp(prefix="eqhelpers-course-"), "course.json"))
