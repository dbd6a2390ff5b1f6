"""A lesion's timeline: its examinations in order, two of them side by side at the same scale, the change in
each probability, and a clear note when the malignant probability rose by more than the follow-up setting.

The sentence comes from records.FollowUp, which the report's comparison page uses too.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QCoreApplication, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPaintEvent, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lesion_desktop.classes import CLASSES
from lesion_desktop.errors import LesionError
from lesion_desktop.qt.imaging import to_qimage
from lesion_desktop.qt.patient_bodymap import site_name
from lesion_desktop.qt.translations import diagnosis_name, tr_core
from lesion_desktop.records import FollowUp, Record, RecordStore

ID_ROLE = Qt.ItemDataRole.UserRole
RED = QColor(198, 40, 40)
translate = QCoreApplication.translate  # a literal context and text in each call: pyside6-lupdate finds them


def same_scale(sizes: list[tuple[int, int]], box_w: float, box_h: float) -> float:
    """One factor (screen pixels per image pixel) that fits every image in its box: same scale, comparable."""
    return min(min(box_w / w, box_h / h) for w, h in sizes)


class PairView(QWidget):
    """Two images side by side, drawn with one scale factor, each with a caption below."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(360, 220)
        self._images: list[np.ndarray | None] = [None, None]
        self._captions = ["", ""]

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(720, 340)

    def set_images(self, left: np.ndarray | None, right: np.ndarray | None, captions: tuple[str, str]) -> None:
        self._images = [left, right]
        self._captions = list(captions)
        self.update()

    def _caption_h(self) -> float:
        return self.fontMetrics().height() * 2.6

    def scale(self) -> float:
        sizes = [(im.shape[1], im.shape[0]) for im in self._images if im is not None]
        if not sizes:
            return 0.0
        return same_scale(sizes, self.width() / 2 - 12, self.height() - self._caption_h())

    def drawn_sizes(self) -> list[tuple[float, float]]:
        s = self.scale()
        return [(im.shape[1] * s, im.shape[0] * s) for im in self._images if im is not None]

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        s = self.scale()
        half = self.width() / 2
        for i, (im, cap) in enumerate(zip(self._images, self._captions, strict=True)):
            x0 = i * half
            if im is None:
                p.drawText(QRectF(x0, 0, half, self.height()), Qt.AlignmentFlag.AlignCenter,
                           cap or translate("Timeline", "No image"))
                continue
            w, h = im.shape[1] * s, im.shape[0] * s
            target = QRectF(x0 + (half - w) / 2, 0, w, h)
            p.drawImage(target, to_qimage(im))
            p.drawText(QRectF(x0 + 4, h + 4, half - 8, self._caption_h()),
                       Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap, cap)
        p.end()


