"""Metrics that do not flatter a 67%-nevi data set: balanced accuracy and melanoma recall first."""

from __future__ import annotations

from typing import Any

import numpy as np

from lesion_desktop.classes import CLASS_CODES, MALIGNANT_INDICES, MEL_INDEX, NUM_CLASSES

# Warning thresholds the reports tabulate; the app's default (Settings.warning_threshold, 0.30) is among them.
WARNING_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int = NUM_CLASSES) -> np.ndarray:
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def binary_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) identity, with ties averaged."""
    pos = int(positive.sum())
    neg = len(positive) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[positive.astype(bool)].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> tuple[float, list[dict]]:
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    table = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            gap = abs(correct[m].mean() - conf[m].mean())
            ece += m.mean() * gap
            table.append({"lo": float(lo), "hi": float(hi), "count": int(m.sum()),
                          "accuracy": float(correct[m].mean()), "confidence": float(conf[m].mean())})
    return float(ece), table


def malignancy_warning(probs: np.ndarray, y_true: np.ndarray,
                       thresholds: tuple[float, ...] = WARNING_THRESHOLDS) -> list[dict[str, Any]]:
    """How the app's warning (combined mel + bcc + akiec probability >= threshold) would have fired.

    For each threshold: the fraction of melanomas and of all malignant lesions it warns on (its sensitivity,
    whatever the top label), and the fraction of benign lesions it warns on (its false alarms).
    """
    malignant = np.asarray(probs, dtype=np.float64)[:, list(MALIGNANT_INDICES)].sum(axis=1)
    is_mel = y_true == MEL_INDEX
    is_malignant = np.isin(y_true, MALIGNANT_INDICES)

    def rate(mask: np.ndarray, warned: np.ndarray) -> float | None:
        return float(warned[mask].mean()) if mask.any() else None

    rows = []
    for t in thresholds:
        warned = malignant >= t - 1e-9
        rows.append({"threshold": float(t), "melanoma": rate(is_mel, warned),
                     "malignant": rate(is_malignant, warned), "benign": rate(~is_malignant, warned)})
    return rows


INTERVAL_METRICS = ("balanced_accuracy", "melanoma_recall", "accuracy")


def _resampled_figures(probs: list[np.ndarray], y_true: np.ndarray, groups: np.ndarray | list[str] | None,
                       resamples: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Balanced accuracy, melanoma recall and accuracy of each probability array on the same resamples."""
    y = np.asarray(y_true, dtype=np.int64)
    corrects = [np.asarray(p).argmax(axis=1) == y for p in probs]
    if groups is None:
        group_index = np.arange(len(y))
    else:
        _, group_index = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(group_index.max()) + 1 if len(y) else 0
    rng = np.random.default_rng(seed)
    values: list[dict[str, list[float]]] = [{k: [] for k in INTERVAL_METRICS} for _ in probs]
    chunk = 100
    for start in range(0, resamples if n_groups else 0, chunk):
        b = min(chunk, resamples - start)
        draws = rng.integers(0, n_groups, size=(b, n_groups))
        counts = np.stack([np.bincount(d, minlength=n_groups) for d in draws]).astype(np.float64)
        w = counts[:, group_index]  # (b, n): how often each image is in each resample
        for correct, out in zip(corrects, values, strict=True):
            recalls = []
            for k in range(NUM_CLASSES):
                in_k = y == k
                denom = w[:, in_k].sum(axis=1)
                num = (w[:, in_k] * correct[in_k]).sum(axis=1)
                recalls.append(np.divide(num, denom, out=np.full(b, np.nan), where=denom > 0))
            r = np.stack(recalls, axis=1)
            present = np.isfinite(r)
            out["balanced_accuracy"] += list(np.where(present, r, 0).sum(axis=1) / np.maximum(present.sum(axis=1), 1))
            out["melanoma_recall"] += list(r[:, MEL_INDEX])
            out["accuracy"] += list((w * correct).sum(axis=1) / w.sum(axis=1))
    return [{k: np.asarray(v, dtype=np.float64) for k, v in d.items()} for d in values]


