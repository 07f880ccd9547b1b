"""Typed fields, samples and the one group action every task uses.

A :class:`Sample` is a batch of named tensors plus a spec saying how each transforms:

============== =================================== ===============================
kind           transforms as                       example
============== =================================== ===============================
scalar         unchanged                           mass, charge, energy
vector         v ↦ R v                             velocity, force
pseudovector   v ↦ det(R) R v                      angular momentum
point          x ↦ R x + t                         position
image          I ↦ I∘A⁻¹ (resampled; any A in GL(2)) a digit on a pixel grid
Irreps         x ↦ D(R) x (e3nn, with parity)      "2x0e + 1o + 2e"
============== =================================== ===============================

An **image** is a scalar function on the plane sampled on an H×W grid, stored flat per particle
(``[B, N, H·W]``, one image per particle: N = 1 for one image per sample). A 2×2 matrix A acts on
the image's *domain*: ``(A·I)(p) = I(A⁻¹p)`` with p = (x, y) ∈ [−1, 1]² (x to the right along a row,
y down the columns, the convention of ``affine_grid``), applied by bilinear resampling
(``grid_sample``, zero outside). Rotations, scalings and shears of the picture are all such maps,
and A need not be orthogonal: learned generators in gl(2) act the same way.

Per-particle fields have shape ``[B, N, c]`` and are also permuted; global fields ``[B, c]``.
``act(g, sample)`` transforms any sample of any task; there is no per-task rotation code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import torch

from ._util import check_bool, check_count, check_finite
from .groups import Group, Transform

Tensor = torch.Tensor

KINDS = ("scalar", "vector", "pseudovector", "point", "image")


class Field:
    """How one named tensor transforms. ``kind`` is one of KINDS or an e3nn Irreps (string ok)."""

    def __init__(self, kind="scalar", channels: int | None = None, per_particle: bool = True,
                 categories: int | None = None, size: tuple[int, int] | None = None):
        check_bool("per_particle", per_particle)
        if channels is not None:
            channels = check_count("channels", channels)
        self.per_particle = per_particle
        self.irreps = None
        self.size = None  # (H, W) of an image field
        if (kind == "image") != (size is not None):
            raise ValueError("an image field needs its size=(H, W), and only an image has one; "
                             f"got kind={kind!r}, size={size!r}")
        # a categorical scalar (e.g. the atomic number): integer values in [0, categories) that
        # models embed (nn.Embedding) instead of reading as a number; invariant like any scalar
        self.categories = None
        if categories is not None:
            if kind != "scalar" or channels not in (None, 1) or not isinstance(categories, int) \
                    or categories < 2:
                raise ValueError("categories (an int >= 2) is for one-channel scalar fields, got "
                                 f"kind={kind!r}, channels={channels}, categories={categories!r}")
            self.categories = categories
        if isinstance(kind, str) and kind in KINDS:
            self.kind = kind
            if kind == "scalar":
                self.channels = 1 if channels is None else int(channels)
            elif kind == "image":
                if (not isinstance(size, (tuple, list)) or len(size) != 2
                        or not all(isinstance(v, int) and v >= 2 for v in size)):
                    raise ValueError(f"an image's size is (H, W), two ints >= 2, got {size!r}")
                if not self.per_particle:
                    raise ValueError("an image field is stored per particle ([B, N, H·W])")
                self.size = (int(size[0]), int(size[1]))
                if channels not in (None, self.size[0] * self.size[1]):
                    raise ValueError(f"an image of size {self.size} has H·W channels, "
                                     f"got channels={channels}")
                self.channels = self.size[0] * self.size[1]
            elif kind == "pseudovector":
                if channels not in (None, 3):
                    raise ValueError(f"a pseudovector field has 3 channels, got channels={channels}")
                self.channels = 3
            else:  # vectors and points live in R^d: 3 by default, any d for embedded tasks
                self.channels = 3 if channels is None else int(channels)
        else:
            from e3nn import o3

            try:
                self.irreps = o3.Irreps(kind)
            except Exception as exc:  # e3nn raises several types for bad strings
                raise ValueError(
                    f"field kind must be one of {KINDS} or an e3nn Irreps, got {kind!r}"
                ) from exc
            self.kind = "irreps"
            self.channels = self.irreps.dim
            if channels not in (None, self.channels):
                raise ValueError(f"irreps {self.irreps} have {self.channels} channels, got {channels}")
        if self.channels < 1:
            raise ValueError("a field needs at least one channel")

    # ------------------------------------------------------------------
    @property
    def translates(self) -> bool:
        return self.kind == "point"

    @property
    def rotates(self) -> bool:
        if self.kind == "irreps":
            return any(ir.l > 0 or ir.p == -1 for _, ir in self.irreps)
        return self.kind != "scalar"

    def representation(self, rot: Tensor) -> Tensor:
        """The matrix [B, c, c] by which orthogonal matrices ``rot`` [B, d, d] act on this field."""
        if self.kind == "image":
            raise ValueError("an image is resampled (Field.act), not multiplied by a matrix")
        if self.kind == "vector" or self.kind == "point":
            return rot
        if self.kind == "pseudovector":
            return torch.linalg.det(rot)[:, None, None] * rot
        if self.kind == "scalar":
            eye = torch.eye(self.channels, dtype=rot.dtype, device=rot.device)
            return eye.expand(rot.shape[0], -1, -1)
        return irreps_matrix(self.irreps, rot)

    def act(self, g: Transform, x: Tensor) -> Tensor:
        """Apply ``g`` to a tensor of this field: [B, N, c] (per particle) or [B, c]."""
        if x.dim() != (3 if self.per_particle else 2) or x.shape[-1] != self.channels:
            shape = "[B, N, c]" if self.per_particle else "[B, c]"
            raise ValueError(f"a {self} tensor has shape {shape} with c={self.channels}, "
                             f"got {tuple(x.shape)}")
        if g.rot is not None and self.kind == "image":
            x = resample_image(x, g.rot, self.size)
        elif g.rot is not None and self.rotates:
            d = g.rot.shape[-1]
            if self.kind in ("vector", "point"):
                if x.shape[-1] != d:
                    raise ValueError(f"{self.kind} field has {x.shape[-1]} components but the "
                                     f"group acts on R^{d}")
            elif d != 3:
                raise ValueError(f"a {self.kind} field needs 3D rotations, got {d}D")
            eq = "bij,bnj->bni" if self.per_particle else "bij,bj->bi"
            x = torch.einsum(eq, self.representation(g.rot).to(x.dtype), x)
        if g.trans is not None and self.translates:
            x = x + (g.trans[:, None, :] if self.per_particle else g.trans).to(x.dtype)
        if g.perm is not None and self.per_particle:
            if g.perm.shape[1] != x.shape[1]:
                raise ValueError(
                    f"permutation of {g.perm.shape[1]} particles applied to {x.shape[1]} particles"
                )
            x = torch.gather(x, 1, g.perm[:, :, None].expand(-1, -1, x.shape[-1]))
        return x

    def __repr__(self) -> str:
        kind = str(self.irreps) if self.kind == "irreps" else self.kind
        where = "" if self.per_particle else ", global"
        default = 1 if self.kind == "scalar" else 3
        ch = f", {self.channels}" if self.kind != "irreps" and self.channels != default else ""
        cat = f", categories={self.categories}" if self.categories else ""
        if self.kind == "image":
            ch = f", size={self.size}"
        return f"Field({kind}{ch}{cat}{where})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Field) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))


def resample_image(x: Tensor, mats: Tensor, size: tuple[int, int]) -> Tensor:
    """Images ``x`` [B, N, H·W] moved by 2×2 matrices ``mats`` [B, 2, 2] acting on their domain:
    ``(A·I)(p) = I(A⁻¹p)``, bilinear, zero outside (differentiable in ``mats``: gradients reach
    learned generators)."""
    from torch.nn import functional as F

    if mats.shape[-2:] != (2, 2):
        raise ValueError(f"an image moves under 2×2 matrices (its domain is the plane), got "
                         f"{tuple(mats.shape[-2:])}")
    b, n, c = x.shape
    h, w = size
    theta = torch.linalg.inv(mats.to(x.dtype))  # the grid reads the input at A⁻¹p
    theta = torch.cat([theta, theta.new_zeros(b, 2, 1)], dim=2).repeat_interleave(n, dim=0)
    grid = F.affine_grid(theta, [b * n, 1, h, w], align_corners=False)
    out = F.grid_sample(x.reshape(b * n, 1, h, w), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out.reshape(b, n, c)


def irreps_matrix(irreps, rot: Tensor) -> Tensor:
    """Block-diagonal D(R) [B, dim, dim] for e3nn ``irreps``, with parity.

    Exact to the working precision for every l (see :func:`wigner_d`); e3nn 0.6's own
    ``D_from_matrix`` goes through Euler angles and is only ~1e-7 accurate even in float64.
    """
    det = torch.linalg.det(rot)
    proper = rot * det[:, None, None]  # R = det · P with P in SO(3)
    blocks = []
    for mul, ir in irreps:
        # the inversion −I acts on (l, p) by p, so D(R) = p^[det<0] D_l(P)
        sign = det ** ((1 - ir.p) // 2)
        blocks.extend([wigner_d(ir.l, proper) * sign[:, None, None]] * mul)
    return torch.stack([torch.block_diag(*bs) for bs in zip(*blocks)]) if blocks else rot[:, :0, :0]


_PROBES: dict = {}


def wigner_d(l: int, rot: Tensor) -> Tensor:
    """The Wigner matrix D_l(R) [B, 2l+1, 2l+1] in e3nn's real basis, for R in SO(3).

    Spherical harmonics are polynomials with Y_l(R x) = D_l(R) Y_l(x); on a fixed set of probe
    points X this is linear in D_l, solved once by least squares (pseudo-inverse of Y_l(X),
    cached per l and dtype). l = 0 is 1 and l = 1 is R itself in e3nn ≥ 0.5's (x, y, z) basis.
    """
    b = rot.shape[0]
    if l == 0:
        return torch.ones(b, 1, 1, dtype=rot.dtype, device=rot.device)
    if l == 1:
        return rot
    from e3nn import o3

    key = (l, rot.dtype, rot.device)
    if key not in _PROBES:
        gen = torch.Generator().manual_seed(1234 + l)
        x = torch.randn(4 * (2 * l + 1), 3, generator=gen, dtype=torch.float64)
        y = o3.spherical_harmonics(l, x, normalize=True)  # [P, 2l+1]
        _PROBES[key] = (x.to(rot.dtype).to(rot.device),
                        torch.linalg.pinv(y).to(rot.dtype).to(rot.device))
    x, y_pinv = _PROBES[key]
    y_rot = o3.spherical_harmonics(l, torch.einsum("bij,pj->bpi", rot, x), normalize=True)
    return torch.einsum("bpi,jp->bij", y_rot, y_pinv)  # D = Y(RX)ᵀ · pinv(Y(X))ᵀ


@dataclass
class TaskSpec:
    """What a model sees and predicts: input and output fields, and residual links.

    ``residual`` maps an output name to the input it is added to (``{"pos_next": "pos"}``: the
    model predicts a displacement). ``n_particles`` is fixed per task.
    """

    inputs: dict[str, Field]
    outputs: dict[str, Field]
    n_particles: int
    residual: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what in ("inputs", "outputs"):
            fields = getattr(self, what)
            if not isinstance(fields, Mapping) or not fields:
                raise ValueError(f"a TaskSpec needs {what}: a non-empty dict of name -> Field, "
                                 f"got {fields!r}")
            bad = {k: v for k, v in fields.items() if not isinstance(k, str)
                   or not isinstance(v, Field)}
            if bad:
                raise ValueError(f"{what} must map names to Field objects, got {bad!r}")
        check_count("n_particles", self.n_particles)
        clash = set(self.inputs) & set(self.outputs)
        if clash:
            raise ValueError(f"names used for both inputs and outputs: {sorted(clash)}")
        for out, inp in self.residual.items():
            if out not in self.outputs or inp not in self.inputs:
                raise ValueError(f"residual {out!r} -> {inp!r} names an unknown field")
            if self.outputs[out].channels != self.inputs[inp].channels:
                raise ValueError(f"residual {out!r} -> {inp!r}: channel counts differ")

    @property
    def spec(self) -> dict[str, Field]:
        return {**self.inputs, **self.outputs}

    def points(self) -> list[str]:
        return [k for k, f in self.inputs.items() if f.kind == "point"]


DATA_DTYPES = (torch.float32, torch.float64)


def check_data_dtype(name: str, dtype) -> torch.dtype:
    """``dtype`` if data may be held in it (float32 or float64), else a ValueError naming it.
    Integers cannot be rotated; float16 and bfloat16 resolve about 1e-3, the size of the
    equivariance errors this package measures (for mixed-precision training on a GPU use
    ``amp=True``: the data stay float32)."""
    if dtype not in DATA_DTYPES:
        raise ValueError(f"{name} is {dtype}: data must be float32 or float64 (integers cannot "
                         f"be rotated, half precision resolves about 1e-3, the size of the "
                         f"errors measured here; for mixed precision use amp=True)")
    return dtype


class Sample:
    """A batch of named tensors and the field spec saying how each one transforms."""

    def __init__(self, data: Mapping[str, Tensor], spec: Mapping[str, Field], validate: bool = True):
        self.data = dict(data)
        if validate:
            self._validate(spec)
        self.spec = {k: spec[k] for k in self.data} if validate else dict(spec)

    def _validate(self, spec: Mapping[str, Field]) -> None:
        missing = [k for k in self.data if k not in spec]
        if missing:
            raise ValueError(f"no field type given for {missing}; spec has {sorted(spec)}")
        if not self.data:
            raise ValueError("a Sample needs at least one field")
        b = n = None
        floats = {}
        for k, x in self.data.items():
            f = spec[k]
            if not isinstance(x, Tensor):
                raise TypeError(f"field {k!r} must be a torch.Tensor, got {type(x).__name__}")
            if x.is_floating_point():
                check_data_dtype(f"field {k!r}", x.dtype)
                floats[k] = x.dtype
            elif f.rotates or f.translates:
                raise ValueError(f"field {k!r} ({f}) transforms, so it must be floating point, "
                                 f"got {x.dtype}")
            want = 3 if f.per_particle else 2
            if x.dim() != want or x.shape[-1] != f.channels:
                shape = "[B, N, c]" if f.per_particle else "[B, c]"
                raise ValueError(
                    f"field {k!r} ({f}) must have shape {shape} with c={f.channels}, "
                    f"got {tuple(x.shape)}"
                )
            check_finite(f"field {k!r}", x)
            if f.categories and not bool(((x >= 0) & (x < f.categories) & (x == x.round())).all()):
                raise ValueError(f"field {k!r} ({f}) must hold integers in [0, {f.categories})")
            if b is None:
                b = x.shape[0]
            elif x.shape[0] != b:
                raise ValueError(f"field {k!r} has batch size {x.shape[0]}, others have {b}")
            if f.per_particle:
                if n is None:
                    n = x.shape[1]
                elif x.shape[1] != n:
                    raise ValueError(f"field {k!r} has {x.shape[1]} particles, others have {n}")
        if len(set(floats.values())) > 1:
            raise ValueError(f"the fields' floating-point dtypes differ: {floats} (convert them "
                             "together, e.g. sample.to(dtype=torch.float32))")

    # -- access ---------------------------------------------------------------------
    def __getitem__(self, name: str) -> Tensor:
        try:
            return self.data[name]
        except KeyError:
            raise KeyError(f"sample has no field {name!r}; it has {sorted(self.data)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.data

    def keys(self):
        return self.data.keys()

    @property
    def batch_size(self) -> int:
        return next(iter(self.data.values())).shape[0]

    def __len__(self) -> int:
        return self.batch_size

    @property
    def n_particles(self) -> int | None:
        for k, f in self.spec.items():
            if f.per_particle:
                return self.data[k].shape[1]
        return None

    @property
    def device(self) -> torch.device:
        return next(iter(self.data.values())).device

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.data.values())).dtype

    # -- new samples ----------------------------------------------------------------
    def _new(self, data: dict[str, Tensor]) -> Sample:
        return Sample(data, self.spec, validate=False)

    def select(self, names: Iterable[str]) -> Sample:
        return Sample({k: self[k] for k in names}, self.spec, validate=False)

    def replace(self, **tensors: Tensor) -> Sample:
        unknown = [k for k in tensors if k not in self.spec]
        if unknown:
            raise ValueError(f"replace() got fields not in the spec: {unknown}")
        return self._new({**self.data, **tensors})

    def index(self, idx) -> Sample:
        return self._new({k: v[idx] for k, v in self.data.items()})

    def to(self, device=None, dtype=None) -> Sample:
        if dtype is not None:
            check_data_dtype("dtype", dtype)
        return self._new(
            {k: v.to(device=device, dtype=dtype if v.is_floating_point() else None)
             for k, v in self.data.items()}
        )

    def repeat_interleave(self, k: int) -> Sample:
        check_count("k (repeats)", k, minimum=0)
        return self._new({n: v.repeat_interleave(k, dim=0) for n, v in self.data.items()})

    @staticmethod
    def cat(samples: list[Sample]) -> Sample:
        samples = list(samples)
        if not samples:
            raise ValueError("nothing to concatenate: the list of samples is empty")
        keys = list(samples[0].keys())
        for s in samples[1:]:
            if list(s.keys()) != keys:
                raise ValueError(f"cannot concatenate samples with fields {keys} and {list(s.keys())}")
            for k in keys:
                if s.data[k].shape[1:] != samples[0].data[k].shape[1:]:
                    raise ValueError(f"cannot concatenate samples whose field {k!r} has shapes "
                                     f"{tuple(samples[0].data[k].shape)} and {tuple(s.data[k].shape)}")
        return samples[0]._new({k: torch.cat([s.data[k] for s in samples]) for k in keys})

    def split(self, sizes: list[int]) -> list[Sample]:
        sizes = [check_count("split size", v, minimum=0) for v in sizes]
        if sum(sizes) != len(self):
            raise ValueError(f"split sizes {sizes} add up to {sum(sizes)}, not the sample's "
                             f"{len(self)}")
        parts = {k: v.split(sizes) for k, v in self.data.items()}
        return [self._new({k: parts[k][i] for k in self.data}) for i in range(len(sizes))]

    def __repr__(self) -> str:
        body = ", ".join(f"{k}: {tuple(v.shape)} {self.spec[k]}" for k, v in self.data.items())
        return f"Sample(B={self.batch_size}; {body})"


def act(g: Transform, x: Sample | Mapping[str, Tensor], spec: Mapping[str, Field] | None = None):
    """Apply group elements ``g`` (one per batch row) to a Sample or a dict of tensors.

    ``spec`` is needed for a dict (for a Sample its own spec is used). Returns the same type.
    """
    if not isinstance(g, Transform):
        raise TypeError(f"act() needs group elements (a Transform), got {type(g).__name__}")
    if isinstance(x, Sample):
        data, spec = x.data, x.spec
    else:
        if spec is None:
            raise ValueError("act() on a dict of tensors needs the field spec")
        data = dict(x)
    if not data:
        raise ValueError("act() got no tensors to move")
    b = next(iter(data.values())).shape[0]
    if g.batch_size != b:
        raise ValueError(f"{g.batch_size} group elements for a batch of {b}")
    out = {}
    for k, v in data.items():
        if k not in spec:
            raise ValueError(f"no field type for {k!r}")
        out[k] = spec[k].act(g, v)
    return x._new(out) if isinstance(x, Sample) else out


def check_group_fits(group: Group, spec: Mapping[str, Field], n_particles: int | None) -> None:
    """Raise a clear error if ``group`` cannot act on samples with this spec."""
    if group.has_rotation and group.dim is not None:
        for k, f in spec.items():
            if f.kind in ("vector", "point") and f.channels != group.dim:
                raise ValueError(f"{group} acts on R^{group.dim} but field {k!r} is {f.channels}D")
            if f.kind == "image" and group.dim != 2:
                raise ValueError(f"{group} acts on R^{group.dim}; image field {k!r} needs maps "
                                 "of the plane (R^2)")
            if f.kind in ("pseudovector", "irreps") and group.dim != 3:
                raise ValueError(f"{group} acts on R^{group.dim}; {f.kind} field {k!r} needs R^3")
    if group.has_permutation and group.n_particles != n_particles:
        raise ValueError(
            f"{group} permutes {group.n_particles} particles but the task has {n_particles}"
        )
