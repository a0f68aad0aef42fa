"""Classification metrics as small pure functions (no numpy/sklearn: the report stage stays light).

They agree with scikit-learn's `accuracy_score`, `precision_score`, `recall_score`, `f1_score`
(binary and macro), `matthews_corrcoef` and `roc_auc_score` on the cases EDINET-Bench and the
Japanese financial harness use (tested against scikit-learn in tests/test_eval_metrics.py).
"""

from __future__ import annotations

import math
from typing import Hashable, Sequence


def accuracy(gold: Sequence, pred: Sequence) -> float:
    return sum(g == p for g, p in zip(gold, pred)) / len(gold) if gold else 0.0


def _prf(gold: Sequence, pred: Sequence, label: Hashable) -> tuple[float, float, float]:
    tp = sum(g == label and p == label for g, p in zip(gold, pred))
    fp = sum(g != label and p == label for g, p in zip(gold, pred))
    fn = sum(g == label and p != label for g, p in zip(gold, pred))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return precision, recall, f1


def precision_recall_f1(gold: Sequence, pred: Sequence, positive: Hashable = 1) -> dict:
    """Binary precision, recall and F1 of the `positive` class (0 where undefined, as sklearn's
    zero_division=0)."""
    p, r, f = _prf(gold, pred, positive)
    return {"precision": p, "recall": r, "f1": f}


def macro_f1(gold: Sequence, pred: Sequence, labels: Sequence | None = None) -> float:
    """Mean per-class F1 over `labels` (default: every label in gold or pred, as sklearn does)."""
    labels = list(labels) if labels is not None else sorted(set(gold) | set(pred), key=str)
    if not labels:
        return 0.0
    return sum(_prf(gold, pred, lab)[2] for lab in labels) / len(labels)


def mcc(gold: Sequence, pred: Sequence, positive: Hashable = 1) -> float:
    """Matthews correlation coefficient of a binary task (0 when a margin is empty, as sklearn)."""
    tp = sum(g == positive and p == positive for g, p in zip(gold, pred))
    tn = sum(g != positive and p != positive for g, p in zip(gold, pred))
    fp = sum(g != positive and p == positive for g, p in zip(gold, pred))
    fn = sum(g == positive and p != positive for g, p in zip(gold, pred))
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denom if denom else 0.0


def roc_auc(gold: Sequence[int], scores: Sequence[float], positive: Hashable = 1) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with tied scores counted half); None when gold has
    a single class (undefined)."""
    pos = [s for g, s in zip(gold, scores) if g == positive]
    neg = [s for g, s in zip(gold, scores) if g != positive]
    if not pos or not neg:
        return None
    # Rank-sum with average ranks for ties: O(n log n).
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        avg = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        i = j + 1
    rank_sum = sum(r for r, g in zip(ranks, gold) if g == positive)
    n_pos, n_neg = len(pos), len(neg)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def binary_report(gold: Sequence[int], pred: Sequence[int], prob: Sequence[float] | None = None) -> dict:
    """accuracy, precision, recall, f1, mcc and roc_auc (None without probabilities) of a 0/1 task."""
    out = {"accuracy": accuracy(gold, pred), **precision_recall_f1(gold, pred, 1), "mcc": mcc(gold, pred, 1)}
    out["roc_auc"] = roc_auc(gold, prob, 1) if prob is not None else None
    return out
