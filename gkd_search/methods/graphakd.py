"""``graphakd``: adversarial knowledge distillation with two trainable discriminators.

He, Wang, Zhang & Wu, "Compressing Deep Graph Neural Networks via Adversarial Knowledge
Distillation", KDD 2022, https://arxiv.org/abs/2205.11678. The student GNN is the generator;
two discriminators tell the teacher's knowledge from what the student inherited. The terms
below are written out from the paper's Sec. 3.2-3.3 and the authors' code (equation numbers
are not quoted here).

Representation identifier ``D_e`` (Sec. 3.2) on node embeddings ``h`` (teacher: ``h^T``,
student: ``h^S``), each row L2-normalised (``^h``), with diagonal bilinear weights ``Phi``:

* local view, one score per edge ``(u, v)`` (node embedding vs. node embedding)::

      D_loc(h_u, h_v) = sigmoid( ^h_u^T diag(phi_loc) ^h_v )
      L_loc = - mean_(u,v) log D_loc(h^T_u, h^T_v)  - mean_(u,v) log(1 - D_loc(h^S_u, h^S_v))

* global view, node embedding vs. graph summary ``s = sigmoid(mean_v h_v)`` (as in DGI,
  Velickovic et al. 2019), with the summaries of both networks::

      D_glob(h_v, s) = sigmoid( ^h_v^T diag(phi_glob) s )
      L_glob = - mean_v [ log D_glob(h^T_v, s^T) + log(1 - D_glob(h^S_v, s^T))
                        + log D_glob(h^S_v, s^S) + log(1 - D_glob(h^T_v, s^S)) ]

  ``L_e = L_loc + L_glob`` (option ``views`` keeps one of them, for ablations).

Logit identifier ``D_l`` (Sec. 3.3), a residual MLP on logits ``z`` with ``C + 1`` outputs,
``D_l(z) = W_2 ReLU(z + W_1 z + b_1)``: output ``C + 1`` is the adversarial head
``D_adv = sigmoid(.)`` (teacher or student?), outputs ``1..C`` the auxiliary classifier
``D_cls = softmax(.)`` (an AC-GAN head, Odena et al. 2017)::

      L_adv = - mean_v log D_adv(z^T_v) - mean_v log(1 - D_adv(z^S_v))
      L_cls = - mean_{v in V_L} [ log D_cls(z^T_v)[y_v] + log D_cls(z^S_v)[y_v] ]

With ``disc_hidden > 0`` (and not ``C``) the hidden layer has that width and no residual skip.

The game. The discriminators minimise ``L_D = alpha_e L_e + alpha_l (L_adv + L_cls)``. The
student fools them on the real/fake terms: ``L_loc``, the teacher-summary half of ``L_glob``
and ``L_adv``. The class term on its own logits, ``L_cls(z^S)``, and the student-summary half
of ``L_glob`` it minimises together with the discriminators, as the authors' code does (the
first is AC-GAN's rule: its logits should be classified correctly). Option ``generator``:

* ``nonsaturating`` (default; the generator loss of the authors' code): the student minimises
  ``-log D(fake)`` on the real/fake terms,

      J_S = CE + alpha_e [ -mean_(u,v) log D_loc(h^S_u, h^S_v) - mean_v log D_glob(h^S_v, s^T)
                           + L_glob's student-summary half ]
               + alpha_l [ -mean_v log D_adv(z^S_v) + L_cls ]

* ``minimax``: the student maximises ``L_D``'s real/fake terms,
  ``J_S = CE - alpha_e (L_loc + L_glob's teacher-summary half) + alpha_e (its student-summary
  half) - alpha_l L_adv + alpha_l L_cls``.

Our training loop has one Adam optimiser over student and loss parameters and one scalar, so
one ``backward()`` must give each player its own gradient (simultaneous gradient descent-ascent,
one discriminator step per student step). ``minimax`` does it with a gradient-reversal layer
(Ganin & Lempitsky, ICML 2015, https://arxiv.org/abs/1409.7495), ``R(x) = x`` forward and
``-grad`` backward, between the student's outputs (the projected embedding, the logits) and the
real/fake heads: ``CE + alpha_e L_e(R(h^S)) + alpha_l (L_adv(R(z^S)) + L_cls)`` gives the
discriminators ``grad L_D`` and the student ``grad J_S``. ``nonsaturating`` adds the
discriminators' real/fake terms on the detached student outputs (only the discriminators learn
from them) to the student's terms scored with detached discriminator weights (only the student
learns from them). In both ``forward`` returns ``J_S``'s value; what it adds for the
discriminators enters the graph with its value subtracted as a detached constant.

Widths. The student's embedding is ``representation(student.hidden)`` (the last layer
before the classifier, the logits of a 1-layer model) and the teacher's
``representation(teacher_hidden)``. A narrower (or wider) student embedding is mapped to the
teacher's width by a trainable linear map ``P`` owned by the loss; ``P`` is part of the
generator: it learns from the student's terms only (``minimax``: it sits before ``R``).
Equal widths: no map.

Deviations from the paper and the authors' code (MIRALab-USTC/GraphAKD):

* Simultaneous gradient descent-ascent: by default one discriminator step per student step,
  both from the same scalar and the same Adam. The authors keep separate optimisers and train
  the discriminators once every ``d_critic`` student steps (10 on Cora and PubMed, 8 on
  CiteSeer). Option ``d_critic`` (``Choice(1, 2, 5, 10)``, default 1) skips the
  discriminators' learning in between (their weights are read detached, so Adam leaves
  them be); on Cora with one optimiser ``d_critic = 10`` was worse than 1 (2x16 GCN 0.78 vs
  0.80 test accuracy, MLP 0.47 vs 0.53, three seeds, weights 1 and 0.5): a stale
  discriminator is easy to exploit.
* ``minimax`` (the gradient-reversal form) gives the student the saturating gradient of
  ``log(1 - D(fake))``, which keeps pushing once the discriminator is fooled. On Cora, three
  seeds, it was worse than ``nonsaturating`` at every weight tried (weights 1 and 0.5: GCN
  0.74 vs 0.80, MLP 0.52 vs 0.53; weights 0.3 and 0.15: GCN 0.809 vs 0.815, MLP 0.546 vs
  0.569), so ``nonsaturating`` is the default.
* Weights: the authors weight the representation terms 1 and the logit terms 0.5. Both lie
  inside the search ranges (``alpha_e`` in [0.03, 3], ``alpha_l`` in [0.015, 1.5], log), but
  the defaults (the ranges' geometric centres) are 0.3 and 0.15: with one discriminator step
  per student step the authors' weights cost accuracy on Cora (GCN 0.799 vs 0.815 at the
  defaults, MLP 0.534 vs 0.569; the label-only baseline is 0.804 and 0.559).
* The authors' extra L1 term between student and teacher logits (code only) is left out;
  ``softkd_weight`` adds a soft-label term when wanted.
* Sampling for cost (torch's global RNG, so trials stay reproducible): each step ``L_loc``
  averages over ``edge_sample`` edges drawn uniformly without replacement and the node means of
  ``L_glob`` over ``node_sample`` nodes (both ``Fixed``; 0: all, the paper's full sums, which
  are also used when the graph is smaller). The summaries always read every node. On Cora
  (10,556 edges, teacher width 256) this cuts the loss's forward and backward from about 42 to
  about 17 ms a step on one core (a 2x16 GCN's own: about 48 ms); the mean over a uniform
  sample is an unbiased estimate of the full mean.
* The authors scale the normalised scores by a learned scalar (initially 0.5); here the
  diagonal ``phi`` (initially ones) carries the scale alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..hookspecs import hookimpl
from ..params import Choice, Fixed, FloatRange, Param
from ..types import (
    DistillationBatch,
    DistillationContext,
    DistillationLoss,
    DistillationMethod,
    ModelOutput,
)
from ._common import representation, sample_nodes, supervised_cross_entropy

VIEWS = ("local+global", "local", "global")
GENERATORS = ("nonsaturating", "minimax")


class _GradientReversal(torch.autograd.Function):
    """Identity forward, negated gradient backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad.neg()


