"""Retraining end to end, as the settings dialog and `python -m training retrain` run it.

Members are trained on one shared lesion-grouped split, combined on validation, and the candidate is
scored next to the active models on the same validation images. Nothing is installed here: the
caller installs the candidate (`install_candidate`) only after the user has seen both reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesion_desktop.errors import LesionError
from lesion_desktop.store import ModelStore
from training.ensemble import build_ensemble, ensemble_probs
from training.metrics import evaluate, paired_intervals
from training.progress import Progress, ScaledProgress, check_cancel
from training.trainer import TrainConfig, train


@dataclass
class RetrainConfig:
    data: str
    architectures: list[str]
    work_dir: str
    epochs_head: int = 1
    epochs_top: int = 1
    epochs_all: int = 3
    input_size: tuple[int, int] | None = None
    imagenet: str = "auto"
    batch_size: int = 32
    max_batches: int | None = None
    device: str = "auto"
    seed: int = 0
    half_weights: bool = False
    command: str = ""


@dataclass
class RetrainResult:
    ensemble_dir: Path
    metrics: dict[str, Any]
    test_metrics: dict[str, Any] | None
    active_metrics: dict[str, Any] | None
    better: bool
    member_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    # New minus active on the same validation lesions, 95% paired bootstrap intervals (None: nothing to compare)
    difference: dict[str, Any] | None = None

    def difference_text(self) -> str:
        """The candidate's balanced-accuracy and melanoma-recall change, and whether the data can tell."""
        d, a = self.difference, self.active_metrics
        if not d or not a or not d.get("balanced_accuracy"):
            return ""
        parts = []
        for key, label in (("balanced_accuracy", "balanced accuracy"), ("melanoma_recall", "melanoma recall")):
            iv = d.get(key)
            if iv and isinstance(self.metrics.get(key), float) and isinstance(a.get(key), float):
                parts.append(f"{label} {self.metrics[key] - a[key]:+.3f} (95% interval {iv[0]:+.3f} to {iv[1]:+.3f})")
        lo, hi = d["balanced_accuracy"]
        verdict = ("the validation images cannot tell the two apart on balanced accuracy" if lo <= 0 <= hi
                   else "a difference larger than chance on these validation images")
        return "New minus active, on the same validation lesions: " + "; ".join(parts) + f": {verdict}."


def retrain(cfg: RetrainConfig, progress: Progress | None = None,
            active_dir: Path | None = None) -> RetrainResult:
    t0 = time.time()
    if not cfg.architectures:
        raise LesionError("Choose at least one architecture to train.")
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    split_file = work / "split.json"
    cache_dir = work / "cache"
    member_dirs: list[Path] = []
    member_metrics: dict[str, dict[str, Any]] = {}
    n = len(cfg.architectures)
    for i, arch in enumerate(cfg.architectures):
        check_cancel(progress)
        tc = TrainConfig(
            architecture=arch, data=cfg.data, out_dir=str(work / arch), input_size=cfg.input_size,
            epochs_head=cfg.epochs_head, epochs_top=cfg.epochs_top, epochs_all=cfg.epochs_all,
            batch_size=cfg.batch_size, imagenet=cfg.imagenet, device=cfg.device, seed=cfg.seed,
            split_file=str(split_file), cache_dir=str(cache_dir), max_batches=cfg.max_batches,
            half_weights=cfg.half_weights, command=cfg.command,
        )
        if i == 0 and not split_file.exists():
            # The first member writes the split; the others reuse it so the ensemble is scored fairly.
            tc.split_file = None
            res = train(tc, ScaledProgress(progress, 0.9 * i / n, 0.9 * (i + 1) / n, f"[{arch}] ", {"member": arch}))
            (work / arch / "split.json").replace(split_file)
        else:
            res = train(tc, ScaledProgress(progress, 0.9 * i / n, 0.9 * (i + 1) / n, f"[{arch}] ", {"member": arch}))
        member_dirs.append(res.bundle)
        member_metrics[arch] = res.val_metrics
    check_cancel(progress)
    if progress is not None:
        progress.report(0.92, "Combining the members on the validation split")
    built = build_ensemble(
        member_dirs, work / "candidate", data=cfg.data, split_file=str(split_file), cache_dir=cache_dir,
        name=f"retrained-{time.strftime('%Y%m%d-%H%M')}", progress=progress,
        training={"command": cfg.command, "data": cfg.data, "architectures": cfg.architectures,
                  "seconds": round(time.time() - t0, 1)},
    )
    active_metrics = None
    difference = None
    if active_dir is not None:
        if progress is not None:
            progress.report(0.96, "Scoring the active models on the same validation images")
        try:
            active_probs, sp = ensemble_probs(active_dir, data=cfg.data, split_file=str(split_file), which="val",
                                              cache_dir=cache_dir, progress=progress)
            active_metrics = evaluate(active_probs, sp.labels, sp.groups)
            # the candidate's validation probabilities come from build_ensemble; pairing needs the same images
            if built.val_split.image_ids == sp.image_ids:
                difference = paired_intervals(active_probs, built.val_probs, sp.labels, sp.groups)
        except LesionError:
            active_metrics = difference = None
    val_m = built.val_metrics
    better = active_metrics is None or val_m["balanced_accuracy"] > active_metrics["balanced_accuracy"]
    if progress is not None:
        progress.report(1.0, "Retraining finished; review the reports before installing")
    return RetrainResult(built.path, val_m, built.test_metrics, active_metrics, better, member_metrics,
                         time.time() - t0, difference)


def install_candidate(ensemble_dir: Path, store: ModelStore) -> Path:
    """Install a verified candidate; the ensemble it replaces stays available for roll-back."""
    return store.install(Path(ensemble_dir))
