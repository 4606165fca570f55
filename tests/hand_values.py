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


# ----------------------------------------------------------------------------- ABKD (arXiv:2310.15938v1)
# Written from the text of eqs. 3-6 with numpy loops, independent of the code under test.


def hand_attention(teacher, student, wt, ws, d_a, axis="student"):
    """Eq. 3: ``A = softmax(T_p S_p^T / sqrt(d_a))`` with ``T_p[i] = mean_v(T_i) Wt_i``; ``axis``
    "student" normalises each teacher row (over student layers), "teacher" each column."""
    import numpy as np

    tp = [np.mean(np.array(t), axis=0) @ w for t, w in zip(teacher, wt)]
    sp = [np.mean(np.array(s), axis=0) @ w for s, w in zip(student, ws)]
    scores = np.array([[tp[i] @ sp[j] / math.sqrt(d_a) for j in range(len(sp))] for i in range(len(tp))])
    a = np.zeros_like(scores)
    if axis == "student":
        for i in range(scores.shape[0]):
            e = np.exp(scores[i] - scores[i].max())
            a[i] = e / e.sum()
    else:
        for j in range(scores.shape[1]):
            e = np.exp(scores[:, j] - scores[:, j].max())
            a[:, j] = e / e.sum()
    return a


def hand_eq4(teacher, student, pt, ps, p, d_a, nodes="sum", distance="euclidean"):
    """Eq. 4: ``D_ij = ||(T_i P_t - S_j P_s) P 1/d_a||_2^2``: per node, the mean over the d_a
    entries of the projected difference; squared and summed over nodes (``nodes="mean"``: divided
    by n). ``pt``/``ps`` are lists with one matrix per layer (repeat one matrix for a per-network
    projection; a narrower layer uses its first rows). ``distance="cosine"``: 1 - cos between the
    node vectors ``T_i P_t P 1/d_a`` and ``S_j P_s P 1/d_a``."""
    import numpy as np

    ones = np.ones(d_a) / d_a
    d = np.zeros((len(teacher), len(student)))
    for i, t in enumerate(teacher):
        t = np.array(t)
        for j, s in enumerate(student):
            s = np.array(s)
            if distance == "cosine":
                u = np.array([t[v] @ pt[i][: t.shape[1]] @ p @ ones for v in range(len(t))])
                w = np.array([s[v] @ ps[j][: s.shape[1]] @ p @ ones for v in range(len(s))])
                d[i, j] = 1.0 - float(u @ w) / (np.linalg.norm(u) * np.linalg.norm(w))
                continue
            total = 0.0
            for v in range(len(t)):
                row = (t[v] @ pt[i][: t.shape[1]] - s[v] @ ps[j][: s.shape[1]]) @ p  # [d_a]
                total += float(row @ ones) ** 2
            d[i, j] = total if nodes == "sum" else total / len(t)
    return d


def hand_norm_dissimilarity(teacher, student, wt, ws, p, d_a, distance="euclidean"):
    """The formulation before issue 13: ``mean_v ||(T_i[v] Wt_i - S_j[v] Ws_j) P / d_a||^2``
    (cosine: ``mean_v 1 - cos`` of the projected rows)."""
    import numpy as np

    d = np.zeros((len(teacher), len(student)))
    for i, (t, w_t) in enumerate(zip(teacher, wt)):
        for j, (s, w_s) in enumerate(zip(student, ws)):
            per_node = []
            for v in range(len(t)):
                u = np.array(t[v]) @ w_t @ p
                w = np.array(s[v]) @ w_s @ p
                if distance == "euclidean":
                    diff = (u - w) / d_a
                    per_node.append(float(diff @ diff))
                else:
                    per_node.append(1.0 - float(u @ w) / (np.linalg.norm(u) * np.linalg.norm(w)))
            d[i, j] = sum(per_node) / len(per_node)
    return d


def hand_eq5(a, d):
    """Eq. 5: ``1_{Lt}^T (A o D) 1_{Ls} / Ls``, written as loops."""
    lt, ls = len(a), len(a[0])
    return sum(a[i][j] * d[i][j] for i in range(lt) for j in range(ls)) / ls
