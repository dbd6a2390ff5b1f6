"""The user's settings: one typed schema, saved as readable JSON in the platform's config folder.

The settings dialog builds its form from the field metadata declared here (label, help, choices,
range), so a new setting needs one line here and nothing in the GUI. A damaged or hand-edited file
never stops the program: every unusable value falls back to its default with a logged warning.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from dataclasses import Field, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lesion_desktop.paths import config_dir
from lesion_desktop.wording import QT_TRANSLATE_NOOP

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
SCHEMA_VERSION = 1
RESOLUTIONS: tuple[tuple[int, int], ...] = ((640, 480), (800, 600), (1280, 720), (1280, 960), (1920, 1080))
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d{1,2})?)$")


_AUTOMATIC = QT_TRANSLATE_NOOP("Settings", "Automatic (GPU when available)")  # marked once, at import


def device_choices() -> list[tuple[str, str]]:
    """(value, label) for every device this machine offers; each GPU is named, as the user knows it."""
    choices = [("auto", _AUTOMATIC), ("cpu", "CPU")]
    try:
        import torch

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                choices.append((f"cuda:{i}", f"GPU {i}: {torch.cuda.get_device_name(i)}"))
    except (ImportError, RuntimeError) as e:  # a broken CUDA install must not hide the CPU choice
        log.warning("Could not list CUDA devices: %s", e)
    return choices


def _meta(label: str, tip: str = "", *, group: str = "General", choices: Any = None,
          minimum: float | None = None, maximum: float | None = None, step: float | None = None,
          kind: str = "", decimals: int = 2) -> dict[str, Any]:
    return {"label": label, "help": tip, "group": group, "choices": choices, "min": minimum, "max": maximum,
            "step": step, "kind": kind, "decimals": decimals}


# Labels, help and groups are marked for translators (lesion_desktop.wording): the settings dialog shows them in
# the clinic's language, under the context "Settings".
_MODELS = QT_TRANSLATE_NOOP("Settings", "Models")
_RESULT = QT_TRANSLATE_NOOP("Settings", "Result")
_CAMERA = QT_TRANSLATE_NOOP("Settings", "Camera")
_RECORDS = QT_TRANSLATE_NOOP("Settings", "Records")


@dataclass(frozen=True)
class Settings:
    device: str = field(default="auto", metadata=_meta(
        QT_TRANSLATE_NOOP("Settings", "Compute device"),
        QT_TRANSLATE_NOOP("Settings", "Where the models run. Automatic uses the first GPU when there is one."),
        group=_MODELS, choices=device_choices))
    models_dir: str = field(default="", metadata=_meta(
        QT_TRANSLATE_NOOP("Settings", "Models folder override"),
        QT_TRANSLATE_NOOP("Settings", "Leave empty to use the installed (or bundled) models. A folder here takes "
                          "precedence over retrained models."), group=_MODELS, kind="directory"))
    tta: bool = field(default=False, metadata=_meta(
        QT_TRANSLATE_NOOP("Settings", "Test-time augmentation"),
        QT_TRANSLATE_NOOP("Settings", "Average flipped and rotated views: steadier, about 6x slower."),
        group=_MODELS))
    warning_threshold: float = field(default=0.30, metadata=_meta(
        QT_TRANSLATE_NOOP("Settings", "Malignancy warning threshold"),
        QT_TRANSLATE_NOOP("Settings", "Show the red warning when melanoma + basal cell carcinoma + actinic keratosis "
                          "together reach this probability, whatever the top label is. Lower catches more melanomas "
                          "and warns on more benign lesions: 'Active models' below shows both rates per threshold "
                          "when the models record them."),
        group=_RESULT, minimum=0.01, maximum=0.99, step=0.01))
    show_heatmap: bool = field(default=True, metadata=_meta(
        QT_TRANSLATE_NOOP("Settings", "Show the heat-map"),
        QT_TRANSLATE_NOOP("Settings", "Overlay the regions that drove the chosen class on the network input."),
        group=_RESULT))
    heatmap_opacity: float = field(default=0.45, metadata=_meta(
        QT_TRANSLATE_NOOP("Settings", "Heat-map opacity"), "", group=_RESULT, minimum=0.1, maximum=0.9, step=0.05))
    show_preprocessed: bool = field(default=True, metadata=_meta(
        QT_TRANSLATE_NOOP("Settings", "Show the network input"),
        QT_TRANSLATE_NOOP("Settings", "Show the preprocessed image (what the models see) beside the original."),
        group=_RESULT))
    camera_index: int = field(default=0, metadata=_meta(
        QT_TRANSLATE_NOOP("Settings", "Camera"),
        QT_TRANSLATE_NOOP("Settings", "Index of the webcam or dermatoscope (0 is the first one)."), group=_CAMERA,
        minimum=0, maximum=9))
    camera_resolution: tuple[int, int] = field(default=(1280, 720), metadata=_meta(
        QT_TRANSLATE_NOOP("Settings", "Camera resolution"),
        QT_TRANSLATE_NOOP("Settings", "Requested capture size; the camera may choose the nearest it supports."),
        group=_CAMERA, choices=tuple((r, f"{r[0]} x {r[1]}") for r in RESOLUTIONS)))
    camera_video: str = field(default="", metadata=_meta(
        QT_TRANSLATE_NOOP("Settings", "Video file instead of a camera"),
        QT_TRANSLATE_NOOP("Settings", "For demonstrations: a video file played as if it were the camera. Leave empty "
                          "to use the camera."), group=_CAMERA, kind="file"))
    clinician: str = field(default="", metadata=_meta(
        QT_TRANSLATE_NOOP("Settings", "Clinician"),
        QT_TRANSLATE_NOOP("Settings", "Your name, printed on reports and stored beside your assessments."),
        group=_RECORDS))
    follow_up_alert_points: float = field(default=10.0, metadata=_meta(
        QT_TRANSLATE_NOOP("Settings", "Follow-up alert (points)"),
        QT_TRANSLATE_NOOP("Settings", "A lesion's timeline and its report show a clear note when the malignant "
                          "classes' combined probability rose by more than this many percentage points since the "
                          "examination it is compared with."),
        group=_RECORDS, minimum=1, maximum=50, step=1, decimals=0))
    retention_years: int = field(default=0, metadata=_meta(
        QT_TRANSLATE_NOOP("Settings", "Keep examinations for (years)"),
        QT_TRANSLATE_NOOP("Settings", "0 keeps everything. Otherwise File > Apply retention period deletes "
                          "examinations older than this, with their images, after a confirmation that says how "
                          "many."),
        group=_RECORDS, minimum=0, maximum=100))


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


def field_choices(f: Field[Any]) -> list[tuple[Any, str]] | None:
    """The field's allowed (value, label) pairs, evaluated now (GPUs can come and go)."""
    c = f.metadata.get("choices")
    if c is None:
        return None
    return list(c() if callable(c) else c)


