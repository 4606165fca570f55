"""A stack of layers that records every layer's pre-activation output (shared by the families)."""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UsageError
from ..types import GraphModel, ModelOutput


def layer_widths(in_channels: int, hidden_channels: int, num_classes: int, num_layers: int) -> list[tuple[int, int]]:
    """``(in, out)`` of each layer: ``in -> hidden -> ... -> hidden -> classes``."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    dims = [in_channels] + [hidden_channels] * (num_layers - 1) + [num_classes]
    return list(zip(dims[:-1], dims[1:]))


def reject_unknown_params(family: str, params: dict, known: tuple[str, ...] = ()) -> None:
    """Raise :class:`UsageError` for a family parameter the family does not have."""
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise UsageError(
            f"{family}: unknown family parameter {unknown[0]!r} (known: {', '.join(known) or 'none'})"
        )


class LayerStack(GraphModel):
    """``dropout -> layer -> (record) -> ReLU`` for every layer but the last, which gives logits.

    Args:
        layers: the layers, each called as ``layer(x, edge_index)`` when ``uses_graph`` else
            ``layer(x)``.
        dropout: feature dropout before every layer (training only).
        uses_graph: whether the layers read ``edge_index``.
    """

    def __init__(self, layers: list[nn.Module], dropout: float, uses_graph: bool,
                 act: Callable[[Tensor], Tensor] = F.relu) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dropout = float(dropout)
        self.uses_graph = uses_graph
        self.act = act

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def forward(self, x: Tensor, edge_index: Tensor | None = None) -> ModelOutput:
        hidden: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            x = F.dropout(x, p=self.dropout, training=self.training)
            x = layer(x, edge_index) if self.uses_graph else layer(x)
            hidden.append(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return ModelOutput(logits=x, hidden=hidden)
