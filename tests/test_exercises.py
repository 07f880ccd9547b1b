"""The hands-on checks (eqhelpers.exercises): a right solution passes, common mistakes fail with
a hint, and an unwritten one lets the notebook go on."""

import itertools

import pytest
import torch

from eqhelpers.budget import get_budget
from eqhelpers.data import load_task
from eqhelpers.equivariance import field_mse
from eqhelpers.exercises import (
    check_boost,
    check_e_prime,
    check_expm_step,
    check_forces,
    check_frame_average,
    check_haar_rotations,
    check_l_equi,
    check_mystery,
    check_pareto,
    check_symmetry_score,
)
from eqhelpers.fields import act
from eqhelpers.models import make_model


@pytest.fixture(scope="module")
def setting():
    task = load_task("gravity_planar", "tiny")
    torch.manual_seed(0)
    model = make_model("transformer", task.spec, width=16, layers=2)
    return model, task["train"].index(slice(0, 16)), task.group


def l_equi(model, batch, g):
    moved = act(g, batch)
    return field_mse(model(moved), moved)


def l_equi_unmoved_targets(model, batch, g):  # compares f(g·x) with y
    return field_mse(model(act(g, batch)), batch)


def l_equi_self(model, batch, g):  # compares f(g·x) with g·f(x)
    return field_mse(model(act(g, batch)), act(g, model(batch), model.spec.outputs))


def e_prime(model, x, gs):
    f = model(x)
    total = 0
    for g in gs:
        f_g, g_f = model(act(g, x)), act(g, f, model.spec.outputs)
        total = total + torch.cat([(f_g[k] - g_f[k]).flatten(1) for k in f], 1).norm(dim=1)
    return (total / len(gs)).mean()


def e_prime_squared(model, x, gs):
    f = model(x)
    total = 0
    for g in gs:
        f_g, g_f = model(act(g, x)), act(g, f, model.spec.outputs)
        total = total + (torch.cat([(f_g[k] - g_f[k]).flatten(1) for k in f], 1) ** 2).sum(1)
    return (total / len(gs)).mean()


def e_prime_per_particle(model, x, gs):  # a norm per particle, not per sample
    f = model(x)
    return torch.stack([(model(act(g, x))[k] - act(g, f, model.spec.outputs)[k]).norm(dim=-1).mean()
                        for g in gs for k in f]).mean()


def expm_step(points, generators, r, u):
    z = r * (2 * u - 1)
    g = torch.linalg.matrix_exp(torch.einsum("bk,kij->bij", z, generators))
    return points @ g.transpose(1, 2)


def todo(*args):
    raise NotImplementedError


def test_l_equi_right_and_wrong(setting):
    model, batch, group = setting
    assert check_l_equi(l_equi, model, batch, group) is True

    def inverse_targets(model, batch, g):
        return field_mse(model(act(g, batch)), act(g.inverse(), batch))

    def task_loss(model, batch, g):
        return field_mse(model(batch), batch)

    for wrong, named in ((l_equi_unmoved_targets, "targets are not moved"),
                         (l_equi_self, "self-consistency"), (inverse_targets, "g⁻¹"),
                         (task_loss, "task loss")):
        with pytest.raises(AssertionError, match=named):
            check_l_equi(wrong, model, batch, group)
    with pytest.raises(AssertionError, match="one number"):
        check_l_equi(lambda m, b, g: torch.zeros(3), model, batch, group)


def test_l_equi_that_cannot_be_back_propagated_fails(setting):
    """The right value, but a number the optimiser cannot use, is not a loss."""
    model, batch, group = setting

    def as_float(model, batch, g):
        return l_equi(model, batch, g).item()

    def under_no_grad(model, batch, g):
        with torch.no_grad():
            return l_equi(model, batch, g)

    def detached(model, batch, g):
        return l_equi(model, batch, g).detach()

    for wrong in (as_float, under_no_grad, detached):
        with pytest.raises(AssertionError, match="cannot be back-propagated"):
            check_l_equi(wrong, model, batch, group)


