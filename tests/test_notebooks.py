"""The committed notebooks: executed, clean, and shaped like the course promises.

(nbval, configured in pyproject.toml, re-executes every notebook in the tiny budget and compares
the cells marked ``# NBVAL_CHECK_OUTPUT``.)
"""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ABSOLUTE = re.compile(r"(/work/|/root/|/home/|/tmp/|/Users/|[A-Z]:\\\\)")


def test_the_course_notebooks_exist():
    names = [p.name for p in NOTEBOOKS]
    for prefix in ("00_", "01_", "02_", "03_", "04_", "05_"):
        assert any(n.startswith(prefix) for n in names), prefix


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.name)
def nb(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_committed_with_outputs_in_order(nb):
    path, book = nb
    counts = [c.execution_count for c in book.cells if c.cell_type == "code"]
    assert all(c is not None for c in counts), f"{path.name} has unexecuted cells"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name} was not run top to bottom"


def test_no_errors_warnings_widget_state_or_absolute_paths(nb):
    path, book = nb
    assert "widgets" not in book.metadata, f"{path.name} carries widget state"
    for cell in book.cells:
        if cell.cell_type != "code":
            continue
        assert "sys.path" not in cell.source, f"{path.name}: no sys.path hacks"
        for out in cell.outputs:
            assert out.output_type != "error", f"{path.name}: error output committed"
            text = out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
            if out.output_type == "stream" and out.name == "stderr":
                assert not re.search(r"Warning|Traceback|Error", text), f"{path.name}: {text[:200]}"
            assert not ABSOLUTE.search(text), f"{path.name}: absolute path in output: {text[:200]}"
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {})
        assert not ABSOLUTE.search(cell.source), f"{path.name}: absolute path in code"
    assert path.stat().st_size < 2_000_000, f"{path.name} is too large"


def test_goals_first_exercises_last_and_checked_facts(nb):
    path, book = nb
    assert book.cells[0].cell_type == "markdown"
    assert "You will leave this notebook able to" in book.cells[0].source
    assert book.cells[-1].cell_type == "markdown" and "Exercises" in book.cells[-1].source
    facts = [c for c in book.cells if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source]
    assert facts, f"{path.name} checks no facts"
    for c in facts:  # folded in JupyterLab: the claims read as part of the lesson, not as code
        assert c.metadata.get("jupyter", {}).get("source_hidden") is True, (path.name, c.source[:60])
    for c in book.cells:  # no cell moves a widget before the learner does
        assert not re.search(r"(slider|controls?|alpha|beta|angle|axis|frame)\w*(\[\d+\])?"
                             r"\.value\s*=[^=]", c.source), (path.name, c.source[:80])
    for c in facts:  # facts are claims that print True when they hold: none may print False
        printed = "".join(o.get("text", "") for o in c.outputs)
        claims = re.findall(r": (True|False)\s*$", printed, re.M)
        assert claims and "False" not in claims, (path.name, printed)


def test_outputs_come_from_the_current_code(nb):
    """The stamp execute_notebooks.py writes: the committed outputs were produced, at the cpu
    budget, by exactly this package code and these shipped results."""
    from eqhelpers._util import source_fingerprint

    path, book = nb
    stamp = book.metadata.get("eqhelpers", {})
    assert stamp.get("budget") == "cpu", f"{path.name} was not executed at the cpu budget"
    assert stamp.get("source") == source_fingerprint(), (
        f"{path.name}'s outputs were produced by other code than this checkout's: re-run "
        "`python notebooks/execute_notebooks.py --budget cpu` and commit the notebooks")


def test_source_fingerprint_sees_code_and_results(tmp_path):
    from eqhelpers._util import source_fingerprint

    (tmp_path / "precomputed").mkdir()
    (tmp_path / "static").mkdir()
    (tmp_path / "mod.py").write_text("x = 1\n")
    (tmp_path / "precomputed" / "r.json").write_text("{}")
    first = source_fingerprint(tmp_path)
    (tmp_path / "static" / "lib.js").write_text("fetched, not committed")
    (tmp_path / "static" / "a.py").write_text("ignored")
    assert source_fingerprint(tmp_path) == first
    (tmp_path / "precomputed" / "r.json").write_text('{"mse": 1}')
    second = source_fingerprint(tmp_path)
    assert second != first
    (tmp_path / "mod.py").write_text("x = 2\n")
    assert source_fingerprint(tmp_path) != second
    (tmp_path / "mod.py").rename(tmp_path / "other.py")  # a renamed file changes it too
    assert source_fingerprint(tmp_path) not in (first, second)


def test_every_notebook_has_solutions_for_instructors(nb):
    path, _ = nb
    sol = ROOT / "notebooks" / "solutions" / (path.stem + "_solutions.md")
    assert sol.is_file(), sol.name
    n_exercises = len(re.findall(r"^\d+\. ", nbformat.read(path, 4).cells[-1].source, re.M))
    assert len(re.findall(r"^## Exercise \d+", sol.read_text(), re.M)) == n_exercises
