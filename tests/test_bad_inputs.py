"""Bad inputs and faults, as a careless user or script makes them: each is a clear error naming
the offending value (never a silent default, a hang, a raw traceback from deep inside torch, or
lost work)."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from eqhelpers import data
from eqhelpers.__main__ import main
from eqhelpers._util import resolve_device
from eqhelpers.budget import get_budget
from eqhelpers.equivariance import make_objective
from eqhelpers.models import make_model
from eqhelpers.results import load_checkpoint, load_sweep, save_checkpoint
from eqhelpers.sweep import sweep
from eqhelpers.train import evaluate, train, train_many

TINY = {"task": "gravity", "models": ("transformer",), "betas": [0.0, 1.0], "seeds": (0,),
        "budget": "tiny", "steps": 4, "progress": False}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EQHELPERS_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def task():
    return data.load_task("gravity", "tiny")


def model(task, **kw):
    torch.manual_seed(0)
    return make_model("transformer", task.spec, width=16, layers=1, **kw)


# --- zero or invalid means an error, never a default -----------------------------------------


@pytest.mark.parametrize("kw, name", [({"n_train": 0}, "n_train"), ({"n_val": -1}, "n_val"),
                                      ({"n_test": 2.5}, "n_test"), ({"seed": -1}, "seed"),
                                      ({"n_train": True}, "n_train")])
def test_load_task_sizes_and_seed(kw, name):
    with pytest.raises(ValueError, match=name):
        data.load_task("gravity", "tiny", cache=False, **kw)


@pytest.mark.parametrize("kw, name", [({"n_samples": 0}, "n_samples"), ({"M": 0}, "M"),
                                      ({"seed": -2}, "seed")])
def test_evaluate_settings(task, kw, name):
    with pytest.raises(ValueError, match=name):
        evaluate(model(task), task, "tiny", **kw)


@pytest.mark.parametrize("kind, kw, name", [
    ("plain", {"alpha": -5}, "alpha"), ("plain", {"alpha": 0}, "alpha"),
    ("plain", {"mode": "sideways"}, "mode"), ("remul", {"weighting": "adaptive"}, "weighting"),
    ("plain", {"beta": float("nan")}, "beta"), ("augment", {"mode": "x"}, "mode"),
    ("nonsense", {}, "objective")])
def test_objective_settings_are_checked_for_every_regime(task, kind, kw, name):
    with pytest.raises(ValueError, match=name):
        make_objective(kind, group=task.group, **kw)


@pytest.mark.parametrize("budget, err", [("", ValueError), ("huge", ValueError), (5, TypeError)])
def test_budget_names(budget, err):
    with pytest.raises(err, match="budget"):
        get_budget(budget)


@pytest.mark.parametrize("device", ["gpu0", "cuda:x", "tpu"])
def test_unknown_device_string(device):
    with pytest.raises(ValueError, match=f"unknown device {device!r}"):
        resolve_device(device)


@pytest.mark.parametrize("kw, name", [
    ({"steps": 0}, "steps"), ({"batch_size": 0}, "batch_size"), ({"eval_every": -1}, "eval_every"),
    ({"lr": -1e-3}, "lr"), ({"lr": float("nan")}, "lr"), ({"grad_clip": -1.0}, "grad_clip"),
    ({"seed": -1}, "seed"), ({"steps": 2.0}, "steps")])
def test_train_settings(task, kw, name):
    with pytest.raises(ValueError, match=name):
        train(model(task), task, None, "tiny", progress=False, **kw)


def test_amp_on_a_cpu_is_refused_not_recorded_as_on(task):
    with pytest.raises(ValueError, match="amp=True .* needs a CUDA device, got cpu"):
        train(model(task), task, None, "tiny", steps=1, amp=True, device="cpu", progress=False)


def test_train_many_counts_must_match(task):
    ms = [model(task), model(task)]
    with pytest.raises(ValueError, match="1 objectives for 2 models"):
        train_many(ms, task, [None], "tiny", steps=2, progress=False)
    with pytest.raises(ValueError, match="lr: 3 values for 2 members"):
        train_many(ms, task, None, "tiny", lr=[1e-3] * 3, steps=2, progress=False)
    with pytest.raises(ValueError, match="at least one model"):
        train_many([], task, None, "tiny")


@pytest.mark.parametrize("kw, name", [({"steps": 0}, "steps"), ({"n_train": 0}, "n_train"),
                                      ({"max_stack": 0}, "max_stack"), ({"ray": ""}, "ray"),
                                      ({"alpha": -1}, "alpha")])
def test_sweep_settings(tmp_path, kw, name):
    with pytest.raises(ValueError, match=name):
        sweep(**{**TINY, **kw}, out=tmp_path / "sw")


@pytest.mark.parametrize("kw, name", [({"centre": "yes"}, "centre"),
                                      ({"save_models": "no"}, "save_models"),
                                      ({"stack": None}, "stack")])
def test_sweep_flags(tmp_path, kw, name):
    with pytest.raises(TypeError, match=f"{name} must be True or False"):
        sweep(**{**TINY, **kw}, out=tmp_path / "sw")


@pytest.mark.parametrize("kw, repeated", [({"seeds": (0, 1, 0)}, "seeds repeat \\[0\\]"),
                                          ({"betas": [1, 1.0]}, "betas repeat \\[1.0\\]"),
                                          ({"models": ("mlp", "mlp")}, "models repeat")])
def test_a_sweep_with_a_value_twice_is_refused(tmp_path, kw, repeated):
    # a repeated seed would count twice in the mean ± std ("2 seeds", std 0)
    with pytest.raises(ValueError, match=repeated):
        sweep(**{**TINY, **kw}, out=tmp_path / "sw")
    assert not (tmp_path / "sw").exists()


@pytest.mark.parametrize("kw, match", [
    ({"seed": float("nan")}, "seed must be an int >= 0, got nan"),
    ({"seed": "0"}, "seed must be an int"), ({"n_generators": True}, "n_generators must be an int"),
    ({"snapshots": 0}, "snapshots must be an int >= 1"),
    ({"schedule": (0.3, 1.0)}, "schedule must be four numbers"),
    ({"schedule": (0.3, "wide", 0.1, 0.1)}, "schedule must be four numbers")])
def test_discover_settings(kw, match):
    from eqhelpers.discover import discover

    with pytest.raises(ValueError, match=match):
        discover("hidden_axis", budget="tiny", steps=2, progress=False, **kw)


@pytest.mark.parametrize("call, kw, match", [
    ("scores", {"n_random": 0}, "n_random must be an int >= 1"),
    ("scores", {"repeats": 0}, "repeats must be an int >= 1"),
    ("scores", {"threshold": 2.0}, r"threshold must be in \(0, 1\]"),
    ("scores", {"threshold": float("nan")}, "threshold must be in"),
    ("nullspace", {"n_samples": 0}, "n_samples must be an int >= 1"),
    ("canonical", {"generators": torch.eye(2)[None]}, "act on R\\^2 but field 'x' is 3D")])
def test_read_out_settings(call, kw, match):
    from eqhelpers.augment import canonical_generators, nullspace, symmetry_scores

    task = data.load_task("hidden_axis", "tiny")
    torch.manual_seed(0)
    net = make_model("mlp", task.spec, width=8, layers=1)
    gens = kw.pop("generators", torch.tensor([[[0.0, -1, 0], [1, 0, 0], [0, 0, 0]]]))
    fn = {"scores": lambda: symmetry_scores(net, task["test"], gens, **kw),
          "nullspace": lambda: nullspace(net, task["test"], **kw),
          "canonical": lambda: canonical_generators(net, task["test"], gens, **kw)}[call]
    with pytest.raises(ValueError, match=match):
        fn()


def test_lie_group_ranges_must_fit_the_generators():
    from eqhelpers.groups import LieGroup

    gens = torch.zeros(2, 3, 3)
    gens[0, 0, 1], gens[0, 1, 0], gens[1, 1, 2], gens[1, 2, 1] = -1, 1, -1, 1
    assert LieGroup(gens, [0.5, 1.0]).ranges.tolist() == [0.5, 1.0]
    assert LieGroup(gens, 0.5).ranges.tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match=r"one number or one per generator \(2\), got shape \(3,\)"):
        LieGroup(gens, [0.5, 1.0, 2.0])


def _groups_and_elements():
    from eqhelpers import groups as G
    rot, rot2 = G.SO3().sample(2), G.SO2(dim=2).sample(2)
    return [
        (lambda: G.Cyclic(True), ValueError, "k must be an int >= 1"),
        (lambda: G.SO2((1.0, 0.0, 0.0), dim=2), ValueError, "turns about no axis"),
        (lambda: G.SO2(dim=True), ValueError, "R\\^2 or R\\^3"),
        (lambda: G.Translations(1.0, dim=0), ValueError, "dim must be an int >= 1"),
        (lambda: G.Translations(float("nan")), ValueError, "translation std"),
        (lambda: G.LieGroup(G.so3_generators(), orthogonal="no"), TypeError, "orthogonal"),
        (lambda: G.SO3() * 3, TypeError, "SO3.*int|int.*SO3|unsupported"),
        (lambda: G.ProductGroup(G.SO3(), None), TypeError, "a product needs groups"),
        (lambda: G.SO3().sample(2, dtype=torch.int64), ValueError, "floating-point dtype"),
        (lambda: G.SO3().sample(True), ValueError, "n must be an int >= 1"),
        (lambda: G.SO3().identity(-1), ValueError, "n must be an int >= 1"),
        (lambda: rot @ rot2, ValueError, "R\\^3 and R\\^2"),
        (lambda: rot @ "x", TypeError, "compose with a Transform"),
        (lambda: G.Transform.cat([]), ValueError, "empty"),
        (lambda: G.Transform.cat([rot, rot2]), ValueError, "rot shapes differ"),
        (lambda: rot.repeat_interleave(-1), ValueError, "repeats"),
    ]


@pytest.mark.parametrize("i", range(16))
def test_groups_and_their_elements_name_what_they_cannot_be(i):
    """Groups and batches of elements made or combined wrongly: a clear error, not a silent
    default (an axis SO(2) of the plane would ignore, a bool as a count) nor torch's own message
    from deep inside a matmul or a sampler."""
    cases = _groups_and_elements()
    assert len(cases) == 16  # every case has its parameter
    call, err, match = cases[i]
    with pytest.raises(err, match=match):
        call()


def _fields_and_samples():
    from eqhelpers import groups as G
    from eqhelpers.fields import Field, Sample, TaskSpec, act

    spec = {"x": Field("point"), "y": Field("scalar", per_particle=False)}
    s = Sample({"x": torch.randn(4, 2, 3), "y": torch.randn(4, 1)}, spec)
    other = Sample({"x": torch.randn(4, 3, 3), "y": torch.randn(4, 1)}, spec)
    ins, outs = {"x": Field("point")}, {"y": Field("scalar")}
    return [
        (lambda: Field("scalar", channels=2.5), "channels must be an int"),
        (lambda: Field("vector", channels=True), "channels must be an int"),
        (lambda: Field("scalar", per_particle="no"), "per_particle must be True or False"),
        (lambda: TaskSpec(ins, outs, 0), "n_particles must be an int >= 1"),
        (lambda: TaskSpec({}, outs, 1), "needs inputs"),
        (lambda: TaskSpec({"x": "point"}, outs, 1), "must map names to Field"),
        (lambda: Sample({"x": torch.zeros(2, 2, 3, dtype=torch.long)}, spec),
         "must be floating point"),
        (lambda: Sample({"x": torch.zeros(2, 2, 3), "y": torch.zeros(2, 1, dtype=torch.float64)},
                        spec), "dtypes differ"),
        (lambda: Sample.cat([]), "empty"),
        (lambda: Sample.cat([s, other]), "field 'x' has shapes"),
        (lambda: s.split([1, 1]), "add up to 2, not the sample's 4"),
        (lambda: s.repeat_interleave(-1), "repeats"),
        (lambda: act(G.SO3().sample(4), {}, spec), "no tensors"),
        (lambda: act("g", s), "needs group elements"),
        (lambda: Field("vector").act(G.SO3().sample(2), torch.randn(2, 3)), "shape \\[B, N, c\\]"),
    ]


@pytest.mark.parametrize("i", range(15))
def test_fields_and_samples_name_what_they_cannot_hold(i):
    """A field, task spec or sample made or combined wrongly: a clear error naming it (before, a
    bool or a fraction passed as a count, an integer point cloud and a float32/float64 mix were
    taken; an empty concatenation, a bad split or a vector of the wrong rank failed inside torch)."""
    cases = _fields_and_samples()
    assert len(cases) == 15  # every case has its parameter
    call, match = cases[i]
    with pytest.raises((ValueError, TypeError), match=match):
        call()


@pytest.mark.parametrize("kw, match", [
    ({"width": True}, "width must be an int"), ({"layers": 2.0}, "layers must be an int"),
    ({"name": "transformer", "heads": 0}, "heads must be an int >= 1"),
    ({"name": "e3nn", "lmax": -1}, "lmax must be an int >= 0"),
    ({"dtype": "float32"}, "floating-point torch.dtype"), ({"dtype": torch.int64}, "floating-point"),
    ({"name": None}, "unknown model"),
])
def test_make_model_names_a_setting_it_cannot_build(task, kw, match):
    """Before: a bool width built a one-unit model, heads=0 was a ZeroDivisionError, lmax=-1 built
    an e3nn network without spherical harmonics and a dtype string a 'device string' error."""
    kw = {"name": "mlp", **kw}
    with pytest.raises(ValueError, match=match):
        make_model(kw.pop("name"), task.spec, **kw)
    with pytest.raises(TypeError, match="spec must be a TaskSpec"):
        make_model("mlp", {"x": 1})


@pytest.mark.parametrize("call", ["make_model", "train", "discover", "field", "budget",
                                  "load_task"])
def test_a_flag_that_is_not_a_bool_is_named_not_read_as_true(task, call):
    """"no" is truthy: a flag given as a string, a number or None would silently be on (before,
    discover(learned_range="no") learned the range). Every flag goes through one check (sweep's
    centre: test_sweep_settings)."""
    from eqhelpers.discover import discover
    from eqhelpers.fields import Field

    calls = {
        "make_model": (lambda: make_model("mlp", task.spec, centre="yes"), "centre"),
        "train": (lambda: train(make_model("mlp", task.spec), task, None, "tiny", steps=1,
                                progress="no"), "progress"),
        "discover": (lambda: discover("hidden_axis", budget="tiny", steps=1, progress=False,
                                      learned_range="no"), "learned_range"),
        "field": (lambda: Field("vector", per_particle=0), "per_particle"),
        "budget": (lambda: get_budget("tiny").scaled(protocol_sizes="no"), "protocol_sizes"),
        "load_task": (lambda: data.load_task("gravity", "tiny", cache="no"), "cache"),
    }
    fn, name = calls[call]
    with pytest.raises(TypeError, match=f"{name} must be True or False"):
        fn()


def test_a_model_given_a_dict_says_it_takes_a_sample(task):
    m = make_model("mlp", task.spec, width=16, layers=1, dtype=torch.float64)
    x = task["test"].select(task.spec.inputs)
    with pytest.raises(TypeError, match="takes a Sample"):
        m(dict(x.data))


def test_a_weight_given_as_a_string_or_a_bool_is_named_not_converted():
    """check_weight took anything float() takes: "1" became 1.0 and True became 1.0; a string
    that float() cannot read failed with float()'s own words."""
    from eqhelpers.groups import SO3

    for value in ("1", True, "abc", None):
        with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
            make_objective("remul", SO3(), 1.0, value)
    assert make_objective("remul", SO3(), 1.0, np.float64(2.0)).beta == 2.0  # numpy still goes


