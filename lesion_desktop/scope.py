"""The scope gate: is this a dermoscopy image of a skin lesion, like the ones the models were trained on?

A classifier gives seven probabilities for anything, a cartoon or a page of text included; the gate
decides whether those probabilities mean anything. Two parts (docs/scope.md has the method and figures):

- Cheap image checks catch what needs no model: almost no colour (black-and-white photos, scans, most
  screenshots), one flat colour, and pictures made of perfectly uniform areas (drawings, text, screenshots).
- A feature-space distance: for each ensemble member, how far the image's pooled penultimate features lie
  from the training images' features, outside the principal subspace they span (the residual norm after
  projecting on the top principal components, cf. ViM, Wang et al. 2022). Each member's distance is divided
  by its spread on the validation split and the largest member's is the score; the threshold was set on the
  validation split.

Numpy only at run time (no torch): the lite edition uses it too. Stored beside the models as `scope.json`
(settings, figures, the arrays' sha256) and `scope.npz` (float16 arrays, read with allow_pickle=False).
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lesion_desktop.errors import BundleError
from lesion_desktop.imageio import (
    BLUR_THRESHOLD,
    CLIPPED_FRACTION,
    CLIPPED_LEVEL,
    DARK_THRESHOLD,
    QUALITY_SIZE,
    QualityReport,
    quality_check,
)
from lesion_desktop.manifest import MANIFEST, read_json_object, sha256_file
from lesion_desktop.wording import QT_TRANSLATE_NOOP, Joined, Phrase, recognise

SCOPE_FORMAT = "lesion-desktop-scope"
SCOPE_FORMAT_VERSION = 1
SCOPE_FILE = "scope.json"
ARRAYS_FILE = "scope.npz"
MAX_ARRAYS_BYTES = 64 * 1024 * 1024
NEAR_BLACK = 30  # a pixel whose channels are all at most this is part of a black border
MIN_COUNTED = 0.2  # the drawing check needs this share of the image neither near-black nor clipped
WORK_SIZE = (150, 200)  # (height, width): the checks look at the image at the training copies' resolution

# The gate's reasons, marked for translators (lesion_desktop.wording): the window shows them in the clinic's language.
NOT_DERMOSCOPY = "This does not look like a dermoscopy image of a skin lesion"  # how every reason starts
REASONS = {
    "grey": QT_TRANSLATE_NOOP("Scope", "This does not look like a dermoscopy image of a skin lesion: it has almost no "
                              "colour (a black-and-white photo, a scan or a greyscale picture)."),
    "flat": QT_TRANSLATE_NOOP("Scope", "This does not look like a dermoscopy image of a skin lesion: it is almost one "
                              "flat colour, with nothing to judge."),
    "drawing": QT_TRANSLATE_NOOP("Scope", "This does not look like a dermoscopy image of a skin lesion: large parts of "
                                 "it are perfectly uniform, as in a drawing, a screenshot or text."),
    "features": QT_TRANSLATE_NOOP("Scope", "This does not look like a dermoscopy image of a skin lesion like those the "
                                  "models were trained on (it may be a photo of something else, a drawing, text, a "
                                  "screenshot or a microscope slide)."),
}
ADVICE = QT_TRANSLATE_NOOP("Scope", "The models cannot judge it, so no diagnosis is given; use a dermoscopy image of "
                           "the lesion.")
OUT_OF_SCOPE_WARNING = QT_TRANSLATE_NOOP("Scope", "out of scope: {reason}")  # a result's warning (CLI, PDF)


def reason_for(kind: str) -> str:
    """What the user is told about an image the gate refused for `kind` ("grey", "flat", "drawing", "features")."""
    return Joined([Phrase(REASONS[kind]), Phrase(ADVICE)])


def finding_of(reason: str) -> str:
    """A refusal's reason without the advice after it (for a result the user chose to see anyway)."""
    found = recognise(reason)
    if isinstance(found, Joined):
        return Joined([p for p in found.parts if p != ADVICE], found.sep)
    return str(reason).replace(ADVICE, "").strip()


