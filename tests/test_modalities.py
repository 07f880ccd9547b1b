"""SEMoLA across modalities: images moved by maps of their domain, the boost (a non-compact
group), molecular energies, and the end-to-end discovery on each with its read-out."""

import math

import pytest
import torch

from eqhelpers import data
from eqhelpers.augment import constraints, cosine_similarity, linear_dim, normalise
from eqhelpers.discover import discover, discovered_group
from eqhelpers.evaluation import accuracy, evaluate
from eqhelpers.fields import Field, Sample, TaskSpec, act, resample_image
from eqhelpers.groups import SO2, LieGroup, Transform
from eqhelpers.models import make_model

F64 = torch.float64
ROT = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=F64)  # rotation generator of the plane
SCALE = torch.eye(2, dtype=F64)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EQHELPERS_CACHE", str(tmp_path / "cache"))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------


def test_an_image_moves_with_the_map_of_its_domain():
    x = torch.zeros(1, 1, 81, dtype=F64)
    x.view(9, 9)[4, 6] = 1.0  # right of the centre (x to the right, y down)
    quarter = torch.linalg.matrix_exp(math.pi / 2 * ROT)[None]
    y = resample_image(x, quarter, (9, 9)).view(9, 9)
    assert (y > 0.5).nonzero().tolist() == [[6, 4]]  # (x, y) = (0.44, 0) -> (0, 0.44): below
    twice = resample_image(resample_image(x, quarter, (9, 9)), quarter, (9, 9)).view(9, 9)
    assert (twice > 0.5).nonzero().tolist() == [[4, 2]]  # a half-turn: left of the centre
    bigger = resample_image(x, 2 * torch.eye(2, dtype=F64)[None], (9, 9)).view(9, 9)
    assert bigger[4, 8] > 0.4 and bigger[4, 6] < 0.1  # a scaling pushes it outwards


def test_image_action_composes_like_the_matrices():
    images, _ = data.digit_images()
    x = images[:4]
    a = torch.linalg.matrix_exp(0.3 * ROT + 0.1 * SCALE).expand(4, 2, 2)
    b = torch.linalg.matrix_exp(-0.2 * ROT).expand(4, 2, 2)
    size = (data.DIGIT_CANVAS, data.DIGIT_CANVAS)
    two_steps = resample_image(resample_image(x, a, size), b, size)
    one_step = resample_image(x, b @ a, size)
    # bilinear resampling twice blurs a little more than once: close, not equal
    assert float((two_steps - one_step).abs().mean()) < 0.02
    assert float((resample_image(x, a, size) - x).abs().mean()) > 0.05


def test_image_fields_are_checked():
    with pytest.raises(ValueError, match="size"):
        Field("image")
    with pytest.raises(ValueError, match="size"):
        Field("image", size=(1, 9))
    with pytest.raises(ValueError, match="only an image"):
        Field("vector", size=(8, 8))
    with pytest.raises(ValueError, match="H·W channels"):
        Field("image", size=(8, 8), channels=10)
    f = Field("image", size=(8, 8))
    spec = {"image": f}
    s = Sample({"image": torch.rand(3, 1, 64)}, spec)
    with pytest.raises(ValueError, match="2×2"):
        act(Transform.trusted(rot=torch.eye(3).expand(3, 3, 3)), s)
    with pytest.raises(ValueError, match="must have shape"):
        Sample({"image": torch.rand(3, 1, 63)}, spec)


def test_image_constraints_are_the_derivative_of_the_moved_prediction():
    t = data.load_task("digits_no_symmetry", "tiny", dtype=F64)
    torch.manual_seed(0)
    m = make_model("mlp", t.spec, width=16, layers=2, dtype=F64)
    s = t["test"].index(slice(0, 4))
    c = constraints(m, s, 4)
    L = torch.randn(2, 2, dtype=F64, generator=gen(3))
    eps = 1e-4

    def f(A):
        moved = resample_image(s["image"], A.expand(4, 2, 2), (16, 16))
        return m(s.replace(image=moved))["y"].reshape(4, -1)

    fd = (f(torch.linalg.matrix_exp(eps * L)) - f(torch.linalg.matrix_exp(-eps * L))) / (2 * eps)
    got = c @ L.reshape(-1)
    assert torch.allclose(got, fd.reshape(-1).detach(), rtol=0.05, atol=1e-3)
    assert linear_dim(t.spec) == 2


