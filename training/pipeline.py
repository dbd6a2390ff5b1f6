"""Retraining end to end, as the settings dialog and `python -m training retrain` run it.

Members are trained on one shared lesion-grouped split, combined on validation, and the candidate is
scored next to the active models on the validation images that neither was trained on (manifests record
which images a model's weights were fitted on). Nothing is installed here: the caller installs the
candidate with `install_candidate`, which applies the one install rule the dialog and the CLI share:
a candidate not shown better on the paired interval needs an explicit override, and is then marked
as unvalidated.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lesion_desktop.classes import MEL_INDEX
from lesion_desktop.errors import CancelledError, LesionError
from lesion_desktop.manifest import ENSEMBLE_FORMAT, MANIFEST, read_json_object
from lesion_desktop.store import ModelStore
from training.ensemble import BuiltEnsemble, build_ensemble, ensemble_probs
from training.metrics import evaluate, paired_intervals
from training.progress import Progress, ScaledProgress, check_cancel
from training.splits import load_split
from training.trainer import TrainConfig, train

log = logging.getLogger(__name__)


@dataclass
class RetrainConfig:
    data: str
    architectures: list[str]
    work_dir: str
    epochs_head: int = 1
    epochs_top: int = 1
    epochs_all: int = 3
    input_size: tuple[int, int] | None = None
    imagenet: str = "auto"  # the ImageNet weights when init == "imagenet": "auto" (found offline) or a file
    batch_size: int = 32
    max_batches: int | None = None
    device: str = "auto"
    seed: int = 0
    half_weights: bool = False
    command: str = ""
    export_onnx: bool = True  # graphs beside the weights, so the candidate runs on ONNX Runtime on a CPU
    fit_scope: bool = True  # a scope gate for the candidate, when its data are large enough to fit one
    # Where each member starts: "active" (the active ensemble's member of the same architecture, with its head,
    # input size and preprocessing), "imagenet" (the `imagenet` weights, a new head) or "random".
    init: str = "active"
    # A data folder of the original training data (e.g. HAM10000) mixed into the clinic's training images so
    # the models do not forget what they knew; its images unseen by both models give the `reference` comparison.
    mix_data: str | None = None
    mix_ratio: float = 1.0  # original images drawn per clinic training image


# Below these, the compared images cannot judge the candidate, whatever the intervals say.
MIN_COMPARED_IMAGES = 100
MIN_COMPARED_MELANOMAS = 10


def trained_image_ids(models_dir: Path) -> set[str] | None:
    """The image ids an ensemble's (or bundle's) weights were fitted on, from its manifests; None if not recorded.

    Read from `training.trained_image_ids` of the ensemble manifest, else the union over its members' manifests
    (every member must record it: one unknown member makes the whole set unknown).
    """
    def recorded(manifest: dict[str, Any]) -> set[str] | None:
        t = manifest.get("training")
        ids = t.get("trained_image_ids") if isinstance(t, dict) else None
        return {str(i) for i in ids} if isinstance(ids, list) else None

    folder = Path(models_dir)
    try:
        manifest = read_json_object(folder / MANIFEST)
        own = recorded(manifest)
        if own is not None or manifest.get("format") != ENSEMBLE_FORMAT:
            return own
        union: set[str] = set()
        for entry in manifest.get("members") or []:
            member = recorded(read_json_object(folder / str(entry.get("path", "")) / MANIFEST))
            if member is None:
                return None
            union |= member
        return union if manifest.get("members") else None
    except (LesionError, AttributeError):
        return None


@dataclass
class Comparison:
    """The candidate and the active models on the validation images neither was trained on."""

    n_validation: int  # validation images of the candidate's split
    n_excluded: int  # of those, images the active or the candidate models were trained on
    n_images: int = 0  # compared images
    n_lesions: int = 0
    n_melanomas: int = 0
    candidate: dict[str, Any] | None = None
    active: dict[str, Any] | None = None
    # new minus active on the same lesions, 95% paired bootstrap intervals
    difference: dict[str, Any] | None = None
    problem: str = ""  # why the comparison cannot judge the candidate ("" when it can)


def compare_on_unseen(active_probs: np.ndarray, candidate_probs: np.ndarray, labels: np.ndarray, groups: list[str],
                      image_ids: list[str], trained_on: set[str] | None) -> Comparison:
    """Score both ensembles on the validation images outside `trained_on` (None: unknown, so none is safe)."""
    n_val = len(image_ids)
    if trained_on is None:
        return Comparison(n_val, 0, problem=(
            "The active models' manifests do not record which images they were trained on, so no validation image "
            "can be shown to be new to them: the comparison would not be fair."))
    keep = np.array([i not in trained_on for i in image_ids], dtype=bool)
    y = np.asarray(labels)[keep]
    g = [lesion for lesion, k in zip(groups, keep, strict=True) if k]
    c = Comparison(n_val, int((~keep).sum()), int(keep.sum()), len(set(g)), int((y == MEL_INDEX).sum()))
    seen = (f" ({c.n_excluded} of the {n_val} validation images were left out because the active or the new "
            "models were trained on them)" if c.n_excluded else "")
    if c.n_images < MIN_COMPARED_IMAGES or c.n_melanomas < MIN_COMPARED_MELANOMAS:
        c.problem = (f"Only {c.n_images} validation images ({c.n_melanomas} melanomas) are new to both the active "
                     f"and the new models{seen}; at least {MIN_COMPARED_IMAGES} images with "
                     f"{MIN_COMPARED_MELANOMAS} melanomas are needed to judge the new models.")
    if c.n_images:
        active_kept, candidate_kept = np.asarray(active_probs)[keep], np.asarray(candidate_probs)[keep]
        c.active, c.candidate = evaluate(active_kept, y, g), evaluate(candidate_kept, y, g)
        c.difference = paired_intervals(active_kept, candidate_kept, y, g)
    return c


@dataclass(frozen=True)
class InstallVerdict:
    needs_override: bool  # installing needs the user's explicit override
    worse: bool  # shown worse on balanced accuracy or melanoma recall
    summary: str  # what the user reads before deciding
    figures: str  # "balanced accuracy 0.520 vs 0.770 (-0.250, 95% interval ...), melanoma recall ..."
    detail: str  # the summary without its figures, for a box that shows them apart


def compared_figures(c: Comparison) -> str:
    """New vs active on the compared images, each change with its paired 95% interval."""
    if not c.candidate or not c.active:
        return ""
    parts = []
    for key, label in (("balanced_accuracy", "balanced accuracy"), ("melanoma_recall", "melanoma recall")):
        new, old = c.candidate.get(key), c.active.get(key)
        if not (isinstance(new, float) and isinstance(old, float) and new == new and old == old):
            continue
        iv = (c.difference or {}).get(key)
        interval = f", 95% interval {iv[0]:+.3f} to {iv[1]:+.3f}" if iv else ""
        parts.append(f"{label} {new:.3f} vs {old:.3f} ({new - old:+.3f}{interval})")
    return ", ".join(parts)


def install_verdict(c: Comparison | None, reference: Comparison | None = None,
                    notes: list[str] | None = None) -> InstallVerdict:
    """The install rule the dialog and the CLI share: only a candidate shown better installs without an override.

    Better: the paired interval of the change in balanced accuracy lies above zero, and melanoma recall is not
    shown lower (its interval does not lie below zero), on enough clinic validation images that neither model saw.
    With a `reference` comparison (the original data's validation images unseen by both), a candidate shown
    worse there (it forgot) also needs the override. The `notes` (small classes) end the summary, so every
    place that shows it shows them.
    """
    v = _clinic_verdict(c)
    extra: list[str] = []
    needs_override, worse = v.needs_override, v.worse
    if reference is not None:
        sentence, ref_worse = reference_sentence(reference)
        extra.append(sentence)
        if ref_worse:
            worse = True
            if not needs_override:
                needs_override = True
                extra.append("Installing them needs an explicit override.")
    extra += list(notes or [])
    if not extra:
        return v
    tail = " " + " ".join(extra)
    return InstallVerdict(needs_override, worse, v.summary + tail, v.figures, v.detail + tail)


def reference_sentence(r: Comparison) -> tuple[str, bool]:
    """What the original data's unseen validation images say; True when the new models are shown worse there."""
    figures = compared_figures(r)
    on = f"{r.n_images} original validation images ({r.n_lesions} lesions) that neither trained on"
    if r.problem or not figures:
        return f"On the original training data: {r.problem or 'no comparison could be made.'}", False
    ba = (r.difference or {}).get("balanced_accuracy")
    mel = (r.difference or {}).get("melanoma_recall")
    worse = bool(ba and ba[1] < 0) or bool(mel and mel[1] < 0)
    verb = "They are WORSE than the active ones" if worse else "Compared with the active ones"
    return f"On the original training data ({on}): {verb}: {figures}.", worse


def _clinic_verdict(c: Comparison | None) -> InstallVerdict:
    override = " Installing them needs an explicit override."
    if c is None:
        text = "There are no active models to compare the new models with, so they are not shown to be at least " \
               "as good." + override
        return InstallVerdict(True, False, text, "", text)
    figures = compared_figures(c)
    on = f"on {c.n_images} validation images ({c.n_lesions} lesions) that neither trained on"
    ba = (c.difference or {}).get("balanced_accuracy")
    mel = (c.difference or {}).get("melanoma_recall")
    worse = bool(ba and ba[1] < 0) or bool(mel and mel[1] < 0)
    if c.problem or not ba:
        shown = f" Measured {on}: {figures}." if figures else ""
        tail = f" They are not shown to be at least as good as the active models.{override}"
        return InstallVerdict(True, worse, f"The new models cannot be judged. {c.problem}{shown}{tail}", figures,
                              f"{c.problem}{f' Measured {on}.' if figures else ''}{tail}")
    if worse:
        advice = " Installing them is not recommended, and needs an explicit override."
        return InstallVerdict(True, True, f"The new models are WORSE than the active ones {on}: {figures}.{advice}",
                              figures, f"Measured {on}.{advice}")
    if ba[0] > 0:
        return InstallVerdict(False, False, f"The new models are better than the active ones {on}: {figures}.",
                              figures, f"Measured {on}.")
    advice = f" They are not shown to be better.{override}"
    return InstallVerdict(True, False, f"The validation images cannot tell the new models from the active ones "
                                       f"({on}): {figures}.{advice}", figures, f"Measured {on}.{advice}")


@dataclass
class RetrainResult:
    ensemble_dir: Path
    metrics: dict[str, Any]  # the candidate on all its validation images
    test_metrics: dict[str, Any] | None
    comparison: Comparison | None  # None: there were no active models to compare with
    member_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    # the same comparison on the original data's validation images unseen by both (mix_data), None without
    reference: Comparison | None = None
    notes: list[str] = field(default_factory=list)  # plain sentences about small data, shown with the verdict

    @property
    def verdict(self) -> InstallVerdict:
        return install_verdict(self.comparison, self.reference, self.notes)

    @property
    def better(self) -> bool:
        """Shown better than the active models, so installable without an override."""
        return not self.verdict.needs_override

    @property
    def active_metrics(self) -> dict[str, Any] | None:
        """The active models on the compared images."""
        return self.comparison.active if self.comparison else None

    @property
    def compared_metrics(self) -> dict[str, Any] | None:
        """The candidate on the same compared images."""
        return self.comparison.candidate if self.comparison else None

    @property
    def difference(self) -> dict[str, Any] | None:
        return self.comparison.difference if self.comparison else None

    def difference_text(self) -> str:
        return self.verdict.summary


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
    if cfg.export_onnx:
        _export_graphs(built.path, progress)
    if cfg.fit_scope:
        _fit_scope(built.path, cfg.data, split_file, cache_dir, progress)
    comparison = None
    if active_dir is not None:
        if progress is not None:
            progress.report(0.96, "Scoring the active models on the same validation images")
        comparison = _compare_with_active(built, Path(active_dir), cfg.data, split_file, cache_dir, progress)
    if progress is not None:
        progress.report(1.0, "Retraining finished; review the reports before installing")
    return RetrainResult(built.path, built.val_metrics, built.test_metrics, comparison, member_metrics,
                         time.time() - t0)


def _export_graphs(ensemble_dir: Path, progress: Progress | None) -> None:
    """Export the candidate's members to ONNX now, so the app never exports at start; a failure is not fatal:
    a member without a graph runs on PyTorch (slower on a CPU), and the log says why."""
    from lesion_desktop.inference.export import export_member
    from lesion_desktop.manifest import validate_ensemble

    for member in validate_ensemble(ensemble_dir).members:
        check_cancel(progress)
        if progress is not None:
            progress.report(0.94, f"Preparing {member.architecture} for fast CPU inference (ONNX export)")
        try:
            export_member(member.path)
        except Exception:  # an architecture the exporter cannot handle must not lose the trained candidate
            log.warning("ONNX export of %s failed; it will run on PyTorch", member.path, exc_info=True)


MIN_SCOPE_TRAINING_IMAGES = 1000  # fewer cannot outline what the models have seen (256 principal directions)


def _fit_scope(ensemble_dir: Path, data: str, split_file: Path, cache_dir: Path, progress: Progress | None) -> None:
    """Fit the candidate's own scope gate on its training split, calibrated on validation (python -m training
    scope, in the pipeline). Skipped, with the reason logged, when the members give no pooled features or the
    data are too small: the app then runs the image checks alone and each result says so."""
    from lesion_desktop.inference import load_engine
    from training.scope import fit_scope, write_scope

    n_train = len(load_split(split_file).get("train", []))
    if n_train < MIN_SCOPE_TRAINING_IMAGES:
        log.warning("No scope gate fitted for %s: %d training images (at least %d needed)", ensemble_dir, n_train,
                    MIN_SCOPE_TRAINING_IMAGES)
        return
    try:
        engine = load_engine(ensemble_dir, "cpu")
        if not all(r.gives_cams for r in engine.runners):  # the same split gives the pooled features
            log.warning("No scope gate fitted for %s: a member gives no pooled features", ensemble_dir)
            return
        if progress is not None:
            progress.report(0.95, "Fitting the scope gate (which images the new models can judge)")
        model, figures = fit_scope(engine, data, split_file, cache_dir, progress=progress)
        write_scope(model, figures, ensemble_dir, ensemble_dir)
    except Exception:  # the candidate stays usable with the image checks alone
        log.warning("Fitting the scope gate for %s failed", ensemble_dir, exc_info=True)


def _compare_with_active(built: BuiltEnsemble, active_dir: Path, data: str, split_file: Path, cache_dir: Path,
                         progress: Progress | None) -> Comparison:
    n_val = len(built.val_split.image_ids)
    try:
        active_probs, sp = ensemble_probs(active_dir, data=data, split_file=str(split_file), which="val",
                                          cache_dir=cache_dir, progress=progress)
    except CancelledError:
        raise
    except LesionError as e:
        return Comparison(n_val, 0, problem=f"The active models could not be scored on this data: {e}")
    if built.val_split.image_ids != sp.image_ids:  # pairing needs the same images in the same order
        return Comparison(n_val, 0, problem="The active and the new models were scored on different images.")
    active_seen = trained_image_ids(active_dir)
    # The candidate was fitted on its split's training part (and on whatever its manifests record besides).
    candidate_seen = (trained_image_ids(built.path) or set()) | set(load_split(split_file)["train"])
    trained_on = None if active_seen is None else active_seen | candidate_seen
    return compare_on_unseen(active_probs, built.val_probs, sp.labels, sp.groups, sp.image_ids, trained_on)


def install_candidate(result: RetrainResult, store: ModelStore, *, override: bool = False) -> Path:
    """Install a candidate under the shared rule; the ensemble it replaces stays available for roll-back.

    A candidate not shown better than the active models (worse, indistinguishable, or not judged) is refused
    unless `override`; installed by override, it is recorded and named as unvalidated.
    """
    verdict = result.verdict
    if verdict.needs_override and not override:
        raise LesionError("Not installed: " + verdict.summary)
    return store.install(Path(result.ensemble_dir), comparison=verdict.summary, figures=verdict.figures,
                         by_override=verdict.needs_override)
