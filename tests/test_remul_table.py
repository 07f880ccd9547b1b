"""benchmarks/remul_table1.py: REMUL's N-body table on both readings of its split — its
statistics, its choice of β/α, its ratios, a tiny end-to-end run that resumes, and the shipped
table (which the README and notebooks 02/03 quote)."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "benchmarks" / "results" / "remul_table1_cpu.json"


def _bench():
    spec = importlib.util.spec_from_file_location("remul_table1", ROOT / "benchmarks" /
                                                  "remul_table1.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_interval_is_students_t():
    bench = _bench()
    mean, half, std = bench.interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and std == 1.0
    assert half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)  # t(0.975, 2) = 4.3027
    assert math.isnan(bench.interval([1.0])[1])


def _run(reading, row, beta, seed, test, ood, val):
    return {"reading": reading, "row": row, "label": row, "model": "transformer",
            "objective": "remul", "beta": beta, "seed": seed, "steps": 10, "batch_size": 4,
            "test_mse": test, "ood_mse": ood, "best_val_mse": val, "train_seconds": 1.0,
            "stack": 9}


def test_the_grid_beta_is_chosen_on_validation_not_on_test():
    bench = _bench()
    runs = [_run("rotation", "remul_grid", b, s, test, test, val)
            for b, test, val in ((3.0, 1.0, 5.0), (10.0, 2.0, 4.0), (30.0, 0.5, 6.0))
            for s in (0, 1, 2)]
    rows = bench.summarise(runs)
    labels = [r["label"] for r in rows]
    assert labels[0] == "REMUL-Transformer β/α=10"
    assert labels[1].startswith("REMUL-Transformer β/α=10 (best of")  # lowest validation
    assert rows[1]["test_mse"] == 2.0  # not β/α = 30, which has the lowest *test* error


def test_ratios_are_the_papers_on_its_own_numbers():
    bench = _bench()
    paper = bench.ratios([])["paper"]
    assert paper["REMUL ÷ Transformer (ID)"] == pytest.approx(1.94 / 8.99)
    assert paper["REMUL ÷ DA (ID)"] == pytest.approx(1.94 / 4.20)
    assert paper["Transformer OOD ÷ ID"] == pytest.approx(27.06 / 8.99)


def test_a_tiny_table_runs_resumes_and_writes_both_files(tmp_path, monkeypatch):
    monkeypatch.setenv("EQHELPERS_CACHE", str(tmp_path / "cache"))
    bench = _bench()
    out = tmp_path / "t"
    args = ["--budget", "tiny", "--seeds", "0", "1", "--readings", "rotation", "--only",
            "transformer", "remul_grid", "--out", str(out)]
    assert bench.main(args) == 0
    blob = json.loads(out.with_suffix(".json").read_text())
    assert len(blob["runs"]) == 2 + 2 * len(bench.BETA_GRID)
    assert {r["label"] for r in blob["rows"]} >= {"Transformer (centred, residual)",
                                                  "REMUL-Transformer β/α=10"}
    md = out.with_suffix(".md").read_text()
    assert "**rotation reading**" in md and "| REMUL ÷ DA (ID) |" in md
    mtime = out.with_suffix(".json").stat().st_mtime_ns
    before = [r["test_mse"] for r in blob["runs"]]
    assert bench.main(args) == 0  # everything finished: nothing retrained, the same runs
    again = json.loads(out.with_suffix(".json").read_text())
    assert [r["test_mse"] for r in again["runs"]] == before
    assert out.with_suffix(".json").stat().st_mtime_ns >= mtime


@pytest.mark.skipif(not SHIPPED.exists(), reason="the shipped table is made by the benchmark")
def test_the_shipped_table_has_every_row_on_both_readings_with_three_seeds():
    bench = _bench()
    blob = json.loads(SHIPPED.read_text())
    for reading in bench.READINGS:
        rows = {r["row"] for r in blob["rows"] if r["reading"] == reading}
        assert rows == {r[0] for r in bench.ROWS}, (reading, rows)
    assert all(len(r["seeds"]) >= 3 and r["test_mse_ci95"] > 0 for r in blob["rows"])
    assert blob["provenance"]["budget"] == "cpu"
    # the equivariant models cannot tell the readings apart (rigid motions, orderings): their
    # errors agree within the seeds' intervals, while the Transformer's OOD errors do not
    for key in ("egnn", "e3nn", "se3_transformer", "gatr"):
        a, b = (next(r for r in blob["rows"] if r["reading"] == rd and r["row"] == key)
                for rd in bench.READINGS)
        assert abs(a["test_mse"] - b["test_mse"]) < a["test_mse_ci95"] + b["test_mse_ci95"]
