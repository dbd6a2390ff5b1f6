"""The main window as a user drives it: open, drop, paste, results, errors, heat-map, PDF, About, restart."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
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
from lesion_desktop.qt.widgets import class_label
from lesion_desktop.records import RecordStore
from lesion_desktop.settings import Settings
from tests.helpers import FULLRES, HAM, require_data


@pytest.fixture
def ham_image() -> Path:
    require_data()
    return sorted((HAM / "images").glob("*.jpg"))[10]


def _classify(qtbot, window: MainWindow, action) -> object:
    with qtbot.waitSignal(window.result_shown, timeout=300000) as blocker:
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
    assert f"Heat-map for {class_label(CLASSES[w.heatmap_index])}" in w.input_view.caption
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
    assert not low.result_panel.alert.isHidden()
    assert "Possible malignancy" in low.result_panel.alert_headline.text()
    if a.record.top_code not in ("mel", "bcc", "akiec"):
        assert "top label is benign" in low.result_panel.alert_text.text()
    high = make_window(Settings(models_dir=str(tiny_models), device="cpu", warning_threshold=0.99))
    b = _classify(qtbot, high, lambda: high.open_path(ham_image))
    assert high.result_panel.alert.isHidden()
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
    assert w.actions_.heatmap.isChecked() and "Heat-map for" in w.input_view.caption
    assert not w.heatmap_bar.isHidden()
    w.actions_.heatmap.trigger()
    assert "Network input" in w.input_view.caption and w.heatmap_bar.isHidden()
    assert json.loads((config_dir() / "settings.json").read_text())["show_heatmap"] is False
    w.actions_.heatmap.trigger()
    assert "Heat-map for" in w.input_view.caption


def test_corrupt_image_error_reaches_the_user_and_the_log(qtbot, make_window, tmp_path, ham_image, caplog):
    w = make_window()
    bad = tmp_path / "broken.jpg"
    data = ham_image.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated JPEG
    with pytest.raises(ImageLoadError) as expected:
        load_image(bad)
    with qtbot.waitSignal(w.failed, timeout=300000) as blocker:
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
    assert QKeySequence("Ctrl+Shift+C") in w.actions_.capture.shortcuts()
    # Space is the capture key only while the camera runs (tests/test_gui_camera.py), never a menu shortcut
    assert QKeySequence("Space") not in w.actions_.capture.shortcuts()
    assert w.space_capture.key() == QKeySequence("Space") and not w.space_capture.isEnabled()
    file_items = [a.text().replace("&", "").rstrip("…") for a in w.menuBar().actions()[0].menu().actions()
                  if not a.isSeparator()]
    expected = ["Open image", "Paste image", "Live camera", "Capture", "Export PDF report", "Quit"]
    assert [t for t in file_items if t in expected] == expected and file_items[-1] == "Quit"  # others may sit between


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
    with qtbot.waitSignal(w.failed, timeout=60000) as blocker:
        w.classify(np.zeros((150, 200, 3), np.uint8), "black")
    assert "No models are loaded" in blocker.args[0]
    assert (data_dir() / "history.sqlite").exists() and w.history.record_ids() == []


# ---- the result screen (issue 14, point 3) ---------------------------------------------------------------------
FULLRES_MELANOMA = "ISIC_0024516.jpg"  # histology-proven melanoma: the shipped models warn at 30%


def _pdf_strings(monkeypatch) -> list[str]:
    """Every text block the PDF report draws, collected as it is drawn."""
    from lesion_desktop.qt import report_pdf

    drawn: list[str] = []
    text, boxed = report_pdf._Page.text, report_pdf._Page.boxed
    monkeypatch.setattr(report_pdf._Page, "text", lambda self, t, *a, **k: (drawn.append(t), text(self, t, *a, **k)))
    monkeypatch.setattr(report_pdf._Page, "boxed", lambda self, t, *a, **k: (drawn.append(t), boxed(self, t, *a, **k)))
    return drawn


def _show_at(qtbot, w: MainWindow, width: int, height: int) -> None:
    w.resize(width, height)
    w.show()
    qtbot.waitExposed(w)
    qtbot.waitUntil(lambda: (w.width(), w.height()) == (width, height))


def test_warning_is_the_most_prominent_thing_and_the_pdf_says_the_same(qtbot, make_window, tiny_models, ham_image,
                                                                       tmp_path, monkeypatch):
    from lesion_desktop.analysis import WARNING, assess_record

    w = make_window(Settings(models_dir=str(tiny_models), device="cpu", warning_threshold=0.05))
    _show_at(qtbot, w, 1024, 768)
    a = _classify(qtbot, w, lambda: w.open_path(ham_image))
    expected = assess_record(a.record, 0.05)
    assert expected.level == WARNING
    panel = w.result_panel
    # the wording is analysis.assess_record's, nothing of the panel's own
    assert panel.alert_headline.text() == expected.headline and panel.alert_text.text() == expected.text
    # above the top label, in a larger font, on red
    assert panel.alert.isVisible() and panel.alert.geometry().bottom() < panel.top_label.geometry().top()
    assert panel.alert_headline.font().pointSizeF() > panel.top_label.font().pointSizeF() * 1.3
    assert "#c62828" in panel.alert.styleSheet()
    assert "below" not in panel.summary()
    drawn = _pdf_strings(monkeypatch)
    assert w.export_pdf(tmp_path / "r.pdf") is not None
    assert f"{expected.headline}\n{expected.text}" in drawn
    # a stricter threshold set later never takes the warning away, in the window or in the PDF
    w.save_settings(replace(w.settings, warning_threshold=0.9))
    w.apply_display_settings()
    assert panel.alert_text.text() == expected.text
    drawn.clear()
    w.export_pdf(tmp_path / "r2.pdf")
    assert f"{expected.headline}\n{expected.text}" in drawn


def test_a_poor_image_never_reassures_in_the_window_or_the_pdf(qtbot, make_window, tiny_models, ham_image, tmp_path,
                                                               monkeypatch):
    from lesion_desktop.analysis import CANNOT_RULE_OUT

    w = make_window(Settings(models_dir=str(tiny_models), device="cpu", warning_threshold=0.99))
    dark = (load_image(ham_image) * 0.1).astype(np.uint8)
    a = _classify(qtbot, w, lambda: w.classify(dark, "dark.png"))
    assert a.record.malignant_probability < 0.99 and w.assessment.level == CANNOT_RULE_OUT
    panel = w.result_panel
    assert not panel.alert.isHidden() and "cannot rule out malignancy" in panel.alert_headline.text()
    assert "retake" in panel.alert_text.text() and panel.risk_label.isHidden()
    assert "below" not in panel.summary() and "poor image" in panel.top_label.text()
    drawn = _pdf_strings(monkeypatch)
    w.export_pdf(tmp_path / "dark.pdf")
    assert not any("below the" in t for t in drawn) and any("cannot rule out malignancy" in t for t in drawn)


def test_below_the_threshold_the_top_label_leads_and_the_risk_is_stated(qtbot, make_window, tiny_models, ham_image):
    w = make_window(Settings(models_dir=str(tiny_models), device="cpu", warning_threshold=0.99))
    a = _classify(qtbot, w, lambda: w.open_path(ham_image))
    panel = w.result_panel
    assert panel.alert.isHidden() and w.assessment.reassures
    assert f"{a.record.malignant_probability:.1%}, below the 99% warning threshold" in panel.risk_label.text()


def test_measured_warning_rates_beside_the_warning_with_the_shipped_models(qtbot, make_window, tmp_path, monkeypatch):
    """The shipped models' manifest holds the rates at each threshold; the sentence sits in the red alert."""
    from lesion_desktop.analysis import WARNING, model_warning_rates, warning_rates_sentence

    w = make_window(Settings(device="cpu"))  # the bundled default models
    a = _classify(qtbot, w, lambda: w.open_path(require_data(FULLRES) / "images" / FULLRES_MELANOMA))
    sentence = warning_rates_sentence(model_warning_rates(w.engine), 0.30)
    assert sentence.startswith("At 30% this warning fired for ") and "of the test melanomas and" in sentence
    assert w.assessment.level == WARNING and sentence in w.result_panel.alert_text.text()
    drawn = _pdf_strings(monkeypatch)
    w.export_pdf(tmp_path / "mel.pdf")
    assert any(sentence in t for t in drawn)
    # rates belong to the models that made the result: none for a record of other models
    other = replace(a.record, model_version="some-other-models")
    assert w.rates_for(other) is None and w.rates_for(a.record)