@dataclass(frozen=True)
class ImageChecks:
    """Limits of the image checks; each was set well outside what any training or validation image reaches."""

    min_colourfulness: float = 3.0  # Hasler & Suesstrunk's colourfulness; HAM10000's lowest is 11.4
    min_channel_std: float = 2.0  # largest per-channel standard deviation (grey levels)
    max_flat_fraction: float = 0.5  # pixels whose neighbours right and below are identical; HAM10000's highest 0.41

    @classmethod
    def from_dict(cls, d: Any) -> ImageChecks:
        if not isinstance(d, dict):
            raise ValueError("image_checks must be an object")
        out = {}
        for f in ("min_colourfulness", "min_channel_std", "max_flat_fraction"):
            v = d.get(f)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)) or v < 0:
                raise ValueError(f"image_checks.{f} must be a finite non-negative number, not {v!r}")
            out[f] = float(v)
        return cls(**out)


@dataclass(frozen=True)
class ImageStats:
    colourfulness: float  # after stretching a dark image's levels, so under-exposure does not read as grey
    channel_std: float
    flat_fraction: float  # of the pixels neither near-black nor clipped white
    brightness: float  # mean grey level


def work_image(rgb: np.ndarray) -> np.ndarray:
    """The image at about the training copies' resolution (area-averaged, centre 4:3 crop), as uint8."""
    from lesion_desktop.preprocess import normalise_resolution

    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
            and rgb.shape[0] > 0 and rgb.shape[1] > 0):
        raise ValueError("the scope gate expects a non-empty HxWx3 uint8 RGB image")
    return normalise_resolution(rgb, WORK_SIZE)


def image_stats(rgb: np.ndarray) -> ImageStats:
    img = work_image(rgb)
    f = img.astype(np.float32)
    grey = f @ np.array([0.299, 0.587, 0.114], np.float32)
    gain = min(8.0, max(1.0, 255.0 / max(float(np.percentile(grey, 99)), 1.0)))
    r, g, b = f[..., 0] * gain, f[..., 1] * gain, f[..., 2] * gain
    rg, yb = r - g, 0.5 * (r + g) - b
    colourfulness = math.hypot(float(rg.std()), float(yb.std())) + 0.3 * math.hypot(float(rg.mean()),
                                                                                      float(yb.mean()))
    channel_std = float(f.reshape(-1, 3).std(0).max())
    # Identical neighbours among pixels that are neither near-black (a round dermatoscope's black corners) nor
    # clipped white (over-exposure): neither is a sign of a drawing.
    core = img[:-1, :-1]
    counted = (core.max(axis=2) > NEAR_BLACK) & (core.min(axis=2) < CLIPPED_LEVEL)
    same = np.all(img[:-1, 1:] == core, axis=2) & np.all(img[1:, :-1] == core, axis=2) & counted
    n = int(counted.sum())
    flat = float(same.sum()) / n if n >= MIN_COUNTED * max(core.shape[0] * core.shape[1], 1) else 0.0
    return ImageStats(colourfulness, channel_std, flat, float(grey.mean()))


def image_finding(stats: ImageStats, checks: ImageChecks) -> str:
    """The first check the image fails ("flat", "grey", "drawing"), or "" when it passes them all.

    The drawing check is not made on a dark image: its few grey levels make neighbours identical.
    """
    if stats.channel_std < checks.min_channel_std:
        return "flat"
    if stats.colourfulness < checks.min_colourfulness:
        return "grey"
    if stats.flat_fraction > checks.max_flat_fraction and stats.brightness >= DARK_THRESHOLD:
        return "drawing"
    return ""


def dark_or_blurred(quality: QualityReport, image: np.ndarray) -> bool:
    """The quality check calls the image too dark, or blurred (not merely small or over-exposed).

    Photos of real lesions that are dark or out of focus lie far from the training features too; telling the
    user to retake them is the quality check's job. An over-exposed photo is mostly white: nothing to judge.
    """
    if quality.brightness < DARK_THRESHOLD:
        return True
    long_side, short_side = QUALITY_SIZE
    small = min(quality.width, quality.height) < short_side or max(quality.width, quality.height) < long_side
    if small or quality.sharpness >= BLUR_THRESHOLD:
        return False
    grey = work_image(image).astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return float(np.mean(grey >= CLIPPED_LEVEL)) <= CLIPPED_FRACTION


