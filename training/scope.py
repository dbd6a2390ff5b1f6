"""Fitting and calibrating the scope gate (lesion_desktop.scope) for a model folder.

Features come from the engine the app runs (`lesion_desktop.inference`: ONNX Runtime on a CPU where the
members have graphs, PyTorch otherwise), so the distances fitted here are the distances the app computes.
The training split fits each member's principal subspace; the validation split standardises each member's
distance and sets the threshold (at most `target` of validation images flagged, image checks included);
the test split, full-size photos and a folder of non-dermoscopy pictures give the figures. Decoded images
and features are cached, so a second run does not decode or run the networks again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lesion_desktop.errors import DatasetError
from lesion_desktop.imageio import quality_check
from lesion_desktop.inference import Engine
from lesion_desktop.inference.runner import Runner, normalise_batch_np
from lesion_desktop.manifest import MANIFEST, read_json_object, sha256_file
from lesion_desktop.preprocess import PreprocessConfig
from lesion_desktop.scope import (
    SCOPE_FILE,
    WORK_SIZE,
    ImageChecks,
    MemberDistance,
    ScopeModel,
    dark_or_blurred,
    image_finding,
    image_stats,
)
from training.data import build_cache, read_dataset
from training.progress import Progress, check_cancel
from training.splits import indices_for, load_split

BATCH = 32
DEFAULT_COMPONENTS = 256
DEFAULT_TARGET = 0.01
DEGRADED_EVERY = 3  # degraded copies of every third validation image set the poor-quality threshold


def _blur(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda im: cv2.GaussianBlur(im, (0, 0), sigma)


def _scaled(gain: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda im: np.clip(im.astype(np.float32) * gain, 0, 255).astype(np.uint8)


# What a poor photo of a real lesion looks like at the training copies' size (200x150): out of focus, under-
# and over-exposed; the quality check calls these blurred, too dark or too bright, and asks for a retake.
DEGRADATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "blurred (sigma 1.5)": _blur(1.5),
    "blurred (sigma 3)": _blur(3.0),
    "darkened (x0.15)": _scaled(0.15),
    "darkened and blurred": lambda im: _blur(2.0)(_scaled(0.15)(im)),
    "over-exposed (x3)": _scaled(3.0),
}


def runner_features(runner: Runner, batch_uint8: np.ndarray, progress: Progress | None = None,
                    report: Callable[[int], None] | None = None) -> np.ndarray | None:
    """(N, C) pooled features of a member for its prepared network inputs (N, H, W, 3) uint8, normalised as the
    engine normalises them; None when the member's network gives no pooled features (a non-linear head)."""
    pre = runner.info.preprocess
    out: list[np.ndarray] = []
    for i in range(0, len(batch_uint8), BATCH):
        check_cancel(progress)
        x = normalise_batch_np(np.ascontiguousarray(batch_uint8[i : i + BATCH]), pre.mean, pre.std)
        f = runner.run(x).features
        if f is None:
            return None
        out.append(np.asarray(f, np.float32).reshape(len(x), -1))
        if report is not None:
            report(i + len(x))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def member_features(engine: Engine, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Raw RGB uint8 images of any size -> {member name: (N, C) features}: `Prediction.features`, stacked."""
    feats: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(images), BATCH):
        for p in engine.predict(list(images[i : i + BATCH])):
            for name, f in p.features.items():
                feats.setdefault(name, []).append(np.asarray(f, np.float32))
    return {name: np.stack(v) for name, v in feats.items()}


@dataclass
class SplitFeatures:
    features: dict[str, np.ndarray]  # member name -> (N, C)
    flagged: np.ndarray  # (N,) bool: the image checks' verdict
    image_ids: list[str]
    work_images: np.ndarray | None = None  # (N, 150, 200, 3) uint8 at the working resolution (memmap)
    poor: np.ndarray | None = None  # (N,) bool: the quality check calls the image dark or blurred


def _member_key(runner: Runner) -> str:
    return runner.info.weights_sha256[:16]


def split_features(engine: Engine, data: str | Path, split_file: str | Path, which: str, cache_dir: Path,
                   progress: Progress | None = None) -> SplitFeatures:
    """Each member's features and the image checks on one part of a split (both cached in `cache_dir`)."""
    split = load_split(Path(split_file))
    if not split[which]:
        raise DatasetError(f"The split file {split_file} has no {which} images.")
    ds = read_dataset(data).subset(split[which])
    cache_dir = Path(cache_dir)
    # The image checks look at the image at the working resolution, which is this cache's content.
    work = build_cache(ds, PreprocessConfig(input_size=WORK_SIZE, effective_size=WORK_SIZE), cache_dir)
    idx = indices_for(work.records, split[which])
    ids = [work.records[i].image_id for i in idx]
    checks = ImageChecks()
    flagged = np.array([bool(image_finding(image_stats(np.asarray(work.images[i])), checks)) for i in idx], bool)
    poor = np.array([dark_or_blurred(quality_check(im), im) for im in (np.asarray(work.images[i]) for i in idx)],
                    bool)
    feats: dict[str, np.ndarray] = {}
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    for k, runner in enumerate(engine.runners):
        name = runner.info.name
        cache = build_cache(ds, runner.info.preprocess, cache_dir)
        midx = indices_for(cache.records, split[which])
        if [cache.records[i].image_id for i in midx] != ids:
            raise DatasetError("The members decoded different images; their features cannot be combined.")
        path = cache_dir / f"features-{_member_key(runner)}-{runner.backend}-{cache.fingerprint}-{digest}.npy"
        if path.is_file():
            feats[name] = np.load(path, allow_pickle=False)
            continue
        n = len(midx)

        def report(done: int, k: int = k, n: int = n, name: str = name) -> None:
            if progress is not None:
                progress.report((k + done / max(n, 1)) / len(engine.runners),
                                f"{which}: features of {name} {done}/{n}")

        f = runner_features(runner, cache.images[midx], progress, report)
        if f is None:
            continue  # this member gives no pooled features: the gate uses the others
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.part.npy")
        np.save(tmp, f)
        os.replace(tmp, path)
        feats[name] = f
    if not feats:
        raise DatasetError("None of these models gives pooled features, so no scope model can be fitted.")
    return SplitFeatures(feats, flagged, ids, work.images[idx], poor)


@dataclass
class DegradedFeatures:
    features: dict[str, np.ndarray]
    flagged: np.ndarray  # the image checks' verdict
    poor: np.ndarray  # the quality check calls the copy dark or blurred
    kinds: list[str]


def degraded_features(engine: Engine, val: SplitFeatures, cache_dir: Path,
                      progress: Progress | None = None) -> DegradedFeatures:
    """Features of degraded copies of every DEGRADED_EVERY-th validation image, through the app's own path."""
    assert val.work_images is not None
    picks = np.arange(0, len(val.image_ids), DEGRADED_EVERY)
    digest = hashlib.sha256(("\n".join(val.image_ids[i] for i in picks) + "|" + "|".join(DEGRADATIONS)).encode())
    key = "-".join(r.info.weights_sha256[:12] for r in engine.runners) + "-" + digest.hexdigest()[:16]
    path = Path(cache_dir) / f"degraded-{key}.npz"
    images: list[np.ndarray] = []
    kinds: list[str] = []
    for kind, degrade in DEGRADATIONS.items():
        for i in picks:
            images.append(degrade(np.asarray(val.work_images[i])))
            kinds.append(kind)
    checks = ImageChecks()
    flagged = np.array([bool(image_finding(image_stats(im), checks)) for im in images], bool)
    poor = np.array([dark_or_blurred(quality_check(im), im) for im in images], bool)
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            feats = {name: z[f"m{k}"] for k, name in enumerate(engine.members) if f"m{k}" in z.files}
    else:
        feats = {}
        for start in range(0, len(images), 256):
            check_cancel(progress)
            if progress is not None:
                progress.report(start / len(images), f"degraded validation copies {start}/{len(images)}")
            for name, f in member_features(engine, images[start : start + 256]).items():
                feats.setdefault(name, []).append(f)  # type: ignore[arg-type]
        feats = {name: np.concatenate(v) for name, v in feats.items()}  # type: ignore[arg-type]
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.part.npz")
        np.savez(tmp, **{f"m{k}": feats[name] for k, name in enumerate(engine.members) if name in feats})
        os.replace(tmp, path)
    return DegradedFeatures(feats, flagged, poor, kinds)


def fit_member(name: str, train: np.ndarray, val: np.ndarray, components: int) -> MemberDistance:
    """Principal subspace of the training features; the residual distance standardised on validation."""
    x = np.asarray(train, np.float64)
    mean = x.mean(axis=0)
    k = int(min(components, x.shape[1] - 1, x.shape[0] - 1))
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    basis = vt[:k].T.astype(np.float16).astype(np.float32)  # stored as float16: fit with what is stored
    model = MemberDistance(name, mean.astype(np.float32), basis, 0.0, 1.0)
    d = model.distance(val)
    median = float(np.median(d))
    scale = float(np.quantile(d, 0.99) - median)
    return MemberDistance(name, model.mean, basis, median, scale if scale > 0 else 1.0)


def calibrate_threshold(scores: np.ndarray, flagged: np.ndarray, target: float) -> float:
    """The lowest threshold that flags at most `target` of the images, counting those the checks flag anyway."""
    n = len(scores)
    allowed = int(math.floor(target * n)) - int(flagged.sum())
    rest = np.sort(scores[~flagged])
    if allowed <= 0 or len(rest) == 0:
        return float(rest[-1]) if len(rest) else 0.0
    if allowed >= len(rest):
        return float(rest[0])
    return float(rest[len(rest) - allowed - 1])


def flagged_by(model: ScopeModel, split: SplitFeatures) -> np.ndarray:
    """What `ScopeModel.check` decides for each image of a split (the poor-quality threshold where it applies)."""
    poor = split.poor if split.poor is not None and model.poor_quality_threshold is not None else None
    thresholds = np.full(len(split.flagged), model.threshold)
    if poor is not None:
        thresholds[poor] = max(model.threshold, float(model.poor_quality_threshold or 0.0))
    return split.flagged | ~(model.feature_scores(split.features) <= thresholds)


def _rate(flags: np.ndarray) -> dict[str, Any]:
    n = int(len(flags))
    return {"n": n, "flagged": int(flags.sum()), "rate": round(float(flags.mean()), 4) if n else None}


@dataclass
class FolderResult:
    names: list[str]
    flagged: np.ndarray
    kinds: list[str] = field(default_factory=list)  # per image: "features", "grey", "flat", "drawing" or ""
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))


