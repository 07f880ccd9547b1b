import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import eqhelpers.train
from eqhelpers.sweep import SweepResult, equivariance_key, load_sweep, log_betas, summarise, sweep
from eqhelpers.viz import interpolate

FAST = {"task": "gravity", "models": ("transformer",), "betas": [0.0, 1.0, 10.0], "seeds": (0, 1),
        "budget": "tiny", "steps": 10, "progress": False}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EQHELPERS_CACHE", str(tmp_path / "cache"))


def test_log_betas():
    b = log_betas(0.1, 100, 4)
    assert b[0] == 0.0 and np.allclose(b[1:], [0.1, 1, 10, 100])
    assert log_betas(1, 10, 2, zero=False) == [1.0, 10.0]
    with pytest.raises(ValueError):
        log_betas(0, 10, 3)


def test_sweep_writes_every_output_and_resumes_without_recomputing(tmp_path):
    out = tmp_path / "sw"
    first = sweep(**FAST, out=out)
    assert first.computed == 6 and len(first.points) == 6
    for name in ("sweep.json", "sweep.csv", "points.csv", "sweep_config.json"):
        assert (out / name).exists(), name
    assert (out / "sweep.csv").read_text().splitlines()[0].startswith("model,beta,n_seeds,test_mse")
    again = sweep(**FAST, out=out)
    assert again.computed == 0
    assert again.summary == first.summary