def test_heatmap_of_the_class_the_user_picks_defaults_to_the_warned_class(qtbot, make_window, tmp_path):
    from lesion_desktop.heatmap import overlay
    from lesion_desktop.qt.imaging import to_qimage

    # the shipped models give every class's map; a follow-up naevus (0.4% malignant) warns at a 0.2% threshold
    w = make_window(Settings(device="cpu", warning_threshold=0.002))
    a = _classify(qtbot, w, lambda: w.open_path(require_data(FULLRES) / "images" / "ISIC_0024306.jpg"))
    assert a.cams is not None and a.cams.shape[0] == 7
    assert a.record.top_code == "nv" and w.assessment.warns
    bar = w.heatmap_bar
    assert not bar.isHidden() and bar.combo.isEnabled() and bar.combo.count() == 7
    assert [bar.combo.itemText(i) for i in range(7)] == [class_label(c) for c in CLASSES]
    warned = a.record.details["heatmap_class"]
    assert warned in ("mel", "bcc", "akiec") and bar.combo.currentData() == warned  # not the benign top class
    assert f"({warned})" in w.input_view.caption
    k = [c.code for c in CLASSES].index(warned)
    assert w.input_view.qimage() == to_qimage(overlay(a.preprocessed, a.cams[k], w.settings.heatmap_opacity))
    nv = [c.code for c in CLASSES].index("nv")
    bar.combo.setCurrentIndex(nv)
    bar.combo.activated.emit(nv)  # as when the user picks it
    assert "Melanocytic nevus (nv)" in w.input_view.caption
    assert w.input_view.qimage() == to_qimage(overlay(a.preprocessed, a.cams[nv], w.settings.heatmap_opacity))
    assert w.input_view.qimage() != to_qimage(overlay(a.preprocessed, a.cams[k], w.settings.heatmap_opacity))
    # a history entry keeps only its stored map: the picker says so and cannot change it
    reopened = _classify(qtbot, w, lambda: w.open_record(a.record.id))
    assert reopened.cams is None and not bar.combo.isEnabled() and bar.combo.currentData() == warned
    assert f"Only the heat-map for {class_label(CLASSES[k])}" in bar.note.text() and not bar.note.isHidden()
    # the legend's colours are the overlay's: blue for weak, red for strong evidence
    legend = bar.legend.colours
    assert legend[0].blue() > 100 and legend[0].red() < 50 and legend[-1].red() > 100 and legend[-1].blue() < 50


