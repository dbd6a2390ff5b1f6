"""Write a set of pictures that are NOT dermoscopy images of skin lesions, for measuring the scope gate.

    python benchmarks/ood_images.py OUT_FOLDER [--no-qt]

Everything comes from what is installed: the pictures scikit-image ships inside its wheel (read from the
package folder itself, so nothing can download), text rendered with OpenCV, screenshots of the app's
widgets rendered offscreen with Qt (and docs/screenshot-main.png), synthetic patterns, and cartoon-like
drawings. The file name starts with the kind of picture (photo_, text_, screen_, pattern_, cartoon_,
micro_), which the scope report groups by. The images are generated, never committed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
KINDS = ("photo", "micro", "text", "screen", "pattern", "cartoon")

# scikit-image's shipped pictures: (file in skimage/data, kind, saved name)
SKIMAGE_FILES = [
    ("astronaut.png", "photo", "astronaut"),
    ("camera.png", "photo", "camera"),
    ("chelsea.png", "photo", "chelsea_cat"),
    ("coffee.png", "photo", "coffee"),
    ("rocket.jpg", "photo", "rocket"),
    ("motorcycle_left.png", "photo", "motorcycle"),
    ("hubble_deep_field.jpg", "photo", "hubble"),
    ("moon.png", "photo", "moon"),
    ("coins.png", "photo", "coins"),
    ("brick.png", "photo", "brick"),
    ("grass.png", "photo", "grass"),
    ("gravel.png", "photo", "gravel"),
    ("clock_motion.png", "photo", "clock"),
    ("ihc.png", "micro", "histology_ihc"),
    ("cell.png", "micro", "cell"),
    ("retina.jpg", "micro", "retina_fundus"),
    ("microaneurysms.png", "micro", "retina_microaneurysms"),
    ("page.png", "text", "scanned_page"),
    ("text.png", "text", "text_photo"),
    ("color.png", "pattern", "colour_wheel"),
    ("chessboard_RGB.png", "pattern", "chessboard"),
    ("logo.png", "cartoon", "skimage_logo"),
    ("horse.png", "cartoon", "horse_silhouette"),
    ("phantom.png", "pattern", "phantom"),
]


def _skimage_dir() -> Path | None:
    try:
        import skimage.data
    except ImportError:
        return None
    return Path(skimage.data.__file__).parent


def _as_rgb(img: np.ndarray) -> np.ndarray:
    """BGR(A)/grey/bool as read by OpenCV -> RGB uint8."""
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.dtype != np.uint8:
        img = np.clip(img.astype(np.float64) / max(float(img.max()), 1e-9) * 255, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:  # composite on white, as a viewer shows a transparent logo
        alpha = img[:, :, 3:4].astype(np.float32) / 255
        img = (img[:, :, :3].astype(np.float32) * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)


def skimage_pictures() -> Iterator[tuple[str, np.ndarray]]:
    folder = _skimage_dir()
    if folder is None:
        print("scikit-image is not installed: its pictures are left out (pip install scikit-image)", file=sys.stderr)
        return
    for fname, kind, name in SKIMAGE_FILES:
        path = folder / fname
        if not path.is_file():  # never fetch: only what the wheel ships
            continue
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is not None:
            yield f"{kind}_{name}", _as_rgb(img)
    faces = folder / "lfw_subset.npy"
    if faces.is_file():  # 25x25 grey faces: tile 4x4 into one picture of faces
        arr = np.load(faces, allow_pickle=False)[:16]
        grid = np.vstack([np.hstack(list(arr[r * 4:(r + 1) * 4])) for r in range(4)])
        grid = cv2.resize((grid * 255).clip(0, 255).astype(np.uint8), (400, 400), interpolation=cv2.INTER_CUBIC)
        yield "photo_faces_grid", cv2.cvtColor(grid, cv2.COLOR_GRAY2RGB)


LOREM = ("Dermoscopy images only. The program supports and never replaces a clinician. Patient ID 0042 "
         "Findings: asymmetric pigment network, regression structures. Recommended: excision and histology. "
         "Report generated 2026-11-26 14:03. Page 1 of 2.").split()


def text_page(rng: np.random.Generator, size: tuple[int, int], bg: tuple[int, int, int], fg: tuple[int, int, int],
              scale: float, font: int) -> np.ndarray:
    h, w = size
    img = np.full((h, w, 3), bg, np.uint8)
    y = int(30 * scale) + 10
    while y < h - 10:
        words = rng.choice(LOREM, size=int(rng.integers(4, 12)))
        cv2.putText(img, " ".join(words), (12, y), font, scale, fg, max(1, int(round(scale * 1.5))), cv2.LINE_AA)
        y += int(32 * scale) + 6
    return img


def text_pages() -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    specs = [
        ((600, 800), (255, 255, 255), (0, 0, 0), 0.7, cv2.FONT_HERSHEY_SIMPLEX),
        ((450, 600), (250, 248, 240), (30, 30, 120), 0.9, cv2.FONT_HERSHEY_DUPLEX),
        ((768, 1024), (0, 0, 0), (0, 255, 0), 0.6, cv2.FONT_HERSHEY_PLAIN),
        ((480, 640), (255, 240, 200), (90, 40, 10), 1.2, cv2.FONT_HERSHEY_COMPLEX),
        ((300, 400), (220, 180, 150), (60, 20, 20), 0.8, cv2.FONT_HERSHEY_TRIPLEX),  # skin-coloured paper
        ((600, 450), (40, 40, 60), (240, 240, 240), 0.7, cv2.FONT_HERSHEY_SIMPLEX),
    ]
    for i, (size, bg, fg, scale, font) in enumerate(specs):
        yield f"text_page{i}", text_page(rng, size, bg, fg, scale, font)


def pattern_images() -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(2)
    h, w = 450, 600
    yield "pattern_noise_colour", rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    grey = np.clip(rng.normal(128, 40, (h, w)), 0, 255).astype(np.uint8)
    yield "pattern_noise_grey", np.dstack([grey] * 3)
    for name, colour in (("black", (0, 0, 0)), ("white", (255, 255, 255)), ("skin", (224, 172, 140)),
                         ("red", (200, 30, 40)), ("blue", (40, 70, 200)), ("brown", (120, 80, 50))):
        yield f"pattern_flat_{name}", np.full((h, w, 3), colour, np.uint8)
    xs = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    ys = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    a, b = np.array([230, 180, 150], np.float32), np.array([90, 50, 40], np.float32)
    yield "pattern_gradient_skin", (a * (1 - xs) + b * xs + 0 * ys).astype(np.uint8)
    yield "pattern_gradient_rainbow", np.dstack([xs[..., 0] * 255 + 0 * ys[..., 0], ys[..., 0] * 255 + 0 * xs[..., 0],
                                                 (1 - xs[..., 0]) * 255 + 0 * ys[..., 0]]).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    yield "pattern_checker", np.dstack([((yy // 40 + xx // 40) % 2 * 255).astype(np.uint8)] * 3)
    check = ((yy // 25 + xx // 25) % 2).astype(bool)
    yield "pattern_checker_colour", np.where(check[..., None], np.array([200, 60, 60], np.uint8),
                                             np.array([240, 220, 180], np.uint8))
    yield "pattern_stripes", np.dstack([((xx // 15) % 2 * 200 + 30).astype(np.uint8)] * 3)
    stripes = (np.sin(xx / 6.0 + yy / 9.0) > 0)[..., None]
    yield "pattern_stripes_colour", np.where(stripes, np.array([150, 90, 60], np.uint8),
                                             np.array([230, 190, 160], np.uint8))
    blurred = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 8)
    yield "pattern_blurred_noise", cv2.normalize(blurred, None, 0, 255, cv2.NORM_MINMAX)


def cartoon(rng: np.random.Generator, variant: int) -> np.ndarray:
    """A flat-shaded drawing with outlines: a figure with a hat and a robe (like a clip-art wizard), or a face."""
    h, w = 450, 600
    sky = [(135, 206, 235), (255, 255, 255), (250, 240, 200), (60, 40, 90)][variant % 4]
    img = np.full((h, w, 3), sky, np.uint8)
    cv2.rectangle(img, (0, 360), (w, h), (80, 160, 60), -1)
    cx = 300 + int(rng.integers(-60, 60))
    robe = [(70, 40, 160), (30, 90, 200), (150, 30, 40), (40, 120, 60)][variant % 4]
    body = np.array([[cx - 90, 420], [cx + 90, 420], [cx + 40, 200], [cx - 40, 200]], np.int32)
    cv2.fillPoly(img, [body], robe)
    cv2.polylines(img, [body], True, (0, 0, 0), 3, cv2.LINE_AA)
    skin = (236, 188, 150) if variant % 2 == 0 else (160, 110, 80)
    cv2.circle(img, (cx, 160), 55, skin, -1, cv2.LINE_AA)
    cv2.circle(img, (cx, 160), 55, (0, 0, 0), 3, cv2.LINE_AA)
    for dx in (-20, 20):
        cv2.circle(img, (cx + dx, 150), 8, (255, 255, 255), -1)
        cv2.circle(img, (cx + dx, 150), 4, (0, 0, 0), -1)
    cv2.ellipse(img, (cx, 180), (22, 10), 0, 0, 180, (120, 30, 30), 3, cv2.LINE_AA)
    hat = np.array([[cx - 70, 115], [cx + 70, 115], [cx + 10, 10]], np.int32)
    cv2.fillPoly(img, [hat], robe)
    cv2.polylines(img, [hat], True, (0, 0, 0), 3, cv2.LINE_AA)
    for _ in range(6):  # stars on the robe
        x, y = int(rng.integers(cx - 50, cx + 50)), int(rng.integers(230, 400))
        cv2.drawMarker(img, (x, y), (255, 230, 0), cv2.MARKER_STAR, 18, 2)
    if variant >= 2:
        cv2.putText(img, "MAGIC!", (30, 60), cv2.FONT_HERSHEY_DUPLEX, 1.6, (200, 30, 30), 3, cv2.LINE_AA)
    return img


def smiley(colour: tuple[int, int, int], bg: tuple[int, int, int]) -> np.ndarray:
    img = np.full((450, 600, 3), bg, np.uint8)
    cv2.circle(img, (300, 225), 170, colour, -1, cv2.LINE_AA)
    cv2.circle(img, (300, 225), 170, (40, 20, 10), 6, cv2.LINE_AA)
    for dx in (-60, 60):
        cv2.ellipse(img, (300 + dx, 180), (18, 30), 0, 0, 360, (40, 20, 10), -1, cv2.LINE_AA)
    cv2.ellipse(img, (300, 250), (90, 60), 0, 20, 160, (40, 20, 10), 8, cv2.LINE_AA)
    return img


def cartoons() -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    for v in range(4):
        yield f"cartoon_figure{v}", cartoon(rng, v)
    yield "cartoon_smiley_yellow", smiley((250, 210, 40), (255, 255, 255))
    # a brown blob on a skin-coloured ground: the crudest drawing of "a mole"
    yield "cartoon_mole_drawing", smiley((110, 70, 45), (230, 185, 155))


def docs_screenshots() -> Iterator[tuple[str, np.ndarray]]:
    """The documentation's screenshots of the app (docs/*.png), whole and a central crop of the first."""
    for i, shot in enumerate(sorted((REPO / "docs").glob("screenshot*.png"))[:4]):
        img = cv2.imread(str(shot), cv2.IMREAD_COLOR)
        if img is None:
            continue
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        yield f"screen_docs_{shot.stem.replace('screenshot-', '').replace('_', '-')}", rgb
        if i == 0:
            h, w = rgb.shape[:2]
            yield "screen_docs_crop", rgb[h // 4: 3 * h // 4, w // 4: 3 * w // 4]


def qt_screenshots() -> Iterator[tuple[str, np.ndarray]]:
    """The app's widgets rendered offscreen (QWidget.grab)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        from PySide6.QtWidgets import QApplication
    except ImportError:
        print("PySide6 is not installed: widget screenshots left out", file=sys.stderr)
        return
    import tempfile

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as home:
        os.environ["LESION_DESKTOP_HOME"] = home  # never the user's own settings or history
        for name, build in _widgets():
            try:
                widget = build()
            except Exception as e:  # a widget whose constructor changed: leave that one out, say so
                print(f"widget {name} left out: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            widget.show()
            for _ in range(20):
                app.processEvents()
            yield f"screen_{name}", _grab(widget)
            widget.close()
            widget.deleteLater()
            app.processEvents()


def _grab(widget: object) -> np.ndarray:
    from PySide6.QtGui import QImage

    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)  # type: ignore[attr-defined]
    w, h, stride = image.width(), image.height(), image.bytesPerLine()
    arr = np.frombuffer(image.constBits(), np.uint8, count=stride * h).reshape(h, stride)
    return arr[:, : w * 3].reshape(h, w, 3).copy()


def _widgets() -> list[tuple[str, Callable[[], object]]]:
    from PySide6.QtWidgets import QLabel, QTableWidget, QTableWidgetItem, QTextEdit

    def table() -> object:
        t = QTableWidget(12, 4)
        t.setHorizontalHeaderLabels(["Image", "Top class", "Probability", "Warning"])
        for r in range(12):
            for c, v in enumerate((f"ISIC_{24306 + r}.jpg", ["nv", "mel", "bkl"][r % 3], f"{0.3 + r / 30:.2f}",
                                   "" if r % 4 else "malignancy")):
                t.setItem(r, c, QTableWidgetItem(v))
        t.resize(640, 420)
        return t

    def text() -> object:
        e = QTextEdit()
        e.setPlainText("\n".join(" ".join(LOREM[i: i + 9]) for i in range(0, len(LOREM), 9)) * 3)
        e.resize(600, 450)
        return e

    def label() -> object:
        lab = QLabel("<h2>Lesion Desktop</h2><p>Decision support for dermoscopy images.</p>"
                     "<p>This program supports and never replaces a clinician.</p>")
        lab.resize(500, 300)
        return lab

    def main_window() -> object:
        from lesion_desktop.qt.main_window import MainWindow

        # a models folder that does not exist: the window as a first start without models shows it, and no
        # engine loads in the background
        w = MainWindow(models_dir_override=Path(os.environ["LESION_DESKTOP_HOME"]) / "no-models")
        w.resize(1024, 700)
        return w

    def result_panel() -> object:
        from lesion_desktop.qt.result_panel import ResultPanel

        p = ResultPanel()
        p.resize(500, 600)
        return p

    return [("table", table), ("text_editor", text), ("about_label", label), ("main_window", main_window),
            ("result_panel", result_panel)]


def generate(out: Path, qt: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    sources: list[Iterator[tuple[str, np.ndarray]]] = [skimage_pictures(), text_pages(), pattern_images(),
                                                        cartoons(), docs_screenshots()]
    if qt:
        sources.append(qt_screenshots())
    written = []
    for source in sources:
        for name, rgb in source:
            # photos and drawings as JPEG (how they usually arrive), the rest lossless
            ext = ".jpg" if name.startswith(("photo_", "cartoon_figure")) else ".png"
            path = out / f"{name}{ext}"
            cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder to write the pictures into (created)")
    ap.add_argument("--no-qt", action="store_true", help="leave out the offscreen widget screenshots")
    a = ap.parse_args(argv)
    written = generate(a.out, qt=not a.no_qt)
    counts = {k: sum(p.name.startswith(k + "_") for p in written) for k in KINDS}
    print(f"{len(written)} pictures in {a.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
