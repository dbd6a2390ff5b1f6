"""Combining trained members: weights chosen on the validation split, evaluated like any model."""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lesion_desktop.bundle import ModelBundle, load_bundle, load_ensemble, save_ensemble
from lesion_desktop.errors import BundleError
from training.data import build_cache, read_dataset
from training.metrics import evaluate
from training.progress import Progress, ScaledProgress, check_cancel
from training.splits import indices_for, load_split
from training.trainer import _brief, predict_probs


@dataclass
class SplitProbs:
    """Each member's calibrated probabilities on one split, and the labels."""

    probs: list[np.ndarray]
    labels: np.ndarray
    groups: list[str]  # lesion id of each image, for intervals that resample lesions
    image_ids: list[str] = field(default_factory=list)


def member_probs(members: list[ModelBundle], data: str, split_file: str, which: str, cache_dir: Path,
                 progress: Progress | None = None, device: str = "cpu", tta: bool = False) -> SplitProbs:
    """Score each member on a split through the shared preprocessing (one cache per preprocessing).

    `tta`: average each member's probabilities over the engine's flips and rotations, as the app does
    with test-time augmentation switched on.
    """
    split = load_split(Path(split_file))
    ds = read_dataset(data).subset(split[which])  # decode only the images that are scored
    out: list[np.ndarray] = []
    labels: np.ndarray | None = None
    dev = torch.device(device)
    for k, m in enumerate(members):
        check_cancel(progress)
        # the bar covers each member's decoding (fast, cached after the first run) and its scoring
        lo, hi = k / len(members), (k + 1) / len(members)
        mid = lo + 0.2 * (hi - lo)
        tag = f"member {k + 1}/{len(members)}: "
        cache = build_cache(ds, m.preprocess, cache_dir, ScaledProgress(progress, lo, mid, tag))
        idx = indices_for(cache.records, split[which])
        m.model.to(dev)
        p = _score(m, cache.images[idx], dev, tta, ScaledProgress(progress, mid, hi, tag))
        ids = [cache.records[i].image_id for i in idx]
        if labels is None:
            labels = cache.labels()[idx]
            groups = [cache.records[i].lesion_id for i in idx]
            ref_ids = ids
        elif ids != ref_ids:
            raise BundleError("Members decoded different image sets; cannot combine them.")
        out.append(p)
    assert labels is not None
    return SplitProbs(out, labels, groups, ref_ids)


def _score(m: ModelBundle, images: np.ndarray, dev: torch.device, tta: bool, progress: ScaledProgress,
           chunk: int = 256) -> np.ndarray:
    """predict_probs in chunks, reporting after each: scoring is most of an evaluation's time."""
    n = len(images)
    parts = []
    for i in range(0, n, chunk):
        progress.report(i / max(n, 1), f"scoring {i}/{n} images" + (" (6 views each)" if tta else ""))
        parts.append(predict_probs(m.model, images[i : i + chunk], m.preprocess, dev, 64, m.temperature, progress,
                                   tta=tta)[1])
    progress.report(1.0, f"scored {n} images")
    return np.concatenate(parts) if parts else predict_probs(m.model, images, m.preprocess, dev, 64,
                                                             m.temperature, progress, tta=tta)[1]


def combine(probs: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The app's own averaging (lesion_desktop.inference): validation figures are the figures the app gives."""
    from lesion_desktop.inference.runner import weighted_mean

    return weighted_mean(probs, weights)


def choose_weights(probs: list[np.ndarray], labels: np.ndarray, step: float = 0.1) -> np.ndarray:
    """Grid over the simplex: best validation balanced accuracy, ties broken by lower NLL, then equal weights."""
    k = len(probs)
    if k == 1:
        return np.ones(1)
    n = int(round(1 / step))
    best: tuple[float, float, float] | None = None
    best_w = np.full(k, 1.0 / k)
    for combo in itertools.product(range(n + 1), repeat=k - 1):
        if sum(combo) > n:
            continue
        w = np.array([*combo, n - sum(combo)], dtype=np.float64) / n
        m = evaluate(combine(probs, w), labels)
        key = (m["balanced_accuracy"], -m["nll"], -float(np.abs(w - 1.0 / k).sum()))
        if best is None or key > best:
            best, best_w = key, w
    return best_w


@dataclass
class BuiltEnsemble:
    path: Path
    val_metrics: dict[str, Any]
    test_metrics: dict[str, Any] | None
    val_probs: np.ndarray  # the ensemble's combined validation probabilities, in val_split's image order
    val_split: SplitProbs


def build_ensemble(member_dirs: list[Path], out_dir: Path, *, data: str, split_file: str, cache_dir: Path,
                   name: str, progress: Progress | None = None, training: dict[str, Any] | None = None,
                   weights: list[float] | None = None) -> BuiltEnsemble:
    """Copy members into one folder, weight them on validation (or with the `weights` given), and record val and
    test metrics."""
    members = [load_bundle(Path(d)) for d in member_dirs]
    val = member_probs(members, data, split_file, "val", cache_dir, progress)
    chosen = (np.asarray(weights, dtype=np.float64) / float(np.sum(weights)) if weights is not None
              else choose_weights(val.probs, val.labels))
    val_probs = combine(val.probs, chosen)
    val_metrics = evaluate(val_probs, val.labels, val.groups)
    test_metrics = None
    split = load_split(Path(split_file))
    if split["test"]:
        test = member_probs(members, data, split_file, "test", cache_dir, progress)
        test_metrics = evaluate(combine(test.probs, chosen), test.labels, test.groups)
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    entries = []
    for i, (d, m) in enumerate(zip(member_dirs, members, strict=True)):
        sub = f"{i}-{m.architecture}"
        shutil.copytree(d, out_dir / sub)
        entries.append((sub, float(chosen[i])))
    save_ensemble(out_dir, entries, name=name,
                  metrics={"val": _brief(val_metrics), "test": _brief(test_metrics) if test_metrics else None,
                           "split_file": str(split_file)},
                  training=training or {})
    load_ensemble(out_dir)  # what was written must load
    return BuiltEnsemble(out_dir, val_metrics, test_metrics, val_probs, val)


def ensemble_probs(models_dir: Path, *, data: str, split_file: str, which: str, cache_dir: Path,
                   progress: Progress | None = None, tta: bool = False) -> tuple[np.ndarray, SplitProbs]:
    """An installed or candidate ensemble's probabilities on a split, combined as the app combines them."""
    ens = load_ensemble(Path(models_dir))
    sp = member_probs(ens.members, data, split_file, which, cache_dir, progress, tta=tta)
    return combine(sp.probs, np.array(ens.weights)), sp


def evaluate_models(models_dir: Path, *, data: str, split_file: str, which: str, cache_dir: Path,
                    progress: Progress | None = None, tta: bool = False) -> dict[str, Any]:
    """Score an installed or candidate ensemble on a split, exactly as build_ensemble does (or with TTA)."""
    probs, sp = ensemble_probs(models_dir, data=data, split_file=split_file, which=which, cache_dir=cache_dir,
                               progress=progress, tta=tta)
    return evaluate(probs, sp.labels, sp.groups)
