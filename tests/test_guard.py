"""The training guard (distill/guard.py): diverged and degenerate trials stop early, are recorded
as failed with ``gkd.error`` = the reason, and the sampler is told PRUNED (TPE learns from it)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_trial import FAST_LATENCY, PROTOCOL

from gkd_search.distill.guard import (
    GuardSettings,
    TrainingGuard,
    TrialStopped,
    chance_level,
    make_guard,
    warmup_epochs,
)
from gkd_search.distill.loop import TrainingSettings, accuracy, train_model
from gkd_search.distill.minibatch import Batching, train_minibatch
from gkd_search.families.mlp import MLPFamily
from gkd_search.methods._common import supervised_cross_entropy
from gkd_search.trial import TrialContext, run_trial
from gkd_search.types import DistillationLoss, DistillationMethod, GraphDataset, TrialSpec

pytestmark = pytest.mark.usefixtures("one_thread")

EPOCHS = 60


class _HugeLoss(DistillationLoss):
    def forward(self, student, batch):
        return 1e6 * supervised_cross_entropy(student.logits, batch.y, batch.train_mask)


class HugeLossMethod(DistillationMethod):
    """A method whose loss is a million times the cross-entropy."""

    name = "huge"

    def build_loss(self, params, context):
        return _HugeLoss()


def spec(family="gcn", method="none", epochs=EPOCHS, lr=0.01, patience=None) -> TrialSpec:
    return TrialSpec(family=family, num_layers=2, hidden_channels=16, method=method, method_params={},
                     training={"lr": lr, "weight_decay": 5e-4, "dropout": 0.5, "epochs": epochs,
                               "patience": epochs if patience is None else patience},
                     seed=0)


def context(registry, dataset, teacher) -> TrialContext:
    methods = {**registry.methods, "huge": HugeLossMethod()}
    latency = {spec(f).architecture_key(): FAST_LATENCY for f in ("gcn", "mlp")}
    return TrialContext(dataset=dataset, teacher=teacher, families=registry.families, methods=methods,
                        latency=latency, budget_ms=10.0, protocol=PROTOCOL)


@pytest.fixture(scope="module")
def blank_graph(small_synthetic):
    """The small synthetic graph with every feature 0: every node looks the same, nothing can be
    learned (each model predicts one class for all nodes)."""
    data = small_synthetic.data.clone()
    data.x = torch.zeros_like(data.x)
    return GraphDataset("blank", data, small_synthetic.num_classes)


def test_a_loss_a_million_times_cross_entropy_is_stopped_as_diverged(gkd_registry, small_synthetic, small_teacher):
    _, outputs = small_teacher
    result = run_trial(spec(method="huge"), context(gkd_registry, small_synthetic, outputs), "huge")
    assert result.status == "failed"
    assert result.error == "diverged"
    assert "exceeds 10000 x ln C" in result.error_detail
    assert result.epochs_run == 1 < EPOCHS  # not trained to the epoch limit
    assert result.val_acc is None and result.traceback is None
    assert result.train_seconds is not None


def test_a_graph_where_nothing_can_be_learned_is_stopped_as_degenerate(gkd_registry, blank_graph, small_teacher):
    _, outputs = small_teacher
    result = run_trial(spec(family="mlp"), context(gkd_registry, blank_graph, outputs), "blank")
    assert result.status == "failed"
    assert result.error == "degenerate"
    warmup = GuardSettings().warmup
    assert result.epochs_run == warmup < EPOCHS
    chance = chance_level(accuracy, blank_graph.data.y, blank_graph.data.val_mask, blank_graph.num_classes)
    n = int(blank_graph.data.val_mask.sum())
    margin = 2 * math.sqrt(chance * (1 - chance) / n)  # two binomial standard errors
    assert f"chance level {chance:.4f} + margin {margin:.4f}" in result.error_detail


def test_the_warm_up_is_a_budget_of_optimiser_movement_capped_at_half_the_epochs():
    settings = GuardSettings()  # 30 epochs at lr 0.01
    assert warmup_epochs(settings) == 30
    assert warmup_epochs(settings, lr=0.01, epochs=200) == 30
    assert warmup_epochs(settings, lr=0.03, epochs=200) == 30  # never shorter than 30 epochs
    assert warmup_epochs(settings, lr=0.005, epochs=200) == 60
    assert warmup_epochs(settings, lr=0.0036, epochs=200) == 84  # PubMed's slow FitNets student left chance at 75
    assert warmup_epochs(settings, lr=0.001, epochs=200) == 100  # at most half the epoch limit
    assert warmup_epochs(settings, lr=0.001, epochs=20) == 30  # but never fewer than 30
    guard = TrainingGuard(4, 0.4, GuardSettings(margin=0.01), lr=0.005, epochs=200)
    guard.check_score(59, 0.3)  # still warming up at a small learning rate
    with pytest.raises(TrialStopped):
        guard.check_score(60, 0.3)


def test_patience_does_not_run_out_while_a_trial_is_at_chance(gkd_registry, blank_graph, small_teacher):
    # nothing can be learned on the blank graph: with patience 3 early stopping would end the trial
    # at epoch 4; at chance the warm-up decides, so it runs to the warm-up and is judged degenerate
    _, outputs = small_teacher
    result = run_trial(spec(family="mlp", patience=3), context(gkd_registry, blank_graph, outputs), "blank")
    assert result.status == "failed" and result.error == "degenerate"
    assert result.epochs_run == GuardSettings().warmup
    # a smaller learning rate gets a longer warm-up (the same optimiser movement)
    slow = run_trial(spec(family="mlp", lr=0.005, epochs=200, patience=3), context(gkd_registry, blank_graph, outputs),
                     "slow")
    assert slow.status == "failed" and slow.error == "degenerate" and slow.epochs_run == 60
    # without the guard, patience counts as before
    unguarded = spec(family="mlp", patience=3)
    unguarded.training["guard"] = False
    result = run_trial(unguarded, context(gkd_registry, blank_graph, outputs), "blank")
    assert result.status == "ok" and result.epochs_run < GuardSettings().warmup  # patience ended it
    guard = TrainingGuard(4, 0.4, GuardSettings(margin=0.01))
    assert guard.at_chance(0.41) and not guard.at_chance(0.42)
    assert not TrainingGuard(4, None).at_chance(0.0)  # no chance level: patience as always


def test_a_space_can_turn_the_guard_off_so_every_trial_trains_to_its_epoch_limit(gkd_registry, blank_graph,
                                                                                  small_synthetic, small_teacher):
    # `training: {guard: false}`: a paper's protocol (bench/reproduce_abkd.py) trains every method for the same epochs
    _, outputs = small_teacher
    unguarded = spec(family="mlp")
    unguarded.training["guard"] = False
    result = run_trial(unguarded, context(gkd_registry, blank_graph, outputs), "blank")
    assert result.status == "ok", result.error
    assert result.epochs_run == EPOCHS  # the patience is the epoch limit: no early stop either
    huge = spec(method="huge")
    huge.training["guard"] = False
    result = run_trial(huge, context(gkd_registry, small_synthetic, outputs), "huge")
    assert result.status == "ok" and result.epochs_run == EPOCHS  # a huge but finite loss trains on


def test_a_trial_moves_a_copy_of_the_graph_to_its_device_not_the_shared_dataset(gkd_registry, small_synthetic,
                                                                                 small_teacher):
    # PyG's Data.to() moves tensors in place: on a GPU the shared dataset would end up on the GPU
    from torch_geometric.data import Data

    moved = []

    class RecordingData(Data):
        def to(self, *args, **kwargs):
            moved.append(id(self))
            return super().to(*args, **kwargs)

    _, outputs = small_teacher
    shared = RecordingData(**dict(small_synthetic.data.items()))
    dataset = GraphDataset("recording", shared, small_synthetic.num_classes)
    result = run_trial(spec(epochs=2), context(gkd_registry, dataset, outputs), "copy")
    assert result.status == "ok", result.error
    assert moved and id(shared) not in moved  # a copy was moved


def test_healthy_trials_are_not_stopped(gkd_registry, small_synthetic, small_teacher):
    _, outputs = small_teacher
    result = run_trial(spec(epochs=30), context(gkd_registry, small_synthetic, outputs), "ok")
    assert result.status == "ok", result.error
    assert result.val_acc > 0.5 and result.epochs_run == 30


def test_chance_level_is_the_best_constant_prediction():
    y = torch.tensor([0, 1, 1, 2, 1, 0, 2, 2, 2, 2])
    mask = torch.tensor([True] * 8 + [False] * 2)
    # validation labels 0,1,1,2,1,0,2,2: class 2 and class 1 each 3/8
    assert chance_level(accuracy, y, mask, 3) == pytest.approx(3 / 8)

    def macro_f1(logits, y, mask):
        pred, true = logits[mask].argmax(-1), y[mask]
        scores = []
        for c in range(logits.size(-1)):
            tp = int(((pred == c) & (true == c)).sum())
            denominator = int((pred == c).sum()) + int((true == c).sum())
            scores.append(2 * tp / denominator if denominator else 0.0)
        return sum(scores) / len(scores)

    # always answering class 1 (or 2): F1 = 2 * 3 / (8 + 3) for that class, 0 for the others
    assert chance_level(macro_f1, y, mask, 3) == pytest.approx(2 * 3 / 11 / 3)
    assert chance_level(accuracy, y, torch.zeros(10, dtype=torch.bool), 3) is None


def test_guard_thresholds():
    guard = TrainingGuard(num_classes=4, chance=0.4, settings=GuardSettings(warmup=5, margin=0.01))
    guard.check_loss(torch.tensor(3.0), 1)  # the first value sets the growth reference
    guard.check_loss(torch.tensor(-2.0), 2)
    with pytest.raises(TrialStopped, match="grew past") as grown:
        guard.check_loss(torch.tensor(3001.0), 3)
    assert grown.value.reason == "diverged" and grown.value.epoch == 3
    with pytest.raises(TrialStopped, match="became nan"):
        TrainingGuard(4, None).check_loss(torch.tensor(math.nan), 1)
    with pytest.raises(TrialStopped, match="exceeds"):
        TrainingGuard(4, None).check_loss(torch.tensor(1e4 * math.log(4) + 1), 1)
    guard.check_score(4, 0.0)  # still warming up
    guard.check_score(5, 0.42)  # above chance + margin
    with pytest.raises(TrialStopped, match="not above the chance level 0.4000 \\+ margin 0.0100") as flat:
        guard.check_score(5, 0.405)
    assert flat.value.reason == "degenerate"
    TrainingGuard(4, None).check_score(100, 0.0)  # no chance level: no degenerate check
    # the default margin: two binomial standard errors of the chance rate (Photo: 240 validation nodes)
    photo = TrainingGuard(8, 0.125, num_val=240)
    assert photo.margin == pytest.approx(2 * math.sqrt(0.125 * 0.875 / 240))
    with pytest.raises(TrialStopped):
        photo.check_score(30, 0.133)  # ABKD's collapsed student on Photo
    photo.check_score(30, 0.2)


def test_minibatch_loop_uses_the_guard(small_synthetic):
    data = small_synthetic.data
    model = MLPFamily().build(data.x.size(1), small_synthetic.num_classes, 2, 16)
    guard = make_guard(accuracy, data, small_synthetic.num_classes)
    settings = TrainingSettings(epochs=5, patience=5)

    def objective(out, ids, edges):
        return 1e6 * F.cross_entropy(out.logits, data.y[ids])

    with pytest.raises(TrialStopped, match="exceeds") as stopped:
        train_minibatch(model, objective, data, settings, Batching(mode="on", batch_size=128), num_hops=0, guard=guard)
    assert stopped.value.epoch == 1
    # full-batch too, and without a guard a finite loss trains to the end
    with pytest.raises(TrialStopped):
        train_model(model, lambda out: 1e6 * F.cross_entropy(out.logits, data.y), data, settings, guard=guard)
    outcome = train_model(model, lambda out: 1e6 * F.cross_entropy(out.logits, data.y), data, settings)
    assert outcome.epochs_run == 5


def test_stopped_trials_are_logged_failed_with_the_reason(gkd_registry, small_synthetic, small_teacher, tmp_path):
    from mlflow.tracking import MlflowClient

    from gkd_search.tracking import SearchTracker

    _, outputs = small_teacher
    result = run_trial(spec(method="huge"), context(gkd_registry, small_synthetic, outputs), "huge")
    tracker = SearchTracker(f"sqlite:///{tmp_path}/mlflow.db", "guard")
    tracker.start("search", {"dataset": "synthetic"}, outputs)
    run_id = tracker.log_trial(result, outputs, "trial-001")
    run = MlflowClient(tracker.uri).get_run(run_id)
    assert run.data.tags["gkd.status"] == "failed" and run.data.tags["gkd.error"] == "diverged"
    assert "exceeds" in run.data.tags["gkd.error_detail"] and "gkd.traceback" not in run.data.tags
    assert run.data.metrics["epochs_run"] == 1 and "val_acc" not in run.data.metrics
    assert run.info.status == "FAILED"


def test_the_sampler_is_told_pruned_for_stopped_trials_and_fail_for_crashes():
    optuna = pytest.importorskip("optuna")
    from optuna.trial import TrialState

    from gkd_search.ray_backend import GkdOptunaSearch

    def space(trial):
        trial.suggest_float("x", 0.0, 1.0)

    searcher = GkdOptunaSearch(space=space, metric=["val_acc", "latency_ms_p50"], mode=["max", "min"],
                               sampler=optuna.samplers.RandomSampler(seed=0))
    for trial_id, error in (("a", "diverged"), ("b", "degenerate"), ("c", "RuntimeError: boom")):
        searcher.suggest(trial_id)
        searcher.on_trial_complete(trial_id, {"gkd_status": "failed", "gkd_error": error})
    states = [t.state for t in searcher._ot_study.trials]
    assert states == [TrialState.PRUNED, TrialState.PRUNED, TrialState.FAIL]
