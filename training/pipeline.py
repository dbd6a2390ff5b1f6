"""Retraining end to end, as the settings dialog and `python -m training retrain` run it.

Each member starts where `RetrainConfig.init` says: by default from the active ensemble's member of the same
architecture (its weights, head, input size and preprocessing), fine-tuned at a tenth of the study's rates
through its two parts (top layers, then all layers; no new-head phase, the head is trained), else from ImageNet
or random weights. The members train on one lesion-grouped split of the clinic's data (training.mixing: with
original training images mixed in, if asked), are combined on validation, and the candidate is scored next to
the active models on the validation images that neither was trained on (training.comparison), and on the
original data's images unseen by both when that data is given. Nothing is installed here: the caller installs
the candidate with `install_candidate`, which applies the one install rule the dialog and the CLI share:
a candidate not shown better on the paired interval needs an explicit override, and is then marked
as unvalidated.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lesion_desktop.errors import BundleError, CancelledError, LesionError
from lesion_desktop.store import ModelStore
from lesion_desktop.wording import Phrase
from training.comparison import (
    ACTIVE_NOT_SCORED,
    DIFFERENT_IMAGES,
    MIN_COMPARED_IMAGES,
    MIN_COMPARED_MELANOMAS,
    MIN_VALIDATION_LESIONS,
    NO_ORIGINAL_IMAGE,
    ORIGINAL_NOT_RECORDED,
    ORIGINAL_NOT_SCORED,
    Comparison,
    InstallVerdict,
    compare_on_unseen,
    compared_figures,
    install_verdict,
    lesions_per_class,
    small_class_notes,
    withhold_recalls,
)
from training.ensemble import BuiltEnsemble, build_ensemble, ensemble_probs
from training.mixing import RetrainData, prepare_retrain_data, reference_images
from training.progress import Progress, ScaledProgress, check_cancel
from training.provenance import trained_image_ids
from training.splits import load_split, save_split
from training.trainer import TrainConfig, train

__all__ = ["MIN_COMPARED_IMAGES", "MIN_COMPARED_MELANOMAS", "MIN_VALIDATION_LESIONS", "Comparison",
           "InstallVerdict", "RetrainConfig", "RetrainResult", "compare_on_unseen", "compared_figures",
           "install_candidate", "install_verdict", "retrain", "trained_image_ids"]

log = logging.getLogger(__name__)

INITS = ("active", "imagenet", "random")
# Fine-tuning the active models: the study's rates for a network fresh from ImageNet, divided by ten. Their
# head is trained and their features fit dermoscopy already; full rates would first undo that.
FINE_TUNE_LR_SCALE = 0.1
MAX_REFERENCE_IMAGES = 3000  # original images scored for the reference comparison (whole lesions drawn above it)


@dataclass
class RetrainConfig:
    data: str
    architectures: list[str]
    work_dir: str
    epochs_head: int = 1  # not run with init "active": the active member's head is trained already
    epochs_top: int = 1
    epochs_all: int = 3
    input_size: tuple[int, int] | None = None  # not used with init "active": the active member's own size
    imagenet: str = "auto"  # the ImageNet weights when init == "imagenet": "auto" (found offline) or a file
    batch_size: int = 32
    max_batches: int | None = None
    device: str = "auto"
    seed: int = 0
    half_weights: bool = False
    command: str = ""
    export_onnx: bool = True  # graphs beside the weights, so the candidate runs on ONNX Runtime on a CPU
    export_in_child: bool = False  # export in a child process (the window: the exporter would stall it)
    fit_scope: bool = True  # a scope gate for the candidate, when its data are large enough to fit one
    # Where each member starts: "active" (the active ensemble's member of the same architecture, with its head,
    # input size and preprocessing; ImageNet, logged and recorded, when there is none), "imagenet" (the
    # `imagenet` weights, a new head) or "random".
    init: str = "active"
    # A data folder of the original training data (e.g. HAM10000) mixed into the clinic's training images so
    # the models do not forget what they knew; its images unseen by both models give the `reference` comparison
    # (mix_ratio 0: that comparison alone, nothing mixed in).
    mix_data: str | None = None
    mix_ratio: float = 1.0  # original images drawn per clinic training image


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
    notes: list[str] = field(default_factory=list)  # sentences (Wordings) about small data, shown with the verdict

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
    if cfg.init not in INITS:
        raise LesionError(f"init must be one of {', '.join(INITS)}, not {cfg.init!r}.")
    if not cfg.mix_ratio >= 0:
        raise LesionError(f"The mix ratio must be 0 or more, not {cfg.mix_ratio}.")
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    active = Path(active_dir) if active_dir is not None else None
    active_seen = trained_image_ids(active) if active is not None else None
    data = prepare_retrain_data(cfg.data, work, seed=cfg.seed, mix_data=cfg.mix_data, mix_ratio=cfg.mix_ratio,
                                allowed=active_seen)
    notes = list(data.notes)
    cache_dir = work / "cache"
    starts = {arch: member_start(cfg, arch, active, notes) for arch in cfg.architectures}
    member_dirs: list[Path] = []
    member_metrics: dict[str, dict[str, Any]] = {}
    n = len(cfg.architectures)
    for i, arch in enumerate(cfg.architectures):
        check_cancel(progress)
        tc = member_config(cfg, arch, starts[arch], data, work)
        res = train(tc, ScaledProgress(progress, 0.9 * i / n, 0.9 * (i + 1) / n, f"[{arch}] ", {"member": arch}))
        member_dirs.append(res.bundle)
        member_metrics[arch] = res.val_metrics
    check_cancel(progress)
    if progress is not None:
        progress.report(0.92, "Combining the members on the validation split")
    split_file, data_dir = data.split_file, str(data.data_dir)
    kept = active_weights([starts[a] for a in cfg.architectures], active)
    built = build_ensemble(
        member_dirs, work / "candidate", data=data_dir, split_file=str(split_file), cache_dir=cache_dir,
        name=f"retrained-{time.strftime('%Y%m%d-%H%M')}", progress=ScaledProgress(progress, 0.92, 0.94),
        training={"command": cfg.command, "data": cfg.data, "architectures": cfg.architectures,
                  "init": cfg.init, "initialised_from": {a: _start_summary(s) for a, s in starts.items()},
                  "mix_data": cfg.mix_data, "mix_ratio": cfg.mix_ratio if cfg.mix_data else None,
                  "mixed_images": len(data.mixed_ids), "notes": notes, "seconds": round(time.time() - t0, 1),
                  "member_weights": "the active ensemble's" if kept else "chosen on validation"},
        weights=kept,
    )
    if cfg.export_onnx:
        _export_graphs(built.path, progress, isolated=cfg.export_in_child)
    if cfg.fit_scope:
        _fit_scope(built.path, data_dir, split_file, cache_dir, ScaledProgress(progress, 0.95, 0.96))
    comparison = reference = None
    if active is not None:
        if progress is not None:
            progress.report(0.96, "Scoring the active models on the same validation images")
        comparison = _compare_with_active(built, active, data_dir, split_file, cache_dir,
                                          ScaledProgress(progress, 0.96, 0.98))
        notes += small_class_notes(comparison.few_lesions) if comparison.candidate else []
        if data.mix is not None:
            if progress is not None:
                progress.report(0.98, "Scoring both on original images neither was trained on")
            reference = _reference_comparison(built, active, data, cache_dir, work, ScaledProgress(progress, 0.98, 1))
            notes += small_class_notes(reference.few_lesions, "original validation") if reference.candidate else []
    metrics = dict(built.val_metrics, per_class={k: dict(v) for k, v in built.val_metrics["per_class"].items()})
    if comparison is None or comparison.candidate is None:  # the only figures shown: say which cannot be judged
        few = {c: k for c, k in lesions_per_class(built.val_split.labels, built.val_split.groups).items()
               if k < MIN_VALIDATION_LESIONS}
        withhold_recalls(metrics, few)
        notes += small_class_notes(few)
    if progress is not None:
        progress.report(1.0, "Retraining finished; review the reports before installing")
    return RetrainResult(built.path, metrics, built.test_metrics, comparison, member_metrics,
                         time.time() - t0, reference, notes)


@dataclass(frozen=True)
class MemberStart:
    """Where one member starts: an active member's bundle, or ImageNet / random weights (init_from None)."""

    init: str  # "active", "imagenet" or "random": what the member actually starts from
    init_from: str | None = None  # the active member's bundle folder
    fallback: str = ""  # why "active" was asked for and not possible