def test_metrics_and_objectives_name_a_wrong_kind_of_argument(task):
    """A dict where a Sample goes, a group given by name, no angles, zero generators: named,
    not an AttributeError from inside (or, for the group, an objective that fails mid-training)."""
    from eqhelpers import augment, equivariance, evaluation
    from eqhelpers.groups import SO3

    m = make_model("mlp", task.spec, width=16, layers=1, dtype=torch.float64)
    test = task["test"]
    for call, err, match in [
        (lambda: evaluation.mse(m, dict(test.data)), TypeError, "needs a Sample"),
        (lambda: evaluation.violation_by_angle(m, test, []), ValueError, "angles is empty"),
        (lambda: evaluation.violation_by_angle(m, test, [10.0], seed=-1), ValueError,
         "seed must be an int >= 0, got -1"),  # every seed by one rule (was taken here)
        (lambda: equivariance.equivariance_error(m, test, None), TypeError, "must be a Group"),
        (lambda: make_objective("remul", "SO3", 1.0, 1.0), TypeError, "must be a Group"),
        (lambda: augment.gl_basis(0), ValueError, "dim must be an int >= 1"),
        (lambda: augment.random_generators(0, 3), ValueError, "n must be an int >= 1"),
    ]:
        with pytest.raises(err, match=match):
            call()
    assert make_objective("remul", SO3(), 1.0, 1.0).group.name == "SO(3)"  # a Group still goes