def test_out_of_scope_shows_no_diagnosis_until_show_anyway_which_marks_the_record(qtbot, make_window, ham_image,
                                                                                  monkeypatch, tmp_path):
    """Until the scope gate is in analyse, the test marks the record as the gate will (details["scope"])."""
    from lesion_desktop import analysis as analysis_module
    from lesion_desktop.qt import main_window as mw

    reason = "It looks like a drawing, not a dermoscopy image of skin."
    real = analysis_module.analyse

    def gated(*args, **kwargs):
        a = real(*args, **kwargs)
        a.record.details["scope"] = {"in_scope": False, "reason": reason}
        kwargs["store"].update_details(a.record.id, {"scope": a.record.details["scope"]})
        return a

    monkeypatch.setattr(mw, "analyse", gated)
    w = make_window()
    _show_at(qtbot, w, 1024, 768)
    a = _classify(qtbot, w, lambda: w.open_path(ham_image))
    panel = w.result_panel
    assert panel.alert.isVisible() and "Not an image these models can judge" in panel.alert_headline.text()
    assert reason in panel.alert_text.text()
    assert not panel.top_label.isVisible() and not panel.probs_box.isVisible() and panel.chart.values() == ()
    assert CLASSES[a.record.top_index].name not in panel.summary()
    assert w.heatmap_bar.isHidden() and "Network input" in w.input_view.caption  # no evidence for a diagnosis
    assert "out of scope" in w.statusBar().currentMessage()
    assert panel.show_anyway_button.isVisible()
    with qtbot.waitSignal(w.result_shown):
        qtbot.mouseClick(panel.show_anyway_button, Qt.MouseButton.LeftButton)
    assert RecordStore().get(a.record.id).details["shown_anyway"] is True
    assert panel.top_label.isVisible() and CLASSES[a.record.top_index].name in panel.top_label.text()
    assert panel.chart.values() == pytest.approx(tuple(a.record.probabilities))
    assert "Shown anyway" in panel.scope_label.text() and reason.rstrip(".") in panel.scope_label.text()
    assert not panel.show_anyway_button.isVisible()
    # the mark is stored: reopened from the history, the result is shown, marked
    _classify(qtbot, w, lambda: w.open_record(a.record.id))
    assert panel.top_label.isVisible() and "Shown anyway" in panel.scope_label.text()


