"""What happens to results on disk (issue 28), by class: who owns an output directory, what is
validated before anything is recorded, keys that cannot collide, output that does not depend on
the terminal. Faults are injected here: a run holding the lock, an interrupted run's files, a
terminal that only speaks ASCII."""
import json
import os
import re
import subprocess
import sys

import pytest

from eqhelpers.__main__ import main
from eqhelpers._util import LOCK, OutputError, claim_output, dir_lock, file_lock
from eqhelpers.results import point_key

TRAIN = ["train", "--task", "gravity", "--model", "transformer", "--beta", "1", "--budget", "tiny",
         "--steps", "3", "--no-progress"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EQHELPERS_CACHE", str(tmp_path / "cache"))


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


# ---------------------------------------------------------------- 4. a subset re-run keeps the rest
def test_a_sweep_rerun_with_part_of_its_grid_keeps_every_finished_point(tmp_path):
    from eqhelpers.results import load_sweep
    from eqhelpers.sweep import sweep

    out = tmp_path / "s"
    opts = dict(seeds=[0], budget="tiny", steps=3, progress=False, out=out)
    sweep("gravity", betas=[0, 1, 10], **opts)
    res = sweep("gravity", betas=[1], **opts)
    assert res.computed == 0
    kept = load_sweep(out)
    assert sorted(p["beta"] for p in kept.points) == [0.0, 1.0, 10.0]
    assert kept.config["betas"] == [0.0, 1.0, 10.0]
    # a new β adds to the grid; the file lists what is finished and names what is not
    (out / "points" / f"{point_key('transformer', 10.0, 0)}.json").unlink()
    res = sweep("gravity", betas=[3], **opts)
    assert sorted(p["beta"] for p in load_sweep(out).points) == [0.0, 1.0, 3.0]
    assert res.provenance["points_not_finished"] == [point_key("transformer", 10.0, 0)]


# ---------------------------------------------------------------- 5. limits before work
def test_a_task_that_cannot_fit_in_memory_is_refused_before_any_work(tmp_path, monkeypatch):
    import eqhelpers.tasks.nbody as nbody
    from eqhelpers import _util
    from eqhelpers.data import TASKS, load_task, task_memory

    simulated = []
    monkeypatch.setattr(TASKS["gravity"], "simulate",
                        lambda inp: simulated.append(1) or nbody._sim_gravity(inp))
    with pytest.raises(MemoryError, match=r"n_train=1000000000.*needs about .* TB.*available"):
        load_task("gravity", "tiny", n_train=10**9)
    assert simulated == []  # refused before any system was simulated
    assert not list(tmp_path.glob("cache/gravity-*"))
    # the estimate scales with the sizes and is checked against what this process may allocate
    assert task_memory("gravity", 2000, 10, 10) > 1.9 * task_memory("gravity", 1000, 10, 10)
    monkeypatch.setattr(_util, "available_memory", lambda: task_memory("gravity", 64, 64, 64) - 1)
    with pytest.raises(MemoryError, match="lower the sizes"):
        load_task("gravity", "tiny", cache=False)


def test_available_memory_honours_the_address_space_limit():
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30)); "
            "from eqhelpers._util import available_memory; print(available_memory())")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert int(res.stdout) <= 3 * 2**30


@pytest.mark.parametrize("args, match", [
    (["--min-time", "1e9"], "min_time must be at most 60"),
    (["--repeats", "1000000"], "repeats must be at most 100"),
    (["--min-time", "60", "--repeats", "100", "--batch-sizes", "1", "2", "3"],
     r"would take at least 45\.0 h"),
])
def test_a_bench_without_a_natural_bound_is_refused_with_its_estimate(tmp_path, capsys, args,
                                                                        match):
    assert main(["bench", "--budget", "tiny", "--models", "mlp", "transformer", "egnn",
                 "--no-progress", *args]) == 2
    assert re.search(match, capsys.readouterr().err)