def test_an_empty_split_is_refused_by_the_metrics(task):
    from eqhelpers.equivariance import equivariance_error
    from eqhelpers.evaluation import mse
    from eqhelpers.groups import SO3

    empty = task["test"].index(slice(0, 0))
    with pytest.raises(ValueError, match="sample is empty"):
        mse(model(task), empty)
    with pytest.raises(ValueError, match="sample is empty"):
        equivariance_error(model(task), empty, SO3(), M=2)


@pytest.mark.parametrize("name", ["digits_rotated", "hidden_plane"])
def test_e3_is_refused_where_it_cannot_act_instead_of_silently_replaced(name):
    # images and 5D vectors: E(3) has no action; before, 'e3' quietly trained with the task's group
    from eqhelpers.evaluation import objective_group
    from eqhelpers.train import run

    task = data.load_task(name, "tiny")
    with pytest.raises(ValueError, match="group 'e3' acts on 3D points and vectors.*use group 'task'"):
        run(name, "mlp", "remul", budget="tiny", group="e3", steps=1, progress=False)
    assert objective_group(task, "task") is task.group
    assert "E(3)" in objective_group(data.load_task("field", "tiny"), "e3").name


@pytest.mark.parametrize("kw, match", [({"steps": 0}, "steps must be an int >= 1"),
                                       ({"n_train": 1.5}, "n_train must be an int"),
                                       ({"batch_size": True}, "batch_size must be an int"),
                                       ({"lr": float("nan")}, "lr must be a finite number > 0"),
                                       ({"lr": -1e-3}, "lr must be a finite number > 0"),
                                       ({"name": 5}, "name is a non-empty string")])
