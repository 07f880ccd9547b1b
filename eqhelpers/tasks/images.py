"""Image tasks: scikit-learn's bundled 8×8 digits on a 16×16 canvas. Documented in
:mod:`eqhelpers.data`."""

from __future__ import annotations

import math

import torch

from ..fields import Field, TaskSpec
from ..groups import (
    SO2,
    Group,
    LieGroup,
    Trivial,
)
from .base import TaskDef, Tensor

# --------------------------------------------------------------------------------------------
# images: scikit-learn's 8×8 digits (bundled with it, no download) on a 16×16 canvas
# --------------------------------------------------------------------------------------------

DIGIT_CANVAS = 16  # pixels; the digit fills the central 10×10, so moves keep it on the canvas
DIGIT_CONTENT = 10
DIGIT_POOLS = (0.6, 0.1, 0.3)  # disjoint shares of the 1797 digits for train / val / test (+ OOD)
DIGITS_ROTATION = math.pi / 4  # training rotations U(−45°, 45°); OOD: 45°–90° either way
DIGITS_LOG_SCALE = 0.35  # training scalings e^{U(−0.35, 0.35)}; OOD: |log s| in 0.35–0.47


def _digit_spec(output: str) -> TaskSpec:
    out = Field("scalar", channels=10) if output == "label" else Field("scalar")
    return TaskSpec(inputs={"image": Field("image", size=(DIGIT_CANVAS, DIGIT_CANVAS))},
                    outputs={output: out}, n_particles=1)


def digit_images() -> tuple[Tensor, Tensor]:
    """scikit-learn's 1797 digits upright on the canvas, intensities in [0, 1]:
    (images [1797, 1, 256] float64, labels [1797] long)."""
    from sklearn.datasets import load_digits
    from torch.nn import functional as F

    d = load_digits()
    small = torch.from_numpy(d.images).double()[:, None] / 16.0  # [n, 1, 8, 8]
    big = F.interpolate(small, size=(DIGIT_CONTENT, DIGIT_CONTENT), mode="bilinear",
                        align_corners=False).clamp(0, 1)
    pad = (DIGIT_CANVAS - DIGIT_CONTENT) // 2
    canvas = F.pad(big, (pad, pad, pad, pad))
    return canvas.reshape(len(d.images), 1, -1), torch.from_numpy(d.target).long()


def digits_moment_target(images: Tensor) -> Tensor:
    """A generic functional of an image, ⟨h, I⟩ / Σ I with h(x, y) = the no-symmetry function
    of the plane: no map of the image's domain leaves it unchanged."""
    n = DIGIT_CANVAS
    c = (2 * torch.arange(n, dtype=images.dtype, device=images.device) + 1) / n - 1
    yy, xx = torch.meshgrid(c, c, indexing="ij")  # pixel centres, x along a row, y down
    h = torch.sin(2 * xx) + 0.8 * yy**2 - 0.6 * xx * yy + 0.5 * yy
    img = images[:, 0]
    return ((img * h.reshape(-1)).sum(-1) / img.sum(-1).clamp_min(1e-6))[:, None, None] * 3.0


