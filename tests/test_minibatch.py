"""Mini-batch training with neighbour sampling: settings, the estimate, batches, and accuracy that
matches full-batch training on Cora."""

from __future__ import annotations

import statistics

import pytest
import torch
from conftest import SHARED_DATA
from torch_geometric.data import Data

from gkd_search.distill.loop import TrainingSettings
from gkd_search.distill.minibatch import Batching, full_batch_bytes, induced_edges, select_rows, train_minibatch
from gkd_search.errors import UsageError
from gkd_search.graph_ops import NeighbourhoodIndex
from gkd_search.latency import LatencyMeasurement, LatencyProtocol
from gkd_search.methods import infgrand as infgrand_module
from gkd_search.methods._common import supervised_cross_entropy
from gkd_search.teacher import TeacherConfig, get_teacher
from gkd_search.trial import TrialContext, run_trial
from gkd_search.types import DistillationBatch, ModelOutput, TrialSpec

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "sometimes"}, "--mini-batch 'sometimes'"),
    ({"batch_size": 0}, "--batch-size must be at least 1, got 0"),
    ({"max_full_batch_gb": 0}, "--max-full-batch-gb must be positive"),
    ({"inference_chunk": 0}, "--inference-chunk must be at least 1"),
])
def test_bad_batching_values(kwargs, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        Batching(**kwargs)


def test_estimate_and_auto_switch():
    # by hand: 4 bytes x (100 nodes x 4 x (16 + 3) + 1000 edges x 2 x (16 + 3))
    assert full_batch_bytes([16, 3], 100, 1000, True) == 4 * (100 * 4 * 19 + 1000 * 2 * 19)
    assert full_batch_bytes([16, 3], 100, 1000, False) == 4 * 100 * 4 * 19
    auto = Batching(max_full_batch_gb=1.0)
    assert not auto.use_minibatch(2**30 - 1) and auto.use_minibatch(2**30 + 1)
    assert Batching(mode="on").use_minibatch(0) and not Batching(mode="off").use_minibatch(1e15)
    assert Batching(inference_chunk=100).chunk_for(100) is None and Batching(inference_chunk=100).chunk_for(101) == 100


def test_induced_edges_and_row_selection():
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 2], [1, 2, 3, 4, 0, 0]])
    index = NeighbourhoodIndex(edge_index, 5)
    nodes = torch.tensor([2, 0, 1])
    got = {tuple(e) for e in induced_edges(index, nodes).t().tolist()}
    # edges among {2, 0, 1}: 0->1, 1->2, 2->0, relabelled to positions 1->2, 2->0, 0->1
    assert got == {(1, 2), (2, 0), (0, 1)}
    out = ModelOutput(logits=torch.arange(10.).view(5, 2), hidden=[torch.arange(15.).view(5, 3)])
    out.hidden.append(out.logits)
    rows = select_rows(out, nodes)
    assert rows.hidden[-1] is rows.logits and torch.equal(rows.logits, out.logits[nodes])


def test_infgrand_batches_add_up_to_the_full_loss():
    """Per-batch InfGraND terms, weighted by their edge counts, sum to the full-graph term."""
    g = torch.Generator().manual_seed(0)
    n, c = 30, 4
    edges = torch.randint(0, n, (2, 120), generator=g)
    teacher, student = torch.randn(n, c, generator=g), torch.randn(n, c, generator=g)
    influence = torch.rand(n, generator=g)
    loss = infgrand_module.InfGraNDLoss(influence, edges, gamma1=0.8, gamma2=0.4, delta1=0.6, delta2=0.2, tau=1.5,
                                        lam=0.0, teacher_logits=teacher)
    y, train = torch.randint(0, c, (n,), generator=g), torch.ones(n, dtype=torch.bool)
    full = loss.distillation(student, DistillationBatch(y, train, teacher, [], edges))
    total_edges = int(loss.kd_target.numel())
    acc = 0.0
    for part in torch.randperm(n, generator=g).split(7):
        b = DistillationBatch(y[part], train[part], teacher[part], [], edges[:, :0], node_ids=part)
        count = int(torch.isin(loss.kd_target, part).sum())
        acc += float(loss.distillation(student[part], b)) * count
    assert acc / total_edges == pytest.approx(float(full), rel=1e-5)


def test_minibatch_training_learns_and_reports_the_full_model(gkd_registry, small_synthetic):
    data = small_synthetic.data
    torch.manual_seed(0)
    model = gkd_registry.get("family", "sage").build(small_synthetic.num_features, small_synthetic.num_classes, 2, 16)
    settings = TrainingSettings(epochs=15, patience=15)
    outcome = train_minibatch(model, lambda out, ids, _: supervised_cross_entropy(out.logits, data.y[ids], data.train_mask[ids]),
                              data, settings, Batching(mode="on", batch_size=128, fanout=(5, 5), inference_chunk=200),
                              num_hops=2, seed=0)
    assert outcome.epochs_run == 15 and outcome.val_score > 0.8  # 3 well-separated classes
    # the reported accuracy is the restored model's full-neighbourhood accuracy
    model.eval()
    with torch.no_grad():
        logits = model(data.x, data.edge_index).logits
    assert outcome.val_score == pytest.approx(float((logits[data.val_mask].argmax(-1) == data.y[data.val_mask]).float().mean()))


# --------------------------------------------------------------------------- Cora: mini vs full


