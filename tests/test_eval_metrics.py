"""compass.eval.metrics agrees with scikit-learn (installed with lm-eval) on the metrics the
financial tasks report."""

from __future__ import annotations

import random

import pytest

from compass.eval import metrics

sk = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_match_sklearn(seed):
    rng = random.Random(seed)
    n = rng.randint(5, 60)
    gold = [rng.randint(0, 1) for _ in range(n)]
    pred = [rng.randint(0, 1) for _ in range(n)]
    prob = [round(rng.random(), 1) for _ in range(n)]  # rounded: ties in the scores
    rep = metrics.binary_report(gold, pred, prob)
    assert rep["accuracy"] == pytest.approx(sk.accuracy_score(gold, pred))
    assert rep["precision"] == pytest.approx(sk.precision_score(gold, pred, zero_division=0))
    assert rep["recall"] == pytest.approx(sk.recall_score(gold, pred, zero_division=0))
    assert rep["f1"] == pytest.approx(sk.f1_score(gold, pred, zero_division=0))
    assert rep["mcc"] == pytest.approx(sk.matthews_corrcoef(gold, pred))
    if len(set(gold)) == 2:
        assert rep["roc_auc"] == pytest.approx(sk.roc_auc_score(gold, prob))


def test_macro_f1_matches_sklearn_on_strings():
    gold = ["a", "b", "c", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "a", "c", "b", "d"]
    assert metrics.macro_f1(gold, pred) == pytest.approx(sk.f1_score(gold, pred, average="macro", zero_division=0))
    assert metrics.macro_f1(gold, pred, labels=["a", "b"]) == pytest.approx(
        sk.f1_score(gold, pred, labels=["a", "b"], average="macro", zero_division=0))


def test_degenerate_cases():
    assert metrics.roc_auc([1, 1], [0.2, 0.9]) is None
    assert metrics.mcc([1, 1, 1], [1, 1, 1]) == 0.0
    assert metrics.accuracy([], []) == 0.0
    assert metrics.roc_auc([0, 1], [0.1, 0.9]) == 1.0
    assert metrics.roc_auc([0, 1], [0.5, 0.5]) == 0.5
