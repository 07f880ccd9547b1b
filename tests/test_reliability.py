"""What happens to results on disk (issue 28), by class: who owns an output directory, what is
validated before anything is recorded, keys that cannot collide, output that does not depend on
the terminal. Faults are injected here: a run holding the lock, an interrupted run's files, a
terminal that only speaks ASCII."""
import json
import os
import subprocess
import sys

import pytest

from eqhelpers.__main__ import main
from eqhelpers._util import LOCK, OutputError, claim_output, dir_lock
from eqhelpers.results import point_key

TRAIN = ["train", "--task", "gravity", "--model", "transformer", "--beta", "1", "--budget", "tiny",
         "--steps", "3", "--no-progress"]


def _tree(d):
    """Every file below ``d`` with its bytes (the lock file aside)."""
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file() and p.name != LOCK}


# ---------------------------------------------------------------- 1. who owns a directory
def test_a_finished_run_is_refused_then_replaced_only_when_asked(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    before = _tree(out)
    assert "metrics.json" in before and "best.pt" in before
    capsys.readouterr()
    assert main([*TRAIN, "--seed", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "finished train run" in err and "--overwrite" in err
    assert _tree(out) == before  # nothing written, nothing mixed
    with pytest.warns(UserWarning, match="moved to replaced-"):
        assert main([*TRAIN, "--seed", "1", "--out", str(out), "--overwrite"]) == 0
    (kept,) = [p for p in out.iterdir() if p.name.startswith("replaced-")]
    assert _tree(kept) == before  # the old run, whole, beside the new one
    new = json.loads((out / "metrics.json").read_text())
    assert new["seed"] == 1 and json.loads(before["metrics.json"])["seed"] == 0


def test_an_interrupted_run_is_moved_aside_not_mixed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.pt").write_bytes(b"half a checkpoint")
    with pytest.warns(UserWarning, match="interrupted train run"):
        assert main([*TRAIN, "--out", str(out)]) == 0
    (kept,) = [p for p in out.iterdir() if p.name.startswith("interrupted-")]
    assert (kept / "best.pt").read_bytes() == b"half a checkpoint"
    assert (out / "best.pt").read_bytes() != b"half a checkpoint"
    assert (out / "metrics.json").exists()


def test_a_directory_being_written_is_refused_to_every_command(tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    with dir_lock(out, "a run in another process"):
        for cmd in (TRAIN,
                    ["sweep", "--budget", "tiny", "--betas", "0", "--seeds", "0", "--steps", "2",
                     "--no-progress"],
                    ["discover", "--task", "hidden_axis", "--budget", "tiny", "--steps", "2",
                     "--no-progress"]):
            assert main([*cmd, "--out", str(out)]) == 2
            assert "a run in another process" in capsys.readouterr().err
    assert _tree(out) == {}
    # the lock went with the holder: the directory is free again
    with claim_output(out, "train"):
        pass


def test_a_directory_of_another_command_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    before = _tree(out)
    assert main(["sweep", "--budget", "tiny", "--betas", "0", "--seeds", "0", "--steps", "2",
                 "--no-progress", "--out", str(out)]) == 2
    assert "finished train run" in capsys.readouterr().err
    assert _tree(out) == before
    with pytest.raises(OutputError, match="finished train run"):
        with claim_output(out, "discover", overwrite=True):
            pass


def test_default_output_is_a_fresh_directory_per_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(TRAIN) == 0
    assert main(TRAIN) == 0  # the same second, the same name: still its own directory
    runs = sorted((tmp_path / "runs" / "train").iterdir())
    assert len(runs) == 2 and all((r / "metrics.json").exists() for r in runs)
    assert all("gravity-transformer-remul" in r.name for r in runs)


# ---------------------------------------------------------------- 3. validate before recording
@pytest.mark.parametrize("bad", [["--mode", "sideways"], ["--group", "o2"]])
def test_a_refused_sweep_records_nothing(tmp_path, bad):
    out = tmp_path / "sweep"
    cmd = ["sweep", "--budget", "tiny", "--betas", "0", "1", "--seeds", "0", "--steps", "2",
           "--no-progress", "--out", str(out)]
    try:
        code = main([*cmd, *bad])
    except SystemExit as exc:  # argparse refused the choice before anything ran
        code = exc.code
    assert code == 2
    assert not out.exists() or _tree(out) == {}


def test_a_bad_setting_found_late_is_refused_before_recording(tmp_path):
    from eqhelpers.sweep import sweep

    out = tmp_path / "sweep"
    with pytest.raises(ValueError):
        sweep("gravity", betas=[0, 1], seeds=[0], budget="tiny", steps=2, mode="sideways",
              out=out, progress=False)
    assert not (out / "sweep_config.json").exists() and not (out / "points").exists()


# ---------------------------------------------------------------- 4. keys that cannot collide
def test_point_keys_never_collide_and_keep_their_short_form():
    assert point_key("transformer", 0.1, 0) != point_key("transformer", 0.1000001, 0)
    assert point_key("transformer", -0.0, 0) == point_key("transformer", 0.0, 0)
    # the shipped sweeps' files keep their names
    assert point_key("transformer", 10.0, 2) == "transformer-beta10-seed2"
    assert point_key("transformer", 0.03, 0) == "transformer-beta0.03-seed0"
    betas = [0.1, 0.1000001, 0.10000001, 1e-7, 3.0, 2.9999999]
    assert len({point_key("m", b, 0) for b in betas}) == len(betas)


def test_minus_zero_is_one_point(tmp_path):
    from eqhelpers.sweep import sweep

    res = sweep("gravity", betas=[-0.0], seeds=[0], budget="tiny", steps=2, out=tmp_path / "s",
                progress=False)
    assert [p.name for p in (tmp_path / "s" / "points").iterdir()] == ["transformer-beta0-seed0.json"]
    assert res.computed == 1


# ---------------------------------------------------------------- 8. the environment
def test_an_ascii_terminal_neither_fails_a_run_nor_loses_its_results(tmp_path):
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "eqhelpers", *TRAIN, "--out", str(out)], env=env,
                         capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
    assert json.loads((out / "metrics.json").read_text())["beta"] == 1.0
    assert b"\\u03b2" in res.stdout or b"\\u2032" in res.stdout  # β, ′ escaped, not a crash
    bench = tmp_path / "bench"
    res = subprocess.run([sys.executable, "-m", "eqhelpers", "bench", "--budget", "tiny", "--models",
                          "mlp", "--batch-sizes", "4", "--min-time", "0.01", "--repeats", "1",
                          "--no-progress", "--out", str(bench)], env=env, capture_output=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
    assert json.loads((bench / "bench.json").read_text())["rows"]


# ---------------------------------------------------------------- 6. what is read back
@pytest.mark.parametrize("other", [{"centre": False}, {"head": "absolute"}])
def test_a_checkpoint_loads_only_into_the_configuration_it_was_trained_with(tmp_path, other):
    from eqhelpers.data import load_task
    from eqhelpers.models import make_model
    from eqhelpers.results import checkpoint_options, load_checkpoint, read_checkpoint, save_checkpoint

    task = load_task("gravity", "tiny")
    net = make_model("transformer", task.spec, width=16, layers=1)  # centred, residual
    path = save_checkpoint(net, tmp_path / "c.pt", task="gravity")
    wrong = make_model("transformer", task.spec, width=16, layers=1, **other)
    key = next(iter(other))
    with pytest.raises(ValueError, match=f"another model configuration.*'{key}'"):
        load_checkpoint(wrong, path)
    right = make_model("transformer", task.spec, width=16, layers=1,
                       **checkpoint_options(read_checkpoint(path)))
    load_checkpoint(right, path, task="gravity")


def test_a_cache_path_with_a_tilde_is_expanded(monkeypatch, tmp_path):
    from eqhelpers._util import cache_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("EQHELPERS_CACHE", "~/x")
    assert cache_dir() == tmp_path / "x"


# ---------------------------------------------------------------- 2. save as you go
def test_a_sweep_stopped_half_way_keeps_its_finished_points_and_resumes(tmp_path, monkeypatch):
    import eqhelpers.train as train_mod
    from eqhelpers.sweep import sweep

    real, calls = train_mod.train, []

    def stop_on_third(*args, **kwargs):  # Ctrl-C while the third point trains
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train", stop_on_third)
    out = tmp_path / "s"
    opts = dict(betas=[0, 1, 10], seeds=[0], budget="tiny", steps=3, stack=False, progress=False,
                out=out)
    with pytest.raises(KeyboardInterrupt):
        sweep("gravity", **opts)
    saved = sorted(p.name for p in (out / "points").iterdir())
    assert saved == ["transformer-beta0-seed0.json", "transformer-beta1-seed0.json"]
    monkeypatch.setattr(train_mod, "train", real)
    res = sweep("gravity", **opts)
    assert res.computed == 1 and len(res.points) == 3
    assert json.loads((out / "points" / saved[0]).read_text())["beta"] == 0.0


# ---------------------------------------------------------------- 7. concurrent readers
def test_racing_readers_of_a_corrupt_file_neither_fail_nor_move_a_fresh_one(tmp_path):
    import warnings

    from eqhelpers._util import quarantine

    bad = tmp_path / "task.pt"
    bad.write_bytes(b"corrupt")
    seen = bad.stat()
    # the first reader moves it aside ...
    with pytest.warns(UserWarning, match="is corrupt"):
        assert quarantine(bad, "data cache", ValueError("x"), "regenerating", seen=seen)
    # ... a second one, which read the same corrupt file, finds it gone: no FileNotFoundError
    assert quarantine(bad, "data cache", ValueError("x"), "regenerating", seen=seen) is None
    # a slow reader whose corrupt copy was since replaced by a good one leaves the good one
    bad.write_bytes(b"a freshly regenerated, good file")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert quarantine(bad, "data cache", ValueError("x"), "regenerating", seen=seen) is None
    assert bad.read_bytes() == b"a freshly regenerated, good file"
    assert len(list(tmp_path.glob("task.pt.corrupt-*"))) == 1


def test_three_processes_loading_one_corrupt_cache_all_succeed(tmp_path):
    env = {**os.environ, "EQHELPERS_CACHE": str(tmp_path), "OMP_NUM_THREADS": "1"}
    code = "from eqhelpers.data import load_task; load_task('gravity', 'tiny'); print('ok')"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    (cache,) = [p for p in tmp_path.rglob("*.pt")]
    good = cache.read_bytes()
    cache.write_bytes(good[: len(good) // 2])  # a torn file
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    assert all(r[2] == 0 and "ok" in r[0] for r in results), results
    assert cache.exists() and len(list(tmp_path.rglob("*.corrupt-*"))) >= 1
