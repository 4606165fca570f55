"""The structural-loss contract: :func:`check_structural_loss`."""

from __future__ import annotations

import torch

from ..types import StructuralLoss
from ._graph import _contract_graph_tensors, parameter_draws


def check_structural_loss(loss: StructuralLoss, *, student_channels: int = 8, teacher_channels: int = 12,
                          seed: int = 0) -> None:
    """The contract every structural loss meets; raises ``AssertionError`` naming what broke.

    At the default, low and high ends of its hyperparameters, for ``[N, student_channels]``
    student and ``[N, teacher_channels]`` teacher embeddings of a seeded 60-node graph:

    * ``build`` returns a :class:`~gkd_search.types.StructuralLossModule`;
    * the loss is a finite scalar; it is finite on a graph without edges too (a sampled
      subgraph may have none);
    * a finite gradient reaches the student embeddings and is non-zero (the loss depends on
      the student), and reaches every parameter the module owns;
    * it runs on a subset of rows with a relabelled ``edge_index`` (how STRIDE calls it);
    * without trainable parameters, it is lower when the student equals the teacher (same widths)
      than for an unrelated student.
    """
    from ..types import StructuralLossModule

    num_nodes = 60
    teacher, edge_index, _ = _contract_graph_tensors(num_nodes, 300, teacher_channels, 1, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    for label, params in parameter_draws(loss.hyperparameters).items():
        where = f"structural loss {loss.name!r} ({label} parameters {params})"
        module = loss.build(params, student_channels, teacher_channels)
        assert isinstance(module, StructuralLossModule), f"{where}: build returned a {type(module).__name__}"
        student = torch.randn(num_nodes, student_channels, generator=gen, requires_grad=True)
        value = module(student, teacher, edge_index)
        assert torch.is_tensor(value) and value.dim() == 0, f"{where}: the loss is not a scalar tensor"
        assert torch.isfinite(value), f"{where}: the loss is {float(value.detach())}"
        value.backward()
        assert student.grad is not None and torch.isfinite(student.grad).all(), f"{where}: no finite gradient to the student"
        assert student.grad.abs().sum() > 0, f"{where}: the loss does not depend on the student embeddings"
        for name, p in module.named_parameters():
            if p.requires_grad:
                assert p.grad is not None and torch.isfinite(p.grad).all(), f"{where}: no finite gradient reaches {name}"
        rows = torch.arange(0, num_nodes, 2)
        keep = (edge_index % 2 == 0).all(dim=0)
        sub_edges = edge_index[:, keep] // 2
        sub_value = module(student[rows], teacher[rows], sub_edges)
        assert torch.isfinite(sub_value), f"{where}: the loss on a subset of rows is {float(sub_value.detach())}"
        no_edges = module(student, teacher, edge_index[:, :0])
        assert torch.isfinite(no_edges), f"{where}: the loss on a graph without edges is {float(no_edges.detach())}"

    same = loss.build(parameter_draws(loss.hyperparameters)["default"], teacher_channels, teacher_channels)
    if any(p.requires_grad for p in same.parameters()):
        return  # learned projections (G-CRD's heads) score an untrained match arbitrarily
    with torch.no_grad():
        matched = float(same(teacher, teacher, edge_index))
        unrelated = float(same(torch.randn(num_nodes, teacher_channels, generator=gen), teacher, edge_index))
    assert matched < unrelated, (f"structural loss {loss.name!r}: a student equal to the teacher scores {matched:.4g}, "
                                 f"not lower than an unrelated one ({unrelated:.4g})")