class TimelineDialog(QDialog):
    open_requested = Signal(int)  # an examination's id
    report_requested = Signal(int, int)  # (later, earlier): a report with the comparison page

    def __init__(self, store: RecordStore, lesion_id: int, rise_points: float = 10.0,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.lesion_id = lesion_id
        self.rise = rise_points / 100.0
        self._images: dict[int, np.ndarray | None] = {}
        lesion = store.get_lesion(lesion_id)
        if lesion is None:
            raise LesionError(translate("Timeline", "Lesion #{id} no longer exists.").format(id=lesion_id))
        patient = store.get_patient(lesion.patient_id)
        who = patient.title() if patient else "?"
        self.setWindowTitle(translate("Timeline", "Timeline: {patient}, {lesion}").format(patient=who,
                                                                                          lesion=lesion.title(site_name)))
        self.records: list[Record] = store.examinations_of(lesion_id)  # oldest first
        count = translate("Timeline", "{n} examination(s)").format(n=len(self.records))
        title = QLabel(f"<b>{who}</b> · {lesion.title(site_name)} · {count}")
        self.list = QListWidget()
        self.list.setIconSize(QSize(48, 48))
        self.list.setMaximumWidth(260)
        for r in self.records:
            item = QListWidgetItem(f"{r.created_local()}\n{r.top_code} {r.probabilities.max():.0%} · " + translate(
                "Timeline", "malignant {p}").format(p=f"{r.malignant_probability:.0%}"))
            pix = QPixmap()
            pix.loadFromData(r.thumbnail, "PNG")
            item.setIcon(QIcon(pix))
            item.setData(ID_ROLE, r.id)
            self.list.addItem(item)
        self.list.itemActivated.connect(lambda it: self.open_requested.emit(int(it.data(ID_ROLE))))
        self.earlier = QComboBox()
        self.later = QComboBox()
        for r in self.records:
            label = f"{r.created_local()} (#{r.id})"
            self.earlier.addItem(label, r.id)
            self.later.addItem(label, r.id)
        if len(self.records) >= 2:  # the latest and the one before it
            self.earlier.setCurrentIndex(len(self.records) - 2)
            self.later.setCurrentIndex(len(self.records) - 1)
        self.earlier.currentIndexChanged.connect(lambda _i: self.compare())
        self.later.currentIndexChanged.connect(lambda _i: self.compare())
        pick = QHBoxLayout()
        pick.addWidget(QLabel(translate("Timeline", "Compare")))
        pick.addWidget(self.earlier, 1)
        pick.addWidget(QLabel(translate("Timeline", "with")))
        pick.addWidget(self.later, 1)
        self.pair = PairView()
        self.alert = QLabel()
        self.alert.setWordWrap(True)
        self.table = QTableWidget(len(CLASSES) + 1, 4)
        self.table.setHorizontalHeaderLabels([translate("Timeline", "Class"), translate("Timeline", "Earlier"),
                                              translate("Timeline", "Later"), translate("Timeline", "Change")])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(self.table.verticalHeader().defaultSectionSize() * 9)
        self.open_button = QPushButton(translate("Timeline", "Open the later examination"))
        self.open_button.clicked.connect(lambda: self.open_requested.emit(int(self.later.currentData())))
        self.report_button = QPushButton(translate("Timeline", "Report with this comparison…"))
        self.report_button.clicked.connect(
            lambda: self.report_requested.emit(int(self.later.currentData()), int(self.earlier.currentData())))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.addButton(self.open_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.report_button, QDialogButtonBox.ButtonRole.ActionRole)
        right = QVBoxLayout()
        right.addLayout(pick)
        right.addWidget(self.pair, 3)
        right.addWidget(self.alert)
        right.addWidget(self.table, 2)
        body = QHBoxLayout()
        body.addWidget(self.list)
        body.addLayout(right, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(title)
        lay.addLayout(body, 1)
        lay.addWidget(buttons)
        self.resize(1100, 760)
        self.follow_up: FollowUp | None = None
        self.compare()

    def _image(self, record: Record) -> np.ndarray | None:
        assert record.id is not None
        if record.id not in self._images:
            try:
                self._images[record.id] = record.load_image()
            except LesionError:
                self._images[record.id] = None
        return self._images[record.id]

    def _record(self, combo: QComboBox) -> Record | None:
        rid = combo.currentData()
        return next((r for r in self.records if r.id == rid), None)

    def compare(self) -> FollowUp | None:
        a, b = self._record(self.earlier), self._record(self.later)
        enough = a is not None and b is not None and a.id != b.id
        self.report_button.setEnabled(enough)
        self.open_button.setEnabled(b is not None)
        if not enough or a is None or b is None:
            self.follow_up = None
            self.pair.set_images(self._image(b) if b else None, None,
                                 (b.created_local() if b else "", translate("Timeline", "A second examination of "
                                                                            "this lesion is needed to compare.")))
            self.alert.setText(translate("Timeline", "Only one examination of this lesion so far: nothing to compare "
                                         "yet.") if len(self.records) < 2
                               else translate("Timeline", "Choose two different examinations."))
            self.alert.setStyleSheet("")
            self._fill_table(a or b, None)
            return None
        if (b.created, b.id or 0) < (a.created, a.id or 0):
            a, b = b, a  # always earlier -> later
        self.follow_up = FollowUp(a, b, self.rise)
        ia, ib = self._image(a), self._image(b)
        caps = tuple(f"{r.created_local()} · {im.shape[1]}×{im.shape[0]} px" if im is not None
                     else f"{r.created_local()} · " + translate("Timeline", "image missing")
                     for r, im in ((a, ia), (b, ib)))
        self.pair.set_images(ia, ib, (caps[0], caps[1]))
        self.alert.setText(tr_core(self.follow_up.summary()) + "\n" + translate("Timeline", "Shown at the same scale."))
        self.alert.setStyleSheet("QLabel {background:#c62828; color:white; font-weight:bold; padding:8px;"
                                 "border-radius:4px}" if self.follow_up.alert else "QLabel {padding:4px}")
        self._fill_table(a, b)
        return self.follow_up

    def _fill_table(self, a: Record | None, b: Record | None) -> None:
        rows = [(f"{diagnosis_name(c)} ({c.code})", i) for i, c in enumerate(CLASSES)]
        for row, (name, i) in enumerate([*rows, (translate("Timeline", "Malignant classes combined"), -1)]):
            va = (a.malignant_probability if i < 0 else float(a.probabilities[i])) if a else None
            vb = (b.malignant_probability if i < 0 else float(b.probabilities[i])) if b else None
            cells = [name, f"{va:.1%}" if va is not None else "", f"{vb:.1%}" if vb is not None else "",
                     translate("Timeline", "{change} points").format(change=f"{(vb - va) * 100:+.1f}")
                     if va is not None and vb is not None else ""]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if i < 0 or (i >= 0 and CLASSES[i].malignant and col == 3 and va is not None and vb is not None
                             and vb - va > self.rise):
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                if col == 3 and va is not None and vb is not None and i < 0 and vb - va > self.rise:
                    item.setForeground(RED)
                self.table.setItem(row, col, item)