def check_folder(model: ScopeModel, engine: Engine, folder: Path, progress: Progress | None = None) -> FolderResult:
    """The gate's verdict on every readable image in a folder, through the app's own path (predict, check)."""
    from lesion_desktop.errors import ImageLoadError
    from lesion_desktop.imageio import IMAGE_SUFFIXES, load_image

    names, kinds, scores = [], [], []
    for p in sorted(Path(folder).iterdir()):
        check_cancel(progress)
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            rgb = load_image(p)
        except ImageLoadError:
            continue
        result = model.check(engine.predict_one(rgb).features, rgb)
        names.append(p.name)
        kinds.append(result.kind)
        scores.append(result.score)
    return FolderResult(names, np.array([bool(k) for k in kinds], bool), kinds, np.array(scores))


def by_prefix(result: FolderResult) -> dict[str, dict[str, Any]]:
    """Rates grouped by the file names' prefix before the first '_' (benchmarks/ood_images.py names its kinds so)."""
    groups: dict[str, list[bool]] = {}
    for name, flag in zip(result.names, result.flagged, strict=True):
        groups.setdefault(name.split("_")[0], []).append(bool(flag))
    return {k: _rate(np.array(v, bool)) for k, v in sorted(groups.items())}


def fit_scope(engine: Engine, data: str | Path, split_file: str | Path, cache_dir: Path, *,
              components: int = DEFAULT_COMPONENTS, target: float = DEFAULT_TARGET,
              progress: Progress | None = None) -> tuple[ScopeModel, dict[str, Any]]:
    """Fit on the training split, calibrate on validation, measure on test; returns the model and its figures."""
    train = split_features(engine, data, split_file, "train", cache_dir, progress)
    val = split_features(engine, data, split_file, "val", cache_dir, progress)
    names = [n for n in train.features if n in val.features]
    members = [fit_member(n, train.features[n], val.features[n], components) for n in names]
    digests = {str(Path(str(e.get("path"))).name): str(e.get("manifest_sha256", ""))
               for e in engine.ensemble.manifest.get("members", []) if isinstance(e, dict)}
    fitted_for = {n: digests[n] for n in names if digests.get(n)}
    model = ScopeModel(members, 0.0, ImageChecks(), {}, fitted_for)
    model.threshold = calibrate_threshold(model.feature_scores(val.features), val.flagged, target)
    deg = degraded_features(engine, val, cache_dir, progress)
    deg_scores = model.feature_scores(deg.features)
    # Copies the image checks flag (nothing left to see) do not count against the budget: the threshold is the
    # one that flags at most `target` of the dark or blurred copies on their features alone.
    sel = deg.poor & ~deg.flagged
    model.poor_quality_threshold = max(model.threshold,
                                       calibrate_threshold(deg_scores[sel], np.zeros(int(sel.sum()), bool), target))
    figures: dict[str, Any] = {
        "method": f"residual outside the top {members[0].basis.shape[1]} principal components of each member's "
                  "training features, standardised on validation; largest member",
        "split_file": Path(split_file).name,
        "split_sha256": sha256_file(Path(split_file)),
        "target_rate": target,
        "train": {"n": len(train.image_ids)},
        "validation": _rate(flagged_by(model, val)),
        "degraded_validation": _degraded_figures(model, deg, deg_scores),
    }
    if load_split(Path(split_file))["test"]:
        test = split_features(engine, data, split_file, "test", cache_dir, progress)
        figures["test"] = _rate(flagged_by(model, test))
    return model, figures