def test_digits_tasks_labels_moves_and_disjoint_sources():
    rot = data.load_task("digits_rotated", "tiny", dtype=F64)
    assert rot.classes == 10
    for split in ("train", "test", "ood"):
        lab = rot[split]["label"]
        assert torch.equal(lab.sum(-1), torch.ones_like(lab.sum(-1)))  # one-hot
        img = rot[split]["image"]
        assert float(img.min()) >= 0 and float(img.max()) <= 1
    # the same seed gives the same data; another seed other draws
    again = data.generate_task("digits_rotated", 256, 64, 64, seed=0)
    assert torch.equal(again["train"]["image"], rot["train"]["image"])
    other = data.generate_task("digits_rotated", 256, 64, 64, seed=1)
    assert not torch.equal(other["train"]["image"], again["train"]["image"])
    # no test image is a moved copy of a training source: compare the upright sources' pools
    images, _ = data.digit_images()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(1797))
    n_train = int(data.DIGIT_POOLS[0] * len(order))
    n_val = int(sum(data.DIGIT_POOLS[:2]) * len(order))
    assert not set(order[:n_train].tolist()) & set(order[n_val:].tolist())
    # a digit's label has no simulator; the no-symmetry target does, and it is recomputed exactly
    with pytest.raises(ValueError, match="no simulator"):
        rot.simulate(rot["test"])
    ns = data.load_task("digits_no_symmetry", "tiny", dtype=F64)
    assert torch.allclose(ns.simulate(ns["test"]), ns["test"]["y"])
    # scaling keeps a digit's mass about the same share of the picture × s²
    sc = data.load_task("digits_scaled", "tiny", dtype=F64)
    ratio = sc["ood"]["image"].sum(-1) / sc["test"]["image"].sum(-1).mean()
    assert float(ratio.max()) > 1.5 and float(ratio.min()) < 0.7  # OOD: beyond e^{±0.25}


def test_accuracy_counts_the_largest_channel():
    spec = TaskSpec(inputs={"x": Field("vector", channels=2)},
                    outputs={"label": Field("scalar", channels=3)}, n_particles=1)

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.spec, self.w = spec, torch.nn.Parameter(torch.zeros(()))

        def forward(self, s):
            return {"label": torch.tensor([[[0.9, 0.1, 0.0]], [[0.1, 0.2, 0.7]]]) + self.w}

    s = Sample({"x": torch.zeros(2, 1, 2),
                "label": torch.tensor([[[1.0, 0, 0]], [[1.0, 0, 0]]])}, spec.spec)
    assert accuracy(Fixed(), s) == 0.5
    with pytest.raises(ValueError, match="one-hot output"):
        accuracy(Fixed(), s, field="x")


# --------------------------------------------------------------------------------------------
# the boost: a non-compact symmetry
# --------------------------------------------------------------------------------------------