def test_a_budget_with_an_impossible_size_is_refused_when_made(kw, match):
    with pytest.raises(ValueError, match=match):
        get_budget("tiny").scaled(**kw)


@pytest.mark.parametrize("name, kw, match", [
    ("gravity", {"n_planets": 5}, "defined for 4 particles .* give \\[6\\]"),
    ("charged", {"n_particles": 6}, "defined for 5 particles .* give \\[6\\]"),
    ("charged", {"n_particles": -1}, "n_particles must be an int >= 1"),
    ("charged", {"pos_std": -1.0}, "pos_std must be a finite number > 0"),
    ("charged_egnn", {"box": float("nan")}, "box must be a finite number > 0"),
    ("charged_egnn", {"frame_steps": True}, "frame_steps must be an int"),
    ("gravity", {"permute": "no"}, "permute must be True or False"),
    ("hidden_axis", {"coverage": "x"}, "coverage must be a finite number > 0"),
])
def test_generator_settings_are_checked_and_keep_the_tasks_particle_count(tmp_path, name, kw,
                                                                           match):
    """Before: n_planets=5 gave 6-body data under a 4-body spec and group (found only when a
    model or a metric met them), a negative particle count a torch error, a negative spread, a
    NaN box or "no" for permute were taken. Nothing is cached for a refused setting."""
    with pytest.raises((ValueError, TypeError), match=match):
        data.load_task(name, "tiny", n_train=8, n_val=4, n_test=4, **kw)
    assert not list((tmp_path / "cache").glob(f"{name}-*.pt"))


