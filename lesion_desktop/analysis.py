"""One image, start to finish: load, quality, scope, predict, explain, record, and what to tell the clinician.

The window, its PDF report and the command line all take their result and its wording from here, so the
malignancy warning has one rule: it depends on the combined probability of the malignant classes, never
on which class is on top; a poor image never reassures; an image the models cannot judge gets no diagnosis.
No Qt here.
"""

from __future__ import annotations

import datetime as _dt
import logging
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lesion_desktop.classes import CLASSES, MALIGNANT_CODES
from lesion_desktop.errors import LesionError
from lesion_desktop.imageio import QualityReport, load_image, quality_check
from lesion_desktop.inference import Engine, open_engine
from lesion_desktop.progress import Progress, check_cancel
from lesion_desktop.records import Record, RecordStore, encode_png, make_thumbnail
from lesion_desktop.wording import QT_TRANSLATE_NOOP, Clause, Joined, Phrase, recognise

log = logging.getLogger(__name__)

MALIGNANT_NAMES = ", ".join(c.name.split(" (")[0].split(" /")[0].lower() for c in CLASSES if c.malignant)

# Assessment levels, most urgent first.
OUT_OF_SCOPE = "out_of_scope"
WARNING = "warning"
CANNOT_RULE_OUT = "cannot_rule_out"
BELOW_THRESHOLD = "below_threshold"

# The assessment's wording, marked for translators (lesion_desktop.wording): the window and its PDF show it in the
# clinic's language, the command line in English. A translation must be reviewed by a clinician (docs/translations.md).
_NAMES = QT_TRANSLATE_NOOP("Assessment", "actinic keratosis, basal cell carcinoma, melanoma")  # = MALIGNANT_NAMES
_RATES = QT_TRANSLATE_NOOP("Assessment", "At {threshold} this warning fired for {melanoma} of the test melanomas "
                           "and {benign} of benign lesions.")
_NOT_JUDGED = QT_TRANSLATE_NOOP("Assessment", "Not an image these models can judge")
_NO_DIAGNOSIS = QT_TRANSLATE_NOOP("Assessment", "No diagnosis is shown. Use a dermoscopy image of a single skin "
                                  "lesion.")
_POOR = QT_TRANSLATE_NOOP("Assessment", "The image quality is poor ({problems}): retake it.")
_POSSIBLE = QT_TRANSLATE_NOOP("Assessment", "Possible malignancy: {probability} combined probability of {names} "
                              "(warning threshold {threshold}).")
_TOP_BENIGN = QT_TRANSLATE_NOOP("Assessment", "The top label is benign, but the malignant risk is not negligible.")
_POSSIBLE_HEADLINE = QT_TRANSLATE_NOOP("Assessment", "⚠ Possible malignancy: {probability}")
_CANNOT_HEADLINE = QT_TRANSLATE_NOOP("Assessment", "⚠ This image cannot rule out malignancy")
_CANNOT = QT_TRANSLATE_NOOP("Assessment", "From an image of this quality the models cannot rule out malignancy, "
                            "whatever the probabilities say (malignant classes combined: {probability}).")
_BELOW = QT_TRANSLATE_NOOP("Assessment", "Malignant classes combined ({names}): {probability}, below the {threshold} "
                           "warning threshold.")
_BELOW_HEADLINE = QT_TRANSLATE_NOOP("Assessment", "Malignant classes combined: {probability}")
_NOT_SAVED = QT_TRANSLATE_NOOP("Assessment", "This result could not be saved in the history: {error}.")
# what the window says while the models load (it gets them through a Qt signal, as plain strings: recognised)
_LOADING = QT_TRANSLATE_NOOP("Analysis", "Loading the models from {where}…")
_ACTIVE_STORE = QT_TRANSLATE_NOOP("Analysis", "the active model store")
_WARMING = QT_TRANSLATE_NOOP("Analysis", "Warming up the models…")


@dataclass(frozen=True)
class Assessment:
    """What the result says about malignancy, in one place for the window, the PDF and the CLI.

    `headline` and `text` are English strings that are also `lesion_desktop.wording.Wording`s: the window and
    the PDF render them in the clinic's language (`lesion_desktop.qt.translations.tr_core`).
    """

    level: str  # OUT_OF_SCOPE, WARNING, CANNOT_RULE_OUT or BELOW_THRESHOLD
    headline: str  # the most prominent line
    text: str  # the full sentence(s)
    threshold: float

    @property
    def warns(self) -> bool:
        return self.level == WARNING

    @property
    def reassures(self) -> bool:
        return self.level == BELOW_THRESHOLD


def effective_threshold(stored: float | None, current: float) -> float:
    """The stricter (lower) of the threshold a result was made with and the current setting.

    A stored result never loses its warning because the setting was raised later.
    """
    return current if stored is None else min(float(stored), float(current))