def active_member(active_dir: Path | None, architecture: str) -> tuple[Path | None, str]:
    """The active ensemble's first member of `architecture`, or None and why there is none."""
    from lesion_desktop.manifest import validate_ensemble

    if active_dir is None:
        return None, "there are no active models"
    try:
        members = validate_ensemble(active_dir).members
    except BundleError as e:
        return None, f"the active models could not be read ({e})"
    found = next((m.path for m in members if m.architecture == architecture), None)
    if found is None:
        return None, (f"the active models have no {architecture} member (they are "
                      f"{', '.join(m.architecture for m in members)})")
    return found, ""


def member_start(cfg: RetrainConfig, architecture: str, active_dir: Path | None, notes: list[str]) -> MemberStart:
    """Where `architecture` starts under `cfg.init`; an impossible "active" falls back to ImageNet, with a
    warning in the log, a sentence in `notes` and a record in the candidate's manifest."""
    if cfg.init != "active":
        return MemberStart(cfg.init)
    member, why = active_member(active_dir, architecture)
    if member is not None:
        if cfg.input_size and cfg.input_size != _input_size(member):
            notes.append(f"{architecture} keeps the active model's input size "
                         f"{'x'.join(map(str, _input_size(member)))}: its weights were fitted to it.")
        return MemberStart("active", str(member))
    log.warning("%s does not start from the active models: %s; it starts from ImageNet weights", architecture, why)
    notes.append(f"{architecture} started from ImageNet weights, not from the active models: {why}.")
    return MemberStart("imagenet", fallback=why)


