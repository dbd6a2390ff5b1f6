"""The shipped ensemble's figures by age band, sex, body site and how the diagnosis was confirmed.

A model card needs to say where the models do worse, not only how they do on average. This scores an
ensemble on one split of a HAM10000-layout folder exactly as `python -m training evaluate` does, checks
that the overall figures reproduce the ones its manifest records for that split (so the split is the one
the models were evaluated on), and groups the images by the metadata CSV's `age`, `sex`, `localization`
and `dx_type` columns. Intervals resample whole lesions and are given only where a group is large enough.

    python -m training.subgroups resources/models/default /work/shared/data/ham10000 \
        --split-file runs/default/split.json --which test --cache-dir runs/default/cache \
        --json docs/model-card-subgroups-test.json --markdown docs/model-card-subgroups-test.md
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lesion_desktop.classes import CLASS_CODES, MALIGNANT_INDICES, MEL_INDEX
from lesion_desktop.errors import LesionError
from training.metrics import bootstrap_intervals, evaluate

WARNING_THRESHOLD = 0.30  # the app's default malignancy-warning threshold
MIN_LESIONS_FOR_INTERVAL = 30
MIN_MELANOMAS_FOR_INTERVAL = 10  # melanoma lesions
AGE_BANDS = ((0, 30, "under 30"), (30, 45, "30-44"), (45, 60, "45-59"), (60, 75, "60-74"), (75, 200, "75 and over"))


def age_band(text: str) -> str:
    try:
        age = float(text)
    except ValueError:
        return "unknown"
    return next((label for lo, hi, label in AGE_BANDS if lo <= age < hi), "unknown")


GROUPINGS: dict[str, Callable[[dict[str, str]], str]] = {
    "age band": lambda row: age_band(row.get("age", "")),
    "sex": lambda row: (row.get("sex") or "unknown").strip() or "unknown",
    "body site": lambda row: (row.get("localization") or "unknown").strip() or "unknown",
    "diagnosis confirmed by": lambda row: {"histo": "histopathology", "follow_up": "follow-up",
                                           "consensus": "expert consensus", "confocal": "confocal microscopy"
                                           }.get(row.get("dx_type", ""), row.get("dx_type") or "unknown"),
}


def read_metadata(data: Path) -> dict[str, dict[str, str]]:
    """HAM10000_metadata.csv's rows by image id."""
    found = sorted(Path(data).glob("*metadata*.csv"))
    if not found:
        raise LesionError(f"{data} has no metadata CSV with age, sex and localization columns.")
    with open(found[0], newline="", encoding="utf-8-sig") as f:
        return {row["image_id"]: row for row in csv.DictReader(f)}


def group_figures(probs: np.ndarray, labels: np.ndarray, lesions: list[str], threshold: float = WARNING_THRESHOLD
                  ) -> dict[str, Any]:
    """One group's figures; intervals (lesions resampled) only where there are enough lesions or melanomas."""
    with warnings.catch_warnings():  # a group with one class has no AUC; macro AUC is not reported here
        warnings.simplefilter("ignore", RuntimeWarning)
        m = evaluate(probs, labels)
    n_lesions = len(set(lesions))
    n_mel = int((labels == MEL_INDEX).sum())
    mel_lesions = len({g for g, y in zip(lesions, labels.tolist(), strict=True) if y == MEL_INDEX})
    malignant = np.isin(labels, MALIGNANT_INDICES)
    warned = probs[:, list(MALIGNANT_INDICES)].sum(axis=1) >= threshold - 1e-9
    out: dict[str, Any] = {
        "n": int(len(labels)), "lesions": n_lesions, "melanomas": n_mel, "melanoma_lesions": mel_lesions,
        "malignant": int(malignant.sum()),
        "classes_present": int(len(set(labels.tolist()))),
        "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
        "melanoma_recall": m["melanoma_recall"] if n_mel else None,
        "warning_malignant": float(warned[malignant].mean()) if malignant.any() else None,
        "warning_benign": float(warned[~malignant].mean()) if (~malignant).any() else None,
        "intervals": {},
    }
    if n_lesions >= MIN_LESIONS_FOR_INTERVAL:
        ci = bootstrap_intervals(probs, labels, lesions)
        out["intervals"] = {"accuracy": ci["accuracy"], "balanced_accuracy": ci["balanced_accuracy"]}
        if mel_lesions >= MIN_MELANOMAS_FOR_INTERVAL:
            out["intervals"]["melanoma_recall"] = ci["melanoma_recall"]
    return out


def subgroup_figures(probs: np.ndarray, labels: np.ndarray, lesions: list[str], image_ids: list[str],
                     metadata: dict[str, dict[str, str]], train_ids: list[str] | None = None) -> dict[str, Any]:
    """Every grouping's rows, largest group first, with how many training images each group had."""
    result: dict[str, Any] = {}
    for grouping, key in GROUPINGS.items():
        names = [key(metadata.get(i, {})) for i in image_ids]
        train_counts = Counter(key(metadata.get(i, {})) for i in train_ids or [])
        rows = []
        for name, _ in Counter(names).most_common():
            mask = np.array([n == name for n in names])
            row = group_figures(probs[mask], labels[mask], [g for g, k in zip(lesions, mask, strict=True) if k])
            rows.append({"group": name, "train_images": train_counts.get(name, 0), **row})
        result[grouping] = rows
    return result


