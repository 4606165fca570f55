"""The small types every layer shares, and the abstract components plugins provide.

A plugin provides instances of :class:`DatasetSpec`, :class:`ModelFamily`,
:class:`DistillationMethod` and :class:`StructuralLoss` through the hooks in
:mod:`gkd_search.hookspecs`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional

import torch
from torch import Tensor, nn

from .params import Param

# --------------------------------------------------------------------------- data


@dataclass
class GraphDataset:
    """A node-classification graph with its split.

    ``data`` is a :class:`torch_geometric.data.Data` with ``x`` ``[N, F]``, ``edge_index``
    ``[2, E]``, ``y`` ``[N]`` and boolean ``train_mask``, ``val_mask``, ``test_mask`` ``[N]``.

    A heterogeneous graph (ogbn-mag) is stored the way RGCN reads it: every node type in one
    node set and, in addition, ``edge_type`` ``[E]`` (the relation of each edge, ``0..R-1``),
    ``node_type`` ``[N]`` and ``target_mask`` ``[N]`` (the nodes of the type being
    classified). ``y`` is ``-1`` and the split masks are ``False`` on every other node.

    Attributes:
        evaluator: the dataset's official metric, ``evaluator(logits, y, mask) -> float``
            (OGB's ``Evaluator``); ``None``: accuracy.
        relation_names: names of the relation types, for heterogeneous graphs.
        metric: the dataset's own ``--metric`` default (``accuracy``, ``macro-f1``,
            ``roc-auc``); ``None``: its ``evaluator``, else accuracy.
        source: where the graph came from (a file path, a data root), shown with the MLflow
            input dataset.
    """

    name: str
    data: Any
    num_classes: int
    evaluator: Optional[Any] = None
    relation_names: tuple[str, ...] = ()
    metric: Optional[str] = None
    source: Optional[str] = None

    @property
    def num_features(self) -> int:
        return int(self.data.x.size(1))

    @property
    def num_nodes(self) -> int:
        return int(self.data.num_nodes)

    @property
    def num_relations(self) -> int:
        """Relation types (1 for a homogeneous graph)."""
        edge_type = getattr(self.data, "edge_type", None)
        if edge_type is None:
            return 1
        return max(len(self.relation_names), int(edge_type.max()) + 1 if edge_type.numel() else 1)

    def data_on(self, device: Any) -> Any:
        """The graph on ``device``, leaving :attr:`data` where it is: PyG's ``Data.to()`` moves the
        tensors in place, so a trial or a teacher moving the shared graph to a GPU would move it
        for everyone; this moves a shallow copy (on the same device the copy shares the tensors)."""
        import copy

        return copy.copy(self.data).to(device)

    @property
    def is_heterogeneous(self) -> bool:
        return getattr(self.data, "edge_type", None) is not None

    @property
    def target_nodes(self) -> Optional[Tensor]:
        """Ids of the nodes being classified (``None``: every node)."""
        mask = getattr(self.data, "target_mask", None)
        return None if mask is None else torch.nonzero(mask, as_tuple=False).view(-1)

    def content_hash(self) -> str:
        """SHA-256 (first 16 hex digits) of every tensor of the graph that a model or a split
        reads: features, edges, labels, the masks and, on a heterogeneous graph, edge and node
        types. The same graph gives the same hash, whatever file it came from. Computed once."""
        cached = getattr(self, "_content_hash", None)
        if cached is None:
            import hashlib

            digest = hashlib.sha256()
            for key in ("x", "edge_index", "y", "train_mask", "val_mask", "test_mask", "edge_type", "node_type",
                        "target_mask"):
                value = getattr(self.data, key, None)
                if value is None:
                    continue
                tensor = value.detach().contiguous().cpu()
                digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
                digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
            cached = digest.hexdigest()[:16]
            object.__setattr__(self, "_content_hash", cached)
        return cached

    def fingerprint(self) -> dict[str, Any]:
        """Cheap content summary used in cache keys (sizes and sums, not a full hash)."""
        d = self.data
        summary = {
            "name": self.name,
            "nodes": self.num_nodes,
            "edges": int(d.edge_index.size(1)),
            "features": self.num_features,
            "classes": self.num_classes,
            "x_sum": round(float(d.x.double().sum()), 4),
            "edge_sum": int(d.edge_index.sum()),
            "split": [int(d.train_mask.sum()), int(d.val_mask.sum()), int(d.test_mask.sum())],
            "split_sum": int(torch.nonzero(d.train_mask).sum() + 3 * torch.nonzero(d.val_mask).sum()),
        }
        if self.is_heterogeneous:
            summary["edge_type_sum"] = int(d.edge_type.sum())
        return summary


@dataclass(frozen=True)
class Unset:
    """A dataset option with no default value (``options = {"split_seed": Unset(int)}``): given,
    it is converted to ``type``; not given, :meth:`DatasetSpec.option_values` holds ``None``, so
    ``load`` can fall back on something else (``--seed``) without a made-up sentinel like ``-1``."""

    type: type = str


class DatasetSpec(ABC):
    """A dataset a search can run on.

    Attributes:
        name: the ``--dataset`` value (lower case).
        default_teacher: ``FAMILY:LAYERS:HIDDEN`` used when ``--teacher`` is not given; ``None``
            (or ``"auto"``): ``--teacher auto``, a search over well-known teachers
            (:mod:`gkd_search.teacher_search`).
        options: option names accepted after the name (``synthetic:nodes=1000,...``).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    default_teacher: ClassVar[Optional[str]] = None
    options: ClassVar[Mapping[str, Any]] = {}
    #: True: ``--dataset`` keys that ``options`` does not declare reach :meth:`load` as strings
    #: (``pyg:`` passes them to a PyG dataset class); False: they are an error
    passes_other_options: ClassVar[bool] = False

    def option_values(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Every declared option: the given ``options`` over the defaults, ``None`` for an
        :class:`Unset` one that was not given."""
        defaults = {k: None if isinstance(v, Unset) else v for k, v in self.options.items()}
        return {**defaults, **options}

    @abstractmethod
    def load(self, root: Optional[Path], cache_dir: Path, seed: int, **options: Any) -> GraphDataset:
        """Load the graph.

        Args:
            root: a read-only folder holding the raw files (``--data-root`` or ``GKD_DATA``), or
                ``None`` to let the loader download into ``cache_dir`` where it can.
            cache_dir: a writable folder for processed files.
            seed: the seed of any random split.

        Raises:
            DataMissingError: the files are missing; the message says which files go where.
        """


# --------------------------------------------------------------------------- models


@dataclass
class ModelOutput:
    """What every model returns.

    Attributes:
        logits: ``[N, num_classes]``.
        hidden: one tensor per layer, the layer's output before its activation, in order;
            ``hidden[-1]`` is ``logits``.
    """

    logits: Tensor
    hidden: list[Tensor]


class GraphModel(nn.Module):
    """A node classifier: ``forward(x, edge_index) -> ModelOutput``.

    ``uses_graph`` is False for models that read only node features at inference (MLP);
    they ignore ``edge_index``. ``relational`` models (RGCN) also take ``edge_type`` ``[E]``:
    ``forward(x, edge_index, edge_type)``; call any model through :func:`run_model`.
    """

    uses_graph: bool = True
    relational: bool = False
    #: the family's edge normalisation, ``normalize(edge_index, num_nodes) -> (edge_index,
    #: edge_weight)`` (GCN's ``D^-1/2 (A + I) D^-1/2``), or ``None`` when the layers read the raw
    #: edges. A model with one must accept ``forward(x, edge_index, edge_weight=w)``, meaning
    #: the edges are already normalised: the serving path (:mod:`gkd_search.serving`) computes
    #: the weights once on the whole graph, so a request's k-hop subgraph gives exactly the
    #: full-graph outputs (subgraph degrees would not).
    normalize: Optional[Any] = None

    def forward(self, x: Tensor, edge_index: Tensor) -> ModelOutput:  # pragma: no cover
        raise NotImplementedError

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups for per-group weight decay: ``{"conv": [...], "dense": [...]}``
        for GCNII, whose paper decays its convolutions more than its linear layers
        (``conv_weight_decay``); default one group, ``{"all": [...]}``."""
        return {"all": list(self.parameters())}

    @torch.no_grad()
    def inference(self, x: Tensor, edge_index: Tensor, edge_type: Optional[Tensor] = None, *,
                  chunk_size: Optional[int] = None, keep_hidden: bool = True) -> ModelOutput:
        """Eval-mode outputs for every node, for a teacher's outputs on a large graph.

        A family whose layers can run on part of the graph overrides this to compute one layer
        at a time, ``chunk_size`` nodes at a time from their full in-neighbourhood, so the
        messages of the whole graph are never in memory at once; it returns exactly what the
        full forward returns. ``keep_hidden=False`` keeps only the logits (``hidden == [logits]``),
        freeing each layer's output once the next is computed. This default runs the full forward.
        """
        self.eval()
        out = run_model(self, x, edge_index, edge_type)
        return out if keep_hidden else ModelOutput(out.logits, [out.logits])


@torch.no_grad()
def output_widths(model: GraphModel, data: Any) -> list[int]:
    """The width of every entry of the model's ``hidden`` (the last is the number of classes),
    from an eval-mode forward on two isolated nodes of ``data``."""
    model.eval()
    edge_type = getattr(data, "edge_type", None)
    out = run_model(model, data.x[:2], data.edge_index[:, :0], None if edge_type is None else edge_type[:0])
    return [int(h.size(-1)) for h in out.hidden]


def run_model(model: GraphModel, x: Tensor, edge_index: Optional[Tensor], edge_type: Optional[Tensor] = None,
              edge_weight: Optional[Tensor] = None) -> ModelOutput:
    """``model(x, edge_index)``, with ``edge_type`` for relational models (RGCN); the relation
    types of a heterogeneous graph are ignored by the others, which see one relation.
    ``edge_weight``: the edges are already normalised by the model's :attr:`GraphModel.normalize`
    (given only to models that have one)."""
    kwargs = {} if edge_weight is None else {"edge_weight": edge_weight}
    if getattr(model, "relational", False):
        return model(x, edge_index, edge_type, **kwargs)
    return model(x, edge_index, **kwargs)


class ModelFamily(ABC):
    """Builds models of one family (GCN, GraphSAGE, GAT, MLP, ...).

    Attributes:
        name: the family's name in search spaces and ``--teacher``.
        uses_graph: whether inference reads the graph (``False`` for MLP).
        relational: whether the models read edge types (RGCN): :meth:`build` is then called with
            ``num_relations=R`` too, and the model with ``(x, edge_index, edge_type)``.
        hyperparameters: family-specific architecture parameters (GAT's ``heads``) with their
            default search ranges; they must be :class:`~gkd_search.params.Choice` or
            :class:`~gkd_search.params.Fixed` because each value is a distinct architecture.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: the citation of the paper whose equations the models implement
    paper: ClassVar[str] = ""
    uses_graph: ClassVar[bool] = True
    #: relational families (RGCN) read edge types; ``build`` then also gets ``num_relations``
    relational: ClassVar[bool] = False
    #: False for families without a hidden width (SGC: one linear map after K propagations);
    #: search spaces then record ``hidden_channels`` as 0
    uses_hidden_channels: ClassVar[bool] = True
    #: True when a 1-layer model still has a hidden width (GCNII: its convolution runs at
    #: ``hidden_channels`` between two linears); otherwise search spaces record 0 for one layer
    hidden_channels_at_one_layer: ClassVar[bool] = False
    hyperparameters: ClassVar[Mapping[str, Param]] = {}
    #: the depths and widths searched when ``--families`` names this family and the space file
    #: does not list it
    default_num_layers: ClassVar[tuple[int, ...]] = (1, 2, 3)
    default_hidden_channels: ClassVar[tuple[int, ...]] = (16, 32, 64, 128)

    @abstractmethod
    def build(
        self,
        in_channels: int,
        num_classes: int,
        num_layers: int,
        hidden_channels: int,
        dropout: float = 0.0,
        **params: Any,
    ) -> GraphModel:
        """Return a new, randomly initialised model."""

    #: family parameters that have no effect on a 1-layer model (GAT's hidden ``heads``)
    single_layer_ignores: ClassVar[frozenset[str]] = frozenset()

    def num_hops(self, num_layers: int, **params: Any) -> int:
        """How many hops of neighbourhood one prediction reads (0 for graph-free models), for a
        model of ``num_layers`` layers and family parameters ``params`` (APPNP: its ``K``)."""
        return num_layers if self.uses_graph else 0


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- teacher


@dataclass
class TeacherOutputs:
    """A trained teacher's outputs for every node, computed once per search.

    Attributes:
        logits: ``[N, C]`` in eval mode.
        hidden: per-layer pre-activation outputs; ``hidden[-1]`` is the last layer's output, equal
            to ``logits`` unless those were adapted to label shift (``label_shift``).
        spec: the teacher's ``FAMILY:LAYERS:HIDDEN``.
    """

    logits: Tensor
    hidden: list[Tensor]
    spec: str
    num_params: int
    val_acc: float
    test_acc: float
    from_cache: bool = False
    cache_path: Optional[str] = None
    #: the search's ``--metric`` on the validation and test nodes (the teacher early-stops on it)
    val_score: Optional[float] = None
    test_score: Optional[float] = None
    metric: str = "accuracy"
    #: the teacher cache's key (a hash of dataset, config, seed and code version), or of the
    #: ``--teacher-checkpoint`` file: the lineage of every student distilled from it
    cache_key: Optional[str] = None
    #: the label-shift adaptation applied to ``logits`` (:meth:`gkd_search.class_prior.LabelShift.
    #: as_dict` plus the accuracies before it, ``val_acc_before`` and ``test_acc_before``); ``None``: as trained
    label_shift: Optional[dict] = None


#: What a method may ask of the teacher (``DistillationMethod.requires``).
TEACHER_OUTPUTS = frozenset({"logits", "hidden"})


# --------------------------------------------------------------------------- distillation


@dataclass
class DistillationBatch:
    """Everything a loss sees at one training step: the rows it is computed on (full-batch
    training on a homogeneous graph: every node).

    Attributes:
        y: labels ``[N]``; only ``train_mask`` rows may be used as supervision.
        train_mask: boolean ``[N]``.
        teacher_logits: ``[N, C]``.
        teacher_hidden: per-layer teacher outputs, each ``[N, d_l]`` (empty unless the method
            ``requires`` ``"hidden"``).
        edge_index: the graph ``[2, E]`` between these rows (structural losses use it).
        node_ids: which nodes of the graph in :class:`DistillationContext` the rows are
            (``None``: all of them, in order). Mini-batch training passes the batch's seed nodes
            (their edges are the subgraph the seeds induce); a heterogeneous graph passes its
            target nodes. A loss that holds per-node state (InfGraND's influence) indexes it
            with these.
    """

    y: Tensor
    train_mask: Tensor
    teacher_logits: Tensor
    teacher_hidden: list[Tensor]
    edge_index: Tensor
    node_ids: Optional[Tensor] = None

    @property
    def num_nodes(self) -> int:
        return int(self.y.size(0))


@dataclass
class DistillationContext:
    """What a method knows when it builds its loss.

    Attributes:
        num_classes: ``C``.
        student_family: the student's family name (``gcn``, ``mlp``, ...).
        student_uses_graph: False for graph-free students (MLP).
        student_hidden_dims: width of every student layer output, ``[..., C]`` (the sizes of
            :attr:`ModelOutput.hidden`); a method sizes its own projections from these.
        teacher_hidden_dims: the same for the teacher.
        x: the graph's raw node features ``[N, F]`` (before any
            :meth:`DistillationMethod.student_features`) and ``edge_index`` ``[2, E]``, for
            methods that precompute something per graph (InfGraND's influence scores). On a
            heterogeneous graph, the target nodes and the edges between them.
        structural_losses: every registered :class:`StructuralLoss` by name, for methods that
            take one as an option (STRIDE).
        cache_dir: a writable folder for per-graph caches (``None``: do not cache on disk).
        seed: the trial's seed, for any sampling the loss does.
        teacher_logits: the teacher's logits for every node of that graph ``[N, C]``: a
            mini-batch holds only its own rows, and a loss that reads neighbours' soft labels
            (InfGraND) takes them from here.
    """

    num_classes: int
    student_family: str
    student_uses_graph: bool
    student_hidden_dims: list[int]
    teacher_hidden_dims: list[int]
    x: Optional[Tensor] = None
    edge_index: Optional[Tensor] = None
    structural_losses: Mapping[str, StructuralLoss] = field(default_factory=dict)
    cache_dir: Optional[Path] = None
    seed: int = 0
    teacher_logits: Optional[Tensor] = None


class DistillationLoss(nn.Module):
    """A method's full training objective; it may own trainable parameters.

    ``forward(student, batch)`` returns a scalar: cross-entropy on the labelled nodes plus the
    method's distillation terms, weighted as the method's paper does. The training loop
    optimises the loss's parameters together with the student's.
    """

    def forward(self, student: ModelOutput, batch: DistillationBatch) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def diagnostics(self, student: ModelOutput, batch: DistillationBatch) -> dict[str, Tensor]:
        """Named 2-D matrices worth looking at (ABKD's attention ``[L_t, L_s]``).

        The trial calls this before and after training and logs each matrix as a heatmap PNG
        on the trial's MLflow run. Rows are teacher layers, columns student layers.
        """
        return {}


class DistillationMethod(ABC):
    """A knowledge-distillation method.

    Attributes:
        name: the method's name in search spaces, ``--methods`` and MLflow's ``method`` param.
        paper: the citation of the paper whose equations :meth:`build_loss` implements.
        requires: which teacher outputs the loss reads, a subset of :data:`TEACHER_OUTPUTS`.
        student_kinds: ``{"graph", "graph_free"}`` or a subset: GLNN trains graph-free
            students only.
        hyperparameters: the method's own search space, by name (define-by-run: these exist
            only in trials that use this method).
    """

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    description: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset({"logits"})
    student_kinds: ClassVar[frozenset[str]] = frozenset({"graph", "graph_free"})
    hyperparameters: ClassVar[Mapping[str, Param]] = {}

    #: options whose values name a registered :class:`StructuralLoss` (STRIDE's ``structure``):
    #: a space file's values for them are checked against the registry when it loads
    structural_loss_options: ClassVar[frozenset[str]] = frozenset()

    #: whether ``softkd_weight``/``softkd_tau`` may add Hinton's soft-label term to this
    #: method's objective (the "KD + method" rows of Joshi et al. 2022); False for methods
    #: that already are a soft-label loss
    combines_with_softkd: ClassVar[bool] = True

    def accepts(self, family: ModelFamily) -> bool:
        """Whether this method can train a student of ``family``."""
        return ("graph" if family.uses_graph else "graph_free") in self.student_kinds

    @abstractmethod
    def build_loss(self, params: Mapping[str, Any], context: DistillationContext) -> DistillationLoss:
        """Return the training objective for one trial with hyperparameters ``params``
        (this method's own :attr:`hyperparameters` only)."""

    def student_features(self, x: Tensor, edge_index: Tensor, params: Mapping[str, Any]) -> Tensor:
        """The node features the student reads, for training and inference (default ``x``).

        A method may replace them with features computed offline from the graph (InfGraND's
        pre-propagated features); the saved student replays this through the method when it
        predicts. The result must keep ``x``'s shape.
        """
        return x


class StructuralLossModule(nn.Module):
    """One built structural loss: ``forward(student, teacher, edge_index) -> scalar``.

    ``student`` is ``[N, d_s]``, ``teacher`` ``[N, d_t]`` (the same nodes, row for row),
    ``edge_index`` ``[2, E]`` indexes those rows. It may own trainable parameters (G-CRD's
    projection heads); the training loop optimises them with the student.
    """

    def forward(self, student: Tensor, teacher: Tensor, edge_index: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class StructuralLoss(ABC):
    """A loss between student and teacher embeddings that reads the graph structure.

    Registered through ``gkd_structural_losses``; distillation methods use it by name (the
    ``lsp``/``gsp``/``gcrd`` methods, STRIDE's ``structure`` option) through
    :attr:`DistillationContext.structural_losses`.

    Attributes:
        name: the loss's name.
        paper: the citation of the paper whose equations it implements.
        hyperparameters: its own search space, by name.
    """

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    description: ClassVar[str] = ""
    hyperparameters: ClassVar[Mapping[str, Param]] = {}

    @abstractmethod
    def build(self, params: Mapping[str, Any], student_channels: int, teacher_channels: int) -> StructuralLossModule:
        """Return the loss for embeddings of these widths with hyperparameters ``params``."""


# --------------------------------------------------------------------------- results


@dataclass
class TrialSpec:
    """One point of the search space: a student architecture, a method and training settings."""

    family: str
    num_layers: int
    hidden_channels: int
    family_params: dict[str, Any] = field(default_factory=dict)
    method: str = "none"
    method_params: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def architecture_key(self) -> str:
        return architecture_key(self.family, self.num_layers, self.hidden_channels, self.family_params)


def architecture_key(family: str, num_layers: int, hidden_channels: int, family_params: Mapping[str, Any]) -> str:
    """A stable name of an architecture that reads without a decoder: family, layers (``L``), the
    hidden width when there is one, then family parameters: ``gcn-2L-16``, ``mlp-1L`` (one layer:
    no hidden width), ``sgc-3L``, ``gat-2L-64-heads=4``; latency is cached by it."""
    extra = "".join(f"-{k}={family_params[k]}" for k in sorted(family_params))
    width = f"-{hidden_channels}" if hidden_channels else ""
    return f"{family}-{num_layers}L{width}{extra}"


@dataclass
class TrialResult:
    """The outcome of one trial, as logged to MLflow and passed to ``gkd_trial_finished``.

    ``status`` is ``ok``, ``over_budget`` (not trained), ``pruned`` (stopped by the search's
    scheduler after ``epochs_run`` epochs, its best validation score then in ``last_val_score``;
    never selected) or ``failed`` (``error`` says why: ``diverged`` or ``degenerate`` when the
    training guard stopped it, else the exception).
    Accuracies are fractions in ``[0, 1]``; ``val_score`` and ``test_score`` are the search's
    ``--metric`` (accuracy by default), which the sampler, the Pareto front and the selection
    use, and ``val_score_se`` its standard error on the validation nodes
    (:meth:`~gkd_search.metrics.ScoreMetric.standard_error`).
    """

    trial_id: str
    spec: TrialSpec
    status: str
    latency_ms_p50: Optional[float] = None
    latency_ms_p95: Optional[float] = None
    params: Optional[int] = None
    val_acc: Optional[float] = None
    test_acc: Optional[float] = None
    val_score: Optional[float] = None
    test_score: Optional[float] = None
    val_score_se: Optional[float] = None
    #: why the trial counts as collapsed (``None``: it did not): its validation score is below
    #: the chance level, or far below its architecture's ``none`` trial; tag ``gkd.degenerate``
    degenerate: Optional[str] = None
    #: a pruned trial's best validation score (``--metric``) when it was stopped
    last_val_score: Optional[float] = None
    #: False when the architecture's latency measurement stopped early, certainly over the budget
    latency_complete: Optional[bool] = None
    train_seconds: Optional[float] = None
    #: the whole trial's wall time in its worker (build, latency gate, training, evaluation,
    #: saving); for a pruned trial, until it was stopped
    trial_seconds: Optional[float] = None
    epochs_run: Optional[int] = None
    train_seconds_per_epoch: Optional[float] = None
    peak_rss_mb: Optional[float] = None
    #: ``full-batch`` or ``mini-batch`` (neighbour sampling)
    training_mode: Optional[str] = None
    #: the loss's :meth:`DistillationLoss.diagnostics`, ``{"attention_before": [[...]], ...}``
    matrices: dict[str, list[list[float]]] = field(default_factory=dict)
    error: Optional[str] = None
    #: what the training guard measured when it stopped the trial (``error`` is then
    #: ``diverged`` or ``degenerate``; see :mod:`gkd_search.distill.guard`)
    error_detail: Optional[str] = None
    traceback: Optional[str] = None
    checkpoint: Optional[str] = None
    run_id: Optional[str] = None
    pareto: bool = False
    selected: bool = False
    #: why a failed trial failed: ``exception`` (raised inside the trial, not retried),
    #: ``timeout`` (``--trial-timeout``) or ``worker_died`` (its process was killed, e.g. out of
    #: memory, after one retry)
    failure: Optional[str] = None
    #: how many times Ray restarted the trial after its worker process died (at most 1)
    retries: int = 0
    #: where it ran: Ray ``node_id``, ``node_ip``, ``hostname``, ``pid``, assigned ``resources``,
    #: ``gpu_ids`` (:func:`gkd_search.cluster.where_am_i`)
    placement: dict[str, Any] = field(default_factory=dict)
    #: the largest CUDA memory the trial allocated, MiB (GPU trials only)
    peak_gpu_mb: Optional[float] = None
    #: ``--resume``: the Ray trial id of the trial with this spec that was running when the
    #: search was interrupted, which this one runs again
    rerun_of: Optional[str] = None


@dataclass
class SearchSummary:
    """What a finished search produced, passed to ``gkd_search_finished``.

    ``student_path`` is the selected student's MLflow artifact, ``runs:/<run id>/student``
    (``gkd_search.load_student`` accepts it). ``best`` is the best-scoring trial within the
    budget, which the ``one-se`` rule may pass over for a smaller one within ``tolerance``
    (one standard error of its validation score); ``model_uri`` is the registered model
    (``models:/NAME/VERSION``) or the logged one (``models:/<model id>``).
    """

    dataset: str
    budget_ms: float
    teacher: TeacherOutputs
    results: list[TrialResult]
    pareto: list[TrialResult]
    selected: Optional[TrialResult]
    parent_run_id: Optional[str]
    tracking_uri: str
    student_path: Optional[str] = None
    seconds: float = 0.0
    metric: str = "accuracy"
    select: str = "one-se"
    best: Optional[TrialResult] = None
    tolerance: float = 0.0
    teacher_latency_ms_p50: Optional[float] = None
    model_uri: Optional[str] = None
    registered_model: Optional[str] = None
    registered_version: Optional[str] = None
    experiment_id: Optional[str] = None
