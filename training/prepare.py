"""A training run's data, decoded once and split by lesion: what the trainer works from.

The preprocessing a bundle records is read from the training images themselves, not assumed: their
size (`measure_effective_size`) and, when they are JPEGs of one libjpeg quality at that size, that
quality (`training.data.estimate_jpeg_quality`). HAM10000's copies give 150x200 at quality 75; a
clinic's full-size photos give their own size, so the app later brings every input to the resolution
the model actually learnt from.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lesion_desktop.errors import DatasetError
from lesion_desktop.preprocess import PreprocessConfig
from lesion_desktop.registry import get_spec
from training.data import Dataset, ImageCache, Record, build_cache, estimate_jpeg_quality, read_dataset
from training.progress import Progress
from training.splits import check_no_leak, indices_for, lesion_grouped_split, load_split, save_split

if TYPE_CHECKING:
    from training.trainer import TrainConfig

# The longest side an effective resolution may have. The networks see at most 299 px, so detail beyond
# about three times that never reaches them, while the first preprocessing stage (JPEG round trip, hair
# removal, colour constancy) runs at this size on every image the app classifies. 800 keeps HAM10000's
# original 600x450 dermatoscope frames as they are and brings a phone's 4000x3000 photo down to 800x600.
MAX_EFFECTIVE_SIDE = 800


def measure_effective_size(records: list[Record], sample: int = 64,
                           max_side: int = MAX_EFFECTIVE_SIDE) -> tuple[int, int]:
    """(height, width) of the training images, landscape: the most common size in a sample of them.

    Orientation does not count (the preprocessing turns portrait frames to the target's orientation), so
    200x150 and 150x200 are one size. When no size covers half the sample, the median height and width.
    Larger than `max_side` on the longer side: scaled down, aspect kept. Only image headers are read.
    """
    from PIL import Image

    sizes: Counter[tuple[int, int]] = Counter()
    for r in records[:: max(1, len(records) // sample)][:sample]:
        try:
            with Image.open(r.path) as im:
                w, h = im.size
        except (OSError, ValueError):
            continue  # build_cache reports the unreadable ones
        sizes[(min(w, h), max(w, h))] += 1
    if not sizes:
        return PreprocessConfig().effective_size
    (h, w), count = sizes.most_common(1)[0]
    if 2 * count < sizes.total():
        heights, widths = zip(*sizes.elements(), strict=True)
        h, w = int(np.median(heights)), int(np.median(widths))
    scale = min(1.0, max_side / w)
    return max(16, round(h * scale)), max(16, round(w * scale))


@dataclass(frozen=True)
class PreparedData:
    """The decoded images (at the network's input size), their labels and the split, as index arrays."""

    cache: ImageCache
    preprocess: PreprocessConfig
    dataset: Dataset
    split_file: Path
    labels: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def images(self, part: np.ndarray) -> np.ndarray:
        return self.cache.images[part]

    def lesions(self, part: np.ndarray) -> list[str]:
        return [self.cache.records[i].lesion_id for i in part]

    def image_ids(self, part: np.ndarray) -> list[str]:
        return [self.cache.records[i].image_id for i in part]


def preprocessing_for(cfg: TrainConfig, ds: Dataset) -> PreprocessConfig:
    """The bundle's preprocessing: the architecture's normalisation, the images' own size and JPEG quality;
    fine-tuning a model (`cfg.init_from`), that model's own preprocessing, which its weights were fitted to."""
    if cfg.init_from:
        from lesion_desktop.manifest import validate_member

        return validate_member(Path(cfg.init_from)).preprocess
    spec = get_spec(cfg.architecture)
    effective = _effective_size(cfg, ds)
    return PreprocessConfig(
        input_size=tuple(cfg.input_size or spec.input_size), effective_size=effective,  # type: ignore[arg-type]
        mean=spec.mean, std=spec.std, color_constancy=cfg.color_constancy, hair_removal=cfg.hair_removal,
        jpeg_quality=_jpeg_quality(cfg, ds, effective),
    )


def _effective_size(cfg: TrainConfig, ds: Dataset) -> tuple[int, int]:
    if not cfg.effective_size:
        return measure_effective_size(ds.records)
    size = tuple(cfg.effective_size)
    if len(size) != 2 or not all(isinstance(x, int) and 16 <= x <= 2048 for x in size):
        raise DatasetError(f"effective_size must be two sizes of 16..2048 px, not {cfg.effective_size!r}")
    return size  # type: ignore[return-value]


def _jpeg_quality(cfg: TrainConfig, ds: Dataset, effective: tuple[int, int]) -> int | None:
    quality = None if cfg.jpeg_quality == "none" else cfg.jpeg_quality
    if quality == "auto":
        return estimate_jpeg_quality(ds.records, effective)
    if quality is not None and not (isinstance(quality, int) and 1 <= quality <= 100):
        raise DatasetError(f"jpeg_quality must be 'auto', None or 1..100, not {quality!r}")
    return quality  # type: ignore[return-value]


def prepare_data(cfg: TrainConfig, progress: Progress | None) -> PreparedData:
    """Read the data folder, decode it once into the cache, and load (or write) the lesion-grouped split."""
    ds = read_dataset(cfg.data)
    pre = preprocessing_for(cfg, ds)
    out = Path(cfg.out_dir)
    cache = build_cache(ds, pre, Path(cfg.cache_dir or out / "cache"), progress)
    split_path = Path(cfg.split_file) if cfg.split_file else out / "split.json"
    if split_path.is_file():
        split = load_split(split_path)
    else:
        split = lesion_grouped_split(cache.records, seed=cfg.seed)
        save_split(split_path, split, seed=cfg.seed, data_fingerprint=cache.fingerprint)
    check_no_leak(cache.records, split)
    idx = {k: indices_for(cache.records, v) for k, v in split.items()}
    if len(idx["train"]) == 0 or len(idx["val"]) == 0:
        raise DatasetError("The split leaves no training or no validation images.")
    return PreparedData(cache, pre, ds, split_path, cache.labels(), idx["train"], idx["val"], idx["test"])