def active_weights(starts: list[MemberStart], active_dir: Path | None) -> list[float] | None:
    """The active ensemble's weights of the members that every new member started from; None (choose them on
    validation) when any member started elsewhere. Chosen on the original data's validation images, they are
    steadier than any a clinic's few hundred could choose: re-chosen on 229 images in #16's experiment they
    dropped a member altogether (weights 0 and 1) and cost 4 points of balanced accuracy on HAM10000."""
    from lesion_desktop.manifest import validate_ensemble

    if active_dir is None or not starts or any(s.init_from is None for s in starts):
        return None
    info = validate_ensemble(active_dir)
    weight_of = {m.path.resolve(): w for m, w in zip(info.members, info.weights, strict=True)}
    kept = [weight_of[Path(str(s.init_from)).resolve()] for s in starts]
    return kept if sum(kept) > 0 else None


def _input_size(member: Path) -> tuple[int, int]:
    from lesion_desktop.manifest import validate_member

    h, w = validate_member(member).preprocess.input_size
    return h, w


def _start_summary(start: MemberStart) -> dict[str, Any]:
    """The ensemble manifest's account of where a member started (its own manifest says it in full)."""
    if start.init_from:
        from training.provenance import start_record

        r = start_record(start.init_from, False)
        return {"init": "active", "from": start.init_from, "ensemble": r["ensemble"], "member": r["member"],
                "weights_sha256": r["weights_sha256"]}
    return {"init": start.init, **({"fallback_from_active": start.fallback} if start.fallback else {})}


def member_config(cfg: RetrainConfig, architecture: str, start: MemberStart, data: RetrainData,
                  work: Path) -> TrainConfig:
    """One member's training: from the active member at a tenth of the rates and without a new-head phase,
    else as a fresh network (ImageNet or random weights) on the study's schedule."""
    tc = TrainConfig(
        architecture=architecture, data=str(data.data_dir), out_dir=str(work / architecture),
        input_size=cfg.input_size, epochs_head=cfg.epochs_head, epochs_top=cfg.epochs_top,
        epochs_all=cfg.epochs_all, batch_size=cfg.batch_size,
        imagenet="none" if start.init == "random" else cfg.imagenet, device=cfg.device, seed=cfg.seed,
        split_file=str(data.split_file), cache_dir=str(work / "cache"), max_batches=cfg.max_batches,
        half_weights=cfg.half_weights, command=cfg.command,
    )
    if start.init_from is None:
        return tc
    return replace(tc, init_from=start.init_from, input_size=None, epochs_head=0,
                   lr_top=tc.lr_top * FINE_TUNE_LR_SCALE, lr_all=tc.lr_all * FINE_TUNE_LR_SCALE)