def test_boost_target_is_invariant_under_boosts_only():
    x = torch.randn(200, 1, 3, dtype=F64, generator=gen())
    k = data.boost_generator()
    boost = torch.linalg.matrix_exp(0.8 * k)
    assert not torch.allclose(boost @ boost.T, torch.eye(3, dtype=F64))  # not a rotation
    y = data.boost_target(x)
    assert torch.allclose(data.boost_target(x @ boost.T), y, atol=1e-12)
    rot = SO2((0.0, 0.0, 1.0))._matrix(torch.tensor([0.8], dtype=F64))[0]
    assert float((data.boost_target(x @ rot.T) - y).abs().mean()) > 0.1
    # the group keeps the boost as it is: LieGroup(orthogonal=True) would keep only the skew part
    t = data.load_task("boost", "tiny", dtype=F64)
    assert torch.allclose(t.group.generators(), k[None])
    with pytest.raises(ValueError, match="zero after keeping its skew"):
        LieGroup(k)  # orthogonal=True: a boost has no skew part
    g = t.group.sample(64, generator=gen(1), dtype=F64).rot
    assert torch.allclose(data.boost_target(torch.einsum("bij,bnj->bni", g, t["test"]["x"])),
                          t["test"]["y"].double(), atol=1e-5)


def test_discovered_group_keeps_non_orthogonal_generators():
    k = normalise(data.boost_generator())
    g = discovered_group(k, torch.tensor([0.5], dtype=F64))
    m = g.sample(16, generator=gen(), dtype=F64).rot
    assert float((m.transpose(1, 2) @ m - torch.eye(3, dtype=F64)).abs().max()) > 1e-3
    assert torch.allclose(torch.linalg.det(m), torch.ones(16, dtype=F64))  # trace K = 0


# --------------------------------------------------------------------------------------------
# molecules: an invariant energy and a control without symmetry
# --------------------------------------------------------------------------------------------


def test_molecular_energy_task_is_rotated_and_relabelled_exactly():
    t = data.load_task("ethanol_energy", "tiny", dtype=F64, n_train=24, n_val=4, n_test=8)
    assert set(t.spec.outputs) == {"energy"}
    # conformers in all orientations: the first principal axes point every which way
    pos = t["train"]["pos"] - t["train"]["pos"].mean(1, keepdim=True)
    axes = torch.linalg.eigh(pos.transpose(1, 2) @ pos).eigenvectors[:, :, -1]
    assert float((axes @ axes[0]).abs().min()) < 0.8
    # the energy of each rotated conformer is MMFF94's for that geometry
    assert torch.allclose(t.simulate(t["test"])[:, :1], t["test"]["energy"], atol=1e-8)
    assert torch.allclose(t.simulate(t["ood"]), t["ood"]["energy"], atol=1e-8)
    ns = data.load_task("ethanol_no_symmetry", "tiny", dtype=F64, n_train=24, n_val=4, n_test=8)
    rot = SO2((0.0, 0.0, 1.0))._matrix(torch.tensor([0.7], dtype=F64))[0]
    turned = torch.einsum("ij,bnj->bni", rot, ns["test"]["pos"])
    y = data.molecule_moment_target(ns["test"]["pos"], ns["test"]["atom"])
    assert torch.allclose(y, ns["test"]["y"])
    assert float((data.molecule_moment_target(turned, ns["test"]["atom"]) - y).abs().mean()) > 1e-3
    shifted = ns["test"]["pos"] + 3.0
    assert torch.allclose(data.molecule_moment_target(shifted, ns["test"]["atom"]), y)


# --------------------------------------------------------------------------------------------
# end-to-end discovery, one per modality (tiny budget; the cpu figures are in the README)
# --------------------------------------------------------------------------------------------


def test_end_to_end_finds_the_hidden_axis_and_makes_the_model_invariant_to_it():
    r = discover("hidden_axis", 1, "tiny", seed=0, end_to_end=True, progress=False)
    assert float(r.cosine.max()) > 0.99
    c = r.comparison
    assert set(c) == {"no augmentation", "end-to-end (this run)", "true group, REMUL"}
    for row in c.values():
        assert {"test_mse", "ood_mse", "E_prime_true", "E_prime_discovered"} <= set(row)
        assert all(math.isfinite(v) for v in row.values())


def test_end_to_end_finds_the_boost():
    r = discover("boost", 1, "tiny", seed=0, progress=False, steps=1500)
    k = normalise(data.boost_generator())
    assert float(cosine_similarity(r.generators, k).max()) > 0.95
    assert r.config["schedule"] == list(data.TASKS["boost"].discovery["schedule"])


