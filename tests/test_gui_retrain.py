"""Retraining from the GUI with a tiny model: to the end, install on confirmation, roll back, and cancel.

A candidate not shown better than the active models needs an explicit override in a box that defaults to
No and says how much worse it is; once installed so, a banner in the main window and every result say the
models are unvalidated until they are rolled back (issue 14, point 4). The dialog starts from the active
models by default, marks the architectures they lack, trains on a folder or on this clinic's records with a
histopathology outcome, can mix in the original data, and shows both comparisons and the small-data notes
(issue 16); every string it shows goes through Qt's translation (issue 18, point 9).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PySide6.QtCore import QTranslator
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QGroupBox,
    QLabel,
    QLineEdit,
    QMessageBox,
    QSpinBox,
    QWidget,
)

from lesion_desktop import registry
from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.imageio import load_image
from lesion_desktop.paths import model_store_dir
from lesion_desktop.qt import retrain_dialog
from lesion_desktop.registry import ARCHITECTURES
from lesion_desktop.settings import Settings
from lesion_desktop.store import ModelStore, installation_record
from tests.helpers import HAM, REPO, require_data
from tests.training_data import make_class_folders
from training.data import read_dataset
from training.pipeline import Comparison, RetrainResult

WEIGHTS = REPO.parent / "shared" / "weights"

WORSE_FIGURES = ("balanced accuracy 0.520 vs 0.770 (-0.250, 95% interval -0.300 to -0.200), "
                 "melanoma recall 0.000 vs 0.710 (-0.710, 95% interval -0.800 to -0.620)")


@pytest.fixture
def installed_tiny(tiny_models):
    """The tiny ensemble installed in the (tmp) model store, so it is the active one, as after a retrain."""
    store = ModelStore(model_store_dir())
    return store.install(tiny_models, name="tiny-active")


@pytest.fixture
def data_folder(tmp_path):
    require_data()
    return make_class_folders(tmp_path / "clinic-data", per_class=10)


def _fill(dlg, data_folder, init: str | None = "random") -> None:
    dlg.data_edit.setText(str(data_folder))
    for name, box in dlg.arch_boxes.items():
        box.setChecked(name == "baseline_cnn")
    dlg.epoch_spins["head"].setValue(1)
    dlg.epoch_spins["top"].setValue(0)
    dlg.epoch_spins["all"].setValue(1)
    dlg.size_edit.setText("48x64")
    if init is not None:
        dlg.init_combo.setCurrentIndex(dlg.init_combo.findData(init))
    dlg.batch_spin.setValue(16)
    dlg.max_batches_spin.setValue(2)


@pytest.mark.slow
def test_retrain_to_the_end_install_and_roll_back(qtbot, make_window, installed_tiny, data_folder, monkeypatch):
    w = make_window(Settings(device="cpu"))
    assert w.engine.ensemble.path == installed_tiny and w.engine.version == "tiny-test-ensemble"
    dlg = w.open_retrain()
    _fill(dlg, data_folder, init=None)  # the default: from the active (tiny) models
    cfg = dlg.config()
    assert (cfg.architectures, cfg.input_size, cfg.init, cfg.max_batches) == (["baseline_cnn"], (48, 64), "active", 2)
    assert cfg.mix_data is None
    assert (cfg.epochs_head, cfg.epochs_top, cfg.epochs_all, cfg.device) == (1, 0, 1, "cpu")
    progress: list[float] = []
    etas: list[str] = []
    dlg.progress_bar.valueChanged.connect(progress.append)
    dlg.progress_bar.valueChanged.connect(lambda _v: etas.append(dlg.eta_label.text()))

    def not_in_this_process(folder):
        raise AssertionError("the ONNX export ran in the window's process (it holds the GIL for up to 0.5 s)")

    monkeypatch.setattr("lesion_desktop.inference.export.export_member", not_in_this_process)
    with qtbot.waitSignal(dlg.training_finished, timeout=900000) as blocker:
        dlg.start_button.click()
        assert dlg.cancel_button.isEnabled() and not dlg.start_button.isEnabled()
    result = blocker.args[0]
    from lesion_desktop.inference import load_engine

    # exported by a child process (the patch above does not reach it): the candidate runs on ONNX Runtime
    assert load_engine(result.ensemble_dir, "cpu").backend == "onnxruntime"
    started = json.loads((result.ensemble_dir / "manifest.json").read_text())["training"]
    assert started["init"] == "active" and started["initialised_from"]["baseline_cnn"]["init"] == "active"
    assert Path(started["initialised_from"]["baseline_cnn"]["from"]).parent == installed_tiny
    assert progress and progress[-1] == 1000 and dlg.progress_bar.value() == 1000
    assert dlg.loss_plot.points and dlg.acc_plot.points  # live curves were fed by partial events
    assert any("left" in e for e in etas)  # an ETA was shown while it ran
    # the two reports side by side
    table = dlg.report_table
    new_ba = float(table.item(0, 0).text())
    assert new_ba == pytest.approx(result.metrics["balanced_accuracy"], abs=1e-3)
    # The tiny active models do not record their training images: no figure of theirs is shown (it could be
    # flattering), the dialog says why, and installing needs the override.
    assert table.item(0, 1).text() == "—"
    assert table.rowCount() == 4 + 7 and all(table.item(r, 0) for r in range(table.rowCount()))
    assert "do not record which images they were trained on" in dlg.verdict_label.text()
    assert result.verdict.needs_override and result.difference_text() in dlg.verdict_label.text()
    # nothing is installed until the user overrides
    assert ModelStore(model_store_dir()).active() == installed_tiny
    dlg.install_button.click()
    box = dlg.confirm_box
    assert box is not None and box.defaultButton() is box.button(QMessageBox.StandardButton.No)
    box.button(QMessageBox.StandardButton.No).click()
    assert ModelStore(model_store_dir()).active() == installed_tiny and w.engine.version == "tiny-test-ensemble"

    dlg.install_button.click()
    box = dlg.confirm_box
    with qtbot.waitSignal(w.engine_changed, timeout=60000):
        box.button(QMessageBox.StandardButton.Yes).click()
    active = ModelStore(model_store_dir()).active()
    assert active is not None and active != installed_tiny
    assert w.engine.ensemble.path == active and w.engine.version.startswith("retrained-")
    assert w.engine.version.endswith("[UNVALIDATED]") and w.engine.version in w.model_label.text()
    assert not w.unvalidated_banner.isHidden()
    assert not dlg.install_button.isEnabled() and dlg.rollback_button.isEnabled()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)  # roll-back
    require_data()
    with qtbot.waitSignal(w.result_shown, timeout=300000) as shown:
        w.open_path(sorted((HAM / "images").glob("*.jpg"))[0])
    assert shown.args[0].record.model_version == w.engine.version

    with qtbot.waitSignal(w.engine_changed, timeout=60000):
        dlg.rollback_button.click()
    assert ModelStore(model_store_dir()).active() == installed_tiny
    assert w.engine.version == "tiny-test-ensemble" and w.unvalidated_banner.isHidden()


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
    qtbot.waitUntil(lambda: bool(dlg.loss_plot.points), timeout=600000)  # training has begun
    with qtbot.waitSignal(worker.signals.errored, timeout=600000) as blocker:
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


def _metrics(ba: float, mel: float) -> dict:
    return {"n": 812, "balanced_accuracy": ba, "melanoma_recall": mel, "accuracy": ba, "macro_auc": ba,
            "per_class": {c: {"recall": mel if c == "mel" else ba} for c in CLASS_CODES}}


def _candidate(tmp_path: Path, tiny_models: Path, *, worse: bool) -> RetrainResult:
    """A finished retraining as the pipeline returns it, with a real (tiny) ensemble to install."""
    folder = tmp_path / "candidate"
    shutil.copytree(tiny_models, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["name"] = "candidate-tiny"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    comparison = compared(worse=worse)
    return RetrainResult(folder, comparison.candidate, None, comparison)


def compared(*, worse: bool) -> Comparison:
    """The candidate against the active models on 812 validation images: clearly worse, or better."""
    if worse:
        new, old = _metrics(0.52, 0.0), _metrics(0.77, 0.71)
        diff = {"balanced_accuracy": [-0.30, -0.20], "melanoma_recall": [-0.80, -0.62], "unit": "lesion"}
    else:
        new, old = _metrics(0.80, 0.75), _metrics(0.77, 0.71)
        diff = {"balanced_accuracy": [0.01, 0.05], "melanoma_recall": [-0.02, 0.10], "unit": "lesion"}
    return Comparison(1504, 692, 812, 640, 90, new, old, diff)


def _finish_training(qtbot, dlg, monkeypatch, result: RetrainResult, tmp_path: Path) -> None:
    """Start the dialog's training with a stand-in for the pipeline; inputs must be locked while it runs."""
    release = threading.Event()

    def fake_retrain(progress, cfg, active_dir):
        progress.report(0.1, "Training [baseline_cnn] epoch 1")
        assert release.wait(60)
        return result

    monkeypatch.setattr("lesion_desktop.qt.retrain_dialog._run_retrain", fake_retrain)
    _fill(dlg, tmp_path)
    with qtbot.waitSignal(dlg.training_finished, timeout=60000):
        dlg.start_button.click()
        qtbot.waitUntil(lambda: dlg.status_label.text().startswith("Training"), timeout=300000)
        locked = [dlg.inputs_box, dlg.data_edit, dlg.arch_boxes["baseline_cnn"], dlg.epoch_spins["all"],
                  dlg.size_edit, dlg.init_combo, dlg.batch_spin, dlg.max_batches_spin, dlg.records_radio,
                  dlg.mix_check]
        assert not any(w.isEnabled() for w in locked)
        assert not dlg.start_button.isEnabled() and not dlg.install_button.isEnabled()
        assert "left" in dlg.eta_label.text() and dlg.progress_bar.value() == 100
        release.set()
    assert dlg.data_edit.isEnabled() and dlg.start_button.isEnabled()


