"""Groups and their elements.

A batch of group elements is a :class:`Transform`: an orthogonal matrix ``rot`` acting on R^d, a
translation ``trans`` and a permutation ``perm`` of the particle axis, each optional (``None`` is
the identity). Acting on a point cloud ``x`` of shape ``[B, N, d]``::

    (g·x)[b, i] = rot[b] @ x[b, perm[b, i]] + trans[b]

Groups sample elements (``sample(n, generator=, device=, dtype=)``), give the identity, and, where
they are Lie groups, a basis of their Lie algebra (``generators()``). Products such as
``SE3() * Permutations(5)`` combine groups that touch different parts of a Transform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._util import check_bool, check_count, check_finite, check_positive

Tensor = torch.Tensor


# --------------------------------------------------------------------------------------------
# elements
# --------------------------------------------------------------------------------------------


def _orthogonality_tol(dtype: torch.dtype) -> float:
    return 1e-8 if dtype == torch.float64 else 1e-4


@dataclass(frozen=True)
class Transform:
    """A batch of B group elements. ``rot``: [B,d,d] orthogonal, ``trans``: [B,d], ``perm``: [B,N]."""

    rot: Tensor | None = None
    trans: Tensor | None = None
    perm: Tensor | None = None

    @classmethod
    def trusted(cls, rot: Tensor | None = None, trans: Tensor | None = None,
                perm: Tensor | None = None) -> Transform:
        """Build without the checks (no host sync): for elements the package itself produced
        by sampling, composing, inverting or indexing valid ones."""
        t = object.__new__(cls)
        object.__setattr__(t, "rot", rot)
        object.__setattr__(t, "trans", trans)
        object.__setattr__(t, "perm", perm)
        return t

    def __post_init__(self) -> None:
        sizes = {t.shape[0] for t in (self.rot, self.trans, self.perm) if t is not None}
        if not sizes:
            raise ValueError("a Transform needs at least one of rot, trans, perm")
        if len(sizes) > 1:
            raise ValueError(f"rot, trans and perm disagree on the batch size: {sorted(sizes)}")
        if self.rot is not None:
            r = self.rot
            if r.dim() != 3 or r.shape[1] != r.shape[2]:
                raise ValueError(f"rot must have shape [B, d, d], got {tuple(r.shape)}")
            if not r.is_floating_point():
                raise ValueError("rot must be a floating-point tensor")
            check_finite("rot", r)
            eye = torch.eye(r.shape[-1], dtype=r.dtype, device=r.device)
            err = (r.transpose(1, 2) @ r - eye).abs().amax() if r.numel() else r.new_zeros(())
            if float(err) > _orthogonality_tol(r.dtype):
                raise ValueError(
                    f"rot is not orthogonal: max |RᵀR − I| = {float(err):.2e} "
                    f"(tolerance {_orthogonality_tol(r.dtype):.0e} for {r.dtype})"
                )
        if self.trans is not None:
            if self.trans.dim() != 2:
                raise ValueError(f"trans must have shape [B, d], got {tuple(self.trans.shape)}")
            check_finite("trans", self.trans)
            if self.rot is not None and self.trans.shape[1] != self.rot.shape[1]:
                raise ValueError(
                    f"trans has dimension {self.trans.shape[1]} but rot acts on "
                    f"R^{self.rot.shape[1]}"
                )
        if self.perm is not None:
            p = self.perm
            if p.dim() != 2 or p.dtype != torch.long:
                raise ValueError(f"perm must be a [B, N] long tensor, got {p.dtype} {tuple(p.shape)}")
            ok = torch.sort(p, dim=1).values == torch.arange(p.shape[1], device=p.device)
            if not bool(ok.all()):
                raise ValueError("perm rows must be permutations of 0..N-1")

    # -- basic facts -----------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        for t in (self.rot, self.trans, self.perm):
            if t is not None:
                return t.shape[0]
        raise AssertionError  # unreachable: __post_init__ requires one part

    @property
    def dim(self) -> int | None:
        if self.rot is not None:
            return self.rot.shape[-1]
        if self.trans is not None:
            return self.trans.shape[-1]
        return None

    def __len__(self) -> int:
        return self.batch_size

    def det(self) -> Tensor | None:
        """det(rot) per element (+1 or −1); None when there is no rotation part."""
        return None if self.rot is None else torch.linalg.det(self.rot)

    # -- algebra ---------------------------------------------------------------------------
    def compose(self, other: Transform) -> Transform:
        """``self ∘ other``: apply ``other`` first, then ``self``."""
        if not isinstance(other, Transform):
            raise TypeError(f"can only compose with a Transform, got {type(other).__name__}")
        if self.batch_size != other.batch_size:
            raise ValueError(f"cannot compose batches of {self.batch_size} and {other.batch_size}")
        if None not in (self.dim, other.dim) and self.dim != other.dim:
            raise ValueError(f"cannot compose transforms of R^{self.dim} and R^{other.dim}")
        if None not in (self.perm, other.perm) and self.perm.shape[1] != other.perm.shape[1]:
            raise ValueError(f"cannot compose permutations of {self.perm.shape[1]} and "
                             f"{other.perm.shape[1]} particles")
        r1, r2, t1, t2 = self.rot, other.rot, self.trans, other.trans
        rot = r2 if r1 is None else (r1 if r2 is None else r1 @ r2)
        if t2 is None:
            trans = t1
        else:
            moved = t2 if r1 is None else torch.einsum("bij,bj->bi", r1, t2)
            trans = moved if t1 is None else moved + t1
        p1, p2 = self.perm, other.perm
        if p1 is None:
            perm = p2
        elif p2 is None:
            perm = p1
        else:  # (g1∘g2)·x[i] = x[p2[p1[i]]]
            perm = torch.gather(p2, 1, p1)
        return Transform.trusted(rot, trans, perm)

    def __matmul__(self, other: Transform) -> Transform:
        return self.compose(other)

    def inverse(self) -> Transform:
        rot = None if self.rot is None else self.rot.transpose(1, 2)
        trans = None
        if self.trans is not None:
            trans = -self.trans if rot is None else -torch.einsum("bij,bj->bi", rot, self.trans)
        perm = None if self.perm is None else torch.argsort(self.perm, dim=1)
        return Transform.trusted(rot, trans, perm)

    def matrix(self) -> Tensor:
        """Homogeneous matrices [B, d+1, d+1] of the affine part (rotation and translation)."""
        d = self.dim
        if d is None:
            raise ValueError("a pure permutation has no matrix form on R^d")
        ref = self.rot if self.rot is not None else self.trans
        m = torch.eye(d + 1, dtype=ref.dtype, device=ref.device).repeat(self.batch_size, 1, 1)
        if self.rot is not None:
            m[:, :d, :d] = self.rot
        if self.trans is not None:
            m[:, :d, d] = self.trans
        return m

    # -- batching --------------------------------------------------------------------------
    def _map(self, fn) -> Transform:
        parts = (self.rot, self.trans, self.perm)
        return Transform.trusted(*(None if t is None else fn(t) for t in parts))

    def index(self, idx) -> Transform:
        return self._map(lambda t: t[idx])

    def repeat_interleave(self, k: int) -> Transform:
        check_count("k (repeats)", k, minimum=0)
        return self._map(lambda t: t.repeat_interleave(k, dim=0))

    def to(self, device=None, dtype=None) -> Transform:
        def move(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return self._map(move)

    @staticmethod
    def cat(items: list[Transform]) -> Transform:
        items = list(items)
        if not items:
            raise ValueError("nothing to concatenate: the list of transforms is empty")
        parts = []
        for name in ("rot", "trans", "perm"):
            present = [getattr(t, name) is not None for t in items]
            if all(present):
                shapes = {tuple(getattr(t, name).shape[1:]) for t in items}
                if len(shapes) > 1:
                    raise ValueError(f"cannot concatenate transforms whose {name} shapes differ: "
                                     f"{sorted(shapes)}")
                parts.append(torch.cat([getattr(t, name) for t in items]))
            elif not any(present):
                parts.append(None)
            else:
                raise ValueError(f"cannot concatenate transforms where only some have {name}")
        return Transform.trusted(*parts)


# --------------------------------------------------------------------------------------------
# Lie algebra helpers
# --------------------------------------------------------------------------------------------


def so3_generators(dtype=torch.float64, device=None) -> Tensor:
    """The basis L_x, L_y, L_z of so(3): (L_k)_{ij} = −ε_{kij}, so L_k v = e_k × v."""
    g = torch.zeros(3, 3, 3, dtype=dtype, device=device)
    for k, (i, j) in enumerate([(1, 2), (2, 0), (0, 1)]):
        g[k, i, j] = -1.0
        g[k, j, i] = 1.0
    return g


def skew(v: Tensor) -> Tensor:
    """[..., 3] -> [..., 3, 3] with skew(v) @ w = v × w."""
    return torch.einsum("...k,kij->...ij", v, so3_generators(v.dtype, v.device))


def axis_angle_to_matrix(axis: Tensor, angle: Tensor) -> Tensor:
    """Rodrigues' formula for unit ``axis`` [..., 3] and ``angle`` [...]."""
    k = skew(axis)
    s, c = torch.sin(angle)[..., None, None], torch.cos(angle)[..., None, None]
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device)
    return eye + s * k + (1 - c) * (k @ k)