def test_the_scope_gates_own_verdict_reaches_the_window_once(qtbot, make_window):
    """A flat grey picture, refused by analyse's scope gate itself: said in the alert, not again as a quality note."""
    w = make_window()
    a = _classify(qtbot, w, lambda: w.classify(np.full((450, 600, 3), 128, np.uint8), "grey.png"))
    scope = a.record.details["scope"]
    assert scope["in_scope"] is False and any(x.startswith("out of scope") for x in a.record.warnings)
    panel = w.result_panel
    assert "Not an image these models can judge" in panel.alert_headline.text()
    assert scope["reason"].split(":")[0] in panel.alert_text.text()
    assert "out of scope" not in panel.quality_label.text().lower() and panel.chart.values() == ()
    from lesion_desktop.scope import ADVICE

    w.show_anyway()  # the note says why it was refused, not the advice meant for the refusal itself
    note = panel.scope_label.text()
    assert scope["reason"].split(":")[0] in note and ADVICE.rstrip(".") not in note


def test_the_heatmap_turns_to_the_warned_class_when_a_result_comes_to_warn(qtbot, make_window):
    """A naevus below the threshold shows the naevus map; lowering the threshold makes it warn, and the map follows."""
    w = make_window(Settings(device="cpu"))
    a = _classify(qtbot, w, lambda: w.open_path(require_data(FULLRES) / "images" / "ISIC_0024306.jpg"))
    assert w.assessment.reassures and w.heatmap_bar.combo.currentData() == a.record.top_code == "nv"
    w.save_settings(replace(w.settings, warning_threshold=0.002))
    w.apply_display_settings()
    assert w.assessment.warns and w.heatmap_bar.combo.currentData() in ("mel", "bcc", "akiec")
    assert CLASSES[w.heatmap_index].malignant and f"({CLASSES[w.heatmap_index].code})" in w.input_view.caption


def test_agreement_says_both_models_and_never_all_2():
    from lesion_desktop.qt.result_panel import agreement_text

    two = agreement_text({"members_total": 2, "agreement": 1.0, "spread": 0.05}, "Melanoma")
    assert two.startswith("Both models put Melanoma first.") and "closely" in two
    assert agreement_text({"members_total": 2, "agreement": 0.5, "spread": 0.3}, "Melanoma").startswith(
        "Only one of the two models puts Melanoma first.")
    assert agreement_text({"members_total": 2, "agreement": 0.0, "spread": 0.3}, "Melanoma").startswith("Neither")
    assert agreement_text({"members_total": 3, "agreement": 1.0, "spread": 0.0}, "Melanoma").startswith(
        "All 3 models put Melanoma first.")
    assert agreement_text({"members_total": 3, "agreement": 2 / 3, "spread": 0.1}, "X").startswith("2 of 3 models")


def test_layout_uses_the_window_at_1024x768_with_full_names_and_whole_captions(qtbot, make_window, tiny_models):
    """The clinician's laptop: the image much wider than 190 px, the window's height used, nothing cut off."""
    w = make_window(Settings(models_dir=str(tiny_models), device="cpu", warning_threshold=0.05))
    _show_at(qtbot, w, 1024, 768)
    path = require_data(FULLRES) / "images" / FULLRES_MELANOMA
    _classify(qtbot, w, lambda: w.open_path(path))
    qtbot.waitUntil(lambda: w.image_view.picture_rect().width() > 300)
    pictures = [v.picture_rect() for v in (w.image_view, w.input_view)]
    assert pictures[0].width() >= 330
    used = sum(r.height() for r in pictures)
    assert used > 0.5 * w.height(), f"the two pictures use {used:.0f} of {w.height()} px"
    for view in (w.image_view, w.input_view):
        assert view.caption and not view.caption_cut(), view.caption
    assert FULLRES_MELANOMA in w.image_view.caption and "600×450 px" in w.image_view.caption
    chart = w.result_panel.chart
    lines = chart.name_lines(chart.width())
    assert [" ".join(x) for x in lines] == [class_label(c) for c in CLASSES]  # every name whole, none elided
    assert chart.height() >= chart.heightForWidth(chart.width())
    # the result panel is visible without scrolling to its alert, and beside the pictures
    assert w.result_panel.alert.isVisible()
    assert w.result_panel.alert.mapTo(w, w.result_panel.alert.rect().topLeft()).y() < 200


