"""Conversions between numpy RGB arrays (the core's currency) and Qt images."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage, QPixmap


def to_qimage(rgb: np.ndarray) -> QImage:
    """HxWx3 uint8 RGB -> QImage that owns its pixels (the array may be freed afterwards)."""
    rgb = np.ascontiguousarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def to_pixmap(rgb: np.ndarray) -> QPixmap:
    return QPixmap.fromImage(to_qimage(rgb))


def qimage_to_rgb(image: QImage) -> np.ndarray:
    """Any QImage (clipboard, drop) -> HxWx3 uint8 RGB, alpha composited on white like imageio does."""
    if image.hasAlphaChannel():
        flat = QImage(image.size(), QImage.Format.Format_RGB888)
        flat.fill(0xFFFFFF)
        from PySide6.QtGui import QPainter

        p = QPainter(flat)
        p.drawImage(0, 0, image)
        p.end()
        image = flat
    else:
        image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, stride = image.width(), image.height(), image.bytesPerLine()
    buf = np.frombuffer(image.constBits(), np.uint8, count=stride * h).reshape(h, stride)
    # a copy: without one, an image whose rows need no padding came back as a view of the QImage's memory,
    # which turned to garbage once the QImage was freed (seen when a pasted image was shown again)
    return buf[:, : 3 * w].reshape(h, w, 3).copy()
