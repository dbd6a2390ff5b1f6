"""Evaluation reports: metrics as JSON, a readable Markdown page, a confusion matrix and a reliability diagram.

The plots are drawn with OpenCV, which the program already ships, rather than adding a plotting library.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.settings import Settings
from training.metrics import headline

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img: np.ndarray, s: str, org: tuple[int, int], scale: float = 0.45, color: tuple = (0, 0, 0)) -> None:
    cv2.putText(img, s, org, _FONT, scale, color, 1, cv2.LINE_AA)


def confusion_png(cm: list[list[int]], path: Path, title: str = "Confusion matrix (rows: truth)") -> None:
    m = np.asarray(cm, dtype=np.float64)
    k = len(CLASS_CODES)
    cell, left, top = 64, 80, 60
    img = np.full((top + k * cell + 50, left + k * cell + 20, 3), 255, np.uint8)
    _text(img, title, (10, 25), 0.55)
    row_norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    for i in range(k):
        _text(img, CLASS_CODES[i], (10, top + i * cell + cell // 2 + 5))
        _text(img, CLASS_CODES[i], (left + i * cell + 12, top + k * cell + 20))
        for j in range(k):
            v = row_norm[i, j]
            shade = int(255 - 200 * v)
            x0, y0 = left + j * cell, top + i * cell
            cv2.rectangle(img, (x0, y0), (x0 + cell - 2, y0 + cell - 2), (shade, shade, 255 if i == j else shade), -1)
            col = (255, 255, 255) if v > 0.55 else (0, 0, 0)
            _text(img, f"{int(m[i, j])}", (x0 + 6, y0 + 26), 0.45, col)
            _text(img, f"{v:.0%}", (x0 + 6, y0 + 48), 0.4, col)
    _text(img, "predicted", (left + k * cell // 2 - 30, top + k * cell + 42))
    cv2.imwrite(str(path), img)


def reliability_png(table: list[dict[str, Any]], path: Path, ece: float) -> None:
    size, pad = 360, 50
    img = np.full((size + 2 * pad, size + 2 * pad, 3), 255, np.uint8)
    x0, y0 = pad, pad + size
    cv2.rectangle(img, (x0, pad), (x0 + size, y0), (0, 0, 0), 1)
    cv2.line(img, (x0, y0), (x0 + size, pad), (160, 160, 160), 1, cv2.LINE_AA)
    for b in table:
        lo, hi, acc = b["lo"], b["hi"], b["accuracy"]
        cv2.rectangle(img, (x0 + int(lo * size) + 1, y0 - int(acc * size)), (x0 + int(hi * size) - 1, y0),
                      (200, 120, 40), -1)
        cx = x0 + int(b["confidence"] * size)
        cv2.circle(img, (cx, y0 - int(acc * size)), 3, (0, 0, 200), -1)
    _text(img, f"Reliability (ECE {ece:.3f})", (pad, 30), 0.55)
    _text(img, "confidence", (x0 + size // 2 - 40, y0 + 35))
    _text(img, "accuracy", (5, pad - 10))
    cv2.imwrite(str(path), img)


def write_report(metrics: dict[str, Any], folder: Path, title: str) -> Path:
    """metrics.json, report.md, confusion.png and reliability.png in `folder`; returns report.md."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    confusion_png(metrics["confusion_matrix"], folder / "confusion.png")
    reliability_png(metrics["reliability"], folder / "reliability.png", metrics["ece"])
    lines = [f"# {title}", "", headline(metrics) + f" (n = {metrics['n']})", ""]
    ci = metrics.get("intervals")
    if ci:
        unit = "lesions" if ci.get("unit") == "lesion" else "images"
        lines += [f"In brackets: {ci['level']:.0%} bootstrap intervals ({ci['resamples']} resamples of the {unit}, "
                  "with replacement): how far each figure could move on another sample of this size.", ""]
    lines += ["| class | precision | recall | F1 | AUC | support |", "|---|---|---|---|---|---|"]
    for code, v in metrics["per_class"].items():
        lines.append(f"| {code} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['auc']:.3f} "
                     f"| {v['support']} |")
    warning = metrics.get("malignancy_warning")
    if warning:
        pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
        lines += ["", "The app's malignancy warning (combined mel + bcc + akiec probability at or above the "
                  f"threshold; the app's default is {Settings().warning_threshold:.0%}): the share of each group it "
                  "would have warned on.", "",
                  "| threshold | melanomas | all malignant (mel, bcc, akiec) | benign (false alarms) |",
                  "|---|---|---|---|"]
        lines += [f"| {r['threshold']:.0%} | {pct(r['melanoma'])} | {pct(r['malignant'])} | {pct(r['benign'])} |"
                  for r in warning]
    lines += ["", "![confusion matrix](confusion.png) ![reliability diagram](reliability.png)", ""]
    out = folder / "report.md"
    out.write_text("\n".join(lines))
    return out