@pytest.fixture(scope="module")
def cora_teacher(gkd_registry, tmp_path_factory):
    dataset = gkd_registry.get("dataset", "cora").load(SHARED_DATA, tmp_path_factory.mktemp("cora"), seed=0)
    config = TeacherConfig.parse("gcn:2:64:dropout=0.8:weight_decay=0.001:epochs=200:patience=50")
    _, teacher = get_teacher(dataset, config, gkd_registry.get("family", "gcn"), seed=0,
                             cache_dir=tmp_path_factory.mktemp("teacher"))
    return dataset, teacher


def test_minibatch_matches_full_batch_on_cora(gkd_registry, cora_teacher):
    """Neighbour-sampled mini-batches (fan-out 10,10) reach the full-batch test accuracy within
    2 points (mean of 3 seeds), for a GCN student distilled with soft labels."""
    dataset, teacher = cora_teacher
    latency = {"gcn-2L-64": LatencyMeasurement(0.5, 0.6, 0.5, 0.4, 30)}
    accuracies: dict[str, list[float]] = {"off": [], "on": []}
    for mode in ("off", "on"):
        ctx = TrialContext(dataset=dataset, teacher=teacher, families=gkd_registry.families,
                           methods=gkd_registry.methods, latency=latency, budget_ms=10.0,
                           protocol=LatencyProtocol(warmup=2, repeats=30),
                           batching=Batching(mode=mode, batch_size=512, fanout=(10, 10)))
        for seed in range(3):
            spec = TrialSpec("gcn", 2, 64, method="softkd", method_params={"tau": 2.0, "alpha": 0.5},
                             training={"lr": 0.01, "weight_decay": 5e-4, "dropout": 0.5, "epochs": 100,
                                       "patience": 30}, seed=seed)
            result = run_trial(spec, ctx, f"{mode}-{seed}")
            assert result.status == "ok", result.error
            assert result.training_mode == ("mini-batch" if mode == "on" else "full-batch")
            accuracies[mode].append(result.test_acc)
    full, mini = statistics.mean(accuracies["off"]), statistics.mean(accuracies["on"])
    assert full > 0.78  # a sane full-batch baseline
    assert abs(mini - full) <= 0.02, accuracies


def test_teacher_trains_on_minibatches_and_keeps_only_logits(gkd_registry, tmp_path):
    g = torch.Generator().manual_seed(0)
    n = 300
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.nn.functional.one_hot(y, 3).float() + 0.5 * torch.randn(n, 3, generator=g)
    edge_index = torch.randint(0, n, (2, 1500), generator=g)
    data = Data(x=x, edge_index=edge_index, y=y, num_nodes=n, train_mask=torch.arange(n) < 60,
                val_mask=(torch.arange(n) >= 60) & (torch.arange(n) < 120), test_mask=torch.arange(n) >= 120)
    from gkd_search.types import GraphDataset

    dataset = GraphDataset("tiny", data, 3)
    config = TeacherConfig.parse("sage:3:16:epochs=60:patience=60:lr=0.03:dropout=0.0")
    batching = Batching(mode="on", batch_size=32, fanout=(4,), inference_chunk=64)
    model, out = get_teacher(dataset, config, gkd_registry.get("family", "sage"), seed=0, cache_dir=tmp_path,
                             batching=batching, keep_hidden=False)
    assert len(out.hidden) == 1 and torch.equal(out.hidden[0], out.logits) and out.logits.shape == (n, 3)
    assert out.val_acc > 0.8
    # from the cache, a method that needs the hidden layers gets them recomputed from the weights
    _, again = get_teacher(dataset, config, gkd_registry.get("family", "sage"), seed=0, cache_dir=tmp_path,
                           batching=batching, keep_hidden=True)
    assert again.from_cache and len(again.hidden) == 3
    assert torch.allclose(again.logits, out.logits, atol=1e-5)


@pytest.mark.parametrize("method", ["none", "softkd", "glnn", "fitnets", "at", "lsp", "gsp", "gcrd", "graphakd",
                                    "abkd", "stride", "infgrand"])
def test_every_method_trains_on_sparsely_labelled_minibatches(gkd_registry, small_synthetic, small_teacher, method):
    """Batches of 16 nodes of a graph with 10% labelled nodes often hold no labelled node: every
    method's loss must stay finite there (the supervised term is 0, the distillation terms go on)."""
    from gkd_search.distill.objective import method_hyperparameters
    from gkd_search.testing import parameter_draws

    _, teacher = small_teacher
    m = gkd_registry.methods[method]
    family = "gcn" if "graph" in m.student_kinds else "mlp"
    params = parameter_draws(method_hyperparameters(m))["default"]
    if method in ("abkd", "stride"):
        params["d_a"] = 32
    ctx = TrialContext(dataset=small_synthetic, teacher=teacher, families=gkd_registry.families,
                       methods=gkd_registry.methods, latency={f"{family}-2x16": LatencyMeasurement(1, 1, 1, 1, 30)},
                       budget_ms=10, protocol=LatencyProtocol(warmup=1, repeats=30),
                       batching=Batching(mode="on", batch_size=16, fanout=(3, 3)), structural_losses=gkd_registry.losses)
    spec = TrialSpec(family, 2, 16, method=method, method_params=params,
                     training={"lr": 0.01, "weight_decay": 5e-4, "dropout": 0.5, "epochs": 2, "patience": 2})
    assert int(small_synthetic.data.train_mask.sum()) / small_synthetic.num_nodes <= 0.1
    result = run_trial(spec, ctx, method)
    assert result.status == "ok", (result.error, result.traceback)
    assert result.training_mode == "mini-batch"
