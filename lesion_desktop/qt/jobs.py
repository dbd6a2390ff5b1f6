"""The work the main window hands to its worker: plain functions of (progress, ...), no Qt inside.

Everything slow happens here (decoding, quality check, inference, Grad-CAM, saving to history), so
the window only ever receives finished results.
"""

from __future__ import annotations

import datetime as _dt
import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lesion_desktop.edition import create_engine
from lesion_desktop.errors import LesionError
from lesion_desktop.imageio import load_image, quality_check
from lesion_desktop.records import Record, RecordStore, encode_png, make_thumbnail
from training.progress import Progress, check_cancel

if TYPE_CHECKING:  # the lite edition has no PyTorch: engine.py is imported only where it exists
    from lesion_desktop.engine import EnsembleEngine

log = logging.getLogger(__name__)


@dataclass
class Analysis:
    """A result as the window shows it: the stored record plus the arrays behind its pictures."""

    record: Record
    image: np.ndarray
    preprocessed: np.ndarray | None
    heatmap: np.ndarray | None
    seq: int = 0


class EngineHolder:
    """The loaded engine, set by the load job itself so the next job in the (single-thread) queue sees it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engine: EnsembleEngine | None = None
        self.error = "The models are still loading."
        self.notes: list[str] = []  # why the models in use are not the ones first tried (fallback)

    def get(self) -> EnsembleEngine | None:
        with self._lock:
            return self._engine

    def set(self, engine: EnsembleEngine | None, error: str = "") -> None:
        with self._lock:
            self._engine, self.error = engine, error

    def require(self) -> EnsembleEngine:
        engine = self.get()
        if engine is None:
            raise LesionError(f"No models are loaded, so the image cannot be classified. {self.error}".strip())
        return engine


def load_engine(progress: Progress, holder: EngineHolder, models_dir: Path | None, device: str,
                tta: bool) -> EnsembleEngine:
    """Load the models; without an explicit folder, fall back from damaged installed models (and say so)."""
    from lesion_desktop.models_loader import open_engine

    holder.set(None, "The models are still loading.")
    holder.notes = []
    progress.report(0.1, f"Loading the models from {models_dir or 'the active model store'}…")
    try:
        if models_dir is not None:
            engine = create_engine(models_dir, device=device, tta=tta)
        else:
            engine, holder.notes = open_engine(device=device, tta=tta)
        progress.report(0.7, "Warming up the models…")
        engine.warm_up()
    except LesionError as e:
        holder.set(None, f"Loading them failed: {e}")
        raise LesionError(f"Could not load the models: {e}") from e
    except Exception as e:
        holder.set(None, f"Loading them failed: {type(e).__name__}: {e}")
        raise
    holder.set(engine)
    return engine


def analyse(progress: Progress, holder: EngineHolder, source: Path | bytes | np.ndarray, *, source_name: str,
            store: RecordStore, threshold: float, seq: int = 0) -> Analysis:
    """Decode (if needed), check quality, classify, explain and record one image."""
    engine = holder.require()
    if isinstance(source, np.ndarray):
        rgb = source
        source_path = ""
    else:
        rgb = load_image(source, name=source_name)
        source_path = str(source) if isinstance(source, Path) else ""
    progress.partial({"image": rgb, "seq": seq, "name": source_name})
    check_cancel(progress)
    quality = quality_check(rgb)
    progress.report(0.3, "Classifying…")
    pred = engine.predict_one(rgb)
    check_cancel(progress)
    progress.report(0.7, "Computing the heat-map…")
    heat = None
    if getattr(engine, "explains", True):  # the lite edition's engine has no gradients
        from lesion_desktop.explain import grad_cam

        heat = grad_cam(engine, rgb, pred.top_index)
    warnings = list(quality.warnings)
    if engine.device_note:
        warnings.append(engine.device_note)
    details: dict[str, Any] = {
        "threshold": threshold, "malignant_probability": pred.malignant_probability,
        "agreement": pred.member_agreement, "spread": pred.member_spread,
        "members_total": len(pred.member_probabilities), "seconds": pred.seconds,
        "device": str(engine.device), "tta": engine.tta,
        "members": {k: [float(x) for x in v] for k, v in pred.member_probabilities.items()},
        "sharpness": quality.sharpness, "brightness": quality.brightness,
    }
    try:
        record = store.add(rgb, pred.probabilities, source_name=source_name, source_path=source_path,
                           model_version=engine.version, warnings=warnings, details=details,
                           preprocessed=pred.preprocessed, heatmap=heat)
    except (sqlite3.Error, OSError) as e:
        # The result matters more than the history entry: show it, and say it was not saved.
        log.exception("Could not save the result in the history")
        warnings.append(f"This result could not be saved in the history: {e}.")
        record = Record(None, _now(), source_name, source_path, Path(), make_thumbnail(rgb), pred.probabilities,
                        tuple(warnings), engine.version, details,
                        encode_png(pred.preprocessed) if pred.preprocessed is not None else None, None)
    return Analysis(record, rgb, pred.preprocessed, heat, seq)


def reopen(progress: Progress, store: RecordStore, record_id: int, seq: int = 0) -> Analysis:
    """Load a stored record and its image copy, to show the stored result again."""
    record = store.get(record_id)
    if record is None:
        raise LesionError(f"History entry #{record_id} no longer exists.")
    rgb = record.load_image()
    return Analysis(record, rgb, record.preprocessed(), record.heatmap(), seq)


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")
