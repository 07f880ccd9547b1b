import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from eqhelpers import data  # noqa: E402
from eqhelpers.sweep import SweepResult, summarise  # noqa: E402
from eqhelpers.viz import plot_tradeoff, tradeoff_explorer  # noqa: E402


@pytest.fixture()
def result():
    pts = []
    for beta, (m, e) in {0.0: (1e-3, 1e-1), 1.0: (2e-3, 1e-3), 10.0: (3e-3, 1e-4)}.items():
        for seed in range(2):
            pts.append({"model": "transformer", "beta": beta, "seed": seed,
                        "test_mse": m * (1 + seed / 10), "ood_mse": m, "E": e, "E_prime": e,
                        "E_prime_mse": e, "E_prime_rel": e})
    return SweepResult({"task": "gravity", "budget": "tiny", "seeds": [0, 1]}, pts, summarise(pts))


def test_tradeoff_plot_is_log_log_with_one_marker_per_setting(result):
    ax = plot_tradeoff(result, highlight=3.0)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "E′" in ax.get_xlabel() and "test MSE" in ax.get_ylabel()
    assert ax.get_legend().get_texts()[0].get_text() == "β/α = 3"
    plt.close("all")


def test_exact_models_do_not_stretch_the_equivariance_axis(result):
    # float32 rounding: E′ 3e-7 in absolute terms, 1e-7 relative to the outputs
    pts = list(result.points) + [{"model": "egnn", "beta": 0.0, "seed": s, "test_mse": 5e-4,
                                  "ood_mse": 5e-4, "E": 1e-7, "E_prime": 3e-7,
                                  "E_prime_mse": 1e-14, "E_prime_rel": 1e-7} for s in (0, 1)]
    res = SweepResult(result.config, pts, summarise(pts))
    ax = plot_tradeoff(res, baselines={"constant velocity": 4e-3})
    lo, hi = ax.get_xlim()
    # the learned models span 1e-4 … 1e-1: the axis starts about a decade below, not at 3e-7
    assert 1e-6 < lo < 1e-4 and hi > 1e-1
    notes = [t.get_text() for t in ax.texts]
    assert any("egnn" in n and "3e-07" in n for n in notes)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["constant velocity (learns nothing)"]
    assert any(abs(line.get_ydata()[0] - 4e-3) < 1e-12 for line in ax.get_lines()
               if len(line.get_ydata()) == 2)
    plt.close("all")


def test_explorer_follows_the_sliders_and_trains_live(result, monkeypatch, tmp_path):
    monkeypatch.setenv("EQHELPERS_CACHE", str(tmp_path))
    task = data.load_task("gravity", "tiny")
    from eqhelpers.train import trainer

    box = tradeoff_explorer(result, trainer(task, budget="tiny"))
    alpha, beta = box.sliders
    beta.value = 100.0
    assert "β/α = 100" in box.info.value
    alpha.value = 10.0
    assert "β/α = 10" in box.info.value
    n_figs = len(plt.get_fignums())
    box.button.click()
    assert len(box.live) == 1 and box.live[0]["beta"] == pytest.approx(10.0)
    assert box.live[0]["test_mse"] > 0 and not box.button.disabled
    assert len(plt.get_fignums()) == n_figs  # redraws close their figures
    fig = box.snapshot()  # the state a saved notebook keeps: the highlight and the live point
    labels = [x.get_text() for x in fig.axes[0].get_legend().get_texts()]
    assert "β/α = 10" in labels
    assert any(line.get_marker() == "P" for line in fig.axes[0].get_lines())
    plt.close(fig)


def test_sweeps_record_their_baselines_and_the_plot_draws_them(tmp_path, monkeypatch):
    monkeypatch.setenv("EQHELPERS_CACHE", str(tmp_path / "cache"))
    from eqhelpers.evaluation import baselines
    from eqhelpers.sweep import load_sweep, sweep

    res = sweep("charged", betas=[0.0], seeds=(0,), budget="tiny", steps=3, progress=False,
                out=tmp_path / "s")
    want = baselines(data.load_task("charged", "tiny"))
    got = load_sweep(tmp_path / "s").baselines
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == pytest.approx(want[name]), name
    ax = plot_tradeoff(res)
    labels = sorted(t.get_text() for t in ax.get_legend().get_texts())
    assert labels == ["constant velocity (learns nothing)", "nothing moves (learns nothing)"]
    plt.close("all")
    with pytest.raises(ValueError, match="baselines"):
        plot_tradeoff(res, baselines="yes")
