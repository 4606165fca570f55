"""One trial end to end (no Ray): latency gate, training against a real teacher, saving."""

from __future__ import annotations

import json

import pytest
import torch

from gkd_search.latency import LatencyMeasurement, LatencyProtocol
from gkd_search.student import load_student
from gkd_search.trial import TrialContext, run_trial
from gkd_search.types import DistillationLoss, DistillationMethod, TrialSpec, count_parameters

pytestmark = pytest.mark.usefixtures("one_thread")

TRAINING = {"lr": 0.01, "weight_decay": 5e-4, "dropout": 0.5, "epochs": 30, "patience": 30}
PROTOCOL = LatencyProtocol(warmup=2, repeats=30)


class _NaNLoss(DistillationLoss):
    def forward(self, student, batch):
        return student.logits.sum() * float("nan")


class NaNMethod(DistillationMethod):
    """A method whose loss is NaN from the first step."""

    name = "nanloss"

    def build_loss(self, params, context):
        return _NaNLoss()


class BrokenMethod(DistillationMethod):
    """A method that fails while building its loss."""

    name = "broken"

    def build_loss(self, params, context):
        raise RuntimeError("cannot build this loss")


def make_ctx(registry, dataset, teacher_outputs, *, latency=None, budget_ms=10.0) -> TrialContext:
    methods = {**registry.methods, "nanloss": NaNMethod(), "broken": BrokenMethod()}
    return TrialContext(dataset=dataset, teacher=teacher_outputs, families=registry.families, methods=methods,
                        latency=dict(latency or {}), budget_ms=budget_ms, protocol=PROTOCOL)


def spec(family="gcn", layers=2, hidden=16, method="softkd", **kwargs) -> TrialSpec:
    params = {"softkd": {"tau": 2.0, "alpha": 0.5}, "glnn": {"lambda": 0.3}}.get(method, {})
    return TrialSpec(family=family, num_layers=layers, hidden_channels=hidden, method=method,
                     method_params=kwargs.pop("method_params", params), training={**TRAINING, **kwargs}, seed=0)


FAST_LATENCY = LatencyMeasurement(p50_ms=0.5, p95_ms=0.7, mean_ms=0.55, min_ms=0.4, repeats=30)


@pytest.mark.parametrize("family, method", [("gcn", "softkd"), ("sage", "none"), ("mlp", "glnn")])
def test_trial_ok(gkd_registry, small_synthetic, small_teacher, family, method):
    _, outputs = small_teacher
    s = spec(family, method=method)
    ctx = make_ctx(gkd_registry, small_synthetic, outputs, latency={s.architecture_key(): FAST_LATENCY})
    result = run_trial(s, ctx, trial_id="t1")
    assert result.status == "ok", result.error
    assert result.error is None
    assert result.trial_id == "t1" and result.spec is s
    assert 0.0 <= result.val_acc <= 1.0 and 0.0 <= result.test_acc <= 1.0
    assert result.val_acc > 0.5  # the easy synthetic graph is learned
    assert (result.latency_ms_p50, result.latency_ms_p95) == (0.5, 0.7)  # from the table
    family_obj = gkd_registry.get("family", family)
    assert result.params == count_parameters(family_obj.build(16, 3, 2, 16))
    assert 1 <= result.epochs_run <= 30
    assert result.train_seconds > 0
    assert result.checkpoint is None


def test_trial_is_deterministic(gkd_registry, small_synthetic, small_teacher):
    _, outputs = small_teacher
    s = spec("gcn", method="softkd")
    ctx = make_ctx(gkd_registry, small_synthetic, outputs, latency={s.architecture_key(): FAST_LATENCY})
    a, b = run_trial(s, ctx, "a"), run_trial(s, ctx, "b")
    assert (a.val_acc, a.test_acc, a.epochs_run) == (b.val_acc, b.test_acc, b.epochs_run)


def test_trial_measures_latency_when_not_in_table(gkd_registry, small_synthetic, small_teacher):
    _, outputs = small_teacher
    ctx = make_ctx(gkd_registry, small_synthetic, outputs, budget_ms=1e6)
    result = run_trial(spec("gcn", method="none"), ctx, "t")
    assert result.status == "ok", result.error
    assert 0 < result.latency_ms_p50 <= result.latency_ms_p95


def test_over_budget_not_trained(gkd_registry, small_synthetic, small_teacher):
    _, outputs = small_teacher
    ctx = make_ctx(gkd_registry, small_synthetic, outputs, budget_ms=1e-6)  # nothing is that fast
    result = run_trial(spec("gcn", method="softkd"), ctx, "slow", save_dir=None)
    assert result.status == "over_budget"
    assert result.latency_ms_p50 > ctx.budget_ms
    assert result.latency_ms_p95 >= result.latency_ms_p50
    assert result.params == count_parameters(gkd_registry.get("family", "gcn").build(16, 3, 2, 16))
    assert result.val_acc is None and result.test_acc is None
    assert result.epochs_run is None and result.train_seconds is None
    assert result.error is None


