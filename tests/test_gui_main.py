"""The main window as a user drives it: open, drop, paste, results, errors, heat-map, PDF, About, restart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QGuiApplication, QKeySequence

from lesion_desktop import __version__
from lesion_desktop.classes import CLASSES
from lesion_desktop.errors import ImageLoadError
from lesion_desktop.imageio import load_image
from lesion_desktop.paths import config_dir, data_dir
from lesion_desktop.qt.about import DISCLAIMER
from lesion_desktop.qt.imaging import to_qimage
from lesion_desktop.qt.main_window import MainWindow
from lesion_desktop.records import RecordStore
from lesion_desktop.settings import Settings
from tests.helpers import HAM, require_data


@pytest.fixture
def ham_image() -> Path:
    require_data()
    return sorted((HAM / "images").glob("*.jpg"))[10]


def _classify(qtbot, window: MainWindow, action) -> object:
    with qtbot.waitSignal(window.result_shown, timeout=30000) as blocker:
        action()
    return blocker.args[0]


def test_open_real_image_shows_full_result(qtbot, make_window, ham_image):
    w = make_window()
    assert w.disclaimer.text() == DISCLAIMER and not w.disclaimer.isHidden()
    assert "CPU" in w.device_label.text() and "tiny-test-ensemble" in w.model_label.text()
    analysis = _classify(qtbot, w, lambda: w.open_path(ham_image))
    values = w.result_panel.chart.values()
    assert len(values) == 7 and sum(values) == pytest.approx(1.0, abs=1e-4)
    top = CLASSES[int(np.argmax(values))]
    assert top.name in w.result_panel.top_label.text()
    np.testing.assert_allclose(values, analysis.record.probabilities, atol=1e-6)
    # the original and the network input side by side
    assert w.image_view.image_size() == (150, 200)
    assert w.input_view.image_size() == (48, 64)
    assert "Grad-CAM" in w.input_view.caption
    assert "inference" in w.result_panel.meta_label.text()
    assert "agree" in w.result_panel.agreement_label.text()
    assert "Image quality" in w.result_panel.quality_label.text()
    # stored in the history, listed in the dock
    assert w.history.record_ids() == [analysis.record.id]
    assert RecordStore().get(analysis.record.id).model_version == "tiny-test-ensemble"


def test_warning_threshold_controls_the_red_warning_even_for_a_benign_top(qtbot, make_window, tiny_models,
                                                                           ham_image):
    low = make_window(Settings(models_dir=str(tiny_models), device="cpu", warning_threshold=0.05))
    a = _classify(qtbot, low, lambda: low.open_path(ham_image))
    assert a.record.malignant_probability > 0.05
    assert not low.result_panel.warning_label.isHidden()
    assert "Possible malignancy" in low.result_panel.warning_label.text()
    if a.record.top_code not in ("mel", "bcc", "akiec"):
        assert "top label is benign" in low.result_panel.warning_label.text()
    high = make_window(Settings(models_dir=str(tiny_models), device="cpu", warning_threshold=0.99))
    b = _classify(qtbot, high, lambda: high.open_path(ham_image))
    assert high.result_panel.warning_label.isHidden()
    # the combined risk is still stated, with the threshold it was compared to
    assert f"{b.record.malignant_probability:.1%}" in high.result_panel.risk_label.text()
    assert "99%" in high.result_panel.risk_label.text()


def test_quality_warnings_are_shown_and_stored(qtbot, make_window, ham_image):
    w = make_window()
    dark = (load_image(ham_image) * 0.1).astype(np.uint8)
    a = _classify(qtbot, w, lambda: w.classify(dark, "dark.png"))
    assert any("too dark" in x for x in a.record.warnings)
    assert "too dark" in w.result_panel.quality_label.text()
    assert any("too dark" in x for x in RecordStore().get(a.record.id).warnings)


def test_heatmap_toggle_switches_the_network_input_view_and_is_saved(qtbot, make_window, ham_image):
    w = make_window()
    _classify(qtbot, w, lambda: w.open_path(ham_image))
    assert w.actions_.heatmap.isChecked() and "Grad-CAM" in w.input_view.caption
    w.actions_.heatmap.trigger()
    assert "Network input" in w.input_view.caption
    assert json.loads((config_dir() / "settings.json").read_text())["show_heatmap"] is False
    w.actions_.heatmap.trigger()
    assert "Grad-CAM" in w.input_view.caption


def test_corrupt_image_error_reaches_the_user_and_the_log(qtbot, make_window, tmp_path, ham_image, caplog):
    w = make_window()
    bad = tmp_path / "broken.jpg"
    data = ham_image.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated JPEG
    with pytest.raises(ImageLoadError) as expected:
        load_image(bad)
    with qtbot.waitSignal(w.failed, timeout=30000) as blocker:
        w.open_path(bad)
    message = blocker.args[0]
    assert message == str(expected.value) and "broken.jpg" in message
    assert w.message_bar.text() == message and w.message_bar.level == "error"
    assert "broken.jpg" in w.statusBar().currentMessage()
    assert w.current is None and w.history.record_ids() == []
    assert any("analyse failed" in r.getMessage() and r.exc_info for r in caplog.records)
    # the window still works afterwards
    _classify(qtbot, w, lambda: w.open_path(ham_image))
    assert w.message_bar.text() == ""


def test_drop_a_file_and_paste_an_image(qtbot, make_window, ham_image):
    w = make_window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(ham_image))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    a = _classify(qtbot, w, lambda: w.dropEvent(event))
    assert a.record.source_name == ham_image.name and a.record.source_path == str(ham_image)

    rgb = load_image(ham_image)
    QGuiApplication.clipboard().setImage(to_qimage(rgb))
    assert QKeySequence(QKeySequence.StandardKey.Paste) in w.actions_.paste.shortcuts()
    b = _classify(qtbot, w, w.actions_.paste.trigger)
    assert b.record.source_name.startswith("Pasted image")
    np.testing.assert_array_equal(b.image, rgb)

    QGuiApplication.clipboard().setText(str(ham_image))  # a path copied from a file manager
    c = _classify(qtbot, w, w.paste)
    assert c.record.source_name == ham_image.name

    QGuiApplication.clipboard().setText("no image here")
    w.paste()
    assert "no image" in w.message_bar.text()


def test_remote_urls_are_refused(qtbot, make_window):
    w = make_window()
    mime = QMimeData()
    mime.setUrls([QUrl("https://example.com/lesion.jpg")])
    with qtbot.waitSignal(w.failed, timeout=5000):
        assert w.open_mime(mime) is False
    assert "never downloads" in w.message_bar.text()


def test_history_survives_a_restart_and_reopens_after_the_original_moved(qtbot, make_window, ham_image, tmp_path):
    moved = tmp_path / "patient.jpg"
    shutil.copy(ham_image, moved)
    w = make_window()
    first = _classify(qtbot, w, lambda: w.open_path(moved))
    w.close()
    moved.unlink()

    again = make_window()  # a new window, a new database connection
    assert again.history.record_ids() == [first.record.id]
    reopened = _classify(qtbot, again, lambda: again.history.open_requested.emit(first.record.id))
    np.testing.assert_allclose(reopened.record.probabilities, first.record.probabilities)
    np.testing.assert_array_equal(reopened.image, first.image)
    np.testing.assert_array_equal(reopened.preprocessed, first.preprocessed)
    assert reopened.record.model_version == first.record.model_version
    assert again.result_panel.chart.values() == pytest.approx(tuple(first.record.probabilities))
    assert str(first.record.id) in again.result_panel.meta_label.text()


def test_export_pdf_report(qtbot, make_window, ham_image, tmp_path, monkeypatch):
    w = make_window()
    assert w.export_pdf(tmp_path / "none.pdf") is None and "no result" in w.message_bar.text()
    _classify(qtbot, w, lambda: w.open_path(ham_image))
    out = tmp_path / "report.pdf"
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "PDF (*.pdf)"))
    w.actions_.export_pdf.trigger()
    data = out.read_bytes()
    assert data.startswith(b"%PDF") and data.rstrip().endswith(b"%%EOF")
    assert data.count(b"/Subtype /Image") >= 2  # the image and the heat-map
    assert len(data) > 10_000


def test_about_names_version_models_licence_and_device(qtbot, make_window):
    w = make_window()
    box = w.show_about()
    text = box.text() + box.details_text()  # plain language, then the technical details one click away
    assert __version__ in text and "tiny-test-ensemble" in text and "baseline_cnn" in text
    assert "CC BY-NC" in text and "CPU" in text and "not a diagnosis" in text
    box.close()


def test_about_says_how_the_default_models_preprocess_a_photo():
    from lesion_desktop.inference import load_engine
    from lesion_desktop.paths import bundled_models_dir
    from lesion_desktop.qt.about import models_html

    text = models_html(load_engine(bundled_models_dir(), "cpu"))
    assert text.count("first brought to 200×150 px; larger ones re-encoded as JPEG quality 75") == 2
    assert "<b>Malignancy warning</b> on the test split (n = 1506)" in text and text.count("<td>30%</td>") == 1
    assert "test: balanced accuracy 0.723 (95% interval 0.660–0.784), melanoma recall 0.671 (95% interval" in text


def test_models_info_says_how_often_the_malignancy_warning_fired():
    """The figures a clinician needs to choose the warning threshold, read from the manifest; odd ones ignored."""
    from lesion_desktop.qt.about import warning_rates_html

    rows = [{"threshold": 0.2, "melanoma": 0.964, "malignant": 0.973, "benign": 0.427},
            {"threshold": 0.3, "melanoma": 0.874, "malignant": 0.919, "benign": None}]
    text = warning_rates_html({"val": {"n": 9, "malignancy_warning": rows[:1]},
                               "test": {"n": 1506, "malignancy_warning": rows}})
    assert "test split (n = 1506)" in text
    assert "<td>30%</td><td>87%</td><td>92%</td><td>–</td>" in text
    assert "validation split (n = 9)" in warning_rates_html({"val": {"n": 9, "malignancy_warning": rows[:1]}})
    for odd in ({}, {"test": None}, {"test": {"malignancy_warning": "x"}}, {"test": {"malignancy_warning": [{}]}},
                {"test": {"malignancy_warning": [{"threshold": "high"}]}}):
        assert warning_rates_html(odd) == ""
    from lesion_desktop.qt.about import metrics_line

    for odd_ci in ("x", {"balanced_accuracy": "x"}, {"balanced_accuracy": [0.1]}, {"balanced_accuracy": [0.1, None]}):
        assert metrics_line({"balanced_accuracy": 0.5, "intervals": odd_ci}) == "balanced accuracy 0.500"


def test_menus_and_standard_shortcuts(make_window):
    w = make_window()
    menus = [a.text().replace("&", "") for a in w.menuBar().actions()]
    assert menus == ["File", "View", "Tools", "Help"]
    assert QKeySequence(QKeySequence.StandardKey.Open) in w.actions_.open.shortcuts()
    assert QKeySequence("Space") in w.actions_.capture.shortcuts()
    assert QKeySequence("Ctrl+Shift+C") in w.actions_.capture.shortcuts()
    file_items = [a.text() for a in w.menuBar().actions()[0].menu().actions() if not a.isSeparator()]
    assert [t.replace("&", "").rstrip("…") for t in file_items] == [
        "Open image", "Paste image", "Live camera", "Capture", "Export PDF report", "Quit"]


def test_window_geometry_is_remembered_in_the_tmp_config(qtbot, make_window):
    w = make_window()
    w.show()
    qtbot.waitExposed(w)
    w.actions_.history.trigger()  # hide the dock (its state is remembered too)
    assert w.history.isHidden()
    qtbot.waitUntil(lambda: w.minimumSize().width() < 700)
    w.resize(700, 555)  # the offscreen screen is 800x600: restoring clamps to it
    qtbot.waitUntil(lambda: (w.width(), w.height()) == (700, 555))
    saved = (w.width(), w.height())
    w.close()
    assert (config_dir() / "window.ini").is_file()
    again = make_window()
    assert (again.width(), again.height()) == saved
    assert again.history.isHidden()


def test_worker_failure_on_missing_models_is_shown(qtbot, make_window, tmp_path):
    w = make_window(Settings(models_dir=str(tmp_path / "nowhere"), device="cpu"))
    assert "Could not load the models" in w.message_bar.text()
    assert "none loaded" in w.model_label.text()
    with qtbot.waitSignal(w.failed, timeout=10000) as blocker:
        w.classify(np.zeros((150, 200, 3), np.uint8), "black")
    assert "No models are loaded" in blocker.args[0]
    assert (data_dir() / "history.sqlite").exists() and w.history.record_ids() == []
