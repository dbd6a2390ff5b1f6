"""Retraining from the GUI: the same `training.pipeline.retrain` as the command line, run in the worker.

The dialog only adapts: its fields become a RetrainConfig, progress and partial events become the bar,
the ETA and the live curves. Nothing is installed until the user has compared the new models' report
with the active models' (scored on the validation images neither was trained on) and confirmed; a
candidate not shown better needs an explicit override (`training.pipeline.install_candidate`'s rule),
asked in a box whose default is No and which says how much worse it is.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QCloseEvent, QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lesion_desktop.classes import CLASSES
from lesion_desktop.errors import BundleError
from lesion_desktop.paths import data_dir
from lesion_desktop.qt.help import fit_to_screen, scrolling_body
from lesion_desktop.qt.plot import CurvePlot
from lesion_desktop.qt.workers import Worker, WorkerRunner
from lesion_desktop.registry import ARCHITECTURES, find_imagenet_weights
from lesion_desktop.store import ModelStore
from training.pipeline import RetrainConfig, RetrainResult, install_candidate, retrain
from training.progress import Progress

log = logging.getLogger(__name__)
REPORT_TITLE = "Validation report: new models next to the active ones"
_SIZE_RE = re.compile(r"^\s*(\d+)\s*[x×,]\s*(\d+)\s*$")


def _run_retrain(progress: Progress, cfg: RetrainConfig, active_dir: Path | None) -> RetrainResult:
    return retrain(cfg, progress, active_dir=active_dir)


def _run_install(progress: Progress, result: RetrainResult, store: ModelStore, override: bool) -> Path:
    progress.report(0.1, "Verifying and installing the new models…")
    return install_candidate(result, store, override=override)


def format_eta(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {(seconds % 3600) // 60:02d} min"


class RetrainDialog(QDialog):
    models_changed = Signal()
    training_finished = Signal(object)  # RetrainResult

    def __init__(self, store: ModelStore, *, device: Callable[[], str], active_dir: Callable[[], Path | None],
                 override_note: Callable[[], str] = lambda: "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Retrain models")
        self.store, self._device, self._active_dir, self._override_note = store, device, active_dir, override_note
        self.runner = WorkerRunner(1, self)
        self.worker: Worker | None = None
        self.candidate: RetrainResult | None = None
        self.confirm_box: QMessageBox | None = None  # the open install confirmation, if any
        self.work_dir: Path | None = None
        self._t0 = 0.0
        self._step = 0
        body = QWidget()
        body_layout = QVBoxLayout(body)
        body_layout.setContentsMargins(0, 0, 0, 0)
        self.inputs_box = self._build_inputs()
        body_layout.addWidget(self.inputs_box)
        body_layout.addWidget(self._build_progress())
        body_layout.addWidget(self._build_report())
        layout, _ = scrolling_body(self, body)
        layout.addLayout(self._build_buttons())
        fit_to_screen(self, 900, 900)  # at most the screen (1366x768 laptops): the body scrolls
        self._update_buttons()

    # ---- construction -------------------------------------------------------------------------------
    def _build_inputs(self) -> QGroupBox:
        box = QGroupBox("Training data and models")
        form = QFormLayout(box)
        self.data_edit = QLineEdit()
        self.data_edit.setPlaceholderText("HAM10000 folder (metadata CSV + images) or one sub-folder per class")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_data)
        row = QHBoxLayout()
        row.addWidget(self.data_edit, 1)
        row.addWidget(browse)
        form.addRow("Data folder", row)
        archs = QWidget()
        grid = QGridLayout(archs)
        grid.setContentsMargins(0, 0, 0, 0)
        self.arch_boxes: dict[str, QCheckBox] = {}
        for i, (name, spec) in enumerate(ARCHITECTURES.items()):
            offline = spec.imagenet_file is None or find_imagenet_weights(name) is not None
            cb = QCheckBox(name + ("" if offline else " (no ImageNet weights found)"))
            cb.setToolTip(spec.description)
            self.arch_boxes[name] = cb
            grid.addWidget(cb, i // 2, i % 2)
        form.addRow("Architectures", archs)
        self.epoch_spins: dict[str, QSpinBox] = {}
        erow = QHBoxLayout()
        for phase, label, default in (("head", "head", 1), ("top", "top layers", 1), ("all", "all layers", 3)):
            spin = QSpinBox()
            spin.setRange(0, 200)
            spin.setValue(default)
            self.epoch_spins[phase] = spin
            erow.addWidget(QLabel(label))
            erow.addWidget(spin)
        erow.addStretch(1)
        form.addRow("Epochs", erow)
        self.size_edit = QLineEdit()
        self.size_edit.setPlaceholderText("native size of each architecture, or H x W such as 150x200")
        form.addRow("Input size", self.size_edit)
        self.imagenet_combo = QComboBox()
        self.imagenet_combo.addItem("Use ImageNet weights when available", "auto")
        self.imagenet_combo.addItem("Start from random weights", "none")
        form.addRow("Initial weights", self.imagenet_combo)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 512)
        self.batch_spin.setValue(32)
        form.addRow("Batch size", self.batch_spin)
        self.max_batches_spin = QSpinBox()
        self.max_batches_spin.setRange(0, 100000)
        self.max_batches_spin.setSpecialValueText("all")
        form.addRow("Batches per epoch (quick trial)", self.max_batches_spin)
        return box

    def _build_progress(self) -> QWidget:
        box = QGroupBox("Progress")
        lay = QVBoxLayout(box)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.status_label = QLabel("Not started.")
        self.status_label.setWordWrap(True)
        self.eta_label = QLabel("")
        plots = QHBoxLayout()
        self.loss_plot = CurvePlot("Training loss", QColor(38, 110, 180))
        self.acc_plot = CurvePlot("Validation balanced accuracy", QColor(46, 125, 50), (0.0, 1.0))
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.acc_plot)
        for w in (self.progress_bar, self.status_label, self.eta_label):
            lay.addWidget(w)
        lay.addLayout(plots)
        return box

    def _build_report(self) -> QWidget:
        box = QGroupBox(REPORT_TITLE)
        self.report_box = box
        lay = QVBoxLayout(box)
        rows = ["Balanced accuracy", "Melanoma recall", "Accuracy", "Macro AUC"] + [
            f"Recall: {c.name.split(' (')[0]}" for c in CLASSES]
        self.report_table = QTableWidget(len(rows), 2)
        self.report_table.setHorizontalHeaderLabels(["New models", "Active models"])
        self.report_table.setVerticalHeaderLabels(rows)
        self.report_table.horizontalHeader().setStretchLastSection(True)
        self.report_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.verdict_label = QLabel("")
        self.verdict_label.setWordWrap(True)
        lay.addWidget(self.report_table)
        lay.addWidget(self.verdict_label)
        return box

    def _build_buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.start_button = QPushButton("Start training")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel training")
        self.cancel_button.clicked.connect(self.cancel)
        self.install_button = QPushButton("Install new models…")
        self.install_button.clicked.connect(self.install)
        self.rollback_button = QPushButton("Roll back to previous models…")
        self.rollback_button.clicked.connect(self.rollback)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        for b in (self.start_button, self.cancel_button, self.install_button, self.rollback_button):
            row.addWidget(b)
        row.addStretch(1)
        row.addWidget(close)
        return row

    # ---- state --------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None and not self.worker.done.is_set()

    def _update_buttons(self) -> None:
        running = self.running
        self.inputs_box.setEnabled(not running)  # what the run was started with stays on screen, unchangeable
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.install_button.setEnabled(not running and self.candidate is not None)
        self.rollback_button.setEnabled(not running and self.store.has_previous())

    def _browse_data(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose the training data folder", self.data_edit.text())
        if path:
            self.data_edit.setText(path)

    def config(self) -> RetrainConfig:
        """The RetrainConfig the fields describe; raises ValueError with a message for the user."""
        data = self.data_edit.text().strip()
        if not data or not Path(data).is_dir():
            raise ValueError("Choose an existing data folder.")
        archs = [n for n, cb in self.arch_boxes.items() if cb.isChecked()]
        if not archs:
            raise ValueError("Choose at least one architecture.")
        size_text = self.size_edit.text().strip()
        size: tuple[int, int] | None = None
        if size_text:
            m = _SIZE_RE.match(size_text)
            if not m:
                raise ValueError("Input size must look like 150x200 (height x width), or be left empty.")
            size = (int(m.group(1)), int(m.group(2)))
        epochs = {k: s.value() for k, s in self.epoch_spins.items()}
        if sum(epochs.values()) == 0:
            raise ValueError("Set at least one epoch.")
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return RetrainConfig(
            data=data, architectures=archs, work_dir=str(data_dir() / "retrain" / f"run-{stamp}"),
            epochs_head=epochs["head"], epochs_top=epochs["top"], epochs_all=epochs["all"], input_size=size,
            imagenet=str(self.imagenet_combo.currentData()), batch_size=self.batch_spin.value(),
            max_batches=self.max_batches_spin.value() or None, device=self._device(),
            command="retrain dialog",
        )

    # ---- actions ------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            return
        try:
            cfg = self.config()
        except ValueError as e:
            self._on_error(str(e))
            return
        self._discard_work_dir()
        self.work_dir = Path(cfg.work_dir)
        self.candidate = None
        self.loss_plot.clear()
        self.acc_plot.clear()
        self.report_table.clearContents()
        self.report_box.setTitle(REPORT_TITLE)
        self.verdict_label.clear()
        self.progress_bar.setValue(0)
        self._t0, self._step = time.monotonic(), 0
        self.status_label.setText("Starting…")
        worker = Worker(_run_retrain, cfg, self._active_dir(), name="retrain")
        worker.signals.progress.connect(self._on_progress)
        worker.signals.partial.connect(self._on_partial)
        worker.signals.finished.connect(self._on_finished)
        worker.signals.errored.connect(self._on_error)
        self.worker = self.runner.start(worker)
        self._update_buttons()

    def cancel(self) -> None:
        if self.running and self.worker is not None:
            self.worker.cancel()
            self.status_label.setText("Cancelling after the current batch…")
            self.cancel_button.setEnabled(False)

    def _on_progress(self, fraction: float, message: str) -> None:
        self.status_label.setStyleSheet("")
        self.progress_bar.setValue(int(max(0.0, min(1.0, fraction)) * 1000))
        self.status_label.setText(message)
        elapsed = time.monotonic() - self._t0
        if fraction > 0.01:
            left = elapsed / fraction * (1 - fraction)
            self.eta_label.setText(f"Elapsed {format_eta(elapsed)} · about {format_eta(left)} left")

    def _on_partial(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        if event.get("event") == "batch" and isinstance(event.get("loss"), int | float):
            self._step += 1
            self.loss_plot.add_point(self._step, event["loss"])
        elif event.get("event") == "epoch" and isinstance(event.get("val_balanced_accuracy"), int | float):
            self.acc_plot.add_point(len(self.acc_plot.points) + 1, event["val_balanced_accuracy"])

    def _on_finished(self, result: RetrainResult) -> None:
        self.candidate = result
        self.progress_bar.setValue(1000)
        self.status_label.setText(f"Finished in {format_eta(result.seconds)}. Compare the reports, "
                                  "then install the new models if they are better.")
        self.eta_label.clear()
        self._show_report(result)
        self._update_buttons()
        self.training_finished.emit(result)

    def _on_error(self, message: str) -> None:
        self.status_label.setText(message)
        self.status_label.setStyleSheet("color:#c62828; font-weight:bold;")
        self.eta_label.clear()
        self._update_buttons()

    def _show_report(self, result: RetrainResult) -> None:
        c = result.comparison
        compared = c is not None and c.candidate is not None
        # Side by side on the compared images; with none, the new models on all their validation images.
        columns = (c.candidate, c.active) if compared and c is not None else (result.metrics, None)
        for col, m in enumerate(columns):
            values: list[Any] = []
            if m:
                values = [m.get("balanced_accuracy"), m.get("melanoma_recall"), m.get("accuracy"), m.get("macro_auc")]
                values += [m.get("per_class", {}).get(cl.code, {}).get("recall") for cl in CLASSES]
            for row in range(self.report_table.rowCount()):
                v = values[row] if row < len(values) else None
                text = f"{v:.3f}" if isinstance(v, int | float) and v == v else "—"
                self.report_table.setItem(row, col, QTableWidgetItem(text))
        if compared and c is not None:
            self.report_box.setTitle(f"Validation report: new and active models on the same {c.n_images} images, "
                                     "which neither was trained on")
        else:
            self.report_box.setTitle("Validation report: the new models on their validation images (no fair "
                                     "comparison with the active models was possible)")
        verdict = result.verdict
        note = self._override_note()
        self.verdict_label.setText(verdict.summary + (f"\n{note}" if note else ""))
        self.verdict_label.setStyleSheet("color:#2e7d32;" if not verdict.needs_override
                                         else "color:#c62828; font-weight:bold;")

    def install(self) -> None:
        """Ask first; a candidate not shown better gets a box that says so and defaults to No."""
        if self.candidate is None or self.running:
            return
        verdict = self.candidate.verdict
        box = QMessageBox(self)
        box.setWindowTitle("Install the new models")
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        yes, no = box.button(QMessageBox.StandardButton.Yes), box.button(QMessageBox.StandardButton.No)
        if verdict.needs_override:
            box.setIcon(QMessageBox.Icon.Warning)
            box.setText(("The new models are WORSE than the active ones." if verdict.worse else
                         "The new models are not shown to be at least as good as the active ones.")
                        + (f"\n\n{verdict.figures}." if verdict.figures else ""))
            box.setInformativeText(
                verdict.detail + "\n\nIf you install them anyway, they are marked as unvalidated: a banner in "
                "the main window and every result made with them say so until you roll back.")
            yes.setText("Install anyway (override)")
            no.setText("Keep the active models")
            box.setDefaultButton(QMessageBox.StandardButton.No)
            box.setEscapeButton(QMessageBox.StandardButton.No)
        else:
            box.setIcon(QMessageBox.Icon.Question)
            box.setText("Install the new models?")
            box.setInformativeText(verdict.summary + "\n\nThe current models are kept and can be restored with "
                                                     "Roll back.")
            box.setDefaultButton(QMessageBox.StandardButton.No)
        box.finished.connect(lambda _r: self._on_confirmed(box, box.clickedButton() is yes))
        self.confirm_box = box
        box.open()

    def _on_confirmed(self, box: QMessageBox, accepted: bool) -> None:
        if self.confirm_box is box:
            self.confirm_box = None
        if not accepted or self.candidate is None or self.running:
            return
        worker = Worker(_run_install, self.candidate, self.store, self.candidate.verdict.needs_override,
                        name="install")
        worker.signals.progress.connect(lambda _f, message: self.status_label.setText(message))
        worker.signals.finished.connect(self._on_installed)
        worker.signals.errored.connect(self._on_error)
        self.worker = self.runner.start(worker)
        self._update_buttons()

    def _reset_progress(self) -> None:
        self.progress_bar.setValue(0)
        self.eta_label.clear()
        self.loss_plot.clear()
        self.acc_plot.clear()
        self.status_label.setStyleSheet("")

    def _on_installed(self, path: Path) -> None:
        installed = self.candidate
        self.candidate = None
        self._reset_progress()
        self.report_table.clearContents()
        self.report_box.setTitle(REPORT_TITLE)
        self.verdict_label.clear()
        marked = installed is not None and installed.verdict.needs_override
        self.status_label.setText(
            f"Installed as {Path(path).name}. The main window is reloading the models."
            + (" They were installed by override and are marked as unvalidated until you roll back." if marked
               else ""))
        self._discard_work_dir()
        self._update_buttons()
        self.models_changed.emit()

    def rollback(self) -> None:
        if self.running:
            return
        answer = QMessageBox.question(self, "Roll back", "Restore the models that were in use before the last "
                                                         "installation?")
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            restored = self.store.rollback()
        except BundleError as e:
            self._on_error(str(e))
            return
        self._reset_progress()
        self.status_label.setText(f"Rolled back to {restored.name if restored else 'the bundled default models'}.")
        self._update_buttons()
        self.models_changed.emit()

    def _discard_work_dir(self) -> None:
        """Candidates and caches are large; the installed copy lives in the model store."""
        if self.work_dir is not None and not self.running:
            if self.work_dir.exists():
                shutil.rmtree(self.work_dir, onerror=lambda _f, path, exc: log.warning(
                    "Could not remove %s: %s", path, exc[1]))
            self.work_dir = None

    def shutdown(self, timeout_ms: int = 60000) -> None:
        """Called when the application closes: cancel, wait for the worker, clean up."""
        self.runner.shutdown(timeout_ms)
        self._discard_work_dir()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        if self.running:
            answer = QMessageBox.question(self, "Training is running", "Cancel the training and close?")
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
            self.cancel()
        super().closeEvent(event)
