"""The history dock: every classified image with its thumbnail; double-click reopens the stored result.

The list reads only the light columns (thumbnails of ~10 kB), so refreshing on the GUI thread stays
instant; the full record and its image are loaded in the worker when one is reopened.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from lesion_desktop.records import RecordStore

ID_ROLE = Qt.ItemDataRole.UserRole


class HistoryPanel(QDockWidget):
    open_requested = Signal(int)
    export_requested = Signal(int)
    deleted = Signal(int)

    def __init__(self, store: RecordStore, parent: QWidget | None = None) -> None:
        super().__init__("History", parent)
        self.setObjectName("historyDock")  # needed for saveState/restoreState
        self.store = store
        self.list = QListWidget()
        self.list.setIconSize(QSize(64, 64))
        self.list.setUniformItemSizes(True)
        self.list.setAlternatingRowColors(True)
        self.list.setWordWrap(True)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.itemActivated.connect(self._activated)
        self.list.currentItemChanged.connect(lambda *_: self._update_buttons())
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(self._open_current)
        self.export_button = QPushButton("Export PDF…")
        self.export_button.clicked.connect(self._export_current)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self._delete_current)
        buttons = QHBoxLayout()
        for b in (self.open_button, self.export_button, self.delete_button):
            buttons.addWidget(b)
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.list)
        lay.addLayout(buttons)
        self.setWidget(body)
        self.refresh()

    def refresh(self, select_id: int | None = None) -> None:
        self.list.clear()
        for r in self.store.list():
            short = r.top_name.split(" (")[0].split(" /")[0]
            item = QListWidgetItem(f"{short} ({r.probabilities.max():.0%})\n"
                                   f"Malignant classes {r.malignant_probability:.0%}\n"
                                   f"{r.created_local()}\n{r.source_name}")
            pix = QPixmap()
            pix.loadFromData(r.thumbnail, "PNG")
            item.setIcon(QIcon(pix))
            item.setData(ID_ROLE, r.id)
            item.setToolTip(f"#{r.id} {r.source_name}\nModels: {r.model_version}")
            self.list.addItem(item)
            if r.id == select_id:
                self.list.setCurrentItem(item)
        self._update_buttons()

    def record_ids(self) -> list[int]:
        return [int(self.list.item(i).data(ID_ROLE)) for i in range(self.list.count())]

    def _current_id(self) -> int | None:
        item = self.list.currentItem()
        return int(item.data(ID_ROLE)) if item is not None else None

    def _update_buttons(self) -> None:
        has = self._current_id() is not None
        for b in (self.open_button, self.export_button, self.delete_button):
            b.setEnabled(has)

    def _activated(self, item: QListWidgetItem) -> None:
        self.open_requested.emit(int(item.data(ID_ROLE)))

    def _open_current(self) -> None:
        rid = self._current_id()
        if rid is not None:
            self.open_requested.emit(rid)

    def _export_current(self) -> None:
        rid = self._current_id()
        if rid is not None:
            self.export_requested.emit(rid)

    def _delete_current(self) -> None:
        rid = self._current_id()
        if rid is None:
            return
        answer = QMessageBox.question(self, "Delete from history",
                                      "Delete this result and its stored image copy? This cannot be undone.")
        if answer == QMessageBox.StandardButton.Yes and self.store.delete(rid):
            self.refresh()
            self.deleted.emit(rid)