def test_a_misspelt_generator_setting_names_the_task_and_what_it_takes():
    with pytest.raises(TypeError, match=r"task 'hidden_axis' has no generator setting "
                                        r"\['coverge'\]: it takes \['coverage'\]"):
        data.load_task("hidden_axis", "tiny", coverge=0.5, cache=False)
    with pytest.raises(TypeError, match=r"'digits_rotated' has no generator setting .* none"):
        data.load_task("digits_rotated", "tiny", angle=30, cache=False)
    assert len(data.load_task("hidden_axis", "tiny", coverage=0.5, cache=False)["train"]) == 256


def test_bench_settings():
    from eqhelpers.bench import benchmark

    for kw, name in (({"min_time": -1}, "min_time"), ({"repeats": 0}, "repeats"),
                     ({"batch_sizes": (0,)}, "batch size"),
                     ({"batch_sizes": (8, 8)}, r"batch sizes repeat \[8\]")):
        with pytest.raises(ValueError, match=name):
            benchmark("gravity", ("mlp",), budget="tiny", progress=False, **kw)


# --- deep torch errors made clear --------------------------------------------------------------


def test_a_float64_model_on_float32_data_says_so(task):
    net = model(task, dtype=torch.float64)
    with pytest.raises(ValueError, match="float64 weights but input 'pos' is torch.float32"):
        net(task["test"].index(slice(0, 4)))


def test_an_empty_batch_says_so(task):
    with pytest.raises(ValueError, match="empty batch"):
        model(task)(task["test"].index(slice(0, 0)))