def test_worse_models_need_an_override_and_stay_marked_until_rolled_back(qtbot, make_window, installed_tiny,
                                                                          tiny_models, tmp_path, monkeypatch):
    w = make_window(Settings(device="cpu"))
    assert w.unvalidated_banner.isHidden()
    dlg = w.open_retrain()
    _finish_training(qtbot, dlg, monkeypatch, _candidate(tmp_path, tiny_models, worse=True), tmp_path)
    assert "WORSE" in dlg.verdict_label.text() and WORSE_FIGURES in dlg.verdict_label.text()
    assert "812 validation images (640 lesions) that neither trained on" in dlg.verdict_label.text()
    assert "same 812 clinic images" in dlg.report_box.title()
    assert (dlg.report_table.item(0, 0).text(), dlg.report_table.item(0, 1).text()) == ("0.520", "0.770")

    dlg.install_button.click()
    box = dlg.confirm_box
    assert box is not None and box.isVisible()
    no, yes = box.button(QMessageBox.StandardButton.No), box.button(QMessageBox.StandardButton.Yes)
    assert box.defaultButton() is no and box.escapeButton() is no
    assert "WORSE" in box.text() and WORSE_FIGURES in box.text() and "override" in yes.text()
    details = box.informativeText()  # where it was measured and what installing means, the figures once only
    assert details.startswith("Measured on 812 validation images (640 lesions) that neither trained on.")
    assert "marked as unvalidated" in details and "0.520 vs" not in details
    no.click()
    qtbot.waitUntil(lambda: dlg.confirm_box is None)
    assert ModelStore(model_store_dir()).active() == installed_tiny and w.engine.version == "tiny-test-ensemble"

    dlg.install_button.click()
    with qtbot.waitSignal(w.engine_changed, timeout=60000):
        dlg.confirm_box.button(QMessageBox.StandardButton.Yes).click()
    active = ModelStore(model_store_dir()).active()
    assert active is not None and active != installed_tiny
    record = installation_record(active)
    assert record is not None and record["by_override"] is True and WORSE_FIGURES in record["comparison"]
    # the progress area starts afresh: no stale "10% · about 18 min left"
    assert dlg.progress_bar.value() == 0 and dlg.eta_label.text() == "" and not dlg.loss_plot.points
    assert dlg.status_label.text().startswith("Installed as") and "unvalidated" in dlg.status_label.text()
    # the window says so, persistently, and so does every result
    assert w.engine.version == "candidate-tiny [UNVALIDATED]"
    assert not w.unvalidated_banner.isHidden()
    assert w.unvalidated_banner.text().startswith("Unvalidated models in use")
    assert w.unvalidated_banner.text() == (
        f"Unvalidated models in use: installed by override, not shown to be at least as good as the models they "
        f"replaced: {WORSE_FIGURES}. Treat their results with extra caution; roll back with Tools > Retrain models "
        f"> Roll back.")
    require_data()
    with qtbot.waitSignal(w.result_shown, timeout=300000) as shown:
        w.open_path(sorted((HAM / "images").glob("*.jpg"))[0])
    assert shown.args[0].record.model_version == "candidate-tiny [UNVALIDATED]"
    assert "Models: candidate-tiny [UNVALIDATED]" in w.result_panel.meta_label.text()
    w.message_bar.dismiss()
    assert not w.unvalidated_banner.isHidden()  # not a message that goes away

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(w.engine_changed, timeout=60000):
        dlg.rollback_button.click()
    assert w.engine.version == "tiny-test-ensemble" and w.unvalidated_banner.isHidden()