# ---------------------------------------------------------------- 6. what is read back
def _flip_in_largest_record(path, name=None):
    """Flip one bit inside the largest stored record of a zip file (or the one ``name``d):
    torch's tensor data and numpy's arrays are stored uncompressed, a damaged sector."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = (z.getinfo(name) if name else max(z.infolist(), key=lambda i: i.file_size))
    raw = bytearray(path.read_bytes())
    name_len, extra_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28],
                                         "little"), \
        int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.file_size // 2] ^= 0x04
    path.write_bytes(bytes(raw))


def test_a_flipped_bit_in_a_cached_task_is_caught_and_the_data_regenerated(tmp_path):
    import torch

    from eqhelpers.data import load_task

    first = load_task("gravity", "tiny")
    (cache,) = (tmp_path / "cache").glob("gravity-*.pt")
    _flip_in_largest_record(cache)
    with pytest.warns(UserWarning, match="checksum does not match"):
        again = load_task("gravity", "tiny")
    assert len(list((tmp_path / "cache").glob("gravity-*.pt.corrupt-*"))) == 1  # kept
    for split in ("train", "val", "test", "ood", "e3_generalization"):
        for k in first[split].keys():
            assert torch.equal(first[split][k], again[split][k])


def test_a_short_generalisation_split_is_quarantined_by_name(tmp_path):
    import torch

    from eqhelpers.data import load_task

    first = load_task("gravity", "tiny")
    (cache,) = (tmp_path / "cache").glob("gravity-*.pt")
    blob = torch.load(cache, weights_only=True)
    blob["splits"]["e3_generalization"] = {k: v[:3] for k, v in
                                           blob["splits"]["e3_generalization"].items()}
    blob.pop("sha256")  # as if written by a tool that does not know the checksum
    torch.save(blob, cache)
    with pytest.warns(UserWarning, match=r"gravity-.*\.pt is corrupt .*no checksum"):
        again = load_task("gravity", "tiny")
    assert len(again["e3_generalization"]) == len(first["e3_generalization"])
    # and without the checksum check, the size itself would be refused
    from eqhelpers.data import _read_cache
    blob["sha256"] = __import__("eqhelpers._util", fromlist=["digest"]).digest(blob["splits"])
    torch.save(blob, cache)
    with pytest.warns(UserWarning, match="'e3_generalization' holds 3 samples"):
        assert _read_cache(cache, blob["config"], None) is None


@pytest.mark.parametrize("damage", ["short", "mis-shaped", "flipped"])
def test_a_damaged_trajectory_is_quarantined_by_name_and_regenerated(tmp_path, damage):
    import numpy as np

    from eqhelpers.molecules import load_trajectory, trajectory_config, trajectory_path

    pytest.importorskip("rdkit")
    kw = dict(n_frames=12, equilibrate=5)
    first = load_trajectory("ethanol", **kw)
    path = trajectory_path(trajectory_config("ethanol", 12, 0, equilibrate=5))
    if damage == "flipped":
        _flip_in_largest_record(path, "pos.npy")
        match = "Bad CRC-32 for file 'pos.npy'|checksum does not match"  # zip's or ours
    else:
        z = dict(np.load(path))
        if damage == "short":
            z.update({k: z[k][:5] for k in ("pos", "vel", "forces", "energy")})
            match = r"pos has shape \(5, 9, 3\), not \(12, 9, 3\)"
        else:
            z["forces"] = z["forces"][:, :5]
            match = r"forces has shape \(12, 5, 3\)"
        meta = json.loads(str(z["meta"]))
        from eqhelpers._util import digest  # a consistent checksum: the shapes must catch it
        meta["sha256"] = digest({k: z[k] for k in ("numbers", "masses", "pos", "vel", "forces",
                                                   "energy")})
        z["meta"] = np.array(json.dumps(meta))
        with open(path, "wb") as fh:
            np.savez(fh, **z)
    with pytest.warns(UserWarning, match=match):
        again = load_trajectory("ethanol", **kw)
    assert np.array_equal(again.pos, first.pos) and np.array_equal(again.forces, first.forces)
    assert len(list(path.parent.glob(path.name + ".corrupt-*"))) == 1


def test_a_changed_checkpoint_is_refused(tmp_path):
    import torch

    from eqhelpers.data import load_task
    from eqhelpers.models import make_model
    from eqhelpers.results import load_checkpoint, read_checkpoint, save_checkpoint

    task = load_task("gravity", "tiny")
    net = make_model("transformer", task.spec, width=16, layers=1)
    path = save_checkpoint(net, tmp_path / "c.pt")
    blob = torch.load(path, weights_only=True)
    next(iter(blob["state_dict"].values())).view(-1)[0] += 1e-3  # finite, plausible, wrong
    torch.save(blob, path)
    with pytest.raises(ValueError, match="checksum does not match"):
        read_checkpoint(path)
    with pytest.raises(ValueError, match="checksum does not match"):
        load_checkpoint(net, path, blob=blob)


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.replace('"test_mse": ', '"test_mse": NaN, "was": ', 1), "bare NaN"),
    (lambda t: t.replace('"E_prime": ', '"E_prime": -Infinity, "was": ', 1), "bare -Infinity"),
    (lambda t: json.dumps({**{k: v for k, v in json.loads(t).items() if k != "sha256"},
                           "points": [{**p, "test_mse": "NaN"} for p in json.loads(t)["points"]]}),
     r"points\[0\] \(transformer, β/α = 0.0\) holds values that are not finite"),
    (lambda t: json.dumps({**{k: v for k, v in json.loads(t).items() if k != "sha256"},
                           "baselines": {"zero": {"test_mse": "Infinity"}}}),
     "baselines.*not a finite number"),
    (lambda t: t.replace('"beta": 1.0', '"beta": 2.0', 1), "checksum does not match"),
])
def test_a_changed_or_non_finite_sweep_file_is_refused(tmp_path, edit, match):
    from eqhelpers.results import load_sweep
    from eqhelpers.sweep import sweep

    out = tmp_path / "s"
    sweep("gravity", betas=[0, 1], seeds=[0], budget="tiny", steps=3, progress=False, out=out)
    f = out / "sweep.json"
    f.write_text(edit(f.read_text()))
    with pytest.raises(ValueError, match=match):
        load_sweep(out)


def test_an_edited_sweep_point_is_quarantined_and_recomputed(tmp_path):
    from eqhelpers.sweep import sweep

    out = tmp_path / "s"
    opts = dict(betas=[1], seeds=[0], budget="tiny", steps=3, progress=False, out=out)
    first = sweep("gravity", **opts).points[0]["test_mse"]
    f = out / "points" / f"{point_key('transformer', 1.0, 0)}.json"
    p = json.loads(f.read_text())
    p["test_mse"] = 1e-9  # a well-formed, better-looking number
    f.write_text(json.dumps(p))
    with pytest.warns(UserWarning, match="checksum does not match"):
        res = sweep("gravity", **opts)
    assert res.computed == 1 and res.points[0]["test_mse"] == pytest.approx(first, rel=1e-5)


def test_json_results_are_strict_and_carry_their_checksum(tmp_path):
    from eqhelpers._util import atomic_json, read_json

    path = atomic_json({"a": float("nan"), "b": [1.5, float("inf")], "c": "x"}, tmp_path / "r.json")
    text = path.read_text()
    assert "NaN" not in text.replace('"NaN"', "") and '"sha256"' in text  # no bare NaN
    json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert read_json(path) == {"a": "NaN", "b": [1.5, "Infinity"], "c": "x"}
    path.write_text(text.replace('"x"', '"y"'))
    with pytest.raises(ValueError, match="checksum does not match"):
        read_json(path)


# ---------------------------------------------------------------- signals at chosen points
KILL_AT = """
import os, signal, sys
from pathlib import Path
import eqhelpers._util as u
real = u.atomic_write
def atomic_write(path, write):
    if Path(path).name == os.environ["KILL_AT"]:
        def half(tmp):  # the file half written, then the process killed
            write(tmp)
            data = Path(tmp).read_bytes()
            Path(tmp).write_bytes(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, half)
    return real(path, write)