def rotation_about(axis, angle_deg: float, centre=(0.0, 0.0, 0.0),
                   dtype=torch.float64) -> Transform:
    """One rigid motion: the rotation by ``angle_deg`` degrees about ``axis`` through ``centre``
    (x ↦ R(x − c) + c)."""
    a = torch.as_tensor(axis, dtype=dtype)
    if a.shape != (3,) or not bool(torch.isfinite(a).all()) or float(a.norm()) == 0:
        raise ValueError(f"axis must be a finite non-zero 3-vector, got {axis!r}")
    if not math.isfinite(angle_deg):
        raise ValueError(f"angle must be finite, got {angle_deg!r}")
    rot = axis_angle_to_matrix(a / a.norm(), torch.tensor(math.radians(angle_deg), dtype=dtype))
    c = torch.as_tensor(centre, dtype=dtype).reshape(3)
    return Transform(rot=rot[None], trans=(c - rot @ c)[None])


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Unit quaternions [..., 4] (w, x, y, z) to rotation matrices [..., 3, 3]."""
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(q.shape[:-1] + (3, 3))


def rotation_angle(rot: Tensor) -> Tensor:
    """The angle θ ∈ [0, π] of rotations [..., 3, 3] (from the trace). Anything that is not a
    rotation (not orthogonal, or a reflection: det −1) is a ValueError: its trace is not that of
    any angle."""
    if not isinstance(rot, Tensor) or not rot.is_floating_point() or rot.shape[-2:] != (3, 3):
        raise ValueError(f"rotation_angle expects floating-point rotations [..., 3, 3], got "
                         f"{getattr(rot, 'dtype', type(rot).__name__)} "
                         f"{tuple(getattr(rot, 'shape', ()))}")
    check_finite("rot", rot)
    if rot.numel():
        eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
        err = float((rot.transpose(-1, -2) @ rot - eye).abs().amax())
        if err > _orthogonality_tol(rot.dtype):
            raise ValueError(f"rotation_angle expects rotations, got a matrix that is not "
                             f"orthogonal: max |RᵀR − I| = {err:.2e}")
        det = torch.linalg.det(rot)
        if bool((det < 0).any()):
            raise ValueError(f"rotation_angle expects rotations, got {int((det < 0).sum())} "
                             f"reflection(s) (det −1): a reflection has no rotation angle; "
                             f"multiply by −1 (the inversion) to get the rotation part")
    tr = rot.diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.arccos(((tr - 1) / 2).clamp(-1.0, 1.0))


def _unit_axis(axis, dtype, device) -> Tensor:
    a = torch.as_tensor(axis, dtype=dtype, device=device)
    if a.shape != (3,):
        raise ValueError(f"axis must have 3 components, got shape {tuple(a.shape)}")
    n = torch.linalg.norm(a)
    if not torch.isfinite(n) or float(n) == 0.0:
        raise ValueError(f"axis must be a finite non-zero vector, got {a.tolist()}")
    return a / n


# --------------------------------------------------------------------------------------------
# groups
# --------------------------------------------------------------------------------------------


def _float_dtype(dtype: torch.dtype | None) -> torch.dtype:
    """``dtype`` (torch's default when None), checked: group elements are floating point."""
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"group elements need a floating-point dtype, got {dtype!r}")
    return dtype