def test_better_models_install_without_override_or_banner(qtbot, make_window, installed_tiny, tiny_models,
                                                          tmp_path, monkeypatch):
    w = make_window(Settings(device="cpu"))
    dlg = w.open_retrain()
    _finish_training(qtbot, dlg, monkeypatch, _candidate(tmp_path, tiny_models, worse=False), tmp_path)
    assert dlg.verdict_label.text().startswith("The new models are better")
    dlg.install_button.click()
    box = dlg.confirm_box
    assert box is not None and box.text() == "Install the new models?"
    with qtbot.waitSignal(w.engine_changed, timeout=60000):
        box.button(QMessageBox.StandardButton.Yes).click()
    assert w.engine.version == "candidate-tiny" and w.unvalidated_banner.isHidden()
    assert installation_record(ModelStore(model_store_dir()).active())["by_override"] is False


def test_retrain_dialog_fits_the_screen(make_window):
    dlg = make_window().open_retrain()
    room = dlg.screen().availableGeometry()
    assert dlg.width() <= room.width() and dlg.height() <= room.height()


def test_retrain_dialog_fits_1024x768(make_window):
    """The inputs need no more width than a 1024x768 screen gives the dialog (the body scrolls vertically)."""
    dlg = make_window().open_retrain()
    dlg.resize(1024 - 40, 768 - 60)
    assert dlg.inputs_box.minimumSizeHint().width() <= 1024 - 40 - 2 * 11 - 20, dlg.inputs_box.minimumSizeHint()
    assert dlg.minimumSizeHint().width() <= 1024 - 40