def test_e_prime_right_and_wrong(setting):
    model, batch, group = setting
    assert check_e_prime(e_prime, model, batch, group, M=3) is True

    def summed_over_m(model, x, gs):
        return e_prime(model, x, gs) * len(gs)

    def invariance(model, x, gs):
        f = model(x)
        flat = lambda d: torch.cat([v.flatten(1) for v in d.values()], 1)  # noqa: E731
        return torch.stack([(flat(model(act(g, x))) - flat(f)).norm(dim=1) for g in gs]).mean()

    def inverse(model, x, gs):
        return e_prime(model, x, [g.inverse() for g in gs]) if False else torch.stack([
            torch.cat([(model(act(g, x))[k] - act(g.inverse(), model(x), model.spec.outputs)[k])
                       .flatten(1) for k in model.spec.outputs], 1).norm(dim=1)
            for g in gs]).mean()

    def orbit_means(model, x, gs):  # E, not E′
        f = model(x)
        flat = lambda d: torch.cat([v.flatten(1) for v in d.values()], 1)  # noqa: E731
        f_g = torch.stack([flat(model(act(g, x))) for g in gs]).mean(0)
        g_f = torch.stack([flat(act(g, f, model.spec.outputs)) for g in gs]).mean(0)
        return (g_f - f_g).norm(dim=1).mean()

    for wrong, named in ((e_prime_squared, "squared norm"), (summed_over_m, "sum over the M"),
                         (invariance, "invariance error"), (inverse, "g⁻¹"),
                         (orbit_means, "that is E,"), (e_prime_per_particle, "per particle")):
        with pytest.raises(AssertionError, match=named):
            check_e_prime(wrong, model, batch, group, M=3)


def haar(n, generator):
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    w, x, y, z = (q / q.norm(dim=1, keepdim=True)).unbind(1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], 1)


def test_haar_rotations_right_and_the_usual_wrong_samplers():
    from eqhelpers.groups import axis_angle_to_matrix

    assert check_haar_rotations(haar) is True

    def euler(n, generator):
        a, b, c = (2 * torch.pi * torch.rand(n, generator=generator, dtype=torch.float64)
                   for _ in range(3))
        z = torch.tensor([0.0, 0, 1], dtype=torch.float64).expand(n, 3)
        y = torch.tensor([0.0, 1, 0], dtype=torch.float64).expand(n, 3)
        return axis_angle_to_matrix(z, a) @ axis_angle_to_matrix(y, b / 2) @ axis_angle_to_matrix(z, c)

    def uniform_angle(n, generator):
        axis = torch.randn(n, 3, generator=generator, dtype=torch.float64)
        theta = torch.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        return axis_angle_to_matrix(axis / axis.norm(dim=1, keepdim=True), theta)

    def qr_unsigned(n, generator):
        q, _ = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator, dtype=torch.float64))
        return q

    def not_orthogonal(n, generator):
        return torch.randn(n, 3, 3, generator=generator, dtype=torch.float64)

    def ignores_generator(n, generator):
        return haar(n, None)

    def box_quaternion(n, generator):
        q = 2 * torch.rand(n, 4, generator=generator, dtype=torch.float64) - 1
        w, x, y, z = (q / q.norm(dim=1, keepdim=True)).unbind(1)
        return haar_from(w, x, y, z)

    def with_reflections(n, generator):
        r = haar(n, generator)
        flip = torch.rand(n, generator=generator, dtype=torch.float64) < 0.5
        r[flip, :, 0] *= -1
        return r

    for wrong, named in ((euler, "Euler"), (uniform_angle, "uniform on \\[0, π\\]"),
                         (qr_unsigned, "positive diagonal"), (with_reflections, "det −1"),
                         (not_orthogonal, "not orthogonal"), (ignores_generator, "same seed"),
                         (box_quaternion, "Gaussian")):
        with pytest.raises(AssertionError, match=named):
            check_haar_rotations(wrong)
    with pytest.raises(AssertionError, match="shape"):
        check_haar_rotations(lambda n, generator: haar(n, generator)[:10])