class Group:
    """Base class. Subclasses set the flags and implement ``_sample``."""

    name = "group"
    dim: int | None = 3  # dimension of the space the rotation part acts on
    has_rotation = False
    has_reflections = False
    has_translation = False
    has_permutation = False
    n_particles: int | None = None

    def sample(self, n: int, generator: torch.Generator | None = None, device=None,
               dtype: torch.dtype | None = None) -> Transform:
        """``n`` elements; on the generator's device unless ``device`` is given; ``dtype``
        defaults to torch's default dtype."""
        check_count("n", n)
        if generator is not None and device is None:
            device = generator.device
        dtype = _float_dtype(dtype)
        return self._sample(n, generator, torch.device(device or "cpu"), dtype)

    def _sample(self, n, generator, device, dtype) -> Transform:  # pragma: no cover - abstract
        raise NotImplementedError

    def identity(self, n: int = 1, device=None, dtype: torch.dtype | None = None) -> Transform:
        n = check_count("n", n)
        dtype = _float_dtype(dtype)
        rot = trans = perm = None
        if self.has_rotation:
            rot = torch.eye(self.dim, dtype=dtype, device=device).repeat(n, 1, 1)
        if self.has_translation:
            trans = torch.zeros(n, self.dim, dtype=dtype, device=device)
        if self.has_permutation:
            perm = torch.arange(self.n_particles, device=device).repeat(n, 1)
        return Transform.trusted(rot, trans, perm)

    def generators(self, dtype=torch.float64, device=None) -> Tensor | None:
        """A basis of the Lie algebra as matrices [k, D, D], or None for a discrete group.

        Rotation groups give d×d matrices; groups with translations give (d+1)×(d+1)
        homogeneous matrices (rotation generators first, then translations).
        """
        return None

    def __mul__(self, other: Group) -> ProductGroup:
        if not isinstance(other, Group):
            return NotImplemented  # Python then raises a TypeError naming both types
        return ProductGroup(self, other)

    def __repr__(self) -> str:
        return self.name


