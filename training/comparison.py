"""The candidate next to the active models, and the install rule the dialog and the CLI share.

Both ensembles are scored on the same images, which neither was trained on (manifests record which images a
model's weights were fitted on): the clinic's validation images, and with the original training data at hand,
its images unseen by both (the `reference`: did the new models forget what they knew?). Each change comes with
a paired 95% interval over resampled lesions. A class with fewer than MIN_VALIDATION_LESIONS compared lesions
gets no recall figure but a sentence that says so: a recall over two lesions is 0, 0.5 or 1 by chance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lesion_desktop.classes import CLASS_CODES, MEL_INDEX
from training.metrics import evaluate, paired_intervals

# Below these, the compared images cannot judge the candidate, whatever the intervals say.
MIN_COMPARED_IMAGES = 100
MIN_COMPARED_MELANOMAS = 10
# A class with fewer compared lesions than this gets no recall figure, only a sentence (notes); for melanoma
# the comparison cannot judge the candidate at all. Five: one lesion more or less moves a recall by 0.2.
MIN_VALIDATION_LESIONS = 5


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
    # classes with fewer than MIN_VALIDATION_LESIONS compared lesions (their count): no recall figure for them
    few_lesions: dict[str, int] = field(default_factory=dict)


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
    c.few_lesions = {code: n for code, n in lesions_per_class(y, g).items() if n < MIN_VALIDATION_LESIONS}
    seen = (f" ({c.n_excluded} of the {n_val} validation images were left out because the active or the new "
            "models were trained on them)" if c.n_excluded else "")
    if c.n_images < MIN_COMPARED_IMAGES or c.n_melanomas < MIN_COMPARED_MELANOMAS:
        c.problem = (f"Only {c.n_images} validation images ({c.n_melanomas} melanomas) are new to both the active "
                     f"and the new models{seen}; at least {MIN_COMPARED_IMAGES} images with "
                     f"{MIN_COMPARED_MELANOMAS} melanomas are needed to judge the new models.")
    elif "mel" in c.few_lesions:
        c.problem = (f"The {c.n_melanomas} melanoma images new to both models are of only {c.few_lesions['mel']} "
                     f"lesions{seen}; at least {MIN_VALIDATION_LESIONS} melanoma lesions are needed to judge the "
                     "new models.")
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
    """One plain sentence per class with too few lesions to judge."""
    notes = []
    for code, n in few.items():
        if n == 0:
            notes.append(f"{code}: no {where} lesions, so its recall is not measured.")
        else:
            notes.append(f"{code}: only {n} {where} lesion{'s' if n != 1 else ''}, too few to judge its recall "
                         f"(at least {MIN_VALIDATION_LESIONS} are needed).")
    return notes


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
        if key == "melanoma_recall" and "mel" in c.few_lesions:
            continue  # too few melanoma lesions for a figure (the comparison says so)
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
    """What the original data's unseen images say; True when the new models are shown worse there."""
    figures = compared_figures(r)
    if r.problem or not figures:
        return f"Images of the original training data: {r.problem or 'none could be compared.'}", False
    ba, mel = _changes(r)
    worse = bool(ba and ba[1] < 0) or bool(mel and mel[1] < 0)
    verb = "the new models are WORSE than the active ones" if worse else "new vs active"
    return (f"On {r.n_images} images of the original training data ({r.n_lesions} lesions) that neither trained on, "
            f"{verb}: {figures}.", worse)


def _changes(c: Comparison) -> tuple[Any, Any]:
    """The paired intervals of the change in balanced accuracy and (when judged) melanoma recall."""
    d = c.difference or {}
    return d.get("balanced_accuracy"), None if "mel" in c.few_lesions else d.get("melanoma_recall")


def _clinic_verdict(c: Comparison | None) -> InstallVerdict:
    override = " Installing them needs an explicit override."
    if c is None:
        text = "There are no active models to compare the new models with, so they are not shown to be at least " \
               "as good." + override
        return InstallVerdict(True, False, text, "", text)
    figures = compared_figures(c)
    on = f"on {c.n_images} validation images ({c.n_lesions} lesions) that neither trained on"
    ba, mel = _changes(c)
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
