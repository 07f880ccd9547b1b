"""The training engine: one model is the case K = 1 of the stacked loop, a stacked member trains
as it would alone, and the engine's Adam, clipping and schedule are torch's."""

import math

import pytest
import torch

from eqhelpers import data
from eqhelpers._util import make_generator
from eqhelpers.equivariance import REMUL, Augmentation
from eqhelpers.models import make_model
from eqhelpers.train import _lr_factors, _schedule, stack_reason, train, train_many


@pytest.fixture(scope="module")
def task():
    return data.load_task("gravity", "tiny", seed=0)


def fresh(task, seed, name="transformer", dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    return make_model(name, task.spec, width=16, layers=2, dtype=dtype, **kw)


def reference_run(model, task, objective, seed, steps, batch_size, lr, clip, eval_every):
    """What the engine must compute, written with torch's own Adam, clip_grad_norm_ and
    scheduler: each step's loss and the final weights (no best-model selection)."""
    dtype = next(model.parameters()).dtype
    train_set = task["train"].to(None, dtype)
    n = len(train_set)
    gen, ggen = make_generator(seed), make_generator(seed + 7919)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = _schedule(opt, lr, steps, "onecycle", 0.01)
    losses = []
    for step in range(steps):
        t = step % eval_every
        if t == 0:
            idx = torch.randint(n, (eval_every, batch_size), generator=gen)
            g = objective.draw(eval_every * batch_size, ggen, "cpu", dtype)
        gt = None if g is None else g.index(slice(t * batch_size, (t + 1) * batch_size))
        batch = train_set.index(idx[t])
        loss, _ = objective.member_losses(model, batch, gt, 1, objective.weights())
        opt.zero_grad()
        loss.sum().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("beta", [0.0, 10.0])
def test_one_model_trains_as_torch_would(task, beta):
    steps, bs, lr, clip, every = 12, 16, 3e-3, 0.05, 4  # a small clip: clipping is active
    obj = REMUL(1.0, beta, task.group if beta else None)
    model = fresh(task, 0)
    hist = train(model, task, obj, "tiny", seed=3, steps=steps, batch_size=bs, lr=lr,
                 grad_clip=clip, eval_every=1, progress=False, device="cpu")
    got = [r["loss"] for r in hist.records]  # every step logged: each step's own loss
    assert len(got) == steps
    assert got == pytest.approx(reference_run(fresh(task, 0), task, obj, 3, steps, bs, lr, clip,
                                              1), rel=1e-9, abs=1e-12)
    # logged every `every` steps (the draws of an interval come at once): the interval's mean
    ref = fresh(task, 0)
    ref_losses = reference_run(ref, task, obj, 3, steps, bs, lr, clip, every)
    model = fresh(task, 0)
    hist = train(model, task, obj, "tiny", seed=3, steps=steps, batch_size=bs, lr=lr,
                 grad_clip=clip, eval_every=every, progress=False, device="cpu")
    means = [sum(ref_losses[i:i + every]) / every for i in range(0, steps, every)]
    assert [r["loss"] for r in hist.records] == pytest.approx(means, rel=1e-9)
    # and the final weights are those of the best logged step (here, with falling val, the last)
    if hist.best_step == steps:
        for a, b in zip(ref.parameters(), model.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_stacked_members_train_as_they_would_alone(task):
    steps, every = 10, 5
    members = [(0, 0.0), (1, 10.0), (2, 3.0)]  # (seed, β): plain and REMUL in one stack
    alone = []
    for seed, beta in members:
        m = fresh(task, seed)
        h = train(m, task, REMUL(1.0, beta, task.group if beta else None), "tiny", seed=seed,
                  steps=steps, eval_every=every, progress=False, device="cpu")
        alone.append((m, h))
    models = [fresh(task, seed) for seed, _ in members]
    objs = [REMUL(1.0, beta, task.group if beta else None) for _, beta in members]
    assert stack_reason(models, objs) is None
    hists = train_many(models, task, objs, "tiny", seeds=[s for s, _ in members], steps=steps,
                       eval_every=every, progress=False, device="cpu")
    for (m, h), ms, hs in zip(alone, models, hists):
        assert hs.config["stack"] == 3 and h.config["stack"] == 1
        for key in ("loss", "task", "val_mse"):
            assert [r[key] for r in hs.records] == pytest.approx([r[key] for r in h.records],
                                                                 rel=1e-9)
        assert hs.best_step == h.best_step
        for a, b in zip(m.parameters(), ms.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_stacked_float32_members_agree_to_float_tolerance(task):
    members = [(0, 1.0), (4, 30.0)]
    alone = []
    for seed, beta in members:
        m = fresh(task, seed, dtype=torch.float32)
        alone.append(train(m, task, REMUL(1.0, beta, task.group), "tiny", seed=seed, steps=8,
                           eval_every=4, progress=False, device="cpu"))
    models = [fresh(task, s, dtype=torch.float32) for s, _ in members]
    hists = train_many(models, task, [REMUL(1.0, b, task.group) for _, b in members], "tiny",
                       seeds=[s for s, _ in members], steps=8, eval_every=4, progress=False,
                       device="cpu")
    for h, hs in zip(alone, hists):
        assert [r["loss"] for r in hs.records] == pytest.approx([r["loss"] for r in h.records],
                                                                rel=1e-4)


def test_per_member_rates_clips_and_weights_are_each_members_own(task):
    # the same seed and model, different α, lr and clip: members must end up different, each
    # equal to its own separate run
    cfgs = [dict(alpha=1.0, lr=1e-3, clip=1.0), dict(alpha=0.5, lr=3e-3, clip=0.01)]
    models = [fresh(task, 0) for _ in cfgs]
    objs = [REMUL(c["alpha"], 2.0, task.group) for c in cfgs]
    hists = train_many(models, task, objs, "tiny", seeds=[0, 0], steps=6, eval_every=3,
                       lr=[c["lr"] for c in cfgs], grad_clip=[c["clip"] for c in cfgs],
                       progress=False, device="cpu")
    for c, h in zip(cfgs, hists):
        alone = fresh(task, 0)
        ha = train(alone, task, REMUL(c["alpha"], 2.0, task.group), "tiny", seed=0, steps=6,
                   eval_every=3, lr=c["lr"], grad_clip=c["clip"], progress=False, device="cpu")
        assert [r["loss"] for r in h.records] == pytest.approx([r["loss"] for r in ha.records],
                                                               rel=1e-9)
        assert h.records[0]["lr"] == pytest.approx(ha.records[0]["lr"])
    assert hists[0].records[-1]["loss"] != pytest.approx(hists[1].records[-1]["loss"])


def test_stacked_augmentation_and_other_models(task):
    for name in ("mlp", "gnn", "egnn"):
        models = [fresh(task, s, name) for s in (0, 1)]
        objs = [Augmentation(task.group), Augmentation(task.group)]
        hists = train_many(models, task, objs, "tiny", seeds=[0, 1], steps=4, eval_every=2,
                           progress=False, device="cpu")
        alone = fresh(task, 1, name)
        h1 = train(alone, task, Augmentation(task.group), "tiny", seed=1, steps=4, eval_every=2,
                   progress=False, device="cpu")
        assert [r["loss"] for r in hists[1].records] == pytest.approx(
            [r["loss"] for r in h1.records], rel=1e-8), name


def test_what_cannot_be_stacked_says_why(task):
    a, b = fresh(task, 0), fresh(task, 1, "mlp")
    assert "differ" in stack_reason([a, b], [REMUL(1, 0), REMUL(1, 0)])
    c = fresh(task, 1)
    gn = REMUL(1.0, 1.0, task.group, weighting="gradnorm")
    assert "one model at a time" in stack_reason([a, c], [gn, REMUL(1, 0)])
    assert "differ" in stack_reason([a, c], [REMUL(1, 1, task.group), Augmentation(task.group)])
    with pytest.raises(ValueError, match="cannot be trained as one stack"):
        train_many([a, c], task, [gn, REMUL(1, 0)], "tiny", steps=2, progress=False)
    with pytest.raises(ValueError, match="2 values for 3 members"):
        train_many([fresh(task, s) for s in range(3)], task, None, "tiny", seeds=[0, 1],
                   steps=2, progress=False)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        train_many([a, c], task, None, "tiny", lr=[1e-3, -1.0], steps=2, progress=False)


def test_schedule_factors_are_the_schedulers(task):
    for kind in ("onecycle", "exponential"):
        f, beta1 = _lr_factors(50, kind, 0.01, every=10)
        p = torch.zeros(1, requires_grad=True)
        opt = torch.optim.Adam([p], lr=2e-3)
        sched = _schedule(opt, 2e-3, 50, kind, 0.01, 10)
        seen, seen_b1 = [], []
        for _ in range(50):
            seen.append(opt.param_groups[0]["lr"])
            seen_b1.append(opt.param_groups[0]["betas"][0])
            opt.step()
            sched.step()
        assert [2e-3 * x for x in f.tolist()] == pytest.approx(seen, rel=1e-12)
        assert beta1.tolist() == pytest.approx(seen_b1, rel=1e-12)
    assert math.isclose(_lr_factors(50, "exponential", 0.01, 10)[0][-1].item(), 0.01 ** 0.8)
    assert _lr_factors(50, "onecycle", 0.01)[1].min() < 0.9  # one-cycle cycles Adam's β₁


def test_cuda_graph_asked_for_without_cuda_is_a_clear_error(task):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="cuda_graph=True needs a CUDA device"):
        train(fresh(task, 0), task, None, "tiny", steps=2, cuda_graph=True, progress=False)