def test_discovery_on_digits_finds_the_rotation_not_a_scaling():
    r = discover("digits_rotated", 1, "tiny", seed=0, progress=False, steps=1500)
    cos = cosine_similarity(r.generators, torch.stack([ROT, SCALE]))[0]
    assert float(cos[0]) > 0.9 and float(cos[1]) < 0.3


def test_no_symmetry_signature_on_images():
    # tiny sizes but 1500 training digits: 256 leave the reference model too rough to judge by
    task = data.load_task("digits_no_symmetry", "tiny", n_train=1500)
    r = discover(task, 1, "tiny", seed=0, progress=False, steps=1500)
    assert r.scores.reliable and not bool(r.scores.is_symmetry.any()), r.verdict()
    assert r.verdict().startswith("no symmetry")


def test_cli_end_to_end_records_its_weights_and_rows(tmp_path, capsys):
    from eqhelpers.__main__ import main

    out = tmp_path / "run"
    assert main(["discover", "--task", "boost", "--budget", "tiny", "--steps", "60",
                 "--end-to-end", "--alpha", "1", "--beta", "2", "--consistency", "3",
                 "--lr-generators", "0.03", "--model-warmup", "--lie-weight", "0.5",
                 "--no-progress",
                 "--out", str(out)]) == 0
    d = (out / "discovery.json").read_text()
    import json

    d = json.loads(d)
    assert (d["config"]["alpha"], d["config"]["beta"], d["config"]["w_consistency"]) == (1, 2, 3)
    assert d["config"]["lr_generators"] == 0.03 and d["config"]["model_warmup"] is True
    assert d["config"]["w_lie"] == 0.5
    assert d["config"]["schedule"] == list(data.TASKS["boost"].discovery["schedule"])
    assert set(d["comparison"]) == {"no augmentation", "end-to-end (this run)",
                                    "true group, REMUL"}
    assert "E′ true group" in capsys.readouterr().out
    assert main(["discover", "--task", "boost", "--budget", "tiny", "--steps", "20",
                 "--score-range", "-1", "--no-progress", "--out", str(tmp_path / "bad")]) == 2
    assert "score_range must be a finite number > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse's own error exit
        main(["discover", "--task", "boost", "--budget", "tiny", "--lr-generators", "0",
              "--no-progress", "--out", str(tmp_path / "bad")])
    assert exit_info.value.code == 2
    assert "--lr-generators: must be finite and > 0" in capsys.readouterr().err


def test_no_symmetry_signature_on_molecules():
    # the task's own discovery model (an MLP on coordinates and pair distances) on ethanol
    # conformers whose target depends on their orientation: every learned direction breaks it
    task = data.load_task("ethanol_no_symmetry", "tiny", n_train=512)
    r = discover(task, 1, "tiny", seed=0, progress=False, steps=300)
    assert r.config["model"] == "mlp" and r.config["model_options"] == {"distances": True}
    assert r.scores.reliable and not bool(r.scores.is_symmetry.any()), r.verdict()


def test_end_to_end_finds_so3_in_a_molecular_energy():
    # ethanol's MMFF94 energy, conformers in every orientation, a model that is not invariant
    # by design: the three learned generators span so(3), and the read-out accepts all three
    task = data.load_task("ethanol_energy", "tiny", n_train=2048)
    r = discover(task, 3, "tiny", seed=0, progress=False, steps=1500)
    assert r.config["model_warmup"] is True and r.config["lr_generators"] == 0.05
    assert float(r.principal_angles.max()) <= 10.0, r.principal_angles
    assert r.snapshots[0]["alignment"] < 0.5  # it started far from so(3)
    assert r.verdict().startswith("3 of 3"), r.verdict()


