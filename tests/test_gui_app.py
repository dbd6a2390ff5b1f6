"""`lesion-desktop` start-up as the screenshot script uses it: --open, --screenshot, --quit-after-result."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

from lesion_desktop.paths import data_dir
from lesion_desktop.qt.app import parse_args, run_gui
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
