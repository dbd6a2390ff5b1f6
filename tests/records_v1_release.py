# Verbatim copy of lesion_desktop/records.py at aeb4159, the released history format 1: the tests make
# histories with it the way that release did, then check the upgrade (tests/test_records.py).
"""History of classified images: SQLite (WAL) in the data folder, with a copy of every image.

The image is copied into `images/` (as lossless PNG) so a record still opens after the original file
moved or came from a camera; the network input and the heat-map are stored as small PNG blobs so a
reopened record shows exactly what was shown then, even after the models changed.

Each call opens its own connection: the store is used from worker threads and the GUI thread, and
SQLite connections must not be shared between threads.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.paths import data_dir
from lesion_desktop.prediction import ClassProbabilities

SCHEMA_VERSION = 1
THUMBNAIL_SIDE = 96
_PROB_COLUMNS = [f"p_{c}" for c in CLASS_CODES]

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    source_name TEXT NOT NULL,
    source_path TEXT NOT NULL DEFAULT '',
    image_file TEXT NOT NULL,
    thumbnail BLOB NOT NULL,
    preprocessed BLOB,
    heatmap BLOB,
    {", ".join(f"{c} REAL NOT NULL" for c in _PROB_COLUMNS)},
    warnings TEXT NOT NULL DEFAULT '[]',
    model_version TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{{}}'
);
CREATE INDEX IF NOT EXISTS records_created ON records(created);
"""


def encode_png(image: np.ndarray) -> bytes:
    """RGB or grey uint8 array -> PNG bytes (OpenCV expects BGR, hence the flip)."""
    arr = image[:, :, ::-1] if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
    if not ok:
        raise ValueError("could not encode the image as PNG")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes written by encode_png -> RGB (or grey) uint8 array."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError("stored image data is damaged")
    return np.ascontiguousarray(arr[:, :, ::-1]) if arr.ndim == 3 else arr


def make_thumbnail(rgb: np.ndarray, side: int = THUMBNAIL_SIDE) -> bytes:
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return encode_png(small)


@dataclass
class Record(ClassProbabilities):
    """One classified image as stored; `id` is None for a result that could not be saved."""

    id: int | None
    created: str  # ISO 8601 with the local UTC offset
    source_name: str
    source_path: str
    image_path: Path
    thumbnail: bytes
    probabilities: np.ndarray
    warnings: tuple[str, ...]
    model_version: str
    details: dict[str, Any] = field(default_factory=dict)
    preprocessed_png: bytes | None = field(default=None, repr=False)
    heatmap_png: bytes | None = field(default=None, repr=False)

    def created_local(self) -> str:
        """The date as a person reads it (no seconds, no offset)."""
        try:
            return _dt.datetime.fromisoformat(self.created).strftime("%Y-%m-%d %H:%M")
        except ValueError:
            return self.created

    def load_image(self) -> np.ndarray:
        """The stored copy of the image (raises ImageLoadError if it was deleted or damaged)."""
        from lesion_desktop.imageio import load_image

        return load_image(self.image_path, name=f"{self.source_name} (history copy)")

    def preprocessed(self) -> np.ndarray | None:
        return decode_png(self.preprocessed_png) if self.preprocessed_png else None

    def heatmap(self) -> np.ndarray | None:
        """The Grad-CAM map as floats in [0, 1], or None when none was computed."""
        if not self.heatmap_png:
            return None
        return decode_png(self.heatmap_png).astype(np.float32) / 255.0


class RecordStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else data_dir()
        self.db_path = self.root / "history.sqlite"
        self.images_dir = self.root / "images"
        self.root.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)
            con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection; the body runs in one transaction (committed, or rolled back on error)."""
        con = sqlite3.connect(self.db_path, timeout=10)
        con.row_factory = sqlite3.Row
        try:
            with con:
                yield con
        finally:
            con.close()

    def _write_image(self, rgb: np.ndarray) -> str:
        self.images_dir.mkdir(parents=True, exist_ok=True)
        name = f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}.png"
        tmp = self.images_dir / (name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(encode_png(rgb))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.images_dir / name)
        return name

    def add(self, rgb: np.ndarray, probabilities: Sequence[float] | np.ndarray, *, source_name: str, model_version: str,
            source_path: str = "", warnings: Sequence[str] = (), details: dict[str, Any] | None = None,
            preprocessed: np.ndarray | None = None, heatmap: np.ndarray | None = None) -> Record:
        """Store a result; the image file is written first so a row never points at a missing file."""
        probs = np.asarray(probabilities, dtype=np.float64)
        if probs.shape != (len(CLASS_CODES),) or not np.all(np.isfinite(probs)):
            raise ValueError(f"expected {len(CLASS_CODES)} finite probabilities, got {probs!r}")
        created = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        image_file = self._write_image(rgb)
        thumb = make_thumbnail(rgb)
        pre_png = encode_png(preprocessed) if preprocessed is not None else None
        heat_png = encode_png(np.clip(heatmap * 255.0 + 0.5, 0, 255).astype(np.uint8)) if heatmap is not None else None
        cols = ["created", "source_name", "source_path", "image_file", "thumbnail", "preprocessed", "heatmap",
                *_PROB_COLUMNS, "warnings", "model_version", "details"]
        values = [created, source_name, source_path, image_file, thumb, pre_png, heat_png,
                  *[float(p) for p in probs], json.dumps(list(warnings)), model_version, json.dumps(details or {})]
        try:
            with self._connect() as con:
                cur = con.execute(f"INSERT INTO records ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                  values)
                rid = int(cur.lastrowid or 0)
        except sqlite3.Error:
            (self.images_dir / image_file).unlink(missing_ok=True)
            raise
        return Record(rid, created, source_name, source_path, self.images_dir / image_file, thumb, probs,
                      tuple(warnings), model_version, dict(details or {}), pre_png, heat_png)

    def _row_to_record(self, row: sqlite3.Row, full: bool) -> Record:
        try:
            warnings = tuple(str(w) for w in json.loads(row["warnings"]))
            details = json.loads(row["details"])
        except (TypeError, ValueError):
            warnings, details = ("The stored warnings of this record are damaged.",), {}
        return Record(
            id=int(row["id"]), created=row["created"], source_name=row["source_name"],
            source_path=row["source_path"], image_path=self.images_dir / row["image_file"],
            thumbnail=bytes(row["thumbnail"]),
            probabilities=np.array([row[c] for c in _PROB_COLUMNS], dtype=np.float64),
            warnings=warnings, model_version=row["model_version"],
            details=details if isinstance(details, dict) else {},
            preprocessed_png=bytes(row["preprocessed"]) if full and row["preprocessed"] else None,
            heatmap_png=bytes(row["heatmap"]) if full and row["heatmap"] else None,
        )

    def list(self, limit: int = 500) -> builtins.list[Record]:
        """Newest first, without the large blobs (enough for a list with thumbnails)."""
        cols = ", ".join(["id", "created", "source_name", "source_path", "image_file", "thumbnail",
                          "NULL AS preprocessed", "NULL AS heatmap", *_PROB_COLUMNS, "warnings",
                          "model_version", "details"])
        with self._connect() as con:
            rows = con.execute(f"SELECT {cols} FROM records ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [self._row_to_record(r, full=False) for r in rows]

    def get(self, record_id: int) -> Record | None:
        with self._connect() as con:
            row = con.execute("SELECT * FROM records WHERE id = ?", (record_id,)).fetchone()
        return self._row_to_record(row, full=True) if row is not None else None

    def delete(self, record_id: int) -> bool:
        """Remove the row and its image copy; False when there was no such record."""
        with self._connect() as con:
            row = con.execute("SELECT image_file FROM records WHERE id = ?", (record_id,)).fetchone()
            if row is None:
                return False
            con.execute("DELETE FROM records WHERE id = ?", (record_id,))
        (self.images_dir / row["image_file"]).unlink(missing_ok=True)
        return True

    def count(self) -> int:
        with self._connect() as con:
            return int(con.execute("SELECT COUNT(*) FROM records").fetchone()[0])
