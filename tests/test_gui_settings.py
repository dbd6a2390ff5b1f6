"""The settings dialog is generated from the Settings schema, saves to the config folder and is applied."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QSpinBox

from lesion_desktop.paths import config_dir
from lesion_desktop.qt.settings_dialog import ChoiceCombo, set_editor_value
from lesion_desktop.settings import Settings, load_settings, settings_path


def test_form_is_built_from_the_schema(make_window, tiny_models):
    w = make_window(Settings(models_dir=str(tiny_models), device="cuda:7"))  # a GPU this machine lacks
    dlg = w.open_settings()
    assert set(dlg.editors) == {f.name for f in fields(Settings)}
    assert isinstance(dlg.editors["tta"], QCheckBox)
    spin = dlg.editors["warning_threshold"]
    assert isinstance(spin, QDoubleSpinBox) and (spin.minimum(), spin.maximum()) == (0.01, 0.99)
    assert isinstance(dlg.editors["camera_index"], QSpinBox)
    res = dlg.editors["camera_resolution"]
    assert isinstance(res, ChoiceCombo) and (640, 480) in res.choice_values
    device = dlg.editors["device"]
    assert isinstance(device, ChoiceCombo) and device.choice_values[:2] == ["auto", "cpu"]
    assert device.value() == "cuda:7" and "not available" in device.currentText()
    # read-only information about the active models
    info = dlg.models_info.toPlainText()
    assert "tiny-test-ensemble" in info and "CC BY-NC" in info and "baseline_cnn" in info
    dlg.reject()


def test_edit_save_apply_and_reload(qtbot, make_window, tiny_models):
    w = make_window()
    dlg = w.open_settings()
    set_editor_value(dlg.editors["warning_threshold"], 0.12)
    set_editor_value(dlg.editors["tta"], True)
    set_editor_value(dlg.editors["camera_resolution"], (640, 480))
    set_editor_value(dlg.editors["show_preprocessed"], False)
    with qtbot.waitSignal(w.engine_changed, timeout=300000):  # TTA changed: the engine is reloaded
        dlg.accept()
    saved = json.loads(settings_path().read_text(encoding="utf-8"))
    assert settings_path().parent == config_dir()
    assert saved["warning_threshold"] == pytest.approx(0.12) and saved["tta"] is True
    assert saved["camera_resolution"] == [640, 480]
    assert load_settings() == w.settings
    assert w.engine is not None and w.engine.tta is True
    assert w.input_view.isHidden()


def test_restore_defaults_then_save(make_window):
    w = make_window()
    dlg = w.open_settings()
    dlg.restore_defaults()
    assert dlg.values() == Settings()
    dlg.reject()
    assert not settings_path().exists()  # cancel writes nothing


def test_corrupt_settings_file_still_opens_the_window(qtbot, tiny_models):
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text('{"device": "cpu", "models_dir": ' + json.dumps(str(tiny_models)) + ", oops")
    from lesion_desktop.qt.main_window import MainWindow

    w = MainWindow()  # reads the damaged file itself
    qtbot.addWidget(w)
    qtbot.waitUntil(lambda: w.idle, timeout=300000)
    assert w.settings == Settings()
    assert settings_path().with_name("settings.json.bad").exists()


def test_retrain_and_roll_back_from_the_settings_dialog(qtbot, make_window, tiny_models, monkeypatch):
    from lesion_desktop.paths import model_store_dir
    from lesion_desktop.store import ModelStore

    store = ModelStore(model_store_dir())
    store.install(tiny_models, name="first")
    store.install(tiny_models, name="second")
    w = make_window(Settings(device="cpu"))
    assert w.engine.ensemble.path.name == "second"
    dlg = w.open_settings()
    dlg.retrain_button.click()
    assert w.dialogs.retrain_dialog is not None and w.dialogs.retrain_dialog.isVisible()
    assert dlg.rollback_button.isEnabled()
    from PySide6.QtWidgets import QMessageBox

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(w.engine_changed, timeout=300000):
        dlg.rollback_button.click()
    assert w.engine.ensemble.path.name == "first"
    qtbot.waitUntil(lambda: "first" in dlg.models_info.toPlainText(), timeout=60000)
