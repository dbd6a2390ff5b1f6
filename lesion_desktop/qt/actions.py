"""The main window's actions, menus and toolbar, declared in one place with their standard shortcuts."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QStyle, QToolBar

Std = QKeySequence.StandardKey
translate = QCoreApplication.translate  # a literal context and text in each call: pyside6-lupdate finds them


@dataclass
class Actions:
    open: QAction
    paste: QAction
    camera: QAction
    capture: QAction
    export_pdf: QAction
    quit: QAction
    heatmap: QAction
    history: QAction
    settings: QAction
    retrain: QAction
    instructions: QAction
    about: QAction


def _action(win: QMainWindow, text: str, *keys: QKeySequence | Std | str, tip: str = "",
            icon: QStyle.StandardPixmap | None = None, checkable: bool = False) -> QAction:
    a = QAction(text, win)
    seqs = []
    for k in keys:
        seqs.extend(QKeySequence.keyBindings(k) if isinstance(k, Std) else [QKeySequence(k)])
    unique = {s.toString(): s for s in seqs if not s.isEmpty()}  # Std.Quit is Ctrl+Q already on Linux
    a.setShortcuts(list(unique.values()))
    if a.shortcuts():
        key = a.shortcuts()[0].toString(QKeySequence.SequenceFormat.NativeText)
        tip = translate("Actions", "{tip} ({key})").format(tip=tip or text.replace("…", "").replace("&", ""), key=key)
    a.setToolTip(tip or text.replace("&", ""))
    a.setStatusTip(tip)
    if icon is not None:
        a.setIcon(win.style().standardIcon(icon))
    a.setCheckable(checkable)
    win.addAction(a)  # shortcuts work even when the menu bar is hidden
    return a


def build_actions(win: QMainWindow, history_toggle: QAction) -> Actions:
    sp = QStyle.StandardPixmap
    history_toggle.setText(translate("Actions", "&History"))
    history_toggle.setShortcut(QKeySequence("Ctrl+Shift+H"))
    return Actions(
        open=_action(win, translate("Actions", "&Open image…"), Std.Open,
                     tip=translate("Actions", "Open an image file"), icon=sp.SP_DialogOpenButton),
        paste=_action(win, translate("Actions", "&Paste image"), Std.Paste,
                      tip=translate("Actions", "Classify the image or image file on the clipboard")),
        camera=_action(win, translate("Actions", "&Live camera"), "Ctrl+L",
                       tip=translate("Actions", "Start or stop the camera preview"), icon=sp.SP_MediaPlay,
                       checkable=True),
        capture=_action(win, translate("Actions", "&Capture"), "Space", "Ctrl+Shift+C",
                        tip=translate("Actions", "Capture the camera image and classify it"),
                        icon=sp.SP_DialogApplyButton),
        export_pdf=_action(win, translate("Actions", "&Export PDF report…"), "Ctrl+E",
                           tip=translate("Actions", "Save the current result as a PDF report"),
                           icon=sp.SP_DialogSaveButton),
        quit=_action(win, translate("Actions", "&Quit"), Std.Quit, "Ctrl+Q"),
        heatmap=_action(win, translate("Actions", "Show &heat-map"), "Ctrl+H",
                        tip=translate("Actions", "Overlay the heat-map on the network input"), checkable=True),
        history=history_toggle,
        settings=_action(win, translate("Actions", "&Settings…"), Std.Preferences, "Ctrl+,",
                         icon=sp.SP_FileDialogDetailedView),
        retrain=_action(win, translate("Actions", "&Retrain models…"),
                        tip=translate("Actions", "Fine-tune new models on your own data")),
        instructions=_action(win, translate("Actions", "&Instructions for use"), Std.HelpContents, "F1",
                             tip=translate("Actions", "What the program is for and not for, and how to read its "
                                           "results")),
        about=_action(win, translate("Actions", "&About Lesion Desktop"),
                      tip=translate("Actions", "Version, models in use and their figures")),
    )


def build_menus(win: QMainWindow, a: Actions) -> QToolBar:
    bar = win.menuBar()
    file_menu = bar.addMenu(translate("Actions", "&File"))
    file_menu.setObjectName("fileMenu")  # found by name (patient_bar.py adds to it): its title may be translated
    for act in (a.open, a.paste, None, a.camera, a.capture, None, a.export_pdf, None, a.quit):
        file_menu.addSeparator() if act is None else file_menu.addAction(act)
    view = bar.addMenu(translate("Actions", "&View"))
    view.addAction(a.heatmap)
    view.addAction(a.history)
    tools = bar.addMenu(translate("Actions", "&Tools"))
    tools.addAction(a.settings)
    tools.addAction(a.retrain)
    help_menu = bar.addMenu(translate("Actions", "&Help"))
    help_menu.addAction(a.instructions)
    help_menu.addAction(a.about)
    tb = QToolBar(translate("Actions", "Main toolbar"), win)
    tb.setObjectName("mainToolbar")
    tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    for act in (a.open, a.paste, None, a.camera, a.capture, None, a.heatmap, a.export_pdf, None, a.settings):
        tb.addSeparator() if act is None else tb.addAction(act)
    win.addToolBar(tb)
    return tb
