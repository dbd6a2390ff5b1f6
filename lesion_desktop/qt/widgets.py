"""Small painted widgets: a zoomable image view, the probability chart, the heat-map legend, a message bar.

PySide6-Essentials has no QtCharts, and seven bars do not need it: a QPainter widget is a few lines,
scales with the DPI and the font, and exposes its values for the tests and, as text, to screen readers.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PySide6.QtCore import QCoreApplication, QEvent, QObject, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QLinearGradient,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QBoxLayout,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from lesion_desktop.classes import CLASSES, LesionClass
from lesion_desktop.qt.imaging import to_qimage
from lesion_desktop.qt.translations import diagnosis_name

MALIGNANT_COLOUR = QColor(198, 40, 40)
BENIGN_COLOUR = QColor(38, 110, 180)


translate = QCoreApplication.translate  # a literal context and text in each call: pyside6-lupdate finds them


def short_name(c: LesionClass) -> str:
    """The class name without its parenthesis, in the clinic's language: 'Actinic keratosis / intraepithelial
    carcinoma'."""
    return diagnosis_name(c, "short")


def class_label(c: LesionClass) -> str:
    """'Melanoma (mel)': the name a clinician reads (translated), with the code the models and the CSV use."""
    return f"{short_name(c)} ({c.code})"