def reverse_gradient(x: Tensor) -> Tensor:
    """``x`` in the forward pass; its gradient comes back negated."""
    return _GradientReversal.apply(x)


def _bce(scores: Tensor, real: bool) -> Tensor:
    """``-mean log sigmoid(scores)`` (``real``) or ``-mean log(1 - sigmoid(scores))``."""
    target = torch.ones_like(scores) if real else torch.zeros_like(scores)
    return F.binary_cross_entropy_with_logits(scores, target)


def _frozen(param: Tensor, frozen: bool) -> Tensor:
    """``param`` itself, or detached: the generator's terms read the discriminators' weights
    without training them."""
    return param.detach() if frozen else param


class RepresentationIdentifier(nn.Module):
    """``D_e``: diagonal bilinear scores in a local (edge) and a global (summary) view.

    ``frozen=True`` scores with detached weights (the generator's side of the game).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.local_diag = nn.Parameter(torch.ones(channels))
        self.global_diag = nn.Parameter(torch.ones(channels))

    def local_scores(self, h: Tensor, edge_index: Tensor, frozen: bool = False) -> Tensor:
        """Pre-sigmoid ``^h_u^T diag(phi_loc) ^h_v`` for every edge ``(u, v)``, ``[E]``."""
        src = F.normalize(h.index_select(0, edge_index[0]), p=2.0, dim=-1)
        dst = F.normalize(h.index_select(0, edge_index[1]), p=2.0, dim=-1)
        return (src * _frozen(self.local_diag, frozen) * dst).sum(dim=-1)

    def global_scores(self, h: Tensor, summary: Tensor, frozen: bool = False) -> Tensor:
        """Pre-sigmoid ``^h_v^T diag(phi_glob) s`` for every row ``v`` of ``h``, ``[N]``."""
        return (F.normalize(h, p=2.0, dim=-1) * _frozen(self.global_diag, frozen)) @ summary

    def local_loss(self, real: Tensor, fake: Tensor, edge_index: Tensor, frozen: bool = False) -> Tensor:
        """``L_loc`` over the given edges: ``real``'s edges are real, ``fake``'s fake."""
        return (_bce(self.local_scores(real, edge_index, frozen), True)
                + _bce(self.local_scores(fake, edge_index, frozen), False))

    def summary_loss(self, real: Tensor, fake: Tensor, summary: Tensor, frozen: bool = False) -> Tensor:
        """One half of ``L_glob``: ``(real_v, s)`` real, ``(fake_v, s)`` fake."""
        return (_bce(self.global_scores(real, summary, frozen), True)
                + _bce(self.global_scores(fake, summary, frozen), False))


class LogitIdentifier(nn.Module):
    """``D_l``: ``C + 1`` outputs, ``[:, :C]`` class scores and ``[:, C]`` the real/fake score.

    ``hidden_channels`` equal to ``num_classes`` (or 0) is the paper's residual block
    ``W_2 ReLU(z + W_1 z + b_1)``; any other width is a plain one-hidden-layer MLP.
    """

    def __init__(self, num_classes: int, hidden_channels: int = 0) -> None:
        super().__init__()
        hidden_channels = hidden_channels or num_classes
        self.residual = hidden_channels == num_classes
        self.lin1 = nn.Linear(num_classes, hidden_channels)
        self.lin2 = nn.Linear(hidden_channels, num_classes + 1, bias=False)

    def forward(self, z: Tensor, frozen: bool = False) -> Tensor:
        h = F.linear(z, _frozen(self.lin1.weight, frozen), _frozen(self.lin1.bias, frozen))
        if self.residual:
            h = h + z
        return F.linear(F.relu(h), _frozen(self.lin2.weight, frozen))


class GraphAKDLoss(DistillationLoss):
    """The student's objective ``J_S`` (module docstring); the graph also trains ``D_e``, ``D_l``.

    ``d_critic``: the discriminators learn at every ``d_critic``-th call only (the first, then
    every ``d_critic`` calls); at the other calls they score with detached weights, so their
    gradients stay ``None`` and Adam leaves them (and their moments) untouched.
    """

    def __init__(self, alpha_e: float, alpha_l: float, student_channels: int, teacher_channels: int,
                 num_classes: int, disc_hidden: int = 0, views: str = "local+global",
                 generator: str = "nonsaturating", d_critic: int = 1, edge_sample: int = 0,
                 node_sample: int = 0) -> None:
        super().__init__()
        if views not in VIEWS:
            raise ValueError(f"unknown views {views!r} (known: {', '.join(VIEWS)})")
        if generator not in GENERATORS:
            raise ValueError(f"unknown generator {generator!r} (known: {', '.join(GENERATORS)})")
        if int(d_critic) < 1:
            raise ValueError(f"d_critic must be at least 1, got {d_critic}")
        self.alpha_e, self.alpha_l, self.views, self.generator = float(alpha_e), float(alpha_l), views, generator
        self.d_critic, self.calls = int(d_critic), 0
        self.edge_sample, self.node_sample = int(edge_sample), int(node_sample)
        self.projection: nn.Module = (nn.Identity() if student_channels == teacher_channels
                                      else nn.Linear(student_channels, teacher_channels))
        self.rep_identifier = RepresentationIdentifier(teacher_channels)
        self.logit_identifier = LogitIdentifier(num_classes, int(disc_hidden))
        #: the last call's terms (floats): ``ce``; the discriminators' ``local``, ``global``,
        #: ``adv``, ``cls`` (non-saturating: only at the calls where they learn); with the
        #: non-saturating generator also its ``g_local``, ``g_global`` (teacher-summary half) and
        #: ``g_adv``
        self.last_terms: dict[str, float] = {}

    def _record(self, **terms: Tensor) -> None:
        self.last_terms.update({k.rstrip("_"): float(v.detach()) for k, v in terms.items()})

    def representation_terms(self, student: ModelOutput, batch: DistillationBatch,
                             train_d: bool) -> tuple[Tensor, Tensor]:
        """``(terms, discriminator-only part)`` of the representation identifier's game.

        ``terms`` goes into the backward pass; the second entry is the part of its value that
        the student's objective does not hold (``forward`` subtracts it, detached).
        """
        teacher = representation(batch.teacher_hidden).detach()
        fake = self.projection(representation(student.hidden))
        frozen, minimax = not train_d, self.generator == "minimax"
        terms = d_only = fake.new_zeros(())
        if "local" in self.views and batch.edge_index.numel() > 0:
            edges = batch.edge_index
            picked = sample_nodes(edges.size(1), self.edge_sample, device=edges.device)
            edges = edges if picked is None else edges[:, picked]
            if minimax:  # J_S holds -L_loc, the backward pass +L_loc
                local = self.rep_identifier.local_loss(teacher, reverse_gradient(fake), edges, frozen)
                terms, d_only = terms + local, d_only + 2.0 * local
                self._record(local=local)
            else:
                g_local = _bce(self.rep_identifier.local_scores(fake, edges, frozen=True), True)
                terms = terms + g_local
                self._record(g_local=g_local)
                if train_d:
                    local = self.rep_identifier.local_loss(teacher, fake.detach(), edges)
                    terms, d_only = terms + local, d_only + local
                    self._record(local=local)
        if "global" in self.views:
            nodes = sample_nodes(fake.size(0), self.node_sample, device=fake.device)
            s_t, s_s = torch.sigmoid(teacher.mean(dim=0)), torch.sigmoid(fake.mean(dim=0))
            t_rows = teacher if nodes is None else teacher.index_select(0, nodes)
            s_rows = fake if nodes is None else fake.index_select(0, nodes)
            # the student-summary half: both players minimise it (the authors' code)
            student_half = self.rep_identifier.summary_loss(s_rows, t_rows, s_s, frozen)
            terms = terms + student_half
            if minimax:
                teacher_half = self.rep_identifier.summary_loss(t_rows, reverse_gradient(s_rows), s_t, frozen)
                terms, d_only = terms + teacher_half, d_only + 2.0 * teacher_half
                self._record(global_=teacher_half + student_half)
            else:
                g_global = _bce(self.rep_identifier.global_scores(s_rows, s_t, frozen=True), True)
                terms = terms + g_global
                self._record(g_global=g_global)
                if train_d:
                    teacher_half = self.rep_identifier.summary_loss(t_rows, s_rows.detach(), s_t)
                    terms, d_only = terms + teacher_half, d_only + teacher_half
                    self._record(global_=teacher_half + student_half)
        return terms, d_only

    def logit_terms(self, student: ModelOutput, batch: DistillationBatch, train_d: bool) -> tuple[Tensor, Tensor]:
        """The same pair for the logit identifier; ``L_cls`` is minimised by both players."""
        num_classes, z_s, frozen = student.logits.size(-1), student.logits, not train_d
        teacher_out = self.logit_identifier(batch.teacher_logits.detach(), frozen)
        student_out = self.logit_identifier(z_s, frozen)
        cls = (supervised_cross_entropy(teacher_out[:, :num_classes], batch.y, batch.train_mask)
               + supervised_cross_entropy(student_out[:, :num_classes], batch.y, batch.train_mask))
        real = _bce(teacher_out[:, num_classes], True)
        if self.generator == "minimax":
            adv = real + _bce(self.logit_identifier(reverse_gradient(z_s), frozen)[:, num_classes], False)
            self._record(adv=adv, cls=cls)
            return adv + cls, 2.0 * adv
        g_adv = _bce(self.logit_identifier(z_s, frozen=True)[:, num_classes], True)
        self._record(cls=cls, g_adv=g_adv)
        if not train_d:
            return cls + g_adv, cls.new_zeros(())
        adv = real + _bce(self.logit_identifier(z_s.detach())[:, num_classes], False)
        self._record(adv=adv)
        return adv + cls + g_adv, adv

    def forward(self, student: ModelOutput, batch: DistillationBatch) -> Tensor:
        train_d = self.calls % self.d_critic == 0
        self.calls += 1
        ce = supervised_cross_entropy(student.logits, batch.y, batch.train_mask)
        self.last_terms = {"ce": float(ce.detach())}
        total, d_only = ce, ce.new_zeros(())
        if self.alpha_e > 0:
            terms, extra = self.representation_terms(student, batch, train_d)
            total, d_only = total + self.alpha_e * terms, d_only + self.alpha_e * extra
        if self.alpha_l > 0:
            terms, extra = self.logit_terms(student, batch, train_d)
            total, d_only = total + self.alpha_l * terms, d_only + self.alpha_l * extra
        # same gradients; the value is the student's objective J_S
        return total - d_only.detach()


class GraphAKD(DistillationMethod):
    name = "graphakd"
    paper = ("He, Wang, Zhang & Wu, Compressing Deep Graph Neural Networks via Adversarial Knowledge "
             "Distillation, KDD 2022 (arXiv:2205.11678)")
    description = ("adversarial KD: embedding discriminator (edge + summary views) and logit discriminator "
                   "with an auxiliary classifier, trained against the student in the same backward pass")
    requires = frozenset({"logits", "hidden"})
    hyperparameters: ClassVar[Mapping[str, Param]] = {
        "alpha_e": FloatRange(0.03, 3.0, log=True),
        "alpha_l": FloatRange(0.015, 1.5, log=True),
        "disc_hidden": Choice((0, 64)),
        "views": Choice(VIEWS),
        "generator": Choice(GENERATORS),
        "d_critic": Choice((1, 2, 5, 10)),
        "edge_sample": Fixed(4096),
        "node_sample": Fixed(2048),
    }

    def build_loss(self, params: Mapping[str, Any], context: DistillationContext) -> DistillationLoss:
        return GraphAKDLoss(
            alpha_e=params["alpha_e"], alpha_l=params["alpha_l"],
            student_channels=int(context.student_hidden_dims[-2] if len(context.student_hidden_dims) > 1
                                 else context.student_hidden_dims[-1]),
            teacher_channels=int(context.teacher_hidden_dims[-2] if len(context.teacher_hidden_dims) > 1
                                 else context.teacher_hidden_dims[-1]),
            num_classes=context.num_classes, disc_hidden=int(params.get("disc_hidden", 0)),
            views=str(params.get("views", "local+global")), generator=str(params.get("generator", "nonsaturating")),
            d_critic=int(params.get("d_critic", 1)),
            edge_sample=int(params.get("edge_sample", 0)), node_sample=int(params.get("node_sample", 0)),
        )


@hookimpl
def gkd_methods() -> list[DistillationMethod]:
    return [GraphAKD()]
