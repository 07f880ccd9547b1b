"""The committed notebooks: executed, clean, and shaped like the course promises.

(nbval, configured in pyproject.toml, re-executes every notebook in the tiny budget and compares
the cells marked ``# NBVAL_CHECK_OUTPUT``.)
"""

import json
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ABSOLUTE = re.compile(r"(/work/|/root/|/home/|/tmp/|/Users/|[A-Z]:\\\\)")


def test_the_course_notebooks_exist():
    names = [p.name for p in NOTEBOOKS]
    for prefix in ("00_", "01_", "02_", "03_", "04_", "05_", "06_", "07_"):
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


def test_claims_of_the_prose_hold_in_the_committed_run(nb):
    """A "# CLAIMS" cell states what the text beside it says of *this* run (a model beats a
    baseline, a curve rises): nbval does not compare it (at the tiny budget a live run may differ),
    but the committed cpu-budget outputs must print True for every claim — so re-executing
    notebooks whose results changed cannot leave a sentence that says otherwise."""
    path, book = nb
    for c in book.cells:
        if c.cell_type != "code" or not c.source.startswith("# CLAIMS"):
            continue
        assert c.metadata.get("jupyter", {}).get("source_hidden") is True, (path.name, c.source[:60])
        printed = "".join(o.get("text", "") for o in c.outputs)
        claims = re.findall(r": (True|False)\s*$", printed, re.M)
        assert claims and "False" not in claims, (path.name, c.source[:200], printed)


def test_outputs_come_from_the_current_code(nb):
    """The stamp execute_notebooks.py writes: the committed outputs were produced, at the cpu
    budget, by exactly this package code and these shipped results."""
    from eqhelpers._util import cells_fingerprint, source_fingerprint

    path, book = nb
    stamp = book.metadata.get("eqhelpers", {})
    assert stamp.get("budget") == "cpu", f"{path.name} was not executed at the cpu budget"
    assert stamp.get("source") == source_fingerprint(), (
        f"{path.name}'s outputs were produced by other code than this checkout's: re-run "
        "`python notebooks/execute_notebooks.py --budget cpu` and commit the notebooks")
    assert stamp.get("cells") == cells_fingerprint(book.cells), (
        f"{path.name}'s cells were edited after it ran: its outputs are not theirs; re-run "
        "`python notebooks/execute_notebooks.py --budget cpu` and commit the notebooks")
    # one torch thread, as on Binder: a learner's re-run gives the committed numbers
    assert stamp.get("threads") == 1, f"{path.name} ran with {stamp.get('threads')} threads"
    assert str(stamp.get("torch", "")).startswith("2."), stamp


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


def test_cells_fingerprint_sees_an_edited_cell_but_not_outputs():
    from eqhelpers._util import cells_fingerprint

    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("E′ falls 5×"),
                                           nbformat.v4.new_code_cell("print(1)")])
    first = cells_fingerprint(book.cells)
    book.cells[1].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    book.cells[1].execution_count = 1
    assert cells_fingerprint(book.cells) == first  # running it does not change the cells
    book.cells[0].source = "E′ falls 6×"
    assert cells_fingerprint(book.cells) != first  # a sentence edited after the run does
    book.cells[0].source = "E′ falls 5×"
    book.cells[0].cell_type = "raw"
    assert cells_fingerprint(book.cells) != first


FROZEN_BAR = re.compile(r"(^|[:\s])\s*0%\|")
WIDGET_TEXT = re.compile(r"\b[HV]Box\(children=|\w+Slider\(value=")


def _bar_state(prefix: str, value: float, top: float, left: str, right: str) -> dict:
    def model(name, **state):
        return {"model_name": name, "model_module": "@jupyter-widgets/controls",
                "model_module_version": "2.0.0", "state": state}

    return {f"{prefix}l": model("HTMLModel", value=left),
            f"{prefix}p": model("FloatProgressModel", value=value, max=top, bar_style="success"),
            f"{prefix}r": model("HTMLModel", value=right),
            f"{prefix}box": model("HBoxModel", children=[f"IPY_MODEL_{prefix}{k}" for k in "lpr"])}