def haar_from(w, x, y, z):
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], 1)


def pareto(points):
    x, y = points[:, 0], points[:, 1]
    beaten = ((x[None] <= x[:, None]) & (y[None] <= y[:, None])
              & ((x[None] < x[:, None]) | (y[None] < y[:, None])))
    return ~beaten.any(1)


def test_pareto_right_and_wrong():
    from importlib.resources import files

    from eqhelpers.sweep import load_sweep

    shipped = load_sweep(files("eqhelpers") / "precomputed" / "sweep_gravity_planar_cpu")
    assert check_pareto(pareto, shipped) is True

    def largest(points):
        return pareto(-points)

    def argmin_only(points):
        mask = torch.zeros(len(points), dtype=torch.bool)
        mask[points[:, 1].argmin()] = True
        return mask

    def strict(points):
        x, y = points[:, 0], points[:, 1]
        return ~((x[None] < x[:, None]) & (y[None] < y[:, None])).any(1)

    def indices(points):
        return pareto(points).nonzero().flatten()

    for wrong, named in ((largest, "largest"), (argmin_only, "only one point"),
                         (strict, "ties on the other"), (indices, "boolean mask")):
        with pytest.raises(AssertionError, match=named):
            check_pareto(wrong, shipped)


@pytest.fixture(scope="module")
def axis_setting():
    task = load_task("hidden_axis", "tiny")
    torch.manual_seed(0)
    model = make_model("mlp", task.spec, width=16, layers=2)
    L = torch.randn(3, 3, generator=torch.Generator().manual_seed(3))
    return model, task["test"], L


def symmetry_score(model, sample, L, z):
    from eqhelpers.augment import move, normalise
    from eqhelpers.evaluation import mse

    g = torch.linalg.matrix_exp(z[:, None, None] * normalise(L[None])[0])
    d = mse(model, move(sample, g)) / mse(model, sample)
    return d, min(1.0, 1.0 / d)


def test_symmetry_score_right_and_wrong(axis_setting):
    from eqhelpers.augment import move, normalise
    from eqhelpers.evaluation import mse

    model, sample, L = axis_setting
    assert check_symmetry_score(symmetry_score, model, sample, L) is True

    def inverted(model, sample, L, z):
        d, _ = symmetry_score(model, sample, L, z)
        return 1 / d, min(1.0, d)

    def unnormalised(model, sample, L, z):
        g = torch.linalg.matrix_exp(z[:, None, None] * L)
        d = mse(model, move(sample, g)) / mse(model, sample)
        return d, min(1.0, 1 / d)

    def elementwise(model, sample, L, z):
        g = torch.exp(z[:, None, None] * normalise(L[None])[0])
        d = mse(model, move(sample, g)) / mse(model, sample)
        return d, min(1.0, 1 / d)

    def unclipped(model, sample, L, z):
        d, _ = symmetry_score(model, sample, L, z)
        return d, 1 / d

    def score_is_d(model, sample, L, z):
        d, _ = symmetry_score(model, sample, L, z)
        return d, min(1.0, d)

    for wrong, named in ((inverted, "inverted"), (unnormalised, "not normalised"),
                         (elementwise, "element by element")):
        with pytest.raises(AssertionError, match=named):
            check_symmetry_score(wrong, model, sample, L)
    # this untrained model happens to do better on the moved copies (D < 1): 1/D must be clipped
    with pytest.raises(AssertionError, match="clip it"):
        check_symmetry_score(unclipped, model, sample, L)
    with pytest.raises(AssertionError, match="not min\\(1, D\\)"):
        check_symmetry_score(score_is_d, model, sample, L)


def boost(z):
    K = torch.zeros(3, 3, dtype=torch.float64)
    K[0, 1] = K[1, 0] = 1.0
    return torch.linalg.matrix_exp(z[:, None, None] * K)