class ImageView(QWidget):
    """One image scaled to fit, with a caption below it (one or more lines, never cut off where they fit).

    Zoom with the mouse wheel (about the pointer), move a zoomed image by dragging, double-click for the
    whole image again. A new image resets the view unless `keep_view` (camera frames, another overlay).
    """

    MAX_ZOOM = 16.0

    def __init__(self, placeholder: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._placeholder = placeholder
        self.caption = ""
        self._zoom = 1.0
        self._centre = QPointF(0.5, 0.5)  # centre of the visible part, as a fraction of the image
        self._drag_from: QPointF | None = None
        self._dimmed = False
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip(translate("widgets", "Mouse wheel: zoom · drag: move · double-click: whole image"))
        self.setAccessibleName(placeholder)

    # ---- content ------------------------------------------------------------------------------------
    def set_image(self, rgb: np.ndarray | None, caption: str = "", keep_view: bool = False) -> None:
        new = to_qimage(rgb) if rgb is not None else None
        same_size = new is not None and self._image is not None and new.size() == self._image.size()
        if not (keep_view and same_size):
            self.reset_view()
        self._image = new
        self.caption = caption
        self._dimmed = False
        self.setAccessibleDescription(caption.replace("\n", ", ") if new is not None else self._placeholder)
        self.update()

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        if self._image is None:
            self.setAccessibleDescription(text)
        self.update()

    def placeholder(self) -> str:
        return self._placeholder

    def set_dimmed(self, dimmed: bool) -> None:
        """Grey the picture out: it belongs to a result that is being replaced."""
        self._dimmed = dimmed
        self.update()

    def is_dimmed(self) -> bool:
        return self._dimmed

    def has_image(self) -> bool:
        return self._image is not None

    def qimage(self) -> QImage | None:
        """What is shown (a copy), for tests."""
        return self._image.copy() if self._image is not None else None

    def image_size(self) -> tuple[int, int] | None:
        """(height, width) of what is shown, for tests and captions."""
        return (self._image.height(), self._image.width()) if self._image is not None else None

    # ---- zoom and pan -------------------------------------------------------------------------------
    def zoom(self) -> float:
        return self._zoom

    def reset_view(self) -> None:
        self._zoom = 1.0
        self._centre = QPointF(0.5, 0.5)
        self.update()

    def visible_rect(self) -> QRectF:
        """The part of the image on screen, in image pixels."""
        if self._image is None:
            return QRectF()
        iw, ih = self._image.width(), self._image.height()
        w, h = iw / self._zoom, ih / self._zoom
        x = min(max(self._centre.x() * iw - w / 2, 0.0), iw - w)
        y = min(max(self._centre.y() * ih - h / 2, 0.0), ih - h)
        return QRectF(x, y, w, h)

    def picture_rect(self) -> QRectF:
        """Where the picture is drawn, in widget coordinates (the same at every zoom)."""
        area = self._image_area()
        if self._image is None or self._image.isNull():
            return area
        iw, ih = self._image.width(), self._image.height()
        scale = min(area.width() / iw, area.height() / ih)
        w, h = iw * scale, ih * scale
        return QRectF(area.x() + (area.width() - w) / 2, area.y(), w, h)  # top-aligned: the caption follows

    def zoom_at(self, factor: float, at: QPointF | None = None) -> None:
        """Zoom by `factor`, keeping the image point under `at` (widget coordinates) where it is."""
        if self._image is None:
            return
        pic = self.picture_rect()
        at = at if at is not None and pic.contains(at) else pic.center()
        before = self._image_point(at)
        self._zoom = min(max(self._zoom * factor, 1.0), self.MAX_ZOOM)
        vis = self.visible_rect()
        fx, fy = (at.x() - pic.x()) / pic.width(), (at.y() - pic.y()) / pic.height()
        iw, ih = self._image.width(), self._image.height()
        self._centre = QPointF((before.x() - fx * vis.width() + vis.width() / 2) / iw,
                               (before.y() - fy * vis.height() + vis.height() / 2) / ih)
        self._clamp_centre()
        self.update()

    def pan_by(self, dx: float, dy: float) -> None:
        """Move the picture by (dx, dy) screen pixels, as dragging does."""
        if self._image is None or self._zoom <= 1.0:
            return
        pic, vis = self.picture_rect(), self.visible_rect()
        iw, ih = self._image.width(), self._image.height()
        self._centre -= QPointF(dx / pic.width() * vis.width() / iw, dy / pic.height() * vis.height() / ih)
        self._clamp_centre()
        self.update()

    def _clamp_centre(self) -> None:
        half = 0.5 / self._zoom
        self._centre = QPointF(min(max(self._centre.x(), half), 1 - half), min(max(self._centre.y(), half), 1 - half))

    def _image_point(self, at: QPointF) -> QPointF:
        pic, vis = self.picture_rect(), self.visible_rect()
        return QPointF(vis.x() + (at.x() - pic.x()) / pic.width() * vis.width(),
                       vis.y() + (at.y() - pic.y()) / pic.height() * vis.height())

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt API
        steps = event.angleDelta().y() / 120.0
        if self._image is None or steps == 0:
            event.ignore()
            return
        self.zoom_at(1.25 ** steps, event.position())
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if event.button() == Qt.MouseButton.LeftButton and self._zoom > 1.0:
            self._drag_from = event.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if self._drag_from is not None:
            d = event.position() - self._drag_from
            self._drag_from = event.position()
            self.pan_by(d.x(), d.y())
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        self._drag_from = None
        self.unsetCursor()
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        self.reset_view()
        event.accept()

    # ---- painting -----------------------------------------------------------------------------------
    def _caption_lines(self) -> list[str]:
        """The caption's lines, each broken at spaces to fit the view's width (a single long word is elided)."""
        fm, width = self.fontMetrics(), self.width() - 8
        text = self.caption + (f" · {self._zoom:.0%}" if self._zoom > 1.0 and self.caption else "")
        out: list[str] = []
        for line in text.split("\n"):
            wrapped: list[str] = []
            for word in line.split(" "):
                if wrapped and fm.horizontalAdvance(f"{wrapped[-1]} {word}") <= width:
                    wrapped[-1] += f" {word}"
                else:
                    wrapped.append(word)
            out.extend(w for w in wrapped if w)
        return out

    def _caption_height(self) -> float:
        return max(1, len(self._caption_lines())) * self.fontMetrics().height() + 6

    def _image_area(self) -> QRectF:
        return QRectF(self.rect()).adjusted(4, 4, -4, -4 - self._caption_height())

    def caption_cut(self) -> bool:
        """True when a caption line is too wide for the view and is shown shortened."""
        fm = self.fontMetrics()
        return any(fm.horizontalAdvance(line) > self.width() - 8 for line in self._caption_lines())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(400, 330)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        """The image and its caption as one block, top-aligned: no empty frame around a small picture."""
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        pal = self.palette()
        fm = p.fontMetrics()
        if self._image is None or self._image.isNull():
            target = self._image_area()
            p.setPen(QPen(pal.color(QPalette.ColorRole.Mid), 1, Qt.PenStyle.DashLine))
            p.drawRoundedRect(target.adjusted(0.5, 0.5, -0.5, -0.5), 6, 6)
            p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            p.drawText(target.adjusted(12, 12, -12, -12), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       self._placeholder)
        else:
            target = self.picture_rect()
            p.drawImage(target, self._image, self.visible_rect())
            if self._dimmed:
                p.fillRect(target, QColor(255, 255, 255, 170))
            p.setPen(QPen(pal.color(QPalette.ColorRole.Mid), 1))
            p.drawRect(target.adjusted(-0.5, -0.5, 0.5, 0.5))
        p.setPen(pal.color(QPalette.ColorRole.PlaceholderText if self._dimmed else QPalette.ColorRole.WindowText))
        lines = self._caption_lines()
        y = target.bottom() + 4
        for line in lines:
            p.drawText(QRectF(4, y, self.width() - 8, fm.height()), Qt.AlignmentFlag.AlignHCenter,
                       fm.elidedText(line, Qt.TextElideMode.ElideMiddle, self.width() - 8))
            y += fm.height()
        p.end()


class ViewGrid(QWidget):
    """Its image views side by side or one above the other, whichever gives the pictures more room."""

    def __init__(self, views: Sequence[QWidget], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.views = list(views)
        self.aspect = 4 / 3  # width / height of the pictures (HAM10000's 600x450)
        self._layout = QBoxLayout(QBoxLayout.Direction.LeftToRight, self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        for v in self.views:
            self._layout.addWidget(v)
            v.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() in (QEvent.Type.Show, QEvent.Type.Hide):
            self.arrange()
        return False

    def stacked(self) -> bool:
        return self._layout.direction() == QBoxLayout.Direction.TopToBottom

    def arrange(self) -> None:
        n = max(1, sum(not v.isHidden() for v in self.views))
        caption = 2 * self.fontMetrics().height() + 14
        w, h = self.width(), self.height()
        side_by_side = min(w / n, (h - caption) * self.aspect)
        stacked = min(w, (h / n - caption) * self.aspect)
        direction = QBoxLayout.Direction.TopToBottom if stacked > side_by_side else QBoxLayout.Direction.LeftToRight
        if direction != self._layout.direction():
            self._layout.setDirection(direction)
        for i in range(len(self.views)):  # stacked, the original gets more height than the small network input
            self._layout.setStretch(i, 3 if i == 0 and direction == QBoxLayout.Direction.TopToBottom else 2)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self.arrange()


class ProbabilityChart(QWidget):
    """Bars for the seven classes, each under its full name; malignant classes in red so they are never overlooked.

    The values are also the widget's accessible description, so a screen reader reads all seven.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._values: tuple[float, ...] = ()
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)  # a narrow chart wraps the long names onto a second line
        self.setSizePolicy(policy)
        self.setAccessibleName(translate("widgets", "Probabilities of the seven diagnoses"))
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)  # reachable by keyboard, so a screen reader announces it
        self.setAccessibleDescription(self.text())

    def set_probabilities(self, values: Sequence[float] | np.ndarray | None) -> None:
        self._values = tuple(float(v) for v in values) if values is not None else ()
        self.setToolTip(self.text())
        self.setAccessibleDescription(self.text())
        self.update()

    def values(self) -> tuple[float, ...]:
        return self._values

    def text(self) -> str:
        """The chart as text: one line per class, highest first ('Melanoma (mel), malignant: 59.7%')."""
        if not self._values:
            return translate("widgets", "No result yet.")
        order = sorted(range(len(self._values)), key=lambda i: -self._values[i])
        malignant = translate("widgets", "malignant")
        return "\n".join(f"{class_label(CLASSES[i])}{', ' + malignant if CLASSES[i].malignant else ''}: "
                         f"{self._values[i]:.1%}" for i in order if i < len(CLASSES))

    def _bar_height(self) -> int:
        return max(12, self.fontMetrics().height() * 3 // 4)

    def name_lines(self, width: int) -> list[list[str]]:
        """Each class's 'Name (code)' broken into lines that fit `width` (at most two; a longer one is elided)."""
        bold = QFont(self.font())
        bold.setBold(True)
        fm = QFontMetrics(bold)  # the widest the name can be drawn (the top class is bold)
        out = []
        for c in CLASSES:
            lines: list[str] = []
            for word in class_label(c).split(" "):
                if lines and fm.horizontalAdvance(f"{lines[-1]} {word}") <= width:
                    lines[-1] += f" {word}"
                else:
                    lines.append(word)
            if len(lines) > 2:
                lines = [lines[0], fm.elidedText(" ".join(lines[1:]), Qt.TextElideMode.ElideMiddle, width)]
            out.append(lines)
        return out

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt API
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt API
        fh = self.fontMetrics().height()
        return sum(len(lines) * fh + self._bar_height() + 8 for lines in self.name_lines(width)) + 2

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(360, self.heightForWidth(360))

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(220, self.heightForWidth(max(self.width(), 220)))

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        fm = p.fontMetrics()
        fh = fm.height()
        bar_h = self._bar_height()
        pct_w = fm.horizontalAdvance("100.0%") + 8
        bar_w = max(10, self.width() - pct_w)
        top = int(np.argmax(self._values)) if self._values else -1
        y = 1.0
        for i, (c, lines) in enumerate(zip(CLASSES, self.name_lines(self.width()), strict=True)):
            v = self._values[i] if i < len(self._values) else 0.0
            font = QFont(self.font())
            font.setBold(i == top)
            p.setFont(font)
            p.setPen(MALIGNANT_COLOUR.darker(115) if c.malignant else pal.color(QPalette.ColorRole.Text))
            for line in lines:
                p.drawText(QRectF(0, y, self.width(), fh), Qt.AlignmentFlag.AlignLeft, line)
                y += fh
            track = QRectF(0, y + 1, bar_w, bar_h)
            p.fillRect(track, pal.color(QPalette.ColorRole.AlternateBase))
            colour = MALIGNANT_COLOUR if c.malignant else BENIGN_COLOUR
            p.fillRect(QRectF(track.x(), track.y(), bar_w * max(0.0, min(1.0, v)), track.height()), colour)
            if self._values:
                p.setPen(pal.color(QPalette.ColorRole.Text))
                p.drawText(QRectF(bar_w + 4, track.y() - 4, pct_w, track.height() + 8),
                           Qt.AlignmentFlag.AlignVCenter, f"{v:.1%}")
            y += bar_h + 8
        p.end()


def jet_colours(n: int = 256) -> list[QColor]:
    """The heat-map's colours from low to high: the same OpenCV JET map that `heatmap.overlay` paints."""
    ramp = np.linspace(0, 255, n).astype(np.uint8).reshape(-1, 1)
    rgb = cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB).reshape(-1, 3)
    return [QColor(int(r), int(g), int(b)) for r, g, b in rgb]


class HeatmapLegend(QWidget):
    """The heat-map's colour scale: blue where the class's evidence is weakest, red where it is strongest."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.colours = jet_colours(9)
        self.low, self.high = translate("widgets", "weak"), translate("widgets", "strong")
        self.setAccessibleName(translate("widgets", "Heat-map colour scale"))
        self.setAccessibleDescription(translate("widgets", "Blue: weak evidence for the class; red: strong evidence."))
        self.setToolTip(self.accessibleDescription())
        self.setMinimumSize(120, self.fontMetrics().height() + 4)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(200, self.fontMetrics().height() + 4)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        fm = p.fontMetrics()
        lw, hw = fm.horizontalAdvance(self.low) + 6, fm.horizontalAdvance(self.high) + 6
        bar = QRectF(lw, 3, max(10, self.width() - lw - hw), self.height() - 6)
        grad = QLinearGradient(bar.topLeft(), bar.topRight())
        for i, c in enumerate(self.colours):
            grad.setColorAt(i / (len(self.colours) - 1), c)
        p.fillRect(bar, grad)
        p.setPen(self.palette().color(QPalette.ColorRole.WindowText))
        p.drawText(QRectF(0, 0, lw - 4, self.height()), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                   self.low)
        p.drawText(QRectF(bar.right() + 4, 0, hw, self.height()), Qt.AlignmentFlag.AlignVCenter, self.high)
        p.end()


class HeatmapBar(QWidget):
    """Which class the heat-map shows (a choice of the seven), its colour legend, and a note when it cannot change."""

    class_chosen = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = QComboBox()
        for c in CLASSES:
            self.combo.addItem(class_label(c), c.code)
        self.combo.setAccessibleName(translate("widgets", "Heat-map class"))
        self.combo.setToolTip(translate("widgets", "The class whose evidence the heat-map shows"))
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(14)
        self.combo.activated.connect(lambda i: self.class_chosen.emit(int(i)))
        label = QLabel(translate("widgets", "Heat-map for:"))
        label.setBuddy(self.combo)
        self.legend = HeatmapLegend()
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color:#5f6368;")
        self.note.hide()
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(label)
        row.addWidget(self.combo, 2)
        row.addWidget(self.legend, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 0, 4, 0)
        lay.setSpacing(2)
        lay.addLayout(row)
        lay.addWidget(self.note)

    def set_state(self, index: int, choosable: bool, note: str = "") -> None:
        self.combo.setCurrentIndex(index)
        self.combo.setEnabled(choosable)
        self.note.setText(note)
        self.note.setVisible(bool(note))

    def current_index(self) -> int:
        return self.combo.currentIndex()


class MessageBar(QFrame):
    """A non-modal message line: errors stay until closed, so nothing blocks and nothing is missed."""

    closed = Signal()
    _STYLES = {  # (background, text, border)
        "error": ("#fdecea", "#611a15", "#f5c2c0"),
        "warning": ("#fff4e5", "#663c00", "#ffd59e"),
        "info": ("#e8f4fd", "#0d3c61", "#b6dcf7"),
    }

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.level = ""
        self.setObjectName("messageBar")
        self.setAccessibleName(translate("widgets", "Messages"))
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip(translate("widgets", "Dismiss"))
        close.setAccessibleName(translate("widgets", "Dismiss the message"))
        close.clicked.connect(self.dismiss)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 4, 4)
        lay.addWidget(self.label, 1)
        lay.addWidget(close)
        self.hide()

    def show_message(self, text: str, level: str = "info") -> None:
        self.level = level
        bg, fg, border = self._STYLES.get(level, self._STYLES["info"])
        self.setStyleSheet(f"QFrame#messageBar {{background:{bg}; border:1px solid {border}; border-radius:4px;}}"
                           f"QLabel {{color:{fg};}}")
        self.label.setText(text)
        self.label.setAccessibleName(text)
        self.show()

    def text(self) -> str:
        return "" if self.isHidden() else self.label.text()

    def dismiss(self) -> None:
        self.level = ""
        self.label.clear()
        self.hide()
        self.closed.emit()
