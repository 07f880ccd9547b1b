"""eqhelpers: learned equivariance, taught in notebooks.

Modules, in the order data flows: ``groups`` and ``fields`` (symmetries and how samples
transform), ``data`` (tasks), ``models``, ``symmetrize`` (frame averaging and canonical poses
around any model), ``equivariance`` (errors and objectives), ``train``, ``sweep``, ``augment``
and ``discover`` (learned symmetries), ``audit`` (does a data set already show a symmetry), and
``__main__`` (the command line). The budget knob lives in ``budget``.
"""

__version__ = "0.4.2"

from .budget import Budget, get_budget  # noqa: E402
from .fields import Field, Sample, TaskSpec, act  # noqa: E402
from .groups import (  # noqa: E402
    E3,
    O3,
    SE3,
    SO2,
    SO3,
    Cyclic,
    Permutations,
    Transform,
    Translations,
    euclidean_group,
)

__all__ = [
    "__version__", "Budget", "get_budget", "Field", "Sample", "TaskSpec", "act", "E3", "O3", "SE3",
    "SO2", "SO3", "Cyclic", "Permutations", "Transform", "Translations", "euclidean_group",
]