u.atomic_write = atomic_write
from eqhelpers.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("at", ["best.pt", "metrics.json"])
def test_a_run_killed_while_writing_leaves_no_half_file_and_nothing_mixed(tmp_path, at):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KILL_AT": at}
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-c", KILL_AT, *TRAIN, "--out", str(out)], env=env,
                         capture_output=True, timeout=300)
    assert res.returncode == -9  # killed, at the chosen point
    assert not (out / at).exists()  # never a half-written file under its real name
    assert not (out / "metrics.json").exists()
    left = {p.name for p in out.iterdir()}
    env["KILL_AT"] = "none"
    res = subprocess.run([sys.executable, "-c", KILL_AT, *TRAIN, "--out", str(out)], env=env,
                         capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
    assert b"interrupted train run" in res.stderr
    (aside,) = [p for p in out.iterdir() if p.name.startswith("interrupted-")]
    assert {p.name for p in aside.iterdir()} == left - {LOCK}  # the killed run's files, whole
    assert json.loads((out / "metrics.json").read_text())["beta"] == 1.0
    assert not list(out.glob(".*.tmp"))  # the killed write's temp file went with it


def test_a_cache_write_killed_half_way_leaves_no_cache_and_the_next_load_succeeds(tmp_path):
    env = {**os.environ, "EQHELPERS_CACHE": str(tmp_path), "OMP_NUM_THREADS": "1"}
    code = ("import os, signal, eqhelpers._util as u\n"
            "real = u.atomic_write\n"
            "def w(path, write):\n"
            "    return real(path, lambda tmp: (write(tmp), os.kill(os.getpid(), signal.SIGKILL)))\n"
            "u.atomic_write = w\n"
            "from eqhelpers.data import load_task; load_task('gravity', 'tiny')\n")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300)
    assert res.returncode == -9
    assert not list(tmp_path.glob("gravity-*.pt"))  # only a temp file, never the cache's name
    ok = subprocess.run([sys.executable, "-c", "from eqhelpers.data import load_task; "
                         "load_task('gravity', 'tiny'); print('ok')"], env=env,
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and "ok" in ok.stdout and "corrupt" not in ok.stderr
    assert len(list(tmp_path.glob("gravity-*.pt"))) == 1


# ---------------------------------------------------------------- 8. the environment
def test_a_file_size_limit_is_a_clear_error_and_loses_nothing(tmp_path):
    import resource

    env = {**os.environ, "EQHELPERS_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "eqhelpers", *TRAIN, "--out", str(out)], env=env,
                   check=True, capture_output=True, timeout=300)
    before = _tree(out)
    size = len(before["best.pt"])

    def limit():  # ulimit -f: smaller than a checkpoint, larger than the cache's small files
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    res = subprocess.run([sys.executable, "-m", "eqhelpers", *TRAIN, "--seed", "1", "--out",
                          str(out), "--overwrite"], env=env, capture_output=True, text=True,
                         timeout=300, preexec_fn=limit)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "enforce fail" not in res.stderr
    assert "file-size limit" in res.stderr and "best.pt" in res.stderr
    (kept,) = [p for p in out.iterdir() if p.name.startswith("replaced-")]
    assert _tree(kept) == before  # the finished run, whole
    assert not (out / "metrics.json").exists() and not (out / "best.pt").exists()


def test_a_full_disk_is_named(tmp_path):
    import errno

    from eqhelpers._util import atomic_write

    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    (tmp_path / "r.json").write_text("the earlier result")
    with pytest.raises(OutputError, match=r"r\.json: the disk is full\. Nothing already saved"):
        atomic_write(tmp_path / "r.json", full)
    assert (tmp_path / "r.json").read_text() == "the earlier result"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


@pytest.mark.parametrize("device", ["meta", "mps", "xla"])
def test_a_device_the_package_cannot_use_is_refused_before_any_work(tmp_path, capsys, device):
    assert main([*TRAIN, "--device", device, "--out", str(tmp_path / "run")]) == 2
    assert f"device {device!r}" in capsys.readouterr().err
    assert not list(tmp_path.glob("cache/*"))  # no data generated


# ---------------------------------------------------------------- 9. well-formed but absurd
@pytest.mark.parametrize("std, dtype, match", [
    (1e300, "float32", "beyond the range of torch.float32"),
    (1e39, "float32", "beyond the range of torch.float32"),
    (1e300, "float64", "erases their geometry"),
    (1e7, "float32", "erases their geometry"),  # float32 spacing at 1e7 is about 1
])
def test_an_absurd_translation_scale_is_refused_naming_it(tmp_path, std, dtype, match):
    import torch

    from eqhelpers.data import load_task

    named = re.escape(f"ood_translation_std={std:g}")
    with pytest.raises(ValueError, match=f"the ood split's 'pos' reaches .*{match}.*{named}|"
                                         f"the ood split's 'pos' reaches .*{named}.*{match}"):
        load_task("gravity", "tiny", ood_translation_std=std, dtype=getattr(torch, dtype))
    assert not list(tmp_path.glob("cache/gravity-*"))  # nothing cached
    load_task("gravity", "tiny", ood_translation_std=200.0)  # GATr's shift: fine in float32


def test_a_score_range_beyond_one_turn_is_refused_before_training(tmp_path):
    from eqhelpers.augment import symmetry_scores
    from eqhelpers.discover import discover

    with pytest.raises(ValueError, match=r"score_range must be at most 2π.*got 1e\+30"):
        discover("hidden_axis", budget="tiny", score_range=1e30, progress=False)
    with pytest.raises(ValueError, match="z_range must be at most 2π"):
        symmetry_scores(None, None, None, z_range=7.0)


def test_rotation_angle_refuses_what_is_not_a_rotation():
    import torch

    from eqhelpers.groups import SO3, rotation_angle

    R = SO3().sample(5, generator=torch.Generator().manual_seed(0), dtype=torch.float64).rot
    assert bool(((rotation_angle(R) >= 0) & (rotation_angle(R) <= torch.pi)).all())
    with pytest.raises(ValueError, match=r"1 reflection\(s\) \(det −1\)"):
        rotation_angle(torch.cat([R, -R[:1]]))
    with pytest.raises(ValueError, match="not orthogonal"):
        rotation_angle(2 * R)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int64"])
def test_data_in_a_dtype_that_cannot_hold_the_measurement_is_refused(dtype):
    import torch

    from eqhelpers.data import load_task

    dt = getattr(torch, dtype)
    with pytest.raises(ValueError, match=f"dtype is torch.{dtype}: data must be float32 or "
                                         f"float64"):
        load_task("gravity", "tiny", dtype=dt)
    task = load_task("gravity", "tiny")
    with pytest.raises(ValueError, match=f"torch.{dtype}"):
        task["test"].to(dtype=dt)
    from eqhelpers.fields import Sample

    if dt.is_floating_point:
        with pytest.raises(ValueError, match=f"field 'pos' is torch.{dtype}"):
            Sample({"pos": task["test"]["pos"].to(dt)}, task.spec.spec)


def test_a_file_lock_waits_its_time_then_refuses_naming_the_holder(tmp_path):
    """file_lock(wait=…) is for a lock held only while a file is read, merged and rewritten:
    it waits for the holder to let go, up to its wait, and is then refused like dir_lock."""
    import threading
    import time

    target = tmp_path / "study.json"
    held = threading.Event()

    def holder(seconds):
        with file_lock(target, "the other writer"):
            held.set()
            time.sleep(seconds)

    t = threading.Thread(target=holder, args=(0.3,))
    t.start()
    held.wait()
    t0 = time.monotonic()
    with file_lock(target, "this writer", wait=5.0):  # released after 0.3 s: it gets it
        waited = time.monotonic() - t0
    t.join()
    assert 0.1 < waited < 5.0
    held.clear()
    t = threading.Thread(target=holder, args=(1.0,))
    t.start()
    held.wait()
    with pytest.raises(OutputError, match="another run \\(the other writer"):
        with file_lock(target, "this writer", wait=0.1):
            pass
    t.join()
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="wait must be"):
            with file_lock(target, "this writer", wait=bad):
                pass
    assert not target.exists()  # a lock never creates the file it guards


def test_a_bad_wait_is_refused_where_there_is_no_flock_too(tmp_path, monkeypatch):
    """Without ``fcntl`` (Windows) the lock runs unguarded with a warning, but a bad ``wait`` is
    still a caller's error, refused before anything else."""
    import builtins

    real_import = builtins.__import__

    def no_fcntl(name, *args, **kwargs):
        if name == "fcntl":
            raise ImportError("no fcntl here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fcntl)
    target = tmp_path / "results.json"
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="wait must be"):
            with file_lock(target, "this writer", wait=bad):
                pass
    with pytest.warns(UserWarning, match="no file locking on this platform"):
        with file_lock(target, "this writer", wait=1.0):
            pass
    assert not (tmp_path / ".results.json.lock").exists()  # unguarded: no lock file either