def _degraded_figures(model: ScopeModel, deg: DegradedFeatures, scores: np.ndarray) -> dict[str, Any]:
    """Per degradation: how many copies the quality check calls dark or blurred, and how many of all copies the
    gate flags (and would flag with the ordinary threshold for every image)."""
    poor_threshold = model.threshold if model.poor_quality_threshold is None else model.poor_quality_threshold
    kinds = np.array(deg.kinds)
    out: dict[str, Any] = {}
    for kind in DEGRADATIONS:
        sel = kinds == kind
        thresholds = np.where(deg.poor[sel], poor_threshold, model.threshold)
        out[kind] = {"copies": int(sel.sum()), "dark_or_blurred": int(deg.poor[sel].sum()),
                     "flagged": int((deg.flagged[sel] | ~(scores[sel] <= thresholds)).sum()),
                     "flagged_by_image_checks": int(deg.flagged[sel].sum()),
                     "flagged_at_ordinary_threshold": int((deg.flagged[sel] | ~(scores[sel] <= model.threshold)).sum())}
    return out


def write_scope(model: ScopeModel, figures: dict[str, Any], out: Path, models_dir: Path) -> dict[str, Any]:
    """Save the scope files in `out`; when `out` is the model folder, its manifest gets the "scope" block."""
    model.calibration = figures
    out.mkdir(parents=True, exist_ok=True)
    block = model.save(out)
    if out.resolve() == Path(models_dir).resolve():
        manifest = read_json_object(out / MANIFEST)
        manifest["scope"] = block
        tmp = out / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, out / MANIFEST)
    return block