def _percentiles(values: dict[str, np.ndarray], level: float, resamples: int, grouped: bool) -> dict[str, Any]:
    tail = (1 - level) / 2 * 100
    out: dict[str, Any] = {"level": level, "resamples": resamples, "unit": "lesion" if grouped else "image"}
    for name, arr in values.items():
        arr = arr[np.isfinite(arr)]
        out[name] = [float(np.percentile(arr, tail)), float(np.percentile(arr, 100 - tail))] if len(arr) else None
    return out


def bootstrap_intervals(probs: np.ndarray, y_true: np.ndarray, groups: np.ndarray | list[str] | None = None,
                        resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Percentile bootstrap intervals for balanced accuracy, melanoma recall and accuracy.

    Resamples whole lesions (`groups`: one lesion id per image) with replacement, so that a lesion photographed
    several times counts as one draw; without groups, single images. The interval shows how far a figure
    could move on another sample of the same size.
    """
    (figures,) = _resampled_figures([probs], y_true, groups, resamples, seed)
    return _percentiles(figures, level, resamples, groups is not None)


def paired_intervals(probs_old: np.ndarray, probs_new: np.ndarray, y_true: np.ndarray,
                     groups: np.ndarray | list[str] | None = None, resamples: int = 1000, level: float = 0.95,
                     seed: int = 0) -> dict[str, Any]:
    """Intervals for new minus old, both scored on each resample of the same images (lesions).

    Tighter than comparing two separate intervals, because both models meet the same easy and hard cases;
    an interval that contains 0 means the data cannot tell the two apart.
    """
    old, new = _resampled_figures([probs_old, probs_new], y_true, groups, resamples, seed)
    return _percentiles({k: new[k] - old[k] for k in INTERVAL_METRICS}, level, resamples, groups is not None)


def evaluate(probs: np.ndarray, y_true: np.ndarray, lesions: np.ndarray | list[str] | None = None) -> dict[str, Any]:
    """Every figure the reports show, as plain JSON-able values.

    With `lesions` (one lesion id per image) also the lesion-resampled 95% intervals (bootstrap_intervals)
    that reports and manifests carry; without, none (the per-epoch and weight-grid scoring does not need them).
    """
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = probs.argmax(axis=1)
    cm = confusion(y_true, y_pred)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm).astype(np.float64)
    recall = np.divide(tp, support, out=np.full(NUM_CLASSES, np.nan), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(NUM_CLASSES), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(NUM_CLASSES),
                   where=(precision + recall) > 0)
    aucs = [binary_auc(probs[:, k], y_true == k) for k in range(NUM_CLASSES)]
    ece, reliability = expected_calibration_error(probs, y_true)
    eps = 1e-12
    nll = float(-np.mean(np.log(probs[np.arange(len(y_true)), y_true] + eps))) if len(y_true) else float("nan")
    return {
        "n": int(len(y_true)),
        "balanced_accuracy": float(np.nanmean(recall)),
        "melanoma_recall": float(recall[MEL_INDEX]),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else float("nan"),
        "macro_auc": float(np.nanmean(aucs)),
        "ece": ece,
        "nll": nll,
        "per_class": {
            code: {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]),
                   "auc": aucs[k], "support": int(support[k])}
            for k, code in enumerate(CLASS_CODES)
        },
        "confusion_matrix": cm.tolist(),
        "reliability": reliability,
        "malignancy_warning": malignancy_warning(probs, y_true),
    } | ({"intervals": bootstrap_intervals(probs, y_true, lesions)} if lesions is not None else {})


def headline(m: dict[str, Any]) -> str:
    ci = m.get("intervals") or {}

    def fig(key: str) -> str:
        if m.get(key) is None:  # withheld: too few lesions to judge (training.comparison)
            return "not judged"
        iv = ci.get(key)
        return f"{m[key]:.3f}" + (f" ({iv[0]:.3f}-{iv[1]:.3f})" if iv else "")

    return (f"balanced acc {fig('balanced_accuracy')}, melanoma recall {fig('melanoma_recall')}, "
            f"accuracy {fig('accuracy')}, macro AUC {m['macro_auc']:.3f}, ECE {m['ece']:.3f}")
