"""The settings dialog, generated from the Settings dataclass's fields and their metadata.

bool -> checkbox, float -> spin box with the declared range, int -> spin box, choices -> combo box,
paths -> line edit with a Browse button. Adding a setting needs no change here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from lesion_desktop.qt.help import scrolling_body
from lesion_desktop.settings import Settings, field_choices, updated

translate = QCoreApplication.translate  # a literal context and text in each call: pyside6-lupdate finds them
# The fields' labels, help and choice labels are marked in lesion_desktop/settings.py, under this context.
SETTINGS_CONTEXT = "Settings"


def _tr_setting(text: str) -> str:
    return translate(SETTINGS_CONTEXT, text) if text else ""


class _PathEdit(QWidget):
    def __init__(self, kind: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(translate("SettingsDialog", "(default)"))
        browse = QPushButton(translate("SettingsDialog", "Browse…"))
        browse.clicked.connect(lambda: self._browse(kind))
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.edit, 1)
        lay.addWidget(browse)

    def _browse(self, kind: str) -> None:
        start = self.edit.text() or str(Path.home())
        if kind == "directory":
            path = QFileDialog.getExistingDirectory(self, translate("SettingsDialog", "Choose a folder"), start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, translate("SettingsDialog", "Choose a file"), start)
        if path:
            self.edit.setText(path)


class ChoiceCombo(QComboBox):
    """A combo over arbitrary Python values (tuples too), kept in a list rather than in QVariants."""

    def __init__(self, choices: list[tuple[Any, str]], value: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.choice_values = [v for v, _ in choices]
        for _, label in choices:
            self.addItem(_tr_setting(label))
        if value not in self.choice_values:  # e.g. a GPU unplugged since: keep the saved value selectable
            self.choice_values.append(value)
            self.addItem(translate("SettingsDialog", "{value} (not available now)").format(value=value))
        self.set_value(value)

    def value(self) -> Any:
        return self.choice_values[self.currentIndex()]

    def set_value(self, value: Any) -> None:
        self.setCurrentIndex(self.choice_values.index(value))


def editor_for(f: Field[Any], value: Any) -> tuple[QWidget, Callable[[], Any]]:
    """A widget for one field, set to `value`, and a function reading the edited value back."""
    meta, typ = f.metadata, str(f.type)
    choices = field_choices(f)
    if choices is not None:
        combo = ChoiceCombo(choices, value)
        return combo, combo.value
    if typ == "bool":
        box = QCheckBox()
        box.setChecked(bool(value))
        return box, box.isChecked
    if typ == "float":
        spin = QDoubleSpinBox()
        spin.setDecimals(int(meta.get("decimals", 2)))
        spin.setRange(meta["min"] if meta["min"] is not None else -1e9, meta["max"] if meta["max"] is not None else 1e9)
        spin.setSingleStep(meta["step"] or 0.1)
        spin.setValue(float(value))
        return spin, spin.value
    if typ == "int":
        ispin = QSpinBox()
        ispin.setRange(int(meta["min"] if meta["min"] is not None else -(10**9)),
                       int(meta["max"] if meta["max"] is not None else 10**9))
        ispin.setValue(int(value))
        return ispin, ispin.value
    if meta.get("kind") in ("directory", "file"):
        path = _PathEdit(meta["kind"])
        path.edit.setText(str(value))
        return path, lambda: path.edit.text().strip()
    edit = QLineEdit(str(value))
    return edit, lambda: edit.text().strip()


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, models_info_html: str, *, open_retrain: Callable[[], object],
                 rollback: Callable[[], None], can_rollback: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(translate("SettingsDialog", "Settings"))
        self.original = settings
        self.editors: dict[str, QWidget] = {}
        self._getters: dict[str, Callable[[], Any]] = {}
        groups: dict[str, QFormLayout] = {}
        # The form scrolls, the buttons stay: the dialog fits a 1366x768 laptop at any font size.
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        for f in fields(Settings):
            group = f.metadata["group"]
            if group not in groups:
                box = QGroupBox(_tr_setting(group))
                groups[group] = QFormLayout(box)
                groups[group].setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
                layout.addWidget(box)
            widget, getter = editor_for(f, getattr(settings, f.name))
            tip = _tr_setting(f.metadata.get("help", ""))
            widget.setToolTip(tip)
            widget.setObjectName(f"setting_{f.name}")
            label = QLabel(_tr_setting(f.metadata["label"]))
            label.setToolTip(tip)
            groups[group].addRow(label, widget)
            self.editors[f.name] = widget
            self._getters[f.name] = getter

        info_box = QGroupBox(translate("SettingsDialog", "Active models (read-only)"))
        info_lay = QVBoxLayout(info_box)
        self.models_info = QTextBrowser()
        self.models_info.setOpenLinks(False)
        self.models_info.setHtml(models_info_html)
        self.models_info.setMinimumHeight(160)
        info_lay.addWidget(self.models_info)
        row = QHBoxLayout()
        self.retrain_button = QPushButton(translate("SettingsDialog", "Retrain models…"))
        self.retrain_button.clicked.connect(open_retrain)
        self.rollback_button = QPushButton(translate("SettingsDialog", "Roll back to previous models"))
        self.rollback_button.setEnabled(can_rollback)
        self.rollback_button.clicked.connect(rollback)
        row.addWidget(self.retrain_button)
        row.addWidget(self.rollback_button)
        row.addStretch(1)
        info_lay.addLayout(row)
        layout.addWidget(info_box)
        layout, scroll = scrolling_body(self, body)

        self.error_label = QLabel()
        self.error_label.setStyleSheet("color:#c62828;")
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        layout.addWidget(self.error_label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
                                   | QDialogButtonBox.StandardButton.RestoreDefaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self.restore_defaults)
        layout.addWidget(buttons)
        self.result_settings: Settings | None = None
        width = body.sizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 30
        height = body.sizeHint().height() + buttons.sizeHint().height() + 40
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is not None:  # never larger than the screen (a 1366x768 laptop): the form scrolls instead
            room = screen.availableGeometry()
            width, height = min(width, room.width() - 40), min(height, room.height() - 60)
        self.resize(width, height)

    def set_models_info(self, html: str, can_rollback: bool) -> None:
        self.models_info.setHtml(html)
        self.rollback_button.setEnabled(can_rollback)

    def values(self) -> Settings:
        """The edited settings, validated like the file (raises ValueError naming the bad one)."""
        return updated(self.original, **{name: get() for name, get in self._getters.items()})

    def restore_defaults(self) -> None:
        defaults = Settings()
        for f in fields(Settings):
            widget, getter = editor_for(f, getattr(defaults, f.name))
            old = self.editors[f.name]
            parent = old.parentWidget()
            form = parent.layout() if parent is not None else None
            if not isinstance(form, QFormLayout):
                raise RuntimeError(f"editor for {f.name} is not in a form")
            form.replaceWidget(old, widget)
            widget.setObjectName(old.objectName())
            widget.setToolTip(old.toolTip())
            old.deleteLater()
            self.editors[f.name] = widget
            self._getters[f.name] = getter

    def accept(self) -> None:
        try:
            self.result_settings = self.values()
        except ValueError as e:
            self.error_label.setText(translate("SettingsDialog", "Cannot save: {error}").format(error=e))
            self.error_label.show()
            return
        super().accept()


def set_editor_value(widget: QWidget, value: Any) -> None:
    """Set an editor built by `editor_for` (tests and programmatic use)."""
    if isinstance(widget, ChoiceCombo):
        widget.set_value(value)
    elif isinstance(widget, QCheckBox):
        widget.setChecked(bool(value))
    elif isinstance(widget, QDoubleSpinBox | QSpinBox):
        widget.setValue(value)
    elif isinstance(widget, _PathEdit):
        widget.edit.setText(str(value))
    elif isinstance(widget, QLineEdit):
        widget.setText(str(value))
    else:
        raise TypeError(f"no setter for {type(widget).__name__}")

