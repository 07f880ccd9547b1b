"""A plain Transformer over particle tokens (no positional encoding, so permutation-equivariant,
but not E(3)-equivariant: coordinates enter as raw numbers)."""

from __future__ import annotations

from torch import nn

from ..fields import Sample, TaskSpec
from .base import Model


class Transformer(Model):
    def __init__(self, spec: TaskSpec, width: int = 64, layers: int = 3, heads: int = 4,
                 **options):
        super().__init__(spec, **options)
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        self.embed = nn.Linear(self.in_channels, width)
        block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, self.out_channels)

    def predict(self, sample: Sample):
        h = self.encoder(self.embed(self.features(sample)))
        return self.split_outputs(sample, self.head(self.norm(h)))
