"""benchmarks/data_scaling.py: its step rule, its statistics, and a tiny run that resumes."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from eqhelpers import data
from eqhelpers.budget import get_budget
from eqhelpers.results import mean_interval, power_law_fit

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("data_scaling",
                                                  ROOT / "benchmarks" / "data_scaling.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_steps_follow_epochs_within_the_bounds():
    b = _bench()
    assert b.steps_for(100, 64, 30, 1000, 6000) == 1000  # small sets: the floor
    assert b.steps_for(3000, 64, 30, 1000, 6000) == math.ceil(30 * 3000 / 64)
    assert b.steps_for(30000, 64, 30, 1000, 6000) == 6000  # the cap
    with pytest.raises(ValueError, match="min_steps"):
        b.steps_for(10, 64, 30, 500, 100)


def test_power_law_fit_recovers_a_known_slope_and_its_interval():
    g = torch.Generator().manual_seed(0)
    x = [n for n in (100, 300, 1000, 3000, 10000) for _ in range(3)]
    y = [2.0 * n ** -0.5 * math.exp(0.05 * float(torch.randn(1, generator=g))) for n in x]
    f = power_law_fit(x, y)
    assert abs(f["slope"] + 0.5) < 3 * f["slope_ci95"] and f["slope_ci95"] < 0.1
    assert f["prefactor"] == pytest.approx(2.0, rel=0.3) and f["n"] == 15
    exact = power_law_fit([1, 10, 100], [1.0, 0.1, 0.01])
    assert exact["slope"] == pytest.approx(-1.0) and exact["slope_ci95"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="positive"):
        power_law_fit([1, 2, 3], [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="at least 3"):
        power_law_fit([1, 1, 1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="finite"):
        mean_interval([1.0, float("nan")])


def test_sizes_are_nested_and_share_their_test_systems():
    b = _bench()
    task = data.load_task("charged", "tiny")
    small, large = b.nested(task, 50), b.nested(task, 200)
    assert torch.equal(small["train"]["pos"], large["train"]["pos"][:50])
    assert torch.equal(small["test"]["pos"], large["test"]["pos"])
    assert small.config["n_train"] == 50 and len(large["train"]) == 200
    with pytest.raises(ValueError, match="has 256 systems"):
        b.nested(task, 1000)


def test_a_tiny_study_writes_its_table_and_resumes(tmp_path, capsys, monkeypatch):
    b = _bench()
    out = tmp_path / "scaling"
    args = ["--budget", "tiny", "--tasks", "charged", "--routes", "transformer", "frames",
            "--sizes", "32", "64", "128", "--seeds", "0", "1", "--epochs", "2", "--min-steps", "4",
            "--max-steps", "8", "--out", str(out)]
    assert b.main(args) == 0
    blob = json.loads(out.with_suffix(".json").read_text())
    assert len(blob["runs"]) == 2 * 3 * 2
    # 2 epochs at batch 32: 2, 4 and 8 steps, the first raised to the floor of 4
    assert sorted({r["n_train"]: r["steps"] for r in blob["runs"]}.items()) == [(32, 4), (64, 4),
                                                                              (128, 8)]
    fits = {f["route"]: f for f in blob["summary"]["fits"]}
    assert set(fits) == {"transformer", "frames"} and fits["frames"]["test_mse"]["n"] == 6
    cells = blob["summary"]["cells"]
    assert all(c["E_prime"] < 1e-4 for c in cells if c["route"] == "frames")
    assert all(c["E_prime"] > 1e-3 for c in cells if c["route"] == "transformer")
    md = out.with_suffix(".md").read_text()
    assert "frame averaging" in md and "Power-law slopes" in md and "Per CPU-second" in md
    capsys.readouterr()
    assert b.main(args) == 0  # everything on disk: nothing trains again
    assert "n=" not in capsys.readouterr().out
    assert json.loads(out.with_suffix(".json").read_text())["runs"] == blob["runs"]
    # a study resumed with another step rule is refused: its sizes would not be comparable
    base = args[:-6]  # without --min-steps 4 --max-steps 8 --out …
    assert base[-2:] == ["--epochs", "2"]
    with pytest.raises(SystemExit):
        b.main([*base, "--min-steps", "4", "--max-steps", "9", "--out", str(out)])
    assert "not {'budget'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        b.main([*base, "--min-steps", "10", "--max-steps", "5", "--out", str(out)])
    assert "min_steps <= max_steps" in capsys.readouterr().err
    # --summarise trains nothing, even for sizes not yet run
    assert b.main(["--budget", "tiny", "--tasks", "charged", "--sizes", "32", "64", "128", "200",
                   "--summarise", "--out", str(out)]) == 0
    assert "n=" not in capsys.readouterr().out
    assert len(json.loads(out.with_suffix(".json").read_text())["runs"]) == 12
    # and keeps the step rule the runs were made with, not its own defaults
    prov = json.loads(out.with_suffix(".json").read_text())["provenance"]
    assert (prov["epochs"], prov["min_steps"], prov["max_steps"]) == (2, 4, 8)
    # a study grown by a second command (another route, as the slow ones are added) names both
    first = prov["commands"]
    assert len(first) == 1 and first[0] == prov["command"]
    grow = [*args[:5], "egnn", *args[7:]]  # --routes egnn instead of transformer frames
    assert grow[4:7] == ["--routes", "egnn", "--sizes"]
    monkeypatch.setattr(b.time, "strftime", lambda fmt, *t: "2099-01-01")  # a later day
    assert b.main(grow) == 0
    monkeypatch.undo()
    grown = json.loads(out.with_suffix(".json").read_text())
    assert grown["provenance"]["date"] == prov["date"] != "2099-01-01"  # the first runs' day
    assert grown["provenance"]["updated"] == "2099-01-01"
    assert f"{prov['date']} (extended 2099-01-01)" in out.with_suffix(".md").read_text()
    assert len(grown["runs"]) == 12 + 3 * 2 and grown["runs"][:12] == blob["runs"]
    assert grown["provenance"]["commands"][0] == first[0]
    assert len(grown["provenance"]["commands"]) == 2 and grown["provenance"]["command"] == first[0]
    assert "Commands, in order:" in out.with_suffix(".md").read_text()
    grown_bytes = out.with_suffix(".json").read_bytes()
    # the doubling check: the same seeds with twice the steps, in a file of its own
    study = out.with_suffix(".json").read_bytes()
    assert study == grown_bytes
    assert b.main([*args, "--doubling", "64"]) == 0
    assert out.with_suffix(".json").read_bytes() == study  # the study is not touched
    dbl = json.loads((tmp_path / "scaling_doubling.json").read_text())
    assert {(r["route"], r["n_train"], r["steps"]) for r in dbl["runs"]} == {
        ("transformer", 64, 8), ("frames", 64, 8)}
    rows = {c["route"]: c for c in dbl["summary"]}
    base64 = {r["seed"]: r["test_mse"] for r in blob["runs"]
              if r["route"] == "frames" and r["n_train"] == 64}
    twice = {r["seed"]: r["test_mse"] for r in dbl["runs"] if r["route"] == "frames"}
    change = sum(twice[s] / base64[s] - 1 for s in (0, 1)) / 2
    assert rows["frames"]["change"] == pytest.approx(change) and rows["frames"]["seeds"] == 2
    assert rows["frames"]["converged"] == (change > -b.DOUBLING_GAIN)
    assert "at 2× steps" in (tmp_path / "scaling_doubling.md").read_text()
    capsys.readouterr()
    assert b.main([*args, "--doubling", "64"]) == 0  # resumed: nothing trains again
    assert "doubled (" not in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no transformer run on charged at n=100"):
        b.main([*args, "--doubling", "100"])
    # while another command holds the study (or its doubling check) past the wait, a second
    # is refused and writes nothing
    from eqhelpers._util import file_lock

    monkeypatch.setattr(b, "LOCK_WAIT", 0.2)
    before = out.with_suffix(".json").read_bytes()
    with file_lock(out.with_suffix(".json"), "a test"):
        with pytest.raises(SystemExit):
            b.main(args)
        assert "another run (a test" in capsys.readouterr().err
        assert b.main([*args, "--doubling", "64"]) == 0  # the doubling file is another file
    with file_lock(tmp_path / "scaling_doubling.json", "a test"):
        with pytest.raises(SystemExit):
            b.main([*args, "--doubling", "64"])
    assert out.with_suffix(".json").read_bytes() == before
    # a route the study never ran is not doubled (nor refused): egnn ran, canonical did not
    capsys.readouterr()
    assert b.main([*args[:5], "egnn", "canonical", *args[7:], "--doubling", "64"]) == 0
    out_text = capsys.readouterr().out
    trained = [line.split()[1] for line in out_text.splitlines() if line.endswith("s)")]
    assert trained == ["egnn"]
    dbl = json.loads((tmp_path / "scaling_doubling.json").read_text())
    assert {r["route"] for r in dbl["runs"]} == {"transformer", "frames", "egnn"}


def test_every_command_of_a_study_draws_the_same_systems(tmp_path, capsys, monkeypatch):
    """A task generated at another training size holds other validation and test systems, so a
    later command that asks only for the smaller sizes must still load the study's pool."""
    b = _bench()
    loaded = []
    real = b.load_task
    monkeypatch.setattr(b, "load_task", lambda name, budget: loaded.append(budget.n_train)
                        or real(name, budget))
    big, small = (data.load_task("charged", get_budget("tiny").scaled(n_train=n)) for n in (64, 32))
    assert not torch.equal(big["test"]["pos"], small["test"]["pos"])  # why the pool matters
    out = tmp_path / "pool"
    common = ["--budget", "tiny", "--tasks", "charged", "--seeds", "0", "--epochs", "1",
              "--min-steps", "2", "--max-steps", "2", "--out", str(out)]
    assert b.main([*common, "--routes", "transformer", "--sizes", "32", "64"]) == 0
    first = json.loads(out.with_suffix(".json").read_text())
    assert loaded == [64] and first["provenance"]["pool"] == 64
    assert "first n of 64 generated training systems" in out.with_suffix(".md").read_text()
    # a later command at the smaller size only: the study's 64, not its own 32
    assert b.main([*common, "--routes", "egnn", "--sizes", "32"]) == 0
    assert loaded == [64, 64]
    grown = json.loads(out.with_suffix(".json").read_text())
    assert grown["provenance"]["pool"] == 64 and grown["runs"][:2] == first["runs"]
    # the doubling check draws them too
    assert b.main([*common, "--routes", "egnn", "--sizes", "32", "--doubling", "32"]) == 0
    assert loaded == [64, 64, 64]
    # a size beyond the pool would need other systems: refused, the file untouched
    before = out.with_suffix(".json").read_bytes()
    with pytest.raises(SystemExit):
        b.main([*common, "--routes", "egnn", "--sizes", "128"])
    assert "first systems of 64 generated ones" in capsys.readouterr().err
    assert out.with_suffix(".json").read_bytes() == before and loaded == [64, 64, 64]
    # a file from before the pool was kept: its runs' largest size, the rule they were made under
    old = {**grown, "provenance": {k: v for k, v in grown["provenance"].items() if k != "pool"}}
    assert b.study_pool(old, [32]) == 64 and b.study_pool({"runs": []}, [32, 16]) == 32