def test_an_input_of_the_wrong_width_is_named_before_any_matmul(task):
    s = task["test"].index(slice(0, 4))
    wide = s.replace(pos=torch.cat([s["pos"], s["pos"][..., :1]], -1))  # replace() skips checks
    for name in ("transformer", "mlp", "gnn"):
        with pytest.raises(ValueError, match=r"input 'pos' .* c=3, got \(4, 4, 4\)"):
            torch.manual_seed(0)
            make_model(name, task.spec, width=16, layers=1)(wide)
    with pytest.raises(ValueError, match=r"input 'mass' .* got \(4, 4\)"):
        model(task)(s.replace(mass=s["mass"][..., 0]))


@pytest.mark.parametrize("call, match", [
    (lambda v: v.molecule_figure([6, 1], np.full((2, 3), np.nan)), "pos contains NaN"),
    (lambda v: v.molecule_figure([6, 1], np.zeros((3, 3))), r"pos must be \[N, 3\] for 2 atoms"),
    (lambda v: v.molecule_figure([0, 6], np.zeros((2, 3))), "atomic numbers"),
    (lambda v: v.molecule_figure([6, 1], np.eye(2, 3), arrows=[(np.ones((3, 3)), "red")]),
     r"arrows\[0\] must be \[N, 3\]"),
    (lambda v: v.molecule_figure([6, 1], np.eye(2, 3), arrows=[(np.full((2, 3), np.inf), "r")]),
     r"arrows\[0\] contains NaN"),
    (lambda v: v.plot_point_clouds([(np.full((4, 3), np.nan), "a")]), "cloud 0 contains NaN"),
    (lambda v: v.plot_point_clouds([(np.zeros((4, 2)), "a")]), r"cloud 0 must be points \[N, 3\]"),
    (lambda v: v.plot_point_clouds([]), "non-empty list of"),
    (lambda v: v.plot_matrix(np.zeros((2, 3, 3))), "one matrix"),
    (lambda v: v.plot_generators(np.full((1, 3, 3), np.nan)), "NaN or inf"),
    (lambda v: v.plot_generators(np.zeros((3, 3))), r"matrices \[k, d, d\]"),
])
def test_figures_name_bad_coordinates(call, match):
    import matplotlib

    matplotlib.use("Agg")
    from eqhelpers import viz

    matplotlib.pyplot.close("all")
    with pytest.raises(ValueError, match=match):
        call(viz)
    assert not matplotlib.pyplot.get_fignums()  # checked before any figure is made


def test_figure_and_view_flags_are_bools():
    import matplotlib

    matplotlib.use("Agg")
    from eqhelpers import viz

    matplotlib.pyplot.close("all")
    info = {"f": np.zeros((2, 3)), "f_back": np.zeros((2, 3)), "truth": None,
            "numbers": [6, 1], "pos": np.eye(2, 3)}
    for call, name in [
        (lambda: viz.plot_point_clouds([(np.zeros((4, 3)), "a")], connect_first="no"),
         "connect_first"),
        (lambda: viz.rotated_figure(info, truth="no"), "truth"),
        (lambda: viz.fetch_3dmol(force=1), "force"),
    ]:
        with pytest.raises(TypeError, match=f"{name} must be True or False"):
            call()
    assert not matplotlib.pyplot.get_fignums()


def test_trade_off_plots_name_a_metric_or_beta_they_cannot_draw():
    import matplotlib

    matplotlib.use("Agg")
    from eqhelpers import viz

    shipped = load_sweep(Path(data.__file__).parent / "precomputed" / "sweep_aspirin_forces_cpu")
    matplotlib.pyplot.close("all")
    with pytest.raises(ValueError, match=r"y='test_mae' is not a metric .*'ood_forces_mse'"):
        viz.plot_tradeoff(shipped, y="test_mae")
    assert not matplotlib.pyplot.get_fignums()
    for beta in (float("nan"), -1.0):
        with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
            viz.interpolate(shipped, beta)
    assert viz.interpolate(shipped, 1.0)["test_mse"] == pytest.approx(
        next(r["test_mse"] for r in shipped.summary if r["beta"] == 1.0))


def test_a_frame_outside_the_sample_is_named(task):
    from eqhelpers.viz import rotated_prediction

    for bad in (-1, 64, 1.0, True):
        with pytest.raises(ValueError, match=r"index must be an int in \[0, 64\)"):
            rotated_prediction(model(task), task["test"].index(slice(0, 64)), index=bad)
    assert rotated_prediction(model(task), task["test"].index(slice(0, 64)), index=63)["violation"] >= 0