class SO2(Group):
    """Rotations about one axis (in 3D; the z axis unless given), or all rotations of the plane
    (``dim=2``, which has no axis to give)."""

    has_rotation = True

    def __init__(self, axis=None, dim: int = 3):
        if isinstance(dim, bool) or dim not in (2, 3):
            raise ValueError(f"SO2 acts on R^2 or R^3, got dim={dim!r}")
        if dim == 2 and axis is not None:
            raise ValueError(f"SO2 of the plane (dim=2) turns about no axis, got axis={axis!r}")
        self.dim = dim
        self.axis = None if dim == 2 else _unit_axis((0.0, 0.0, 1.0) if axis is None else axis,
                                                     torch.float64, "cpu")
        self.name = "SO(2)" if dim == 2 else f"SO(2) about {[round(v, 3) for v in self.axis.tolist()]}"

    def _matrix(self, theta: Tensor) -> Tensor:
        if self.dim == 2:
            c, s = torch.cos(theta), torch.sin(theta)
            return torch.stack([c, -s, s, c], -1).reshape(-1, 2, 2)
        axis = self.axis.to(theta.dtype).to(theta.device).expand(theta.shape[0], 3)
        return axis_angle_to_matrix(axis, theta)

    def _angles(self, n, generator, device, dtype) -> Tensor:
        return 2 * math.pi * torch.rand(n, generator=generator, device=device, dtype=dtype)

    def _sample(self, n, generator, device, dtype):
        return Transform.trusted(rot=self._matrix(self._angles(n, generator, device, dtype)))

    def generators(self, dtype=torch.float64, device=None):
        if self.dim == 2:
            return torch.tensor([[[0.0, -1.0], [1.0, 0.0]]], dtype=dtype, device=device)
        return skew(self.axis.to(dtype=dtype, device=device))[None]


