"""Choose or create the patient and the lesion an examination is filed under (before or after the capture)."""

from __future__ import annotations

from PySide6.QtCore import QT_TRANSLATE_NOOP, QCoreApplication, Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from lesion_desktop.qt.patient_bodymap import BodyMap, site_name
from lesion_desktop.records import BODY_SITES, Patient, RecordStore

ID_ROLE = Qt.ItemDataRole.UserRole
SEX_LABELS = {"": QT_TRANSLATE_NOOP("PatientDialog", "Not recorded"),
              "female": QT_TRANSLATE_NOOP("PatientDialog", "Female"),
              "male": QT_TRANSLATE_NOOP("PatientDialog", "Male")}
translate = QCoreApplication.translate  # a literal context and text in each call: pyside6-lupdate finds them


class PatientForm(QDialog):
    """A new patient, or a patient's details edited: the clinic's ID, name, date or year of birth, sex."""

    def __init__(self, store: RecordStore, patient: Patient | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.patient = patient
        self.setWindowTitle(translate("PatientDialog", "Edit patient") if patient
                            else translate("PatientDialog", "New patient"))
        self.clinic_id = QLineEdit(patient.clinic_id if patient else "")
        self.clinic_id.setPlaceholderText(translate("PatientDialog", "the clinic's own patient ID"))
        self.name = QLineEdit(patient.name if patient else "")
        self.name.setPlaceholderText(translate("PatientDialog", "optional"))
        self.birth = QLineEdit(patient.birth if patient else "")
        self.birth.setPlaceholderText(translate("PatientDialog", "1970 or 1970-05-31 (optional)"))
        self.sex = QComboBox()
        for value, label in SEX_LABELS.items():
            self.sex.addItem(translate("PatientDialog", label), value)
        self.sex.setCurrentIndex(max(0, self.sex.findData(patient.sex if patient else "")))
        self.error = QLabel()
        self.error.setStyleSheet("color:#c62828")
        self.error.setWordWrap(True)
        form = QFormLayout()
        form.addRow(translate("PatientDialog", "Patient ID"), self.clinic_id)
        form.addRow(translate("PatientDialog", "Name"), self.name)
        form.addRow(translate("PatientDialog", "Born"), self.birth)
        form.addRow(translate("PatientDialog", "Sex"), self.sex)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)

    def accept(self) -> None:
        args = (self.clinic_id.text(), self.name.text(), self.birth.text(), str(self.sex.currentData()))
        try:
            if self.patient is None:
                self.patient = self.store.add_patient(*args)
            else:
                self.patient = self.store.update_patient(self.patient.id, *args)
        except ValueError as e:
            self.error.setText(str(e))
            return
        super().accept()


