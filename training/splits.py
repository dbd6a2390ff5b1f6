"""Lesion-grouped, class-stratified train / validation / test splits.

HAM10000 holds 2,545 repeat photos of lesions already in the set; an image of a lesion in training
and another in validation would inflate every metric, so whole lesions are assigned to one split.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.errors import DatasetError
from training.data import Record

SPLITS = ("train", "val", "test")


def lesion_grouped_split(
    records: list[Record], seed: int = 0, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
) -> dict[str, list[str]]:
    """Return image_ids per split; each class's lesions are shuffled and dealt by image count."""
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise DatasetError(f"split fractions {fractions} must be non-negative and sum to 1")
    lesions: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        lesions[r.lesion_id].append(r)
    by_class: dict[int, list[str]] = defaultdict(list)
    for lid, rs in lesions.items():
        # A lesion with mixed labels (not in HAM10000) is stratified by its most common one.
        labels = [r.label for r in rs]
        by_class[max(set(labels), key=labels.count)].append(lid)
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for cls in sorted(by_class):
        lids = sorted(by_class[cls])
        rng.shuffle(lids)
        total = sum(len(lesions[lid]) for lid in lids)
        targets = [f * total for f in fractions]
        got = [0.0, 0.0, 0.0]
        for lid in lids:
            n = len(lesions[lid])
            # Deal to the split furthest below its target, so every split gets each class early.
            deficits = [(targets[i] - got[i]) / max(targets[i], 1e-9) if targets[i] > 0 else -1e9 for i in range(3)]
            i = int(np.argmax(deficits))
            got[i] += n
            out[SPLITS[i]].extend(r.image_id for r in lesions[lid])
    return out


def check_no_leak(records: list[Record], split: dict[str, list[str]]) -> None:
    lesion_of = {r.image_id: r.lesion_id for r in records}
    seen: dict[str, str] = {}
    for name, ids in split.items():
        for iid in ids:
            lid = lesion_of[iid]
            if seen.setdefault(lid, name) != name:
                raise DatasetError(f"lesion {lid} appears in both {seen[lid]} and {name}")


def split_counts(records: list[Record], split: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    label_of = {r.image_id: r.label for r in records}
    res = {}
    for name, ids in split.items():
        c = np.bincount([label_of[i] for i in ids], minlength=len(CLASS_CODES))
        res[name] = {code: int(c[k]) for k, code in enumerate(CLASS_CODES)}
    return res


def save_split(path: Path, split: dict[str, list[str]], *, seed: int, data_fingerprint: str) -> None:
    data: dict[str, Any] = {"seed": seed, "data_fingerprint": data_fingerprint, **split}
    Path(path).write_text(json.dumps(data, indent=1))


def load_split(path: Path) -> dict[str, list[str]]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"Cannot read split file {path}: {e}") from None
    if not all(isinstance(data.get(s), list) for s in SPLITS):
        raise DatasetError(f"{path} is not a split file (needs train, val and test lists).")
    return {s: [str(x) for x in data[s]] for s in SPLITS}


def indices_for(records: list[Record], ids: list[str]) -> np.ndarray:
    pos = {r.image_id: i for i, r in enumerate(records)}
    return np.array([pos[i] for i in ids if i in pos], dtype=np.int64)
