"""An MLP on the flattened system: neither E(3)- nor permutation-equivariant.

``distances=True`` appends the N(N−1)/2 pairwise distances of the point input, each standardised
by its mean and spread on the first training batch (a data-dependent initialisation, as ActNorm
does; kept in the state dict). The raw coordinates stay in the input, so the model is still not
rotation-invariant by design: it *can* ignore orientation, and training decides whether it does.
Molecular energies need this: bond lengths vary by hundredths of an Å, which an MLP on raw
coordinates does not resolve at a small budget.
"""

from __future__ import annotations

import torch
from torch import nn

from .._util import check_bool
from ..fields import Sample, TaskSpec
from .base import Model, mlp


class MLP(Model):
    variable_size = False
    fixed_size_reason = ("the MLP reads a system as one flat vector of N × features, so its "
                         "input and output layers are built for exactly N particles")

    def __init__(self, spec: TaskSpec, width: int = 64, layers: int = 3, distances: bool = False,
                 **options):
        super().__init__(spec, **options)
        n = spec.n_particles
        check_bool("distances", distances)
        points = spec.points()
        if distances and (not points or n < 2):
            raise ValueError("distances=True needs a point input of at least 2 particles "
                             f"(task inputs: {sorted(spec.inputs)}, {n} particle(s))")
        self.distances = distances
        self.pos_key = points[0] if distances else None
        n_pairs = n * (n - 1) // 2 if distances else 0
        if distances:
            self.stackable = False
            self.stack_reason = ("its distance standardisation is set from the first training "
                                 "batch, a data-dependent step the stacked engine does not trace")
            self.register_buffer("pairs", torch.triu_indices(n, n, 1), persistent=False)
            self.register_buffer("dist_mean", torch.zeros(n_pairs))
            self.register_buffer("dist_std", torch.ones(n_pairs))
            self.register_buffer("dist_ready", torch.zeros((), dtype=torch.bool))
        hidden = 4 * width  # comparable parameter count to the token models
        self.body = mlp([n * self.in_channels + n_pairs] + [hidden] * layers, last_act=True)
        self.head = nn.Linear(hidden, n * self.out_channels)

    @property
    def config(self) -> dict:
        return {**super().config, **({"distances": True} if self.distances else {})}

    def pair_distances(self, sample: Sample) -> torch.Tensor:
        """[B, N(N−1)/2] distances of the point input, standardised (module docstring)."""
        pos = sample[self.pos_key]
        i, j = self.pairs
        d = (pos[:, i] - pos[:, j]).norm(dim=-1)
        if self.training:
            # set once, on the first training batch; written with torch.where so that no step
            # waits for the device to say whether it has been set (no host sync)
            with torch.no_grad():
                ready = self.dist_ready
                spread = d.std(0) if len(d) > 1 else torch.ones_like(d[0])
                spread = torch.maximum(spread, 1e-3 * d.mean().clamp_min(1e-6))
                self.dist_mean.copy_(torch.where(ready, self.dist_mean, d.mean(0)))
                self.dist_std.copy_(torch.where(ready, self.dist_std, spread))
                self.dist_ready.fill_(True)
        return (d - self.dist_mean) / self.dist_std

    def predict(self, sample: Sample):
        x = self.features(sample)
        b, n, _ = x.shape
        flat = x.reshape(b, -1)
        if self.distances:
            flat = torch.cat([flat, self.pair_distances(sample)], dim=-1)
        raw = self.head(self.body(flat)).view(b, n, self.out_channels)
        return self.split_outputs(sample, raw)