@pytest.fixture
def shipped_mobilenet(tmp_path, monkeypatch):
    """The program's ImageNet folder holding MobileNetV2's published file only, and an empty torch cache."""
    folder = tmp_path / "imagenet"
    folder.mkdir()
    (folder / "mobilenet_v2-b0353104.pth").symlink_to(WEIGHTS / "mobilenet_v2-b0353104.pth")
    monkeypatch.setattr(registry, "shipped_imagenet_dir", lambda: folder)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return folder


def test_the_dialog_starts_from_the_active_models_and_builds_the_config(make_window, shipped_mobilenet, tmp_path):
    dlg = make_window().open_retrain()
    assert (dlg.init_combo.currentIndex(), dlg.init_combo.currentData()) == (0, "active")
    assert dlg.init_combo.currentText() == "The active models (recommended)"
    assert dlg.chosen_architectures() == ["baseline_cnn"]  # the active (tiny) ensemble's architecture, ticked
    # each architecture says whether the active models have it, and whether ImageNet weights are there
    assert dlg.arch_active_labels["baseline_cnn"].text() == "in the active models"
    assert {dlg.arch_active_labels[a].text() for a in ARCHITECTURES if a != "baseline_cnn"} == {
        "not in the active models"}
    assert dlg.arch_imagenet_labels["mobilenet_v2"].text() == "ImageNet weights shipped"
    assert dlg.arch_imagenet_labels["densenet201"].text() == "no ImageNet weights"

    clinic, original = tmp_path / "clinic", tmp_path / "ham"
    clinic.mkdir()
    original.mkdir()
    dlg.data_edit.setText(str(clinic))
    cfg = dlg.config()
    assert (cfg.data, cfg.init, cfg.architectures, cfg.mix_data) == (str(clinic), "active", ["baseline_cnn"], None)
    dlg.mix_check.setChecked(True)
    dlg.mix_edit.setText(str(original))
    dlg.mix_ratio_spin.setValue(0.5)
    cfg = dlg.config()
    assert (cfg.mix_data, cfg.mix_ratio) == (str(original), 0.5)
    dlg.mix_edit.setText(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="original training data"):
        dlg.config()
    dlg.mix_check.setChecked(False)
    assert dlg.config().mix_data is None

    # ImageNet weights can be chosen only when every chosen architecture has them
    imagenet = dlg.init_combo.model().item(dlg.init_combo.findData("imagenet"))
    assert not imagenet.isEnabled()  # baseline_cnn has none
    dlg.arch_boxes["baseline_cnn"].setChecked(False)
    dlg.arch_boxes["mobilenet_v2"].setChecked(True)
    assert imagenet.isEnabled()
    dlg.init_combo.setCurrentIndex(dlg.init_combo.findData("imagenet"))
    assert dlg.config().init == "imagenet"
    dlg.arch_boxes["densenet201"].setChecked(True)
    assert not imagenet.isEnabled() and "No usable ImageNet weights for: densenet201." in dlg.init_hint.text()
    with pytest.raises(ValueError, match="no usable ImageNet weights for densenet201"):
        dlg.config()
    dlg.init_combo.setCurrentIndex(dlg.init_combo.findData("random"))
    assert dlg.config().init == "random"
    # from the active models: what the architectures they lack start from is said before starting
    dlg.init_combo.setCurrentIndex(dlg.init_combo.findData("active"))
    hint = dlg.init_hint.text()
    assert "Not in the active models, so starting from ImageNet weights: mobilenet_v2." in hint
    assert "without ImageNet weights, so starting from random weights: densenet201." in hint


