"""Small painted widgets: an aspect-keeping image view, the probability bar chart and a message bar.

PySide6-Essentials has no QtCharts, and seven bars do not need it: a QPainter widget is a few lines,
scales with the DPI and the font, and exposes its values for the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QToolButton, QWidget

from lesion_desktop.classes import CLASSES
from lesion_desktop.qt.imaging import to_qimage

MALIGNANT_COLOUR = QColor(198, 40, 40)
BENIGN_COLOUR = QColor(38, 110, 180)


class ImageView(QWidget):
    """Shows one image scaled to fit, centred, with a caption; a placeholder text when empty."""

    def __init__(self, placeholder: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._placeholder = placeholder
        self.caption = ""
        self.setMinimumSize(140, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_image(self, rgb: np.ndarray | None, caption: str = "") -> None:
        self._image = to_qimage(rgb) if rgb is not None else None
        self.caption = caption
        self.update()

    def has_image(self) -> bool:
        return self._image is not None

    def image_size(self) -> tuple[int, int] | None:
        """(height, width) of what is shown, for tests and captions."""
        return (self._image.height(), self._image.width()) if self._image is not None else None

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(360, 300)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        """The image and its caption as one block, centred: no empty frame around a small picture."""
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        pal = self.palette()
        fm = p.fontMetrics()
        cap_h = fm.height() + 6
        area = QRectF(self.rect()).adjusted(4, 4, -4, -4 - cap_h)
        if self._image is None or self._image.isNull():
            target = area
            p.setPen(QPen(pal.color(QPalette.ColorRole.Mid), 1, Qt.PenStyle.DashLine))
            p.drawRoundedRect(target.adjusted(0.5, 0.5, -0.5, -0.5), 6, 6)
            p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            p.drawText(target.adjusted(12, 12, -12, -12), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       self._placeholder)
        else:
            iw, ih = self._image.width(), self._image.height()
            scale = min(area.width() / iw, area.height() / ih)
            w, h = iw * scale, ih * scale
            target = QRectF(area.x() + (area.width() - w) / 2, area.y(), w, h)  # top-aligned, like the result
            p.drawImage(target, self._image)
            p.setPen(QPen(pal.color(QPalette.ColorRole.Mid), 1))
            p.drawRect(target.adjusted(-0.5, -0.5, 0.5, 0.5))
        p.setPen(pal.color(QPalette.ColorRole.WindowText))
        cap_rect = QRectF(4, target.bottom() + 4, self.width() - 8, cap_h)
        p.drawText(cap_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop,
                   fm.elidedText(self.caption, Qt.TextElideMode.ElideMiddle, int(cap_rect.width())))
        p.end()


class ProbabilityChart(QWidget):
    """Horizontal bars for the seven classes; malignant classes in red so they are never overlooked."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._values: tuple[float, ...] = ()
        self.setMinimumHeight(7 * 22)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_probabilities(self, values: Sequence[float] | np.ndarray | None) -> None:
        self._values = tuple(float(v) for v in values) if values is not None else ()
        self.setToolTip("\n".join(f"{c.name}: {v:.1%}" for c, v in zip(CLASSES, self._values, strict=False)))
        self.update()

    def values(self) -> tuple[float, ...]:
        return self._values

    def _row_height(self) -> int:
        return max(20, self.fontMetrics().height() + 6)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(360, 7 * self._row_height() + 4)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(240, 7 * self._row_height() + 4)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        fm = p.fontMetrics()
        row = self._row_height()
        label_w = max(fm.horizontalAdvance(c.code) for c in CLASSES) + 12
        pct_w = fm.horizontalAdvance("100.0%") + 8
        bar_w = max(10, self.width() - label_w - pct_w)
        top = int(np.argmax(self._values)) if self._values else -1
        for i, c in enumerate(CLASSES):
            y = 2 + i * row
            v = self._values[i] if i < len(self._values) else 0.0
            font = QFont(self.font())
            font.setBold(i == top)
            p.setFont(font)
            p.setPen(pal.color(QPalette.ColorRole.Text))
            p.drawText(QRectF(0, y, label_w - 6, row), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                       c.code)
            track = QRectF(label_w, y + 3, bar_w, row - 6)
            p.fillRect(track, pal.color(QPalette.ColorRole.AlternateBase))
            colour = MALIGNANT_COLOUR if c.malignant else BENIGN_COLOUR
            p.fillRect(QRectF(track.x(), track.y(), bar_w * max(0.0, min(1.0, v)), track.height()), colour)
            if self._values:
                p.drawText(QRectF(label_w + bar_w + 4, y, pct_w, row), Qt.AlignmentFlag.AlignVCenter, f"{v:.1%}")
        p.end()


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
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
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
        self.show()

    def text(self) -> str:
        return "" if self.isHidden() else self.label.text()

    def dismiss(self) -> None:
        self.level = ""
        self.label.clear()
        self.hide()
        self.closed.emit()
