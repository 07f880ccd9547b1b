"""Trivial baselines (evaluation.baselines): what every result is shown beside."""

import pytest
import torch

from eqhelpers.data import load_task
from eqhelpers.equivariance import field_mse
from eqhelpers.evaluation import baseline_predictions, baselines


def test_mean_nothing_moves_and_constant_velocity_on_dynamics():
    task = load_task("charged", "tiny")
    train, test = task["train"], task["test"]
    rows = baselines(task)
    assert set(rows) == {"mean", "nothing moves", "constant velocity"}
    # the mean training structure, particle by particle
    mean = train["pos_next"].mean(0, keepdim=True)
    assert rows["mean"]["test_mse"] == pytest.approx(float(((test["pos_next"] - mean) ** 2).mean()))
    still = float(((test["pos_next"] - test["pos"]) ** 2).mean())
    assert rows["nothing moves"]["test_mse"] == pytest.approx(still)
    # τ is the least-squares step of x + τ v on the training split, so no other step fits train
    # better, and the dynamics move the charges forward in time (τ > 0)
    tau = rows["constant velocity"]["tau"]
    assert tau > 0

    def train_mse(t):
        return float(((train["pos"] + t * train["vel"] - train["pos_next"]) ** 2).mean())

    assert train_mse(tau) <= min(train_mse(tau * 0.9), train_mse(tau * 1.1), train_mse(0.0))
    pred = baseline_predictions(task, test)["constant velocity"]
    assert torch.allclose(pred["pos_next"], test["pos"] + tau * test["vel"])
    # the OOD split moves systems far from the training frame: the mean structure does not follow
    assert rows["mean"]["ood_mse"] > rows["mean"]["test_mse"]
    assert rows["nothing moves"]["ood_mse"] == pytest.approx(rows["nothing moves"]["test_mse"],
                                                            rel=1e-6)


def test_mean_of_a_global_scalar_and_of_classes():
    energy = load_task("ethanol_energy", "tiny")
    rows = baselines(energy, splits=("test",))
    assert set(rows) == {"mean"}  # no positions predicted: nothing to keep still
    y, mu = energy["test"]["energy"], energy["train"]["energy"].mean()
    assert rows["mean"]["test_mse"] == pytest.approx(float(((y - mu) ** 2).mean()))

    digits = load_task("digits_rotated", "tiny")
    rows = baselines(digits, splits=("test",))
    counts = digits["train"]["label"].sum(0)
    majority = int(counts.argmax())
    share = float((digits["test"]["label"].argmax(-1) == majority).double().mean())
    assert rows["mean"]["test_accuracy"] == pytest.approx(share)


def test_a_model_that_learned_beats_them_and_field_mse_agrees():
    task = load_task("gravity_planar", "tiny")
    rows = baselines(task, splits=("test",))
    sample = task["test"]
    exact = {"pos_next": sample["pos_next"]}
    assert float(field_mse(exact, sample)) == 0.0 < min(r["test_mse"] for r in rows.values())


def test_baseline_needs_the_training_particle_count():
    task = load_task("charged", "tiny")
    small = task["test"].index(slice(0, 4))
    fewer = small.replace(**{k: small[k][:, :3] for k in ("pos", "vel", "charge", "pos_next")})
    with pytest.raises(ValueError, match="particles"):
        baseline_predictions(task, fewer)


def test_violation_grows_with_the_angle_for_a_plain_model_and_not_for_egnn():
    from eqhelpers.evaluation import violation_by_angle
    from eqhelpers.groups import RotationsByAngle, rotation_angle
    from eqhelpers.models import make_model

    g = RotationsByAngle(60.0).sample(50, generator=torch.Generator().manual_seed(0),
                                      dtype=torch.float64)
    assert torch.allclose(rotation_angle(g.rot), torch.full((50,), torch.pi / 3, dtype=torch.float64))
    eye = torch.eye(3, dtype=torch.float64).expand(50, 3, 3)
    assert torch.allclose(g.rot @ g.rot.transpose(1, 2), eye)
    with pytest.raises(ValueError, match="angle"):
        RotationsByAngle(float("nan"))

    task = load_task("gravity_planar", "tiny")
    sample = task["test"].index(slice(0, 16))
    torch.manual_seed(0)
    plain = make_model("transformer", task.spec, width=16, layers=2)
    egnn = make_model("egnn", task.spec, width=16, layers=2)
    angles = [0.0, 30.0, 90.0, 180.0]
    v = violation_by_angle(plain, sample, angles, M=4)
    assert v[0] < 1e-5 and v[1] < v[2] and v[1] > 1e-3  # none at 0°, then growing
    assert float(violation_by_angle(egnn, sample, angles, M=4).max()) < 1e-4


def test_several_outputs_are_also_reported_field_by_field():
    from eqhelpers.evaluation import split_errors
    from eqhelpers.models import make_model

    task = load_task("ethanol_forces", "tiny")
    rows = baselines(task, splits=("test",))
    test = task["test"]
    forces = float((test["forces"] - task["train"]["forces"].mean(0, keepdim=True)).pow(2).mean())
    energy = float((test["energy"] - task["train"]["energy"].mean()).pow(2).mean())
    assert rows["mean"]["test_forces_mse"] == pytest.approx(forces, rel=1e-5)
    assert rows["mean"]["test_energy_mse"] == pytest.approx(energy, rel=1e-5)
    assert rows["mean"]["test_mse"] == pytest.approx((forces + energy) / 2, rel=1e-5)
    torch.manual_seed(0)
    model = make_model("gnn", task.spec, width=8, layers=1)
    err = split_errors(model, task, splits=("test",))
    assert err["test_mse"] == pytest.approx((err["test_forces_mse"] + err["test_energy_mse"]) / 2,
                                            rel=1e-5)
    single = split_errors(make_model("mlp", load_task("charged", "tiny").spec, width=8, layers=1),
                          load_task("charged", "tiny"), splits=("test",))
    assert set(single) == {"test_mse"}  # one output: nothing to split
