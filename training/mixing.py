"""A retrain's data: the clinic's images split by lesion, with original training images mixed in if asked.

Fine-tuned on a clinic's few hundred images alone, a network drifts from what it knew. Mixing in images of
the original training data (e.g. HAM10000) holds it there. They are drawn only from the images the active
models were trained on (their manifests record which), so that the original data's other images stay unseen
by both the active and the new models and can judge them both (`reference_images`): did the new models
forget? The clinic's validation and test lesions never reach training, whichever folder they come from.

The trainer reads one folder; this module writes one (`data/`, a metadata CSV whose `path` column names
every image where it lies) and the split file that goes with it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.errors import DatasetError
from training.data import Dataset, Record, fingerprint, read_dataset
from training.splits import lesion_grouped_split, save_split

MIX_CSV = "retrain_metadata.csv"  # read_dataset finds the CSV whose name contains "metadata"


@dataclass
class RetrainData:
    data_dir: Path  # the folder the members are trained and scored on
    split_file: Path  # its split: the clinic's lesions dealt to train / val / test, the mixed images in train
    clinic: Dataset
    mix: Dataset | None
    mixed_ids: list[str] = field(default_factory=list)  # original images added to the training part
    notes: list[str] = field(default_factory=list)


def draw_mix(mix: Dataset, n: int, allowed: set[str] | None, avoid: Dataset, seed: int = 0) -> list[str]:
    """`n` image ids of `mix` (fewer if there are not so many), drawn at random from `allowed` (the active
    models' training images; None: not recorded, any image), never an image or lesion of the clinic's data."""
    ids = {r.image_id for r in avoid.records}
    lesions = {r.lesion_id for r in avoid.records}
    pool = [r.image_id for r in mix.records
            if (allowed is None or r.image_id in allowed) and r.image_id not in ids and r.lesion_id not in lesions]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(pool), size=min(max(n, 0), len(pool)), replace=False)
    return sorted(pool[int(i)] for i in picks)


def reference_images(mix: Dataset, seen: set[str], clinic: Dataset, limit: int,
                     seed: int = 0) -> tuple[list[str], int]:
    """Images of the original data neither model has seen, and how many were left out.

    Left out: every lesion with an image in `seen` (what the active and the new models were trained on: another
    photo of a lesion a model learnt is not new to it), and the clinic's own images and lesions (they are judged
    apart). Above `limit` images, whole lesions are drawn at random (seeded) to keep scoring short.
    """
    seen_lesions = {r.lesion_id for r in mix.records if r.image_id in seen}
    clinic_ids = {r.image_id for r in clinic.records}
    clinic_lesions = {r.lesion_id for r in clinic.records}
    keep = [r for r in mix.records if r.image_id not in seen and r.lesion_id not in seen_lesions
            and r.image_id not in clinic_ids and r.lesion_id not in clinic_lesions]
    left_out = len(mix.records) - len(keep)
    if len(keep) > limit:
        by_lesion: dict[str, list[Record]] = {}
        for r in keep:
            by_lesion.setdefault(r.lesion_id, []).append(r)
        order = sorted(by_lesion)
        np.random.default_rng(seed).shuffle(order)
        chosen: list[Record] = []
        for lesion in order:
            if len(chosen) + len(by_lesion[lesion]) > limit:
                continue
            chosen += by_lesion[lesion]
        left_out += len(keep) - len(chosen)
        keep = chosen
    return sorted(r.image_id for r in keep), left_out


def _write_csv(path: Path, records: list[Record]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["lesion_id", "image_id", "dx", "path"])
        for r in records:
            w.writerow([r.lesion_id, r.image_id, CLASS_CODES[r.label], str(Path(r.path).resolve())])


def prepare_retrain_data(data: str, work: Path, *, seed: int = 0, mix_data: str | None = None,
                         mix_ratio: float = 0.0, allowed: set[str] | None = None) -> RetrainData:
    """Split the clinic's data by lesion, draw `mix_ratio` original images per clinic training image from
    `allowed`, and write the folder and split the members train on (under `work`)."""
    clinic = read_dataset(data)
    ids = [r.image_id for r in clinic.records]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{data}: some images share a name (image id); rename them so each is one image.")
    split = lesion_grouped_split(clinic.records, seed=seed)
    notes: list[str] = []
    mix = read_dataset(mix_data, min_per_class=0) if mix_data else None
    mixed: list[str] = []
    records = list(clinic.records)
    if mix is not None and mix_ratio > 0:
        wanted = int(round(mix_ratio * len(split["train"])))
        mixed = draw_mix(mix, wanted, allowed, clinic, seed)
        if len(mixed) < wanted:
            notes.append(f"Only {len(mixed)} original training images could be mixed in ({wanted} were asked for).")
        chosen = set(mixed)
        records += [r for r in mix.records if r.image_id in chosen]
        split["train"] = split["train"] + mixed
    folder = Path(work) / "data"
    folder.mkdir(parents=True, exist_ok=True)
    _write_csv(folder / MIX_CSV, records)
    split_file = Path(work) / "split.json"
    save_split(split_file, split, seed=seed, data_fingerprint=fingerprint(records))
    return RetrainData(folder, split_file, clinic, mix, mixed, notes)
