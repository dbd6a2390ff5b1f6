"""The clinician's part of an examination: their assessment and notes, and the histopathology when it comes."""

from __future__ import annotations

import datetime as _dt

from PySide6.QtCore import QT_TRANSLATE_NOOP, QCoreApplication
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from lesion_desktop.classes import CLASSES
from lesion_desktop.qt.patient_bodymap import site_name
from lesion_desktop.qt.translations import diagnosis_name
from lesion_desktop.records import HISTOPATHOLOGY_OTHER, Record, RecordStore

translate = QCoreApplication.translate  # a literal context and text in each call: pyside6-lupdate finds them
# Suggestions only (the field is free text): offered in the clinic's language, stored as chosen.
ASSESSMENTS = ("", QT_TRANSLATE_NOOP("ExaminationDialog", "Benign: no action"),
               QT_TRANSLATE_NOOP("ExaminationDialog", "Monitor: follow-up"),
               QT_TRANSLATE_NOOP("ExaminationDialog", "Excise or biopsy"),
               QT_TRANSLATE_NOOP("ExaminationDialog", "Refer to a dermatologist"))


class ExaminationDialog(QDialog):
    def __init__(self, store: RecordStore, record: Record, clinician: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        assert record.id is not None
        self.store = store
        self.record = record
        self.setWindowTitle(translate("ExaminationDialog", "Examination #{id}").format(id=record.id))
        where = record.filed_under(site_name) or translate("ExaminationDialog", "not filed under a patient yet")
        head = QLabel(f"<b>{record.created_local()}</b> · {record.source_name}<br>{where}")
        head.setWordWrap(True)
        self.clinician = QLineEdit(record.clinician or clinician)
        self.assessment = QComboBox()
        self.assessment.setEditable(True)
        self.assessment.addItems([translate("ExaminationDialog", a) if a else "" for a in ASSESSMENTS])
        self.assessment.setCurrentText(record.assessment)
        self.notes = QPlainTextEdit(record.notes)
        self.notes.setPlaceholderText(translate("ExaminationDialog", "What you saw, what you decided, what you told "
                                                "the patient"))
        self.histopathology = QComboBox()
        self.histopathology.addItem(translate("ExaminationDialog", "None yet"), "")
        for c in CLASSES:
            self.histopathology.addItem(f"{diagnosis_name(c)} ({c.code})", c.code)  # the code is stored
        self.histopathology.addItem(translate("ExaminationDialog", "Other (say which in the note)"),
                                    HISTOPATHOLOGY_OTHER)
        self.histopathology.setCurrentIndex(max(0, self.histopathology.findData(record.histopathology)))
        self.histo_note = QLineEdit(record.histopathology_note)
        self.histo_note.setPlaceholderText(translate("ExaminationDialog", "e.g. melanoma in situ, Breslow 0.4 mm"))
        self.histo_date = QLineEdit(record.histopathology_date)
        self.histo_date.setPlaceholderText(translate("ExaminationDialog", "YYYY-MM-DD, e.g. {today}").format(
            today=_dt.date.today().isoformat()))
        self.error = QLabel()
        self.error.setStyleSheet("color:#c62828")
        clin = QGroupBox(translate("ExaminationDialog", "Clinician's assessment"))
        f1 = QFormLayout(clin)
        f1.addRow(translate("ExaminationDialog", "Clinician"), self.clinician)
        f1.addRow(translate("ExaminationDialog", "Assessment"), self.assessment)
        f1.addRow(translate("ExaminationDialog", "Notes"), self.notes)
        histo = QGroupBox(translate("ExaminationDialog", "Histopathology"))
        f2 = QFormLayout(histo)
        f2.addRow(translate("ExaminationDialog", "Diagnosis"), self.histopathology)
        f2.addRow(translate("ExaminationDialog", "Note"), self.histo_note)
        f2.addRow(translate("ExaminationDialog", "Date"), self.histo_date)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(head)
        lay.addWidget(clin)
        lay.addWidget(histo)
        lay.addWidget(self.error)
        lay.addWidget(buttons)
        self.resize(520, 480)

    def accept(self) -> None:
        assert self.record.id is not None
        try:
            self.store.set_histopathology(self.record.id, str(self.histopathology.currentData()),
                                          self.histo_note.text(), self.histo_date.text())
        except ValueError:
            self.error.setText(translate("ExaminationDialog", "The date '{date}' is not a date like "
                                         "2024-06-01.").format(date=self.histo_date.text()))
            return
        self.store.set_assessment(self.record.id, clinician=self.clinician.text(),
                                  assessment=self.assessment.currentText(), notes=self.notes.toPlainText())
        super().accept()
