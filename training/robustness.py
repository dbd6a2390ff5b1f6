"""Do full-size photos get the answer their training-size copies get? (issue #3, item 4) And do two model
folders give the same answers? (issue #16: a retrained candidate next to the active models)

The training copies are small (HAM10000 at 200x150); photos in use arrive at full size. For pairs of the
same image at both sizes (matched by file name), `size_agreement` compares an ensemble's top class and
probabilities; `model_agreement` compares two ensembles on the same photos, through the app's own engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.errors import DatasetError, ImageLoadError
from lesion_desktop.imageio import IMAGE_SUFFIXES, load_image
from lesion_desktop.inference import load_engine
from lesion_desktop.prediction import Prediction
from training.progress import Progress, check_cancel

# the targets of the issue that asked for this check
MIN_AGREEMENT = 0.95
MAX_MEAN_ABS_DIFFERENCE = 0.05


@dataclass
class SizeAgreement:
    n: int
    agreement: float  # share of pairs with the same top class
    mean_abs_difference: float  # mean over pairs of the mean absolute probability difference
    disagreements: list[tuple[str, str, str]] = field(default_factory=list)  # (file, full-size top, copy top)
    problems: list[str] = field(default_factory=list)  # pairs skipped, and why

    def met(self, min_agreement: float = MIN_AGREEMENT, max_difference: float = MAX_MEAN_ABS_DIFFERENCE) -> bool:
        return self.n > 0 and self.agreement >= min_agreement and self.mean_abs_difference <= max_difference


def _tally(names: list[str], first: list[Prediction], second: list[Prediction], problems: list[str],
           nothing: str) -> SizeAgreement:
    """Top-class agreement and mean absolute probability difference of two lists of predictions of the same images
    (disagreements list the image, the first's top class and the second's)."""
    diffs = [float(np.abs(a.probabilities - b.probabilities).mean()) for a, b in zip(first, second, strict=True)]
    if not diffs:
        raise DatasetError(nothing)
    disagreements = [(name, CLASS_CODES[a.top_index], CLASS_CODES[b.top_index])
                     for name, a, b in zip(names, first, second, strict=True) if a.top_index != b.top_index]
    return SizeAgreement(len(diffs), 1 - len(disagreements) / len(diffs), float(np.mean(diffs)), disagreements,
                         problems)


def size_agreement(models_dir: Path, full_dir: Path, copies_dir: Path, *, device: str = "cpu", tta: bool = False,
                   batch: int = 25, progress: Progress | None = None) -> SizeAgreement:
    """Compare the ensemble's predictions for each image in `full_dir` and its namesake in `copies_dir`."""
    full_dir, copies_dir = Path(full_dir), Path(copies_dir)
    for d in (full_dir, copies_dir):
        if not d.is_dir():
            raise DatasetError(f"{d} is not a folder.")
    problems: list[str] = []
    pairs: list[tuple[Path, Path]] = []
    for p in sorted(x for x in full_dir.iterdir() if x.suffix.lower() in IMAGE_SUFFIXES):
        copy = copies_dir / p.name
        if copy.is_file():
            pairs.append((p, copy))
        else:
            problems.append(f"{p.name}: no copy of that name in {copies_dir}")
    if not pairs:
        raise DatasetError(f"No image in {full_dir} has a copy of the same name in {copies_dir}.")
    engine = load_engine(models_dir, device=device, tta=tta)
    names: list[str] = []
    first: list[Prediction] = []
    second: list[Prediction] = []
    for i in range(0, len(pairs), batch):
        check_cancel(progress)
        chunk, big, small = [], [], []
        for p, c in pairs[i : i + batch]:
            try:
                full_img, copy_img = load_image(p), load_image(c)
            except ImageLoadError as e:
                problems.append(f"{p.name}: {e}")
                continue
            chunk.append(p.name)
            big.append(full_img)
            small.append(copy_img)
        names += chunk
        first += engine.predict(big)
        second += engine.predict(small)
        if progress is not None:
            progress.report(min(1.0, (i + batch) / len(pairs)), f"Compared {min(i + batch, len(pairs))} pairs")
    return _tally(names, first, second, problems, "None of the image pairs could be read.")


def _images(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder.")
    found = sorted(x for x in folder.iterdir() if x.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise DatasetError(f"{folder} holds no images.")
    return found


def model_agreement(models_dir: Path, other_dir: Path, images_dir: Path, *, device: str = "cpu", tta: bool = False,
                    batch: int = 25, progress: Progress | None = None) -> SizeAgreement:
    """How often two model folders give each photo in `images_dir` the same top class, and how far their
    probabilities differ (disagreements list the photo, `models_dir`'s top class and `other_dir`'s)."""
    paths = _images(images_dir)
    engines = load_engine(models_dir, device=device, tta=tta), load_engine(other_dir, device=device, tta=tta)
    problems: list[str] = []
    names: list[str] = []
    first: list[Prediction] = []
    second: list[Prediction] = []
    for i in range(0, len(paths), batch):
        check_cancel(progress)
        images = []
        for p in paths[i : i + batch]:
            try:
                images.append(load_image(p))
                names.append(p.name)
            except ImageLoadError as e:
                problems.append(f"{p.name}: {e}")
        first += engines[0].predict(images)
        second += engines[1].predict(images)
        if progress is not None:
            progress.report(min(1.0, (i + batch) / len(paths)), f"Compared {min(i + batch, len(paths))} photos")
    return _tally(names, first, second, problems, "None of the photos could be read.")