@dataclass(frozen=True)
class MemberDistance:
    """One member's distance of features from the training features' principal subspace."""

    name: str
    mean: np.ndarray  # (D,) training features' mean
    basis: np.ndarray  # (D, k) orthonormal principal directions
    median: float  # the distance's median on the validation split
    scale: float  # its 99th percentile minus the median, on the validation split

    def distance(self, features: np.ndarray) -> np.ndarray:
        """(N, D) -> (N,) residual norms."""
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"{self.name}: expected features of length {self.mean.shape[0]}, got shape {x.shape}")
        centred = x - self.mean
        residual = centred - (centred @ self.basis) @ self.basis.T
        return np.linalg.norm(residual, axis=1)

    def standardised(self, features: np.ndarray) -> np.ndarray:
        return (self.distance(features) - self.median) / self.scale


@dataclass(frozen=True)
class ScopeResult:
    """The gate's answer for one image. `score` and `threshold` are in validation-spread units; `kind` is
    "" (in scope), "features", "grey", "flat" or "drawing"."""

    in_scope: bool
    score: float
    threshold: float
    reason: str
    kind: str = ""

    @property
    def warning(self) -> str:
        """The CLI's warning text: empty when the image is in scope."""
        return "" if self.in_scope else Phrase(OUT_OF_SCOPE_WARNING, reason=self.reason)