def _export_graphs(ensemble_dir: Path, progress: Progress | None, isolated: bool = False) -> None:
    """Export the candidate's members to ONNX now, so the app never exports at start; a failure is not fatal:
    a member without a graph runs on PyTorch (slower on a CPU), and the log says why. `isolated`: in a child
    process (the window's retrain: the exporter would hold the GIL for up to half a second at a time)."""
    from lesion_desktop.inference.export import export_member, export_members_isolated
    from lesion_desktop.manifest import validate_ensemble

    members = validate_ensemble(ensemble_dir).members
    check_cancel(progress)
    if progress is not None:
        progress.report(0.94, f"Preparing {', '.join(m.architecture for m in members)} for fast CPU inference "
                              "(ONNX export)")
    failures: dict[str, str] = {}
    if isolated:
        failures = export_members_isolated([m.path for m in members],
                                           progress.cancelled if progress is not None else None)
    else:
        for member in members:
            check_cancel(progress)
            try:
                export_member(member.path)
            except Exception:  # an architecture the exporter cannot handle must not lose the trained candidate
                import traceback

                failures[str(member.path)] = traceback.format_exc()
    for path, why in failures.items():
        log.warning("ONNX export of %s failed; it will run on PyTorch\n%s", path, why)


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
            progress.report(0.0, "Fitting the scope gate (which images the new models can judge)")
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
        return Comparison(n_val, 0, problem=Phrase(ACTIVE_NOT_SCORED, error=e))
    if built.val_split.image_ids != sp.image_ids:  # pairing needs the same images in the same order
        return Comparison(n_val, 0, problem=Phrase(DIFFERENT_IMAGES))
    active_seen = trained_image_ids(active_dir)
    # The candidate was fitted on its split's training part (and on whatever its manifests record besides:
    # the active models' training images, when it started from them).
    candidate_seen = (trained_image_ids(built.path) or set()) | set(load_split(split_file)["train"])
    trained_on = None if active_seen is None else active_seen | candidate_seen
    return compare_on_unseen(active_probs, built.val_probs, sp.labels, sp.groups, sp.image_ids, trained_on)


def _reference_comparison(built: BuiltEnsemble, active_dir: Path, data: RetrainData, cache_dir: Path, work: Path,
                          progress: Progress | None) -> Comparison:
    """Both ensembles on original images (mix_data) that neither was trained on, lesion by lesion, and that are
    not the clinic's: did the new models forget what the active ones knew?"""
    assert data.mix is not None
    active_seen = trained_image_ids(active_dir)
    candidate_seen = trained_image_ids(built.path)
    if active_seen is None or candidate_seen is None:
        return Comparison(len(data.mix.records), 0, problem=Phrase(ORIGINAL_NOT_RECORDED))
    ids, left_out = reference_images(data.mix, active_seen | candidate_seen | set(data.mixed_ids), data.clinic,
                                     MAX_REFERENCE_IMAGES, seed=0)
    n_total = len(ids) + left_out
    if not ids:
        return Comparison(n_total, left_out, problem=Phrase(NO_ORIGINAL_IMAGE))
    split_file = work / "reference-split.json"
    save_split(split_file, {"train": [], "val": ids, "test": []}, seed=0, data_fingerprint="")
    try:
        active_probs, sp = ensemble_probs(active_dir, data=str(data.mix.root), split_file=str(split_file),
                                          which="val", cache_dir=cache_dir, progress=ScaledProgress(progress, 0, 0.5))
        new_probs, sp_new = ensemble_probs(built.path, data=str(data.mix.root), split_file=str(split_file),
                                           which="val", cache_dir=cache_dir, progress=ScaledProgress(progress, 0.5, 1))
    except CancelledError:
        raise
    except LesionError as e:
        return Comparison(n_total, left_out, problem=Phrase(ORIGINAL_NOT_SCORED, error=e))
    if sp.image_ids != sp_new.image_ids:
        return Comparison(n_total, left_out, problem=Phrase(DIFFERENT_IMAGES))
    c = compare_on_unseen(active_probs, new_probs, sp.labels, sp.groups, sp.image_ids, set())
    c.n_validation, c.n_excluded = n_total, left_out
    return c


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
