"""Retraining from the GUI: the same `training.pipeline.retrain` as the command line, run in the worker.

The dialog only adapts: its fields become a RetrainConfig, progress and partial events become the bar,
the ETA and the live curves. The models start by default from the active ones (`RetrainConfig.init`), and
the data are a folder or this clinic's own histopathology-confirmed examinations, which the worker first
exports as a training set (`lesion_desktop.export`, into the run's work folder); the original training data
can be mixed in. Nothing is installed until the user has compared the new models' report with the active
models' (on the clinic's validation images neither was trained on, and on the original data's when mixed in)
and confirmed; a candidate not shown better needs an explicit override (`training.pipeline.install_candidate`'s
rule), asked in a box whose default is No and which says how much worse it is.

Every string the user reads goes through Qt's translation functions (context "RetrainDialog"). The pipeline's
verdict (training.comparison: its sentences, figures, problems and small-class notes) is a Wording whose parts are
marked under "RetrainVerdict", rendered here through `tr_core`; the pipeline's progress messages stay in English
(docs/translations.md).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, Qt, Signal
from PySide6.QtGui import QCloseEvent, QColor, QShowEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lesion_desktop import registry
from lesion_desktop.classes import CLASS_CODES, CLASSES
from lesion_desktop.errors import BundleError, LesionError
from lesion_desktop.export import export_records
from lesion_desktop.paths import data_dir
from lesion_desktop.qt.help import fit_to_screen, scrolling_body
from lesion_desktop.qt.plot import CurvePlot
from lesion_desktop.qt.translations import diagnosis_name, tr_core
from lesion_desktop.qt.workers import Worker, WorkerRunner
from lesion_desktop.records import RecordStore
from lesion_desktop.registry import ARCHITECTURES, SHIPPED_IMAGENET
from lesion_desktop.store import ModelStore
from training.pipeline import Comparison, RetrainConfig, RetrainResult, install_candidate, retrain
from training.progress import Progress, ScaledProgress

log = logging.getLogger(__name__)
translate = QCoreApplication.translate  # a literal context and text in each call: pyside6-lupdate finds them
_SIZE_RE = re.compile(r"^\s*(\d+)\s*[x×,]\s*(\d+)\s*$")
RECORDS_FOLDER = "clinic-records"  # in the run's work folder: the records exported as a training set
_RED, _GREY = "color:#c62828;", "color:#555;"


def report_title() -> str:
    return translate("RetrainDialog", "Validation report: new models next to the active ones")


def _run_retrain(progress: Progress, cfg: RetrainConfig, active_dir: Path | None) -> RetrainResult:
    return retrain(cfg, progress, active_dir=active_dir)


def _run_job(progress: Progress, cfg: RetrainConfig, active_dir: Path | None,
             records: RecordStore | None) -> RetrainResult:
    """With `records`: export the histopathology-confirmed examinations into cfg.data first, then retrain."""
    if records is not None:
        summary = export_records(records, Path(cfg.data), training_only=True,
                                 progress=ScaledProgress(progress, 0.0, 0.0))
        for problem in summary.problems:
            log.warning("Exporting the records for retraining: %s", problem)
        if summary.training_images == 0:
            raise LesionError("No examination with a histopathology outcome could be exported from the records.")
        log.info("Retraining on %d histopathology-confirmed examinations exported to %s", summary.training_images,
                 cfg.data)
    return _run_retrain(progress, cfg, active_dir)


def _run_install(progress: Progress, result: RetrainResult, store: ModelStore, override: bool) -> Path:
    progress.report(0.1, translate("RetrainDialog", "Verifying and installing the new models…"))
    return install_candidate(result, store, override=override)


def histopathology_counts(store: RecordStore) -> dict[str, int]:
    """Examinations with a histopathology outcome of one of the seven classes, per class code, one per image
    file (as the export writes the training set)."""
    counts = dict.fromkeys(CLASS_CODES, 0)
    seen: set[str] = set()
    for rec in store.list(limit=10_000_000):  # light rows: no network inputs or heat-maps
        key = rec.image_sha256 or f"exam-{rec.id}"
        if rec.histopathology in counts and key not in seen:
            seen.add(key)
            counts[rec.histopathology] += 1
    return counts


def active_architectures(active_dir: Path | None) -> tuple[set[str], str]:
    """The architectures of the active ensemble's members, and '' or why they could not be read."""
    from lesion_desktop.manifest import validate_ensemble

    if active_dir is None:
        return set(), translate("RetrainDialog", "No models are active.")
    try:
        return {m.architecture for m in validate_ensemble(Path(active_dir)).members}, ""
    except BundleError as e:
        return set(), translate("RetrainDialog", "The active models could not be read: {error}").format(error=e)