def test_evaluate_reports_accuracy_and_measures_images_in_their_own_group():
    t = data.load_task("digits_rotated", "tiny")
    torch.manual_seed(0)
    m = make_model("mlp", t.spec, width=8, layers=1)
    out = evaluate(m, t, "tiny")
    assert 0.0 <= out["test_accuracy"] <= 1.0 and 0.0 <= out["ood_accuracy"] <= 1.0
    assert out["test_accuracy"] == accuracy(m, t["test"])
    assert out["group_measured"] == t.group.name  # maps of the plane, not E(3)
    assert out["E_prime"] > 0


def test_shipped_end_to_end_runs_say_what_the_readme_says():
    from pathlib import Path

    from eqhelpers.discover import load_discovery

    root = Path(data.__file__).parent / "precomputed"

    def runs(name):
        return [load_discovery(p) for p in sorted((root / f"semola_{name}_cpu").glob("seed_*"))]

    axis = runs("hidden_axis")
    assert len(axis) == 5 and all(float(r.cosine.max()) >= 0.99 for r in axis)
    assert all(r.config["end_to_end"] and r.config["version"] == "0.4.2" for r in axis)
    charged = runs("charged")
    assert len(charged) == 3 and all(float(r.principal_angles.max()) <= 2.0 for r in charged)
    # the jointly trained model against REMUL with the true group, from the same initial weights
    for rs in (axis, charged):
        e2e, true = (sum(r.comparison[k]["test_mse"] for r in rs) / len(rs)
                     for k in ("end-to-end (this run)", "true group, REMUL"))
        assert e2e <= 1.10 * true
    digits = runs("digits_rotated")
    cos = [float(cosine_similarity(r.generators[:1], normalise(ROT)).max()) for r in digits]
    assert len(digits) == 5 and min(cos) >= 0.95
    ood = {k: sum(r.comparison[k]["ood_accuracy"] for r in digits) / 5
           for k in ("no augmentation", "end-to-end (this run)")}
    assert ood["end-to-end (this run)"] > ood["no augmentation"] + 0.2
    boost = runs("boost")
    k = normalise(data.boost_generator())
    assert all(float(cosine_similarity(r.generators, k).max()) >= 0.95 for r in boost)
    for name in ("digits_no_symmetry", "ethanol_no_symmetry"):
        assert all(r.verdict().startswith("no symmetry") for r in runs(name))
    energy = runs("ethanol_energy") + runs("aspirin_energy")
    assert len(energy) == 6
    for r in energy:
        assert float(r.principal_angles.max()) <= 10.0 and r.config["model_warmup"]
        rows = r.comparison
        assert rows["end-to-end (this run)"]["test_mse"] < rows["no augmentation"]["test_mse"]


