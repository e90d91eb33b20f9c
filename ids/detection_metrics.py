"""Detection and prediction metrics, written out so the reported figures are auditable.

FBCI-SHS reports one "97 % efficiency" number for detection; we report
precision, recall and F1 per attack class and their unweighted (macro) mean,
because a detector that misses the rare class entirely can still score high
accuracy. AUROC is the Mann-Whitney rank statistic with ties counted half.
Lead time is how long before a NEWS2 >= 5 onset an alarm first sounded
within the prediction horizon (alarms earlier than that are counted as false
alarms by the accuracy figures, not as lead).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts[i, j] = records of true class i predicted as j."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return m


def per_class(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict[str, ClassMetrics]:
    """Precision, recall, F1 per class; 0 where undefined (nothing predicted or nothing present)."""
    m = confusion_matrix(y_true, y_pred, len(classes))
    out = {}
    for i, name in enumerate(classes):
        tp, predicted, actual = m[i, i], m[:, i].sum(), m[i, :].sum()
        p = tp / predicted if predicted else 0.0
        r = tp / actual if actual else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        out[name] = ClassMetrics(float(p), float(r), float(f1), int(actual))
    return out


def macro_f1(report: dict[str, ClassMetrics]) -> float:
    return float(np.mean([m.f1 for m in report.values()]))


def auroc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Probability a random positive outscores a random negative (ties count half)."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        raise ValueError("AUROC needs both positives and negatives")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # average ranks over ties
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def lead_times(alarm_times: Sequence[np.ndarray], onsets: Sequence[float | None], horizon: float) -> np.ndarray:
    """Per deteriorating patient: onset minus first alarm in [onset - horizon, onset); NaN if none.

    ``alarm_times[i]`` are patient i's alarm times, ``onsets[i]`` its first NEWS2 >= 5 time or
    None (patients who never deteriorate are skipped).
    """
    out = []
    for alarms, onset in zip(alarm_times, onsets, strict=True):
        if onset is None:
            continue
        a = np.asarray(alarms, dtype=np.float64)
        early = a[(a >= onset - horizon) & (a < onset)]
        out.append(onset - early.min() if early.size else np.nan)
    return np.array(out)