def test_a_diverging_md_simulation_names_the_fix():
    pytest.importorskip("rdkit")
    from eqhelpers.molecules import ForceField, langevin

    ff = ForceField("ethanol")
    vel = np.random.default_rng(0).normal(0, 1.0, ff.minimum.shape)  # Å/fs: far too hot
    with pytest.raises(FloatingPointError, match="the simulation diverged .* lower dt"):
        langevin(ff, ff.minimum, vel, 20000, dt=5.0, friction=0.0, temperature=0.0, rng=None)


def test_generation_that_keeps_nothing_stops_with_the_cause():
    result = {}

    def go():
        try:
            data.load_task("charged", "tiny", n_train=8, n_val=4, n_test=4, vel_std=100.0,
                           cache=False)
        except ValueError as exc:
            result["error"] = str(exc)

    th = threading.Thread(target=go, daemon=True)
    th.start()
    th.join(60)
    assert not th.is_alive(), "generation hung"
    assert "vel_std=100.0" in result["error"] and "outlier threshold" in result["error"]


# --- loaded artefacts are checked for what they are --------------------------------------------


def test_checkpoints_are_checked_against_what_they_load_into(task, tmp_path):
    net = model(task)
    path = save_checkpoint(net, tmp_path / "g.pt", task="gravity")
    charged = data.load_task("charged", "tiny")
    other = make_model("transformer", charged.spec, width=16, layers=1)
    with pytest.raises(ValueError, match="made for another model or task"):
        load_checkpoint(other, path)
    with pytest.raises(ValueError, match="trained on task 'gravity', not 'charged'"):
        load_checkpoint(model(task), path, task="charged")
    with pytest.raises(ValueError, match="made for another model or task"):
        load_checkpoint(make_model("gnn", task.spec, width=16, layers=1), path)
    blob = torch.load(path, weights_only=True)
    blob["state_dict"]["head.bias"][0] = float("nan")
    torch.save(blob, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match="non-finite weights .*head.bias"):
        load_checkpoint(model(task), tmp_path / "nan.pt")
    load_checkpoint(model(task), path, task="gravity")  # and the right one loads


def test_discovery_results_are_checked(tmp_path):
    from eqhelpers.discover import load_discovery

    def write(gens, scores, ranges):
        d = {"task": "hidden_axis", "generators": gens, "ranges": ranges, "true_generators": None,
             "scores": {"score": scores, "degradation": scores, "reference_degradation": 1.0,
                        "base_mse": 1.0, "z_range": 1.0, "threshold": 0.5}}
        (tmp_path / "discovery.json").write_text(json.dumps(d))
        return tmp_path

    g = np.eye(3)[None].tolist()
    with pytest.raises(ValueError, match="non-finite"):
        load_discovery(write([[[float("nan")] * 3] * 3], [1.0], [1.0]))
    with pytest.raises(ValueError, match="2 entries for 1 generators"):
        load_discovery(write(g, [1.0, 0.5], [1.0]))
    with pytest.raises(ValueError, match="square matrices"):
        load_discovery(write([[1.0, 2.0]], [1.0], [1.0]))


