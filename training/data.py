"""Reading and validating labelled data, and the decode-once image cache.

Two layouts are accepted: HAM10000's (a metadata CSV with lesion_id,image_id,dx beside the images; an
optional `path` column names each image file, relative to the folder or absolute, as retraining's mix of
two data folders does) and one sub-folder per class code. Problems are reported and skipped; a class with
too few images is an error, since neither a split nor a recall can be computed for it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.errors import DatasetError, ImageLoadError
from lesion_desktop.imageio import IMAGE_SUFFIXES, load_image
from lesion_desktop.preprocess import PreprocessConfig, prepare_image
from training.progress import Progress, check_cancel

MIN_IMAGES_PER_CLASS = 5
CACHE_ENV = "LESION_DESKTOP_CACHE"


def default_cache_dir() -> Path:
    """Where decoded images are cached when no --cache-dir is given: the user's cache folder, never the checkout.

    `LESION_DESKTOP_CACHE` names another folder; under `LESION_DESKTOP_HOME` (the tests) it is home/cache.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    home = os.environ.get("LESION_DESKTOP_HOME")
    if home:
        return Path(home) / "cache"
    from platformdirs import user_cache_dir

    from lesion_desktop.paths import APP_NAME

    return Path(user_cache_dir(APP_NAME, appauthor=False)) / "images"


@dataclass(frozen=True)
class Record:
    path: Path
    label: int
    lesion_id: str
    image_id: str


@dataclass
class Dataset:
    root: Path
    layout: str
    records: list[Record]
    problems: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = Counter(r.label for r in self.records)
        return {code: c.get(i, 0) for i, code in enumerate(CLASS_CODES)}

    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        return f"{len(self.records)} images ({self.layout} layout): {counts}; {len(self.problems)} problems"

    def subset(self, image_ids: list[str]) -> Dataset:
        """Only these images, in the data's own order: decode what is scored, not the whole data set."""
        wanted = set(image_ids)
        return Dataset(self.root, self.layout, [r for r in self.records if r.image_id in wanted], list(self.problems))


# libjpeg's luminance quantisation table at quality 50 (ITU-T T.81, Annex K); other qualities scale it
_LIBJPEG_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)


