"""Screenshots of the main window's result screen at small laptop sizes, with the shipped models.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/screenshots/make_screenshots.py [--out docs/screenshots]

Run under Xvfb with the real xcb platform (apt-get install -y xvfb libxcb-cursor0 libxkbcommon-x11-0 libegl1),
so fonts and styles are what a user sees. A temporary LESION_DESKTOP_HOME keeps the user's history, settings
and window geometry out of it. Scenarios: a benign result, a warning, a poor image, an out-of-scope image,
the live camera preview.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
FULLRES = REPO.parent / "shared" / "data" / "ham10000_fullres_sample" / "images"
BENIGN = FULLRES / "ISIC_0024306.jpg"  # follow-up naevus
MELANOMA = FULLRES / "ISIC_0024516.jpg"  # histology-confirmed melanoma


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--sizes", default="1024x768,1366x768")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    home = tempfile.mkdtemp(prefix="lesion-screens-")
    os.environ["LESION_DESKTOP_HOME"] = home

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from lesion_desktop.imageio import load_image
    from lesion_desktop.qt.main_window import MainWindow
    from lesion_desktop.settings import Settings

    app = QApplication.instance() or QApplication(sys.argv)
    args.out.mkdir(parents=True, exist_ok=True)

    def wait(window: MainWindow, ms: int = 120_000) -> None:
        loop = QEventLoop()
        timer = QTimer()
        timer.timeout.connect(lambda: loop.quit() if window.idle else None)
        timer.start(50)
        QTimer.singleShot(ms, loop.quit)
        loop.exec()
        timer.stop()
        for _ in range(5):
            app.processEvents()

    def settle(ms: int = 300) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    class StillCamera:
        """A dermatoscope that keeps showing one lesion (the melanoma, at 640x480)."""

        description = "USB dermatoscope"

        def open(self) -> bool:
            return True

        def read(self) -> np.ndarray:
            import cv2

            return cv2.resize(load_image(MELANOMA), (640, 480))

        def release(self) -> None:
            pass

    window = MainWindow(Settings(device="cpu"), camera_source=lambda settings: StillCamera())
    window.show()
    wait(window)

    def poor() -> np.ndarray:
        import cv2

        rgb = load_image(MELANOMA)
        return (cv2.GaussianBlur(rgb, (0, 0), 6) * 0.22).astype(np.uint8)

    def out_of_scope() -> None:
        """A referral letter pasted by mistake: the scope gate's image checks refuse it (a real verdict)."""
        from PySide6.QtCore import QRectF, Qt
        from PySide6.QtGui import QColor, QFont, QImage, QPainter

        from lesion_desktop.qt.imaging import qimage_to_rgb

        page = QImage(600, 450, QImage.Format.Format_RGB888)
        page.fill(QColor("white"))
        p = QPainter(page)
        p.setFont(QFont("DejaVu Sans", 11))
        p.drawText(QRectF(40, 40, 520, 370), Qt.TextFlag.TextWordWrap,
                   "Dear colleague,\n\nThank you for seeing this 54-year-old patient with a pigmented lesion "
                   "on the left shoulder, present for two years and recently darker. No personal or family history "
                   "of melanoma.\n\nKind regards,\nDr A. Example")
        p.end()
        window.classify(qimage_to_rgb(page), "referral-letter.png")
        wait(window)
        a = window.current
        if a is None or (a.record.details.get("scope") or {}).get("in_scope") is not False:
            print("warning: the scope gate did not refuse the letter; the out-of-scope screenshot shows no refusal")

    def camera() -> None:
        window.open_path(BENIGN)  # the previous result, below the live preview
        wait(window)
        window.set_camera_on(True)
        settle(800)

    scenarios = {
        "benign": lambda: window.open_path(BENIGN),
        "warning": lambda: window.open_path(MELANOMA),
        "poor-image": lambda: window.classify(poor(), "melanoma-dark-and-blurred.png"),
        "out-of-scope": out_of_scope,
        "shown-anyway": lambda: (out_of_scope(), window.show_anyway()),
        "camera": camera,
    }
    only = [s for s in args.only.split(",") if s]
    for size in args.sizes.split(","):
        w, h = (int(x) for x in size.split("x"))
        window.resize(w, h)
        for name, act in scenarios.items():
            if only and name not in only:
                continue
            act()
            wait(window)
            settle()
            path = args.out / f"{name}-{w}x{h}.png"
            window.grab().save(str(path))
            print(f"saved {path} ({window.width()}x{window.height()})")
            if name == "camera":
                window.stop_camera()
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