def scope_command(models_dir: Path, data: str | Path, split_file: Path, *, out: Path | None = None,
                  cache_dir: Path, fullres: Path | None = None, ood: Path | None = None,
                  components: int = DEFAULT_COMPONENTS, target: float = DEFAULT_TARGET, device: str = "cpu",
                  progress: Progress | None = None, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """`python -m training scope`: fit, calibrate, measure, write; returns the figures written."""
    from lesion_desktop.inference.open import load_engine

    engine = load_engine(Path(models_dir), device=device)
    model, figures = fit_scope(engine, data, split_file, cache_dir, components=components, target=target,
                               progress=progress)
    echo(f"threshold {model.threshold:.3f} (validation: {_fmt(figures['validation'])} flagged); for dark or "
         f"blurred images {model.poor_quality_threshold:.3f}")
    for kind, f in figures["degraded_validation"].items():
        echo(f"  validation copies {kind}: {f['flagged']}/{f['copies']} flagged ({f['flagged_by_image_checks']} by "
             f"the image checks; {f['dark_or_blurred']} dark or blurred; {f['flagged_at_ordinary_threshold']} "
             "at the ordinary threshold)")
    if "test" in figures:
        echo(f"test split: {_fmt(figures['test'])} flagged")
    if fullres is not None:
        r = check_folder(model, engine, fullres, progress)
        figures["full_size_photos"] = {"folder": Path(fullres).name, **_rate(r.flagged)}
        echo(f"full-size photos ({fullres}): {_fmt(figures['full_size_photos'])} flagged")
    if ood is not None:
        r = check_folder(model, engine, ood, progress)
        figures["non_dermoscopy"] = {**_rate(r.flagged), "by_kind": by_prefix(r),
                                     "by_check": {k or "passed": r.kinds.count(k) for k in sorted(set(r.kinds))}}
        echo(f"non-dermoscopy pictures ({ood}): {_fmt(figures['non_dermoscopy'])} flagged")
        for kind, f in figures["non_dermoscopy"]["by_kind"].items():
            echo(f"  {kind:8s} {_fmt(f)}")
        missed = [n for n, flag in zip(r.names, r.flagged, strict=True) if not flag]
        if missed:
            echo(f"  not flagged: {', '.join(missed)}")
    target_dir = Path(out) if out is not None else Path(models_dir)
    block = write_scope(model, figures, target_dir, Path(models_dir))
    echo(f"scope model: {target_dir / SCOPE_FILE} (sha256 {block['sha256'][:12]}...)")
    return figures


def _fmt(f: dict[str, Any]) -> str:
    return f"{f['flagged']}/{f['n']} ({f['rate']:.1%})" if f.get("n") else "no images"


def cmd_scope(a: Any, cache_dir: Path) -> int:
    """The `scope` subcommand (training/cli.py parses its arguments)."""
    from tqdm import tqdm

    from training.progress import TerminalProgress

    prog = TerminalProgress("scope")
    try:
        scope_command(Path(a.models), a.data, Path(a.split_file), out=Path(a.output) if a.output else None,
                      cache_dir=cache_dir, fullres=Path(a.full_size) if a.full_size else None,
                      ood=Path(a.non_dermoscopy) if a.non_dermoscopy else None, components=a.components,
                      target=a.target_rate, device=a.device, progress=prog, echo=tqdm.write)
    finally:
        prog.close()
    return 0
