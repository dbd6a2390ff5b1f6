"""Starting the GUI: logging to the data folder, high-DPI policy, command-line options, the main window."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import resources
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QTimer, QtMsgType, qInstallMessageHandler
from PySide6.QtGui import QGuiApplication, QIcon
from PySide6.QtWidgets import QApplication

from lesion_desktop import __version__
from lesion_desktop.paths import data_dir

log = logging.getLogger("lesion_desktop")


def setup_logging() -> tuple[Path, object]:
    """Everything at INFO and above, tracebacks included, to data_dir()/logs/lesion-desktop.log.

    Returns the log path and the Qt message handler it replaced (restored when the GUI ends).
    """
    folder = data_dir() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lesion-desktop.log"
    root = logging.getLogger()
    if not any(isinstance(h, RotatingFileHandler) and Path(h.baseFilename) == path for h in root.handlers):
        handler = RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO)

    def qt_messages(kind: QtMsgType, _context: object, message: str) -> None:
        level = {QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
                 QtMsgType.QtWarningMsg: logging.WARNING}.get(kind, logging.ERROR)
        logging.getLogger("qt").log(level, message)
        if level >= logging.ERROR:  # e.g. a missing platform plugin: the user must see why nothing opened
            print(message, file=sys.stderr)

    previous = qInstallMessageHandler(qt_messages)
    return path, previous


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="lesion-desktop",
                                     description="Decision support for dermoscopy images (not a diagnosis).")
    parser.add_argument("--open", metavar="PATH", type=Path, help="classify this image at start-up")
    parser.add_argument("--models", metavar="DIR", type=Path, help="use this model folder for this session only")
    parser.add_argument("--screenshot", metavar="OUT", type=Path,
                        help="save a picture of the window once the first result is shown")
    parser.add_argument("--quit-after-result", action="store_true",
                        help="quit once the first result is shown (exit status 1 if it failed)")
    parser.add_argument("--size", metavar="WxH", default="", help="window size, e.g. 1400x900")
    return parser.parse_known_args(argv[1:])


def run_gui(argv: list[str]) -> int:
    args, qt_args = parse_args(list(argv))
    log_path, previous_handler = setup_logging()
    log.info("Lesion Desktop %s starting (log: %s)", __version__, log_path)
    from PySide6.QtCore import Qt

    app = QApplication.instance()
    if app is None:  # the policy must be set before the application object exists
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication([argv[0] if argv else "lesion-desktop", *qt_args])
    assert isinstance(app, QApplication)
    app.setApplicationName("Lesion Desktop")
    app.setApplicationVersion(__version__)
    # The icon and desktop entry the installers ship (packaging/): taskbar, window switcher, Wayland app id.
    app.setDesktopFileName("lesion-desktop")
    icon = resources.files("lesion_desktop.resources") / "icons" / "lesion-desktop-256.png"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))

    from lesion_desktop.qt.main_window import MainWindow

    window = MainWindow(models_dir_override=args.models)
    previous_hook = sys.excepthook

    def excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        """An exception escaping a slot: log it with its traceback and tell the user, never vanish."""
        log.critical("Unhandled exception", exc_info=(kind, value, tb))
        window.show_error(f"Unexpected error ({kind.__name__}: {value}). The details are in {log_path}.")
        if previous_hook is not sys.__excepthook__:
            previous_hook(kind, value, tb)

    sys.excepthook = excepthook
    if args.size:
        w, _, h = args.size.partition("x")
        window.resize(int(w), int(h))
    window.show()
    status = {"code": 0}
    if args.quit_after_result or args.screenshot:
        def done() -> None:
            if args.screenshot is not None:
                args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                if not window.grab().save(str(args.screenshot)):
                    log.error("Could not save the screenshot %s", args.screenshot)
                    status["code"] = 1
            if args.quit_after_result:
                app.exit(status["code"])  # the window is closed after the loop, see below

        window.result_shown.connect(lambda _a: QTimer.singleShot(600, done))

        def failed(message: str) -> None:
            if args.quit_after_result:
                print(f"error: {message}", file=sys.stderr)
                status["code"] = 1
                app.exit(1)

        window.failed.connect(failed)
    if args.open is not None:
        window.open_path(args.open)  # queued behind the model loading, in order
    try:
        code = app.exec()
        if window.isVisible():  # left by --quit-after-result: close it (camera, workers) without posting
            quit_on_close = app.quitOnLastWindowClosed()  # a second quit that would end the next event loop
            app.setQuitOnLastWindowClosed(False)
            window.close()
            app.setQuitOnLastWindowClosed(quit_on_close)
    finally:
        sys.excepthook = previous_hook
        qInstallMessageHandler(previous_handler)  # type: ignore[arg-type]
    return code or status["code"]