class Cyclic(SO2):
    """C_k: rotations by multiples of 2π/k about an axis (a discrete group: no generators)."""

    def __init__(self, k: int, axis=None, dim: int = 3):
        check_count("k", k)
        super().__init__(axis, dim)
        self.k = k
        self.name = f"C_{k}" + self.name[len("SO(2)"):]

    def _angles(self, n, generator, device, dtype):
        j = torch.randint(self.k, (n,), generator=generator, device=device)
        return (2 * math.pi / self.k) * j.to(dtype)

    def generators(self, dtype=torch.float64, device=None):
        return None


class PlaneRotations(Group):
    """SO(2) turning one 2-plane of R^d, spanned by ``u`` and ``v``; the orthogonal complement is
    left fixed. ``PlaneRotations(u, v)`` in R^3 equals ``SO2(axis=u × v)``."""

    has_rotation = True

    def __init__(self, u, v):
        u = torch.as_tensor(u, dtype=torch.float64)
        v = torch.as_tensor(v, dtype=torch.float64)
        if u.dim() != 1 or u.shape != v.shape or u.shape[0] < 2:
            raise ValueError(f"u and v must be vectors of one length d >= 2, got {tuple(u.shape)} "
                             f"and {tuple(v.shape)}")
        check_finite("u", u)
        check_finite("v", v)
        if float(u.norm()) == 0:
            raise ValueError("u must be non-zero")
        u = u / u.norm()
        v = v - (v @ u) * u  # Gram–Schmidt
        if float(v.norm()) < 1e-9:
            raise ValueError("u and v must be linearly independent to span a plane")
        self.u, self.v = u, v / v.norm()
        self.dim = u.shape[0]
        self.name = f"SO(2) in a plane of R^{self.dim}"

    def generators(self, dtype=torch.float64, device=None):
        u, v = self.u.to(dtype=dtype, device=device), self.v.to(dtype=dtype, device=device)
        return (torch.outer(v, u) - torch.outer(u, v))[None]  # turns u towards v

    def _sample(self, n, generator, device, dtype):
        theta = 2 * math.pi * torch.rand(n, generator=generator, device=device, dtype=dtype)
        gen = self.generators(dtype, device)[0]
        s, c = torch.sin(theta)[:, None, None], torch.cos(theta)[:, None, None]
        eye = torch.eye(self.dim, dtype=dtype, device=device)
        return Transform.trusted(rot=eye + s * gen + (1 - c) * (gen @ gen))  # L³ = −L


class Trivial(Group):
    """Only the identity (on R^d): the symmetry of a task that has none."""

    has_rotation = True

    def __init__(self, dim: int = 3):
        self.dim = check_count("dim", dim)
        self.name = "{e}"

    def _sample(self, n, generator, device, dtype):
        return self.identity(n, device, dtype)

    def generators(self, dtype=torch.float64, device=None):
        return torch.zeros(0, self.dim, self.dim, dtype=dtype, device=device)


def as_generators(g, name: str = "generators") -> Tensor:
    """Check and return matrices [k, d, d] (one [d, d] is promoted): finite, none of them zero."""
    g = torch.as_tensor(g)
    if g.dim() == 2:
        g = g[None]
    if g.dim() != 3 or g.shape[-1] != g.shape[-2]:
        raise ValueError(f"{name} must be matrices [k, d, d] (or one [d, d]), got {tuple(g.shape)}")
    if not g.is_floating_point():
        g = g.double()
    if not bool(torch.isfinite(g).all()):
        raise ValueError(f"{name} contain NaN or inf")
    if bool((g.flatten(1).norm(dim=1) == 0).any()):
        raise ValueError(f"{name}: a zero matrix is not a generator")
    return g