def test_clean_leaves_what_a_page_without_a_kernel_can_show():
    """execute_notebooks.clean: a tqdm bar becomes its final text; an explorer and a 3D view
    become their note and still image; widget state and the inlined 3Dmol.js go."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ex", ROOT / "notebooks" / "execute_notebooks.py")
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    out = nbformat.v4.new_output
    view = "application/vnd.jupyter.widget-view+json"
    state = {**_bar_state("a", 1333, 1333, "plain:\u2007100%",
                          "\u20071333/1333\u2007[00:07&lt;00:00,\u2007175.70it/s]"),
             **_bar_state("b", 40, 100, "interrupted:\u2007\u200740%", "\u200740/100")}
    state["vbox"] = {"model_name": "VBoxModel", "state": {"children": []}}
    png = "iVBORw0KGgo="
    cell = nbformat.v4.new_code_cell("run()")
    cell.outputs = [
        out("display_data", data={"text/plain": "plain:   0%|          | 0/1333",
                                  view: {"model_id": "abox"}}),
        out("display_data", data={"text/plain": "interrupted:   0%|", view: {"model_id": "bbox"}}),
        out("display_data", data={"text/plain": "VBox(children=(FloatLogSlider(value=1.0),))",
                                  view: {"model_id": "vbox"}, "image/png": png}),
        out("display_data", data={"text/plain": "[a 3D view: run it]", "image/png": png,
                                  "application/3dmoljs_load.v0": "<div id='3dmolviewer_1'>",
                                  "text/html": "<p>3Dmol.js failed to load</p>"}),
        out("display_data", data={"text/html": "<script>window.$3Dmolpromise = "
                                               "Promise.resolve();</script>"}),
        out("stream", text="kept as it is\n"),
    ]
    book = nbformat.v4.new_notebook(cells=[cell])
    book.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    ex.clean(book)
    assert "widgets" not in book.metadata
    texts = [o.get("data", {}).get("text/plain", o.get("text")) for o in cell.outputs]
    assert texts[0] == "plain: 100%|██████████| 1333/1333 [00:07<00:00, 175.70it/s]"
    assert texts[1] == "interrupted:  40%|████      | 40/100"
    assert texts[2] == ex.WIDGET_NOTE and cell.outputs[3]["data"]["image/png"] == png
    assert texts[4] == "[a 3D view: run it]" and cell.outputs[5]["data"]["image/png"] == png
    assert "3Dmol.js was put into the page" in texts[6] and texts[7] == "kept as it is\n"
    dump = json.dumps(cell.outputs)
    assert view not in dump and "failed to load" not in dump and "3dmoljs" not in dump
    assert not FROZEN_BAR.search(dump) and not WIDGET_TEXT.search(dump)


def test_committed_pages_read_well_without_a_kernel(nb):
    """No frozen "0%" bar, no widget repr, no 3Dmol.js failure box or script in any committed
    output; math in Markdown uses macros that survive Markdown (\\lVert, not \\|)."""
    path, book = nb
    for i, cell in enumerate(book.cells):
        if cell.cell_type == "markdown":
            assert "\\|" not in cell.source, f"{path.name} cell {i}: write \\lVert … \\rVert"
            continue
        if cell.cell_type != "code":
            continue
        for o in cell.outputs:
            text = o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
            html = str(o.get("data", {}).get("text/html", ""))
            where = f"{path.name} cell {i}"
            assert not FROZEN_BAR.search(text), f"{where}: a frozen progress bar: {text[:80]}"
            assert not WIDGET_TEXT.search(text), f"{where}: widget text: {text[:80]}"
            assert "failed to load" not in html + text and "<script" not in html, where
            assert "application/3dmoljs_load.v0" not in o.get("data", {}), where


# a measured-looking number in Markdown: a ratio (5×, 1.5×), a percentage, a number in e-notation,
# or a hedged quantity; dimensions (8×8) and quotations ("up to 10×", a paper's claim) are not
RESULT_IN_PROSE = re.compile(
    r"\d(?:\.\d+)?\s?×(?!\s?\d)|\d+(?:\.\d+)?\s?%|\d\.?\d*e[-−+]?\d+|orders? of magnitude|"
    r"several-fold|\d+(?:\.\d+)?-fold|widest margin|\btwice\b|\bhalf as\b", re.I)


def test_markdown_states_no_result_that_the_code_beside_it_does_not_print(nb):
    """Prose cannot drift from the data: a measured number (a ratio, a percentage, an error in
    e-notation, "orders of magnitude") belongs in a code cell's output, computed from the data,
    not in Markdown. A quotation ("…") of a paper's claim is allowed."""
    path, book = nb
    for i, cell in enumerate(book.cells):
        if cell.cell_type != "markdown":
            continue
        text = re.sub(r'"[^"\n]*"|“[^”]*”', "", cell.source)
        hits = [text[max(0, m.start() - 40):m.end() + 10] for m in RESULT_IN_PROSE.finditer(text)]
        assert not hits, f"{path.name} cell {i}: print it from the data instead: {hits}"