def test_an_interrupted_sweep_keeps_what_finished(tmp_path, monkeypatch):
    out = tmp_path / "sw"
    real, calls = eqhelpers.train.run_group, []

    def flaky(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(eqhelpers.train, "run_group", flaky)
    with pytest.raises(KeyboardInterrupt):
        sweep(**FAST, out=out, max_stack=2)  # 6 points in 3 stacks of 2
    assert len(list((out / "points").glob("*.json"))) == 4
    monkeypatch.setattr(eqhelpers.train, "run_group", real)
    assert sweep(**FAST, out=out).computed == 2


def test_a_corrupt_point_is_reported_kept_and_recomputed(tmp_path):
    out = tmp_path / "sw"
    first = sweep(**FAST, out=out)
    victim = out / "points" / "transformer-beta1-seed0.json"
    original = json.loads(victim.read_text())
    victim.write_text('{"model": "transformer", "beta": 1.0, "seed": 0, "test_mse": NaN}')
    with pytest.warns(UserWarning, match="transformer-beta1-seed0.json is corrupt"):
        again = sweep(**FAST, out=out)
    assert again.computed == 1
    # recomputed alone, not in its stack of 6: the same point to float32 tolerance
    assert json.loads(victim.read_text())["test_mse"] == pytest.approx(original["test_mse"], rel=1e-4)
    kept = list((out / "points").glob("transformer-beta1-seed0.json.corrupt-*"))
    assert len(kept) == 1 and "NaN" in kept[0].read_text()
    for a, b in zip(again.summary, first.summary):
        assert (a["model"], a["beta"]) == (b["model"], b["beta"])
        assert a["test_mse"] == pytest.approx(b["test_mse"], rel=1e-3)


def test_another_configuration_in_the_same_directory_is_refused(tmp_path):
    out = tmp_path / "sw"
    sweep(**FAST, out=out)
    before = sorted(p.name for p in (out / "points").iterdir())
    with pytest.raises(ValueError, match="other settings"):
        sweep(**{**FAST, "steps": 20}, out=out)
    with pytest.raises(ValueError, match="centre"):  # uncentred models are another sweep
        sweep(**FAST, out=out, centre=False)
    with pytest.raises(ValueError, match="head"):
        sweep(**FAST, out=out, head="absolute")
    assert sorted(p.name for p in (out / "points").iterdir()) == before


def test_bad_sweep_arguments(tmp_path):
    with pytest.raises(ValueError, match="beta"):
        sweep(**{**FAST, "betas": [-1.0]})
    with pytest.raises(ValueError, match="unknown model"):
        sweep(**{**FAST, "models": ("resnet",)})
    with pytest.raises(ValueError, match="alpha"):
        sweep(**{**FAST, "alpha": 0.0})


def pts(model, beta, mses, eps):
    return [{"model": model, "beta": beta, "seed": s, "test_mse": m, "ood_mse": m, "E": e,
             "E_prime": e, "E_prime_mse": e, "E_prime_rel": e}
            for s, (m, e) in enumerate(zip(mses, eps))]


def test_summary_statistics_and_per_model_pareto_front():
    points = (pts("t", 0.0, [1.0, 2.0], [10.0, 10.0]) + pts("t", 1.0, [2.0, 2.0], [1.0, 1.0])
              + pts("t", 10.0, [3.0, 3.0], [2.0, 2.0]) + pts("egnn", 0.0, [0.1, 0.1], [1e-9, 1e-9]))
    rows = {(r["model"], r["beta"]): r for r in summarise(points)}
    assert rows[("t", 0.0)]["test_mse"] == 1.5
    assert rows[("t", 0.0)]["test_mse_std"] == pytest.approx(np.std([1.0, 2.0], ddof=1))
    # β=0 (best MSE) and β=1 (best E′) are on the front; β=10 is dominated by β=1
    assert rows[("t", 0.0)]["pareto"] and rows[("t", 1.0)]["pareto"]
    assert not rows[("t", 10.0)]["pareto"]
    assert rows[("egnn", 0.0)]["pareto"]  # a front per model: EGNN does not erase the others'


def test_summary_skips_missing_metrics_and_legacy_sweeps_use_e_prime_mse():
    points = pts("mlp", 0.0, [1.0, 2.0], [1.0, 1.0])
    points[0]["object_generalization_mse"], points[1]["object_generalization_mse"] = 4.0, None
    (row,) = summarise(points)
    assert row["object_generalization_mse"] == 4.0 and row["n_object_generalization_mse"] == 1
    # a sweep from before eqhelpers 0.2: no REMUL E′, its front is on E′_mse
    legacy = [{k: v for k, v in p.items() if k not in ("E", "E_prime")} for p in
              pts("t", 0.0, [1.0], [10.0]) + pts("t", 1.0, [2.0], [1.0]) + pts("t", 10.0, [3.0], [2.0])]
    assert equivariance_key(legacy) == "E_prime_mse"
    rows = {r["beta"]: r for r in summarise(legacy)}
    assert rows[0.0]["pareto"] and rows[1.0]["pareto"] and not rows[10.0]["pareto"]
    assert "E_prime" not in rows[0.0]
    assert equivariance_key(pts("t", 0.0, [1.0], [1.0])) == "E_prime"


def test_interpolation_hits_the_grid_and_stays_between():
    points = pts("t", 0.0, [1.0], [1.0]) + pts("t", 1.0, [2.0], [0.1]) + pts("t", 100.0, [4.0], [0.001])
    res = SweepResult({}, points, summarise(points))
    assert interpolate(res, 1.0, "t")["test_mse"] == pytest.approx(2.0)
    assert interpolate(res, 10.0, "t")["test_mse"] == pytest.approx(np.sqrt(8.0))  # log-midpoint
    assert interpolate(res, 0.0, "t")["E_prime"] == pytest.approx(1.0)
    assert interpolate(res, 1e4, "t")["test_mse"] == pytest.approx(4.0)  # held beyond the grid


def test_load_sweep_roundtrip_and_clear_error(tmp_path):
    out = tmp_path / "sw"
    sweep(**FAST, out=out)
    assert load_sweep(out).summary == json.loads((out / "sweep.json").read_text())["summary"]
    (out / "sweep.json").write_text("{")
    with pytest.raises(ValueError, match="sweep.json"):
        load_sweep(out)


@pytest.mark.parametrize("name", ["sweep_gravity_planar_cpu", "sweep_field_e3_cpu", "sweep_charged_cpu",
                                  "sweep_field_e3_n300_cpu"])
def test_shipped_sweeps_have_provenance(name):
    path = resources.files("eqhelpers") / "precomputed" / name
    res = load_sweep(path)
    prov = res.provenance
    for key in ("command", "device", "budget", "date", "version", "torch"):
        assert prov.get(key), key
    assert prov["budget"] != "tiny" and prov["command"].startswith("python -m eqhelpers sweep")
    assert len(res.config["seeds"]) >= 3 and 0.0 in res.config["betas"]
    assert all(r["n_seeds"] == len(res.config["seeds"]) for r in res.summary)
    assert (path / "tradeoff.png").is_file()


def test_shipped_results_name_the_quantities_they_hold():
    # results computed with eqhelpers 0.1's definitions carry them under their own names, with a
    # note: never "E" or "E′" for what REMUL's E and E′ are not
    root = resources.files("eqhelpers") / "precomputed"
    files = list(Path(str(root)).rglob("*.json"))
    assert files

    def keys(x):
        if isinstance(x, dict):
            for k, v in x.items():
                yield k, x
                yield from keys(v)
        elif isinstance(x, list):
            for v in x:
                yield from keys(v)

    checked = 0
    for f in files:
        blob = json.loads(f.read_text())
        for k, holder in keys(blob):
            assert k != "E_rel", f
            if k.startswith("orbit_spread"):
                assert "E" not in holder and "E_prime" not in holder, f
                checked += 1
        if any(k.startswith("orbit_spread") for k, _ in keys(blob)):
            assert "relabelled" in f.read_text(), f
    assert checked > 0


def test_saved_models_reload_with_the_centring_they_were_trained_with(tmp_path, monkeypatch):
    monkeypatch.setenv("EQHELPERS_CACHE", str(tmp_path / "cache"))
    from eqhelpers.data import load_task
    from eqhelpers.sweep import load_sweep_model
    from eqhelpers.train import mse

    # a sweep of now: centred models, and their checkpoints say so
    res = sweep(**{**FAST, "betas": [0.0], "seeds": (0,)}, out=tmp_path / "sw", save_models=True)
    task = load_task("gravity", "tiny")
    net = load_sweep_model(res, "transformer", 0.0, task=task)
    assert net.centre_key == "pos"
    assert mse(net, task["test"]) == pytest.approx(res.points[0]["test_mse"], rel=1e-6)
    # a shipped sweep from eqhelpers 0.1 (no model_config in its checkpoints) reloads
    # uncentred, as it was trained. (Its recorded test MSE is reproduced only on data simulated
    # on the machine that made it: MD is chaotic, and another CPU's rounding gives other frames.)
    shipped = load_sweep(resources.files("eqhelpers") / "precomputed" / "sweep_aspirin_future_cpu")
    task = load_task("aspirin_future", "cpu")
    old = load_sweep_model(shipped, "transformer", 10.0, task=task)
    assert old.centre_key is None
    point = next(p for p in shipped.points if p["beta"] == 10.0)
    assert mse(old, task["test"]) == pytest.approx(point["test_mse"], rel=0.25)


def test_a_stacked_sweep_equals_one_trained_point_by_point(tmp_path):
    stacked = sweep(**FAST, out=tmp_path / "stacked")
    alone = sweep(**FAST, out=tmp_path / "alone", stack=False)
    assert {p["stack"] for p in stacked.points} == {6} and {p["stack"] for p in alone.points} == {1}
    assert "one stack of 6" in stacked.provenance["groups_in_last_run"][0]
    assert "stacking switched off" in alone.provenance["groups_in_last_run"][0]
    spread = np.std([p["test_mse"] for p in alone.points if p["beta"] == 1.0])
    for s, a in zip(stacked.points, alone.points):
        assert (s["beta"], s["seed"]) == (a["beta"], a["seed"])
        for key in ("test_mse", "E_prime"):  # float32 rounding only: far inside the seed noise
            assert s[key] == pytest.approx(a[key], rel=1e-3)
        assert abs(s["test_mse"] - a["test_mse"]) < 0.01 * spread


def test_equivariant_models_stack_their_seeds_and_unstackable_ones_say_so(tmp_path):
    res = sweep(**{**FAST, "models": ("egnn",), "seeds": (0, 1)}, out=tmp_path / "eg")
    assert [p["beta"] for p in res.points] == [0.0, 0.0] and res.points[0]["stack"] == 2
    from eqhelpers.train import run_group

    pts = [{"objective": "remul", "alpha": 1.0, "beta": 1.0, "seed": s} for s in (0, 1)]
    out = run_group("aspirin_forces", "gnn", pts, budget="tiny", steps=2, progress=False,
                    conservative=True)
    assert all(m["stack"] == 1 for _, _, m in out)
    assert "one at a time" in out[0][2]["stack_note"] and "autograd" in out[0][2]["stack_note"]


def test_a_killed_stacked_sweep_recomputes_only_its_unfinished_groups(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "sw"
    cmd = [sys.executable, "-m", "eqhelpers", "sweep", "--task", "gravity", "--budget", "tiny",
           "--betas", "0", "1", "10", "--seeds", "0", "1", "--steps", "400", "--max-stack", "2",
           "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and len(list((out / "points").glob("*.json"))) < 2:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # after the first stack of 2, before the last
    finally:
        proc.wait()
    done = {p.name: p.read_text() for p in (out / "points").glob("*.json")}
    assert 2 <= len(done) < 6
    res = sweep(**{**FAST, "steps": 400}, out=out, max_stack=2)
    assert res.computed == 6 - len(done)
    for name, text in done.items():  # finished points were read, not rewritten
        assert (out / "points" / name).read_text() == text


def test_cli_sweep_writes_the_tradeoff_figure_and_says_how_it_trained(tmp_path, capsys):
    from eqhelpers.__main__ import main

    out = tmp_path / "cli"
    assert main(["sweep", "--task", "gravity", "--budget", "tiny", "--betas", "0", "3",
                 "--seeds", "0", "--steps", "4", "--out", str(out), "--no-progress"]) == 0
    assert (out / "tradeoff.png").stat().st_size > 1000
    assert "transformer: trained as one stack of 2" in capsys.readouterr().out
    assert main(["sweep", "--budget", "tiny", "--max-stack", "0", "--out", str(out)]) == 2


def test_a_sweep_on_a_local_ray_instance_writes_the_same_points(tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is in the dev extra ('eqhelpers[cluster]')")
    cfg = {**FAST, "models": ("transformer", "mlp"), "betas": [0.0, 3.0], "seeds": (0,)}
    local = sweep(**cfg, out=tmp_path / "local")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = sweep(**cfg, out=tmp_path / "ray", ray="auto")
    finally:
        ray.shutdown()
    assert remote.computed == 4 and remote.provenance["ray"] == "auto"
    assert sum("Ray worker" in n for n in remote.provenance["groups_in_last_run"]) == 2
    for a, b in zip(local.points, remote.points):
        assert (a["model"], a["beta"], a["seed"]) == (b["model"], b["beta"], b["seed"])
        assert b["test_mse"] == pytest.approx(a["test_mse"], rel=1e-3)
        assert (tmp_path / "ray" / "points" / f"{a['model']}-beta{a['beta']:g}-seed0.json").exists()
