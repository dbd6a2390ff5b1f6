"""The candidate next to the active models, and the install rule the dialog and the CLI share.

Both ensembles are scored on the same images, which neither was trained on (manifests record which images a
model's weights were fitted on): the clinic's validation images, and with the original training data at hand,
its images unseen by both (the `reference`: did the new models forget what they knew?). Each change comes with
a paired 95% interval over resampled lesions. A class with fewer than MIN_VALIDATION_LESIONS compared lesions
gets no recall figure but a sentence that says so: a recall over two lesions is 0, 0.5 or 1 by chance.

The verdict's sentences (and the comparison's problems, the small-class notes, the figures) are Wordings
(lesion_desktop.wording): English strings for the command line and the store's manifest, whose templates are
marked for translation under the context "RetrainVerdict", so the retrain dialog shows them in the clinic's language.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lesion_desktop.classes import CLASS_CODES, MEL_INDEX
from lesion_desktop.wording import QT_TRANSLATE_NOOP, Joined, Phrase
from training.metrics import evaluate, paired_intervals

# Below these, the compared images cannot judge the candidate, whatever the intervals say.
MIN_COMPARED_IMAGES = 100
MIN_COMPARED_MELANOMAS = 10
# A class with fewer compared lesions than this gets no recall figure, only a sentence (notes); for melanoma
# the comparison cannot judge the candidate at all. Five: one lesion more or less moves a recall by 0.2.
MIN_VALIDATION_LESIONS = 5

# The sentences of the verdict, marked for the translator (pyside6-lupdate reads them here; docs/translations.md)
NOT_RECORDED = QT_TRANSLATE_NOOP(
    "RetrainVerdict", "The active models' manifests do not record which images they were trained on, so no validation "
                      "image can be shown to be new to them: the comparison would not be fair.")
_TOO_FEW = QT_TRANSLATE_NOOP(
    "RetrainVerdict", "Only {images} validation images ({melanomas} melanomas) are new to both the active and the new "
                      "models; at least {min_images} images with {min_melanomas} melanomas are needed to judge the "
                      "new models.")
_TOO_FEW_LEFT_OUT = QT_TRANSLATE_NOOP(
    "RetrainVerdict", "Only {images} validation images ({melanomas} melanomas) are new to both the active and the new "
                      "models ({excluded} of the {total} validation images were left out because the active or the "
                      "new models were trained on them); at least {min_images} images with {min_melanomas} melanomas "
                      "are needed to judge the new models.")
_FEW_MEL_LESIONS = QT_TRANSLATE_NOOP(
    "RetrainVerdict", "The {melanomas} melanoma images new to both models are of only {lesions} lesions; at least "
                      "{min_lesions} melanoma lesions are needed to judge the new models.")
_FEW_MEL_LESIONS_LEFT_OUT = QT_TRANSLATE_NOOP(
    "RetrainVerdict", "The {melanomas} melanoma images new to both models are of only {lesions} lesions ({excluded} "
                      "of the {total} validation images were left out because the active or the new models were "
                      "trained on them); at least {min_lesions} melanoma lesions are needed to judge the new models.")
# the pipeline's (training.pipeline) reasons why a comparison could not be made
ACTIVE_NOT_SCORED = QT_TRANSLATE_NOOP("RetrainVerdict", "The active models could not be scored on this data: {error}")
DIFFERENT_IMAGES = QT_TRANSLATE_NOOP("RetrainVerdict", "The active and the new models were scored on different images.")
ORIGINAL_NOT_RECORDED = QT_TRANSLATE_NOOP(
    "RetrainVerdict", "The models' manifests do not record which original images they were trained on, so none can be "
                      "shown to be new to them: the comparison would not be fair.")
NO_ORIGINAL_IMAGE = QT_TRANSLATE_NOOP(
    "RetrainVerdict", "None of the original images is new to both the active and the new models.")
ORIGINAL_NOT_SCORED = QT_TRANSLATE_NOOP("RetrainVerdict", "The original images could not be scored: {error}")
# small_class_notes, per `where`: (no lesions, one lesion, some lesions)
_NOTES = {
    "validation": (
        QT_TRANSLATE_NOOP("RetrainVerdict", "{code}: no validation lesions, so its recall is not measured."),
        QT_TRANSLATE_NOOP(
            "RetrainVerdict", "{code}: only {n} validation lesion, too few to judge its recall (at least {min} are "
                              "needed)."),
        QT_TRANSLATE_NOOP(
            "RetrainVerdict", "{code}: only {n} validation lesions, too few to judge its recall (at least {min} are "
                              "needed).")),
    "original validation": (
        QT_TRANSLATE_NOOP("RetrainVerdict", "{code}: no original validation lesions, so its recall is not measured."),
        QT_TRANSLATE_NOOP(
            "RetrainVerdict", "{code}: only {n} original validation lesion, too few to judge its recall (at least "
                              "{min} are needed)."),
        QT_TRANSLATE_NOOP(
            "RetrainVerdict", "{code}: only {n} original validation lesions, too few to judge its recall (at least "
                              "{min} are needed).")),
}
# compared_figures
_LABELS = {"balanced_accuracy": QT_TRANSLATE_NOOP("RetrainVerdict", "balanced accuracy"),
           "melanoma_recall": QT_TRANSLATE_NOOP("RetrainVerdict", "melanoma recall")}
_FIGURE = QT_TRANSLATE_NOOP("RetrainVerdict", "{label} {new} vs {old} ({change})")
_FIGURE_INTERVAL = QT_TRANSLATE_NOOP(
    "RetrainVerdict", "{label} {new} vs {old} ({change}, 95% interval {low} to {high})")
# the verdict
_OVERRIDE = QT_TRANSLATE_NOOP("RetrainVerdict", "Installing them needs an explicit override.")
_NO_ACTIVE = QT_TRANSLATE_NOOP(
    "RetrainVerdict", "There are no active models to compare the new models with, so they are not shown to be at "
                      "least as good.")
_ON = QT_TRANSLATE_NOOP("RetrainVerdict", "on {images} validation images ({lesions} lesions) that neither trained on")
_CANNOT_JUDGE = QT_TRANSLATE_NOOP("RetrainVerdict", "The new models cannot be judged.")
_MEASURED_FIGURES = QT_TRANSLATE_NOOP("RetrainVerdict", "Measured {on}: {figures}.")
_MEASURED = QT_TRANSLATE_NOOP("RetrainVerdict", "Measured {on}.")
_NOT_AS_GOOD = QT_TRANSLATE_NOOP("RetrainVerdict", "They are not shown to be at least as good as the active models.")
_WORSE = QT_TRANSLATE_NOOP("RetrainVerdict", "The new models are WORSE than the active ones {on}: {figures}.")
_NOT_RECOMMENDED = QT_TRANSLATE_NOOP(
    "RetrainVerdict", "Installing them is not recommended, and needs an explicit override.")
_BETTER = QT_TRANSLATE_NOOP("RetrainVerdict", "The new models are better than the active ones {on}: {figures}.")
_CANNOT_TELL = QT_TRANSLATE_NOOP(
    "RetrainVerdict", "The validation images cannot tell the new models from the active ones ({on}): {figures}.")
_NOT_BETTER = QT_TRANSLATE_NOOP("RetrainVerdict", "They are not shown to be better.")
_ORIGINAL_PROBLEM = QT_TRANSLATE_NOOP("RetrainVerdict", "Images of the original training data: {problem}")
_NONE_COMPARED = QT_TRANSLATE_NOOP("RetrainVerdict", "none could be compared.")
_ORIGINAL_WORSE = QT_TRANSLATE_NOOP(
    "RetrainVerdict", "On {images} images of the original training data ({lesions} lesions) that neither trained on, "
                      "the new models are WORSE than the active ones: {figures}.")
_ORIGINAL_FIGURES = QT_TRANSLATE_NOOP(
    "RetrainVerdict", "On {images} images of the original training data ({lesions} lesions) that neither trained on, "
                      "new vs active: {figures}.")


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
    problem: str = ""  # why the comparison cannot judge the candidate ("" when it can): a Wording
    # classes with fewer than MIN_VALIDATION_LESIONS compared lesions (their count): no recall figure for them
    few_lesions: dict[str, int] = field(default_factory=dict)


def compare_on_unseen(active_probs: np.ndarray, candidate_probs: np.ndarray, labels: np.ndarray, groups: list[str],
                      image_ids: list[str], trained_on: set[str] | None) -> Comparison:
    """Score both ensembles on the validation images outside `trained_on` (None: unknown, so none is safe)."""
    n_val = len(image_ids)
    if trained_on is None:
        return Comparison(n_val, 0, problem=Phrase(NOT_RECORDED))
    keep = np.array([i not in trained_on for i in image_ids], dtype=bool)
    y = np.asarray(labels)[keep]
    g = [lesion for lesion, k in zip(groups, keep, strict=True) if k]
    c = Comparison(n_val, int((~keep).sum()), int(keep.sum()), len(set(g)), int((y == MEL_INDEX).sum()))
    c.few_lesions = {code: n for code, n in lesions_per_class(y, g).items() if n < MIN_VALIDATION_LESIONS}
    seen = {"excluded": c.n_excluded, "total": n_val} if c.n_excluded else {}
    if c.n_images < MIN_COMPARED_IMAGES or c.n_melanomas < MIN_COMPARED_MELANOMAS:
        c.problem = Phrase(_TOO_FEW_LEFT_OUT if seen else _TOO_FEW, images=c.n_images, melanomas=c.n_melanomas,
                           min_images=MIN_COMPARED_IMAGES, min_melanomas=MIN_COMPARED_MELANOMAS, **seen)
    elif "mel" in c.few_lesions:
        c.problem = Phrase(_FEW_MEL_LESIONS_LEFT_OUT if seen else _FEW_MEL_LESIONS, melanomas=c.n_melanomas,
                           lesions=c.few_lesions["mel"], min_lesions=MIN_VALIDATION_LESIONS, **seen)
    if c.n_images:
        active_kept, candidate_kept = np.asarray(active_probs)[keep], np.asarray(candidate_probs)[keep]
        c.active, c.candidate = evaluate(active_kept, y, g), evaluate(candidate_kept, y, g)
        c.difference = paired_intervals(active_kept, candidate_kept, y, g)
        for m in (c.active, c.candidate):
            withhold_recalls(m, c.few_lesions)
    return c


def lesions_per_class(labels: np.ndarray, groups: list[str]) -> dict[str, int]:
    """How many distinct lesions of each class the images show."""
    lesions: dict[int, set[str]] = {k: set() for k in range(len(CLASS_CODES))}
    for label, lesion in zip(np.asarray(labels).tolist(), groups, strict=True):
        lesions[int(label)].add(lesion)
    return {code: len(lesions[k]) for k, code in enumerate(CLASS_CODES)}


def withhold_recalls(metrics: dict[str, Any], few: dict[str, int]) -> None:
    """No recall figure for the classes in `few` (per_class recall None, and why); melanoma recall too."""
    for code, n in few.items():
        row = metrics.get("per_class", {}).get(code)
        if isinstance(row, dict):
            row["recall"] = None
            row["withheld"] = f"{n} validation lesions: too few to judge"
    if "mel" in few:
        metrics["melanoma_recall"] = None


def small_class_notes(few: dict[str, int], where: str = "validation") -> list[str]:
    """One plain sentence (a Wording) per class with too few lesions to judge; `where` is "validation" or
    "original validation"."""
    none, one, some = _NOTES[where]
    notes: list[str] = []
    for code, n in few.items():
        if n == 0:
            notes.append(Phrase(none, code=code))
        else:
            notes.append(Phrase(one if n == 1 else some, code=code, n=n, min=MIN_VALIDATION_LESIONS))
    return notes


@dataclass(frozen=True)
class InstallVerdict:
    needs_override: bool  # installing needs the user's explicit override
    worse: bool  # shown worse on balanced accuracy or melanoma recall
    # Wordings: English as strings, rendered sentence by sentence in the clinic's language by the dialog (tr_core)
    summary: str  # what the user reads before deciding
    figures: str  # "balanced accuracy 0.520 vs 0.770 (-0.250, 95% interval ...), melanoma recall ..."
    detail: str  # the summary without its figures, for a box that shows them apart


def compared_figures(c: Comparison) -> str:
    """New vs active on the compared images, each change with its paired 95% interval."""
    if not c.candidate or not c.active:
        return ""
    parts: list[str] = []
    for key, label in _LABELS.items():
        if key == "melanoma_recall" and "mel" in c.few_lesions:
            continue  # too few melanoma lesions for a figure (the comparison says so)
        new, old = c.candidate.get(key), c.active.get(key)
        if not (isinstance(new, float) and isinstance(old, float) and new == new and old == old):
            continue
        iv = (c.difference or {}).get(key)
        values = {"label": Phrase(label), "new": f"{new:.3f}", "old": f"{old:.3f}", "change": f"{new - old:+.3f}"}
        parts.append(Phrase(_FIGURE_INTERVAL, low=f"{iv[0]:+.3f}", high=f"{iv[1]:+.3f}", **values) if iv else
                     Phrase(_FIGURE, **values))
    return Joined(parts, ", ")


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
                extra.append(Phrase(_OVERRIDE))
    extra += list(notes or [])
    if not extra:
        return v
    return InstallVerdict(needs_override, worse, Joined([v.summary, *extra]), v.figures, Joined([v.detail, *extra]))


def reference_sentence(r: Comparison) -> tuple[str, bool]:
    """What the original data's unseen images say (a Wording); True when the new models are shown worse there."""
    figures = compared_figures(r)
    if r.problem or not figures:
        return Phrase(_ORIGINAL_PROBLEM, problem=r.problem or Phrase(_NONE_COMPARED)), False
    ba, mel = _changes(r)
    worse = bool(ba and ba[1] < 0) or bool(mel and mel[1] < 0)
    return Phrase(_ORIGINAL_WORSE if worse else _ORIGINAL_FIGURES, images=r.n_images, lesions=r.n_lesions,
                  figures=figures), worse


