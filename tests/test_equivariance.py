import pytest
import torch
from torch import nn

from eqhelpers import data
from eqhelpers.equivariance import REMUL, Augmentation, equivariance_error, field_mse, make_objective
from eqhelpers.fields import Field, Sample, TaskSpec
from eqhelpers.groups import SO2, SO3, euclidean_group
from eqhelpers.models import make_model

F64 = torch.float64
SPEC = TaskSpec({"pos": Field("point"), "vel": Field("vector")}, {"y": Field("point")}, 3)


class Shift(nn.Module):
    """f(x) = x + c: translation-equivariant, not rotation-equivariant (c is a fixed vector)."""

    def __init__(self, c):
        super().__init__()
        self.spec = SPEC
        self.c = nn.Parameter(torch.as_tensor(c, dtype=F64))
        self.head = nn.Linear(1, 1)

    def forward(self, s):
        return {"y": s["pos"] + self.c}


def points(b=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Sample({"pos": torch.randn(b, 3, 3, generator=g, dtype=F64),
                   "vel": torch.randn(b, 3, 3, generator=g, dtype=F64)}, SPEC.spec)


def test_errors_match_their_analytic_values():
    # f(x) = x + c on N = 3 particles: f(g·x) − ρ(g)·f(x) = c − R c for every particle.
    # Under Haar R, R c is uniform on the sphere of radius |c|, so E‖c − R c‖ = (4/3)|c|
    # (‖c − Rc‖ = |c|·√(2(1 − u)), u uniform on [−1, 1]) and E′ = √N · 4/3 · |c|.
    c = torch.tensor([0.3, -0.4, 1.2], dtype=F64)
    n, M = 3, 50
    gen = torch.Generator().manual_seed(0)
    e = equivariance_error(Shift(c), points(400), SO3(), M=M, generator=gen)
    norm_c = float(c.norm())
    assert e.E_prime == pytest.approx(n ** 0.5 * 4 / 3 * norm_c, rel=0.02)
    # E compares orbit averages: ‖c − mean_M(R c)‖ → |c| (1 + 1/(3M)) for large M
    assert e.E == pytest.approx(n ** 0.5 * norm_c * (1 + 1 / (3 * M)), rel=0.02)
    assert e.E <= e.E_prime
    # E′_mse: E|Rc − c|² = 2|c|², per entry 2|c|²/3
    assert e.E_prime_mse == pytest.approx(2 * float(c @ c) / 3, rel=0.05)
    # rotations about c's own axis leave it fixed: no error
    e_axis = equivariance_error(Shift(c), points(), SO2(axis=c), M=8)
    assert e_axis.E < 1e-12 and e_axis.E_prime < 1e-12 and e_axis.E_prime_mse < 1e-25


def test_E_sees_only_violations_that_survive_orbit_averaging():
    # f(x) = R0 x (a fixed rotation applied to the output) under rotations about R0's own axis:
    # it commutes with them, so both vanish; under SO(3) it does not, and E < E′ strictly
    class Rotate(Shift):
        def forward(self, s):
            return {"y": s["pos"] @ R0.T}

    R0 = SO2(axis=(0.0, 0.0, 1.0))._matrix(torch.tensor([0.7], dtype=F64))[0]
    model = Rotate([0.0, 0, 0])
    about_z = equivariance_error(model, points(), SO2(), M=6)
    assert about_z.E < 1e-12 and about_z.E_prime < 1e-12
    full = equivariance_error(model, points(), SO3(), M=20,
                              generator=torch.Generator().manual_seed(1))
    assert 1e-3 < full.E < full.E_prime


def test_errors_need_at_least_one_element():
    with pytest.raises(ValueError, match="M must be"):
        equivariance_error(Shift([0.0, 0, 1]), points(), SO3(), M=0)


def test_group_must_fit_the_fields():
    with pytest.raises(ValueError, match="permutes"):
        equivariance_error(Shift([0.0, 0, 1]), points(), euclidean_group(7), M=4)
    with pytest.raises(ValueError, match="R\\^2"):
        batch = Sample({**points().data, "y": points()["pos"]}, SPEC.spec)
        REMUL(1.0, 1.0, SO2(dim=2))(Shift([0.0, 0, 1]), batch)


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": -1.0}, "alpha"),
    ({"beta": float("nan")}, "beta"),
    ({"alpha": 0.0, "beta": 0.0}, "both be zero"),
    ({"beta": 1.0, "group": None}, "needs a group"),
    ({"mode": "both"}, "mode"),
    ({"weighting": "uncertainty"}, "weighting"),
])
def test_remul_rejects_bad_settings(kwargs, message):
    args = {"alpha": 1.0, "beta": 1.0, "group": SO3(), **kwargs}
    with pytest.raises(ValueError, match=message):
        REMUL(**args)


