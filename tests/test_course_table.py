"""The course's running results table (results.CourseTable)."""

import json
import math

import pytest

from eqhelpers.results import CourseTable


def test_rows_accumulate_across_notebooks_and_a_rerun_replaces_its_own(tmp_path):
    path = tmp_path / "course.json"
    a = CourseTable(path)
    a.add("02", "gravity_planar", "Transformer", "REMUL β/α=30",
          {"test_mse": 1.6e-3, "ood_mse": 1.7e-3, "E_prime": 0.05, "steps_per_s": 90.0})
    a.add("02", "gravity_planar", "—", "constant velocity", {"test_mse": 4.6e-3, "ood_mse": 4.6e-3})
    b = CourseTable(path)  # another notebook, another kernel: the same file
    b.add("05", "aspirin_short", "Transformer", "REMUL β=10", {"test_mse": 0.06, "ood_mse": 0.066})
    b.add("02", "gravity_planar", "Transformer", "REMUL β/α=30", {"test_mse": 1.5e-3})  # re-run
    rows = CourseTable(path).rows()
    assert [(r["notebook"], r["method"]) for r in rows] == [
        ("02", "REMUL β/α=30"), ("02", "constant velocity"), ("05", "REMUL β=10")]
    assert rows[0] == {"notebook": "02", "task": "gravity_planar", "model": "Transformer",
                       "method": "REMUL β/α=30", "test_mse": 1.5e-3}  # replaced, not merged
    md = CourseTable(path).markdown()
    assert md.splitlines()[0].startswith("| notebook | task | model | method | test mse")
    assert "0.0015" in md and "`aspirin_short`" in md and md.count("\n") == 4
    assert "steps_per_s" not in json.dumps(json.loads(path.read_text()))


def test_bad_rows_are_refused_and_a_corrupt_file_is_set_aside(tmp_path):
    t = CourseTable(tmp_path / "c.json")
    with pytest.raises(ValueError, match="nothing to record"):
        t.add("02", "gravity", "m", "x", {"steps_per_s": 1.0})
    with pytest.raises(ValueError, match="nan"):
        t.add("02", "gravity", "m", "x", {"test_mse": math.nan})
    with pytest.raises(ValueError, match="notebook"):
        t.add("", "gravity", "m", "x", {"test_mse": 1.0})
    (tmp_path / "c.json").write_text("{not json")
    with pytest.warns(UserWarning, match="corrupt"):
        assert t.rows() == []
    assert len(list(tmp_path.glob("c.json.corrupt-*"))) == 1  # kept, not deleted
    t.add("03", "gravity", "m", "x", {"test_mse": 1.0})
    assert len(t.rows()) == 1


def test_the_table_lives_where_the_environment_says(tmp_path, monkeypatch):
    monkeypatch.setenv("EQHELPERS_COURSE_RESULTS", str(tmp_path / "here.json"))
    CourseTable().add("04", "hidden_axis", "MLP", "end to end", {"test_mse": 2e-3})
    assert (tmp_path / "here.json").exists()