def test_over_budget_from_table(gkd_registry, small_synthetic, small_teacher, tmp_path):
    _, outputs = small_teacher
    s = spec("gcn", method="none")
    slow = LatencyMeasurement(p50_ms=20.0, p95_ms=25.0, mean_ms=21.0, min_ms=19.0, repeats=30)
    ctx = make_ctx(gkd_registry, small_synthetic, outputs, latency={s.architecture_key(): slow}, budget_ms=10.0)
    result = run_trial(s, ctx, "slow", save_dir=tmp_path / "student")
    assert result.status == "over_budget" and result.val_acc is None
    assert not (tmp_path / "student").exists()  # nothing trained, nothing saved


def test_nan_loss_fails_without_raising(gkd_registry, small_synthetic, small_teacher, tmp_path):
    _, outputs = small_teacher
    s = spec("gcn", method="nanloss", method_params={})
    ctx = make_ctx(gkd_registry, small_synthetic, outputs, latency={s.architecture_key(): FAST_LATENCY})
    result = run_trial(s, ctx, "nan", save_dir=tmp_path / "student")
    assert result.status == "failed"
    assert result.error == "diverged"  # the training guard's reason (distill/guard.py)
    assert result.error_detail == "loss became nan at epoch 1"
    assert result.val_acc is None and result.test_acc is None
    assert result.latency_ms_p50 == 0.5  # what was known before the failure is kept
    assert not (tmp_path / "student").exists()


def test_other_failures_are_reported(gkd_registry, small_synthetic, small_teacher):
    _, outputs = small_teacher
    ctx = make_ctx(gkd_registry, small_synthetic, outputs, budget_ms=1e6)
    broken = run_trial(spec("gcn", method="broken", method_params={}), ctx, "b")
    assert broken.status == "failed"
    assert broken.error == "RuntimeError: cannot build this loss"
    bad_param = run_trial(TrialSpec("gcn", 2, 16, {"heads": 2}, "none", {}, TRAINING), ctx, "d")
    assert bad_param.status == "failed"
    assert "unknown family parameter 'heads'" in bad_param.error


def test_saved_student_reloads_to_same_accuracy(gkd_registry, small_synthetic, small_teacher, tmp_path):
    _, outputs = small_teacher
    s = spec("gat", hidden=16, method="softkd")
    s.family_params = {"heads": 2}
    ctx = make_ctx(gkd_registry, small_synthetic, outputs, latency={s.architecture_key(): FAST_LATENCY})
    save_dir = tmp_path / "student"
    result = run_trial(s, ctx, "save", save_dir=save_dir)
    assert result.status == "ok", result.error
    assert result.checkpoint == str(save_dir)
    assert (save_dir / "config.json").is_file() and (save_dir / "weights.pt").is_file()
    config = json.loads((save_dir / "config.json").read_text())
    assert config["in_channels"] == 16 and config["num_classes"] == 3
    assert config["dataset"] == small_synthetic.name
    assert config["metrics"] == {"val_acc": result.val_acc, "test_acc": result.test_acc, "metric": "accuracy",
                                 "val_score": result.val_score, "test_score": result.test_score}
    assert config["dataset_hash"] == small_synthetic.content_hash()
    assert config["serving"] == {"fanout": []}
    assert result.val_score == result.val_acc  # accuracy is the default metric
    assert 0 < result.val_score_se < 0.1

    student = load_student(save_dir)
    assert student.spec == s
    assert not student.model.training
    val_acc, test_acc = student.evaluate(small_synthetic)
    assert (val_acc, test_acc) == (result.val_acc, result.test_acc)
    logits = student.predict(small_synthetic.data.x, small_synthetic.data.edge_index)
    assert logits.shape == (small_synthetic.num_nodes, 3)
    # the saved weights are the trained ones, not a fresh initialisation
    fresh = gkd_registry.get("family", "gat").build(16, 3, 2, 16, heads=2)
    saved = torch.load(save_dir / "weights.pt", weights_only=True)
    assert any(not torch.equal(saved[k], v) for k, v in fresh.state_dict().items())


@pytest.mark.parametrize("source", ["./no-such-student", "runs-of/mine", "~/no-such-student"])
def test_a_missing_student_folder_is_named_as_missing(tmp_path, monkeypatch, source):
    from gkd_search.errors import UsageError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="no such folder; give a folder with config.json and weights.pt"):
        load_student(source)
    with pytest.raises(UsageError, match="no such folder"):
        load_student(tmp_path / "absent")