def test_soft_equivariance_ceiling_is_trained_as_discover_trains_and_says_what_the_readme_says():
    """benchmarks/soft_equivariance.py: its plain and REMUL β/α = 1 rows are the shipped end-to-end
    runs' "no augmentation" and "true group, REMUL" rows (same weights, batches and evaluation),
    and with the true group no soft objective meets both ratios of SEMoLA's claim at this budget."""
    import json
    from pathlib import Path

    from eqhelpers.discover import load_discovery

    root = Path(__file__).resolve().parents[1]
    res = json.loads((root / "benchmarks" / "results" / "soft_equivariance_cpu.json").read_text())
    shipped = Path(data.__file__).parent / "precomputed"
    same = {"plain": "no augmentation", "REMUL β/α=1": "true group, REMUL"}
    checked = 0
    for r in res["runs"]:
        run = shipped / f"semola_{r['task']}_cpu" / f"seed_{r['seed']}"
        if r["row"] in same and run.exists():
            row = load_discovery(run).comparison[same[r["row"]]]
            assert r["test_mse"] == pytest.approx(row["test_mse"], rel=1e-5)
            assert r["E_prime_true"] == pytest.approx(row["E_prime_true"], rel=1e-5)
            checked += 1
    assert checked == 12  # hidden axis and charged, 3 seeds, 2 rows
    for task in ("hidden_axis", "charged"):
        rows = res["summary"][task]["rows"]
        assert len(rows) == 11 and all(v["seeds"] == 3 for v in rows.values())
        assert not any(v["meets_both"] for v in rows.values())
        assert rows["REMUL β/α=1"]["E_prime_plain_over_row"] < 2.0
    # the same rows with a 4× wider MLP (--width 256): the Lie-derivative penalty now fits better
    # than REMUL, and its weight moves along a frontier that passes just short of both ratios
    wide = json.loads((root / "benchmarks" / "results"
                       / "soft_equivariance_cpu_width256.json").read_text())
    assert wide["width"] == 256 and {r["width"] for r in wide["runs"]} == {256}
    rows = wide["summary"]["hidden_axis"]["rows"]
    assert len(rows) == 11 and all(v["seeds"] == 3 for v in rows.values())
    assert not any(v["meets_both"] for v in rows.values())
    lie = [rows[f"… consistency 1 + Lie-derivative penalty {w}"] for w in (10, 100, 300)]
    assert lie[0]["test_mse_over_remul_1"] < 0.5
    assert [v["E_prime_plain_over_row"] for v in lie] == sorted(v["E_prime_plain_over_row"]
                                                                for v in lie)
    assert lie[2]["E_prime_plain_over_row"] >= 10 and lie[2]["test_mse_over_remul_1"] > 1.10
    # on 16× the training points (--n-train 48000) the soft terms reach less at REMUL's error:
    # the best ratio within 1.10 of REMUL's test MSE falls (6.1× on the budget's points)
    more = json.loads((root / "benchmarks" / "results"
                       / "soft_equivariance_cpu_ntrain48000.json").read_text())
    assert more["n_train"] == 48000 and {r["n_train"] for r in more["runs"]} == {48000}

    def best_within(rows):
        return max(v["E_prime_plain_over_row"] for v in rows.values()
                   if v["test_mse_over_remul_1"] <= 1.10)

    rows48 = more["summary"]["hidden_axis"]["rows"]
    assert len(rows48) == 11 and not any(v["meets_both"] for v in rows48.values())
    assert best_within(rows48) < 0.7 * best_within(res["summary"]["hidden_axis"]["rows"])


@pytest.mark.parametrize("task_name, invariant_model", [("hidden_axis", "mlp along the axis"),
                                                        ("charged", "egnn")])
def test_the_lie_derivative_term_vanishes_exactly_for_an_equivariant_model(task_name,
                                                                           invariant_model):
    """The end-to-end objective's Lie-derivative term: ≈ 0 for a model equivariant to the
    generators (inputs moved, outputs moved back by ρ), and clearly not for an unconstrained one;
    added to the loss with its weight, and only when its weight is not 0."""
    from eqhelpers.augment import LearnedAugmentation, LieAugmenter
    from eqhelpers.groups import linear_generators

    task = data.load_task(task_name, "tiny")
    true = normalise(linear_generators(task.group))
    batch = task["train"].index(slice(0, 32))

    def objective(w_lie):
        aug = LieAugmenter(linear_dim(task.spec), len(true), init=true)
        return LearnedAugmentation(aug, w_lie=w_lie, lr=0.0)

    def lie(model) -> float:
        value = objective(1.0).lie_derivative(model, batch, gen(3))
        assert torch.isfinite(value)
        return value.item()

    torch.manual_seed(0)
    if invariant_model == "egnn":
        invariant = make_model("egnn", task.spec, width=16, layers=2)
    else:  # every first-layer unit sees only the coordinate along the hidden axis
        invariant = make_model("mlp", task.spec, width=16, layers=2)
        first = next(m for m in invariant.modules() if isinstance(m, torch.nn.Linear))
        axis = torch.tensor(data.HIDDEN_AXIS, dtype=first.weight.dtype)
        with torch.no_grad():
            first.weight.copy_(torch.randn(first.weight.shape[0], 1) * axis)
    free = make_model("transformer" if task_name == "charged" else "mlp", task.spec, width=16,
                      layers=2)
    lie_free, lie_eq = lie(free), lie(invariant)
    assert lie_free > 1e-4
    assert lie_eq < 1e-4 * lie_free
    # in the loss: w_lie times the term (the same draws: the term comes after the others)
    off, parts_off = objective(0.0)(free, batch, gen(5))
    on, parts_on = objective(10.0)(free, batch, gen(5))
    assert "lie" not in parts_off and objective(0.0).config()["w_lie"] == 0.0
    assert on.item() == pytest.approx(off.item() + 10.0 * parts_on["lie"].item(), rel=1e-5)
    assert parts_on["lie"].item() > 1e-4
    with pytest.raises(ValueError, match="w_lie"):
        objective(float("nan"))
    with pytest.raises(ValueError, match="w_lie"):
        objective(-1.0)


