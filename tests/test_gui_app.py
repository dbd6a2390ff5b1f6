"""`lesion-desktop` start-up as the screenshot script uses it: --open, --screenshot, --quit-after-result."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtGui import QImage

from lesion_desktop.paths import data_dir
from lesion_desktop.qt.app import parse_args, run_gui, setup_logging
from lesion_desktop.records import RecordStore
from tests.helpers import FULLRES, require_data


def test_open_classify_screenshot_and_quit(qapp, tiny_models, tmp_path):
    require_data(FULLRES)
    image = sorted((FULLRES / "images").glob("*.jpg"))[0]
    out = tmp_path / "shot.png"
    code = run_gui(["lesion-desktop", "--open", str(image), "--models", str(tiny_models), "--screenshot", str(out),
                    "--quit-after-result", "--size", "1200x800"])
    assert code == 0
    shot = QImage(str(out))
    assert not shot.isNull() and shot.width() >= 600
    records = RecordStore().list()
    assert [r.source_name for r in records] == [image.name] and np.isclose(records[0].probabilities.sum(), 1.0)
    log = (data_dir() / "logs" / "lesion-desktop.log").read_text(encoding="utf-8")
    assert "starting" in log


def test_a_failed_start_up_image_exits_with_status_1(qapp, tiny_models, tmp_path, capsys):
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    code = run_gui(["lesion-desktop", "--open", str(bad), "--models", str(tiny_models), "--quit-after-result"])
    assert code == 1
    assert "empty.png" in capsys.readouterr().err
    assert "empty.png" in (data_dir() / "logs" / "lesion-desktop.log").read_text(encoding="utf-8")


def test_qt_arguments_pass_through():
    args, rest = parse_args(["x", "--open", "a.jpg", "-style", "fusion"])
    assert str(args.open) == "a.jpg" and rest == ["-style", "fusion"]


WATCHDOG_MS = 600_000


def _image():
    return sorted((require_data(FULLRES) / "images").glob("*.jpg"))[0]


def test_a_positional_image_is_opened_like_open(qapp, tiny_models):
    """The desktop entry passes the file as a plain argument (Exec=lesion-desktop %f): "Open with" opens it."""
    image = _image()
    watchdog = QTimer()  # an image that is never opened would leave the app waiting for the user
    watchdog.setSingleShot(True)
    watchdog.timeout.connect(lambda: qapp.exit(99))
    watchdog.start(WATCHDOG_MS)
    try:
        code = run_gui(["lesion-desktop", str(image), "--models", str(tiny_models), "--quit-after-result"])
    finally:
        watchdog.stop()
    assert code == 0
    assert [r.source_name for r in RecordStore().list()] == [image.name]


def test_the_gui_command_takes_the_application_options(qapp, tiny_models, monkeypatch):
    from lesion_desktop.__main__ import main

    image = _image()
    monkeypatch.setattr(sys, "argv", ["lesion-desktop", "gui", "--open", str(image), "--models", str(tiny_models),
                                      "--quit-after-result"])
    assert main() == 0
    assert [r.source_name for r in RecordStore().list()] == [image.name]


def test_the_log_file_gets_our_info_and_only_warnings_from_libraries():
    """The ONNX exporter and other libraries log hundreds of INFO lines; they must not bury the app's own."""
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    path, restore = setup_logging()
    try:
        logging.getLogger("onnx_ir.passes").info("exporter internals")
        logging.getLogger("onnxscript").info("more internals")
        logging.getLogger("lesion_desktop.qt.main_window").info("models loaded")
        logging.getLogger("onnx_ir").warning("a library warning")
    finally:
        restore()
    assert (root.level, list(root.handlers)) == before  # run_gui leaves no handler or level behind
    text = path.read_text(encoding="utf-8")
    assert "models loaded" in text and "a library warning" in text
    assert "internals" not in text


@pytest.mark.slow
def test_gui_scripts_entry_point_starts_the_app(tiny_models):
    """`lesion-desktop-gui` (a gui-scripts entry point: no console window on Windows) opens a positional image."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["gui-scripts"]["lesion-desktop-gui"] == "lesion_desktop.__main__:main"
    launcher = Path(sys.executable).with_name("lesion-desktop-gui")
    assert launcher.is_file(), "installed by pip install -e . (scripts/install.sh)"
    image = _image()
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}  # and this test's LESION_DESKTOP_HOME
    r = subprocess.run([str(launcher), str(image), "--models", str(tiny_models), "--quit-after-result"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert [r.source_name for r in RecordStore().list()] == [image.name]
