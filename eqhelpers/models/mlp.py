"""An MLP on the flattened system: neither E(3)- nor permutation-equivariant."""

from __future__ import annotations

from torch import nn

from ..fields import Sample, TaskSpec
from .base import Model, mlp


class MLP(Model):
    variable_size = False
    fixed_size_reason = ("the MLP reads a system as one flat vector of N × features, so its "
                         "input and output layers are built for exactly N particles")

    def __init__(self, spec: TaskSpec, width: int = 64, layers: int = 3, **options):
        super().__init__(spec, **options)
        n = spec.n_particles
        hidden = 4 * width  # comparable parameter count to the token models
        self.body = mlp([n * self.in_channels] + [hidden] * layers, last_act=True)
        self.head = nn.Linear(hidden, n * self.out_channels)

    def predict(self, sample: Sample):
        x = self.features(sample)
        b, n, _ = x.shape
        raw = self.head(self.body(x.reshape(b, -1))).view(b, n, self.out_channels)
        return self.split_outputs(sample, raw)
