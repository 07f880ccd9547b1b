"""benchmarks/test_draw.py: its per-system errors, its bootstrap, and a tiny crossed run that
resumes and refuses other settings."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from eqhelpers.equivariance import field_mse

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("test_draw", ROOT / "benchmarks" / "test_draw.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_per_system_errors_average_to_the_split_mse():
    b = _bench()
    g = torch.Generator().manual_seed(0)
    target = {"x": torch.randn(7, 5, 3, generator=g), "e": torch.randn(7, 1, generator=g)}
    pred = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in target.items()}
    per = b.per_system_mse(pred, target)
    assert per.shape == (7,)
    assert torch.isclose(per.mean(), field_mse(pred, target).double(), rtol=1e-6)
    # system 3's own error: the mean over fields of its squared error
    want = sum(((pred[k][3] - target[k][3]) ** 2).mean() for k in ("x", "e")) / 2
    assert torch.isclose(per[3], want.double(), rtol=1e-6)


def test_the_bootstrap_interval_holds_the_mean_narrows_with_n_and_is_seeded():
    b = _bench()
    g = torch.Generator().manual_seed(1)

    def draw(n):  # Exponential(1) cubed: a heavy tail, mean 3! = 6
        return (-torch.log(torch.rand(n, generator=g, dtype=torch.float64))) ** 3

    heavy = draw(4000)
    small = heavy[:200]
    m, lo, hi = b.bootstrap_mean(small, 1000, 0)
    assert lo < m < hi
    _, lo2, hi2 = b.bootstrap_mean(heavy, 1000, 0)
    assert hi2 - lo2 < (hi - lo) / 2  # 20 times the systems: about 4.5 times narrower
    assert b.bootstrap_mean(small, 1000, 0) == (m, lo, hi)
    assert b.bootstrap_mean(small, 1000, 1) != (m, lo, hi)
    # the interval covers the true mean for most draws of 200
    cover = 0
    for s in range(40):
        _, lo, hi = b.bootstrap_mean(draw(200), 500, s)
        cover += lo <= 6.0 <= hi
    assert cover >= 28, cover  # 95 % nominal; a skewed mean's percentile interval undercovers
    with pytest.raises(ValueError, match="finite"):
        b.bootstrap_mean(torch.tensor([1.0, float("nan"), 2.0]), 1000, 0)
    with pytest.raises(ValueError, match="resamples"):
        b.bootstrap_mean(small, 10, 0)


def test_the_hardest_share():
    b = _bench()
    v = torch.ones(100)
    v[0] = 99.0  # one system of 100 carries half the error (99 of 198)
    assert b.top_share(v) == pytest.approx(0.5)
    assert b.top_share(torch.ones(1000)) == pytest.approx(0.01)


def test_a_tiny_cross_trains_each_pool_tests_on_both_and_resumes(tmp_path, capsys):
    b = _bench()
    out = tmp_path / "draw"
    args = ["--budget", "tiny", "--task", "charged", "--pools", "64", "128", "--n-train", "32",
            "--routes", "egnn", "--seeds", "0", "1", "--steps", "6", "--boot", "200",
            "--out", str(out)]
    assert b.main(args) == 0
    blob = json.loads(out.with_suffix(".json").read_text())
    assert sorted((r["train_pool"], r["seed"]) for r in blob["runs"]) == [(64, 0), (64, 1),
                                                                         (128, 0), (128, 1)]
    for r in blob["runs"]:
        assert set(r["eval"]) == {"64", "128"}
        for ev in r["eval"].values():
            for d in ev.values():
                assert d["boot_lo"] < d["mse"] < d["boot_hi"] and 0 < d["top1_share"] < 1
    # the two pools hold other test systems: one model's errors on them differ
    r = blob["runs"][0]
    assert r["eval"]["64"]["test"]["mse"] != r["eval"]["128"]["test"]["mse"]
    assert set(blob["baselines"]["64"]["test"]) == {"mean", "nothing moves", "constant velocity"}
    rows = b.summary(blob)
    assert len(rows) == 2 * 2 * 2  # trained on 2 pools × tested on 2 × val and test
    md = out.with_suffix(".md").read_text()
    assert "| EGNN | 64 | 128 | test |" in md and "constant velocity" in md
    capsys.readouterr()
    assert b.main(args) == 0  # all on disk: nothing trains again
    said = capsys.readouterr().out
    assert "trained (" not in said and said.count("on disk: skipped") == 2
    assert json.loads(out.with_suffix(".json").read_text())["runs"] == blob["runs"]
    with pytest.raises(Exception, match="made with"):  # other steps: refused, file kept
        b.main([*args[:-5], "7", "--boot", "200", "--out", str(out)])
    assert json.loads(out.with_suffix(".json").read_text())["runs"] == blob["runs"]
    with pytest.raises(SystemExit):
        b.main([*args[:5], "64", "64", *args[7:]])  # the same pool twice