def test_boost_right_and_wrong():
    assert check_boost(boost) is True

    def rotation(z):
        A = torch.zeros(3, 3, dtype=torch.float64)
        A[0, 1], A[1, 0] = -1.0, 1.0
        return torch.linalg.matrix_exp(z[:, None, None] * A)

    def elementwise(z):
        K = torch.zeros(3, 3, dtype=torch.float64)
        K[0, 1] = K[1, 0] = 1.0
        return torch.exp(z[:, None, None] * K)

    def wrong_axes(z):
        K = torch.zeros(3, 3, dtype=torch.float64)
        K[0, 2] = K[2, 0] = 1.0
        return torch.linalg.matrix_exp(z[:, None, None] * K)

    for wrong, named in ((rotation, "rotations of the"), (lambda z: boost(-z), "by −z"),
                         (elementwise, "element by element"), (wrong_axes, "interval")):
        with pytest.raises(AssertionError, match=named):
            check_boost(wrong)


def forces(energy, pos):
    pos = pos.requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(pos).sum(), pos, create_graph=True)
    return -grad


def test_forces_right_and_wrong():
    assert check_forces(forces) is True

    def uphill(energy, pos):
        return -forces(energy, pos)

    def mean_energy(energy, pos):
        pos = pos.requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(pos).mean(), pos, create_graph=True)
        return -grad

    def no_graph(energy, pos):
        pos = pos.requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(pos).sum(), pos)
        return -grad

    for wrong, named in ((uphill, "downhill"), (mean_energy, "batch size"),
                         (no_graph, "create_graph=True")):
        with pytest.raises(AssertionError, match=named):
            check_forces(wrong)


def test_expm_step_right_and_wrong():
    assert check_expm_step(expm_step) is True

    def elementwise_exp(points, generators, r, u):
        z = r * (2 * u - 1)
        return points @ torch.exp(torch.einsum("bk,kij->bij", z, generators)).transpose(1, 2)

    def no_transpose(points, generators, r, u):
        z = r * (2 * u - 1)
        return points @ torch.linalg.matrix_exp(torch.einsum("bk,kij->bij", z, generators))

    def detached(points, generators, r, u):
        return expm_step(points, generators.detach(), r, u)

    for wrong in (elementwise_exp, no_transpose):
        with pytest.raises(AssertionError, match="differ"):
            check_expm_step(wrong)
    with pytest.raises(AssertionError, match="differentiabl"):
        check_expm_step(detached)


def test_an_unwritten_exercise_lets_the_notebook_go_on(setting, capsys):
    model, batch, group = setting
    assert check_l_equi(todo, model, batch, group) is False
    assert check_e_prime(todo, model, batch, group) is False
    assert check_expm_step(todo) is False
    assert capsys.readouterr().out.count("not written yet") == 3


AXIS_MYSTERY = 0  # mystery 0 hides rotations about one axis

HANDS_ON = (  # notebook, the learner's function, its check
    ("01_group_actions", "my_random_rotations", "check_haar_rotations"),
    ("02_equivariance_loss", "my_e_prime", "check_e_prime"),
    ("02_equivariance_loss", "my_l_equi", "check_l_equi"),
    ("03_tradeoff_sweep", "my_pareto", "check_pareto"),
    ("04_discovering_symmetry", "my_augment", "check_expm_step"),
    ("04_discovering_symmetry", "my_symmetry_score", "check_symmetry_score"),
    ("05_end_to_end", "my_boost", "check_boost"),
    ("06_molecules_3d", "my_forces", "check_forces"),
    ("07_build_learn_or_canonicalize", "my_frame_average", "check_frame_average"),
    ("07_build_learn_or_canonicalize", "my_capstone", "check_mystery"),
)


