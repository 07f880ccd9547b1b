"""Test-wide settings. Notebooks run under nbval in the ``tiny`` budget unless told otherwise."""

import os


def pytest_configure(config):
    # read by the notebook kernels nbval starts (they inherit this process's environment)
    os.environ.setdefault("EQHELPERS_BUDGET", "tiny")
    os.environ.setdefault("MPLBACKEND", "Agg")
    # the notebooks' running results table (eqhelpers.results.CourseTable): a fresh one per run
    import atexit
    import shutil
    import tempfile

    if "EQHELPERS_COURSE_RESULTS" not in os.environ:
        scratch = tempfile.mkdtemp(prefix="eqhelpers-course-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # no leftovers in /tmp
        os.environ["EQHELPERS_COURSE_RESULTS"] = os.path.join(scratch, "course.json")


def pytest_collection_modifyitems(items):
    # nbval waits at most 5 s (hard-coded) between a cell's output messages once the cell has
    # finished; on a loaded machine (two cores, another job running) a kernel can be slower than
    # that to flush them, and the whole notebook then fails as "timed out". A cell's own run time
    # stays bounded by --nbval-cell-timeout and pytest-timeout.
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = 60