def test_images_zoom_with_the_wheel_pan_by_dragging_and_double_click_shows_all(qtbot):
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    from lesion_desktop.qt.widgets import ImageView

    view = ImageView("empty")
    qtbot.addWidget(view)
    view.resize(420, 360)
    view.show()
    qtbot.waitExposed(view)
    rgb = np.zeros((450, 600, 3), np.uint8)
    rgb[:, 300:] = 255
    view.set_image(rgb, "lesion.jpg")
    assert view.zoom() == 1.0
    full = view.visible_rect()
    assert (full.width(), full.height()) == (600, 450)
    pic = view.picture_rect()
    at = QPointF(pic.x() + pic.width() * 0.75, pic.y() + pic.height() * 0.25)
    before = view._image_point(at)
    wheel = QWheelEvent(at, view.mapToGlobal(at), QPoint(0, 0), QPoint(0, 360), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view, wheel)
    assert view.zoom() == pytest.approx(1.25 ** 3)
    vis = view.visible_rect()
    assert vis.width() == pytest.approx(600 / 1.25 ** 3)
    after = view._image_point(at)  # the point under the pointer stays under it
    assert (after.x(), after.y()) == (pytest.approx(before.x(), abs=0.5), pytest.approx(before.y(), abs=0.5))
    # drag to the right: the view moves towards the image's left edge
    start = pic.center().toPoint()
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(view, start + QPoint(60, 0))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=start + QPoint(60, 0))
    assert view.visible_rect().x() < vis.x() - 10
    # a new frame of the same size keeps the zoom (the camera), a new image does not
    view.set_image(rgb, "frame", keep_view=True)
    assert view.zoom() > 1
    qtbot.mouseDClick(view, Qt.MouseButton.LeftButton, pos=start)
    assert view.zoom() == 1.0 and view.visible_rect() == full
    QApplication.sendEvent(view, wheel)
    view.set_image(rgb, "another image")
    assert view.zoom() == 1.0


def test_previous_result_is_cleared_while_a_new_image_is_analysed_and_when_it_fails(qtbot, make_window, ham_image,
                                                                                   tmp_path):
    w = make_window()
    first = _classify(qtbot, w, lambda: w.open_path(ham_image))
    assert w.result_panel.chart.values()
    w.classify(load_image(ham_image), "second.png")  # queued: its result has not come yet
    panel = w.result_panel
    assert w.current is None and panel.chart.values() == () and "Analysing second.png" in panel.top_label.text()
    assert panel.alert.isHidden() and panel.agreement_label.text() == "" and w.heatmap_bar.isHidden()
    assert w.image_view.is_dimmed() and not w.input_view.has_image()
    assert "Analysing second.png" in w.statusBar().currentMessage()
    assert w.export_pdf(tmp_path / "none.pdf") is None  # nothing of the old result to export as this one's
    qtbot.waitUntil(lambda: w.idle, timeout=300000)
    assert w.current is not None and w.current.record.id != first.record.id and not w.image_view.is_dimmed()
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(ham_image.read_bytes()[:2000])
    with qtbot.waitSignal(w.failed, timeout=300000):
        w.open_path(bad)
    assert w.current is None and panel.chart.values() == () and "No result" in panel.top_label.text()
    assert not w.image_view.has_image() and not w.input_view.has_image() and "broken.jpg" in w.message_bar.text()


def test_first_start_says_it_is_loading_the_models_until_they_are_ready(qtbot, tiny_models):
    w = MainWindow(Settings(models_dir=str(tiny_models), device="cpu"))
    qtbot.addWidget(w)
    assert "Loading the models" in w.result_panel.top_label.text()  # before the event loop has run at all
    assert "Loading the models" in w.image_view.placeholder() and "Loading models" in w.model_label.text()
    qtbot.waitUntil(lambda: w.idle, timeout=300000)
    assert w.result_panel.top_label.text() == "No image analysed yet."
    assert "Loading" not in w.image_view.placeholder()


