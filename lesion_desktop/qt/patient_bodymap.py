"""A front and back body outline to pick a lesion's site from HAM10000's localization vocabulary by clicking.

Each drawn region is one site; the sites a drawing cannot show well (trunk, acral, unknown) stay in the
combo box beside it. The drawing is in a 100 x 100 unit box per view, scaled to the widget.
"""

from __future__ import annotations

from PySide6.QtCore import QT_TRANSLATE_NOOP, QCoreApplication, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from lesion_desktop.records import BODY_SITES

translate = QCoreApplication.translate  # a literal context and text in each call: pyside6-lupdate finds them
# HAM10000's site names, as stored; shown in the clinic's language
_SITE_NAMES = (QT_TRANSLATE_NOOP("BodySite", "scalp"), QT_TRANSLATE_NOOP("BodySite", "face"),
               QT_TRANSLATE_NOOP("BodySite", "ear"), QT_TRANSLATE_NOOP("BodySite", "neck"),
               QT_TRANSLATE_NOOP("BodySite", "chest"), QT_TRANSLATE_NOOP("BodySite", "abdomen"),
               QT_TRANSLATE_NOOP("BodySite", "back"), QT_TRANSLATE_NOOP("BodySite", "trunk"),
               QT_TRANSLATE_NOOP("BodySite", "upper extremity"), QT_TRANSLATE_NOOP("BodySite", "hand"),
               QT_TRANSLATE_NOOP("BodySite", "lower extremity"), QT_TRANSLATE_NOOP("BodySite", "foot"),
               QT_TRANSLATE_NOOP("BodySite", "acral"), QT_TRANSLATE_NOOP("BodySite", "genital"),
               QT_TRANSLATE_NOOP("BodySite", "unknown"))
assert set(_SITE_NAMES) == set(BODY_SITES)


def site_name(site: str) -> str:
    """A body site as the clinic reads it (the stored value stays HAM10000's English)."""
    return translate("BodySite", site)


_Shape = tuple[str, QRectF]  # kind ('ellipse' or 'rect'), rectangle in unit coordinates (0..100, 0..100)


def _limbs(arm_site: str, leg_site: str) -> list[tuple[str, list[_Shape]]]:
    return [
        (arm_site, [("rect", QRectF(22, 24, 9, 34)), ("rect", QRectF(69, 24, 9, 34))]),
        ("hand", [("ellipse", QRectF(21, 58, 10, 8)), ("ellipse", QRectF(69, 58, 10, 8))]),
        (leg_site, [("rect", QRectF(35, 60, 13, 31)), ("rect", QRectF(52, 60, 13, 31))]),
        ("foot", [("ellipse", QRectF(33, 91, 15, 6)), ("ellipse", QRectF(52, 91, 15, 6))]),
    ]


# Front view, then back view; within a view, later regions are drawn (and hit) on top.
FRONT: list[tuple[str, list[_Shape]]] = [
    *_limbs("upper extremity", "lower extremity"),
    ("chest", [("rect", QRectF(33, 20, 34, 18))]),
    ("abdomen", [("rect", QRectF(33, 38, 34, 16))]),
    ("genital", [("rect", QRectF(40, 54, 20, 7))]),
    ("neck", [("rect", QRectF(44, 15, 12, 6))]),
    ("ear", [("ellipse", QRectF(38.5, 6, 4, 6)), ("ellipse", QRectF(57.5, 6, 4, 6))]),
    ("face", [("ellipse", QRectF(42, 4, 16, 12))]),
    ("scalp", [("rect", QRectF(42.5, 1, 15, 4))]),
]
BACK: list[tuple[str, list[_Shape]]] = [
    *_limbs("upper extremity", "lower extremity"),
    ("back", [("rect", QRectF(33, 20, 34, 41))]),
    ("neck", [("rect", QRectF(44, 15, 12, 6))]),
    ("ear", [("ellipse", QRectF(38.5, 6, 4, 6)), ("ellipse", QRectF(57.5, 6, 4, 6))]),
    ("scalp", [("ellipse", QRectF(42, 1, 16, 15))]),
]
MAP_SITES = {site for view in (FRONT, BACK) for site, _ in view}
assert MAP_SITES <= set(BODY_SITES)


class BodyMap(QWidget):
    """Front and back outlines side by side; a click picks the region's site."""

    site_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(220, 180)
        self.setAccessibleName(translate("BodyMap", "Body map: click where the lesion is"))
        self._site = ""
        self._hover = ""

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(300, 240)

    def site(self) -> str:
        return self._site

    def set_site(self, site: str) -> None:
        self._site = site
        self.update()

    def _boxes(self) -> list[tuple[str, QRectF]]:
        """Each view's drawing box in widget pixels, with its caption."""
        side = min(self.width() / 2 - 8, self.height() - 22)
        top = 4.0
        left = (self.width() - 2 * side - 16) / 2
        return [(translate("BodyMap", "Front"), QRectF(left, top, side, side)),
                (translate("BodyMap", "Back"), QRectF(left + side + 16, top, side, side))]

    @staticmethod
    def _path(shape: _Shape, box: QRectF) -> QPainterPath:
        kind, r = shape
        s = box.width() / 100
        rect = QRectF(box.x() + r.x() * s, box.y() + r.y() * s, r.width() * s, r.height() * s)
        path = QPainterPath()
        if kind == "ellipse":
            path.addEllipse(rect)
        else:
            path.addRoundedRect(rect, 2 * s, 2 * s)
        return path

    def site_at(self, pos: QPointF) -> str:
        for (_, box), regions in zip(self._boxes(), (FRONT, BACK), strict=True):
            for site, shapes in reversed(regions):
                if any(self._path(sh, box).contains(pos) for sh in shapes):
                    return site
        return ""

    def point_of(self, site: str, view: int = 0) -> QPointF:
        """The centre of the site's first region in a view (0 front, 1 back): for tests and tooltips."""
        box = self._boxes()[view][1]
        for s, shapes in (FRONT, BACK)[view]:
            if s == site:
                return self._path(shapes[0], box).boundingRect().center()
        raise KeyError(site)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        for (caption, box), regions in zip(self._boxes(), (FRONT, BACK), strict=True):
            for site, shapes in regions:
                fill = QColor(198, 40, 40, 200) if site == self._site else (
                    QColor(38, 110, 180, 90) if site == self._hover else QColor(220, 210, 200))
                for sh in shapes:
                    path = self._path(sh, box)
                    p.fillPath(path, fill)
                    p.setPen(QPen(QColor(120, 110, 100), 1))
                    p.drawPath(path)
            p.setPen(pal.windowText().color())
            p.drawText(QRectF(box.x(), box.bottom(), box.width(), 18), Qt.AlignmentFlag.AlignCenter, caption)
        p.end()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        site = self.site_at(event.position())
        if site != self._hover:
            self._hover = site
            self.setCursor(Qt.CursorShape.PointingHandCursor if site else Qt.CursorShape.ArrowCursor)
            if site:
                QToolTip.showText(event.globalPosition().toPoint(), site_name(site), self)
            self.update()

    def leaveEvent(self, event: object) -> None:  # noqa: N802 - Qt API
        self._hover = ""
        self.update()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        site = self.site_at(event.position())
        if site and event.button() == Qt.MouseButton.LeftButton:
            self.set_site(site)
            self.site_chosen.emit(site)
