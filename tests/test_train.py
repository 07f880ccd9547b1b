import json

import pytest
import torch

from eqhelpers import data
from eqhelpers.__main__ import main
from eqhelpers.budget import get_budget
from eqhelpers.equivariance import REMUL
from eqhelpers.models import make_model
from eqhelpers.train import _schedule, evaluate, load_checkpoint, mse, train


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EQHELPERS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EQHELPERS_BUDGET", raising=False)


@pytest.fixture()
def task():
    return data.load_task("gravity", "tiny", seed=0)


def fresh(task, name="transformer", seed=0):
    torch.manual_seed(seed)
    return make_model(name, task.spec, width=32, layers=2)


def test_training_reduces_the_validation_loss(task):
    model = fresh(task)
    before = mse(model, task["val"])
    hist = train(model, task, budget="tiny", steps=120, progress=False)
    assert hist.best_val_mse < 0.2 * before
    assert mse(model, task["val"]) == pytest.approx(hist.best_val_mse, rel=1e-5)  # best weights kept
    steps, losses = hist.series("task")
    assert steps[-1] == 120 and losses[-1] < losses[0]


@pytest.mark.slow
@pytest.mark.parametrize("name, factor", [("gravity_planar", 0.2), ("gravity", 0.7)])
def test_remul_reduces_the_equivariance_error(name, factor):
    # planar: the training frame never shows a rotation, so REMUL's term is the only teacher of the
    # symmetry; GATr's gravity already shows every orientation, REMUL still halves E′ (tiny budget)
    task = data.load_task(name, "tiny", seed=0)
    plain, remul = fresh(task), fresh(task)
    train(plain, task, budget="tiny", steps=200, progress=False)
    train(remul, task, REMUL(1.0, 30.0, task.group), budget="tiny", steps=200, progress=False)
    e_plain = evaluate(plain, task, "tiny")
    e_remul = evaluate(remul, task, "tiny")
    assert e_remul["E_prime"] < factor * e_plain["E_prime"]
    assert e_remul["E"] < factor * e_plain["E"]
    assert e_remul["ood_mse"] < e_plain["ood_mse"]


