"""A small painted line plot for live training curves (loss per batch, balanced accuracy per epoch)."""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


class CurvePlot(QWidget):
    def __init__(self, title: str, colour: QColor, y_range: tuple[float, float] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.colour = colour
        self.y_range = y_range  # fixed range (accuracy 0..1) or None to follow the data
        self.points: list[tuple[float, float]] = []
        self.setMinimumSize(220, 140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAccessibleName(title)
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)  # reachable by keyboard, so a screen reader announces it
        self._describe()

    def _describe(self) -> None:
        """The curve as text for screen readers: how many points, the latest, the lowest and the highest."""
        if not self.points:
            text = QCoreApplication.translate("CurvePlot", "No data yet.")
        else:
            ys = [y for _, y in self.points]
            text = QCoreApplication.translate("CurvePlot", "{n} points; latest {last}, lowest {lo}, highest {hi}.")
            text = text.format(n=len(ys), last=f"{ys[-1]:.3f}", lo=f"{min(ys):.3f}", hi=f"{max(ys):.3f}")
        self.setAccessibleDescription(text)
        self.setToolTip(f"{self.title}: {text}")

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(320, 180)

    def add_point(self, x: float, y: float) -> None:
        self.points.append((float(x), float(y)))
        self._describe()
        self.update()

    def clear(self) -> None:
        self.points.clear()
        self._describe()
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        p.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        fm = p.fontMetrics()
        text = pal.color(QPalette.ColorRole.Text)
        left = fm.horizontalAdvance("0.000") + 8
        plot = QRectF(left, fm.height() + 6, self.width() - left - 8, self.height() - 2 * fm.height() - 12)
        latest = f": {self.points[-1][1]:.3f}" if self.points else ""
        p.setPen(text)
        p.drawText(QRectF(0, 2, self.width(), fm.height()), Qt.AlignmentFlag.AlignCenter, self.title + latest)
        p.setPen(QPen(pal.color(QPalette.ColorRole.Mid), 1))
        p.drawRect(plot)
        if self.y_range is not None:
            lo, hi = self.y_range
        elif self.points:
            ys = [y for _, y in self.points]
            lo, hi = min(ys), max(ys)
            pad = (hi - lo) * 0.1 or max(abs(hi) * 0.1, 0.1)
            lo, hi = max(0.0, lo - pad), hi + pad
        else:
            lo, hi = 0.0, 1.0
        p.setPen(text)
        p.drawText(QRectF(0, plot.top() - fm.height() / 2, left - 4, fm.height()), Qt.AlignmentFlag.AlignRight,
                   f"{hi:.3g}")
        p.drawText(QRectF(0, plot.bottom() - fm.height() / 2, left - 4, fm.height()), Qt.AlignmentFlag.AlignRight,
                   f"{lo:.3g}")
        if not self.points:
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, "waiting for data…")
            p.end()
            return
        x0, x1 = self.points[0][0], self.points[-1][0]
        span_x = (x1 - x0) or 1.0
        span_y = (hi - lo) or 1.0

        def at(x: float, y: float) -> QPointF:
            return QPointF(plot.left() + (x - x0) / span_x * plot.width(),
                           plot.bottom() - (min(max(y, lo), hi) - lo) / span_y * plot.height())

        path = QPainterPath(at(*self.points[0]))
        for x, y in self.points[1:]:
            path.lineTo(at(x, y))
        p.setPen(QPen(self.colour, 2))
        p.drawPath(path)
        p.setBrush(self.colour)
        for x, y in self.points[-20:] if len(self.points) < 40 else self.points[-1:]:
            p.drawEllipse(at(x, y), 2.5, 2.5)
        p.end()
