"""Retraining from the GUI with a tiny model: to the end, install on confirmation, roll back, and cancel."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QMessageBox

from lesion_desktop.paths import model_store_dir
from lesion_desktop.settings import Settings
from lesion_desktop.store import ModelStore
from tests.helpers import HAM, require_data
from tests.training_data import make_class_folders


@pytest.fixture
def installed_tiny(tiny_models):
    """The tiny ensemble installed in the (tmp) model store, so it is the active one, as after a retrain."""
    store = ModelStore(model_store_dir())
    return store.install(tiny_models, name="tiny-active")


@pytest.fixture
def data_folder(tmp_path):
    require_data()
    return make_class_folders(tmp_path / "clinic-data", per_class=10)


def _fill(dlg, data_folder) -> None:
    dlg.data_edit.setText(str(data_folder))
    for name, box in dlg.arch_boxes.items():
        box.setChecked(name == "baseline_cnn")
    dlg.epoch_spins["head"].setValue(1)
    dlg.epoch_spins["top"].setValue(0)
    dlg.epoch_spins["all"].setValue(1)
    dlg.size_edit.setText("48x64")
    dlg.imagenet_combo.setCurrentIndex(dlg.imagenet_combo.findData("none"))
    dlg.batch_spin.setValue(16)
    dlg.max_batches_spin.setValue(2)


@pytest.mark.slow
def test_retrain_to_the_end_install_and_roll_back(qtbot, make_window, installed_tiny, data_folder, monkeypatch):
    w = make_window(Settings(device="cpu"))
    assert w.engine.ensemble.path == installed_tiny and w.engine.version == "tiny-test-ensemble"
    dlg = w.open_retrain()
    _fill(dlg, data_folder)
    cfg = dlg.config()
    assert (cfg.architectures, cfg.input_size, cfg.imagenet, cfg.max_batches) == (["baseline_cnn"], (48, 64), "none", 2)
    assert (cfg.epochs_head, cfg.epochs_top, cfg.epochs_all, cfg.device) == (1, 0, 1, "cpu")
    progress: list[float] = []
    etas: list[str] = []
    dlg.progress_bar.valueChanged.connect(progress.append)
    dlg.progress_bar.valueChanged.connect(lambda _v: etas.append(dlg.eta_label.text()))
    with qtbot.waitSignal(dlg.training_finished, timeout=300000) as blocker:
        dlg.start_button.click()
        assert dlg.cancel_button.isEnabled() and not dlg.start_button.isEnabled()
    result = blocker.args[0]
    assert progress and progress[-1] == 1000 and dlg.progress_bar.value() == 1000
    assert dlg.loss_plot.points and dlg.acc_plot.points  # live curves were fed by partial events
    assert any("left" in e for e in etas)  # an ETA was shown while it ran
    # the two reports side by side
    table = dlg.report_table
    new_ba = float(table.item(0, 0).text())
    assert new_ba == pytest.approx(result.metrics["balanced_accuracy"], abs=1e-3)
    assert table.item(0, 1).text() != "—"  # the active models were scored on the same images
    assert float(table.item(0, 1).text()) == pytest.approx(result.active_metrics["balanced_accuracy"], abs=1e-3)
    assert table.rowCount() == 4 + 7 and all(table.item(r, 0) for r in range(table.rowCount()))
    assert dlg.verdict_label.text() and result.difference_text()
    assert result.difference_text() in dlg.verdict_label.text()  # the paired change and whether it is chance
    # nothing is installed until the user confirms
    assert ModelStore(model_store_dir()).active() == installed_tiny
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    dlg.install_button.click()
    assert ModelStore(model_store_dir()).active() == installed_tiny and w.engine.version == "tiny-test-ensemble"

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(w.engine_changed, timeout=60000):
        dlg.install_button.click()
    active = ModelStore(model_store_dir()).active()
    assert active is not None and active != installed_tiny
    assert w.engine.ensemble.path == active and w.engine.version.startswith("retrained-")
    assert w.engine.version in w.model_label.text()
    assert not dlg.install_button.isEnabled() and dlg.rollback_button.isEnabled()
    require_data()
    with qtbot.waitSignal(w.result_shown, timeout=30000) as shown:
        w.open_path(sorted((HAM / "images").glob("*.jpg"))[0])
    assert shown.args[0].record.model_version == w.engine.version

    with qtbot.waitSignal(w.engine_changed, timeout=60000):
        dlg.rollback_button.click()
    assert ModelStore(model_store_dir()).active() == installed_tiny
    assert w.engine.version == "tiny-test-ensemble"


@pytest.mark.slow
def test_cancelled_retrain_leaves_the_active_models(qtbot, make_window, installed_tiny, data_folder):
    w = make_window(Settings(device="cpu"))
    dlg = w.open_retrain()
    _fill(dlg, data_folder)
    dlg.max_batches_spin.setValue(0)  # full epochs, so there is time to cancel
    dlg.batch_spin.setValue(4)
    dlg.epoch_spins["all"].setValue(50)
    dlg.start()
    worker = dlg.worker
    assert worker is not None
    qtbot.waitUntil(lambda: bool(dlg.loss_plot.points), timeout=120000)  # training has begun
    with qtbot.waitSignal(worker.signals.errored, timeout=120000) as blocker:
        dlg.cancel_button.click()
        assert "Cancelling" in dlg.status_label.text()
    assert "Cancelled" in blocker.args[0] and "Cancelled" in dlg.status_label.text()
    assert dlg.candidate is None and not dlg.install_button.isEnabled() and dlg.start_button.isEnabled()
    assert ModelStore(model_store_dir()).active() == installed_tiny
    assert w.engine.version == "tiny-test-ensemble"


def test_form_errors_are_shown_not_raised(make_window, tmp_path):
    w = make_window()
    dlg = w.open_retrain()
    dlg.start()
    assert "data folder" in dlg.status_label.text()
    dlg.data_edit.setText(str(tmp_path))
    for box in dlg.arch_boxes.values():
        box.setChecked(False)
    dlg.start()
    assert "architecture" in dlg.status_label.text()
    dlg.arch_boxes["baseline_cnn"].setChecked(True)
    dlg.size_edit.setText("big")
    dlg.start()
    assert "150x200" in dlg.status_label.text()
    assert dlg.worker is None
    assert "models folder" in w.dialogs.override_note()  # the tiny models are a settings override here