@pytest.fixture(scope="module")
def task():
    return data.load_task("gravity", "tiny", seed=0, cache=False)


def test_remul_runs_one_forward_pass_over_both_batches(task):
    model = make_model("transformer", task.spec, width=16, layers=1)
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    batch = task["train"].index(slice(0, 8))
    loss, parts = REMUL(1.0, 10.0, task.group)(model, batch, torch.Generator().manual_seed(0))
    assert calls == [16]  # one pass, original and transformed concatenated
    assert torch.allclose(loss, parts["task"] + 10.0 * parts["equi"])
    calls.clear()
    REMUL(1.0, 0.0)(model, batch)
    assert calls == [8]  # β = 0 skips the transformed batch


def test_label_and_self_modes_differ_and_vanish_for_an_equivariant_model(task):
    batch = task["train"].index(slice(0, 16))
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    torch.manual_seed(0)
    tr = make_model("transformer", task.spec, width=16, layers=1)
    _, lab = REMUL(1, 1, task.group, mode="label")(tr, batch, gen())
    _, slf = REMUL(1, 1, task.group, mode="self")(tr, batch, gen())
    assert float(lab["task"]) == pytest.approx(float(slf["task"]))
    assert abs(float(lab["equi"]) - float(slf["equi"])) > 1e-6
    egnn = make_model("egnn", task.spec, width=16, layers=1)
    _, e_self = REMUL(1, 1, task.group, mode="self")(egnn, batch, gen())
    _, e_lab = REMUL(1, 1, task.group, mode="label")(egnn, batch, gen())
    assert float(e_self["equi"]) < 1e-9  # self-consistency is zero for an equivariant model
    assert float(e_lab["equi"]) == pytest.approx(float(e_lab["task"]), rel=1e-3)  # = its task loss


def test_augmentation_trains_on_transformed_pairs(task):
    torch.manual_seed(0)
    model = make_model("egnn", task.spec, width=16, layers=1)
    batch = task["train"].index(slice(0, 32))
    loss, _ = Augmentation(task.group)(model, batch, torch.Generator().manual_seed(0))
    # for an equivariant model augmentation changes nothing: same loss as on the raw batch
    with torch.no_grad():
        direct = float(field_mse(model(batch), batch))
    assert float(loss.detach()) == pytest.approx(direct, rel=1e-4)


def test_gradnorm_adapts_weights_and_keeps_their_sum(task):
    torch.manual_seed(0)
    model = make_model("transformer", task.spec, width=16, layers=1)
    obj = make_objective("remul", task.group, alpha=1.0, beta=3.0, weighting="gradnorm")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    seen = []
    for _ in range(30):
        batch = task["train"].index(torch.randint(256, (32,), generator=gen))
        loss, parts = obj(model, batch, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen.append((float(parts["w_task"]), float(parts["w_equi"])))
    assert all(abs(a + b - 4.0) < 1e-4 for a, b in seen)
    # the weights adapt (GradNorm first evens out the two gradient norms on the head)
    assert max(abs(a - 1.0) for a, _ in seen) > 0.2
    with pytest.raises(ValueError, match="GradNorm"):
        REMUL(1.0, 0.0, task.group, weighting="gradnorm")


def test_errors_do_not_depend_on_chunking(task):
    torch.manual_seed(0)
    model = make_model("transformer", task.spec, width=16, layers=1)
    runs = [equivariance_error(model, task["test"], task.group, M=5,
                               generator=torch.Generator().manual_seed(4), max_forward=mf)
            for mf in (5, 40, 10_000)]
    for r in runs[1:]:
        assert r.E == pytest.approx(runs[0].E, rel=1e-6)
        assert r.E_prime == pytest.approx(runs[0].E_prime, rel=1e-6)