def _changes(c: Comparison) -> tuple[Any, Any]:
    """The paired intervals of the change in balanced accuracy and (when judged) melanoma recall."""
    d = c.difference or {}
    return d.get("balanced_accuracy"), None if "mel" in c.few_lesions else d.get("melanoma_recall")


def _clinic_verdict(c: Comparison | None) -> InstallVerdict:
    override = Phrase(_OVERRIDE)
    if c is None:
        text = Joined([Phrase(_NO_ACTIVE), override])
        return InstallVerdict(True, False, text, "", text)
    figures = compared_figures(c)
    on = Phrase(_ON, images=c.n_images, lesions=c.n_lesions)
    ba, mel = _changes(c)
    worse = bool(ba and ba[1] < 0) or bool(mel and mel[1] < 0)
    if c.problem or not ba:
        tail = [Phrase(_NOT_AS_GOOD), override]
        shown = [Phrase(_MEASURED_FIGURES, on=on, figures=figures)] if figures else []
        measured = [Phrase(_MEASURED, on=on)] if figures else []
        return InstallVerdict(True, worse, Joined([Phrase(_CANNOT_JUDGE), c.problem, *shown, *tail]), figures,
                              Joined([c.problem, *measured, *tail]))
    if worse:
        advice = Phrase(_NOT_RECOMMENDED)
        return InstallVerdict(True, True, Joined([Phrase(_WORSE, on=on, figures=figures), advice]), figures,
                              Joined([Phrase(_MEASURED, on=on), advice]))
    if ba[0] > 0:
        return InstallVerdict(False, False, Phrase(_BETTER, on=on, figures=figures), figures,
                              Phrase(_MEASURED, on=on))
    not_better = [Phrase(_NOT_BETTER), override]
    return InstallVerdict(True, False, Joined([Phrase(_CANNOT_TELL, on=on, figures=figures), *not_better]), figures,
                          Joined([Phrase(_MEASURED, on=on), *not_better]))
