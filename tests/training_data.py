"""Small labelled data sets made from the real HAM10000 images, for fast training tests."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np

from lesion_desktop.classes import CLASS_CODES
from tests.helpers import HAM, require_data


def ham_rows() -> list[dict[str, str]]:
    require_data()
    with open(HAM / "HAM10000_metadata.csv", newline="") as f:
        return list(csv.DictReader(f))


def make_ham_subset(folder: Path, per_class: int = 12, seed: int = 0) -> Path:
    """A HAM10000-layout folder (metadata CSV + images/) with `per_class` images of each class."""
    rows = ham_rows()
    rng = np.random.default_rng(seed)
    chosen: list[dict[str, str]] = []
    for code in CLASS_CODES:
        of = [r for r in rows if r["dx"] == code]
        chosen += [of[i] for i in rng.choice(len(of), per_class, replace=False)]
    return write_ham_folder(folder, chosen)


def write_ham_folder(folder: Path, rows: list[dict[str, str]]) -> Path:
    """A HAM10000-layout data folder (metadata CSV + images/) holding the images of `rows`."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    with open(folder / "HAM10000_metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        shutil.copy(HAM / "images" / f"{r['image_id']}.jpg", folder / "images")
    return folder


def make_class_folders(folder: Path, per_class: int = 10, seed: int = 1) -> Path:
    """The plain one-folder-per-class layout a clinic would assemble."""
    rows = ham_rows()
    rng = np.random.default_rng(seed)
    for code in CLASS_CODES:
        of = [r for r in rows if r["dx"] == code]
        (folder / code).mkdir(parents=True, exist_ok=True)
        for i in rng.choice(len(of), per_class, replace=False):
            shutil.copy(HAM / "images" / f"{of[i]['image_id']}.jpg", folder / code)
    return folder
