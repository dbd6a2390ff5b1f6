"""A result as a PDF report (QPdfWriter + QPainter, PDF/A-1b): the patient, lesion and examination, the image and
heat-map, the models' assessment in the window's own words (analysis.assess_record, with the warning's measured
rates), probabilities, warnings, the clinician's assessment and a signature line; and, for a follow-up, a
comparison page with the previous examination of the same lesion at the same scale.

Drawn on the GUI thread: a page takes a few tens of milliseconds, and QPainter text layout uses the
application's fonts, which are safest on the thread that owns them.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QCoreApplication, QMarginsF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPagedPaintDevice, QPageLayout, QPageSize, QPainter, QPdfWriter, QPen

from lesion_desktop import __version__
from lesion_desktop.analysis import OUT_OF_SCOPE, assess_record, record_warnings
from lesion_desktop.classes import CLASSES
from lesion_desktop.errors import LesionError
from lesion_desktop.qt.about import disclaimer
from lesion_desktop.qt.imaging import to_qimage
from lesion_desktop.qt.patient_bodymap import site_name
from lesion_desktop.qt.patient_dialog import SEX_LABELS
from lesion_desktop.qt.result_panel import agreement_text, scope_note
from lesion_desktop.qt.translations import diagnosis_name, tr_core
from lesion_desktop.qt.widgets import BENIGN_COLOUR, MALIGNANT_COLOUR
from lesion_desktop.records import IMAGE_KIND_TEXT, FollowUp, Patient, Record, RecordStore

RED = QColor(198, 40, 40)
translate = QCoreApplication.translate  # a literal context and text in each call: pyside6-lupdate finds them


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


def _open_writer(path: Path, title: str) -> tuple[QPdfWriter, QPainter]:
    writer = QPdfWriter(str(path))
    writer.setPdfVersion(QPagedPaintDevice.PdfVersion.PdfVersion_A1b)  # archival: fonts embedded, no transparency
    writer.setResolution(150)
    writer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait,
                                     QMarginsF(15, 15, 15, 15), QPageLayout.Unit.Millimeter))
    writer.setTitle(title)
    writer.setCreator(f"Lesion Desktop {__version__}")
    painter = QPainter()
    if not painter.begin(writer):
        raise OSError(translate("Report", "cannot write {path}").format(path=path))
    return writer, painter


def _facts(page: _Page, rows: list[tuple[str, str]], full_width: int = 1) -> None:
    """Label: value lines; the first `full_width` rows span the page, the rest go in two columns."""
    font = QFont("Helvetica")
    font.setPointSizeF(9.5)
    bold = QFont(font)
    bold.setBold(True)
    page.p.setFont(bold)
    label_w = max(page.p.fontMetrics().horizontalAdvance(label) for label, _ in rows) + 8
    page.p.setFont(font)
    fm = page.p.fontMetrics()
    row_h = fm.height() * 1.3
    col_w = page.width / 2
    cells = [(0.0, page.y + i * row_h, page.width, r) for i, r in enumerate(rows[:full_width])]
    top = page.y + full_width * row_h
    rest = rows[full_width:]
    cells += [((j % 2) * col_w, top + (j // 2) * row_h, col_w, r) for j, r in enumerate(rest)]
    for x, y, width, (label, value) in cells:
        page.p.setPen(QColor("black"))
        page.p.setFont(bold)
        page.p.drawText(QRectF(x, y, label_w, row_h), Qt.AlignmentFlag.AlignVCenter, label)
        page.p.setFont(font)
        page.p.drawText(QRectF(x + label_w, y, width - label_w - 8, row_h), Qt.AlignmentFlag.AlignVCenter,
                        fm.elidedText(value, Qt.TextElideMode.ElideRight, int(width - label_w - 8)))
    page.y = top + ((len(rest) + 1) // 2) * row_h + fm.height() * 0.4


def _patient_facts(record: Record, patient: Patient | None, clinician: str) -> list[tuple[str, str]]:
    if patient is not None:
        who = patient.clinic_id + (f" ({patient.name})" if patient.name else "")
        age = patient.age_at(record.created)
        who += (translate("Report", ", born {birth}").format(birth=patient.birth) if patient.birth
                else translate("Report", ", date of birth not recorded"))
        who += translate("Report", " ({age} years at the examination)").format(age=age) if age is not None else ""
        who += (f", {translate('PatientDialog', SEX_LABELS[patient.sex]).lower()}" if patient.sex in SEX_LABELS
                and patient.sex else f", {patient.sex}" if patient.sex else translate("Report", ", sex not recorded"))
    else:
        who = translate("Report", "not filed under a patient")
    site = (site_name(record.body_site) + (f": {record.lesion_label}" if record.lesion_label else "")) \
        if record.body_site else translate("Report", "not recorded")
    return [(translate("Report", "Patient:"), who), (translate("Report", "Lesion site:"), site),
            (translate("Report", "Examination:"), record.created_local()),
            (translate("Report", "Clinician:"), clinician or "—"),
            (translate("Report", "Report made:"), _dt.datetime.now().strftime("%Y-%m-%d %H:%M")),
            (translate("Report", "History:"), translate("Report", "examination #{id}").format(id=record.id)
             if record.id is not None else translate("Report", "not saved")),
            (translate("Report", "Models:"), record.model_version)]


def _signature(page: _Page, bottom: float, clinician: str) -> None:
    font = QFont("Helvetica")
    font.setPointSizeF(9.5)
    page.p.setFont(font)
    fm = page.p.fontMetrics()
    y = bottom - fm.height() * 2.2
    page.p.setPen(QPen(QColor("black"), 1))
    third = page.width / 3
    labels = (translate("Report", "Clinician: {name}").format(name=clinician) if clinician
              else translate("Report", "Clinician"), translate("Report", "Signature"), translate("Report", "Date"))
    for i, label in enumerate(labels):
        x = i * third
        page.p.drawLine(int(x), int(y), int(x + third - 20), int(y))
        page.p.drawText(QRectF(x, y + 2, third - 20, fm.height() * 1.2), Qt.AlignmentFlag.AlignLeft, label)


def write_report(path: Path, record: Record, image: np.ndarray, preprocessed: np.ndarray | None,
                 heatmap: np.ndarray | None, threshold: float, opacity: float = 0.45,
                 rates: Sequence[Mapping[str, Any]] | None = None, heatmap_code: str | None = None, *,
                 store: RecordStore | None = None, compare_with: Record | None = None,
                 rise_points: float = 10.0) -> Path:
    """Write the report to `path` (A4, 150 dpi, PDF/A-1b) and return it.

    `threshold` is the current setting: the wording comes from `analysis.assess_record`, as in the window,
    with the same rule (the stricter of it and the result's own) and the models' measured `rates`.
    With `store`, the record's patient, lesion and assessment are read fresh, and a follow-up gets a second
    page comparing it with `compare_with` (default: the lesion's examination before this one).
    """
    patient = None
    if store is not None and record.id is not None:
        fresh = store.get(record.id, full=False)
        if fresh is not None:
            for name in ("lesion_id", "patient_id", "patient_clinic_id", "patient_name", "body_site",
                         "lesion_label", "clinician", "assessment", "notes", "histopathology",
                         "histopathology_note", "histopathology_date"):
                setattr(record, name, getattr(fresh, name))
        patient = store.get_patient(record.patient_id) if record.patient_id is not None else None
        if compare_with is None:
            compare_with = store.previous_examination(record)
    clinician = record.clinician
    assessment = assess_record(record, threshold, rates)
    out_of_scope = assessment.level == OUT_OF_SCOPE
    path = Path(path)
    who = record.patient_clinic_id or record.source_name
    writer, painter = _open_writer(path, translate("Report", "Lesion Desktop report: {who}, {date}").format(
        who=who, date=record.created_local()))
    try:
        area = writer.pageLayout().paintRectPixels(writer.resolution())
        page = _Page(painter, float(area.width()))
        page.text(translate("Report", "Lesion Desktop — decision-support report"), 15, bold=True, gap=0.2)
        _facts(page, _patient_facts(record, patient, clinician))
        page.boxed(disclaimer(), RED, size=9)

        painter.setFont(QFont("Helvetica", 9))
        half = page.width / 2 - 10
        img_h = area.height() * 0.24
        kind = IMAGE_KIND_TEXT.get(record.image_kind, "") if record.id is not None else ""
        stored = translate("Records", kind) if kind else ""  # marked in records.py
        used = _draw_image(painter, image, QRectF(0, page.y, half, img_h),
                           f"{record.source_name} ({image.shape[1]}×{image.shape[0]})")
        if preprocessed is not None:
            right = preprocessed
            heatmap = None if out_of_scope else heatmap  # no diagnosis, so no evidence for one
            if heatmap is not None:  # never in the lite edition, which has no PyTorch for explain.py
                from lesion_desktop.heatmap import overlay

                right = overlay(preprocessed, heatmap, opacity)
            code = heatmap_code or record.details.get("heatmap_class") or record.top_code
            cap = (translate("Report", "Heat-map for {cls}").format(cls=diagnosis_name(code)) if heatmap is not None
                   else translate("Report", "Network input"))
            used = max(used, _draw_image(painter, right, QRectF(page.width / 2 + 10, page.y, half, img_h), cap))
        page.y += used + 12

        top = CLASSES[record.top_index]
        # the assessment in the window's words (tr_core: the same translation the window shows)
        headline, said = tr_core(assessment.headline), tr_core(assessment.text)
        likely = translate("Report", "Most likely: {cls} ({code}), {p}").format(
            cls=diagnosis_name(top), code=top.code, p=f"{record.probabilities[record.top_index]:.1%}")
        if assessment.level == OUT_OF_SCOPE:  # no diagnosis, as in the window
            page.boxed(f"{headline}\n{said}", RED)
        elif assessment.reassures:
            page.text(likely, 13, True)
            page.text(said, 10)
        else:  # the warning (or a poor image's "cannot rule out") comes first, above the top label
            page.boxed(f"{headline}\n{said}", RED, fill=RED, size=12)
            page.text(likely, 11, True)
        if not out_of_scope:
            if scope_note(record):
                page.text(scope_note(record), 10, bold=True, colour=RED)
            _draw_probabilities(painter, page, record.probabilities)
            page.text(agreement_text(record.details, diagnosis_name(top)), 9.5)
        if record.warnings:
            page.text(translate("Report", "Image quality and other warnings:") + " "
                      + " ".join(f"• {tr_core(w)}" for w in record_warnings(record)), 9.5)
        else:
            page.text(translate("Report", "Image quality: no problems found."), 9.5)
        if stored:
            page.text(translate("Report", "Stored image: {how}").format(how=stored)
                      + (f"; sha256 {record.image_sha256[:16]}…" if record.image_sha256 else "") + ".", 8.5,
                      colour=QColor(90, 90, 90))
        page.text(translate("Report", "Clinician's assessment:") + " " + (record.assessment or "—"), 10, bold=True,
                  gap=0.1)
        if record.notes:
            page.text(record.notes, 10)
        if record.histopathology:
            name = (diagnosis_name(record.histopathology) if record.histopathology != "other"
                    else translate("Report", "other"))
            page.text(translate("Report", "Histopathology: {name}").format(name=name)
                      + (f" ({record.histopathology_note})" if record.histopathology_note else "")
                      + (f", {record.histopathology_date}" if record.histopathology_date else ""), 10, True)
        foot_h = painter.fontMetrics().height() * 9
        _signature(page, area.height() - foot_h + painter.fontMetrics().height() * 2.5, clinician)
        page.y = max(page.y, area.height() - foot_h * 0.55)
        page.boxed(disclaimer() + " " + translate("Report", "This report shows the output of a statistical model "
                                                  "trained on HAM10000 dermoscopy images; it may be wrong, especially "
                                                  "for images unlike its training data."), RED, size=8)
        if compare_with is not None:
            writer.newPage()
            _comparison_page(painter, float(area.width()), float(area.height()), compare_with, record, image,
                             rise_points)
    finally:
        painter.end()
    return path


def _comparison_page(p: QPainter, width: float, height: float, earlier: Record, later: Record,
                     later_image: np.ndarray, rise_points: float) -> None:
    """Page 2 of a follow-up: both images at one scale, each probability's change, FollowUp's sentence."""
    page = _Page(p, width)
    follow = FollowUp(earlier, later, rise_points / 100)
    where = later.filed_under(site_name) or translate("Report", "this lesion")
    page.text(translate("Report", "Follow-up comparison — {where}").format(where=where), 14, bold=True)
    try:
        earlier_image: np.ndarray | None = earlier.load_image()
    except LesionError:
        earlier_image = None
    images = [earlier_image, later_image]
    box_w, box_h = width / 2 - 10, height * 0.3
    sizes = [(im.shape[1], im.shape[0]) for im in images if im is not None]
    scale = min(min(box_w / w, box_h / h) for w, h in sizes)
    p.setFont(QFont("Helvetica", 9))
    cap_h = p.fontMetrics().height() * 1.4
    tallest = 0.0
    for i, (rec, im) in enumerate(((earlier, earlier_image), (later, later_image))):
        x0 = i * (width / 2 + 10)
        if im is None:
            p.drawText(QRectF(x0, page.y, box_w, box_h), Qt.AlignmentFlag.AlignCenter,
                       translate("Report", "{date}: the stored image is missing").format(date=rec.created_local()))
            continue
        w, h = im.shape[1] * scale, im.shape[0] * scale
        p.drawImage(QRectF(x0 + (box_w - w) / 2, page.y, w, h), to_qimage(im))
        p.setPen(QColor("black"))
        p.drawText(QRectF(x0, page.y + h, box_w, cap_h), Qt.AlignmentFlag.AlignCenter,
                   (translate("Report", "Earlier: {date} ({w}×{h})") if i == 0
                    else translate("Report", "This examination: {date} ({w}×{h})")).format(
                       date=rec.created_local(), w=im.shape[1], h=im.shape[0]))
        tallest = max(tallest, h + cap_h)
    page.y += tallest + 6
    page.text(translate("Report", "Both images are shown at the same scale."), 9, colour=QColor(90, 90, 90))
    summary = tr_core(follow.summary())  # records.FollowUp's sentence, as the timeline shows it
    if follow.alert:
        page.boxed(summary, RED, fill=RED, size=11)
    else:
        page.text(summary, 10.5)
    _draw_changes(p, page, follow)
    p.setFont(QFont("Helvetica", 8))
    page.y = max(page.y + 20, height - p.fontMetrics().height() * 6)
    page.boxed(disclaimer() + " " + translate("Report", "A change between two examinations is a change in the "
                                              "models' output; it does not measure the lesion."), RED, size=8)


def _draw_changes(p: QPainter, page: _Page, follow: FollowUp) -> None:
    font = QFont("Helvetica")
    font.setPointSizeF(9.5)
    p.setFont(font)
    fm = p.fontMetrics()
    row = fm.height() * 1.4
    cols = [0.0, page.width * 0.52, page.width * 0.66, page.width * 0.80]
    heads = [translate("Report", "Class"), translate("Report", "Earlier"), translate("Report", "This one"),
             translate("Report", "Change")]
    lines = [(f"{c.code}  {diagnosis_name(c)}", float(follow.earlier.probabilities[i]),
              float(follow.later.probabilities[i])) for i, c in enumerate(CLASSES)]
    lines.append((translate("Report", "Malignant classes combined"), follow.earlier.malignant_probability,
                  follow.later.malignant_probability))
    bold = QFont(font)
    bold.setBold(True)
    p.setFont(bold)
    p.setPen(QColor("black"))
    for x, h in zip(cols, heads, strict=True):
        p.drawText(QRectF(x, page.y, page.width * 0.3, row), Qt.AlignmentFlag.AlignVCenter, h)
    page.y += row
    for n, (name, a, b) in enumerate(lines):
        last = n == len(lines) - 1
        p.setFont(bold if last else font)
        change = (b - a) * 100
        p.setPen(RED if last and follow.alert else QColor("black"))
        cells = [fm.elidedText(name, Qt.TextElideMode.ElideRight, int(cols[1] - 8)), f"{a:.1%}", f"{b:.1%}",
                 translate("Report", "{change} points").format(change=f"{change:+.1f}")]
        for x, text in zip(cols, cells, strict=True):
            p.drawText(QRectF(x, page.y, page.width * 0.5, row), Qt.AlignmentFlag.AlignVCenter, text)
        page.y += row
    p.setPen(QColor("black"))


def write_record_report(path: Path, store: RecordStore, record: Record, *, threshold: float, opacity: float = 0.45,
                        rates: Sequence[Mapping[str, Any]] | None = None, rise_points: float = 10.0,
                        compare_with: Record | None = None) -> Path:
    """A stored examination's report (its image and blobs from the history), as the window would write it."""
    full = store.get(record.id) if record.id is not None else None
    full = full or record
    return write_report(path, full, full.load_image(), full.preprocessed(), full.heatmap(), threshold, opacity,
                        rates, store=store, compare_with=compare_with, rise_points=rise_points)


def report_writer(store: RecordStore, threshold: float, opacity: float, rise_points: float,
                  rates_for: Callable[[Record], Sequence[Mapping[str, Any]] | None] | None = None
                  ) -> Callable[[Record, Path], None]:
    """For lesion_desktop.export: one PDF per examination, with the comparison page for a follow-up."""

    def write(record: Record, path: Path) -> None:
        write_record_report(path, store, record, threshold=threshold, opacity=opacity,
                            rates=rates_for(record) if rates_for is not None else None, rise_points=rise_points)

    return write


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
                   fm.elidedText(f"{c.code}  {diagnosis_name(c)}", Qt.TextElideMode.ElideRight, int(name_w - 8)))
        track = QRectF(name_w, y + row * 0.2, bar_w, row * 0.6)
        p.fillRect(track, QColor(235, 235, 235))
        p.fillRect(QRectF(track.x(), track.y(), bar_w * float(probs[i]), track.height()),
                   MALIGNANT_COLOUR if c.malignant else BENIGN_COLOUR)
        p.drawText(QRectF(name_w + bar_w + 6, y, pct_w, row), Qt.AlignmentFlag.AlignVCenter, f"{probs[i]:.1%}")
    page.y += 7 * row + fm.height() * 0.5
