import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    # ruff is in the dev extra, which the README's set-up command and CI install
    paths = ["eqhelpers", "tests", "benchmarks", "notebooks/execute_notebooks.py"]
    res = subprocess.run([sys.executable, "-m", "ruff", "check", *paths], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
