"""The history dock: patients > lesions > examinations, with the quick examinations not filed yet on top, and a
search by patient ID or name.

Only what is visible is read: the top level is one grouped query (a row per patient), and a patient's lesions
and examinations (with their ~10 kB thumbnails) are read when it is expanded, so the list and the search stay
fast with tens of thousands of examinations (benchmarks/bench_history.py). Full records and images are loaded
in the worker when one is reopened.
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QDockWidget,
    QGridLayout,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lesion_desktop.qt.patient_bodymap import site_name
from lesion_desktop.qt.translations import diagnosis_name, tr_core
from lesion_desktop.records import Record, RecordStore

KEY_ROLE = Qt.ItemDataRole.UserRole  # "kind:id", one value per item (fewer calls into Qt per row)
UNFILED, PATIENT, LESION, EXAM, MORE = "unfiled", "patient", "lesion", "exam", "more"
UNFILED_SHOWN = 100  # quick examinations listed at first; "show more" lists five times as many
ICON_CACHE = 5000  # decoded thumbnails kept
translate = QCoreApplication.translate  # a literal context and text in each call: pyside6-lupdate finds them


def kind_of(item: QTreeWidgetItem) -> str:
    return str(item.data(0, KEY_ROLE)).partition(":")[0]


def id_of(item: QTreeWidgetItem) -> int:
    return int(str(item.data(0, KEY_ROLE)).partition(":")[2])


def exam_text(r: Record) -> str:
    """Four short lines, for a narrow dock: date, top class, malignant sum (and histology), file name."""
    extra = translate("History", " · histology {code}").format(code=r.histopathology) if r.histopathology else ""
    scope = r.details.get("scope") if isinstance(r.details, dict) else None
    if isinstance(scope, dict) and scope.get("in_scope") is False and not r.details.get("shown_anyway"):
        # the window shows no diagnosis for an image the models cannot judge: neither does its history row
        return "\n".join((r.created_local(), translate("History", "not a dermoscopy image"),
                          translate("History", "no diagnosis") + extra, r.source_name))
    short = diagnosis_name(r.top_index, "brief")  # in the clinic's language; the database keeps the code
    return "\n".join((r.created_local(), f"{r.probabilities.max():.0%} {short}", translate(
        "History", "malignant {p}").format(p=f"{r.malignant_probability:.0%}") + extra, r.source_name))


class HistoryPanel(QDockWidget):
    open_requested = Signal(int)  # examination id
    export_requested = Signal(int)  # examination id: a PDF report
    deleted = Signal(int)  # examination id
    patient_deleted = Signal(int)
    timeline_requested = Signal(int)  # lesion id
    file_requested = Signal(int)  # examination id: choose its patient and lesion
    edit_requested = Signal(int)  # examination id: the clinician's assessment, the histopathology

    def __init__(self, store: RecordStore, parent: QWidget | None = None) -> None:
        super().__init__(translate("History", "History"), parent)
        self.setObjectName("historyDock")  # needed for saveState/restoreState
        self.store = store
        self._unfiled_limit = UNFILED_SHOWN
        self._icons: dict[int, QIcon] = {}
        self._patient_items: dict[int, QTreeWidgetItem] = {}
        self._expanded: set[int] = set()  # patients open in the tree, kept open across refreshes
        self.search = QLineEdit()
        self.search.setPlaceholderText(translate("History", "Search patient ID or name"))
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda _t: self.refresh())
        self.tree = QTreeWidget()
        self.tree.setHeaderHidden(True)
        self.tree.setIconSize(QSize(56, 56))
        self.tree.setUniformRowHeights(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setWordWrap(False)  # each line elided on its own: a wrapped line would push the last one out
        self.tree.setIndentation(14)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.tree.itemExpanded.connect(self._on_expanded)
        self.tree.itemCollapsed.connect(self._on_collapsed)
        self.tree.itemActivated.connect(self._activated)
        self.tree.currentItemChanged.connect(lambda *_: self._update_buttons())
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._context_menu)
        self.open_button = QPushButton(translate("History", "Open"))
        self.open_button.clicked.connect(lambda: self._emit_exam(self.open_requested))
        self.timeline_button = QPushButton(translate("History", "Timeline"))
        self.timeline_button.setToolTip(translate("History", "Compare this lesion's examinations side by side"))
        self.timeline_button.clicked.connect(self._timeline_current)
        self.file_button = QPushButton(translate("History", "File…"))
        self.file_button.setToolTip(translate("History", "File this examination under a patient and lesion (or move "
                                              "it)"))
        self.file_button.clicked.connect(lambda: self._emit_exam(self.file_requested))
        self.edit_button = QPushButton(translate("History", "Assess…"))
        self.edit_button.setToolTip(translate("History", "Your assessment and notes; the histopathology when it comes"))
        self.edit_button.clicked.connect(lambda: self._emit_exam(self.edit_requested))
        self.export_button = QPushButton(translate("History", "Export PDF…"))
        self.export_button.clicked.connect(lambda: self._emit_exam(self.export_requested))
        self.delete_button = QPushButton(translate("History", "Delete…"))
        self.delete_button.clicked.connect(self.delete_current)
        buttons = QGridLayout()
        for i, b in enumerate((self.open_button, self.timeline_button, self.file_button, self.edit_button,
                               self.export_button, self.delete_button)):
            buttons.addWidget(b, i // 3, i % 3)
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.search)
        lay.addWidget(self.tree, 1)
        lay.addLayout(buttons)
        self.setWidget(body)
        self.refresh()

    # ---- filling --------------------------------------------------------------------------------------
    @staticmethod
    def _item(kind: str, ident: int, text: str) -> QTreeWidgetItem:
        item = QTreeWidgetItem([text])
        item.setData(0, KEY_ROLE, f"{kind}:{ident}")
        return item

    def _icon(self, r: Record) -> QIcon:
        """Thumbnails are decoded once (an examination's thumbnail never changes)."""
        assert r.id is not None
        icon = self._icons.get(r.id)
        if icon is None:
            pix = QPixmap()
            pix.loadFromData(r.thumbnail, "PNG")
            icon = self._icons[r.id] = QIcon(pix)
            if len(self._icons) > ICON_CACHE:
                self._icons.pop(next(iter(self._icons)))
        return icon

    def _exam_item(self, r: Record) -> QTreeWidgetItem:
        assert r.id is not None
        item = self._item(EXAM, r.id, exam_text(r))
        item.setIcon(0, self._icon(r))
        item.setToolTip(0, f"#{r.id} {r.source_name}\n" + translate("History", "Models: {version}").format(
            version=r.model_version))
        return item

    def refresh(self, select_id: int | None = None) -> None:
        """Rebuild the top level; select (and reveal) examination `select_id` when given."""
        expanded = set(self._expanded)
        self._patient_items.clear()
        self._expanded.clear()
        self.tree.setUpdatesEnabled(False)
        try:
            self.tree.clear()
            query = self.search.text().strip()
            if not query:
                unfiled = self.store.unfiled(self._unfiled_limit + 1)
                group = self._item(UNFILED, 0, translate("History", "Quick examinations"))
                group.setToolTip(0, translate("History", "Not filed under a patient yet: select one and press File… to "
                                              "file it"))
                self.tree.addTopLevelItem(group)
                for r in unfiled[: self._unfiled_limit]:
                    group.addChild(self._exam_item(r))
                if len(unfiled) > self._unfiled_limit:
                    group.addChild(self._item(MORE, 0, translate("History", "Show older quick examinations…")))
                more = "+" if len(unfiled) > self._unfiled_limit else ""
                group.setText(0, translate("History", "Quick examinations ({count})").format(
                    count=f"{min(len(unfiled), self._unfiled_limit)}{more}"))
                group.setExpanded(bool(unfiled))
            patients = self.store.patients(query)
            items = []
            for s in patients:
                p = s.patient
                last = f" · {s.last_examination[:10]}" if s.last_examination else ""
                item = self._item(PATIENT, p.id, f"{p.title()}\n" + translate(
                    "History", "{lesions} lesion(s) · {exams} exam(s)").format(lesions=s.lesions,
                                                                               exams=s.examinations) + last)
                item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
                items.append(item)
                self._patient_items[p.id] = item
            self.tree.addTopLevelItems(items)
            if query and not patients:
                self.tree.addTopLevelItem(self._item(MORE, -1, translate(
                    "History", "No patient ID or name contains '{query}'.").format(query=query)))
            for pid in expanded & self._patient_items.keys():
                self._patient_items[pid].setExpanded(True)
        finally:
            self.tree.setUpdatesEnabled(True)
        if select_id is not None:
            self.select_examination(select_id)
        self._update_buttons()

    def _top_items(self, kind: str) -> list[QTreeWidgetItem]:
        items = [self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount())]
        return [it for it in items if kind_of(it) == kind]

    def _on_expanded(self, item: QTreeWidgetItem) -> None:
        if kind_of(item) == PATIENT:
            self._expanded.add(id_of(item))
            if item.childCount() == 0:
                self._fill_patient(item)

    def _on_collapsed(self, item: QTreeWidgetItem) -> None:
        if kind_of(item) == PATIENT:
            self._expanded.discard(id_of(item))

    def _fill_patient(self, item: QTreeWidgetItem) -> None:
        pid = id_of(item)
        exams: dict[int, list[Record]] = {}
        for r in self.store.examinations_of_patient(pid):
            if r.lesion_id is not None:
                exams.setdefault(r.lesion_id, []).append(r)
        for s in self.store.lesions(pid):
            les = self._item(LESION, s.lesion.id, f"{s.lesion.title(site_name)} ({s.examinations})")
            les.setToolTip(0, translate("History", "{lesion}: {exams} examination(s); Timeline compares them").format(
                lesion=s.lesion.title(site_name), exams=s.examinations))
            item.addChild(les)
            for r in reversed(exams.get(s.lesion.id, [])):  # newest first
                les.addChild(self._exam_item(r))
            les.setExpanded(True)
        if item.childCount() == 0:
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.DontShowIndicatorWhenChildless)

    def select_examination(self, record_id: int) -> bool:
        """Reveal and select an examination (expanding its patient); False when it is not listed."""
        rec = self.store.get(record_id, full=False)
        if rec is None:
            return False
        parents = self._top_items(UNFILED) if rec.patient_id is None else [
            self._patient_items[rec.patient_id]] if rec.patient_id in self._patient_items else []
        for top in parents:
            top.setExpanded(True)  # fills a patient's lesions on first expansion
            for found in self._walk(top):
                if kind_of(found) == EXAM and id_of(found) == record_id:
                    self.tree.setCurrentItem(found)
                    self.tree.scrollToItem(found)
                    return True
        return False

    def _walk(self, item: QTreeWidgetItem) -> list[QTreeWidgetItem]:
        out = []
        for i in range(item.childCount()):
            child = item.child(i)
            out.append(child)
            out.extend(self._walk(child))
        return out

    def record_ids(self) -> list[int]:
        """Every examination in the history, newest first."""
        return self.store.ids()

    def shown_patients(self) -> list[str]:
        """The clinic IDs listed (after the search), top to bottom."""
        out = []
        for it in self._top_items(PATIENT):
            p = self.store.get_patient(id_of(it))
            if p is not None:
                out.append(p.clinic_id)
        return out

    # ---- the current item -----------------------------------------------------------------------------
    def current(self) -> tuple[str, int] | None:
        item = self.tree.currentItem()
        if item is None:
            return None
        return kind_of(item), id_of(item)

    def current_lesion(self) -> int | None:
        """The selected lesion, or the lesion of the selected examination."""
        item = self.tree.currentItem()
        if item is None:
            return None
        kind = kind_of(item)
        if kind == LESION:
            return id_of(item)
        parent = item.parent()
        if kind == EXAM and parent is not None and kind_of(parent) == LESION:
            return id_of(parent)
        return None

    def _update_buttons(self) -> None:
        cur = self.current()
        exam = cur is not None and cur[0] == EXAM
        for b in (self.open_button, self.file_button, self.edit_button, self.export_button):
            b.setEnabled(exam)
        self.timeline_button.setEnabled(self.current_lesion() is not None)
        self.delete_button.setEnabled(cur is not None and cur[0] in (EXAM, LESION, PATIENT))

    def _emit_exam(self, signal: Signal) -> None:
        cur = self.current()
        if cur is not None and cur[0] == EXAM:
            signal.emit(cur[1])  # type: ignore[attr-defined]

    def _timeline_current(self) -> None:
        lid = self.current_lesion()
        if lid is not None:
            self.timeline_requested.emit(lid)

    def _activated(self, item: QTreeWidgetItem) -> None:
        kind = kind_of(item)
        if kind == EXAM:
            self.open_requested.emit(id_of(item))
        elif kind == LESION:
            self.timeline_requested.emit(id_of(item))
        elif kind == MORE and id_of(item) == 0:
            self._unfiled_limit *= 5
            self.refresh()

    def _context_menu(self, pos: object) -> None:
        menu = QMenu(self)
        for b in (self.open_button, self.timeline_button, self.file_button, self.edit_button, self.export_button,
                  self.delete_button):
            if b.isEnabled():
                menu.addAction(b.text(), b.click)
        if not menu.isEmpty():
            menu.exec(self.tree.viewport().mapToGlobal(pos))  # type: ignore[arg-type]

    # ---- deleting -------------------------------------------------------------------------------------
    def delete_current(self) -> bool:
        """Delete the selected examination, lesion or patient after a confirmation that names what goes."""
        cur = self.current()
        if cur is None:
            return False
        kind, ident = cur
        if kind == EXAM:
            rec = self.store.get(ident, full=False)
            if rec is None:
                return False
            text = (translate("History", "Delete the examination of {date} ({name}), filed under {filed}, and its "
                              "stored image? This cannot be undone.") if rec.filed_under(site_name) else translate(
                "History", "Delete the examination of {date} ({name}) and its stored image? This cannot be undone.")
                    ).format(date=rec.created_local(), name=rec.source_name, filed=rec.filed_under(site_name))
        elif kind == PATIENT:
            patient = self.store.get_patient(ident)
            if patient is None:
                return False
            what = self.store.patient_deletion(ident)
            text = translate("History", "Delete patient {patient} with {what}? This cannot be undone.").format(
                patient=patient.clinic_id + (f" ({patient.name})" if patient.name else ""),
                what=tr_core(what.sentence()))
        elif kind == LESION:
            lesion = self.store.get_lesion(ident)
            if lesion is None:
                return False
            n = len(self.store.examinations_of(ident))
            text = translate("History", "Delete the lesion '{lesion}' with its {n} examination(s) and their stored "
                             "images? This cannot be undone.").format(lesion=lesion.title(site_name), n=n)
        else:
            return False
        answer = QMessageBox.question(self, translate("History", "Delete from the records"), text)
        if answer != QMessageBox.StandardButton.Yes:
            return False
        if kind == EXAM:
            if self.store.delete(ident):
                self.refresh()
                self.deleted.emit(ident)
        elif kind == PATIENT:
            self.store.delete_patient(ident)
            self.refresh()
            self.patient_deleted.emit(ident)
        else:
            self.store.delete_lesion(ident)
            self.refresh()
        return True