def test_the_clinics_records_are_exported_and_fed_to_the_pipeline(qtbot, make_window, tiny_models, tmp_path,
                                                                  monkeypatch):
    require_data()
    w = make_window(Settings(models_dir=str(tiny_models), device="cpu"))
    images = sorted((HAM / "images").glob("*.jpg"))[:8]
    outcomes = ["mel", "mel", "nv", "nv", "nv", "bcc", "other", ""]
    for path, outcome in [*zip(images, outcomes, strict=True), (images[0], "mel")]:  # the first file twice
        rec = w.store.add(load_image(path), [1 / 7] * 7, source_name=path.name, model_version="tiny",
                          original=path)
        if outcome:
            w.store.set_histopathology(rec.id, outcome)
    dlg = w.open_retrain()
    dlg.records_radio.setChecked(True)
    assert not dlg.data_edit.isEnabled()
    assert ("6 examinations with a histopathology outcome: akiec 0, bcc 1, bkl 0, df 0, mel 2, nv 3, vasc 0."
            in dlg.records_label.text())
    seen: dict = {}

    def fake_retrain(progress, cfg, active_dir):
        """What the pipeline gets: read with the pipeline's own reader."""
        data = Path(cfg.data)
        seen.update(cfg=cfg, active=active_dir, counts=read_dataset(data, min_per_class=0).counts(),
                    exported=sorted(p.name for p in (data / "images").iterdir()))
        return _candidate(tmp_path, tiny_models, worse=True)

    monkeypatch.setattr("lesion_desktop.qt.retrain_dialog._run_retrain", fake_retrain)
    # the signal, not `running`: the worker is done before its result reaches the dialog through the event loop
    with qtbot.waitSignal(dlg.training_finished, timeout=300000):
        dlg.start_button.click()
        assert dlg.status_label.text() == ("Exporting 6 examinations with a histopathology outcome "
                                           "(bcc 1, mel 2, nv 3)…")
    assert dlg.candidate is not None, dlg.status_label.text()
    cfg = seen["cfg"]
    assert Path(cfg.data) == dlg.work_dir / "clinic-records" and cfg.init == "active"
    assert seen["active"] == tiny_models
    assert seen["counts"] == {**dict.fromkeys(CLASS_CODES, 0), "bcc": 1, "mel": 2, "nv": 3}
    assert len(seen["exported"]) == 7  # the confirmed examinations only: not 'other', not the one without
    # an empty history cannot be chosen as the data
    for rid in w.store.ids():
        w.store.set_histopathology(rid, "")
    dlg.refresh()
    assert "No examination in this clinic's records has a histopathology outcome yet" in dlg.records_label.text()
    with pytest.raises(ValueError, match="choose a data folder instead"):
        dlg.config()