def _libjpeg_table(quality: int) -> list[int]:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return sorted(min(255, max(1, (v * scale + 50) // 100)) for v in _LIBJPEG_LUMA)


def _size_and_jpeg_quality(path: Path) -> tuple[tuple[int, int], int | None] | None:
    """(width, height) and the libjpeg quality from one opening of the file; None if it cannot be opened."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            size = im.size
            tables = getattr(im, "quantization", None) if im.format == "JPEG" else None
    except (OSError, ValueError):
        return None
    if not tables or 0 not in tables or len(tables[0]) != 64:
        return size, None
    luma = sorted(int(v) for v in tables[0])  # sorted: the same whatever order Pillow lists them in
    return size, next((q for q in range(1, 101) if _libjpeg_table(q) == luma), None)


def jpeg_quality_of(path: Path) -> int | None:
    """The libjpeg quality (1..100) a JPEG was saved at, from its luminance table; None if it cannot be told."""
    info = _size_and_jpeg_quality(path)
    return info[1] if info is not None else None


def estimate_jpeg_quality(records: list[Record], effective_size: tuple[int, int], sample: int = 64) -> int | None:
    """The quality the training images were saved at, when a sample of them are all JPEGs at the effective
    resolution saved with one libjpeg quality (HAM10000's copies: 75); otherwise None (mixed sizes, PNGs,
    other encoders), and then inputs are not re-encoded (PreprocessConfig.jpeg_quality).
    """
    if not records:
        return None
    picks = records[:: max(1, len(records) // sample)][:sample]
    found: set[int | None] = set()
    for r in picks:
        info = _size_and_jpeg_quality(r.path)
        if info is None:
            return None
        (w, h), quality = info
        if (h, w) not in (effective_size, effective_size[::-1]):
            return None
        found.add(quality)
    return found.pop() if len(found) == 1 else None


def _find_metadata(root: Path) -> Path | None:
    cands = sorted(p for p in root.glob("*.csv") if "metadata" in p.name.lower())
    return cands[0] if cands else None


def _index_images(root: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.suffix.lower() in IMAGE_SUFFIXES:
                index.setdefault(p.stem, p)
    return index


def read_dataset(root: Path | str, min_per_class: int = MIN_IMAGES_PER_CLASS) -> Dataset:
    """Read a data folder; raises DatasetError when it cannot be used at all."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"The data folder {root} does not exist or is not a folder.")
    meta = _find_metadata(root)
    problems: list[str] = []
    records: list[Record] = []
    if meta is not None:
        layout = "HAM10000"
        index = _index_images(root)
        with open(meta, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = set(reader.fieldnames or [])
            if not {"image_id", "dx"} <= cols:
                raise DatasetError(f"{meta.name} needs the columns image_id and dx (lesion_id recommended).")
            for n, row in enumerate(reader, start=2):
                dx = (row.get("dx") or "").strip().lower()
                image_id = (row.get("image_id") or "").strip()
                if dx not in CLASS_CODES:
                    problems.append(f"{meta.name} line {n}: unknown label {dx!r}, skipped")
                    continue
                named = (row.get("path") or "").strip()
                path = root / named if named else index.get(image_id)  # root / an absolute path: that path
                if path is None or named and not path.is_file():
                    problems.append(f"{meta.name} line {n}: image {named or image_id!r} not found, skipped")
                    continue
                lesion = (row.get("lesion_id") or "").strip() or image_id
                records.append(Record(path, CLASS_CODES.index(dx), lesion, image_id))
    else:
        layout = "class folders"
        subdirs = [d for d in sorted(root.iterdir()) if d.is_dir()]
        for d in subdirs:
            code = d.name.strip().lower()
            if code not in CLASS_CODES:
                problems.append(f"folder {d.name!r}: not a class code ({', '.join(CLASS_CODES)}), skipped")
                continue
            for p in sorted(d.rglob("*")):
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                    records.append(Record(p, CLASS_CODES.index(code), p.stem, p.stem))
    if not records:
        raise DatasetError(
            f"No labelled images found in {root}. Expected a metadata CSV (image_id, dx, lesion_id) "
            f"or one sub-folder per class ({', '.join(CLASS_CODES)})."
        )
    ds = Dataset(root, layout, records, problems)
    _check_counts(ds, min_per_class)
    return ds


def _check_counts(ds: Dataset, min_per_class: int) -> None:
    few = {k: v for k, v in ds.counts().items() if v < min_per_class}
    if few:
        listed = ", ".join(f"{k} ({v})" for k, v in few.items())
        raise DatasetError(
            f"Too few images for {listed}: every class needs at least {min_per_class} to be split and evaluated."
        )


def fingerprint(records: list[Record], cfg: PreprocessConfig | None = None) -> str:
    """Identify the data (names, sizes, mtimes, labels) and preprocessing the cache was made from."""
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: r.image_id):
        st = r.path.stat()
        h.update(f"{r.image_id}|{r.label}|{r.lesion_id}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    if cfg is not None:
        # Only what changes the cached pixels: normalisation is applied later, per model.
        pix = {k: v for k, v in cfg.to_dict().items() if k not in ("mean", "std")}
        h.update(json.dumps(pix, sort_keys=True).encode())
    return h.hexdigest()[:16]


@dataclass
class ImageCache:
    images: np.ndarray  # (N, H, W, 3) uint8, memmap
    records: list[Record]
    fingerprint: str

    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)


def build_cache(ds: Dataset, cfg: PreprocessConfig, cache_dir: Path, progress: Progress | None = None) -> ImageCache:
    """Decode and preprocess every image once into a memmap; unreadable images are reported and dropped."""
    fp = fingerprint(ds.records, cfg)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    arr_path = cache_dir / f"images-{fp}.u8"
    idx_path = cache_dir / f"images-{fp}.json"
    h, w = cfg.input_size
    if arr_path.is_file() and idx_path.is_file():
        idx = json.loads(idx_path.read_text())
        keep = [r for r in ds.records if r.image_id in set(idx["image_ids"])]
        order = {iid: i for i, iid in enumerate(idx["image_ids"])}
        keep.sort(key=lambda r: order[r.image_id])
        ds.problems.extend(idx.get("problems", []))
        arr = np.memmap(arr_path, dtype=np.uint8, mode="r", shape=(len(keep), h, w, 3))
        return ImageCache(arr, keep, fp)
    tmp = arr_path.with_name(f"{arr_path.name}.{os.getpid()}.part")
    arr = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(len(ds.records), h, w, 3))
    kept: list[Record] = []
    problems: list[str] = []
    n = len(ds.records)
    for i, r in enumerate(ds.records):
        if i % 64 == 0:
            check_cancel(progress)
            if progress is not None:
                progress.report(i / n, f"Decoding images {i}/{n}")
        try:
            img = prepare_image(load_image(r.path), cfg)
        except ImageLoadError as e:
            problems.append(f"{r.path.name}: {e}, skipped")
            continue
        arr[len(kept)] = img
        kept.append(r)
    arr.flush()
    del arr
    # Shrink to the images that decoded, then publish atomically.
    with open(tmp, "r+b") as f:
        f.truncate(len(kept) * h * w * 3)
    os.replace(tmp, arr_path)
    idx_path.write_text(json.dumps({"image_ids": [r.image_id for r in kept], "problems": problems}))
    ds.problems.extend(problems)
    final = np.memmap(arr_path, dtype=np.uint8, mode="r", shape=(len(kept), h, w, 3))
    return ImageCache(final, kept, fp)
