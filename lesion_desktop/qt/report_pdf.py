"""One result as a one-page PDF (QPdfWriter + QPainter): image, heat-map, probabilities, warnings.

Drawn on the GUI thread: a page takes a few tens of milliseconds, and QPainter text layout uses the
application's fonts, which are safest on the thread that owns them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QMarginsF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPageLayout, QPageSize, QPainter, QPdfWriter, QPen

from lesion_desktop import __version__
from lesion_desktop.analysis import OUT_OF_SCOPE, assess_record
from lesion_desktop.classes import CLASSES, by_code
from lesion_desktop.qt.about import DISCLAIMER
from lesion_desktop.qt.imaging import to_qimage
from lesion_desktop.qt.result_panel import agreement_text, scope_note
from lesion_desktop.qt.widgets import BENIGN_COLOUR, MALIGNANT_COLOUR
from lesion_desktop.records import Record

RED = QColor(198, 40, 40)


class _Page:
    """A cursor moving down the page, so each block is drawn below the previous one."""

    def __init__(self, painter: QPainter, width: float) -> None:
        self.p = painter
        self.width = width
        self.y = 0.0

    def text(self, text: str, size: float = 10, bold: bool = False, colour: QColor | None = None,
             gap: float = 0.35) -> None:
        font = QFont("Helvetica")
        font.setPointSizeF(size)
        font.setBold(bold)
        self.p.setFont(font)
        self.p.setPen(colour or QColor("black"))
        flags = Qt.TextFlag.TextWordWrap | Qt.AlignmentFlag.AlignLeft
        rect = self.p.boundingRect(QRectF(0, self.y, self.width, 10_000), flags, text)
        self.p.drawText(QRectF(0, self.y, self.width, rect.height()), flags, text)
        self.y += rect.height() + self.p.fontMetrics().height() * gap

    def boxed(self, text: str, colour: QColor, fill: QColor | None = None, size: float = 10) -> None:
        font = QFont("Helvetica")
        font.setPointSizeF(size)
        font.setBold(True)
        self.p.setFont(font)
        pad = self.p.fontMetrics().height() * 0.5
        flags = Qt.TextFlag.TextWordWrap | Qt.AlignmentFlag.AlignLeft
        rect = self.p.boundingRect(QRectF(pad, self.y + pad, self.width - 2 * pad, 10_000), flags, text)
        box = QRectF(0, self.y, self.width, rect.height() + 2 * pad)
        if fill is not None:
            self.p.fillRect(box, fill)
        self.p.setPen(QPen(colour, max(1.0, pad / 4)))
        self.p.drawRect(box)
        self.p.setPen(QColor("white") if fill is not None else colour)
        self.p.drawText(QRectF(pad, self.y + pad, self.width - 2 * pad, rect.height()), flags, text)
        self.y += box.height() + pad


def _draw_image(p: QPainter, rgb: np.ndarray, box: QRectF, caption: str) -> float:
    img = to_qimage(rgb)
    cap_h = p.fontMetrics().height() * 1.4
    scale = min(box.width() / img.width(), (box.height() - cap_h) / img.height())
    w, h = img.width() * scale, img.height() * scale
    target = QRectF(box.x() + (box.width() - w) / 2, box.y(), w, h)
    p.drawImage(target, img)
    p.setPen(QColor("black"))
    p.drawText(QRectF(box.x(), box.y() + h, box.width(), cap_h), Qt.AlignmentFlag.AlignCenter, caption)
    return h + cap_h


def write_report(path: Path, record: Record, image: np.ndarray, preprocessed: np.ndarray | None,
                 heatmap: np.ndarray | None, threshold: float, opacity: float = 0.45,
                 rates: Sequence[Mapping[str, Any]] | None = None, heatmap_code: str | None = None) -> Path:
    """Write the report to `path` (A4, 150 dpi) and return it.

    `threshold` is the current setting: the wording comes from `analysis.assess_record`, as in the window,
    with the same rule (the stricter of it and the result's own) and the models' measured `rates`.
    """
    assessment = assess_record(record, threshold, rates)
    out_of_scope = assessment.level == OUT_OF_SCOPE
    path = Path(path)
    writer = QPdfWriter(str(path))
    writer.setResolution(150)
    writer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait,
                                     QMarginsF(15, 15, 15, 15), QPageLayout.Unit.Millimeter))
    writer.setTitle(f"Lesion Desktop report: {record.source_name}")
    writer.setCreator(f"Lesion Desktop {__version__}")
    painter = QPainter()
    if not painter.begin(writer):
        raise OSError(f"cannot write {path}")
    try:
        area = writer.pageLayout().paintRectPixels(writer.resolution())
        page = _Page(painter, float(area.width()))
        page.text("Lesion Desktop — decision-support report", 16, bold=True)
        page.text(f"Date: {record.created_local()}    Image: {record.source_name}"
                  + (f"    History #{record.id}" if record.id is not None else ""), 9)
        page.text(f"Models: {record.model_version}    Software: Lesion Desktop {__version__}", 9)
        page.boxed(DISCLAIMER, RED)

        painter.setFont(QFont("Helvetica", 9))
        half = page.width / 2 - 10
        img_h = area.height() * 0.28
        used = _draw_image(painter, image, QRectF(0, page.y, half, img_h), "Image")
        if preprocessed is not None:
            right = preprocessed
            heatmap = None if out_of_scope else heatmap  # no diagnosis, so no evidence for one
            if heatmap is not None:  # never in the lite edition, which has no PyTorch for explain.py
                from lesion_desktop.heatmap import overlay

                right = overlay(preprocessed, heatmap, opacity)
            code = heatmap_code or record.details.get("heatmap_class") or record.top_code
            cap = f"Heat-map for {by_code(code).name}" if heatmap is not None else "Network input"
            used = max(used, _draw_image(painter, right, QRectF(page.width / 2 + 10, page.y, half, img_h), cap))
        page.y += used + 20

        top = CLASSES[record.top_index]
        if assessment.level == OUT_OF_SCOPE:  # no diagnosis, as in the window
            page.boxed(f"{assessment.headline}\n{assessment.text}", RED)
        elif assessment.reassures:
            page.text(f"Most likely: {top.name} ({top.code}), {record.probabilities[record.top_index]:.1%}", 13, True)
            page.text(assessment.text, 10)
        else:  # the warning (or a poor image's "cannot rule out") comes first, above the top label
            page.boxed(f"{assessment.headline}\n{assessment.text}", RED, fill=RED, size=12)
            page.text(f"Most likely: {top.name} ({top.code}), {record.probabilities[record.top_index]:.1%}", 11, True)
        if not out_of_scope:
            if scope_note(record):
                page.text(scope_note(record), 10, bold=True, colour=RED)
            _draw_probabilities(painter, page, record.probabilities)
            page.text(agreement_text(record.details, top.name), 10)
        if record.warnings:
            page.text("Image quality and other warnings:", 10, bold=True, gap=0.1)
            for w in record.warnings:
                page.text(f"• {w}", 10, gap=0.1)
        else:
            page.text("Image quality: no problems found.", 10)
        page.y = max(page.y, area.height() - painter.fontMetrics().height() * 5)
        page.boxed(f"{DISCLAIMER} This report shows the output of a statistical model trained on HAM10000 "
                   "dermoscopy images; it may be wrong, especially for images unlike its training data.",
                   RED, size=8)
    finally:
        painter.end()
    return path


def _draw_probabilities(p: QPainter, page: _Page, probs: np.ndarray) -> None:
    font = QFont("Helvetica")
    font.setPointSizeF(9.5)
    p.setFont(font)
    fm = p.fontMetrics()
    row = fm.height() * 1.35
    name_w = page.width * 0.5
    pct_w = fm.horizontalAdvance("100.0%") + 10
    bar_w = page.width - name_w - pct_w
    for i, c in enumerate(CLASSES):
        y = page.y + i * row
        p.setPen(QColor("black"))
        p.drawText(QRectF(0, y, name_w - 8, row), Qt.AlignmentFlag.AlignVCenter,
                   fm.elidedText(f"{c.code}  {c.name}", Qt.TextElideMode.ElideRight, int(name_w - 8)))
        track = QRectF(name_w, y + row * 0.2, bar_w, row * 0.6)
        p.fillRect(track, QColor(235, 235, 235))
        p.fillRect(QRectF(track.x(), track.y(), bar_w * float(probs[i]), track.height()),
                   MALIGNANT_COLOUR if c.malignant else BENIGN_COLOUR)
        p.drawText(QRectF(name_w + bar_w + 6, y, pct_w, row), Qt.AlignmentFlag.AlignVCenter, f"{probs[i]:.1%}")
    page.y += 7 * row + fm.height() * 0.5
