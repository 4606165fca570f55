"""``gsp``: distillation with the Global Structure Preserving loss.

Joshi, Liu, Xun, Lin & Foo, "On Representation Knowledge Distillation for Graph Neural
Networks", IEEE TNNLS 2022, https://arxiv.org/abs/2111.04964, Sec. III:

    L = CE(y, s)  +  beta * L_GSP(z^S, z^T)

with ``L_GSP`` the structural loss ``gsp`` (LSP over all pairs of sampled nodes,
:mod:`gkd_search.losses.gsp`) between the student's and the teacher's last representations
before their classifiers. GSP needs no edges, so graph-free students (MLP) are accepted.
``beta`` is searched on a log range from 1 to 1000 (the released code weights its MSE variant by
10; the KL of cosine-kernel distributions, our default, is smaller and trains well with 100 on
Cora, the default when ``beta`` is not given); the loss's own
hyperparameters (``kernel``, ``sigma``, ``num_nodes``, ``criterion``) are searched under the same
names. Soft-label KD is added by the objective's ``softkd_weight`` ("KD + GSP").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from ..hookspecs import hookimpl
from ..losses.gsp import GSP
from ..params import FloatRange, Param
from ..types import DistillationMethod
from .lsp import StructuralMethod


class GSPMethod(StructuralMethod):
    name = "gsp"
    paper = GSP.paper
    description = "CE + beta * GSP: match all-pairs similarity structure of sampled nodes"
    loss_class = GSP
    hyperparameters: ClassVar[Mapping[str, Param]] = {"beta": FloatRange(1.0, 1000.0, log=True),
                                                      **GSP.hyperparameters}
    default_beta = 100.0


@hookimpl
def gkd_methods() -> list[DistillationMethod]:
    return [GSPMethod()]