class PatientDialog(QDialog):
    """Search or create a patient, then pick one of their lesions or add one on the body map."""

    def __init__(self, store: RecordStore, parent: QWidget | None = None, title: str = "",
                 patient_id: int | None = None, lesion_id: int | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.setWindowTitle(title or translate("PatientDialog", "File under a patient"))
        self.patient_id: int | None = None
        self.lesion_id: int | None = None
        self.search = QLineEdit()
        self.search.setPlaceholderText(translate("PatientDialog", "Search patient ID or name"))
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda _t: self._fill_patients())
        self.patient_list = QListWidget()
        self.patient_list.currentItemChanged.connect(lambda *_: self._patient_changed())
        self.new_patient_button = QPushButton(translate("PatientDialog", "New patient…"))
        self.new_patient_button.clicked.connect(self.new_patient)
        left = QVBoxLayout()
        left.addWidget(self.search)
        left.addWidget(self.patient_list, 1)
        left.addWidget(self.new_patient_button)

        self.lesion_title = QLabel(translate("PatientDialog", "Choose a patient first."))
        self.lesion_list = QListWidget()
        self.lesion_list.currentItemChanged.connect(lambda *_: self._lesion_changed())
        self.body_map = BodyMap()
        self.site_combo = QComboBox()
        self.site_combo.addItem(translate("PatientDialog", "Choose the site…"), "")
        for site in BODY_SITES:
            self.site_combo.addItem(site_name(site), site)
        self.body_map.site_chosen.connect(lambda s: self.site_combo.setCurrentIndex(self.site_combo.findData(s)))
        self.site_combo.currentIndexChanged.connect(
            lambda _i: self.body_map.set_site(str(self.site_combo.currentData())))
        self.site_combo.currentIndexChanged.connect(lambda _i: self._site_changed())
        self.label_edit = QLineEdit()
        self.label_edit.setPlaceholderText(translate("PatientDialog", "optional, e.g. 'left shoulder, 3 cm below the "
                                                     "scapula'"))
        self.add_lesion_button = QPushButton(translate("PatientDialog", "Add lesion"))
        self.add_lesion_button.clicked.connect(self.add_lesion)
        new_box = QGroupBox(translate("PatientDialog", "New lesion: click where it is"))
        nl = QVBoxLayout(new_box)
        nl.addWidget(self.body_map, 1)
        form = QFormLayout()
        form.addRow(translate("PatientDialog", "Site"), self.site_combo)
        form.addRow(translate("PatientDialog", "Label"), self.label_edit)
        nl.addLayout(form)
        nl.addWidget(self.add_lesion_button, 0, Qt.AlignmentFlag.AlignRight)
        right = QVBoxLayout()
        right.addWidget(self.lesion_title)
        right.addWidget(self.lesion_list, 1)
        right.addWidget(new_box, 2)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText(translate("PatientDialog", "File under this lesion"))
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        panes = QHBoxLayout()
        lw, rw = QWidget(), QWidget()
        lw.setLayout(left)
        rw.setLayout(right)
        panes.addWidget(lw, 2)
        panes.addWidget(rw, 3)
        lay = QVBoxLayout(self)
        lay.addLayout(panes, 1)
        lay.addWidget(self.buttons)
        self.resize(760, 520)
        self._fill_patients(select=patient_id)
        if lesion_id is not None:
            self._select(self.lesion_list, lesion_id)
        self._update_ok()

    @staticmethod
    def _select(widget: QListWidget, wanted: int) -> None:
        for i in range(widget.count()):
            if widget.item(i).data(ID_ROLE) == wanted:
                widget.setCurrentRow(i)
                return

    def _fill_patients(self, select: int | None = None) -> None:
        keep = select if select is not None else self._current(self.patient_list)
        self.patient_list.clear()
        for s in self.store.patients(self.search.text(), limit=500):
            p = s.patient
            born = translate("PatientDialog", ", born {birth}").format(birth=p.birth) if p.birth else ""
            item = QListWidgetItem(f"{p.title()}{born}\n" + translate(
                "PatientDialog", "{lesions} lesion(s), {exams} examination(s)").format(lesions=s.lesions,
                                                                                     exams=s.examinations))
            item.setData(ID_ROLE, p.id)
            self.patient_list.addItem(item)
        if keep is not None:
            self._select(self.patient_list, keep)
        if self.patient_list.currentItem() is None and self.patient_list.count() == 1:
            self.patient_list.setCurrentRow(0)
        self._patient_changed()

    @staticmethod
    def _current(widget: QListWidget) -> int | None:
        item = widget.currentItem()
        return int(item.data(ID_ROLE)) if item is not None else None

    def _patient_changed(self) -> None:
        pid = self._current(self.patient_list)
        self.lesion_list.clear()
        patient = self.store.get_patient(pid) if pid is not None else None
        self.lesion_title.setText(translate("PatientDialog", "Lesions of {patient}:").format(patient=patient.title())
                                  if patient else translate("PatientDialog", "Choose a patient first."))
        if patient is not None:
            for s in self.store.lesions(patient.id):
                last = translate("PatientDialog", ", last {date}").format(date=s.last_examination[:10]) \
                    if s.last_examination else ""
                item = QListWidgetItem(f"{s.lesion.title(site_name)} (" + translate(
                    "PatientDialog", "{exams} examination(s)").format(exams=s.examinations) + f"{last})")
                item.setData(ID_ROLE, s.lesion.id)
                self.lesion_list.addItem(item)
        self.add_lesion_button.setEnabled(patient is not None)
        self._update_ok()

    def _site_changed(self) -> None:
        """A site on the map means a new lesion: no existing one stays selected."""
        if self.site_combo.currentData():
            self.lesion_list.setCurrentItem(None)
        self._update_ok()

    def _lesion_changed(self) -> None:
        if self.lesion_list.currentItem() is not None and self.site_combo.currentData():
            self.site_combo.setCurrentIndex(0)
        self._update_ok()

    def _update_ok(self) -> None:
        has_patient = self._current(self.patient_list) is not None
        has_lesion = self._current(self.lesion_list) is not None or bool(self.site_combo.currentData())
        self.ok_button.setEnabled(has_patient and has_lesion)

    def new_patient(self) -> Patient | None:
        form = PatientForm(self.store, parent=self)
        form.clinic_id.setText(self.search.text().strip())
        if form.exec() != QDialog.DialogCode.Accepted or form.patient is None:
            return None
        self.search.blockSignals(True)
        self.search.clear()
        self.search.blockSignals(False)
        self._fill_patients(select=form.patient.id)
        return form.patient

    def add_lesion(self) -> int | None:
        pid = self._current(self.patient_list)
        site = str(self.site_combo.currentData() or "")
        if pid is None or not site:
            self.lesion_title.setText(translate("PatientDialog", "Click the body map (or choose a site) for the new "
                                                "lesion first."))
            return None
        lesion = self.store.add_lesion(pid, site, self.label_edit.text())
        self.label_edit.clear()
        self.site_combo.setCurrentIndex(0)
        self._patient_changed()
        self._select(self.lesion_list, lesion.id)
        return lesion.id

    def accept(self) -> None:
        pid = self._current(self.patient_list)
        lid = self._current(self.lesion_list)
        if lid is None and pid is not None and self.site_combo.currentData():
            lid = self.add_lesion()  # a site chosen on the map but not added yet: that is the lesion meant
        if pid is None or lid is None:
            return
        self.patient_id, self.lesion_id = pid, lid
        super().accept()