def test_non_utf8_sweep_files_are_named(tmp_path):
    (tmp_path / "sweep.json").write_bytes(b"\xff\xfe{\x00bad")
    with pytest.raises(ValueError, match="cannot read sweep results from .*sweep.json"):
        load_sweep(tmp_path)
    out = tmp_path / "sw"
    out.mkdir()
    (out / "sweep_config.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="sweep_config.json is corrupt"):
        sweep(**TINY, out=out)


@pytest.mark.parametrize("damage, match", [
    (lambda b: [b], "the file holds a list, not a sweep object"),
    (lambda b: {**b, "summary": "x"}, "its summary is not a list"),
    (lambda b: {**b, "points": None}, "its points is not a list"),
    (lambda b: {**b, "summary": [{"model": "transformer"}]}, "summary\\[0\\] does not name"),
    (lambda b: {**b, "points": [{**b["points"][0], "beta": "one"}]}, "points\\[0\\] does not"),
])
def test_a_sweep_file_of_the_wrong_shape_is_named_when_read(tmp_path, damage, match):
    """Valid JSON in the wrong shape: before, a summary given as a string read as rows of
    characters and points of None loaded; every reader failed later, somewhere else."""
    import shutil

    src = Path(data.__file__).parent / "precomputed" / "sweep_charged_cpu"
    shutil.copytree(src, tmp_path / "sw")
    path = tmp_path / "sw" / "sweep.json"
    good = json.loads(path.read_text())
    assert load_sweep(tmp_path / "sw").summary  # the shipped file reads
    path.write_text(json.dumps(damage(good)))
    with pytest.raises(ValueError, match=f"cannot read sweep results from .*: {match}"):
        load_sweep(tmp_path / "sw")


# --- caches are validated against their own configuration --------------------------------------


def _cache_file(tmp_path):
    files = sorted((tmp_path / "cache").glob("gravity-*.pt"))
    assert len(files) == 1
    return files[0]


@pytest.mark.parametrize("damage", ["short_train", "wrong_shape", "wrong_dtype"])
def test_a_cache_that_does_not_fit_its_config_is_quarantined(tmp_path, damage):
    first = data.load_task("gravity", "tiny")
    path = _cache_file(tmp_path)
    blob = torch.load(path, weights_only=True)
    if damage == "short_train":
        blob["splits"]["train"] = {k: v[:10] for k, v in blob["splits"]["train"].items()}
    elif damage == "wrong_shape":
        blob["splits"]["val"]["pos"] = blob["splits"]["val"]["pos"][..., :2]
    else:
        blob["splits"]["test"]["vel"] = blob["splits"]["test"]["vel"].float()
    torch.save(blob, path)
    with pytest.warns(UserWarning, match="corrupt"):
        again = data.load_task("gravity", "tiny")
    assert len(list((tmp_path / "cache").glob("gravity-*.pt.corrupt-*"))) == 1
    for split in ("train", "val", "test"):  # regenerated identically
        torch.testing.assert_close(again[split]["pos"], first[split]["pos"])


# --- sweeps never mix settings ----------------------------------------------------------------


def test_points_of_other_settings_are_refused_even_without_the_config_file(tmp_path):
    out = tmp_path / "sw"
    sweep(**{**TINY, "steps": 6}, out=out)
    (out / "sweep_config.json").unlink()
    with pytest.raises(ValueError, match=r"trained with other settings: \{'steps': \(6, 3\)\}"):
        sweep(**{**TINY, "steps": 3}, out=out)


def test_two_sweeps_at_once_into_one_directory_one_is_refused(tmp_path):
    out = tmp_path / "sw"
    cmd = [sys.executable, "-m", "eqhelpers", "sweep", "--task", "gravity", "--budget", "tiny",
           "--betas", "0", "1", "--seeds", "0", "--out", str(out), "--no-progress"]
    procs = [subprocess.Popen(cmd + ["--steps", str(steps)], env=os.environ.copy(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for steps in (30, 31)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 2], results
    refused = next(r for r in results if r[2] == 2)
    assert "another run (sweep" in refused[1] or "other settings" in refused[1]
    assert "Traceback" not in refused[1]
    cfg = json.loads((out / "sweep_config.json").read_text())
    for f in (out / "points").glob("*.json"):  # every point is the winner's
        assert json.loads(f.read_text())["settings"]["steps"] == cfg["steps"]


# --- the command line: a user mistake is one line and exit status 2 -----------------------------


def test_an_unusable_out_fails_at_once_before_any_training(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for cmd in (["train", "--budget", "tiny"], ["sweep", "--budget", "tiny"],
                ["discover", "--budget", "tiny"], ["bench", "--budget", "tiny"]):
        for out in (blocker, blocker / "below"):
            t0 = time.perf_counter()
            assert main([*cmd, "--out", str(out)]) == 2
            assert time.perf_counter() - t0 < 1.0
            err = capsys.readouterr().err
            assert str(blocker) in err and err.count("\n") == 1, err
    assert blocker.read_text() == "x"  # nothing lost


def test_cli_errors_are_one_line_without_traceback(tmp_path, monkeypatch):
    env = {**os.environ, "EQHELPERS_CACHE": str(tmp_path / "cachefile")}
    (tmp_path / "cachefile").write_text("not a directory")
    cases = [["train", "--budget", "tiny", "--device", "gpu0"],
             ["bench", "--budget", "tiny", "--min-time", "-1"],
             ["train", "--budget", "tiny", "--steps", "0"],
             ["train", "--budget", "tiny", "--steps", "2"],  # the cache path is a file
             ["discover", "--budget", "tiny", "--steps", "2", "--seeds", "0", "1", "0"],
             ["bench", "--budget", "tiny", "--models", "mlp", "mlp"]]
    for args in cases:
        res = subprocess.run([sys.executable, "-m", "eqhelpers", *args, "--out",
                              str(tmp_path / "o"), "--no-progress"], env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, (args, res.stderr)
        assert "Traceback" not in res.stderr and res.stderr.startswith("error:"), res.stderr