def _soft_equivariance_benchmark():
    """benchmarks/soft_equivariance.py as a module (it is a script, not part of the package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "soft_equivariance.py"
    spec = importlib.util.spec_from_file_location("soft_equivariance_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_discovery_precision_limits_what_encoding_the_discovered_group_gives_under_the_true():
    """benchmarks/soft_equivariance.py --floor: the exact hidden-axis target, made invariant about
    an axis tilted by the shipped end-to-end runs' own discovery error, already has an E′ under the
    true group above a tenth of the plain model's: a model that took on the discovered group
    exactly could not meet that criterion; it needs a sharper discovery."""
    from pathlib import Path

    from eqhelpers.discover import load_discovery

    bench = _soft_equivariance_benchmark()
    assert bench.misalignment_floor(0.0) < 1e-12
    f1, f2 = bench.misalignment_floor(0.1), bench.misalignment_floor(0.2)
    assert f2 / f1 == pytest.approx(2.0, rel=0.02)  # linear in the tilt
    shipped = Path(data.__file__).parent / "precomputed" / "semola_hidden_axis_cpu"
    runs = [load_discovery(p) for p in sorted(shipped.glob("seed_*"))]
    assert len(runs) == 5
    for r in runs:
        plain = r.comparison["no augmentation"]["E_prime_true"]
        assert bench.misalignment_floor(float(r.principal_angles.max())) > plain / 10


def test_discovery_through_a_plain_model_is_no_more_precise_than_end_to_end():
    """benchmarks/soft_equivariance.py --model-axis: a generator that learns from a fixed model
    alone (discovery's augmented term) returns to the true axis for the exact target, settles
    between the true axis and a tilted target's own; and learned from the shipped plain
    hidden-axis models it settles as far off as the end-to-end runs' discovered axes — too far for
    any model holding that axis to be 10× below the plain model under the true group."""
    import json
    from pathlib import Path

    from eqhelpers.augment import normalise, principal_angles
    from eqhelpers.groups import linear_generators

    root = Path(__file__).resolve().parents[1]
    bench = _soft_equivariance_benchmark()
    task = data.load_task("hidden_axis", "tiny", seed=0)
    true = normalise(linear_generators(task.group))

    def turned(deg):
        t = bench.tilted_target(task, deg)
        return t, normalise(t.rot @ true[0] @ t.rot.T)

    exact = bench.tilted_target(task, 0.0)
    _, start = turned(0.5)
    back = bench.model_axis(exact, task, start, steps=300)
    assert float(principal_angles(back, true).max()) < 1e-3  # from 0.5° off, to the truth
    tilted, own = turned(0.1)
    a = bench.model_axis(tilted, task, true, steps=300)
    assert torch.equal(a, bench.model_axis(tilted, task, true, steps=300))  # by seed
    to_true, to_own = (float(principal_angles(a, g).max()) for g in (true, own))
    assert 0.02 < to_true < 0.08 and 0.02 < to_own < 0.08  # between the two axes
    results = root / "benchmarks" / "results"
    rows = json.loads((results / "soft_equivariance_model_axis_cpu.json").read_text())["rows"]
    assert [r["seed"] for r in rows] == [0, 1, 2, 3, 4]
    for r in rows:
        assert 0.5 < r["end_to_end_axis_deg"] / r["plain_model_axis_deg"] < 2.0
    # a wider or longer-trained plain model sharpens the axis and is more invariant itself: the
    # ceiling stays below 10× (width 256; 6000 and 20 000 steps); more training points, at the
    # budget's steps, sharpen it while the plain model stays as far from invariant: the ceiling
    # rises with the data (12 000 and 48 000 points)
    files = sorted(results.glob("soft_equivariance_model_axis_cpu*.json"))
    assert len(files) == 6
    axes, ratios = {}, {}
    for f in files:
        for r in json.loads(f.read_text())["rows"]:
            key = (r["width"], r["steps"], r.get("n_train", 3000))
            if key[2] == 3000:
                assert r["plain_over_floor"] < bench.E_PRIME_BELOW, (f.name, r)
            assert r["plain_over_floor"] == pytest.approx(
                r["plain_E_prime_true"] / r["floor_at_plain_model_axis"])
            axes.setdefault(key, []).append(r["plain_model_axis_deg"])
            ratios.setdefault(key, []).append(r["plain_over_floor"])
    mean = {k: sum(v) / len(v) for k, v in axes.items()}
    assert mean[(256, 2000, 3000)] < 0.7 * mean[(64, 2000, 3000)]  # more capacity: sharper
    assert mean[(64, 20000, 3000)] < mean[(64, 6000, 3000)] < 0.5 * mean[(64, 2000, 3000)]
    assert mean[(64, 2000, 48000)] < 0.6 * mean[(64, 2000, 3000)]  # more data: sharper
    ceiling = {k: sum(v) / len(v) for k, v in ratios.items()}
    assert ceiling[(64, 2000, 48000)] > 1.5 * ceiling[(64, 2000, 3000)]


def test_model_axis_results_resume_and_a_damaged_file_is_kept(tmp_path, monkeypatch):
    """--model-axis adds the seeds its file lacks and keeps the rest; a file it cannot read stops
    the run with its name, untouched."""
    import json
    from argparse import Namespace

    bench = _soft_equivariance_benchmark()
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    path = tmp_path / "benchmarks" / "results" / "soft_equivariance_model_axis_tiny.json"
    kept = {"seed": 7, "width": 32, "steps": 800, "plain_model_axis_deg": 1.5,
            "plain_E_prime_true": 0.1, "floor_at_plain_model_axis": 0.05, "plain_over_floor": 2.0}
    path.write_text(json.dumps({"rows": [kept]}))
    md = bench.model_axis_table(Namespace(budget="tiny", width=None, steps=None, n_train=None,
                                          seeds=[7]))
    assert "| 7 | 1.500° | – | 5.00e-02 | 2.0× |" in md  # nothing trained: seed 7 was there
    assert json.loads(path.read_text())["rows"] == [kept]
    path.write_text("{not json")
    with pytest.raises(SystemExit, match="not a readable result"):
        bench.model_axis_table(Namespace(budget="tiny", width=None, steps=None, n_train=None,
                                         seeds=[0]))
    assert path.read_text() == "{not json"
    # a plain model for more training points than the task holds, --steps without --model-axis
    # or no training points: refused before anything trains
    task = data.load_task("hidden_axis", "tiny", seed=0)
    with pytest.raises(ValueError, match="256 training points, the run 512"):
        bench.plain_model_axis(task, 0, "tiny", n_train=512)
    for argv in (["--steps", "5"], ["--model-axis", "--n-train", "0"], ["--n-train", "-1"]):
        with pytest.raises(SystemExit):
            bench.main(["--budget", "tiny", *argv])