def _digit_moves(kind: str, n: int, gen: torch.Generator, ood: bool) -> Tensor:
    """Matrices [n, 2, 2] moving the digits of a split: rotations or scalings within the training
    range, or (``ood``) beyond it."""
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    sign = torch.where(torch.rand(n, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0)
    if kind == "scaled":
        lo, hi = (DIGITS_LOG_SCALE, 0.47) if ood else (0.0, DIGITS_LOG_SCALE)
        s = sign * (lo + (hi - lo) * u)
        return torch.exp(s)[:, None, None] * torch.eye(2, dtype=torch.float64)
    lo, hi = (DIGITS_ROTATION, math.pi / 2) if ood else (0.0, DIGITS_ROTATION)
    return SO2(dim=2)._matrix(sign * (lo + (hi - lo) * u))


def _digits_generate(kind: str, output: str):
    """Splits of a digits task: each split draws from its own pool of source digits (no digit
    is seen in two of train / val / test), moved at random; OOD: test digits moved further."""

    def generate(n_train, n_val, n_test, seed, ood_translation_std):
        from ..fields import resample_image

        images, labels = digit_images()
        gen = torch.Generator().manual_seed(int(seed))
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(1797))
        cuts = [0, int(DIGIT_POOLS[0] * len(order)), int(sum(DIGIT_POOLS[:2]) * len(order)),
                len(order)]
        pools = {name: order[cuts[i]:cuts[i + 1]] for i, name in enumerate(("train", "val", "test"))}
        splits = {}
        for name, n in (("train", n_train), ("val", n_val), ("test", n_test), ("ood", n_test)):
            pool = pools["test" if name == "ood" else name]
            pick = pool[torch.randint(len(pool), (n,), generator=gen)]
            mats = _digit_moves(kind, n, gen, ood=name == "ood")
            img = resample_image(images[pick], mats, (DIGIT_CANVAS, DIGIT_CANVAS)).clamp(0, 1)
            if output == "label":
                y = torch.nn.functional.one_hot(labels[pick], 10).double()[:, None, :]
            else:
                y = digits_moment_target(img)
            splits[name] = {"image": img, output: y}
        return splits

    return generate


def _digits_unlabelled(inp, **kw):
    raise ValueError("a digit's label is not a function of its pixels the package can compute: "
                     "the digits tasks have fixed labels, no simulator")


def _quarter_turns() -> Group:
    """Rotations of the plane by up to ±90°: what keeps a digit's class (a half-turn does not)."""
    return LieGroup(SO2(dim=2).generators(), math.pi / 2, name="rotations of the plane, |θ| <= 90°")


def _scaling_group(log_range: float) -> Group:
    return LieGroup(torch.eye(2, dtype=torch.float64), log_range, orthogonal=False,
                    name=f"scalings of the plane, |log s| <= {log_range:g}")


_DIGITS_PROTOCOL = ("the package's own, after SEMoLA's RotatedMNIST: scikit-learn's bundled 8×8 "
                    "digits (1797; disjoint source digits per split), upsampled to 10×10 on a "
                    "16×16 canvas; classes as one-hot targets fitted by squared error")
IMAGE_TASKS = {
    "digits_rotated": TaskDef(
        "digits_rotated", _digit_spec("label"), None, _digits_unlabelled,
        lambda s: _quarter_turns(), None,
        "digits rotated by U(−45°, 45°), the class to predict; OOD: rotated 45°–90°. A digit "
        "keeps its class under rotations up to a quarter turn (beyond, a 6 becomes a 9)",
        target="label", generate=_digits_generate("rotated", "label"), classes=10,
        protocol=_DIGITS_PROTOCOL,
        discovery={"schedule": (0.1, math.pi / 2, 0.15, 0.35), "score_range": math.pi / 12},
    ),
    "digits_scaled": TaskDef(
        "digits_scaled", _digit_spec("label"), None, _digits_unlabelled,
        lambda s: _scaling_group(DIGITS_LOG_SCALE), None,
        "digits scaled by e^U(−0.35, 0.35), the class to predict; OOD: |log s| in 0.35–0.47 "
        "(a subset of gl(2): scalings, not rotations)",
        target="label", generate=_digits_generate("scaled", "label"), classes=10,
        protocol=_DIGITS_PROTOCOL,
        discovery={"schedule": (0.05, DIGITS_LOG_SCALE, 0.15, 0.35),
                   "score_range": DIGITS_LOG_SCALE},
    ),
    "digits_no_symmetry": TaskDef(
        "digits_no_symmetry", _digit_spec("y"), None,
        lambda inp, **kw: digits_moment_target(inp["image"]),
        lambda s: Trivial(2), None,
        "digits rotated by U(−45°, 45°), y a generic intensity-weighted moment of the picture: "
        "no map of the plane keeps it",
        target="y", generate=_digits_generate("rotated", "y"), protocol=_DIGITS_PROTOCOL,
        discovery={"schedule": (0.1, math.pi / 2, 0.15, 0.35), "score_range": math.pi / 12},
    ),
}

