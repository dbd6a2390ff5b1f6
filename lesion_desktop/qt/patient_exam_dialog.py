"""The clinician's part of an examination: their assessment and notes, and the histopathology when it comes."""

from __future__ import annotations

import datetime as _dt

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
from lesion_desktop.records import HISTOPATHOLOGY_OTHER, Record, RecordStore

ASSESSMENTS = ("", "Benign: no action", "Monitor: follow-up", "Excise or biopsy", "Refer to a dermatologist")


class ExaminationDialog(QDialog):
    def __init__(self, store: RecordStore, record: Record, clinician: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        assert record.id is not None
        self.store = store
        self.record = record
        self.setWindowTitle(f"Examination #{record.id}")
        where = record.filed_under() or "not filed under a patient yet"
        head = QLabel(f"<b>{record.created_local()}</b> · {record.source_name}<br>{where}")
        head.setWordWrap(True)
        self.clinician = QLineEdit(record.clinician or clinician)
        self.assessment = QComboBox()
        self.assessment.setEditable(True)
        self.assessment.addItems(list(ASSESSMENTS))
        self.assessment.setCurrentText(record.assessment)
        self.notes = QPlainTextEdit(record.notes)
        self.notes.setPlaceholderText("What you saw, what you decided, what you told the patient")
        self.histopathology = QComboBox()
        self.histopathology.addItem("None yet", "")
        for c in CLASSES:
            self.histopathology.addItem(f"{c.name} ({c.code})", c.code)
        self.histopathology.addItem("Other (say which in the note)", HISTOPATHOLOGY_OTHER)
        self.histopathology.setCurrentIndex(max(0, self.histopathology.findData(record.histopathology)))
        self.histo_note = QLineEdit(record.histopathology_note)
        self.histo_note.setPlaceholderText("e.g. melanoma in situ, Breslow 0.4 mm")
        self.histo_date = QLineEdit(record.histopathology_date)
        self.histo_date.setPlaceholderText(f"YYYY-MM-DD, e.g. {_dt.date.today().isoformat()}")
        self.error = QLabel()
        self.error.setStyleSheet("color:#c62828")
        clin = QGroupBox("Clinician's assessment")
        f1 = QFormLayout(clin)
        f1.addRow("Clinician", self.clinician)
        f1.addRow("Assessment", self.assessment)
        f1.addRow("Notes", self.notes)
        histo = QGroupBox("Histopathology")
        f2 = QFormLayout(histo)
        f2.addRow("Diagnosis", self.histopathology)
        f2.addRow("Note", self.histo_note)
        f2.addRow("Date", self.histo_date)
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
            self.error.setText(f"The date '{self.histo_date.text()}' is not a date like 2024-06-01.")
            return
        self.store.set_assessment(self.record.id, clinician=self.clinician.text(),
                                  assessment=self.assessment.currentText(), notes=self.notes.toPlainText())
        super().accept()