@dataclass
class ScopeModel:
    members: list[MemberDistance]
    threshold: float
    checks: ImageChecks = field(default_factory=ImageChecks)
    calibration: dict[str, Any] = field(default_factory=dict)
    fitted_for: dict[str, str] = field(default_factory=dict)  # member name -> its manifest's sha256
    # Used instead of `threshold` when the quality check finds the image dark or blurred: such a
    # photo of a real lesion lies far from the training features too, and asking for a retake is the quality
    # check's business. Set on degraded validation images; None: the same threshold for every image.
    poor_quality_threshold: float | None = None

    @property
    def member_names(self) -> list[str]:
        return [m.name for m in self.members]

    def feature_scores(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """{member name: (N, D) or (D,)} -> (N,) scores: the largest standardised member distance."""
        missing = [m.name for m in self.members if m.name not in features]
        if missing:
            raise ValueError(f"the scope gate needs the features of {', '.join(missing)}")
        per = []
        for m in self.members:
            x = np.asarray(features[m.name])
            per.append(m.standardised(x[None, :] if x.ndim == 1 else x))
        return np.max(np.stack(per), axis=0)

    def threshold_for(self, quality: QualityReport, image: np.ndarray) -> float:
        if self.poor_quality_threshold is not None and dark_or_blurred(quality, image):
            return max(self.threshold, self.poor_quality_threshold)
        return self.threshold

    def check(self, features: Mapping[str, np.ndarray], image: np.ndarray,
              quality: QualityReport | None = None) -> ScopeResult:
        """One image: its members' (D,) features and its RGB uint8 pixels (any size, as the user gave it).

        `quality`: the image's quality_check report when the caller has it (computed here otherwise).
        """
        score = float(self.feature_scores(features)[0])
        finding = image_finding(image_stats(image), self.checks)
        threshold = self.threshold_for(quality if quality is not None else quality_check(image), image)
        if not finding and score <= threshold:  # a NaN score is out of scope, never in
            return ScopeResult(True, score, threshold, "", "")
        kind = finding or "features"
        return ScopeResult(False, score, threshold, reason_for(kind), kind)

    # ---- files ---------------------------------------------------------------------------------------------
    def save(self, folder: Path) -> dict[str, Any]:
        """Write scope.npz and scope.json into `folder`; returns the block for the ensemble manifest."""
        folder = Path(folder)
        arrays: dict[str, np.ndarray] = {}
        entries = []
        for i, m in enumerate(self.members):
            arrays[f"m{i}_mean"] = m.mean.astype(np.float32)
            arrays[f"m{i}_basis"] = m.basis.astype(np.float16)
            entries.append({"name": m.name, "features": int(m.mean.shape[0]), "components": int(m.basis.shape[1]),
                            "median": float(m.median), "scale": float(m.scale),
                            "manifest_sha256": self.fitted_for.get(m.name, "")})
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        _write_atomic(folder / ARRAYS_FILE, buf.getvalue())
        doc = {
            "format": SCOPE_FORMAT,
            "format_version": SCOPE_FORMAT_VERSION,
            "method": "largest member residual norm outside the training features' principal subspace, "
                      "standardised on validation; plus image checks",
            "threshold": float(self.threshold),
            "poor_quality_threshold": (None if self.poor_quality_threshold is None
                                       else float(self.poor_quality_threshold)),
            "image_checks": asdict(self.checks),
            "members": entries,
            "arrays_file": ARRAYS_FILE,
            "arrays_sha256": sha256_file(folder / ARRAYS_FILE),
            "calibration": self.calibration,
        }
        _write_atomic(folder / SCOPE_FILE, (json.dumps(doc, indent=1) + "\n").encode())
        headline = {k: {f: v[f] for f in ("n", "flagged", "rate") if f in v}
                    for k, v in self.calibration.items() if isinstance(v, dict) and "rate" in v}
        return {"file": SCOPE_FILE, "sha256": sha256_file(folder / SCOPE_FILE), "threshold": float(self.threshold),
                "poor_quality_threshold": doc["poor_quality_threshold"], "calibration": headline}


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _number(d: dict[str, Any], key: str, where: str, positive: bool = False) -> float:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise BundleError(f"{where}: '{key}' must be a number.")
    try:
        x = float(v)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x) or (positive and x <= 0):
        raise BundleError(f"{where}: '{key}' must be a finite{' positive' if positive else ''} number, not {v!r}.")
    return x


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    where = path.name
    if path.stat().st_size > MAX_ARRAYS_BYTES:
        raise BundleError(f"{where} is {path.stat().st_size} bytes; a scope model is never that large.")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, RuntimeError) as e:
        raise BundleError(f"{where} cannot be read ({type(e).__name__}: {str(e)[:150]}).") from None


