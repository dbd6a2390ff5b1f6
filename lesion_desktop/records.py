"""Clinic records: patients, their lesions, and every examination of a lesion, in SQLite (WAL) in the data folder.

An examination keeps the image exactly as it came (the file's own bytes, never re-encoded, named by their
sha256 so the same file opened twice is stored once). Only pixels that never were a file (a camera frame, a
pasted bitmap) are stored, losslessly, as PNG; `Record.image_kind` says which. The network input and the
heat-map are small PNG blobs, so a reopened examination shows exactly what was shown then.

The schema version lives in `PRAGMA user_version`: an older history is migrated in one transaction (a kill
during it leaves the old one as it was); a newer one is refused, untouched. Each call opens its own
connection: the store is used from worker threads and the GUI thread, and connections must not be shared.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import hashlib
import json
import os
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.errors import LesionError
from lesion_desktop.manifest import sha256_file
from lesion_desktop.paths import data_dir
from lesion_desktop.prediction import ClassProbabilities
from lesion_desktop.wording import QT_TRANSLATE_NOOP, Joined, Phrase

SCHEMA_VERSION = 2
DB_NAME = "history.sqlite"
THUMBNAIL_SIDE = 96
_PROB_COLUMNS = [f"p_{c}" for c in CLASS_CODES]

# HAM10000's `localization` vocabulary (HAM10000_metadata.csv), so records and the training data speak alike.
BODY_SITES: tuple[str, ...] = ("scalp", "face", "ear", "neck", "chest", "abdomen", "back", "trunk",
                               "upper extremity", "hand", "lower extremity", "foot", "acral", "genital", "unknown")
SEXES: tuple[str, ...] = ("", "female", "male")  # '' = not recorded (HAM10000 writes 'unknown')
HISTOPATHOLOGY_OTHER = "other"  # a histological diagnosis outside the seven classes (say which in the note)
HISTOPATHOLOGY_CODES: tuple[str, ...] = (*CLASS_CODES, HISTOPATHOLOGY_OTHER)

# How an examination's image is stored.
IMAGE_ORIGINAL = "original"  # the file's own bytes
IMAGE_PNG = "png"  # pixels that had no file (camera frame, pasted bitmap), stored losslessly as PNG
IMAGE_PNG_V1 = "png-v1"  # stored as a PNG copy by schema version 1, which did not keep the original file
IMAGE_KIND_TEXT = {  # marked for translators (lesion_desktop.wording): the PDF report says it in the clinic's language
    IMAGE_ORIGINAL: QT_TRANSLATE_NOOP("Records", "the original file, as it came"),
    IMAGE_PNG: QT_TRANSLATE_NOOP("Records", "a lossless PNG of the captured pixels (there was no file)"),
    IMAGE_PNG_V1: QT_TRANSLATE_NOOP("Records", "a lossless PNG copy made by an earlier version (the original file was "
                                    "not kept)"),
}

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, ".jpg"), (b"\x89PNG\r\n\x1a\n", 0, ".png"), (b"II*\x00", 0, ".tif"),
    (b"MM\x00*", 0, ".tif"), (b"BM", 0, ".bmp"), (b"WEBP", 8, ".webp"), (b"GIF8", 0, ".gif"),
)
_TRASH = ".deleting"  # an image whose examination is being deleted: restored if the deletion did not commit


class HistoryError(LesionError):
    """The history database cannot be used as it is."""


class NewerHistoryError(HistoryError):
    """The history was written by a newer version of the program: refused, and left untouched."""


def _exam_columns() -> str:
    probs = ",\n    ".join(f"{c} REAL NOT NULL" for c in _PROB_COLUMNS)
    return f"""
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lesion_id INTEGER REFERENCES lesions(id),
    created TEXT NOT NULL,
    source_name TEXT NOT NULL,
    source_path TEXT NOT NULL DEFAULT '',
    image_file TEXT NOT NULL,
    image_sha256 TEXT NOT NULL DEFAULT '',
    image_kind TEXT NOT NULL DEFAULT '{IMAGE_PNG}',
    thumbnail BLOB NOT NULL,
    preprocessed BLOB,
    heatmap BLOB,
    {probs},
    warnings TEXT NOT NULL DEFAULT '[]',
    model_version TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{{}}',
    clinician TEXT NOT NULL DEFAULT '',
    assessment TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    histopathology TEXT NOT NULL DEFAULT '',
    histopathology_note TEXT NOT NULL DEFAULT '',
    histopathology_date TEXT NOT NULL DEFAULT ''"""


_EXAM_NAMES = [c.split()[0] for c in _exam_columns().strip().split(",\n")]
_LIGHT_COLUMNS = ", ".join([f"e.{c}" for c in _EXAM_NAMES if c not in ("preprocessed", "heatmap")]
                           + ["NULL AS preprocessed", "NULL AS heatmap"])

_SCHEMA_V2 = [
    """CREATE TABLE patients (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    clinic_id TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    birth TEXT NOT NULL DEFAULT '',
    sex TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL)""",
    "CREATE UNIQUE INDEX patients_clinic_id ON patients(clinic_id COLLATE NOCASE)",
    "CREATE INDEX patients_name ON patients(name COLLATE NOCASE)",
    """CREATE TABLE lesions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id INTEGER NOT NULL REFERENCES patients(id),
    body_site TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL)""",
    "CREATE INDEX lesions_patient ON lesions(patient_id)",
    f"CREATE TABLE examinations ({_exam_columns()})",
    # covers the history's per-patient counts and last dates and a lesion's timeline (no row reads)
    "CREATE INDEX examinations_lesion ON examinations(lesion_id, created)",
    "CREATE INDEX examinations_created ON examinations(created)",
    "CREATE INDEX examinations_sha ON examinations(image_sha256)",
    "CREATE INDEX examinations_image ON examinations(image_file)",
]


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


def image_suffix(data: bytes) -> str:
    """The file suffix of encoded image bytes, from their signature (the loader judges content, not names)."""
    for magic, offset, suffix in _MAGIC:
        if data[offset:offset + len(magic)] == magic:
            return suffix
    return ".img"


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _private_dir(path: Path) -> None:
    """Create `path` readable by its owner only (POSIX; Windows keeps the profile folder's own ACL)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "posix":
        os.chmod(path, 0o700)


def _write_private(path: Path, data: bytes) -> None:
    """Write aside with owner-only permissions, fsync, then rename into place."""
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def parse_birth(text: str) -> str:
    """'1970' or '1970-05-31' (or '' for not recorded); raises ValueError with a sentence otherwise."""
    text = text.strip()
    if not text:
        return ""
    today = _dt.date.today()
    if re.fullmatch(r"\d{4}", text):
        year = int(text)
        if not 1900 <= year <= today.year:
            raise ValueError(f"The year of birth {text} is not between 1900 and {today.year}.")
        return text
    try:
        day = _dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'{text}' is neither a year (1970) nor a date (1970-05-31).") from None
    if not _dt.date(1900, 1, 1) <= day <= today:
        raise ValueError(f"The date of birth {text} is not between 1900 and today.")
    return day.isoformat()


@dataclass(frozen=True)
class Patient:
    id: int
    clinic_id: str  # the clinic's own identifier
    name: str
    birth: str  # '', 'YYYY' or 'YYYY-MM-DD'
    sex: str  # '', 'female' or 'male'
    created: str

    def age_at(self, when: str) -> int | None:
        """Age in whole years on the date of `when` (ISO); None when the birth is not recorded."""
        if not self.birth:
            return None
        try:
            day = _dt.datetime.fromisoformat(when).date()
        except ValueError:
            return None
        if len(self.birth) == 4:
            return max(0, day.year - int(self.birth))
        born = _dt.date.fromisoformat(self.birth)
        return max(0, day.year - born.year - ((day.month, day.day) < (born.month, born.day)))

    def title(self) -> str:
        return f"{self.clinic_id} · {self.name}" if self.name else self.clinic_id


@dataclass(frozen=True)
class Lesion:
    id: int
    patient_id: int
    body_site: str
    label: str
    created: str

    def title(self, site_name: Callable[[str], str] = str) -> str:
        """'back: left shoulder'; `site_name` shows the stored site in the clinic's language (the window's)."""
        return f"{site_name(self.body_site)}: {self.label}" if self.label else site_name(self.body_site)


@dataclass(frozen=True)
class PatientSummary:
    patient: Patient
    lesions: int
    examinations: int
    last_examination: str


@dataclass(frozen=True)
class LesionSummary:
    lesion: Lesion
    examinations: int
    last_examination: str


@dataclass(frozen=True)
class Deletion:
    """What deleting a patient (or applying the retention period) removes, for the confirmation."""

    patients: int
    lesions: int
    examinations: int
    images: int

    def sentence(self) -> str:
        return Phrase(_DELETION, lesions=Phrase(_LESIONS[self.lesions == 1], n=self.lesions),
                      examinations=Phrase(_EXAMINATIONS[self.examinations == 1], n=self.examinations),
                      images=Phrase(_IMAGES[self.images == 1], n=self.images))


@dataclass
class Record(ClassProbabilities):
    """One examination as stored; `id` is None for a result that could not be saved."""

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
    lesion_id: int | None = None
    image_sha256: str = ""
    image_kind: str = ""  # IMAGE_ORIGINAL, IMAGE_PNG or IMAGE_PNG_V1 once stored
    clinician: str = ""
    assessment: str = ""
    notes: str = ""
    histopathology: str = ""  # a class code, 'other' or '' (none yet)
    histopathology_note: str = ""
    histopathology_date: str = ""
    patient_id: int | None = None
    patient_clinic_id: str = ""
    patient_name: str = ""
    body_site: str = ""
    lesion_label: str = ""

    def created_local(self) -> str:
        """The date as a person reads it (no seconds, no offset)."""
        try:
            return _dt.datetime.fromisoformat(self.created).strftime("%Y-%m-%d %H:%M")
        except ValueError:
            return self.created

    def filed_under(self, site_name: Callable[[str], str] = str) -> str:
        """'P-0042 · Jane Doe, back: left shoulder', or '' for a quick examination not filed yet."""
        if self.lesion_id is None:
            return ""
        who = f"{self.patient_clinic_id} · {self.patient_name}" if self.patient_name else self.patient_clinic_id
        body = site_name(self.body_site)
        site = f"{body}: {self.lesion_label}" if self.lesion_label else body
        return f"{who}, {site}"

    def load_image(self) -> np.ndarray:
        """The stored image, decoded (raises ImageLoadError if it was deleted or damaged)."""
        from lesion_desktop.imageio import load_image

        return load_image(self.image_path, name=f"{self.source_name} (history copy)")

    def preprocessed(self) -> np.ndarray | None:
        return decode_png(self.preprocessed_png) if self.preprocessed_png else None

    def heatmap(self) -> np.ndarray | None:
        """The Grad-CAM map as floats in [0, 1], or None when none was computed."""
        if not self.heatmap_png:
            return None
        return decode_png(self.heatmap_png).astype(np.float32) / 255.0


@dataclass(frozen=True)
class FollowUp:
    """Two examinations of one lesion compared: what changed in the models' output, and whether to alert."""

    earlier: Record
    later: Record
    rise_threshold: float  # alert when the malignant probability rose by more than this (0.10 = 10 points)

    @property
    def changes(self) -> np.ndarray:
        return np.asarray(self.later.probabilities) - np.asarray(self.earlier.probabilities)

    @property
    def malignant_change(self) -> float:
        return self.later.malignant_probability - self.earlier.malignant_probability

    @property
    def alert(self) -> bool:
        return self.malignant_change > self.rise_threshold + 1e-12

    @property
    def same_models(self) -> bool:
        return self.earlier.model_version == self.later.model_version

    def summary(self) -> str:
        """The sentence the timeline and the report's comparison page both show (a Wording: they translate it)."""
        e, lt = self.earlier, self.later
        change = self.malignant_change * 100
        values = {"before": f"{e.malignant_probability:.0%}", "after": f"{lt.malignant_probability:.0%}",
                  "start": e.created_local()[:10], "end": lt.created_local()[:10],
                  "alert": f"{self.rise_threshold * 100:.0f}", "points": f"{abs(change):.0f}"}
        if self.alert:
            first = Phrase(_ROSE_ALERT, **values)
        else:
            first = Phrase(_ROSE if change > 0.5 else _FELL if change < -0.5 else _SAME, **values)
        return Joined([first, Phrase(_OUTPUTS), "" if self.same_models else Phrase(
            _OTHER_MODELS, earlier=e.model_version, later=lt.model_version)])


# FollowUp's and Deletion's sentences, marked for translators (lesion_desktop.wording)
_ROSE_ALERT = QT_TRANSLATE_NOOP("Records", "⚠ The malignant classes' combined probability rose by {points} points "
                                "({before} → {after}) between {start} and {end}: more than the {alert}-point "
                                "follow-up alert. Examine the lesion again and consider excision or referral.")
_ROSE = QT_TRANSLATE_NOOP("Records", "The malignant classes' combined probability rose by {points} points ({before} "
                          "→ {after}) between {start} and {end}; the follow-up alert is set at a rise of more than "
                          "{alert} points.")
_FELL = QT_TRANSLATE_NOOP("Records", "The malignant classes' combined probability fell by {points} points ({before} "
                          "→ {after}) between {start} and {end}; the follow-up alert is set at a rise of more than "
                          "{alert} points.")
_SAME = QT_TRANSLATE_NOOP("Records", "The malignant classes' combined probability did not change ({before} → "
                          "{after}) between {start} and {end}; the follow-up alert is set at a rise of more than "
                          "{alert} points.")
_OUTPUTS = QT_TRANSLATE_NOOP("Records", "These are the models' outputs, not measurements of the lesion: lighting, "
                             "angle and image quality change them too.")
_OTHER_MODELS = QT_TRANSLATE_NOOP("Records", "The two were classified by different models ({earlier}, {later}), so "
                                  "part of the change may come from the models.")
_DELETION = QT_TRANSLATE_NOOP("Records", "{lesions}, {examinations} and {images}")
_LESIONS = (QT_TRANSLATE_NOOP("Records", "{n} lesions"), QT_TRANSLATE_NOOP("Records", "{n} lesion"))
_EXAMINATIONS = (QT_TRANSLATE_NOOP("Records", "{n} examinations"), QT_TRANSLATE_NOOP("Records", "{n} examination"))
_IMAGES = (QT_TRANSLATE_NOOP("Records", "{n} stored images"), QT_TRANSLATE_NOOP("Records", "{n} stored image"))


class RecordStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else data_dir()
        self.db_path = self.root / DB_NAME
        self.images_dir = self.root / "images"
        _private_dir(self.root)
        _private_dir(self.images_dir)
        if not self.db_path.exists():
            with suppress(FileExistsError):  # an empty file is an empty database: created owner-only
                os.close(os.open(self.db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._open_schema()
        self._finish_interrupted_deletions()

    # ---- connections, schema, migration -------------------------------------------------------------
    def _raw(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.db_path, timeout=10, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA foreign_keys=ON")
        return con

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        con = self._raw()
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock from the start (BEGIN IMMEDIATE): image files
        are written and removed inside it, so two writers never disagree about a shared image file."""
        con = self._raw()
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def _open_schema(self) -> None:
        """Create, migrate or accept the schema; refuse a newer one before writing anything."""
        with self._read() as con:
            version = int(con.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise NewerHistoryError(
                    f"The history in {self.db_path} was written by a newer version of Lesion Desktop (history "
                    f"format {version}; this version reads formats up to {SCHEMA_VERSION}). It has not been "
                    "changed. Install the newer version again to use it, or move the folder aside to start an "
                    "empty history.")
            if version == SCHEMA_VERSION:
                return
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("BEGIN IMMEDIATE")
            try:
                version = int(con.execute("PRAGMA user_version").fetchone()[0])  # another process may have won
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if version == 0 and "records" not in tables and "examinations" not in tables:
                    for statement in _SCHEMA_V2:
                        con.execute(statement)
                elif version in (0, 1) and "records" in tables:  # 0: version 1 killed before it stamped
                    self._migrate_v1(con)
                elif version != SCHEMA_VERSION:
                    raise HistoryError(f"The history in {self.db_path} has an unknown format ({version}, tables "
                                       f"{', '.join(sorted(tables))}); it has not been changed.")
                con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _migrate_v1(self, con: sqlite3.Connection) -> None:
        """Schema 1 (one flat `records` table) to 2, inside the caller's transaction: ids, blobs and image
        files are kept as they are (files are not renamed, so a rollback needs nothing undone on disk)."""
        for statement in _SCHEMA_V2:
            con.execute(statement)
        kept = ["id", "created", "source_name", "source_path", "image_file", "thumbnail", "preprocessed",
                "heatmap", *_PROB_COLUMNS, "warnings", "model_version", "details"]
        cols = ", ".join(kept)
        con.execute(f"INSERT INTO examinations ({cols}, image_kind) SELECT {cols}, '{IMAGE_PNG_V1}' FROM records")
        seq = con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
        if seq is not None:  # ids of deleted records are never reused
            con.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'examinations'", (seq[0],))
        for row in con.execute("SELECT id, image_file FROM examinations").fetchall():
            path = self.images_dir / row["image_file"]
            digest = self._migration_digest(path)
            if digest:
                con.execute("UPDATE examinations SET image_sha256 = ? WHERE id = ?", (digest, row["id"]))
        con.execute("DROP TABLE records")

    def _migration_digest(self, path: Path) -> str:
        try:
            digest = sha256_file(path)
        except OSError:  # a copy the user deleted by hand: the row is kept and says so when opened
            return ""
        if os.name == "posix":
            os.chmod(path, 0o600)
        return digest

    def _finish_interrupted_deletions(self) -> None:
        """An image set aside by a deletion that never committed goes back; one that committed goes."""
        pending = list(self.images_dir.glob(f"*{_TRASH}"))
        if not pending:
            return
        with self._write() as con:
            for trash in pending:
                name = trash.name[: -len(_TRASH)]
                if self._image_in_use(con, name):
                    os.replace(trash, self.images_dir / name)
                else:
                    trash.unlink(missing_ok=True)

    # ---- images -------------------------------------------------------------------------------------
    @staticmethod
    def _image_in_use(con: sqlite3.Connection, name: str) -> bool:
        return con.execute("SELECT 1 FROM examinations WHERE image_file = ? LIMIT 1", (name,)).fetchone() is not None

    def _store_image(self, data: bytes, suffix: str) -> tuple[str, str]:
        """Content-addressed: the same bytes are one file, whoever stores them."""
        digest = hashlib.sha256(data).hexdigest()
        name = digest + suffix
        path = self.images_dir / name
        if not (path.is_file() and path.stat().st_size == len(data)):
            _write_private(path, data)
        return name, digest

    def _release_images(self, con: sqlite3.Connection, names: Sequence[str]) -> builtins.list[Path]:
        """Set aside the files no examination uses any more (inside the deleting transaction); the caller
        removes the returned paths after COMMIT. A crash in between is settled at the next open."""
        trash = []
        for name in set(names):
            if not self._image_in_use(con, name):
                src = self.images_dir / name
                if src.exists():
                    dst = self.images_dir / (name + _TRASH)
                    os.replace(src, dst)
                    trash.append(dst)
        return trash

    # ---- examinations -------------------------------------------------------------------------------
    def add(self, rgb: np.ndarray, probabilities: Sequence[float] | np.ndarray, *, source_name: str, model_version: str,
            source_path: str = "", warnings: Sequence[str] = (), details: dict[str, Any] | None = None,
            preprocessed: np.ndarray | None = None, heatmap: np.ndarray | None = None,
            original: bytes | Path | None = None, lesion_id: int | None = None, clinician: str = "") -> Record:
        """Store an examination. `original`: the encoded file (bytes or its path) the pixels came from, kept
        byte for byte; without it the pixels are stored as lossless PNG. The image file is written inside
        the transaction, so a row never points at a missing file."""
        probs = np.asarray(probabilities, dtype=np.float64)
        if probs.shape != (len(CLASS_CODES),) or not np.all(np.isfinite(probs)):
            raise ValueError(f"expected {len(CLASS_CODES)} finite probabilities, got {probs!r}")
        details = dict(details or {})
        if isinstance(original, Path):
            try:
                original = original.read_bytes()
            except OSError as e:  # gone since it was decoded: keep the pixels that were analysed
                original = None
                details["original_unreadable"] = f"{type(e).__name__}: {e}"
        if original:
            data, suffix, kind = bytes(original), image_suffix(original), IMAGE_ORIGINAL
        else:
            data, suffix, kind = encode_png(rgb), ".png", IMAGE_PNG
        created = _now()
        thumb = make_thumbnail(rgb)
        pre_png = encode_png(preprocessed) if preprocessed is not None else None
        heat_png = encode_png(np.clip(heatmap * 255.0 + 0.5, 0, 255).astype(np.uint8)) if heatmap is not None else None
        cols = ["lesion_id", "created", "source_name", "source_path", "image_file", "image_sha256", "image_kind",
                "thumbnail", "preprocessed", "heatmap", *_PROB_COLUMNS, "warnings", "model_version", "details",
                "clinician"]
        with self._write() as con:
            image_file, digest = self._store_image(data, suffix)
            try:
                earlier = [int(r[0]) for r in con.execute(
                    "SELECT id FROM examinations WHERE image_sha256 = ? ORDER BY id", (digest,))]
                if earlier:
                    details["same_image_as"] = earlier  # the same file examined before
                values = [lesion_id, created, source_name, source_path, image_file, digest, kind, thumb, pre_png,
                          heat_png, *[float(p) for p in probs], json.dumps(list(warnings)), model_version,
                          json.dumps(details), clinician]
                cur = con.execute(f"INSERT INTO examinations ({', '.join(cols)}) "
                                  f"VALUES ({', '.join('?' * len(cols))})", values)
            except BaseException:
                if not self._image_in_use(con, image_file):
                    (self.images_dir / image_file).unlink(missing_ok=True)
                raise
            rid = int(cur.lastrowid or 0)
        record = self.get(rid, full=False)
        assert record is not None
        record.preprocessed_png, record.heatmap_png = pre_png, heat_png
        return record

    _JOIN = ("FROM examinations e LEFT JOIN lesions l ON l.id = e.lesion_id "
             "LEFT JOIN patients p ON p.id = l.patient_id")
    _LESION_COLS = ("l.patient_id AS patient_id, l.body_site AS body_site, l.label AS lesion_label, "
                    "p.clinic_id AS patient_clinic_id, p.name AS patient_name")

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
            lesion_id=row["lesion_id"], image_sha256=row["image_sha256"], image_kind=row["image_kind"],
            clinician=row["clinician"], assessment=row["assessment"], notes=row["notes"],
            histopathology=row["histopathology"], histopathology_note=row["histopathology_note"],
            histopathology_date=row["histopathology_date"], patient_id=row["patient_id"],
            patient_clinic_id=row["patient_clinic_id"] or "", patient_name=row["patient_name"] or "",
            body_site=row["body_site"] or "", lesion_label=row["lesion_label"] or "",
        )

    def _records(self, where: str, params: Sequence[Any], order: str, limit: int | None = None,
                 full: bool = False) -> builtins.list[Record]:
        # Without `full` the network input and heat-map blobs are not even read: lists stay light.
        exam = "e.*" if full else _LIGHT_COLUMNS
        sql = (f"SELECT {exam}, {self._LESION_COLS} {self._JOIN} {where} ORDER BY {order}"
               + (f" LIMIT {int(limit)}" if limit is not None else ""))
        with self._read() as con:
            rows = con.execute(sql, params).fetchall()
        return [self._row_to_record(r, full=full) for r in rows]

    def list(self, limit: int = 500) -> builtins.list[Record]:
        """Newest first, without the large blobs (enough for a list with thumbnails)."""
        return self._records("", (), "e.id DESC", limit)

    def get(self, record_id: int, full: bool = True) -> Record | None:
        found = self._records("WHERE e.id = ?", (record_id,), "e.id", 1, full=full)
        return found[0] if found else None

    def unfiled(self, limit: int | None = 500) -> builtins.list[Record]:
        """Quick examinations not filed under a patient yet, newest first."""
        return self._records("WHERE e.lesion_id IS NULL", (), "e.created DESC, e.id DESC", limit)  # by the index

    def examinations_of(self, lesion_id: int) -> builtins.list[Record]:
        """A lesion's examinations, oldest first (its timeline)."""
        return self._records("WHERE e.lesion_id = ?", (lesion_id,), "e.created, e.id")

    def examinations_of_patient(self, patient_id: int) -> builtins.list[Record]:
        return self._records("WHERE l.patient_id = ?", (patient_id,), "e.lesion_id, e.created, e.id")

    def previous_examination(self, record: Record) -> Record | None:
        """The examination of the same lesion just before this one (for a follow-up comparison)."""
        if record.lesion_id is None or record.id is None:
            return None
        earlier = [r for r in self.examinations_of(record.lesion_id) if (r.created, r.id or 0) < (record.created,
                                                                                                    record.id)]
        return self.get(earlier[-1].id) if earlier and earlier[-1].id is not None else None

    def all_for_export(self, patient_id: int | None = None) -> Iterator[Record]:
        """Every examination (or one patient's), oldest first, one at a time with its blobs."""
        where, params = ("WHERE l.patient_id = ?", (patient_id,)) if patient_id is not None else ("", ())
        with self._read() as con:
            ids = [int(r[0]) for r in con.execute(
                f"SELECT e.id FROM examinations e LEFT JOIN lesions l ON l.id = e.lesion_id {where} "
                "ORDER BY e.created, e.id", params)]
        for rid in ids:
            rec = self.get(rid)
            if rec is not None:
                yield rec

    def ids(self) -> builtins.list[int]:
        """Every examination id, newest first."""
        with self._read() as con:
            return [int(r[0]) for r in con.execute("SELECT id FROM examinations ORDER BY id DESC")]

    def delete(self, record_id: int) -> bool:
        """Remove the examination, and its image unless another examination has the same file."""
        with self._write() as con:
            row = con.execute("SELECT image_file FROM examinations WHERE id = ?", (record_id,)).fetchone()
            if row is None:
                return False
            con.execute("DELETE FROM examinations WHERE id = ?", (record_id,))
            trash = self._release_images(con, [row["image_file"]])
        for t in trash:
            t.unlink(missing_ok=True)
        return True

    def update_details(self, record_id: int, changes: dict[str, Any]) -> bool:
        """Merge `changes` into a record's details (e.g. the user chose to see an out-of-scope result)."""
        with self._write() as con:
            row = con.execute("SELECT details FROM examinations WHERE id = ?", (record_id,)).fetchone()
            if row is None:
                return False
            try:
                details = json.loads(row["details"])
            except (TypeError, ValueError):
                details = {}
            details = {**(details if isinstance(details, dict) else {}), **changes}
            con.execute("UPDATE examinations SET details = ? WHERE id = ?", (json.dumps(details), record_id))
        return True

    def assign(self, record_id: int, lesion_id: int | None) -> bool:
        """File an examination under a lesion (or take it back out: None)."""
        with self._write() as con:
            if lesion_id is not None and self._lesion_row(con, lesion_id) is None:
                raise HistoryError(f"Lesion #{lesion_id} no longer exists.")
            cur = con.execute("UPDATE examinations SET lesion_id = ? WHERE id = ?", (lesion_id, record_id))
            return cur.rowcount > 0

    def set_assessment(self, record_id: int, *, clinician: str, assessment: str, notes: str) -> bool:
        """The clinician's own reading of the examination."""
        with self._write() as con:
            cur = con.execute("UPDATE examinations SET clinician = ?, assessment = ?, notes = ? WHERE id = ?",
                              (clinician.strip(), assessment.strip(), notes.strip(), record_id))
            return cur.rowcount > 0

    def set_histopathology(self, record_id: int, code: str, note: str = "", date: str = "") -> bool:
        """The histological diagnosis, added when it comes back ('' clears it)."""
        code = code.strip().lower()
        if code and code not in HISTOPATHOLOGY_CODES:
            raise ValueError(f"Unknown histopathology {code!r}: expected one of {', '.join(HISTOPATHOLOGY_CODES)}.")
        if date.strip():
            date = _dt.date.fromisoformat(date.strip()).isoformat()
        with self._write() as con:
            cur = con.execute("UPDATE examinations SET histopathology = ?, histopathology_note = ?, "
                              "histopathology_date = ? WHERE id = ?", (code, note.strip(), date.strip(), record_id))
            return cur.rowcount > 0

    def count(self) -> int:
        with self._read() as con:
            return int(con.execute("SELECT COUNT(*) FROM examinations").fetchone()[0])

    # ---- patients and lesions -----------------------------------------------------------------------
    @staticmethod
    def _patient(row: sqlite3.Row) -> Patient:
        return Patient(int(row["id"]), row["clinic_id"], row["name"], row["birth"], row["sex"], row["created"])

    @staticmethod
    def _lesion(row: sqlite3.Row) -> Lesion:
        return Lesion(int(row["id"]), int(row["patient_id"]), row["body_site"], row["label"], row["created"])

    @staticmethod
    def _lesion_row(con: sqlite3.Connection, lesion_id: int) -> sqlite3.Row | None:
        row: sqlite3.Row | None = con.execute("SELECT * FROM lesions WHERE id = ?", (lesion_id,)).fetchone()
        return row

    @staticmethod
    def _check_patient_fields(clinic_id: str, birth: str, sex: str) -> tuple[str, str, str]:
        clinic_id = clinic_id.strip()
        if not clinic_id:
            raise ValueError("A patient needs the clinic's ID.")
        if len(clinic_id) > 64:
            raise ValueError("The patient ID is longer than 64 characters.")
        sex = sex.strip().lower()
        if sex not in SEXES:
            raise ValueError(f"Sex must be female, male or not recorded, not {sex!r}.")
        return clinic_id, parse_birth(birth), sex

    def add_patient(self, clinic_id: str, name: str = "", birth: str = "", sex: str = "") -> Patient:
        clinic_id, birth, sex = self._check_patient_fields(clinic_id, birth, sex)
        with self._write() as con:
            if con.execute("SELECT 1 FROM patients WHERE clinic_id = ? COLLATE NOCASE", (clinic_id,)).fetchone():
                raise ValueError(f"There is already a patient with the ID {clinic_id}.")
            cur = con.execute("INSERT INTO patients (clinic_id, name, birth, sex, created) VALUES (?, ?, ?, ?, ?)",
                              (clinic_id, name.strip(), birth, sex, _now()))
            pid = int(cur.lastrowid or 0)
        patient = self.get_patient(pid)
        assert patient is not None
        return patient

    def update_patient(self, patient_id: int, clinic_id: str, name: str = "", birth: str = "",
                       sex: str = "") -> Patient:
        clinic_id, birth, sex = self._check_patient_fields(clinic_id, birth, sex)
        with self._write() as con:
            clash = con.execute("SELECT id FROM patients WHERE clinic_id = ? COLLATE NOCASE AND id != ?",
                                (clinic_id, patient_id)).fetchone()
            if clash:
                raise ValueError(f"There is already a patient with the ID {clinic_id}.")
            con.execute("UPDATE patients SET clinic_id = ?, name = ?, birth = ?, sex = ? WHERE id = ?",
                        (clinic_id, name.strip(), birth, sex, patient_id))
        patient = self.get_patient(patient_id)
        if patient is None:
            raise HistoryError(f"Patient #{patient_id} no longer exists.")
        return patient

    def get_patient(self, patient_id: int) -> Patient | None:
        with self._read() as con:
            row = con.execute("SELECT * FROM patients WHERE id = ?", (patient_id,)).fetchone()
        return self._patient(row) if row is not None else None

    def find_patient(self, clinic_id: str) -> Patient | None:
        with self._read() as con:
            row = con.execute("SELECT * FROM patients WHERE clinic_id = ? COLLATE NOCASE",
                              (clinic_id.strip(),)).fetchone()
        return self._patient(row) if row is not None else None

    def patients(self, search: str = "", limit: int | None = None) -> builtins.list[PatientSummary]:
        """Patients whose clinic ID or name contains `search` (any case), most recently examined first."""
        where, params = "", []
        if search.strip():
            pattern = "%" + search.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where = "WHERE p.clinic_id LIKE ? ESCAPE '\\' OR p.name LIKE ? ESCAPE '\\'"
            params = [pattern, pattern]
        sql = (f"SELECT p.*, COUNT(DISTINCT l.id) AS n_lesions, COUNT(e.id) AS n_exams, "
               f"COALESCE(MAX(e.created), '') AS last_exam FROM patients p "
               f"LEFT JOIN lesions l ON l.patient_id = p.id LEFT JOIN examinations e ON e.lesion_id = l.id "
               f"{where} GROUP BY p.id ORDER BY last_exam DESC, p.id DESC"
               + (f" LIMIT {int(limit)}" if limit is not None else ""))
        with self._read() as con:
            rows = con.execute(sql, params).fetchall()
        return [PatientSummary(self._patient(r), int(r["n_lesions"]), int(r["n_exams"]), r["last_exam"])
                for r in rows]

    def add_lesion(self, patient_id: int, body_site: str, label: str = "") -> Lesion:
        if body_site not in BODY_SITES:
            raise ValueError(f"Unknown body site {body_site!r}: expected one of {', '.join(BODY_SITES)}.")
        with self._write() as con:
            if con.execute("SELECT 1 FROM patients WHERE id = ?", (patient_id,)).fetchone() is None:
                raise HistoryError(f"Patient #{patient_id} no longer exists.")
            cur = con.execute("INSERT INTO lesions (patient_id, body_site, label, created) VALUES (?, ?, ?, ?)",
                              (patient_id, body_site, label.strip(), _now()))
            lid = int(cur.lastrowid or 0)
        lesion = self.get_lesion(lid)
        assert lesion is not None
        return lesion

    def update_lesion(self, lesion_id: int, body_site: str, label: str = "") -> bool:
        if body_site not in BODY_SITES:
            raise ValueError(f"Unknown body site {body_site!r}: expected one of {', '.join(BODY_SITES)}.")
        with self._write() as con:
            cur = con.execute("UPDATE lesions SET body_site = ?, label = ? WHERE id = ?",
                              (body_site, label.strip(), lesion_id))
            return cur.rowcount > 0

    def get_lesion(self, lesion_id: int) -> Lesion | None:
        with self._read() as con:
            row = self._lesion_row(con, lesion_id)
        return self._lesion(row) if row is not None else None

    def lesions(self, patient_id: int) -> builtins.list[LesionSummary]:
        with self._read() as con:
            rows = con.execute(
                "SELECT l.*, COUNT(e.id) AS n_exams, COALESCE(MAX(e.created), '') AS last_exam FROM lesions l "
                "LEFT JOIN examinations e ON e.lesion_id = l.id WHERE l.patient_id = ? GROUP BY l.id ORDER BY l.id",
                (patient_id,)).fetchall()
        return [LesionSummary(self._lesion(r), int(r["n_exams"]), r["last_exam"]) for r in rows]

    def patient_deletion(self, patient_id: int) -> Deletion:
        """What deleting this patient removes (for the confirmation that names it)."""
        with self._read() as con:
            row = con.execute(
                "SELECT COUNT(DISTINCT l.id), COUNT(e.id), COUNT(DISTINCT e.image_file) FROM lesions l "
                "LEFT JOIN examinations e ON e.lesion_id = l.id WHERE l.patient_id = ?", (patient_id,)).fetchone()
        return Deletion(1, int(row[0]), int(row[1]), int(row[2]))

    def delete_patient(self, patient_id: int) -> Deletion:
        """The patient, their lesions, examinations and images, in one transaction."""
        with self._write() as con:
            if con.execute("SELECT 1 FROM patients WHERE id = ?", (patient_id,)).fetchone() is None:
                return Deletion(0, 0, 0, 0)
            lesion_ids = [int(r[0]) for r in con.execute("SELECT id FROM lesions WHERE patient_id = ?",
                                                         (patient_id,))]
            images = self._delete_examinations(con, "lesion_id IN (SELECT id FROM lesions WHERE patient_id = ?)",
                                               (patient_id,))
            con.execute("DELETE FROM lesions WHERE patient_id = ?", (patient_id,))
            con.execute("DELETE FROM patients WHERE id = ?", (patient_id,))
            trash = self._release_images(con, images)
        for t in trash:
            t.unlink(missing_ok=True)
        return Deletion(1, len(lesion_ids), len(images), len(trash))

    def delete_lesion(self, lesion_id: int) -> Deletion:
        with self._write() as con:
            images = self._delete_examinations(con, "lesion_id = ?", (lesion_id,))
            n = con.execute("DELETE FROM lesions WHERE id = ?", (lesion_id,)).rowcount
            trash = self._release_images(con, images)
        for t in trash:
            t.unlink(missing_ok=True)
        return Deletion(0, n, len(images), len(trash))

    @staticmethod
    def _delete_examinations(con: sqlite3.Connection, where: str, params: Sequence[Any]) -> builtins.list[str]:
        images = [r[0] for r in con.execute(f"SELECT image_file FROM examinations WHERE {where}", params)]
        con.execute(f"DELETE FROM examinations WHERE {where}", params)
        return images

    # ---- retention, backup --------------------------------------------------------------------------
    @staticmethod
    def retention_cutoff(years: int, today: _dt.date | None = None) -> str:
        """The ISO date before which examinations are past a retention period of `years`."""
        today = today or _dt.date.today()
        try:
            cutoff = today.replace(year=today.year - years)
        except ValueError:  # 29 February
            cutoff = today.replace(year=today.year - years, day=28)
        return cutoff.isoformat()

    def count_before(self, cutoff: str) -> int:
        """Examinations made before `cutoff` (an ISO date): what a retention period would delete."""
        with self._read() as con:
            return int(con.execute("SELECT COUNT(*) FROM examinations WHERE substr(created, 1, 10) < ?",
                                   (cutoff,)).fetchone()[0])

    def delete_before(self, cutoff: str) -> Deletion:
        """Apply a retention period: examinations before `cutoff` and their images go; so do lesions and
        patients left with no examination at all."""
        with self._write() as con:
            images = self._delete_examinations(con, "substr(created, 1, 10) < ?", (cutoff,))
            lesions = con.execute("DELETE FROM lesions WHERE id NOT IN (SELECT DISTINCT lesion_id FROM "
                                  "examinations WHERE lesion_id IS NOT NULL) AND created < ?", (cutoff,)).rowcount
            patients = con.execute("DELETE FROM patients WHERE id NOT IN (SELECT patient_id FROM lesions) "
                                   "AND created < ?", (cutoff,)).rowcount
            trash = self._release_images(con, images)
        for t in trash:
            t.unlink(missing_ok=True)
        return Deletion(patients, lesions, len(images), len(trash))

    def backup(self, destination: Path, progress: Callable[[float, str], None] | None = None) -> Path:
        """A consistent copy while the program runs: SQLite's online backup of the database, then the image
        files it refers to (they never change once written). Returns the new backup folder."""
        folder = Path(destination) / f"LesionDesktop-backup-{_dt.datetime.now():%Y%m%d-%H%M%S}"
        _private_dir(folder.parent)
        folder.mkdir(mode=0o700)
        images = folder / "images"
        images.mkdir(mode=0o700)
        target = folder / DB_NAME
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        src = sqlite3.connect(self.db_path, timeout=10)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            names = [r[0] for r in dst.execute("SELECT DISTINCT image_file FROM examinations")]
        finally:
            dst.close()
            src.close()
        missing = 0
        for i, name in enumerate(names):
            if progress is not None and i % 20 == 0:
                progress(i / max(1, len(names)), f"Copying image {i + 1} of {len(names)}…")
            try:
                _write_private(images / name, (self.images_dir / name).read_bytes())
            except FileNotFoundError:
                missing += 1
        if missing:
            (folder / "MISSING-IMAGES.txt").write_text(
                f"{missing} image file(s) the history refers to were missing when this backup was made.\n",
                encoding="utf-8")
        return folder
