"""Starting the GUI: logging to the data folder, high-DPI policy, command-line options, the main window."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from importlib import resources
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType
from typing import Any

from PySide6.QtCore import QTimer, QtMsgType, qInstallMessageHandler
from PySide6.QtGui import QGuiApplication, QIcon
from PySide6.QtWidgets import QApplication

from lesion_desktop import __version__
from lesion_desktop.cli import parse_gui_args, say
from lesion_desktop.paths import data_dir

log = logging.getLogger("lesion_desktop")
# Our own loggers write INFO and above to the log file; every other library only its warnings and errors
# (the ONNX exporter alone logs hundreds of INFO lines about its internals).
OWN_LOGGERS = ("lesion_desktop", "training", "qt")
LINGER_AT_EXIT_MS = 60000  # the window is gone by then; a job still running (a model load) gets this long to end


def setup_logging() -> tuple[Path, Callable[[], None]]:
    """Our INFO and above, everyone's warnings, tracebacks included, to data_dir()/logs/lesion-desktop.log.

    Returns the log path and a function that undoes all of it (handler, levels, Qt message handler), for
    when the GUI ends: run_gui can be called again in one process (the tests do).
    """
    folder = data_dir() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lesion-desktop.log"
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", *OWN_LOGGERS)}
    handler: RotatingFileHandler | None = None
    if not any(isinstance(h, RotatingFileHandler) and Path(h.baseFilename) == path for h in root.handlers):
        handler = RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)

    def qt_messages(kind: QtMsgType, _context: object, message: str) -> None:
        level = {QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
                 QtMsgType.QtWarningMsg: logging.WARNING}.get(kind, logging.ERROR)
        logging.getLogger("qt").log(level, message)
        if level >= logging.ERROR:  # e.g. a missing platform plugin: the user must see why nothing opened
            say(message)

    previous = qInstallMessageHandler(qt_messages)

    def restore() -> None:
        qInstallMessageHandler(previous)  # type: ignore[arg-type]
        if handler is not None:
            root.removeHandler(handler)
            handler.close()
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)

    return path, restore


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """`argv` with the program name first; returns our options and what is left for Qt (lesion_desktop.cli)."""
    return parse_gui_args(list(argv[1:]))


def run_gui(argv: list[str]) -> int:
    """Start the application (`argv` with the program name first); returns the exit status."""
    args, qt_args = parse_args(list(argv))
    log_path, restore_logging = setup_logging()
    try:
        return _run(args, [argv[0] if argv else "lesion-desktop", *qt_args], log_path)
    finally:
        restore_logging()


def _run(args: argparse.Namespace, qt_argv: list[str], log_path: Path) -> int:
    log.info("Lesion Desktop %s starting (log: %s)", __version__, log_path)
    from PySide6.QtCore import Qt

    app = QApplication.instance()
    if app is None:  # the policy must be set before the application object exists
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(qt_argv)
    assert isinstance(app, QApplication)
    app.setApplicationName("Lesion Desktop")
    app.setApplicationVersion(__version__)
    from lesion_desktop.qt.translations import install_translations

    install_translations(app)  # before any window is built, so its strings are translated
    # The icon and desktop entry the installers ship (packaging/): taskbar, window switcher, Wayland app id.
    app.setDesktopFileName("lesion-desktop")
    icon = resources.files("lesion_desktop.resources") / "icons" / "lesion-desktop-256.png"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))

    from lesion_desktop.qt.gc_guard import install_main_thread_collector

    # Before any worker starts: cyclic garbage (closed dialogs among it) is only ever collected in this thread.
    undo_collector = install_main_thread_collector()
    try:
        return _run_window(app, args, log_path)
    finally:
        undo_collector()


def _run_window(app: QApplication, args: argparse.Namespace, log_path: Path) -> int:
    from lesion_desktop.qt.main_window import MainWindow
    from lesion_desktop.qt.workers import wait_for_lingering

    window = MainWindow(models_dir_override=args.models)
    previous_hook = sys.excepthook

    def excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        """An exception escaping a slot: log it with its traceback and tell the user, never vanish."""
        log.critical("Unhandled exception", exc_info=(kind, value, tb))
        window.show_error(f"Unexpected error ({kind.__name__}: {value}). The details are in {log_path}.")
        if previous_hook is not sys.__excepthook__:
            previous_hook(kind, value, tb)

    sys.excepthook = excepthook
    if args.size is not None:
        window.resize(*args.size)
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
                say(f"error: {message}")
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
        if not wait_for_lingering(LINGER_AT_EXIT_MS):  # a model load the close could not stop
            log.warning("Background work still running at exit; it is abandoned")
    finally:
        sys.excepthook = previous_hook
    return code or status["code"]


def export_with_reports(argv: list[str]) -> int:
    """`lesion-desktop export OUTPUT_DIR [--patient ID]` with one PDF per examination, drawn offscreen: the
    records export itself is Qt-free (lesion_desktop.export); only the reports need Qt's PDF writer."""
    import os

    from lesion_desktop.export import export_parser, run_export_command
    from lesion_desktop.records import RecordStore
    from lesion_desktop.settings import load_settings

    args = export_parser().parse_args(argv)
    if args.no_pdf:
        return run_export_command(args)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # nothing is shown: no display needed
    app = QGuiApplication.instance() or QGuiApplication(["lesion-desktop"])  # noqa: F841 (kept alive)
    from lesion_desktop.qt.report_pdf import report_writer

    s = load_settings()
    writer = report_writer(RecordStore(), s.warning_threshold, s.heatmap_opacity, s.follow_up_alert_points,
                           _active_models_rates())
    return run_export_command(args, report_writer=writer)


def _active_models_rates() -> Callable[[Any], Any]:
    """The active models' measured warning rates for the reports of examinations they made (as the window)."""
    from lesion_desktop.errors import LesionError
    from lesion_desktop.manifest import read_manifest
    from lesion_desktop.paths import active_models_dir

    try:
        folder = active_models_dir()
        manifest = read_manifest(folder)
    except (LesionError, OSError):
        return lambda record: None
    name = str(manifest.get("name") or folder.name)
    metrics = manifest.get("metrics") if isinstance(manifest.get("metrics"), dict) else {}
    test = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
    rows = test.get("malignancy_warning")
    return lambda record: rows if isinstance(rows, list) and record.model_version == name else None