def test_same_seed_same_history(task):
    runs = []
    for _ in range(2):
        model = fresh(task, seed=3)
        hist = train(model, task, REMUL(1.0, 5.0, task.group), budget="tiny", steps=30, seed=7,
                     progress=False)
        runs.append(([{k: v for k, v in r.items() if k != "time"} for r in hist.records],
                     [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    other = fresh(task, seed=3)
    h = train(other, task, REMUL(1.0, 5.0, task.group), budget="tiny", steps=30, seed=8, progress=False)
    assert h.records[-1]["loss"] != runs[0][0][-1]["loss"]


def test_checkpoint_is_the_best_model_and_loads_weights_only(task, tmp_path):
    model = fresh(task)
    ckpt = tmp_path / "best.pt"
    hist = train(model, task, budget="tiny", steps=40, eval_every=10, checkpoint=ckpt, progress=False)
    blob = torch.load(ckpt, weights_only=True)
    assert blob["step"] == hist.best_step and blob["val_mse"] == pytest.approx(hist.best_val_mse)
    other = fresh(task, seed=1)
    load_checkpoint(other, ckpt, map_location="cpu")
    assert mse(other, task["val"]) == pytest.approx(hist.best_val_mse, rel=1e-5)
    ckpt.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="best.pt.*unreadable"):
        load_checkpoint(other, ckpt)


@pytest.mark.parametrize("steps", [1, 2, 3, 5, 20, 21])
def test_any_step_count_trains(task, steps):
    hist = train(fresh(task), task, budget="tiny", steps=steps, progress=False)
    assert hist.steps == steps and hist.records[-1]["step"] == steps


def test_train_rejects_bad_settings(task):
    model = fresh(task)
    with pytest.raises(ValueError, match="steps"):
        train(model, task, budget="tiny", steps=0, progress=False)
    with pytest.raises(ValueError, match="lr"):
        train(model, task, budget="tiny", lr=-1.0, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            train(model, task, budget="tiny", device="cuda", progress=False)


def test_budget_knob_default_env_and_explicit(monkeypatch):
    assert get_budget(device="cpu").name == "cpu"
    assert get_budget(device="cuda").name == "gpu"
    monkeypatch.setenv("EQHELPERS_BUDGET", "tiny")
    assert get_budget(device="cpu").name == "tiny"
    assert get_budget("paper").name == "paper"  # an explicit choice beats the environment
    monkeypatch.setenv("EQHELPERS_BUDGET", "enormous")
    with pytest.raises(ValueError, match="EQHELPERS_BUDGET"):
        get_budget()
    sizes = [get_budget(n).steps for n in ("tiny", "cpu", "gpu", "paper")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4


def test_paper_budget_is_gatrs_protocol_and_its_schedule_decays_to_a_hundredth():
    b = get_budget("paper")
    assert (b.n_train, b.n_val, b.n_test, b.steps, b.batch_size, b.lr) == (
        100000, 5000, 5000, 50000, 64, 3e-4)
    assert b.model_size("transformer") == {"width": 384, "layers": 10, "heads": 8}
    assert b.model_size("egnn") == {"width": 384, "layers": 10}  # heads only for the Transformer
    assert b.grad_clip == 10.0 and b.lr_schedule == "exponential" and b.lr_decay == 0.01
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
    sched = _schedule(opt, 3e-4, 50000, "exponential", 0.01)
    rates = {}
    for step in range(1, 50001):
        opt.step()
        sched.step()
        if step in (999, 1000, 25000, 50000):
            rates[step] = opt.param_groups[0]["lr"]
    assert rates[999] == pytest.approx(3e-4)  # stepped every 1000 steps, as GATr's
    assert rates[1000] == pytest.approx(3e-4 * 0.01 ** (1 / 50))
    assert rates[25000] == pytest.approx(3e-5)  # halfway: 3e-4 · 0.01^(1/2)
    assert rates[50000] == pytest.approx(3e-6)
    with pytest.raises(ValueError, match="lr_schedule"):
        get_budget("tiny").scaled(lr_schedule="cosine")


def test_train_uses_the_budgets_clip_and_schedule(task):
    model = fresh(task)
    b = get_budget("tiny").scaled(grad_clip=10.0, lr_schedule="exponential")
    hist = train(model, task, budget=b, steps=20, eval_every=10, progress=False)
    assert hist.config["grad_clip"] == 10.0 and hist.config["lr_schedule"] == "exponential"
    # the rate each logged step used: decayed by 0.01^(k/K) after k of K = 20 updates
    assert hist.records[-1]["lr"] == pytest.approx(b.lr * 0.01 ** (19 / 20))
    assert hist.records[0]["lr"] == pytest.approx(b.lr * 0.01 ** (9 / 20))


def test_objective_groups(task):
    from eqhelpers.train import objective_group

    assert objective_group(task, "task") is task.group
    assert objective_group(task, "e3").name == "E(3) × S_4"
    assert objective_group(task, "so3").name == "SO(3)"
    with pytest.raises(ValueError, match="group must be one of"):
        objective_group(task, "o2")


def test_cli_train_writes_metrics_table_and_figure(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--task", "gravity", "--model", "transformer", "--beta", "10",
                 "--budget", "tiny", "--out", str(out), "--no-progress"])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("test_mse", "ood_mse", "e3_generalization_mse", "object_generalization_mse",
                "E", "E_prime", "E_prime_mse", "E_prime_rel", "centre", "head", "steps_per_s",
                "wall_seconds", "device", "config", "version", "command"):
        assert key in m, key
    assert m["beta"] == 10.0 and m["config"]["steps"] == get_budget("tiny").steps
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "history.json").read_text())["records"]
    text = capsys.readouterr().out
    assert "| transformer | remul |" in text and "rotated+translated MSE" in text


def test_cli_reports_bad_input_clearly(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--beta", "-1", "--budget", "tiny"])
    assert exc.value.code == 2 and "must be >= 0" in capsys.readouterr().err
    code = main(["train", "--objective", "remul", "--alpha", "0", "--beta", "0", "--budget", "tiny",
                 "--out", str(tmp_path / "x"), "--no-progress"])
    assert code == 2 and "both be zero" in capsys.readouterr().err


def test_cli_bench_measures_every_model(tmp_path, capsys):
    code = main(["bench", "--budget", "tiny", "--models", "transformer", "egnn", "--batch-sizes", "8",
                 "--min-time", "0.05", "--repeats", "1", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    assert [r["model"] for r in result["rows"]] == ["transformer", "egnn"]
    for r in result["rows"]:
        assert r["infer_samples_s"] > 0 and r["train_steps_s"] > 0 and r["remul_cost"] > 0
    assert "| transformer | 8 |" in (tmp_path / "bench.md").read_text()
    assert "device cpu" in capsys.readouterr().out or torch.cuda.is_available()