def _default(f: Field[Any]) -> Any:
    return getattr(Settings(), f.name)


def _coerce(f: Field[Any], value: Any) -> Any:
    """Return the value in the field's type or raise ValueError saying why it is unusable."""
    typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    meta = f.metadata
    if typ == "bool":
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if typ in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError("expected a number")
        if typ == "int" and value != int(value):
            raise ValueError("expected a whole number")
        v: float = int(value) if typ == "int" else float(value)
        if (meta["min"] is not None and v < meta["min"]) or (meta["max"] is not None and v > meta["max"]):
            raise ValueError(f"outside {meta['min']}..{meta['max']}")
        return v
    if typ == "str":
        if not isinstance(value, str):
            raise ValueError("expected text")
        if f.name == "device" and not _DEVICE_RE.match(value):
            raise ValueError("expected auto, cpu or cuda:N")
        return value
    if typ == "tuple[int, int]":
        if not (isinstance(value, list | tuple) and len(value) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 10000 for x in value)):
            raise ValueError("expected two whole numbers")
        return (int(value[0]), int(value[1]))
    raise ValueError(f"unsupported setting type {typ}")


def from_dict(data: Any, where: str = "settings") -> Settings:
    """Build Settings from parsed JSON, keeping every valid value and defaulting the rest."""
    if not isinstance(data, dict):
        log.warning("%s: expected a JSON object; using the default settings", where)
        return Settings()
    known = {f.name: f for f in fields(Settings)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "schema_version":
            continue
        f = known.get(key)
        if f is None:
            log.warning("%s: unknown setting %r ignored", where, key)
            continue
        try:
            values[key] = _coerce(f, value)
        except ValueError as e:
            log.warning("%s: %s = %r is unusable (%s); using the default %r", where, key, value, e, _default(f))
    return Settings(**values)


def to_dict(s: Settings) -> dict[str, Any]:
    d = asdict(s)
    d["camera_resolution"] = list(s.camera_resolution)
    return {"schema_version": SCHEMA_VERSION, **d}


def load_settings(path: Path | None = None) -> Settings:
    """Read the settings file; a missing, unreadable or corrupt file gives the defaults, never an error."""
    path = path or settings_path()
    if not path.exists():
        return Settings()
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("%s is unreadable (%s); using the default settings. A copy is kept as %s.bad",
                    path, e, path.name)
        try:
            shutil.copyfile(path, path.with_name(path.name + ".bad"))
        except OSError as copy_error:
            log.warning("Could not keep a copy of %s: %s", path, copy_error)
        return Settings()
    return from_dict(data, where=str(path))


def save_settings(s: Settings, path: Path | None = None) -> Path:
    """Write aside, fsync, keep the previous file as .bak, then rename over: a crash leaves a valid file."""
    path = path or settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(to_dict(s), f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    if path.exists():
        shutil.copyfile(path, path.with_name(path.name + ".bak"))
    os.replace(tmp, path)
    if os.name == "posix":
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def updated(s: Settings, **changes: Any) -> Settings:
    """A copy with `changes` validated like values read from the file (raises ValueError when unusable)."""
    known = {f.name: f for f in fields(Settings)}
    checked = {}
    for k, v in changes.items():
        if k not in known:
            raise ValueError(f"unknown setting {k!r}")
        checked[k] = _coerce(known[k], v)
    return replace(s, **checked)