def format_eta(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return translate("RetrainDialog", "{s} s").format(s=seconds)
    if seconds < 3600:
        return translate("RetrainDialog", "{m} min {s} s").format(m=seconds // 60, s=f"{seconds % 60:02d}")
    return translate("RetrainDialog", "{h} h {m} min").format(h=seconds // 3600, m=f"{(seconds % 3600) // 60:02d}")


def _wrapped(text: str = "", style: str = _GREY) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet(style)
    return label


class RetrainDialog(QDialog):
    models_changed = Signal()
    training_finished = Signal(object)  # RetrainResult

    def __init__(self, store: ModelStore, *, device: Callable[[], str], active_dir: Callable[[], Path | None],
                 override_note: Callable[[], str] = lambda: "", records: RecordStore | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Retrain models"))
        self.store, self._device, self._active_dir, self._override_note = store, device, active_dir, override_note
        self._records = records
        self.runner = WorkerRunner(1, self)
        self.worker: Worker | None = None
        self.candidate: RetrainResult | None = None
        self.confirm_box: QMessageBox | None = None  # the open install confirmation, if any
        self.work_dir: Path | None = None
        self.active_archs: set[str] = set()
        self.record_counts: dict[str, int] = dict.fromkeys(CLASS_CODES, 0)
        self.imagenet_found: dict[str, bool] = {}
        self._t0 = 0.0
        self._step = 0
        body = QWidget()
        body_layout = QVBoxLayout(body)
        body_layout.setContentsMargins(0, 0, 0, 0)
        self.inputs_box = QWidget()  # everything a run is started with: locked while it runs
        inputs = QVBoxLayout(self.inputs_box)
        inputs.setContentsMargins(0, 0, 0, 0)
        inputs.addWidget(self._build_data())
        inputs.addWidget(self._build_models())
        body_layout.addWidget(self.inputs_box)
        body_layout.addWidget(self._build_progress())
        body_layout.addWidget(self._build_report())
        layout, _ = scrolling_body(self, body)
        layout.addLayout(self._build_buttons())
        fit_to_screen(self, 920, 900)  # at most the screen (1024x768, 1366x768 laptops): the body scrolls
        self.refresh(check_defaults=True)
        self._update_buttons()

    # ---- construction -------------------------------------------------------------------------------
    def _build_data(self) -> QGroupBox:
        box = QGroupBox(self.tr("Training data"))
        form = QFormLayout(box)
        self.source_group = QButtonGroup(self)
        self.folder_radio = QRadioButton(self.tr("A folder"))
        self.records_radio = QRadioButton(self.tr("This clinic's records with a histopathology outcome"))
        self.folder_radio.setChecked(True)
        for button in (self.folder_radio, self.records_radio):
            self.source_group.addButton(button)
            button.toggled.connect(self._update_source)
        self.data_edit = QLineEdit()
        self.data_edit.setPlaceholderText(self.tr("HAM10000-style folder (metadata CSV + images) or one sub-folder "
                                                  "per class"))
        self.data_browse = QPushButton(self.tr("Browse…"))
        self.data_browse.clicked.connect(self._browse_data)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_radio)
        folder_row.addWidget(self.data_edit, 1)
        folder_row.addWidget(self.data_browse)
        source = QVBoxLayout()
        source.addLayout(folder_row)
        source.addWidget(self.records_radio)
        self.records_label = _wrapped()
        source.addWidget(self.records_label)
        form.addRow(self.tr("Data"), source)

        self.mix_check = QCheckBox(self.tr("Mix in the original training data, so the models keep what they knew"))
        self.mix_check.toggled.connect(self._update_source)
        self.mix_edit = QLineEdit()
        self.mix_edit.setPlaceholderText(self.tr("the original training data's folder, e.g. HAM10000"))
        self.mix_browse = QPushButton(self.tr("Browse…"))
        self.mix_browse.clicked.connect(self._browse_mix)
        self.mix_ratio_spin = QDoubleSpinBox()
        self.mix_ratio_spin.setRange(0.0, 20.0)
        self.mix_ratio_spin.setSingleStep(0.5)
        self.mix_ratio_spin.setDecimals(2)
        self.mix_ratio_spin.setValue(1.0)
        self.mix_ratio_spin.setToolTip(self.tr("Original images drawn per clinic training image; 0 mixes none in "
                                               "but still compares both models on the original validation images."))
        mix_row = QHBoxLayout()
        mix_row.addWidget(self.mix_edit, 1)
        mix_row.addWidget(self.mix_browse)
        mix_row.addWidget(QLabel(self.tr("Original images per clinic image")))
        mix_row.addWidget(self.mix_ratio_spin)
        mix = QVBoxLayout()
        mix.addWidget(self.mix_check)
        mix.addLayout(mix_row)
        form.addRow(self.tr("Original data"), mix)
        return box

    def _build_models(self) -> QGroupBox:
        box = QGroupBox(self.tr("Models"))
        form = QFormLayout(box)
        self.init_combo = QComboBox()
        self.init_combo.addItem(self.tr("The active models (recommended)"), "active")
        self.init_combo.addItem(self.tr("ImageNet weights"), "imagenet")
        self.init_combo.addItem(self.tr("Random weights"), "random")
        self.init_combo.currentIndexChanged.connect(lambda _i: self._update_init())
        self.init_hint = _wrapped()
        init = QVBoxLayout()
        init.addWidget(self.init_combo)
        init.addWidget(self.init_hint)
        form.addRow(self.tr("Initial weights"), init)

        archs = QWidget()
        grid = QGridLayout(archs)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(16)
        grid.setVerticalSpacing(2)
        self.arch_boxes: dict[str, QCheckBox] = {}
        self.arch_active_labels: dict[str, QLabel] = {}
        self.arch_imagenet_labels: dict[str, QLabel] = {}
        for row, name in enumerate(ARCHITECTURES):
            cb = QCheckBox(name)
            cb.toggled.connect(lambda _on: self._update_init())
            self.arch_boxes[name] = cb
            self.arch_active_labels[name] = QLabel()
            self.arch_imagenet_labels[name] = QLabel()
            grid.addWidget(cb, row, 0)
            grid.addWidget(self.arch_active_labels[name], row, 1)
            grid.addWidget(self.arch_imagenet_labels[name], row, 2)
        grid.setColumnStretch(2, 1)
        form.addRow(self.tr("Architectures"), archs)

        self.epoch_spins: dict[str, QSpinBox] = {}
        erow = QHBoxLayout()
        for phase, label, default in (("head", self.tr("head"), 1), ("top", self.tr("top layers"), 1),
                                      ("all", self.tr("all layers"), 3)):
            spin = QSpinBox()
            spin.setRange(0, 200)
            spin.setValue(default)
            self.epoch_spins[phase] = spin
            erow.addWidget(QLabel(label))
            erow.addWidget(spin)
        erow.addStretch(1)
        self.epoch_spins["head"].setToolTip(self.tr("Only for models that start afresh (ImageNet or random "
                                                    "weights): a model continued from the active one keeps its "
                                                    "trained head."))
        form.addRow(self.tr("Epochs"), erow)
        self.size_edit = QLineEdit()
        self.size_edit.setPlaceholderText(self.tr("native size of each architecture, or H x W such as 150x200"))
        self.size_edit.setToolTip(self.tr("A model continued from the active one keeps the active model's input "
                                          "size."))
        form.addRow(self.tr("Input size"), self.size_edit)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 512)
        self.batch_spin.setValue(32)
        self.batch_spin.setMaximumWidth(120)
        form.addRow(self.tr("Batch size"), self.batch_spin)
        self.max_batches_spin = QSpinBox()
        self.max_batches_spin.setRange(0, 100000)
        self.max_batches_spin.setSpecialValueText(self.tr("all"))
        self.max_batches_spin.setMaximumWidth(120)
        form.addRow(self.tr("Batches per epoch (quick trial)"), self.max_batches_spin)
        return box

    def _build_progress(self) -> QWidget:
        box = QGroupBox(self.tr("Progress"))
        lay = QVBoxLayout(box)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.status_label = QLabel(self.tr("Not started."))
        self.status_label.setWordWrap(True)
        self.eta_label = QLabel("")
        plots = QHBoxLayout()
        self.loss_plot = CurvePlot(self.tr("Training loss"), QColor(38, 110, 180))
        self.acc_plot = CurvePlot(self.tr("Validation balanced accuracy"), QColor(46, 125, 50), (0.0, 1.0))
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.acc_plot)
        for w in (self.progress_bar, self.status_label, self.eta_label):
            lay.addWidget(w)
        lay.addLayout(plots)
        return box

    def _row_names(self) -> list[str]:
        return [self.tr("Balanced accuracy"), self.tr("Melanoma recall"), self.tr("Accuracy"), self.tr("Macro AUC")] \
            + [self.tr("Recall: {cls}").format(cls=diagnosis_name(c, "short")) for c in CLASSES]

    def _build_report(self) -> QWidget:
        box = QGroupBox(report_title())
        self.report_box = box
        lay = QVBoxLayout(box)
        rows = self._row_names()
        self.report_table = QTableWidget(len(rows), 4)
        self._set_report_headers(None, None)
        self.report_table.setVerticalHeaderLabels(rows)
        self.report_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.report_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.report_table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # the dialog scrolls
        self.verdict_label = QLabel("")
        self.verdict_label.setWordWrap(True)
        lay.addWidget(self.report_table)
        lay.addWidget(self.verdict_label)
        return box

    def _set_report_headers(self, clinic: Comparison | None, reference: Comparison | None) -> None:
        def count(c: Comparison | None) -> str:
            return "\n" + self.tr("{n} images").format(n=c.n_images) if c is not None and c.n_images else ""

        self.report_table.setHorizontalHeaderLabels([
            self.tr("New models\nclinic") + count(clinic), self.tr("Active models\nclinic") + count(clinic),
            self.tr("New models\noriginal data") + count(reference),
            self.tr("Active models\noriginal data") + count(reference)])
        for col in (2, 3):
            self.report_table.setColumnHidden(col, reference is None)
        table = self.report_table  # every row shown: the table is as tall as its rows and two-line header
        table.setFixedHeight(table.verticalHeader().length() + table.horizontalHeader().sizeHint().height()
                             + 2 * table.frameWidth())

    def _build_buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.start_button = QPushButton(self.tr("Start training"))
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton(self.tr("Cancel training"))
        self.cancel_button.clicked.connect(self.cancel)
        self.install_button = QPushButton(self.tr("Install new models…"))
        self.install_button.clicked.connect(self.install)
        self.rollback_button = QPushButton(self.tr("Roll back to previous models…"))
        self.rollback_button.clicked.connect(self.rollback)
        close = QPushButton(self.tr("Close"))
        close.clicked.connect(self.close)
        for b in (self.start_button, self.cancel_button, self.install_button, self.rollback_button):
            row.addWidget(b)
        row.addStretch(1)
        row.addWidget(close)
        return row

    # ---- what is available ---------------------------------------------------------------------------
    def records(self) -> RecordStore:
        if self._records is None:
            self._records = RecordStore()
        return self._records

    def refresh(self, check_defaults: bool = False) -> None:
        """Read again what the choices depend on: the active models' architectures, the ImageNet weights found,
        the records' histopathology outcomes. `check_defaults`: tick the active models' architectures."""
        self.active_archs, problem = active_architectures(self._active_dir())
        for name, label in self.arch_active_labels.items():
            if name in self.active_archs:
                label.setText(self.tr("in the active models"))
                label.setStyleSheet("")
                label.setToolTip("")
            else:
                label.setText(self.tr("not in the active models"))
                label.setStyleSheet(_GREY)
                label.setToolTip(problem or self.tr("Started from the active models, {name} starts from ImageNet "
                                                    "weights instead.").format(name=name))
        self.imagenet_found = {}
        for name, label in self.arch_imagenet_labels.items():
            lookup = registry.locate_imagenet_weights(name)
            self.imagenet_found[name] = lookup.path is not None
            if lookup.path is not None and lookup.path.parent == registry.shipped_imagenet_dir():
                label.setText(self.tr("ImageNet weights shipped"))
            elif lookup.path is not None:
                label.setText(self.tr("ImageNet weights found"))
            elif lookup.problems:
                label.setText(self.tr("ImageNet weights damaged"))
            else:
                label.setText(self.tr("no ImageNet weights"))
            label.setStyleSheet("" if lookup.path is not None else _RED if lookup.problems else _GREY)
            label.setToolTip("\n".join(lookup.problems) if lookup.problems else
                             str(lookup.path) if lookup.path is not None else "")
        if check_defaults:
            wanted = self.active_archs or set(SHIPPED_IMAGENET)
            for name, cb in self.arch_boxes.items():
                cb.setChecked(name in wanted)
        try:
            self.record_counts = histopathology_counts(self.records())
        except LesionError as e:
            log.warning("Could not count the records' histopathology outcomes: %s", e)
            self.record_counts = dict.fromkeys(CLASS_CODES, 0)
        self._update_source()
        self._update_init()

    def _update_source(self) -> None:
        records = self.records_radio.isChecked()
        self.data_edit.setEnabled(not records)
        self.data_browse.setEnabled(not records)
        total = sum(self.record_counts.values())
        if total:
            per_class = ", ".join(f"{code} {n}" for code, n in self.record_counts.items())
            text = self.tr("{total} examinations with a histopathology outcome: {per_class}.").format(
                total=total, per_class=per_class)
            if records:
                text += " " + self.tr("They are exported into the run's work folder and split by lesion.")
        else:
            text = self.tr("No examination in this clinic's records has a histopathology outcome yet (add it with "
                           "the examination's Histopathology field when the result comes back).")
        self.records_label.setText(text)
        self.records_label.setStyleSheet(_RED if records and not total else _GREY)
        mix = self.mix_check.isChecked()
        for w in (self.mix_edit, self.mix_browse, self.mix_ratio_spin):
            w.setEnabled(mix)

    def imagenet_available(self, archs: list[str]) -> list[str]:
        """Of `archs`, those without usable ImageNet weights."""
        return [a for a in archs if not self.imagenet_found.get(a, False)]

    def _update_init(self) -> None:
        archs = self.chosen_architectures()
        missing = self.imagenet_available(archs)
        item = self.init_combo.model().item(self.init_combo.findData("imagenet"))  # a QStandardItemModel
        item.setEnabled(not missing)
        init = self.init_combo.currentData()
        if init == "active":
            text = self.tr("Each architecture continues from the active model of the same architecture (its "
                           "classifier, input size and preprocessing) at a tenth of the learning rates.")
            lacking = [a for a in archs if a not in self.active_archs]
            bare = self.imagenet_available(lacking)
            if len(bare) < len(lacking):
                text += " " + self.tr("Not in the active models, so starting from ImageNet weights: {names}.").format(
                    names=", ".join(a for a in lacking if a not in bare))
            if bare:
                text += " " + self.tr("Not in the active models and without ImageNet weights, so starting from "
                                      "random weights: {names}.").format(names=", ".join(bare))
            style = _RED if bare else _GREY
        elif init == "imagenet":
            text = self.tr("A new classifier on ImageNet-pretrained weights, trained in the study's phases.")
            if missing:
                text += " " + self.tr("No usable ImageNet weights for: {names}.").format(names=", ".join(missing))
            style = _RED if missing else _GREY
        else:
            text = self.tr("Starting from random weights needs far more images than a clinic usually has.")
            style = _GREY
        self.init_hint.setText(text)
        self.init_hint.setStyleSheet(style)

    def chosen_architectures(self) -> list[str]:
        return [n for n, cb in self.arch_boxes.items() if cb.isChecked()]

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt API
        if not self.running:
            self.refresh()  # models installed or rolled back, outcomes added since it was last shown
        super().showEvent(event)

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
        path = QFileDialog.getExistingDirectory(self, self.tr("Choose the training data folder"),
                                                self.data_edit.text())
        if path:
            self.data_edit.setText(path)

    def _browse_mix(self) -> None:
        path = QFileDialog.getExistingDirectory(self, self.tr("Choose the original training data's folder"),
                                                self.mix_edit.text())
        if path:
            self.mix_edit.setText(path)

    def config(self) -> RetrainConfig:
        """The RetrainConfig the fields describe; raises ValueError with a message for the user."""
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        work_dir = data_dir() / "retrain" / f"run-{stamp}"
        if self.records_radio.isChecked():
            if not sum(self.record_counts.values()):
                raise ValueError(self.tr("No examination in this clinic's records has a histopathology outcome: "
                                         "choose a data folder instead."))
            data = str(work_dir / RECORDS_FOLDER)
        else:
            data = self.data_edit.text().strip()
            if not data or not Path(data).is_dir():
                raise ValueError(self.tr("Choose an existing data folder."))
        mix_data: str | None = None
        if self.mix_check.isChecked():
            mix_data = self.mix_edit.text().strip()
            if not mix_data or not Path(mix_data).is_dir():
                raise ValueError(self.tr("Choose the original training data's folder, or do not mix it in."))
        archs = self.chosen_architectures()
        if not archs:
            raise ValueError(self.tr("Choose at least one architecture."))
        init = str(self.init_combo.currentData())
        missing = self.imagenet_available(archs)
        if init == "imagenet" and missing:
            raise ValueError(self.tr("There are no usable ImageNet weights for {names}: start from the active "
                                     "models, or choose other architectures.").format(names=", ".join(missing)))
        size_text = self.size_edit.text().strip()
        size: tuple[int, int] | None = None
        if size_text:
            m = _SIZE_RE.match(size_text)
            if not m:
                raise ValueError(self.tr("Input size must look like 150x200 (height x width), or be left empty."))
            size = (int(m.group(1)), int(m.group(2)))
        epochs = {k: s.value() for k, s in self.epoch_spins.items()}
        if sum(epochs.values()) == 0:
            raise ValueError(self.tr("Set at least one epoch."))
        return RetrainConfig(
            data=data, architectures=archs, work_dir=str(work_dir),
            epochs_head=epochs["head"], epochs_top=epochs["top"], epochs_all=epochs["all"], input_size=size,
            imagenet="auto", init=init, mix_data=mix_data, mix_ratio=self.mix_ratio_spin.value(),
            batch_size=self.batch_spin.value(), max_batches=self.max_batches_spin.value() or None,
            device=self._device(), command="retrain dialog",
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
        # The exporter holds the GIL for up to half a second at a time: in this process it would freeze the window.
        cfg = dataclasses.replace(cfg, export_in_child=True)
        records = self.records() if self.records_radio.isChecked() else None
        self._discard_work_dir()
        self.work_dir = Path(cfg.work_dir)
        self.candidate = None
        self.loss_plot.clear()
        self.acc_plot.clear()
        self.report_table.clearContents()
        self._set_report_headers(None, None)
        self.report_box.setTitle(report_title())
        self.verdict_label.clear()
        self.progress_bar.setValue(0)
        self._t0, self._step = time.monotonic(), 0
        if records is not None:
            self.status_label.setText(self.tr("Exporting {total} examinations with a histopathology outcome "
                                              "({per_class})…").format(
                total=sum(self.record_counts.values()),
                per_class=", ".join(f"{c} {n}" for c, n in self.record_counts.items() if n)))
        else:
            self.status_label.setText(self.tr("Starting…"))
        worker = Worker(_run_job, cfg, self._active_dir(), records, name="retrain")
        worker.signals.progress.connect(self._on_progress)
        worker.signals.partial.connect(self._on_partial)
        worker.signals.finished.connect(self._on_finished)
        worker.signals.errored.connect(self._on_error)
        self.worker = self.runner.start(worker)
        self._update_buttons()

    def cancel(self) -> None:
        if self.running and self.worker is not None:
            self.worker.cancel()
            self.status_label.setText(self.tr("Cancelling after the current batch…"))
            self.cancel_button.setEnabled(False)

    def _on_progress(self, fraction: float, message: str) -> None:
        self.status_label.setStyleSheet("")
        self.progress_bar.setValue(int(max(0.0, min(1.0, fraction)) * 1000))
        self.status_label.setText(message)
        elapsed = time.monotonic() - self._t0
        if fraction > 0.01:
            left = elapsed / fraction * (1 - fraction)
            self.eta_label.setText(self.tr("Elapsed {elapsed} · about {left} left").format(
                elapsed=format_eta(elapsed), left=format_eta(left)))

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
        self.status_label.setText(self.tr("Finished in {time}. Compare the reports, then install the new models if "
                                          "they are better.").format(time=format_eta(result.seconds)))
        self.eta_label.clear()
        self._show_report(result)
        self._update_buttons()
        self.training_finished.emit(result)

    def _on_error(self, message: str) -> None:
        self.status_label.setText(message)
        self.status_label.setStyleSheet("color:#c62828; font-weight:bold;")
        self.eta_label.clear()
        self._update_buttons()

    @staticmethod
    def _values(m: dict[str, Any] | None) -> list[Any]:
        if not m:
            return []
        values = [m.get("balanced_accuracy"), m.get("melanoma_recall"), m.get("accuracy"), m.get("macro_auc")]
        return values + [(m.get("per_class", {}).get(cl.code) or {}).get("recall") for cl in CLASSES]

    def _show_report(self, result: RetrainResult) -> None:
        c = result.comparison
        compared = c is not None and c.candidate is not None
        reference = result.reference if result.reference is not None and result.reference.candidate else None
        # Side by side on the compared images; with none, the new models on all their validation images.
        columns: list[dict[str, Any] | None] = [c.candidate, c.active] if compared and c is not None \
            else [result.metrics, None]
        columns += [reference.candidate, reference.active] if reference is not None else [None, None]
        for col, m in enumerate(columns):
            values = self._values(m)
            for row in range(self.report_table.rowCount()):
                v = values[row] if row < len(values) else None
                text = f"{v:.3f}" if isinstance(v, int | float) and v == v else "—"
                self.report_table.setItem(row, col, QTableWidgetItem(text))
        self._set_report_headers(c if compared else None, reference)
        if compared and c is not None:
            self.report_box.setTitle(self.tr("Validation report: new and active models on the same {n} clinic "
                                             "images, which neither was trained on").format(n=c.n_images))
        else:
            self.report_box.setTitle(self.tr("Validation report: the new models on their validation images (no fair "
                                             "comparison with the active models was possible)"))
        verdict = result.verdict  # its summary ends with the original data's comparison and the small-data notes
        note = self._override_note()
        self.verdict_label.setText(tr_core(verdict.summary) + (f"\n{note}" if note else ""))
        self.verdict_label.setStyleSheet("color:#2e7d32;" if not verdict.needs_override
                                         else "color:#c62828; font-weight:bold;")

    def install(self) -> None:
        """Ask first; a candidate not shown better gets a box that says so and defaults to No."""
        if self.candidate is None or self.running:
            return
        verdict = self.candidate.verdict
        box = QMessageBox(self)
        box.setWindowTitle(self.tr("Install the new models"))
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        yes, no = box.button(QMessageBox.StandardButton.Yes), box.button(QMessageBox.StandardButton.No)
        if verdict.needs_override:
            box.setIcon(QMessageBox.Icon.Warning)
            box.setText((self.tr("The new models are WORSE than the active ones.") if verdict.worse else
                         self.tr("The new models are not shown to be at least as good as the active ones."))
                        + (f"\n\n{tr_core(verdict.figures)}." if verdict.figures else ""))
            box.setInformativeText(
                tr_core(verdict.detail) + "\n\n" + self.tr("If you install them anyway, they are marked as "
                                                           "unvalidated: a banner in the main window and every result "
                                                           "made with them say so until you roll back."))
            yes.setText(self.tr("Install anyway (override)"))
            no.setText(self.tr("Keep the active models"))
            box.setDefaultButton(QMessageBox.StandardButton.No)
            box.setEscapeButton(QMessageBox.StandardButton.No)
        else:
            box.setIcon(QMessageBox.Icon.Question)
            box.setText(self.tr("Install the new models?"))
            box.setInformativeText(tr_core(verdict.summary) + "\n\n" + self.tr("The current models are kept and can be "
                                                                      "restored with Roll back."))
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
        self._set_report_headers(None, None)
        self.report_box.setTitle(report_title())
        self.verdict_label.clear()
        marked = installed is not None and installed.verdict.needs_override
        self.status_label.setText(
            self.tr("Installed as {name}. The main window is reloading the models.").format(name=Path(path).name)
            + (" " + self.tr("They were installed by override and are marked as unvalidated until you roll back.")
               if marked else ""))
        self._discard_work_dir()
        self._update_buttons()
        self.models_changed.emit()

    def rollback(self) -> None:
        if self.running:
            return
        answer = QMessageBox.question(self, self.tr("Roll back"), self.tr("Restore the models that were in use "
                                                                          "before the last installation?"))
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            restored = self.store.rollback()
        except BundleError as e:
            self._on_error(str(e))
            return
        self._reset_progress()
        self.status_label.setText(self.tr("Rolled back to {name}.").format(
            name=restored.name if restored else self.tr("the bundled default models")))
        self._update_buttons()
        self.models_changed.emit()

    def _discard_work_dir(self) -> None:
        """Candidates, caches and exported records are large (and private); the installed copy lives in the
        model store."""
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
            answer = QMessageBox.question(self, self.tr("Training is running"),
                                          self.tr("Cancel the training and close?"))
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
            self.cancel()
        super().closeEvent(event)
