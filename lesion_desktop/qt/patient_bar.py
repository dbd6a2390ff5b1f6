"""The window's records: the filing bar (which patient and lesion new examinations go to, and what the shown one
is filed under), the File menu's export, backup and retention, and the dialogs behind the history's buttons.

Kept out of main_window.py: the window creates one RecordsController and tells it about each new examination.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QCoreApplication, QObject, Qt, QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QProgressDialog,
    QPushButton,
    QWidget,
)

from lesion_desktop.errors import CancelledError, LesionError
from lesion_desktop.export import export_records
from lesion_desktop.progress import Progress
from lesion_desktop.qt.patient_bodymap import site_name
from lesion_desktop.qt.patient_dialog import PatientDialog
from lesion_desktop.qt.patient_exam_dialog import ExaminationDialog
from lesion_desktop.qt.report_pdf import report_writer, write_record_report
from lesion_desktop.qt.timeline_dialog import TimelineDialog
from lesion_desktop.qt.workers import Worker
from lesion_desktop.records import HistoryError, Record, RecordStore

if TYPE_CHECKING:
    from lesion_desktop.analysis import Analysis
    from lesion_desktop.qt.main_window import MainWindow

log = logging.getLogger(__name__)
translate = QCoreApplication.translate  # a literal context and text in each call: pyside6-lupdate finds them
_FILED_FIELDS = ("lesion_id", "patient_id", "patient_clinic_id", "patient_name", "body_site", "lesion_label",
                 "clinician", "assessment", "notes", "histopathology", "histopathology_note", "histopathology_date")


def open_history(root: Path | None = None) -> RecordStore:
    """The history, or a clear refusal (a newer program's history, an unknown format) and the program stops."""
    try:
        return RecordStore(root)
    except HistoryError as e:
        log.error("History refused: %s", e)
        QMessageBox.critical(None, translate("Records", "Lesion Desktop cannot open the history"), str(e))
        raise SystemExit(2) from e


def backup_job(progress: Progress, store: RecordStore, destination: Path) -> Path:
    return store.backup(destination, progress.report)


class FilingBar(QFrame):
    """One line: where new examinations go, and what the shown examination is filed under."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("filingBar")
        self.setStyleSheet("QFrame#filingBar {background:#eef3f8; border:1px solid #c9d6e3; border-radius:4px;}")
        self.target_label = QLabel()
        self.target_label.setWordWrap(True)
        self.choose_button = QPushButton(translate("Records", "Choose patient…"))
        self.choose_button.setToolTip(translate("Records", "File the next examinations under a patient and lesion"))
        self.stop_button = QPushButton(translate("Records", "Quick examinations"))
        self.stop_button.setToolTip(translate("Records", "Stop filing: the next examinations are not filed under a "
                                              "patient"))
        self.current_label = QLabel()
        self.current_label.setWordWrap(True)
        self.file_button = QPushButton(translate("Records", "File this examination…"))
        self.assess_button = QPushButton(translate("Records", "Assess…"))
        self.assess_button.setToolTip(translate("Records", "Your assessment and notes; the histopathology when it "
                                                "comes"))
        self.timeline_button = QPushButton(translate("Records", "Timeline"))
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 3, 6, 3)
        lay.addWidget(self.target_label, 2)
        lay.addWidget(self.choose_button)
        lay.addWidget(self.stop_button)
        line = QFrame()
        line.setFrameShape(QFrame.Shape.VLine)
        lay.addWidget(line)
        lay.addWidget(self.current_label, 2)
        lay.addWidget(self.file_button)
        lay.addWidget(self.assess_button)
        lay.addWidget(self.timeline_button)


class RecordsController(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.w = window
        self.store = window.store
        self.target_lesion: int | None = None
        self.bar = FilingBar()
        self.bar.choose_button.clicked.connect(self.choose_target)
        self.bar.stop_button.clicked.connect(lambda: self.set_target(None))
        self.bar.file_button.clicked.connect(lambda: self._on_current(self.file_examination))
        self.bar.assess_button.clicked.connect(lambda: self._on_current(self.edit_examination))
        self.bar.timeline_button.clicked.connect(self._timeline_of_current)
        h = window.history
        h.file_requested.connect(self.file_examination)
        h.edit_requested.connect(self.edit_examination)
        h.timeline_requested.connect(self.open_timeline)
        h.patient_deleted.connect(lambda _pid: self._patient_deleted())
        window.result_shown.connect(lambda _a: self.update_bar())
        self._add_file_menu_actions()
        self.timeline: TimelineDialog | None = None
        self.update_bar()
        QTimer.singleShot(0, self, self.offer_retention)  # once the window is up; never after it is gone

    # ---- the File menu --------------------------------------------------------------------------------
    def _add_file_menu_actions(self) -> None:
        w = self.w
        self.export_action = QAction(translate("Records", "Export &records…"), w)
        self.export_action.setToolTip(translate("Records", "records.csv, the original images, one PDF per "
                                                "examination and the histopathology-confirmed training set, into "
                                                "a folder"))
        self.export_action.triggered.connect(lambda: self.export_all())
        self.backup_action = QAction(translate("Records", "&Back up the history…"), w)
        self.backup_action.triggered.connect(lambda: self.backup())
        self.retention_action = QAction(translate("Records", "Apply the &retention period…"), w)
        self.retention_action.triggered.connect(lambda: self.apply_retention())
        file_menu = w.menuBar().findChild(QMenu, "fileMenu")  # by name: its title may be translated
        quit_action = w.actions_.quit
        if file_menu is not None:
            file_menu.insertActions(quit_action, [self.export_action, self.backup_action, self.retention_action])
            file_menu.insertSeparator(quit_action)

    # ---- filing ---------------------------------------------------------------------------------------
    def set_target(self, lesion_id: int | None) -> None:
        self.target_lesion = lesion_id
        self.update_bar()

    def target_text(self) -> str:
        if self.target_lesion is None:
            return translate("Records", "New examinations: quick (not filed under a patient; you can file them "
                             "later).")
        lesion = self.store.get_lesion(self.target_lesion)
        patient = self.store.get_patient(lesion.patient_id) if lesion else None
        if lesion is None or patient is None:
            self.target_lesion = None
            return self.target_text()
        return translate("Records", "New examinations are filed under <b>{patient}</b>, {lesion}.").format(
            patient=patient.title(), lesion=lesion.title(site_name))

    def update_bar(self) -> None:
        b = self.bar
        b.target_label.setText(self.target_text())
        b.stop_button.setVisible(self.target_lesion is not None)
        b.choose_button.setText(translate("Records", "Change…") if self.target_lesion is not None
                                else translate("Records", "Choose patient…"))
        rec = self._current_record()
        saved = rec is not None and rec.id is not None
        if rec is None:
            b.current_label.setText("")
        elif not saved:
            b.current_label.setText(translate("Records", "This result could not be saved, so it cannot be filed."))
        elif rec.lesion_id is None:
            b.current_label.setText(translate("Records", "This examination is not filed under a patient."))
        else:
            b.current_label.setText(translate("Records", "This examination: {filed}.").format(
                filed=rec.filed_under(site_name)))
        same = rec.details.get("same_image_as") if rec is not None else None
        if isinstance(same, list) and same:  # the same file opened again: say so, it is not a new image
            b.current_label.setText(b.current_label.text() + " " + translate(
                "Records", "The same image file was examined before ({ids}).").format(
                ids=", ".join(f"#{i}" for i in same)))
        b.file_button.setVisible(saved)
        b.file_button.setText(translate("Records", "File this examination…") if rec is None or rec.lesion_id is None
                              else translate("Records", "Move…"))
        b.assess_button.setVisible(saved)
        b.timeline_button.setVisible(saved and rec is not None and rec.lesion_id is not None)

    def _current_record(self) -> Record | None:
        a = self.w.current
        return a.record if a is not None else None

    def _on_current(self, action: Any) -> None:
        rec = self._current_record()
        if rec is not None and rec.id is not None:
            action(rec.id)

    def _timeline_of_current(self) -> None:
        rec = self._current_record()
        if rec is not None and rec.lesion_id is not None:
            self.open_timeline(rec.lesion_id)

    def choose_target(self) -> int | None:
        """Before the capture: which patient and lesion the next examinations belong to."""
        lesion = self.store.get_lesion(self.target_lesion) if self.target_lesion is not None else None
        dlg = PatientDialog(self.store, self.w, translate("Records", "Choose the patient and lesion for the next "
                                                          "examinations"),
                            patient_id=lesion.patient_id if lesion else None, lesion_id=self.target_lesion)
        dlg.ok_button.setText(translate("Records", "File the next examinations here"))
        if dlg.exec() != QDialog.DialogCode.Accepted:
            return None
        self.set_target(dlg.lesion_id)
        self.w.history.refresh()
        return dlg.lesion_id

    def examination_added(self, analysis: Analysis) -> None:
        """A new examination was stored: file it under the chosen lesion, with the clinician's name."""
        rec = analysis.record
        if rec.id is None:
            return
        clinician = self.w.settings.clinician.strip()
        try:
            if clinician:
                self.store.set_assessment(rec.id, clinician=clinician, assessment="", notes="")
            if self.target_lesion is not None:
                self.store.assign(rec.id, self.target_lesion)
        except (HistoryError, OSError) as e:
            self.w.show_error(translate("Records", "The examination was saved but could not be filed: {error}").format(
                error=e))
        self._refresh_record(rec)

    def _refresh_record(self, rec: Record) -> None:
        """Copy what filing and assessing changed into a record the window holds (it keeps its blobs)."""
        if rec.id is None:
            return
        fresh = self.store.get(rec.id, full=False)
        if fresh is not None:
            for name in _FILED_FIELDS:
                setattr(rec, name, getattr(fresh, name))

    def _changed(self, record_id: int) -> None:
        cur = self._current_record()
        if cur is not None and cur.id == record_id:
            self._refresh_record(cur)
        self.w.history.refresh(select_id=record_id)
        self.update_bar()

    def file_examination(self, record_id: int) -> bool:
        """After the capture: file (or move) an examination under a patient's lesion."""
        rec = self.store.get(record_id, full=False)
        if rec is None:
            return False
        dlg = PatientDialog(self.store, self.w, translate("Records", "File the examination of {date}").format(
                            date=rec.created_local()),
                            patient_id=rec.patient_id, lesion_id=rec.lesion_id)
        if dlg.exec() != QDialog.DialogCode.Accepted or dlg.lesion_id is None:
            return False
        self.store.assign(record_id, dlg.lesion_id)
        self._changed(record_id)
        return True

    def edit_examination(self, record_id: int) -> bool:
        rec = self.store.get(record_id, full=False)
        if rec is None:
            return False
        dlg = ExaminationDialog(self.store, rec, self.w.settings.clinician, self.w)
        if dlg.exec() != QDialog.DialogCode.Accepted:
            return False
        self._changed(record_id)
        return True

    def _patient_deleted(self) -> None:
        cur = self._current_record()
        if cur is not None and cur.id is not None and self.store.get(cur.id, full=False) is None:
            cur.id = None  # its result stays on screen, but it is no longer in the records
        self.update_bar()

    # ---- timeline and reports -------------------------------------------------------------------------
    def open_timeline(self, lesion_id: int) -> TimelineDialog | None:
        try:
            dlg = TimelineDialog(self.store, lesion_id, self.w.settings.follow_up_alert_points, self.w)
        except LesionError as e:
            self.w.show_error(str(e))
            return None
        dlg.open_requested.connect(self.w.open_record)
        dlg.report_requested.connect(self.comparison_report)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.timeline = dlg
        dlg.show()
        return dlg

    def _report_kwargs(self, record: Record) -> dict[str, Any]:
        s = self.w.settings
        return {"threshold": s.warning_threshold, "opacity": s.heatmap_opacity, "rates": self.w.rates_for(record)
                if hasattr(self.w, "rates_for") else None, "rise_points": s.follow_up_alert_points}

    def comparison_report(self, later_id: int, earlier_id: int, path: Path | None = None) -> Path | None:
        later = self.store.get(later_id)
        earlier = self.store.get(earlier_id)
        if later is None or earlier is None:
            self.w.show_error(translate("Records", "One of the two examinations no longer exists."))
            return None
        if path is None:
            default = Path.home() / f"lesion-report-{later.patient_clinic_id or 'exam'}-{later.created[:10]}.pdf"
            chosen, _ = QFileDialog.getSaveFileName(self.w, translate("Records", "Report with comparison"),
                                                    str(default), "PDF (*.pdf)")
            if not chosen:
                return None
            path = Path(chosen)
        try:
            write_record_report(path, self.store, later, compare_with=earlier, **self._report_kwargs(later))
        except (OSError, LesionError) as e:
            self.w.show_error(translate("Records", "Could not write the report {path}: {error}").format(path=path,
                                                                                                       error=e))
            return None
        self.w.statusBar().showMessage(translate("Records", "Report saved: {path}").format(path=path), 10000)
        return path

    # ---- export, backup, retention --------------------------------------------------------------------
    def export_all(self, folder: Path | None = None, patient: str | None = None) -> Path | None:
        """File > Export records: the command line's export, plus one PDF per examination (Qt draws them)."""
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(self.w, translate("Records", "Export the records into an empty "
                                                                        "folder"), str(Path.home()))
            if not chosen:
                return None
            folder = Path(chosen)
        dialog = QProgressDialog(translate("Records", "Exporting the records…"), translate("Records", "Cancel"), 0,
                                 1000, self.w)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(300)

        class _Progress:
            def report(self, fraction: float, message: str) -> None:
                dialog.setValue(int(fraction * 1000))
                dialog.setLabelText(message)
                QApplication.processEvents()

            def cancelled(self) -> bool:
                return dialog.wasCanceled()

            def partial(self, value: Any) -> None:
                pass

        s = self.w.settings
        writer = report_writer(self.store, s.warning_threshold, s.heatmap_opacity, s.follow_up_alert_points,
                               getattr(self.w, "rates_for", None))
        try:
            summary = export_records(self.store, folder, patient=patient, threshold=s.warning_threshold,
                                     report_writer=writer, progress=_Progress())
        except CancelledError:
            self.w.message_bar.show_message(translate("Records", "Export cancelled; {folder} holds a partial export "
                                                      "(no records.csv).").format(folder=folder), "warning")
            return None
        except (LesionError, OSError) as e:
            self.w.show_error(translate("Records", "Could not export the records: {error}").format(error=e))
            return None
        finally:
            dialog.close()
        self.w.message_bar.show_message(summary.sentence(), "warning" if summary.problems else "info")
        return folder

    def backup(self, destination: Path | None = None) -> None:
        """File > Back up the history: SQLite's online backup while the program runs, then the images."""
        if destination is None:
            chosen = QFileDialog.getExistingDirectory(self.w, translate("Records", "Back up the history into a folder"),
                                                      str(Path.home()))
            if not chosen:
                return
            destination = Path(chosen)
        self.w.statusBar().showMessage(translate("Records", "Backing up the history…"))

        def done(folder: Path) -> None:
            missing = (folder / "MISSING-IMAGES.txt").exists()
            text = translate("Records", "History backed up to {folder}.").format(folder=folder)
            if missing:
                text += " " + translate("Records", "Some image files were missing: see MISSING-IMAGES.txt there.")
            self.w.message_bar.show_message(text, "warning" if missing else "info")

        def failed(message: str) -> None:
            self.w.show_error(translate("Records", "The backup failed: {error}").format(error=message))

        self.w._start(Worker(backup_job, self.store, destination, name="back up history"), done, failed)

    def apply_retention(self, ask: bool = True) -> int:
        """Delete what is older than the retention period, after a confirmation that says how much goes."""
        years = self.w.settings.retention_years
        if years <= 0:
            if ask:
                QMessageBox.information(self.w, translate("Records", "Retention period"),
                                        translate("Records", "The retention period is 0: every examination is kept. "
                                                  "Set one in Settings (Records) to delete old examinations."))
            return 0
        cutoff = RecordStore.retention_cutoff(years)
        n = self.store.count_before(cutoff)
        if n == 0:
            if ask:
                QMessageBox.information(self.w, translate("Records", "Retention period"),
                                        translate("Records", "No examination is older than {years} years (before "
                                                  "{cutoff}).").format(years=years, cutoff=cutoff))
            return 0
        question = translate("Records", "1 examination made before {cutoff} is older than the retention period of "
                             "{years} years. Delete it with the stored images (and lesions and patients left with no "
                             "examination)? This cannot be undone.") if n == 1 else translate(
            "Records", "{n} examinations made before {cutoff} are older than the retention period of {years} years. "
            "Delete them with the stored images (and lesions and patients left with no examination)? This cannot be "
            "undone.")
        answer = QMessageBox.question(self.w, translate("Records", "Retention period"),
                                      question.format(n=n, cutoff=cutoff, years=years))
        if answer != QMessageBox.StandardButton.Yes:
            return 0
        gone = self.store.delete_before(cutoff)
        self.w.history.refresh()
        self.w.message_bar.show_message(translate("Records", "Deleted {n} examinations older than {years} years.")
                                        .format(n=gone.examinations, years=years), "info")
        return gone.examinations

    def offer_retention(self) -> None:
        """At start: if a retention period is set and something is past it, ask (never delete unasked)."""
        if self.w.settings.retention_years > 0 and not getattr(self.w, "_closed", False):
            cutoff = RecordStore.retention_cutoff(self.w.settings.retention_years)
            if self.store.count_before(cutoff) > 0:
                self.apply_retention(ask=True)