def test_two_commands_extend_one_study_at_once(tmp_path, capsys, monkeypatch):
    """Each command claims the cell it trains (a second skips it) and merges what it finished
    into the file as it is on disk then: running two at once splits the work, loses nothing."""
    b = _bench()
    out = tmp_path / "both"
    store = out.with_suffix(".json")
    common = ["--budget", "tiny", "--tasks", "charged", "--seeds", "0", "--epochs", "1",
              "--min-steps", "2", "--max-steps", "2", "--sizes", "32", "64", "--out", str(out)]
    with b._claim(store, "charged", "transformer", 64) as mine:
        assert mine
        with b._claim(store, "charged", "transformer", 64) as again:
            assert not again  # held: a second claim of the same cell fails
        assert b.main([*common, "--routes", "transformer"]) == 0
    assert "n=64     another command is training it: skipped" in capsys.readouterr().out
    keys = lambda: sorted(b._key(r) for r in json.loads(store.read_text())["runs"])  # noqa: E731
    assert keys() == [("charged", "transformer", 32, 0)]
    # a second command finishes a cell while the first is training one: both are kept
    real, inner = b.run_cell, []

    def alongside(task, route, n, *rest, **kw):
        if not inner:
            inner.append(route)
            assert b.main([*common[:-5], "--sizes", "32", "--routes", "egnn", "--out", str(out)]) == 0
        return real(task, route, n, *rest, **kw)

    monkeypatch.setattr(b, "run_cell", alongside)
    assert b.main([*common, "--routes", "transformer"]) == 0
    assert inner == ["transformer"]
    assert keys() == [("charged", "egnn", 32, 0), ("charged", "transformer", 32, 0),
                      ("charged", "transformer", 64, 0)]
    blob = b.read_json(store, "study")
    assert len(blob["provenance"]["commands"]) == 2
    assert {(c["route"], c["n_train"]) for c in blob["summary"]["cells"]} == {
        ("egnn", 32), ("transformer", 32), ("transformer", 64)}
    assert "EGNN" in out.with_suffix(".md").read_text()
    # the file rewritten meanwhile by a command with another step rule: this one's merge is
    # refused, and what is on disk stays as that command left it
    def rewritten(*args, **kw):
        new = real(*args, **kw)
        other = {**blob, "provenance": {**blob["provenance"], "min_steps": 3, "max_steps": 3}}
        b.atomic_json(other, store)
        return new

    monkeypatch.setattr(b, "run_cell", rewritten)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        b.main([*common, "--routes", "egnn"])
    assert "another step rule" in capsys.readouterr().err
    assert json.loads(store.read_text())["provenance"]["min_steps"] == 3
    assert keys() == [("charged", "egnn", 32, 0), ("charged", "transformer", 32, 0),
                      ("charged", "transformer", 64, 0)]