def warning_rates_sentence(rates: Sequence[Mapping[str, Any]] | None, threshold: float) -> str:
    """'At 30% this warning fired for 87% of the test melanomas and 34% of benign lesions.', from the manifest."""
    for row in rates or ():
        try:
            if abs(float(row["threshold"]) - threshold) < 1e-6:
                return Phrase(_RATES, threshold=f"{threshold:.0%}", melanoma=f"{float(row['melanoma']):.0%}",
                              benign=f"{float(row['benign']):.0%}")
        except (KeyError, TypeError, ValueError):
            continue
    return ""


def assess(malignant_probability: float, top_code: str, threshold: float, quality_warnings: Sequence[str] = (),
           out_of_scope: str = "", rates: Sequence[Mapping[str, Any]] | None = None) -> Assessment:
    """The malignancy assessment of one result.

    `out_of_scope`: the scope gate's reason, when the image was judged outside what the models have seen
    (and the user has not asked to see the result anyway). `quality_warnings`: any of them is serious
    enough that a low probability must not reassure (dark, over-exposed, blurred, too small).
    Strings read back from the history are recognised as the sentences they were, so they translate too.
    """
    rate = warning_rates_sentence(rates, threshold)
    names = Phrase(_NAMES)
    p0, t0 = f"{malignant_probability:.0%}", f"{threshold:.0%}"
    if out_of_scope:
        reason = recognise(out_of_scope)
        advice = "" if "diagnosis" in out_of_scope else Phrase(_NO_DIAGNOSIS)
        return Assessment(OUT_OF_SCOPE, Phrase(_NOT_JUDGED), Joined([reason, advice]), threshold)
    poor = Phrase(_POOR, problems=Joined([Clause(recognise(w)) for w in quality_warnings], "; ")) \
        if quality_warnings else ""
    if malignant_probability >= threshold:
        text = Joined([Phrase(_POSSIBLE, probability=p0, names=names, threshold=t0),
                       "" if top_code in MALIGNANT_CODES else Phrase(_TOP_BENIGN), rate, poor])
        return Assessment(WARNING, Phrase(_POSSIBLE_HEADLINE, probability=p0), text, threshold)
    if quality_warnings:
        return Assessment(CANNOT_RULE_OUT, Phrase(_CANNOT_HEADLINE),
                          Joined([poor, Phrase(_CANNOT, probability=p0)]), threshold)
    text = Joined([Phrase(_BELOW, names=names, probability=f"{malignant_probability:.1%}", threshold=t0), rate])
    return Assessment(BELOW_THRESHOLD, Phrase(_BELOW_HEADLINE, probability=p0), text, threshold)


def record_warnings(record: Record) -> list[str]:
    """A stored result's warnings, recognised as the sentences they were (a result read back from the history
    has plain strings), so the window and the PDF can translate them."""
    return [recognise(w) for w in record.warnings]


def assess_record(record: Record, current_threshold: float,
                  rates: Sequence[Mapping[str, Any]] | None = None) -> Assessment:
    """A stored result's assessment under the stricter of its own and the current threshold."""
    d = record.details or {}
    threshold = effective_threshold(d.get("threshold"), current_threshold)
    scope = d.get("scope") or {}
    out = str(scope.get("reason", "")) if scope.get("in_scope") is False and not d.get("shown_anyway") else ""
    quality = [w for w in record.warnings if w in set(d.get("quality_warnings", []))]
    return assess(record.malignant_probability, record.top_code, threshold, quality, out, rates)


def row_warnings(engine: Engine, rgb: np.ndarray, pred: Any, quality: QualityReport,
                 threshold: float | None = None) -> list[str]:
    """The command line's `warnings` column for one image: scope first, then quality and what it means.

    An out-of-scope row keeps its probabilities (a batch is for people who read them with care), and its
    warnings start with `out of scope: <reason>`.
    """
    from lesion_desktop.scope import ADVICE
    from lesion_desktop.settings import Settings

    threshold = Settings().warning_threshold if threshold is None else threshold
    quality_warnings = quality.warnings
    scope = engine.check_scope(rgb, pred, quality)
    # the row keeps its probabilities, so the window's "no diagnosis is given" advice does not belong here
    out = [*([f"out of scope: {scope.reason.replace(ADVICE, '').strip()}"] if not scope.in_scope else []),
           *quality_warnings]
    a = assess(pred.malignant_probability, pred.top_code, threshold, quality_warnings)
    if a.level == CANNOT_RULE_OUT:
        out.append("cannot rule out malignancy from an image of this quality: retake it")
    return out


def model_warning_rates(engine: Engine | None) -> list[dict[str, Any]] | None:
    """The active models' measured warning rates on their test split, where their manifest records them."""
    if engine is None:
        return None
    metrics = engine.ensemble.manifest.get("metrics")
    test = metrics.get("test") if isinstance(metrics, dict) else None
    rows = test.get("malignancy_warning") if isinstance(test, dict) else None
    return rows if isinstance(rows, list) else None


@dataclass
class Analysis:
    """A result as the window shows it: the stored record plus the arrays behind its pictures."""

    record: Record
    image: np.ndarray
    preprocessed: np.ndarray | None
    heatmap: np.ndarray | None
    seq: int = 0
    cams: np.ndarray | None = None  # (K, H, W) per-class heat-maps, where the models give them