def missed_melanomas(probs: np.ndarray, labels: np.ndarray, image_ids: list[str],
                     metadata: dict[str, dict[str, str]], threshold: float = WARNING_THRESHOLD) -> dict[str, Any]:
    """The melanomas the warning did not fire for: how many, what they were called, where they were."""
    malignant = probs[:, list(MALIGNANT_INDICES)].sum(axis=1)
    missed = np.flatnonzero((labels == MEL_INDEX) & (malignant < threshold - 1e-9))
    return {
        "melanomas": int((labels == MEL_INDEX).sum()), "missed": int(len(missed)),
        "top_label": dict(Counter(CLASS_CODES[int(probs[i].argmax())] for i in missed).most_common()),
        "body_site": dict(Counter(GROUPINGS["body site"](metadata.get(image_ids[i], {})) for i in missed)
                          .most_common()),
        "age_band": dict(Counter(GROUPINGS["age band"](metadata.get(image_ids[i], {})) for i in missed)
                         .most_common()),
        "combined_malignant_probability": sorted(round(float(malignant[i]), 3) for i in missed),
    }


def _fig(value: float | None, interval: list[float] | None = None) -> str:
    if value is None or value != value:
        return "–"
    return f"{value:.2f}" + (f" ({interval[0]:.2f}–{interval[1]:.2f})" if interval else "")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def markdown(result: dict[str, Any], title: str) -> str:
    lines = [f"### {title}", ""]
    for grouping, rows in result["groups"].items():
        lines += [f"**By {grouping}**", "",
                  "| group | images (lesions) | training images | melanomas (lesions) | accuracy | balanced accuracy "
                  "| melanoma recall | warning: malignant / benign |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            ci = r["intervals"]
            ba = _fig(r["balanced_accuracy"], ci.get("balanced_accuracy"))
            if r["classes_present"] < len(CLASS_CODES):
                ba += f" [{r['classes_present']} class{'es' if r['classes_present'] > 1 else ''}]"
            lines.append(
                f"| {r['group']} | {r['n']} ({r['lesions']}) | {r['train_images']} "
                f"| {r['melanomas']} ({r['melanoma_lesions']}) "
                f"| {_fig(r['accuracy'], ci.get('accuracy'))} | {ba} "
                f"| {_fig(r['melanoma_recall'], ci.get('melanoma_recall'))} "
                f"| {_pct(r['warning_malignant'])} / {_pct(r['warning_benign'])} |")
        lines.append("")
    miss = result.get("missed_melanomas")
    if miss:
        def listing(counts: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in counts.items())

        lines += [f"**Melanomas the warning missed**: {miss['missed']} of {miss['melanomas']}; top label: "
                  f"{listing(miss['top_label'])}; body site: {listing(miss['body_site'])}; age band: "
                  f"{listing(miss['age_band'])}.", ""]
    return "\n".join(lines)


def run(models: Path, data: Path, split_file: Path, which: str, cache_dir: Path) -> dict[str, Any]:
    from training.ensemble import ensemble_probs
    from training.progress import TerminalProgress
    from training.splits import load_split

    prog = TerminalProgress(f"score {which}")
    try:
        probs, sp = ensemble_probs(models, data=str(data), split_file=str(split_file), which=which,
                                   cache_dir=cache_dir, progress=prog)
    finally:
        prog.close()
    overall = evaluate(probs, sp.labels, sp.groups)
    manifest = json.loads((Path(models) / "manifest.json").read_text(encoding="utf-8"))
    recorded = (manifest.get("metrics") or {}).get(which) or {}
    same = all(abs(float(recorded.get(k, -1)) - overall[k]) < 1e-6 for k in ("balanced_accuracy", "accuracy"))
    train_ids = load_split(split_file)["train"]
    metadata = read_metadata(data)
    return {
        "models": manifest.get("name"), "split": which, "split_file": str(split_file),
        "threshold": WARNING_THRESHOLD,
        "overall": {k: overall[k] for k in ("n", "balanced_accuracy", "melanoma_recall", "accuracy")},
        "reproduces_manifest": same,
        "groups": subgroup_figures(probs, sp.labels, sp.groups, sp.image_ids, metadata, train_ids),
        "missed_melanomas": missed_melanomas(probs, sp.labels, sp.image_ids, metadata),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.subgroups", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", type=Path, help="ensemble or bundle folder")
    p.add_argument("data", type=Path, help="HAM10000-layout folder (metadata CSV with age, sex, localization)")
    p.add_argument("--split-file", dest="split_file", type=Path, required=True,
                   help="the split the models were evaluated on")
    p.add_argument("--which", default="test", choices=("val", "test"), help="split to score (default test)")
    p.add_argument("--cache-dir", dest="cache_dir", type=Path, default=Path("runs/cache"),
                   help="decoded-image cache (default runs/cache)")
    p.add_argument("--json", type=Path, help="write the figures as JSON here")
    p.add_argument("--markdown", type=Path, help="write the tables as Markdown here")
    a = p.parse_args(argv)
    try:
        result = run(a.models, a.data, a.split_file, a.which, a.cache_dir)
    except LesionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    o = result["overall"]
    print(f"{result['models']} on {a.which} (n = {o['n']}): balanced accuracy {o['balanced_accuracy']:.4f}, "
          f"accuracy {o['accuracy']:.4f}; reproduces the manifest's figures: {result['reproduces_manifest']}")
    text = markdown(result, f"{result['models']}, {a.which} split, warning threshold {WARNING_THRESHOLD:.0%}")
    if a.json:
        a.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    if a.markdown:
        a.markdown.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0 if result["reproduces_manifest"] else 1


if __name__ == "__main__":
    sys.exit(main())
