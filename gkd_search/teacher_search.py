"""``--teacher auto``: pick the teacher among well-known configurations by validation score.

The PyG distillation guide's production workflow starts with "train the largest feasible teacher,
optimizing purely for accuracy"; a graph without a tuned default teacher (``DatasetSpec.
default_teacher`` is ``None``: a user's own graph, a plugin dataset that declares none) gets a
small search over the standard configurations of five well-known architectures instead of one
generic guess. Each candidate (:data:`CANDIDATES`) is trained once on the labelled nodes with
early stopping (the teacher's own settings: up to 500 epochs, patience 100, Adam), exactly as a
named ``--teacher`` would be, and cached the same way (:func:`gkd_search.teacher.get_teacher`);
the candidate with the best validation score is the teacher (ties: fewer parameters). With the
accuracy metric the validation accuracy is first weighted by class to the class shares of the
unlabelled nodes, estimated from the candidates' calibrated predictions
(:mod:`gkd_search.class_prior`): a per-class split's validation nodes are class-balanced, and plain
validation accuracy would rank by balanced accuracy instead (macro-F1 is balanced by definition
and ROC-AUC does not depend on the class shares, so they are used as they are). With label-shift
adaptation on (``--label-shift adapt``, the default) each candidate is ranked by the weighted
validation accuracy of its *adapted* outputs, the ones the search will distil from
(:class:`~gkd_search.class_prior.LabelShift`). The choice
itself is cached under ``<cache>/teachers/auto-<dataset>-<hash>.json`` (hash of the dataset's
fingerprint, the candidate list, the seed, the batching limits, the ranking rule and the code
version), so a second
search loads the winner without touching the other candidates. Every candidate is reported with
progress and written to ``teacher_candidates.csv`` (an artifact of the search run).

Memory: a candidate whose full-batch training estimate
(:func:`~gkd_search.distill.minibatch.full_batch_bytes`) exceeds ``--max-full-batch-gb`` trains on
sampled mini-batches like any teacher; a candidate that would need mini-batches but reads more
than :data:`MAX_SAMPLED_HOPS` hops (GCNII's 16 layers, APPNP's 10 propagation steps: a sampled
neighbourhood of that depth is the whole graph) is skipped and listed as ``skipped``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional

import torch
from torch import Tensor

from . import __version__
from .class_prior import fit_label_shift, label_shares, prior_weighted_accuracy, unlabelled_nodes
from .distill.minibatch import Batching, full_batch_bytes
from .errors import UsageError
from .metrics import ScoreMetric, accuracy, resolve_metric
from .teacher import CACHE_FORMAT, TeacherConfig, build_teacher_model, get_teacher
from .types import GraphDataset, ModelFamily, output_widths

#: the ``--teacher`` value (and the default when a dataset declares no ``default_teacher``)
AUTO = "auto"
#: how the candidates are ranked (part of the cache key: a new rule chooses again)
RANKING = ("class-prior-weighted validation accuracy (BCTS-calibrated EM, Alexandari et al. 2020, Saerens et al. "
           "2002), of label-shift adapted outputs when adapting; other metrics as they are")
#: deepest receptive field trained on sampled mini-batches; deeper candidates are skipped when
#: the graph is too big for full-batch training
MAX_SAMPLED_HOPS = 3


@dataclass(frozen=True)
class Candidate:
    """A teacher configuration (``--teacher`` syntax) and where its hyperparameters come from."""

    spec: str
    source: str


#: The candidates, cheapest first. Hyperparameters are each paper's standard setting (training:
#: Adam, up to 500 epochs with patience 100 on validation accuracy, as every teacher here).
CANDIDATES: tuple[Candidate, ...] = (
    Candidate("gcn:2:64", "GCN, Kipf & Welling, ICLR 2017, Sec. 5.2: 2 layers, dropout 0.5, lr 0.01, "
                          "weight decay 5e-4 (width 64 instead of 16)"),
    Candidate("gcn:2:256", "GCN as above, 256 wide"),
    Candidate("sage:2:256", "GraphSAGE-mean, Hamilton et al., NeurIPS 2017, Sec. 4: 2 layers, 256 wide, "
                            "lr 0.01, dropout 0.5"),
    Candidate("gat:2:64:heads=8:dropout=0.6:lr=0.005", "GAT, Velickovic et al., ICLR 2018, Sec. 3.3: 8 heads "
                                                       "x 8 features, dropout 0.6, lr 0.005, weight decay 5e-4"),
    Candidate("appnp:2:64:K=10:alpha=0.1:weight_decay=0.005", "APPNP, Gasteiger et al., ICLR 2019, Sec. 6: 2-layer "
                                                              "MLP 64 wide, K 10, alpha 0.1, dropout 0.5, "
                                                              "weight decay 5e-3, lr 0.01"),
    Candidate("gcnii:16:64:alpha=0.1:theta=0.5:dropout=0.6:conv_weight_decay=0.01",
              "GCNII, Chen et al., ICML 2020, Sec. 6.1: alpha 0.1, lambda 0.5, dropout 0.6, lr 0.01, weight "
              "decay 0.01 (convolutions) / 5e-4 (linears), 64 wide, 16 layers (of the paper's 2-64)"),
)


@dataclass
class CandidateResult:
    """One row of ``teacher_candidates.csv``."""

    spec: str
    family: str
    status: str  # trained | cached | skipped | failed
    val_acc: Optional[float] = None
    test_acc: Optional[float] = None
    #: the search's ``--metric`` (accuracy by default), by which the candidates are ranked
    metric: str = "accuracy"
    val_score: Optional[float] = None
    test_score: Optional[float] = None
    #: accuracy only: validation recall per class weighted by the estimated class shares of the
    #: unlabelled nodes (:mod:`gkd_search.class_prior`), by which the candidates are ranked
    val_acc_weighted: Optional[float] = None
    #: accuracy only, with label-shift adaptation: the test accuracy of the adapted outputs (reported,
    #: never used to choose)
    test_acc_adapted: Optional[float] = None
    params: Optional[int] = None
    seconds: float = 0.0
    training_mode: str = ""
    selected: bool = False
    note: str = ""
    source: str = ""


@dataclass
class TeacherSelection:
    """The chosen teacher and every candidate's outcome."""

    config: TeacherConfig
    candidates: list[CandidateResult] = field(default_factory=list)
    from_cache: bool = False
    cache_path: Optional[str] = None
    #: the estimated class shares of the unlabelled nodes the validation accuracy was weighted by
    #: (``None``: no weighting, for macro-F1 and ROC-AUC or without unlabelled nodes)
    class_prior: Optional[list[float]] = None

    def write_csv(self, path: Path) -> Path:
        columns = list(CandidateResult.__dataclass_fields__)
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for c in self.candidates:
                writer.writerow(["" if getattr(c, k) is None else getattr(c, k) for k in columns])
        return Path(path)