def _solution_of(notebook: str, fn: str) -> str:
    """The code block of the solutions file that defines ``fn``."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "notebooks" / "solutions"
            / f"{notebook}_solutions.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if f"def {fn}(" in b]
    assert len(blocks) == 1, (notebook, fn)
    return blocks[0]


def test_the_instructors_solutions_pass_the_notebooks_checks(setting, axis_setting):
    """The code in notebooks/solutions/ is what every hands-on cell's check accepts."""
    from importlib.resources import files

    from eqhelpers.augment import move, normalise
    from eqhelpers.equivariance import field_mse as fm
    from eqhelpers.evaluation import mse
    from eqhelpers.sweep import load_sweep

    model, batch, group = setting
    axis_model, axis_sample, L = axis_setting
    shipped = load_sweep(files("eqhelpers") / "precomputed" / "sweep_gravity_planar_cpu")
    calls = {
        "check_haar_rotations": lambda f: check_haar_rotations(f),
        "check_e_prime": lambda f: check_e_prime(f, model, batch, group, M=3),
        "check_l_equi": lambda f: check_l_equi(f, model, batch, group),
        "check_pareto": lambda f: check_pareto(f, shipped),
        "check_expm_step": lambda f: check_expm_step(f),
        "check_symmetry_score": lambda f: check_symmetry_score(f, axis_model, axis_sample, L),
        "check_boost": lambda f: check_boost(f),
        "check_forces": lambda f: check_forces(f),
        "check_frame_average": lambda f: check_frame_average(f),
        # the capstone on a mystery with one hidden rotation axis, at the cpu budget (discovery
        # needs its steps): about a minute and a half
        "check_mystery": lambda f: check_mystery(f, AXIS_MYSTERY, "cpu"),
    }
    for notebook, fn, check in HANDS_ON:
        scope = {"torch": torch, "act": act, "field_mse": fm, "move": move, "normalise": normalise,
                 "mse": mse, "itertools": itertools, "budget": get_budget("cpu")}
        exec(_solution_of(notebook, fn), scope)
        assert calls[check](scope[fn]) is True, (notebook, fn)


def test_the_notebooks_leave_the_hands_on_cells_to_the_learner():
    """Each hands-on cell is a stub the learner fills in, checked in the same cell; the course
    has at least 8 of them, in at least 5 notebooks."""
    from pathlib import Path

    import nbformat

    nbs = Path(__file__).resolve().parents[1] / "notebooks"
    for name, fn, check in HANDS_ON:
        cells = [c.source for c in nbformat.read(nbs / f"{name}.ipynb", 4).cells
                 if c.cell_type == "code" and f"def {fn}(" in c.source]
        assert len(cells) == 1, (name, fn)
        assert "raise NotImplementedError" in cells[0] and f"{check}({fn}" in cells[0], (name, fn)
    assert len(HANDS_ON) >= 10 and len({n for n, _, _ in HANDS_ON}) >= 6
    # and no notebook holds a hands-on cell this list does not know
    for path in sorted(nbs.glob("[0-9][0-9]_*.ipynb")):
        checks = [c.source for c in nbformat.read(path, 4).cells
                  if c.cell_type == "code" and "raise NotImplementedError" in c.source]
        assert len(checks) == sum(n == path.stem for n, _, _ in HANDS_ON), path.name


def test_a_result_passed_instead_of_the_function_is_named(setting):
    """A learner's likely slip: check_l_equi(l_equi(model, batch, g), ...) — the result, not the
    function — or the whole task where a batch goes. Named before anything runs."""
    model, batch, group = setting
    with pytest.raises(TypeError, match="pass your function itself"):
        check_l_equi(torch.tensor(0.5), model, batch, group)
    with pytest.raises(TypeError, match="the batch must be a Sample"):
        check_e_prime(e_prime, model, dict(batch.data), group)
    with pytest.raises(TypeError, match="group must be a Group"):
        check_l_equi(l_equi, model, batch, "SO(2)")
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        check_expm_step(expm_step, n=0)
    assert check_l_equi(l_equi, model, batch, group)  # the right call still passes
