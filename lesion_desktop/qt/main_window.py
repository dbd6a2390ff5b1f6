"""The main window: image in (file, drop, paste, camera), result out, history beside.

All slow work (loading models, decoding, inference, heat-maps, saving) runs in one single-thread
worker queue, so jobs run in the order the user asked for them and the window never freezes.
"""

from __future__ import annotations

import datetime as _dt
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QByteArray, QMimeData, QSettings, Qt, Signal
from PySide6.QtGui import (
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeySequence,
    QPixmap,
    QShortcut,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QProgressBar,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from lesion_desktop.analysis import (
    CANNOT_RULE_OUT,
    OUT_OF_SCOPE,
    WARNING,
    Analysis,
    Assessment,
    EngineHolder,
    analyse,
    assess_record,
    load_models,
    mark_shown_anyway,
    model_warning_rates,
    reopen,
)
from lesion_desktop.classes import CLASS_CODES, CLASSES, MALIGNANT_INDICES
from lesion_desktop.edition import is_lite
from lesion_desktop.imageio import BLUR_THRESHOLD, IMAGE_SUFFIXES, quality_check
from lesion_desktop.paths import active_models_dir, config_dir, model_store_dir
from lesion_desktop.qt.about import device_text, disclaimer
from lesion_desktop.qt.actions import build_actions, build_menus
from lesion_desktop.qt.camera import CameraThread, SourceFactory, default_source
from lesion_desktop.qt.history_panel import HistoryPanel
from lesion_desktop.qt.imaging import qimage_to_rgb
from lesion_desktop.qt.patient_bar import RecordsController, open_history
from lesion_desktop.qt.report_pdf import write_report
from lesion_desktop.qt.result_panel import ResultPanel
from lesion_desktop.qt.settings_dialog import SettingsDialog
from lesion_desktop.qt.translations import tr_core
from lesion_desktop.qt.widgets import HeatmapBar, ImageView, MessageBar, ViewGrid, class_label
from lesion_desktop.qt.window_dialogs import WindowDialogs
from lesion_desktop.qt.workers import Worker, WorkerRunner
from lesion_desktop.records import Record, RecordStore
from lesion_desktop.settings import Settings, load_settings, save_settings
from lesion_desktop.store import ModelStore, unvalidated_note

if TYPE_CHECKING:  # both need PyTorch, which the lite edition does not ship
    from lesion_desktop.inference import Engine as EnsembleEngine
    from lesion_desktop.qt.help import AboutDialog, InstructionsDialog
    from lesion_desktop.qt.retrain_dialog import RetrainDialog

log = logging.getLogger(__name__)


def window_settings() -> QSettings:
    """QSettings only for window geometry, in the (redirectable) config folder, never the registry."""
    return QSettings(str(config_dir() / "window.ini"), QSettings.Format.IniFormat)


class MainWindow(QMainWindow):
    result_shown = Signal(object)  # Analysis
    engine_changed = Signal()  # after every (re)load, successful or not
    failed = Signal(str)  # every error shown to the user

    def __init__(self, settings: Settings | None = None, *, camera_source: SourceFactory | None = None,
                 store: RecordStore | None = None, camera_retry_s: float = 1.0,
                 models_dir_override: Path | None = None) -> None:
        super().__init__()
        self.setWindowTitle(self.tr("Lesion Desktop"))
        self.settings = settings if settings is not None else load_settings()
        self.store = store or open_history()  # refuses a newer history
        self.model_store = ModelStore(model_store_dir())
        self.camera_source = camera_source or default_source
        self.camera_retry_s = camera_retry_s
        self.models_dir_override = models_dir_override  # --models: this session only, never saved
        self.holder = EngineHolder()
        self.runner = WorkerRunner(1, self)
        self.current: Analysis | None = None
        self.assessment: Assessment | None = None  # the shown result's, from analysis.assess_record
        self.heatmap_index = 0  # the class whose heat-map is shown
        self._awaiting = False  # an image was queued and its result (or error) has not come yet
        self._camera_message = ""  # the camera's last line in the message bar, dismissed when it stops
        self.camera: CameraThread | None = None
        self.live_frame: np.ndarray | None = None
        self.dialogs = WindowDialogs(self)
        self._seq = 0
        self._jobs = 0  # queued or running worker jobs, counted on the GUI thread
        self._closed = False  # set by closeEvent: a job finishing later must touch no widget
        self.shutdown_timeout_ms = 10000  # how long closing waits for a running job (a model load cannot stop)
        self._build_ui()
        self.setAcceptDrops(True)
        geo = window_settings()
        geometry, state = geo.value("geometry"), geo.value("state")
        if not (isinstance(geometry, QByteArray) and self.restoreGeometry(geometry)):
            self.resize(1280, 800)
        if isinstance(state, QByteArray):
            self.restoreState(state)
        self.reload_engine()

    # ---- construction -------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.history = HistoryPanel(self.store, self)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.history)
        self.history.open_requested.connect(self.open_record)
        self.history.export_requested.connect(lambda rid: self.open_record(rid, export=True))
        self.actions_ = build_actions(self, self.history.toggleViewAction())
        build_menus(self, self.actions_)
        a = self.actions_
        a.open.triggered.connect(self.open_dialog)
        a.paste.triggered.connect(self.paste)
        a.camera.toggled.connect(self.set_camera_on)
        a.capture.triggered.connect(self.capture)
        a.export_pdf.triggered.connect(lambda: self.export_pdf())
        a.quit.triggered.connect(self.close)
        a.heatmap.setChecked(self.settings.show_heatmap)
        a.heatmap.toggled.connect(self.set_heatmap_visible)
        a.settings.triggered.connect(self.open_settings)
        a.retrain.triggered.connect(self.open_retrain)
        a.about.triggered.connect(self.show_about)
        # Space captures only while the camera is on; otherwise it belongs to the focused widget (the history).
        space = QKeySequence(Qt.Key.Key_Space)
        a.capture.setShortcuts([k for k in a.capture.shortcuts() if k != space])
        self.space_capture = QShortcut(space, self)
        self.space_capture.setContext(Qt.ShortcutContext.WindowShortcut)
        self.space_capture.setEnabled(False)
        self.space_capture.activated.connect(self.capture)
        a.instructions.triggered.connect(self.show_instructions)
        if is_lite():  # retraining needs PyTorch: the full edition's (heat-maps come from the graphs)
            a.retrain.setVisible(False)

        self.disclaimer = QLabel(disclaimer())
        self.disclaimer.setObjectName("disclaimer")
        self.disclaimer.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.disclaimer.setWordWrap(True)
        self.disclaimer.setStyleSheet("QLabel#disclaimer {background:#fff4e5; color:#663c00; font-weight:bold;"
                                      "padding:6px; border:1px solid #ffd59e; border-radius:4px;}")
        self.message_bar = MessageBar()
        # Persistent while models installed by override are in use (issue 14, point 4): no close button.
        self.unvalidated_banner = QLabel()
        self.unvalidated_banner.setObjectName("unvalidatedBanner")
        self.unvalidated_banner.setWordWrap(True)
        self.unvalidated_banner.setStyleSheet("QLabel#unvalidatedBanner {background:#c62828; color:white; "
                                              "font-weight:bold; padding:8px; border-radius:4px;}")
        self.unvalidated_banner.hide()
        self.live_view = ImageView(self.tr("Camera preview"))
        self.live_view.setAccessibleName(self.tr("Live camera preview"))
        self.live_view.hide()
        self._image_placeholder = self.tr("Open an image (Ctrl+O), drop one here, paste one (Ctrl+V) or start the "
                                          "camera (Ctrl+L).")
        self.image_view = ImageView(self._image_placeholder)
        self.image_view.setAccessibleName(self.tr("Image"))
        self.input_view = ImageView(self.tr("The network input (what the models see) and its heat-map appear here."))
        self.input_view.setAccessibleName(self.tr("Network input and heat-map"))
        # Side by side or stacked, whichever shows them larger; under a running camera's (larger) preview.
        self.view_grid = ViewGrid([self.image_view, self.input_view])
        self.heatmap_bar = HeatmapBar()
        self.heatmap_bar.class_chosen.connect(self.set_heatmap_class)
        self.heatmap_bar.hide()
        views = QWidget()
        vl = QVBoxLayout(views)
        vl.setContentsMargins(0, 0, 0, 0)
        vl.addWidget(self.live_view, 3)
        vl.addWidget(self.view_grid, 2)
        vl.addWidget(self.heatmap_bar)
        self.result_panel = ResultPanel()
        self.result_panel.show_anyway_requested.connect(self.show_anyway)
        scroll = QScrollArea()
        scroll.setWidget(self.result_panel)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # wrap text, never clip it
        scroll.setMinimumWidth(self.result_panel.minimumWidth() + 24)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(views)
        splitter.addWidget(scroll)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setChildrenCollapsible(False)
        splitter.setSizes([640, 360])
        central = QWidget()
        cl = QVBoxLayout(central)
        cl.addWidget(self.disclaimer)
        cl.addWidget(self.unvalidated_banner)
        cl.addWidget(self.message_bar)
        self.records_ui = RecordsController(self)  # filing bar, File menu's records items, history dialogs
        cl.addWidget(self.records_ui.bar)
        cl.addWidget(splitter, 1)
        self.setCentralWidget(central)
        self.device_label = QLabel()
        self.model_label = QLabel()
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(120)
        self.busy.hide()
        sb = self.statusBar()
        sb.addPermanentWidget(self.busy)
        sb.addPermanentWidget(self.device_label)
        sb.addPermanentWidget(self.model_label)
        self.apply_display_settings()

    def apply_display_settings(self) -> None:
        self.input_view.setVisible(self.settings.show_preprocessed)
        if self.current is not None:
            self.show_analysis(self.current)  # the threshold or heat-map opacity may have changed

    def save_settings(self, new: Settings) -> bool:
        """Save and adopt `new`; a failure to write is shown, and the old settings stay in force."""
        try:
            save_settings(new)
        except OSError as e:
            log.exception("Saving settings failed")
            self.show_error(self.tr("Could not save the settings: {error}").format(error=e))
            return False
        self.settings = new
        return True

    # Dialogs live in window_dialogs.py; these are the window's entry points to them.
    def open_settings(self) -> SettingsDialog:
        return self.dialogs.open_settings()

    def open_retrain(self) -> RetrainDialog:
        return self.dialogs.open_retrain()

    def show_about(self) -> AboutDialog:
        return self.dialogs.show_about()

    def show_instructions(self) -> InstructionsDialog:
        return self.dialogs.show_instructions()

    # ---- models -------------------------------------------------------------------------------------
    @property
    def engine(self) -> EnsembleEngine | None:
        return self.holder.get()

    def chosen_models_dir(self) -> Path | None:
        """The folder the user named (this session's --models, then Settings), or None: the model store decides."""
        from lesion_desktop.inference.open import chosen_folder

        return chosen_folder(self.settings, self.models_dir_override)

    def models_dir(self) -> Path:
        chosen = self.chosen_models_dir()
        if chosen is not None:
            return chosen
        e = self.engine
        return e.ensemble.path if e is not None else active_models_dir()

    def reload_engine(self) -> None:
        s = self.settings
        self.model_label.setText(self.tr("Loading models…"))
        self.device_label.setText("")
        worker = Worker(load_models, self.holder, self.chosen_models_dir(), s.device, s.tta, name="load models")
        self._show_idle_status(self.tr("Loading the models…"))
        self.image_view.set_placeholder(self.tr("Loading the models… You can already open an image: it is analysed "
                                                "as soon as they are ready."))
        worker.signals.progress.connect(self._on_load_progress)
        self._start(worker, self._on_engine_loaded, self._on_engine_failed)

    def _show_idle_status(self, text: str) -> None:
        """What the program is doing, where the result goes, while there is no result to show or await."""
        if self.current is None and not self._awaiting and not self._closed:
            self.result_panel.show_status(text)

    def _on_load_progress(self, _fraction: float, message: str) -> None:
        self._show_idle_status(tr_core(message))  # the core's words, in the clinic's language

    def _on_engine_loaded(self, engine: EnsembleEngine) -> None:
        self._update_status_labels()
        self.image_view.set_placeholder(self._image_placeholder)
        self._show_idle_status("")  # the panel's own "No image analysed yet."
        if self.message_bar.text().startswith("Could not load the models"):
            self.message_bar.dismiss()  # an earlier load's error no longer holds
        notes = [*self.holder.notes, *([engine.device_note] if engine.device_note else [])]
        if notes:
            self.message_bar.show_message(" ".join(notes), "warning")
        self.statusBar().showMessage(self.tr("Models {version} ready on {device}.").format(
            version=engine.version, device=device_text(engine)), 5000)
        self.engine_changed.emit()

    def _on_engine_failed(self, message: str) -> None:
        self._update_status_labels()
        self.image_view.set_placeholder(self._image_placeholder)
        self._show_idle_status(self.tr("No models are loaded, so no image can be analysed (see the message above)."))
        self.show_error(message)
        self.engine_changed.emit()

    def _update_status_labels(self) -> None:
        e = self.engine
        self.device_label.setText(self.tr("Device: {device}").format(device=device_text(e)))
        self.model_label.setText(self.tr("Models: {version}").format(version=e.version) if e is not None
                                 else self.tr("Models: none loaded"))
        note = unvalidated_note(e.ensemble.path if e is not None else None)
        self.unvalidated_banner.setText(tr_core(note))
        self.unvalidated_banner.setVisible(bool(note))

    # ---- work queue ---------------------------------------------------------------------------------
    def _start(self, worker: Worker, finished: Callable[[Any], None], errored: Callable[[str], None],
               partial: Callable[[Any], None] | None = None) -> None:
        """Queue a job. Its signals reach the window only while it is open: a job that was still running
        when the window closed (a model load cannot be cancelled) may end after the widgets are deleted."""

        def while_open(slot: Callable[[Any], None], done: bool) -> Callable[[Any], None]:
            def call(value: Any) -> None:
                if self._closed:
                    return
                slot(value)
                if done:
                    self._job_done()

            return call

        self._jobs += 1
        self.busy.show()
        worker.signals.finished.connect(while_open(finished, True))
        worker.signals.errored.connect(while_open(errored, True))
        if partial is not None:
            worker.signals.partial.connect(while_open(partial, False))
        self.runner.start(worker)

    def _job_done(self) -> None:
        self._jobs -= 1
        if self._jobs <= 0:
            self._jobs = 0
            self.busy.hide()

    @property
    def idle(self) -> bool:
        """No queued or running job (tests wait for this)."""
        return self._jobs == 0

    def show_error(self, message: str) -> None:
        self.message_bar.show_message(message, "error")
        self.statusBar().showMessage(message.splitlines()[0] if message else self.tr("Error"), 10000)
        self.failed.emit(message)

    # ---- input --------------------------------------------------------------------------------------
    def classify(self, source: Path | bytes | np.ndarray, name: str) -> None:
        """Queue one image (file, encoded bytes or RGB array) for analysis."""
        self._seq += 1
        self._awaiting = True
        # The previous result goes: nothing of it may pass for the new image's.
        self.current = self.assessment = None
        busy = self.tr("Analysing {name}…").format(name=name)
        self.result_panel.show_busy(busy)
        self.image_view.set_dimmed(True)  # until the new image arrives
        self.input_view.set_image(None)
        self.input_view.set_placeholder(busy)
        self.heatmap_bar.hide()
        self.message_bar.dismiss()
        self.statusBar().showMessage(busy)
        worker = Worker(analyse, self.holder, source, source_name=name, store=self.store,
                        threshold=self.settings.warning_threshold, seq=self._seq, name="analyse")
        self._start(worker, self._on_analysis, self._on_analysis_failed, self._on_analysis_partial)

    def open_path(self, path: Path) -> None:
        self.classify(Path(path), Path(path).name)

    def open_dialog(self) -> None:
        patterns = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
        path, _ = QFileDialog.getOpenFileName(self, self.tr("Open image"), str(Path.home()),
                                              self.tr("Images ({patterns});;All files (*)").format(patterns=patterns))
        if path:
            self.open_path(Path(path))

    def open_mime(self, mime: QMimeData) -> bool:
        """Open what a drop or the clipboard holds: a local file, an image, or a file path as text."""
        urls = [u for u in mime.urls()] if mime.hasUrls() else []
        local = [Path(u.toLocalFile()) for u in urls if u.isLocalFile()]
        if local:
            self.open_path(local[0])
            return True
        if mime.hasImage():
            data = mime.imageData()
            image = data.toImage() if isinstance(data, QPixmap) else QImage(data)
            if not image.isNull():
                self.classify(qimage_to_rgb(image), self.tr("Pasted image {time}").format(
                    time=f"{_dt.datetime.now():%H:%M:%S}"))
                return True
        if urls:
            self.show_error(self.tr("Only files on this computer can be opened; this program never downloads "
                                    "anything."))
            return False
        text = mime.text().strip() if mime.hasText() else ""
        if text and "\n" not in text and Path(text).is_file():
            self.open_path(Path(text))
            return True
        return False

    def paste(self) -> None:
        mime = QGuiApplication.clipboard().mimeData()
        if mime is None or not self.open_mime(mime):
            self.message_bar.show_message(self.tr("The clipboard holds no image or image file."), "warning")

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt API
        if self.open_mime(event.mimeData()):
            event.acceptProposedAction()

    # ---- results ------------------------------------------------------------------------------------
    def _on_analysis_partial(self, value: Any) -> None:
        if isinstance(value, dict) and value.get("seq") == self._seq and isinstance(value.get("image"), np.ndarray):
            self.image_view.set_image(value["image"], self._image_caption(value.get("name", ""), value["image"]))
            self.input_view.set_image(None)

    @staticmethod
    def _image_caption(name: str, image: np.ndarray) -> str:
        return f"{name}\n{image.shape[1]}×{image.shape[0]} px"

    def _on_analysis(self, analysis: Analysis) -> None:
        self.records_ui.examination_added(analysis)  # filed under the chosen patient's lesion
        self.history.refresh(select_id=analysis.record.id)
        if analysis.seq == self._seq:  # a later request supersedes this one
            self.show_analysis(analysis)

    def _on_analysis_failed(self, message: str) -> None:
        """The error replaces the result: no earlier result stays on screen as if it were this image's."""
        self._awaiting = False
        self.current = self.assessment = None
        self.show_error(message)
        self.result_panel.clear(self.tr("No result: the image could not be analysed (see the message above)."))
        self.image_view.set_image(None)
        self.input_view.set_image(None)
        self.input_view.set_placeholder(self.tr("No result."))
        self.heatmap_bar.hide()

    def rates_for(self, record: Record) -> list[dict[str, Any]] | None:
        """The active models' measured warning rates, when they are the models that made `record`."""
        engine = self.engine
        if engine is None or record.model_version != engine.version:
            return None
        return model_warning_rates(engine)

    def show_analysis(self, analysis: Analysis) -> None:
        again = analysis is self.current  # shown again (a setting changed): keep the zoom and the heat-map class
        if analysis.seq == self._seq:
            self._awaiting = False
        self.current = analysis
        rec = analysis.record
        self.image_view.set_image(analysis.image, self._image_caption(rec.source_name, analysis.image), keep_view=again)
        # The wording comes only from analysis.assess_record, as in the PDF and the command line.
        before = self.assessment.level if again and self.assessment is not None else None
        self.assessment = assess_record(rec, self.settings.warning_threshold, self.rates_for(rec))
        if not again:
            self.input_view.reset_view()
        if before != self.assessment.level:  # a new result, or it now warns (shown anyway, a lower threshold)
            self.heatmap_index = self._default_heatmap_class(analysis, self.assessment)
        self.result_panel.show_record(rec, self.assessment)
        self._show_input_view()
        if self.assessment.level == OUT_OF_SCOPE:
            status = self.tr("{name}: not analysed (out of scope)").format(name=rec.source_name)
        else:
            status = (f"{rec.source_name}: {class_label(CLASSES[rec.top_index])} {rec.probabilities.max():.0%}"
                      + ("" if self.assessment.reassures else f" · {tr_core(self.assessment.headline)}"))
        self.statusBar().showMessage(status, 10000)
        self.result_shown.emit(analysis)

    @staticmethod
    def _default_heatmap_class(analysis: Analysis, assessment: Assessment) -> int:
        """The warned malignant class when the result warns (or cannot rule malignancy out), else the stored one."""
        rec = analysis.record
        code = str(rec.details.get("heatmap_class") or rec.top_code)
        stored = CLASS_CODES.index(code) if code in CLASS_CODES else rec.top_index
        warns = assessment.level in (WARNING, CANNOT_RULE_OUT)
        if warns and not CLASSES[stored].malignant and analysis.cams is not None:
            return max(MALIGNANT_INDICES, key=lambda i: float(rec.probabilities[i]))
        return stored

    def show_anyway(self) -> None:
        """The user asks to see the diagnosis of an image the scope check refused: mark the record, then show it."""
        a = self.current
        if a is None or self.assessment is None or self.assessment.level != OUT_OF_SCOPE:
            return
        try:
            mark_shown_anyway(self.store, a)
        except (sqlite3.Error, OSError) as e:
            log.exception("Marking the record as shown anyway failed")
            self.show_error(self.tr("The history entry could not be marked as shown anyway: {e}").format(e=e))
        self.show_analysis(a)
        self.history.refresh(select_id=a.record.id)

    def shown_heatmap(self) -> tuple[np.ndarray | None, bool]:
        """The heat-map for the chosen class and whether the class can be chosen (every class's map is at hand)."""
        a = self.current
        if a is None:
            return None, False
        if a.cams is not None and len(a.cams) == len(CLASSES):
            return a.cams[self.heatmap_index], True
        # Only the stored map (reopened from the history, or models that give one class's map): its class.
        code = str(a.record.details.get("heatmap_class") or a.record.top_code)
        self.heatmap_index = CLASS_CODES.index(code) if code in CLASS_CODES else a.record.top_index
        return a.heatmap, False

    def _show_input_view(self) -> None:
        a = self.current
        if a is None or a.preprocessed is None:
            self.input_view.set_image(None)
            self.heatmap_bar.hide()
            return
        h, w = a.preprocessed.shape[:2]
        heat, choosable = self.shown_heatmap()
        out_of_scope = self.assessment is not None and self.assessment.level == OUT_OF_SCOPE
        if self.actions_.heatmap.isChecked() and heat is not None and not out_of_scope:
            from lesion_desktop.heatmap import overlay

            name = class_label(CLASSES[self.heatmap_index])
            self.input_view.set_image(overlay(a.preprocessed, heat, self.settings.heatmap_opacity),
                                      self.tr("Heat-map for {cls}\nnetwork input, {w}×{h} px").format(
                                          cls=name, w=w, h=h), keep_view=True)
            note = "" if choosable else self.tr("Only the heat-map for {cls} is kept for this result.").format(cls=name)
            self.heatmap_bar.set_state(self.heatmap_index, choosable, note)
            self.heatmap_bar.show()
        else:
            self.input_view.set_image(a.preprocessed, self.tr("Network input: what the models see\n{w}×{h} px").format(
                w=w, h=h), keep_view=True)
            self.heatmap_bar.hide()

    def set_heatmap_class(self, index: int) -> None:
        self.heatmap_index = int(index)
        self._show_input_view()

    def set_heatmap_visible(self, on: bool) -> None:
        if on != self.settings.show_heatmap:
            self.save_settings(replace(self.settings, show_heatmap=on))
        self._show_input_view()

    def open_record(self, record_id: int, export: bool = False) -> None:
        self._seq += 1
        worker = Worker(reopen, self.store, record_id, self._seq, name="reopen")
        self._start(worker, lambda a: self._on_reopened(a, export), self.show_error)

    def _on_reopened(self, analysis: Analysis, export: bool) -> None:
        if analysis.seq == self._seq:
            self.show_analysis(analysis)
            if export:
                self.export_pdf()

    def export_pdf(self, path: Path | None = None) -> Path | None:
        a = self.current
        if a is None:
            self.message_bar.show_message(self.tr("There is no result to export yet."), "warning")
            return None
        if path is None:
            default = Path.home() / f"lesion-report-{Path(a.record.source_name).stem}.pdf"
            chosen, _ = QFileDialog.getSaveFileName(self, self.tr("Export PDF report"), str(default), "PDF (*.pdf)")
            if not chosen:
                return None
            path = Path(chosen)
        try:
            heat, _ = self.shown_heatmap()
            write_report(path, a.record, a.image, a.preprocessed, heat, self.settings.warning_threshold,
                         self.settings.heatmap_opacity, rates=self.rates_for(a.record),
                         heatmap_code=CLASS_CODES[self.heatmap_index],
                         store=self.store, rise_points=self.settings.follow_up_alert_points)
        except OSError as e:
            log.exception("PDF export failed")
            self.show_error(self.tr("Could not write the report {path}: {error}").format(path=path, error=e))
            return None
        self.statusBar().showMessage(self.tr("Report saved: {path}").format(path=path), 10000)
        return path

    # ---- camera -------------------------------------------------------------------------------------
    def set_camera_on(self, on: bool) -> None:
        if on and self.camera is None:
            self.camera = CameraThread(self.camera_source(self.settings), retry_s=self.camera_retry_s, parent=self)
            self.camera.frame_ready.connect(self._on_frame)
            self.camera.status_changed.connect(self._on_camera_status)
            self.live_view.set_image(None, self.tr("Starting the camera…"))
            self.live_view.show()
            self.space_capture.setEnabled(True)
            self.camera.start()
        elif not on and self.camera is not None:
            self.stop_camera()
        if self.actions_.camera.isChecked() != on:
            self.actions_.camera.setChecked(on)

    def stop_camera(self) -> None:
        if self.camera is not None:
            self.camera.stop()
            self.camera.deleteLater()
            self.camera = None
        self.live_frame = None
        self.live_view.hide()
        self.space_capture.setEnabled(False)
        if self._camera_message and self.message_bar.text() == self._camera_message:
            self.message_bar.dismiss()  # camera news is stale once the camera is off
        self._camera_message = ""
        self.actions_.camera.setChecked(False)

    def _on_frame(self, frame: np.ndarray) -> None:
        if self.camera is None:
            return
        self.live_frame = frame
        # A focus aid for the dermatoscope: the same sharpness measure the quality check uses.
        sharp = quality_check(frame).sharpness
        focus = self.tr("in focus") if sharp >= BLUR_THRESHOLD else self.tr("blurred: adjust the focus")
        self.live_view.set_image(frame, self.tr("Live: {source} ({w}×{h}) · Space captures\nSharpness {s}: {focus}")
                                 .format(source=self.camera.source.description, w=frame.shape[1], h=frame.shape[0],
                                         s=f"{sharp:.0f}", focus=focus), keep_view=True)
        self.camera.frame_consumed()

    def _camera_says(self, message: str, level: str) -> None:
        self._camera_message = message
        self.message_bar.show_message(message, level)

    def _on_camera_status(self, state: str, message: str) -> None:
        if state == "live":
            if self.message_bar.level in ("error", "warning") or self.message_bar.text() == self._camera_message:
                self._camera_says(message, "info")
            self.statusBar().showMessage(message, 5000)
        else:
            self.live_frame = None
            self.live_view.set_image(None, message)
            self._camera_says(message, "warning")

    def capture(self) -> None:
        if self.camera is None:
            self.set_camera_on(True)
            self._camera_says(self.tr("Starting the camera: press Capture (Space) again when the lesion is in view "
                                      "and in focus."), "info")
            return
        if self.live_frame is None:
            self._camera_says(self.tr("No camera image yet; wait for the preview."), "warning")
            return
        self.classify(self.live_frame.copy(), self.tr("Camera capture {time}").format(
            time=f"{_dt.datetime.now():%Y-%m-%d %H:%M:%S}"))

    # ---- shutdown -----------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        self._closed = True  # first: results that arrive from now on (even during the waits below) are ignored
        self.stop_camera()
        self.dialogs.shutdown()
        self.runner.shutdown(self.shutdown_timeout_ms)
        geo = window_settings()
        geo.setValue("geometry", self.saveGeometry())
        geo.setValue("state", self.saveState())
        geo.sync()
        super().closeEvent(event)
