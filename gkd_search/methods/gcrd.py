"""``gcrd``: Graph Contrastive Representation Distillation.

Joshi, Liu, Xun, Lin & Foo, "On Representation Knowledge Distillation for Graph Neural
Networks", IEEE TNNLS 2022, https://arxiv.org/abs/2111.04964, Sec. III:

    L = CE(y, s)  +  beta * L_G-CRD(z^S, z^T)

with ``L_G-CRD`` the structural loss ``gcrd`` (InfoNCE between student and teacher nodes in a
shared projected space, :mod:`gkd_search.losses.gcrd`) on the student's and the teacher's last
representations before their classifiers. The two projection heads belong to the loss and are
trained with the student. G-CRD reads no edges, so graph-free students (MLP) are accepted.
``beta`` is searched on a log range from 0.003 to 3 around the released code's weights (0.01
next to KD on ogbn-arxiv, 0.5 by default; 0.1 when not given); ``tau`` (default 0.075) and the
loss's fixed sizes are searched under the same names. Soft-label KD is added by the objective's ``softkd_weight`` ("KD + G-CRD").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from ..hookspecs import hookimpl
from ..losses.gcrd import GCRD
from ..params import FloatRange, Param
from ..types import DistillationMethod
from .lsp import StructuralMethod


class GCRDMethod(StructuralMethod):
    name = "gcrd"
    paper = GCRD.paper
    description = "CE + beta * G-CRD: contrastive alignment of projected student/teacher nodes"
    loss_class = GCRD
    hyperparameters: ClassVar[Mapping[str, Param]] = {"beta": FloatRange(0.003, 3.0, log=True),
                                                      **GCRD.hyperparameters}
    default_beta = 0.1


@hookimpl
def gkd_methods() -> list[DistillationMethod]:
    return [GCRDMethod()]