def exp_uniform(generators: Tensor, ranges, n: int, generator: torch.Generator | None = None,
                device=None, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """``n`` draws of ``z_k ~ U(−r_k, r_k)`` and ``expm(Σ_k z_k L_k)``: ``(z [n, k], [n, d, d])``.

    ``z = r·(2u − 1)`` with ``u ~ U(0, 1)``, so the matrices are differentiable in the generators
    and the ranges (the reparameterisation trick)."""
    device = device if device is not None else generators.device
    dtype = generators.dtype if dtype is None else dtype
    u = torch.rand(n, generators.shape[0], generator=generator, device=device, dtype=dtype)
    z = (2 * u - 1) * torch.as_tensor(ranges).to(dtype=dtype, device=device)
    a = torch.einsum("nk,kij->nij", z, generators.to(dtype=dtype, device=device))
    return z, torch.linalg.matrix_exp(a)


class LieGroup(Group):
    """The group generated by given matrices L_k (e.g. learned ones): elements
    ``expm(Σ_k z_k L_k)`` with ``z_k ~ U(−r_k, r_k)``.

    ``orthogonal=True`` keeps only the skew-symmetric part of each L_k, so every element is an
    exact rotation (and Transform.inverse, a transpose, stays right). ``orthogonal=False`` keeps
    the generators as they are — a Lorentz boost, a scaling, any learned direction of gl(d): the
    elements are then general invertible matrices. They act forwards, which is all augmentation,
    REMUL's L_equi and the metrics E and E′ need; ``Transform.inverse`` (a transpose) is only
    right for orthogonal elements.
    """

    has_rotation = True

    def __init__(self, generators, ranges=math.pi, orthogonal: bool = True, name: str | None = None):
        check_bool("orthogonal", orthogonal)
        g = as_generators(generators).detach().double().cpu()
        if g.shape[0] < 1:
            raise ValueError("a Lie group needs at least one generator")
        if orthogonal:
            g = 0.5 * (g - g.transpose(1, 2))
            if bool((g.flatten(1).norm(dim=1) == 0).any()):
                raise ValueError("a generator is zero after keeping its skew-symmetric part")
        r = torch.as_tensor(ranges, dtype=torch.float64).detach().cpu()
        if r.dim() > 1 or r.numel() not in (1, g.shape[0]):
            raise ValueError(f"ranges must be one number or one per generator ({g.shape[0]}), "
                             f"got shape {tuple(r.shape)}")
        r = r.reshape(-1).expand(g.shape[0]).clone()
        check_finite("ranges", r)
        if bool((r < 0).any()):
            raise ValueError(f"ranges must be >= 0, got {r.tolist()}")
        self.basis, self.ranges, self.orthogonal = g, r, orthogonal
        self.dim = g.shape[-1]
        self.name = name or f"Lie group of {g.shape[0]} generator(s) on R^{self.dim}"

    def generators(self, dtype=torch.float64, device=None):
        return self.basis.to(dtype=dtype, device=device)

    def _sample(self, n, generator, device, dtype):
        return Transform.trusted(rot=exp_uniform(self.basis, self.ranges, n, generator, device,
                                                 dtype)[1])


def linear_generators(group: Group, dtype=torch.float64, device=None) -> Tensor | None:
    """The part of ``group``'s Lie algebra that acts linearly on R^d, as d×d matrices [m, d, d]
    (rotations; translations dropped), or None when the group has no linear continuous part."""
    gens = group.generators(dtype, device)
    if gens is None or not group.has_rotation or group.dim is None:
        return None
    d = group.dim
    if gens.shape[-1] == d + 1:  # homogeneous: keep the generators with a linear block
        block = gens[:, :d, :d]
        gens = block[block.flatten(1).norm(dim=1) > 0]
    return gens if len(gens) else None


class SO3(Group):
    """Rotations of R^3, sampled from the Haar measure (normalised Gaussian quaternions)."""

    name = "SO(3)"
    has_rotation = True

    def _rotations(self, n, generator, device, dtype):
        q = torch.randn(n, 4, generator=generator, device=device, dtype=dtype)
        return quaternion_to_matrix(q / torch.linalg.norm(q, dim=-1, keepdim=True))

    def _sample(self, n, generator, device, dtype):
        return Transform.trusted(rot=self._rotations(n, generator, device, dtype))

    def generators(self, dtype=torch.float64, device=None):
        return so3_generators(dtype, device)


class O3(SO3):
    """Rotations and reflections: a Haar rotation times ±I, each sign with probability 1/2."""

    name = "O(3)"
    has_reflections = True

    def _rotations(self, n, generator, device, dtype):
        r = super()._rotations(n, generator, device, dtype)
        sign = torch.randint(2, (n,), generator=generator, device=device).to(dtype) * 2 - 1
        return r * sign[:, None, None]


class RotationsByAngle(SO3):
    """Rotations about uniformly random axes by one fixed ``angle`` (degrees), or by an angle
    drawn uniformly from a range ``(lo, hi)``: measuring E′ with a fixed angle shows how a
    model's equivariance violation grows with the rotation; a range makes the small rotations of
    a near-canonical data set (``(0, 10)``) or a far-away test set (``(90, 180)``). Not a group
    (the angles are bounded), but a set of group elements to draw from."""

    def __init__(self, angle):
        lohi = tuple(angle) if isinstance(angle, (tuple, list)) else (angle, angle)
        ok = len(lohi) == 2 and all(not isinstance(a, bool) and isinstance(a, (int, float))
                                    and math.isfinite(a) for a in lohi)
        if not ok or not 0 <= lohi[0] <= lohi[1] <= 180:
            raise ValueError(f"angle must be a number of degrees or a range (lo, hi) with "
                             f"0 <= lo <= hi <= 180, got {angle!r}")
        self.lo, self.hi = float(lohi[0]), float(lohi[1])
        self.angle = self.lo if self.lo == self.hi else (self.lo, self.hi)
        self.name = (f"rotations by {self.lo:g}°" if self.lo == self.hi
                     else f"rotations by {self.lo:g}°–{self.hi:g}°")

    def _rotations(self, n, generator, device, dtype):
        axis = torch.randn(n, 3, generator=generator, device=device, dtype=dtype)
        axis = axis / torch.linalg.norm(axis, dim=-1, keepdim=True)
        if self.lo == self.hi:  # one angle: no draw (the random stream of a fixed angle)
            theta = torch.full((n,), math.radians(self.lo), device=device, dtype=dtype)
        else:
            u = torch.rand(n, generator=generator, device=device, dtype=dtype)
            theta = torch.deg2rad(self.lo + (self.hi - self.lo) * u)
        return axis_angle_to_matrix(axis, theta)

    def generators(self, dtype=torch.float64, device=None):
        return None


class Translations(Group):
    """Translations of R^d. Non-compact: elements are drawn from N(0, std² I) for sampling."""

    has_translation = True

    def __init__(self, std: float = 1.0, dim: int = 3):
        std = check_positive("translation std", std)
        self.std, self.dim = std, check_count("dim", dim)
        self.name = f"T({dim})"

    def _sample(self, n, generator, device, dtype):
        t = self.std * torch.randn(n, self.dim, generator=generator, device=device, dtype=dtype)
        return Transform.trusted(trans=t)

    def generators(self, dtype=torch.float64, device=None):
        d = self.dim
        g = torch.zeros(d, d + 1, d + 1, dtype=dtype, device=device)
        for k in range(d):
            g[k, k, d] = 1.0
        return g


class _Euclidean(Group):
    """Rotation part (SO(3) or O(3)) and a translation drawn from N(0, std² I)."""

    has_rotation = has_translation = True

    def __init__(self, rotations: SO3, translation_std: float = 1.0):
        self._rot_group = rotations
        self._trans_group = Translations(translation_std, 3)
        self.has_reflections = rotations.has_reflections
        self.translation_std = float(translation_std)

    def _sample(self, n, generator, device, dtype):
        rot = self._rot_group._rotations(n, generator, device, dtype)
        trans = self._trans_group._sample(n, generator, device, dtype).trans
        return Transform.trusted(rot, trans)

    def generators(self, dtype=torch.float64, device=None):
        rot = torch.zeros(3, 4, 4, dtype=dtype, device=device)
        rot[:, :3, :3] = so3_generators(dtype, device)
        return torch.cat([rot, self._trans_group.generators(dtype, device)])


class SE3(_Euclidean):
    name = "SE(3)"

    def __init__(self, translation_std: float = 1.0):
        super().__init__(SO3(), translation_std)


class E3(_Euclidean):
    name = "E(3)"

    def __init__(self, translation_std: float = 1.0):
        super().__init__(O3(), translation_std)


class Permutations(Group):
    """S_n acting on the particle axis, sampled uniformly."""

    has_permutation = True
    dim = None

    def __init__(self, n: int):
        self.n_particles = n = check_count("n", n)
        self.name = f"S_{n}"

    def _sample(self, n, generator, device, dtype):
        u = torch.rand(n, self.n_particles, generator=generator, device=device)
        return Transform.trusted(perm=torch.argsort(u, dim=1))


class ProductGroup(Group):
    """Direct product of groups acting on different parts of a Transform (e.g. SE(3) × S_n)."""

    def __init__(self, *groups: Group):
        bad = [g for g in groups if not isinstance(g, Group)]
        if bad or not groups:
            raise TypeError(f"a product needs groups, got {bad or 'none'}")
        flat: list[Group] = []
        for g in groups:
            flat.extend(g.factors if isinstance(g, ProductGroup) else [g])
        parts = [(g.has_rotation, g.has_translation, g.has_permutation) for g in flat]
        for k, what in enumerate(("rotation", "translation", "permutation")):
            if sum(p[k] for p in parts) > 1:
                raise ValueError(f"more than one factor has a {what} part: {flat}")
        dims = {g.dim for g in flat if g.dim is not None}
        if len(dims) > 1:
            raise ValueError(f"factors act on spaces of different dimension: {sorted(dims)}")
        self.factors = flat
        self.dim = dims.pop() if dims else None
        self.has_rotation = any(p[0] for p in parts)
        self.has_translation = any(p[1] for p in parts)
        self.has_permutation = any(p[2] for p in parts)
        self.has_reflections = any(g.has_reflections for g in flat)
        self.n_particles = next((g.n_particles for g in flat if g.has_permutation), None)
        self.name = " × ".join(g.name for g in flat)

    def _sample(self, n, generator, device, dtype):
        out: dict[str, Tensor | None] = {"rot": None, "trans": None, "perm": None}
        for g in self.factors:
            t = g._sample(n, generator, device, dtype)
            for k in out:
                if getattr(t, k) is not None:
                    out[k] = getattr(t, k)
        return Transform.trusted(**out)

    def generators(self, dtype=torch.float64, device=None):
        gens = [g.generators(dtype, device) for g in self.factors if g.generators() is not None]
        if not gens:
            return None
        if len(gens) == 1:
            return gens[0]
        # rotations (d×d) and translations ((d+1)×(d+1)): embed all in homogeneous form
        d = self.dim
        out = []
        for g in gens:
            if g.shape[-1] == d:
                h = torch.zeros(g.shape[0], d + 1, d + 1, dtype=dtype, device=device)
                h[:, :d, :d] = g
                g = h
            out.append(g)
        return torch.cat(out)


def check_group(group, name: str = "group") -> Group:
    """``group`` if it is a :class:`Group`; anything else (a name, None) is a TypeError naming
    ``name`` — before it fails deep inside a step or a metric."""
    if not isinstance(group, Group):
        raise TypeError(f"{name} must be a Group (e.g. SO3(), task.group), got {group!r}")
    return group


def without_permutations(group: Group) -> Group | None:
    """``group`` with its S_n factor dropped (None if nothing else is left): the part a linear
    Lie algebra can hold, and the part a model with a fixed particle order (an MLP) can respect.
    Symmetry discovery compares against this (its generators act on R^d, not on labels)."""
    if isinstance(group, ProductGroup):
        rest = [g for g in group.factors if not g.has_permutation]
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else ProductGroup(*rest)
    return None if group.has_permutation else group


def euclidean_group(n_particles: int | None = None, reflections: bool = False,
                    translation_std: float = 1.0) -> Group:
    """E(3) or SE(3), times S_n when ``n_particles`` is given: the usual symmetry of N-body tasks."""
    g: Group = E3(translation_std) if reflections else SE3(translation_std)
    return g * Permutations(n_particles) if n_particles else g
