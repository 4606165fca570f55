"""Formulas the method tests compare against, written out in plain Python from the papers'
equations, independent of the code under test."""

from __future__ import annotations

import math
from typing import Sequence


def hand_ce(logits: Sequence[Sequence[float]], y: Sequence[int], mask: Sequence[bool]) -> float:
    """Mean over the training nodes (``mask``) of ``-log softmax(logits)[y]``."""
    total, count = 0.0, 0
    for row, label, use in zip(logits, y, mask):
        if use:
            peak = max(row)
            log_norm = peak + math.log(sum(math.exp(v - peak) for v in row))
            total += log_norm - row[label]
            count += 1
    return total / count