def test_the_report_shows_both_comparisons_and_the_notes(qtbot, make_window, installed_tiny, tiny_models, tmp_path,
                                                         monkeypatch):
    w = make_window(Settings(device="cpu"))
    dlg = w.open_retrain()
    result = _candidate(tmp_path, tiny_models, worse=False)
    result.reference = Comparison(2003, 0, 1500, 1100, 160, _metrics(0.70, 0.60), _metrics(0.71, 0.62),
                                  {"balanced_accuracy": [-0.03, 0.01], "melanoma_recall": [-0.06, 0.02],
                                   "unit": "lesion"})
    note = "df: only 2 validation lesions, too few to judge its recall."
    result.notes = [note]
    _finish_training(qtbot, dlg, monkeypatch, result, tmp_path)
    table = dlg.report_table
    assert not table.isColumnHidden(2) and not table.isColumnHidden(3)
    assert [table.item(0, c).text() for c in range(4)] == ["0.800", "0.770", "0.700", "0.710"]
    headers = [table.horizontalHeaderItem(c).text() for c in range(4)]
    assert headers[0] == "New models\nclinic\n812 images" and headers[3] == "Active models\noriginal data\n1500 images"
    verdict = dlg.verdict_label.text()
    assert verdict.startswith("The new models are better than the active ones on 812 validation images")
    assert "balanced accuracy 0.700 vs 0.710" in verdict  # the original data's comparison, from the verdict
    assert verdict.rstrip().endswith(note)


def test_without_original_data_only_the_clinic_columns_show(qtbot, make_window, installed_tiny, tiny_models,
                                                            tmp_path, monkeypatch):
    dlg = make_window(Settings(device="cpu")).open_retrain()
    _finish_training(qtbot, dlg, monkeypatch, _candidate(tmp_path, tiny_models, worse=False), tmp_path)
    assert dlg.report_table.isColumnHidden(2) and dlg.report_table.isColumnHidden(3)
    assert dlg.report_table.horizontalHeaderItem(0).text() == "New models\nclinic\n812 images"


def _qt_tool(name: str) -> str:
    tool = Path(sys.executable).with_name(name)
    found = str(tool) if tool.exists() else shutil.which(name)
    assert found, f"{name} (PySide6's Qt Linguist tools) is needed to make a translation"
    return found


def _shown_texts(dlg: QWidget) -> list[str]:
    """Every text the dialog shows or announces: labels, buttons, titles, placeholders, items, headers, tips."""
    texts = [dlg.windowTitle()]
    for w in dlg.findChildren(QWidget):
        texts.append(w.toolTip())
        if isinstance(w, QLabel | QAbstractButton):
            texts.append(w.text())
        elif isinstance(w, QGroupBox):
            texts.append(w.title())
        elif isinstance(w, QLineEdit):
            texts.append(w.placeholderText())
        elif isinstance(w, QComboBox):
            texts += [w.itemText(i) for i in range(w.count())]
        elif isinstance(w, QSpinBox):
            texts.append(w.specialValueText())
    table = dlg.report_table
    texts += [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    texts += [table.verticalHeaderItem(r).text() for r in range(table.rowCount())]
    return [t for t in texts if t.strip()]


def test_every_string_the_dialog_shows_goes_through_qt_translation(qapp, make_window, tmp_path):
    """pyside6-lupdate finds the dialog's strings under the context used at run time; with every one of them
    'translated' to a marked copy, no text the dialog shows is left unmarked (architecture names aside)."""
    ts, qm = tmp_path / "lesion_desktop_xx.ts", tmp_path / "lesion_desktop_xx.qm"
    subprocess.run([_qt_tool("pyside6-lupdate"), retrain_dialog.__file__, "-ts", str(ts)], check=True,
                   capture_output=True)
    tree = ET.parse(ts)
    contexts = {c.findtext("name") for c in tree.getroot().iter("context")}
    assert contexts == {"RetrainDialog"}, contexts
    sources = []
    for message in tree.getroot().iter("message"):
        translation = message.find("translation")
        sources.append(message.findtext("source"))
        translation.text = "‹" + message.findtext("source") + "›"
        translation.attrib.pop("type", None)
    assert "The active models (recommended)" in sources and "{n} images" in sources
    assert not [s for s in sources if "{}" in s]  # named placeholders only
    tree.write(ts, encoding="utf-8", xml_declaration=True)
    subprocess.run([_qt_tool("pyside6-lrelease"), str(ts), "-qm", str(qm)], check=True, capture_output=True)
    translator = QTranslator()
    assert translator.load(str(qm))
    qapp.installTranslator(translator)
    try:
        dlg = make_window().open_retrain()
        dlg.records_radio.setChecked(True)
        dlg.start()  # an error message of the dialog's own
        texts = _shown_texts(dlg)
        unmarked = [t for t in texts if "‹" not in t and t not in ARCHITECTURES and not Path(t).is_absolute()]
        assert not unmarked, unmarked
        assert "‹No examination in this clinic's records has a histopathology outcome" in dlg.status_label.text()
    finally:
        qapp.removeTranslator(translator)