class EngineHolder:
    """The loaded engine, set by the load job itself so the next job in the (single-thread) queue sees it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self.error = "The models are still loading."
        self.notes: list[str] = []  # why the models in use are not the ones first tried (fallback)

    def get(self) -> Engine | None:
        with self._lock:
            return self._engine

    def set(self, engine: Engine | None, error: str = "") -> None:
        with self._lock:
            self._engine, self.error = engine, error

    def require(self) -> Engine:
        engine = self.get()
        if engine is None:
            raise LesionError(f"No models are loaded, so the image cannot be classified. {self.error}".strip())
        return engine


def load_models(progress: Progress, holder: EngineHolder, models_dir: Path | None, device: str, tta: bool) -> Engine:
    """Load the models; without an explicit folder, fall back from damaged installed models (and say so)."""
    holder.set(None, "The models are still loading.")
    holder.notes = []
    progress.report(0.1, Phrase(_LOADING, where=models_dir or Phrase(_ACTIVE_STORE)))
    try:
        engine, holder.notes = open_engine(models_dir=models_dir, device=device, tta=tta)
        progress.report(0.7, Phrase(_WARMING))
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
    scope = engine.check_scope(rgb, pred, quality)
    warnings = [*([scope.warning] if not scope.in_scope else []), *quality.warnings]
    if engine.device_note:
        warnings.append(engine.device_note)
    assessment = assess(pred.malignant_probability, pred.top_code, threshold, quality.warnings,
                        "" if scope.in_scope else scope.reason, model_warning_rates(engine))
    # The heat-map shows the warned malignant class when the warning fires, else the top class.
    focus = _focus_class(pred.probabilities, assessment)
    heat = engine.heatmap(rgb, pred, focus)
    details = _details(engine, pred, quality, threshold, assessment, focus)
    details["scope"] = _scope_details(scope, engine)
    try:
        record = store.add(rgb, pred.probabilities, source_name=source_name, source_path=source_path,
                           model_version=engine.version, warnings=warnings, details=details,
                           preprocessed=pred.preprocessed, heatmap=heat,
                           original=None if isinstance(source, np.ndarray) else source)  # kept byte for byte
    except (sqlite3.Error, OSError) as e:
        # The result matters more than the history entry: show it, and say it was not saved.
        log.exception("Could not save the result in the history")
        warnings.append(Phrase(_NOT_SAVED, error=e))
        record = Record(None, _now(), source_name, source_path, Path(), make_thumbnail(rgb), pred.probabilities,
                        tuple(warnings), engine.version, details,
                        encode_png(pred.preprocessed) if pred.preprocessed is not None else None, None)
    return Analysis(record, rgb, pred.preprocessed, heat, seq, pred.cams)


def _focus_class(probabilities: np.ndarray, assessment: Assessment) -> int:
    if assessment.level in (WARNING, CANNOT_RULE_OUT):
        malignant = [i for i, c in enumerate(CLASSES) if c.malignant]
        return max(malignant, key=lambda i: float(probabilities[i]))
    return int(np.argmax(probabilities))


def _details(engine: Engine, pred: Any, quality: QualityReport, threshold: float, assessment: Assessment,
             focus: int) -> dict[str, Any]:
    return {
        "threshold": threshold, "malignant_probability": pred.malignant_probability,
        "agreement": pred.member_agreement, "spread": pred.member_spread,
        "members_total": len(pred.member_probabilities), "seconds": pred.seconds,
        "device": engine.device, "backend": engine.backend, "tta": engine.tta,
        "members": {k: [float(x) for x in v] for k, v in pred.member_probabilities.items()},
        "sharpness": quality.sharpness, "brightness": quality.brightness,
        "quality_warnings": list(quality.warnings), "assessment": assessment.level,
        "heatmap_class": CLASSES[focus].code,
    }


def mark_shown_anyway(store: RecordStore, analysis: Analysis) -> None:
    """The user asked to see the diagnosis of an image judged out of scope: the record says so from now on."""
    analysis.record.details["shown_anyway"] = True
    if analysis.record.id is not None:
        store.update_details(analysis.record.id, {"shown_anyway": True})


def _scope_details(scope: Any, engine: Engine) -> dict[str, Any]:
    def num(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None

    return {"in_scope": bool(scope.in_scope), "reason": scope.reason, "kind": scope.kind,
            "score": num(scope.score), "threshold": num(scope.threshold),
            "gate": "features and image checks" if engine.scope is not None else "image checks only"}


def reopen(progress: Progress, store: RecordStore, record_id: int, seq: int = 0) -> Analysis:
    """Load a stored record and its image copy, to show the stored result again."""
    record = store.get(record_id)
    if record is None:
        raise LesionError(f"History entry #{record_id} no longer exists.")
    rgb = record.load_image()
    return Analysis(record, rgb, record.preprocessed(), record.heatmap(), seq)


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")