def test_a_load_error_is_cleared_once_models_load(qtbot, make_window, tiny_models, tmp_path):
    w = make_window(Settings(models_dir=str(tmp_path / "nowhere"), device="cpu"))
    assert "Could not load the models" in w.message_bar.text()
    assert "No models are loaded" in w.result_panel.top_label.text()
    w.dialogs.apply_settings(replace(w.settings, models_dir=str(tiny_models)))
    qtbot.waitUntil(lambda: w.idle and w.engine is not None, timeout=300000)
    assert w.message_bar.text() == "" and w.result_panel.top_label.text() == "No image analysed yet."


def test_probabilities_reach_a_screen_reader_as_text(qtbot, make_window, tiny_models, ham_image):
    from PySide6.QtGui import QAccessible

    w = make_window(Settings(models_dir=str(tiny_models), device="cpu", warning_threshold=0.01))  # it warns
    a = _classify(qtbot, w, lambda: w.open_path(ham_image))
    chart = w.result_panel.chart
    iface = QAccessible.queryAccessibleInterface(chart)
    assert iface.text(QAccessible.Text.Name) == "Probabilities of the seven diagnoses"
    description = iface.text(QAccessible.Text.Description)
    lines = description.splitlines()
    assert len(lines) == 7
    for c, p in zip(CLASSES, a.record.probabilities, strict=True):
        assert f"{class_label(c)}{', malignant' if c.malignant else ''}: {p:.1%}" in lines
    assert lines[0].startswith(class_label(CLASSES[a.record.top_index]))  # highest first
    for widget in (w.image_view, w.input_view, w.result_panel.alert, w.heatmap_bar.combo, w.message_bar):
        assert QAccessible.queryAccessibleInterface(widget).text(QAccessible.Text.Name), widget
    assert "×" in QAccessible.queryAccessibleInterface(w.image_view).text(QAccessible.Text.Description)
    alert = QAccessible.queryAccessibleInterface(w.result_panel.alert).text(QAccessible.Text.Description)
    assert w.assessment.warns and alert == f"{w.assessment.headline}. {w.assessment.text}"
    # the retraining dialog's live curves, read as text
    from PySide6.QtGui import QColor

    from lesion_desktop.qt.plot import CurvePlot

    plot = CurvePlot("Validation balanced accuracy", QColor("green"), (0.0, 1.0))
    qtbot.addWidget(plot)
    for x, y in enumerate((0.41, 0.55, 0.52)):
        plot.add_point(x, y)
    iface = QAccessible.queryAccessibleInterface(plot)
    assert iface.text(QAccessible.Text.Name) == "Validation balanced accuracy"
    assert iface.text(QAccessible.Text.Description) == "3 points; latest 0.520, lowest 0.410, highest 0.550."


def test_every_dialog_fits_a_1366x768_screen(qtbot, make_window, qapp):
    """With fonts at 130% (Windows' display scaling on a laptop), as well as at 100%."""
    w = make_window()
    font = qapp.font()
    large = qapp.font()
    large.setPointSizeF(font.pointSizeF() * 1.3)
    qapp.setFont(large)
    qtbot.addWidget(w)  # closed before the font comes back
    w.destroyed.connect(lambda: qapp.setFont(font))
    settings = w.open_settings()
    about = w.show_about()
    about.details_button.click()
    instructions = w.show_instructions()
    retrain = w.open_retrain()
    room = w.screen().availableGeometry()
    for dlg in (settings, about, instructions, retrain):
        qtbot.waitExposed(dlg)
        name = type(dlg).__name__
        # it can be made small enough for a 1366x768 laptop (minus a taskbar and the title bar) ...
        hint = dlg.minimumSizeHint().expandedTo(dlg.minimumSize())
        assert hint.width() <= 1366 - 40 and hint.height() <= 768 - 60, (name, hint)
        assert dlg.maximumHeight() > 768 and dlg.maximumWidth() > 1366, name  # ... and larger again: resizable
        # ... and it opens no taller than the screen it is on (the offscreen test screen is 800x800; wider than
        # it only where its minimum width, which fits 1366, needs it)
        assert dlg.height() <= room.height() and dlg.width() <= max(room.width(), hint.width()), (name, dlg.size())
        dlg.close()