def is_auto(teacher: Optional[str]) -> bool:
    return teacher is not None and teacher.strip().lower() == AUTO


def selection_key(dataset: GraphDataset, candidates: tuple[Candidate, ...], seed: int, batching: Batching,
                  metric: str = "accuracy", label_shift: bool = True) -> str:
    payload = {
        "dataset": dataset.fingerprint(), "candidates": [c.spec for c in candidates], "seed": seed, "metric": metric,
        "label_shift": label_shift,
        "batching": [batching.mode, batching.batch_size, list(batching.fanout), batching.max_full_batch_gb],
        "gkd_search": __version__, "format": CACHE_FORMAT, "ranking": RANKING,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _write_json(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="tmp-", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(obj, handle, indent=1)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_cached(path: Path, families: Mapping[str, ModelFamily]) -> Optional[TeacherSelection]:
    try:
        entry = json.loads(path.read_text())
        rows = [CandidateResult(**row) for row in entry["candidates"]]
        config = TeacherConfig.parse(entry["selected"])
        prior = entry.get("class_prior")
    except (OSError, ValueError, KeyError, TypeError, UsageError):
        return None  # unreadable or from another version: choose again
    if config.family not in families:
        return None
    return TeacherSelection(config, rows, from_cache=True, cache_path=str(path), class_prior=prior)


def _memory_note(config: TeacherConfig, family: ModelFamily, dataset: GraphDataset, batching: Batching) -> tuple[str, str]:
    """``(training mode, reason to skip or "")`` under the memory limit."""
    model = build_teacher_model(config, family, dataset)
    widths = output_widths(model, dataset.data)
    estimate = full_batch_bytes(widths, dataset.num_nodes, int(dataset.data.edge_index.size(1)), family.uses_graph)
    if not batching.use_minibatch(estimate):
        return "full-batch", ""
    hops = family.num_hops(config.num_layers, **dict(config.family_params))
    if hops > MAX_SAMPLED_HOPS:
        return "mini-batch", (f"needs mini-batches (full-batch estimate {estimate / 2**30:.3g} GB > "
                              f"--max-full-batch-gb {batching.max_full_batch_gb:g}) but reads {hops} hops")
    return "mini-batch", ""


def select_teacher(
    dataset: GraphDataset,
    families: Mapping[str, ModelFamily],
    *,
    seed: int,
    cache_dir: Path,
    batching: Optional[Batching] = None,
    candidates: Optional[tuple[Candidate, ...]] = None,
    progress: Callable[[str], None] = lambda text: None,
    metric: Optional[ScoreMetric] = None,
    device: str = "cpu",
    label_shift: bool = True,
) -> TeacherSelection:
    """Train (or load) every candidate and return the best by validation score (module docstring).

    Args:
        candidates: default :data:`CANDIDATES`.
        progress: receives one line per candidate.
        metric: the score the candidates are ranked by on the validation nodes (default accuracy).
        device: where the candidates train (:func:`gkd_search.teacher.get_teacher`).
        label_shift: rank the candidates' label-shift adapted outputs (accuracy only; module docstring).

    Raises:
        UsageError: no candidate could be trained (every family missing, or all skipped).
    """
    batching = batching or Batching()
    candidates = CANDIDATES if candidates is None else tuple(candidates)
    metric = metric or resolve_metric(None)
    key = selection_key(dataset, candidates, seed, batching, metric.name, label_shift)
    path = Path(cache_dir) / "teachers" / f"auto-{dataset.name}-{key}.json"
    cached = _read_cached(path, families) if path.is_file() else None
    if cached is not None:
        for number, c in enumerate(cached.candidates, 1):
            progress(f"teacher candidate {number}/{len(cached.candidates)} {c.spec}: {_describe(c)}")
        progress(f"teacher auto: selected {cached.config.spec} (the cached choice {path.name})")
        return cached
    rows: list[CandidateResult] = []
    logits: dict[int, Tensor] = {}  # row index -> the candidate's logits, for the class prior
    for number, candidate in enumerate(candidates, 1):
        config = TeacherConfig.parse(candidate.spec)
        row = CandidateResult(candidate.spec, config.family, "skipped", metric=metric.name, source=candidate.source)
        rows.append(row)
        family = families.get(config.family)
        if family is None:
            row.note = f"family {config.family!r} is not registered"
        else:
            row.training_mode, row.note = _memory_note(config, family, dataset, batching)
            if not row.note:
                start = time.perf_counter()
                try:
                    _, out = get_teacher(dataset, config, family, seed=seed, cache_dir=cache_dir, batching=batching,
                                         keep_hidden=False, metric=metric, device=device)
                except Exception as exc:  # one broken candidate does not stop the choice
                    row.status, row.note = "failed", f"{type(exc).__name__}: {exc}"[:300]
                else:
                    row.status = "cached" if out.from_cache else "trained"
                    row.val_acc, row.test_acc, row.params = out.val_acc, out.test_acc, out.num_params
                    row.val_score, row.test_score = out.val_score, out.test_score
                    logits[len(rows) - 1] = out.logits.detach().cpu()
                row.seconds = time.perf_counter() - start
        progress(f"teacher candidate {number}/{len(candidates)} {candidate.spec}: {_describe(row)}")
    ranked = [r for r in rows if r.val_score is not None]
    if not ranked:
        raise UsageError(f"--teacher auto: no candidate teacher could be trained on {dataset.name} "
                         f"({'; '.join(f'{r.spec}: {r.note}' for r in rows)}); give --teacher FAMILY:LAYERS:HIDDEN")
    best, prior = choose_candidate(dataset, rows, logits, metric.name, progress, label_shift=label_shift)
    adapted = " of its label-shift adapted outputs" if best.test_acc_adapted is not None else ""
    score = (f"class-weighted validation accuracy{adapted} ({best.val_acc_weighted:.3f}; as trained, unweighted "
             f"{best.val_acc:.3f})" if best.val_acc_weighted is not None else
             f"validation {metric.name} ({best.val_score:.3f})")
    progress(f"teacher auto: selected {best.spec}, the best {score} of {len(ranked)} trained candidates")
    _write_json({"selected": best.spec, "candidates": [asdict(r) for r in rows], "class_prior": prior}, path)
    return TeacherSelection(TeacherConfig.parse(best.spec), rows, from_cache=False, cache_path=str(path),
                            class_prior=prior)


def choose_candidate(dataset: GraphDataset, rows: list[CandidateResult], logits: Mapping[int, Tensor], metric: str,
                     progress: Callable[[str], None] = lambda text: None, *,
                     label_shift: bool = True) -> tuple[CandidateResult, Optional[list[float]]]:
    """Mark and return the best of the trained ``rows``, with the class shares used (or ``None``).

    Args:
        rows: every candidate; those with a ``val_score`` are ranked.
        logits: row index -> that candidate's ``[N, C]`` logits (needed for ``accuracy``).
        metric: ``accuracy`` ranks by the class-weighted validation accuracy; the others by
            ``val_score``. Ties: fewer parameters.
        label_shift: weigh the accuracy of each candidate's label-shift adapted logits.
    """
    ranked = [r for r in rows if r.val_score is not None]
    prior = (_weight_by_class_prior(dataset, rows, logits, progress, label_shift) if metric == "accuracy"
             else None)
    best = max(ranked, key=lambda r: (_rank_score(r), -(r.params or 0)))
    best.selected = True
    return best, prior


def _rank_score(row: CandidateResult) -> float:
    return row.val_acc_weighted if row.val_acc_weighted is not None else float(row.val_score)


def _weight_by_class_prior(dataset: GraphDataset, rows: list[CandidateResult], logits: Mapping[int, Tensor],
                           progress: Callable[[str], None], adapt: bool = True) -> Optional[list[float]]:
    """Set each trained row's ``val_acc_weighted``; return the class shares used (module docstring).

    The shares are the mean of the candidates' estimates (:func:`~gkd_search.class_prior.
    fit_label_shift`: EM on the BCTS-calibrated probabilities of the nodes outside the training and
    validation sets, of the target type on a heterogeneous graph): one common weighting for every
    candidate. With ``adapt`` a candidate's weighted accuracy is that of its adapted logits.
    ``None`` (plain validation accuracy) when no candidate's shares could be estimated."""
    data = dataset.data
    shifts = {index: fit_label_shift(out, data, dataset.num_classes) for index, out in logits.items()}
    estimates = [torch.tensor(shift.target_prior, dtype=torch.float64) for shift, _ in shifts.values() if shift]
    if not estimates:
        return None  # nothing to estimate from (no unlabelled node, no finite outputs): plain validation accuracy
    prior = torch.stack(estimates).mean(dim=0)
    for index, out in logits.items():
        shift = shifts[index][0]
        scored = shift.apply(out) if adapt and shift is not None else out
        rows[index].val_acc_weighted = prior_weighted_accuracy(scored, data.y, data.val_mask, prior)
        if adapt and shift is not None:
            rows[index].test_acc_adapted = accuracy(scored, data.y, data.test_mask)
    validation = label_shares(data.y, data.val_mask, dataset.num_classes)
    sampled, count = unlabelled_nodes(data)
    sample = f" (a sample of {len(sampled):,})" if count > len(sampled) else ""
    progress(f"teacher auto: validation accuracy weighted by class to the class shares estimated on "
             f"{count:,} unlabelled nodes{sample} (Saerens et al. 2002): {_shares(prior)} "
             f"(validation nodes: {_shares(validation)})"
             f"{'; each candidate scored on its label-shift adapted outputs' if adapt else ''}")
    return [round(float(v), 6) for v in prior]


def _shares(values: Tensor) -> str:
    return " ".join(f"{float(v):.3f}" for v in values)


def _describe(row: CandidateResult) -> str:
    if row.val_score is None:
        return f"{row.status}: {row.note}"
    how = "from the teacher cache" if row.status == "cached" else f"trained {row.training_mode} in {row.seconds:.1f} s"
    mark = " <- selected" if row.selected else ""
    weighted = f" (class-weighted val {row.val_acc_weighted:.3f})" if row.val_acc_weighted is not None else ""
    score = f"val {row.val_acc:.3f} test {row.test_acc:.3f}{weighted}" if row.metric == "accuracy" else (
        f"val {row.metric} {row.val_score:.3f} test {row.metric} {row.test_score:.3f}")
    return f"{score}, {row.params:,} parameters, {how}{mark}"
