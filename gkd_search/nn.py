"""Building blocks for plugin components: the pieces our own families and methods are made of.

This module is public and stable (``docs/plugins.md``): a third-party family or method may
import from here instead of re-implementing them.

Models:

* :class:`LayerStack` -- a :class:`~gkd_search.types.GraphModel` from a list of layers, recording
  every layer's pre-activation output in ``ModelOutput.hidden``, with exact chunked
  :meth:`~gkd_search.types.GraphModel.inference` for layers called as ``layer(x, edge_index)``.
* :func:`layer_widths` -- ``(in, out)`` of each layer, ``in -> hidden -> ... -> classes``.
* :func:`reject_unknown_params` -- a clear error for a family parameter the family lacks.
* :func:`gcn_normalize` -- ``D^-1/2 (A + I) D^-1/2`` as weighted edges, for ``LayerStack(normalize=...)``.

Losses:

* :func:`supervised_cross_entropy` -- the CE every objective starts from, safe on a mini-batch
  without labelled nodes.
* :func:`soft_label_kl` -- Hinton's soft-label term.
* :func:`representation` / :func:`representation_width` -- the last representation before the
  classifier (``hidden[-2]``, or the logits of a 1-layer model) and its width.
* :class:`StructuralMethod` -- a method ``CE + beta * <a registered structural loss of the same
  name>`` (how ``lsp``, ``gsp`` and ``gcrd`` are made).
"""

from __future__ import annotations

from .families._stack import LayerStack, gcn_normalize, layer_widths, reject_unknown_params
from .methods._common import representation, soft_label_kl, supervised_cross_entropy
from .methods.lsp import StructuralDistillationLoss, StructuralMethod, representation_width

__all__ = [
    "LayerStack",
    "StructuralDistillationLoss",
    "StructuralMethod",
    "gcn_normalize",
    "layer_widths",
    "reject_unknown_params",
    "representation",
    "representation_width",
    "soft_label_kl",
    "supervised_cross_entropy",
]