# ---- language (issue 18, point 9) ---------------------------------------------------------------------------------
def _qt_tool(name: str) -> str:
    import shutil as _shutil
    import sys

    tool = Path(sys.executable).with_name(name)
    found = str(tool) if tool.exists() else _shutil.which(name)
    assert found, f"{name} (PySide6's Qt Linguist tools) is needed to make a translation"
    return found


def test_lupdate_finds_the_result_screens_strings_under_their_runtime_contexts(tmp_path):
    """A translator starts from pyside6-lupdate: every string must be found, under the context used at run time."""
    import subprocess
    import xml.etree.ElementTree as ET

    from lesion_desktop.qt import main_window, result_panel, widgets

    ts = tmp_path / "lesion_desktop_xx.ts"
    files = [m.__file__ for m in (main_window, result_panel, widgets)]
    subprocess.run([_qt_tool("pyside6-lupdate"), *files, "-ts", str(ts)], check=True, capture_output=True)
    found = {(c.findtext("name"), m.findtext("source")) for c in ET.parse(ts).getroot().iter("context")
             for m in c.iter("message")}
    for pair in [("ResultPanel", "Show the result anyway"), ("ResultPanel", "Both models put {name} first."),
                 ("ResultPanel", "Most likely (from a poor image)"), ("widgets", "Heat-map for:"),
                 ("widgets", "Probabilities of the seven diagnoses"), ("MainWindow", "Loading the models…")]:
        assert pair in found, pair
    assert all(ctx for ctx, _ in found), "a string without a context is never translated"


def test_a_clinic_adds_a_language_with_a_qm_file_in_its_config_folder(qtbot, qapp, tiny_models, tmp_path):
    import subprocess

    from lesion_desktop.qt.translations import install_translations

    ts = tmp_path / "lesion_desktop_de.ts"
    ts.write_text("""<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS><TS version="2.1" language="de">
<context><name>ResultPanel</name>
 <message><source>No image analysed yet.</source><translation>Noch kein Bild analysiert.</translation></message>
 <message><source>Show the result anyway</source><translation>Ergebnis trotzdem zeigen</translation></message>
</context>
<context><name>MainWindow</name>
 <message><source>Loading the models…</source><translation>Die Modelle werden geladen…</translation></message>
</context>
<context><name>widgets</name>
 <message><source>Probabilities of the seven diagnoses</source>
  <translation>Wahrscheinlichkeiten der sieben Diagnosen</translation></message>
</context></TS>
""", encoding="utf-8")
    folder = config_dir() / "translations"
    folder.mkdir(parents=True)
    subprocess.run([_qt_tool("pyside6-lrelease"), str(ts), "-qm", str(folder / "lesion_desktop_de.qm")], check=True,
                   capture_output=True)
    translators = install_translations(qapp, "de_DE")
    try:
        assert any(t.filePath().endswith("lesion_desktop_de.qm") for t in translators)
        w = MainWindow(Settings(models_dir=str(tiny_models), device="cpu"))
        qtbot.addWidget(w)
        assert w.result_panel.top_label.text() == "Die Modelle werden geladen…"
        assert w.result_panel.show_anyway_button.text() == "Ergebnis trotzdem zeigen"
        assert w.result_panel.chart.accessibleName() == "Wahrscheinlichkeiten der sieben Diagnosen"
        qtbot.waitUntil(lambda: w.idle, timeout=300000)
        assert w.result_panel.top_label.text() == "Noch kein Bild analysiert."
        w.close()
    finally:
        for t in translators:
            qapp.removeTranslator(t)
    others = install_translations(qapp, "fr")  # no French file: the program stays in English
    for t in others:
        qapp.removeTranslator(t)
    assert not any("lesion_desktop" in t.filePath() for t in others)


def test_a_pasted_image_owns_its_pixels_after_the_qimage_is_gone(qtbot):
    """qimage_to_rgb used to return a view of the QImage's memory when rows needed no padding (600 px RGB)."""
    import gc

    import numpy as np
    from PySide6.QtGui import QColor, QImage

    from lesion_desktop.qt.imaging import qimage_to_rgb

    page = QImage(600, 450, QImage.Format.Format_RGB888)
    page.fill(QColor(10, 200, 30))
    rgb = qimage_to_rgb(page)
    del page
    gc.collect()
    junk = [np.full((450, 600, 3), 255, np.uint8) for _ in range(20)]  # reuse the freed memory if it can
    assert rgb.flags.owndata and junk
    assert (rgb == np.array([10, 200, 30], np.uint8)).all()