def test_summarising_a_study_with_no_runs_is_refused_and_writes_nothing(tmp_path, capsys):
    b = _bench()
    out = tmp_path / "empty"
    with pytest.raises(SystemExit):
        b.main(["--budget", "tiny", "--summarise", "--out", str(out)])
    assert "no runs in" in capsys.readouterr().err
    assert not out.with_suffix(".json").exists() and not out.with_suffix(".md").exists()


def test_a_doubling_check_of_a_doubling_check_says_where_its_runs_start():
    b = _bench()
    prov = {"budget": "cpu", "epochs": 30.0, "min_steps": 6000, "max_steps": 12000, "device": "cpu",
            "batch_size": 64,
            "version": "0", "date": "2026-12-07", "command": "python benchmarks/data_scaling.py"}
    cell = {"task": "charged", "route": "da", "n_train": 3000, "test_mse": 3e-3,
            "test_mse_doubled": 2e-3, "change": -1 / 3, "change_ci95": 0.1, "converged": False}
    own = b.markdown_doubling({"provenance": prov, "summary": [dict(cell, steps=6000,
                                                                    doubled_steps=12000)]})
    again = b.markdown_doubling({"provenance": prov, "summary": [dict(cell, steps=12000,
                                                                      doubled_steps=24000)]})
    head = [m.splitlines()[0] for m in (own, again)]
    assert head[0].startswith("Doubling check of the data-scaling study at budget `cpu`")
    assert "beyond the data-scaling study's step rule (from 12000 steps" in head[1]
    assert "| 12000 → 24000 |" in again and "-33% ± 10%" in again