def load_scope_file(folder: Path, expected_sha256: str | None = None) -> ScopeModel:
    """Read and verify `folder`/scope.json and its arrays; BundleError saying what is wrong."""
    folder = Path(folder)
    path = folder / SCOPE_FILE
    if not path.is_file():
        raise BundleError(f"{folder}: the scope model {SCOPE_FILE} is missing.")
    if expected_sha256 is not None and sha256_file(path) != expected_sha256:
        raise BundleError(f"{folder}: {SCOPE_FILE} has been modified or damaged (its sha256 does not match the "
                          "models' manifest).")
    doc = read_json_object(path)
    where = f"{folder}/{SCOPE_FILE}"
    if doc.get("format") != SCOPE_FORMAT:
        raise BundleError(f"{where}: not a scope model (format {doc.get('format')!r}).")
    if doc.get("format_version") != SCOPE_FORMAT_VERSION:
        raise BundleError(f"{where}: scope format version {doc.get('format_version')!r} is not supported.")
    threshold = _number(doc, "threshold", where)
    poor = None if doc.get("poor_quality_threshold") is None else _number(doc, "poor_quality_threshold", where)
    try:
        checks = ImageChecks.from_dict(doc.get("image_checks"))
    except ValueError as e:
        raise BundleError(f"{where}: {e}.") from None
    aname = doc.get("arrays_file")
    if not isinstance(aname, str) or Path(aname).name != aname or not aname.endswith(".npz"):
        raise BundleError(f"{where}: arrays_file must name a .npz file beside it.")
    apath = folder / aname
    if not apath.is_file():
        raise BundleError(f"{folder}: the scope model's arrays {aname} are missing.")
    if sha256_file(apath) != doc.get("arrays_sha256"):
        raise BundleError(f"{folder}: {aname} has been modified or damaged (sha256 does not match {SCOPE_FILE}).")
    arrays = _read_arrays(apath)
    entries = doc.get("members")
    if not isinstance(entries, list) or not entries:
        raise BundleError(f"{where}: 'members' must be a non-empty list.")
    members = []
    fitted_for = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise BundleError(f"{where}: member entry {i} is malformed.")
        ent: dict[str, Any] = entry
        mean, basis = arrays.get(f"m{i}_mean"), arrays.get(f"m{i}_basis")
        if mean is None or basis is None:
            raise BundleError(f"{folder}: {aname} lacks the arrays of member {ent['name']!r}.")
        if (mean.ndim != 1 or basis.ndim != 2 or basis.shape[0] != mean.shape[0] or basis.shape[1] >= mean.shape[0]
                or mean.dtype.kind != "f" or basis.dtype.kind != "f"):
            raise BundleError(f"{folder}: {aname} holds arrays of the wrong shape for member {ent['name']!r}.")
        mean32, basis32 = mean.astype(np.float32), basis.astype(np.float32)
        if not (np.isfinite(mean32).all() and np.isfinite(basis32).all()):
            raise BundleError(f"{folder}: {aname} holds non-finite numbers for member {ent['name']!r}.")
        members.append(MemberDistance(ent["name"], mean32, basis32, _number(ent, "median", where),
                                      _number(ent, "scale", where, positive=True)))
        if isinstance(ent.get("manifest_sha256"), str) and ent["manifest_sha256"]:
            fitted_for[ent["name"]] = ent["manifest_sha256"]
    found = doc.get("calibration")
    calibration: dict[str, Any] = found if isinstance(found, dict) else {}
    return ScopeModel(members, threshold, checks, calibration, fitted_for, poor)


def load_scope(models_dir: Path) -> ScopeModel | None:
    """The scope model of a model folder (ensemble or single bundle), or None when it has none.

    When the folder's manifest has a "scope" block, scope.json must match its sha256, and the models it was
    fitted for must be the folder's members; a damaged, swapped or mismatched scope model is a BundleError.
    """
    models_dir = Path(models_dir)
    manifest = read_json_object(models_dir / MANIFEST)
    block = manifest.get("scope")
    if block is None:
        if not (models_dir / SCOPE_FILE).is_file():
            return None
        expected = None
    else:
        if not isinstance(block, dict) or block.get("file") != SCOPE_FILE or not isinstance(block.get("sha256"), str):
            raise BundleError(f"{models_dir}: the manifest's scope block is malformed.")
        expected = block["sha256"]
    model = load_scope_file(models_dir, expected)
    _check_members(model, models_dir, manifest)
    return model


def _check_members(model: ScopeModel, models_dir: Path, manifest: dict[str, Any]) -> None:
    entries = manifest.get("members")
    if isinstance(entries, list):  # an ensemble: members are its sub-folders, with their manifests' sha256
        digests = {Path(str(e.get("path"))).name: e.get("manifest_sha256") for e in entries if isinstance(e, dict)}
    else:  # a single bundle (its own manifest holds the scope block, so its sha256 cannot be recorded)
        digests = {models_dir.name: None}
    if not set(model.member_names) <= set(digests):  # members without pooled features are left out of the fit
        raise BundleError(f"{models_dir}: the scope model was fitted for members {model.member_names}, but the "
                          f"folder holds {sorted(digests)}.")
    for name, fitted in model.fitted_for.items():
        actual = digests.get(name)
        if actual is None and entries is not None and (models_dir / name / MANIFEST).is_file():
            actual = sha256_file(models_dir / name / MANIFEST)
        if isinstance(actual, str) and actual != fitted:
            raise BundleError(f"{models_dir}: the scope model was fitted for other weights of {name}; refit it "
                              "(python -m training scope).")
