"""What every model shares: built from a TaskSpec, maps a Sample to a dict of output fields."""

from __future__ import annotations

import torch
from torch import nn

from .._util import check_bool
from ..fields import Sample, TaskSpec

Tensor = torch.Tensor

CATEGORY_DIM = 16  # embedding width of categorical inputs (atom types)


HEADS = ("residual", "absolute")


class Model(nn.Module):
    """Base class. Subclasses implement ``predict(sample) -> [B, N, out_channels]`` (or a dict).

    ``self.head`` is the last layer feeding the outputs (GradNorm measures gradients there).

    Options every model takes:

    * ``centre`` (default True): translations handled by centring, as REMUL does — the mean
      position of the point input is subtracted from every point input before the model sees
      them and added back to every point output, so the model is exactly translation-equivariant
      whatever its architecture (and a system shifted by +200 looks like any other).
      ``centre=False`` feeds raw coordinates (GATr's Transformer baseline).
    * ``head``: ``"residual"`` (default) adds the linked input to a point output (the task's
      ``residual`` map, e.g. ``pos_next = pos + Δ``: the model predicts a displacement);
      ``"absolute"`` predicts the position itself (relative to the centre when centring), as
      GATr's Transformer baseline does.

    A model takes any number of particles (the N-body tasks' 6-body generalisation set) unless
    ``variable_size`` is False (the MLP, whose input layer is as wide as N × features).
    """

    equivariant = False  # by construction, under E(3) (or SE(3): see reflections) and permutations
    reflections = True  # an equivariant model's group includes reflections (O(3), not only SO(3))
    variable_size = True  # takes samples of any number of particles
    # the training engine (eqhelpers.train.train_many) may stack K copies (torch.func.vmap) and
    # capture their step in a CUDA graph; a model that cannot says why in stack_reason
    stackable = True
    stack_reason = ""
    graph_safe = True

    def __init__(self, spec: TaskSpec, centre: bool = True, head: str = "residual"):
        super().__init__()
        if not isinstance(spec, TaskSpec):
            raise TypeError(f"a model is built from a TaskSpec, got {type(spec).__name__}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        check_bool("centre", centre)
        self.spec = spec
        self.head_kind = head
        points = spec.points()
        self.centre_key = points[0] if centre and points else None
        self._point_outputs = [k for k, f in spec.outputs.items() if f.kind == "point"]
        self._neighbours: dict = {}
        # categorical inputs (atom types) are embedded; every model reads inputs via input()
        self.embeddings = nn.ModuleDict({k: nn.Embedding(f.categories, CATEGORY_DIM)
                                         for k, f in spec.inputs.items() if f.categories})
        self.in_channels = sum(self.input_channels(k) for k in spec.inputs)
        self.out_channels = sum(f.channels for f in spec.outputs.values())
        for name, f in spec.outputs.items():
            if not f.per_particle and f.kind != "scalar":
                raise ValueError(f"output {name!r}: a global output must be a scalar (it is "
                                 f"read out as a sum over particles), got {f}")

    def input_channels(self, name: str) -> int:
        """Channels a model sees for input ``name`` (the embedding width for categorical ones)."""
        return CATEGORY_DIM if name in self.embeddings else self.spec.inputs[name].channels

    def input(self, sample: Sample, name: str) -> Tensor:
        """Input ``name`` as the model sees it: categorical fields embedded, others as they are."""
        x = sample[name]
        return self.embeddings[name](x[..., 0].long()) if name in self.embeddings else x

    def check(self, sample: Sample) -> None:
        if not isinstance(sample, Sample):
            raise TypeError(f"{type(self).__name__} takes a Sample (task['train'], "
                            f"Sample(tensors, spec)), got {type(sample).__name__}")
        missing = [k for k in self.spec.inputs if k not in sample]
        if missing:
            raise ValueError(f"{type(self).__name__} needs input fields {missing}; "
                             f"the sample has {sorted(sample.keys())}")
        first = sample[next(iter(self.spec.inputs))]
        if first.shape[0] == 0:
            raise ValueError(f"{type(self).__name__} got an empty batch (0 samples)")
        for k, f in self.spec.inputs.items():  # shapes only: no host sync in the hot path
            x = sample[k]
            dims = 3 if f.per_particle else 2
            if x.dim() != dims or x.shape[-1] != f.channels:
                shape = "[B, N, c]" if f.per_particle else "[B, c]"
                raise ValueError(f"{type(self).__name__}: input {k!r} ({f}) must have shape "
                                 f"{shape} with c={f.channels}, got {tuple(x.shape)}")
        want = next(self.parameters()).dtype
        wrong = [k for k in self.spec.inputs if sample[k].is_floating_point()
                 and not self.spec.inputs[k].categories and sample[k].dtype != want]
        if wrong:
            raise ValueError(f"{type(self).__name__} has {want} weights but input {wrong[0]!r} "
                             f"is {sample[wrong[0]].dtype}: convert the sample "
                             f"(sample.to(dtype={want})) or build the model with that dtype")
        n = first.shape[1]
        if n != self.spec.n_particles and not self.variable_size:
            raise ValueError(f"{type(self).__name__} was built for {self.spec.n_particles} "
                             f"particles, got {n}: {self.fixed_size_reason}")

    fixed_size_reason = ""  # why a model with variable_size = False cannot take another N

    @property
    def config(self) -> dict:
        """What, beyond the weights, defines this model (recorded with checkpoints)."""
        return {"class": type(self).__name__, "centre": self.centre_key is not None,
                "head": self.head_kind}

    def neighbours(self, n: int, device) -> Tensor:
        """[N, N-1] indices j ≠ i (:func:`other_index`), cached per (N, device)."""
        key = (n, str(device))
        if key not in self._neighbours:
            self._neighbours[key] = other_index(n, device)
        return self._neighbours[key]

    def features(self, sample: Sample) -> Tensor:
        """All inputs concatenated per particle, [B, N, in_channels] (global fields broadcast)."""
        n = sample[next(k for k, f in self.spec.inputs.items() if f.per_particle)].shape[1]
        parts = []
        for k, f in self.spec.inputs.items():
            x = self.input(sample, k)
            parts.append(x if f.per_particle else x[:, None, :].expand(-1, n, -1))
        return torch.cat(parts, dim=-1)

    def split_outputs(self, sample: Sample, raw: Tensor) -> dict[str, Tensor]:
        """Split [B, N, out_channels] into the output fields and add residual inputs.

        A global (per-system) scalar output is the sum of its per-particle channels: an
        extensive read-out, like an energy as a sum of atomic energies.
        """
        out, i = {}, 0
        for k, f in self.spec.outputs.items():
            out[k] = raw[..., i:i + f.channels]
            if not f.per_particle:
                out[k] = out[k].sum(1)
            i += f.channels
            if k in self.spec.residual and self.head_kind == "residual":
                out[k] = out[k] + sample[self.spec.residual[k]]
        return out

    def forward(self, sample: Sample) -> dict[str, Tensor]:
        self.check(sample)
        if self.centre_key is None:
            return self.predict(sample)
        c = sample[self.centre_key].mean(dim=1, keepdim=True)  # [B, 1, 3]
        points = {k: sample[k] - c for k, f in self.spec.inputs.items() if f.kind == "point"}
        out = self.predict(sample.replace(**points))
        return {k: v + c if k in self._point_outputs else v for k, v in out.items()}

    def predict(self, sample: Sample) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def mlp(sizes: list[int], act=nn.SiLU, last_act: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_act:
            layers.append(act())
    return nn.Sequential(*layers)


def other_index(n: int, device=None) -> Tensor:
    """[N, N-1] indices j ≠ i for each i: the fully connected neighbourhood without self-loops."""
    idx = torch.arange(n, device=device)
    return idx.repeat(n, 1)[~torch.eye(n, dtype=torch.bool, device=device)].view(n, n - 1)


def build_edges(pos: Tensor, radius: float | None = None) -> Tensor:
    """Edges [2, E] (source j, target i) over the flattened B·N nodes, in pure torch.

    Fully connected within each sample (no self-loops) when ``radius`` is None, else only pairs
    closer than ``radius`` (which costs a host sync for the data-dependent edge count).
    """
    b, n, _ = pos.shape
    dev = pos.device
    mask = ~torch.eye(n, dtype=torch.bool, device=dev).expand(b, n, n)
    if radius is not None:
        if radius <= 0:
            raise ValueError(f"radius must be > 0, got {radius}")
        mask = mask & (torch.cdist(pos, pos) < radius)
    bi, i, j = mask.nonzero(as_tuple=True)
    return torch.stack([bi * n + j, bi * n + i])
