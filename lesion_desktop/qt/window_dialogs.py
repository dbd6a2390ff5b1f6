"""The main window's dialogs: settings, retraining, roll-back and About.

Kept apart so the window module stays about input and results. Owned by the window and parented to
it; everything it changes goes back through the window's own methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QCoreApplication, QObject, Qt
from PySide6.QtWidgets import QMessageBox

from lesion_desktop.edition import is_lite
from lesion_desktop.errors import BundleError
from lesion_desktop.qt.about import about_html, models_html, technical_html
from lesion_desktop.qt.help import AboutDialog, InstructionsDialog, open_dialog
from lesion_desktop.qt.settings_dialog import SettingsDialog
from lesion_desktop.qt.translations import tr_core
from lesion_desktop.settings import Settings
from lesion_desktop.store import unvalidated_note

if TYPE_CHECKING:
    from lesion_desktop.qt.main_window import MainWindow
    from lesion_desktop.qt.retrain_dialog import RetrainDialog

translate = QCoreApplication.translate  # a literal context and text in each call: pyside6-lupdate finds them


class WindowDialogs(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.w = window
        self.settings_dialog: SettingsDialog | None = None
        self.retrain_dialog: RetrainDialog | None = None
        self.about_box: AboutDialog | None = None
        self.instructions: InstructionsDialog | None = None

    def _models_html(self) -> str:
        return models_html(self.w.engine, self.w.models_dir(), self.w.holder.error)

    def open_settings(self) -> SettingsDialog:
        w = self.w
        dlg = SettingsDialog(w.settings, self._models_html(), open_retrain=self.open_retrain,
                             rollback=self.rollback_models, can_rollback=w.model_store.has_previous(), parent=w)
        dlg.retrain_button.setVisible(not is_lite())  # retraining needs PyTorch: the full edition's
        dlg.accepted.connect(lambda: self.apply_settings(dlg.result_settings))
        dlg.finished.connect(lambda _r: setattr(self, "settings_dialog", None))
        self.settings_dialog = dlg
        dlg.open()
        return dlg

    def apply_settings(self, new: Settings | None) -> None:
        w = self.w
        if new is None:
            return
        old = w.settings
        if not w.save_settings(new):
            return
        if (new.device, new.tta, new.models_dir) != (old.device, old.tta, old.models_dir):
            w.reload_engine()
        camera_keys = ("camera_index", "camera_resolution", "camera_video")
        if w.camera is not None and any(getattr(new, k) != getattr(old, k) for k in camera_keys):
            w.stop_camera()
            w.set_camera_on(True)
        w.actions_.heatmap.setChecked(new.show_heatmap)
        w.apply_display_settings()

    def open_retrain(self) -> RetrainDialog:
        from lesion_desktop.qt.retrain_dialog import RetrainDialog  # imports PyTorch: only in the full edition

        w = self.w
        if self.retrain_dialog is None:
            self.retrain_dialog = RetrainDialog(
                w.model_store, device=lambda: w.settings.device,
                active_dir=lambda: w.engine.ensemble.path if w.engine is not None else None,
                override_note=self.override_note, records=w.store, parent=w)
            self.retrain_dialog.models_changed.connect(self.on_models_changed)
        dlg = self.retrain_dialog
        dlg.show()
        dlg.raise_()
        dlg.activateWindow()
        return dlg

    def override_note(self) -> str:
        if self.w.chosen_models_dir() is not None:
            return translate("WindowDialogs", "Note: a models folder is named in Settings (or on the command line) and "
                             "takes precedence: installed models are used only once it is cleared.")
        return ""

    def rollback_models(self) -> None:
        answer = QMessageBox.question(self.w, translate("WindowDialogs", "Roll back"),
                                      translate("WindowDialogs", "Restore the models in use before the last "
                                                "installation?"))
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            self.w.model_store.rollback()
        except BundleError as e:
            self.w.show_error(str(e))
            return
        self.on_models_changed()

    def on_models_changed(self) -> None:
        """After install or roll-back: reload in the worker, then refresh an open settings dialog."""
        self.w.reload_engine()
        if self.settings_dialog is not None:
            self.w.engine_changed.connect(self._refresh_settings_info, Qt.ConnectionType.SingleShotConnection)

    def _refresh_settings_info(self) -> None:
        if self.settings_dialog is not None:
            self.settings_dialog.set_models_info(self._models_html(), self.w.model_store.has_previous())

    def show_about(self) -> AboutDialog:
        w = self.w
        path = w.engine.ensemble.path if w.engine is not None else None
        box = AboutDialog(about_html(w.engine, w.models_dir(), w.holder.error, w.settings.warning_threshold,
                                     tr_core(unvalidated_note(path))),
                          technical_html(w.engine, w.models_dir(), w.holder.error), w)
        self.about_box = box
        open_dialog(box)
        return box

    def show_instructions(self) -> InstructionsDialog:
        if self.instructions is None:
            self.instructions = InstructionsDialog(self.w)
        open_dialog(self.instructions)
        return self.instructions

    def shutdown(self) -> None:
        if self.retrain_dialog is not None:
            self.retrain_dialog.shutdown()
