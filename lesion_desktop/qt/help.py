"""Help > Instructions for use (F1) and the About box: plain language first, the ML detail one click away.

Both are ordinary non-modal dialogs sized to fit a 1366x768 screen; their text scrolls instead of pushing
the buttons off-screen.
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QPushButton,
    QScrollArea,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from lesion_desktop.qt.help_text import INSTRUCTIONS, INSTRUCTIONS_TITLE

translate = QCoreApplication.translate  # a literal context and text in each call: pyside6-lupdate finds them


def fit_to_screen(dialog: QDialog, width: int, height: int) -> None:
    """The wished size, or less on a small screen (a 1366x768 laptop): the content scrolls instead."""
    screen = dialog.screen() or QGuiApplication.primaryScreen()
    if screen is not None:
        room = screen.availableGeometry()
        width, height = min(width, room.width() - 40), min(height, room.height() - 60)
    dialog.resize(width, height)


def scrolling_body(dialog: QDialog, body: QWidget) -> tuple[QVBoxLayout, QScrollArea]:
    """`dialog`'s layout with `body` in a vertical scroll area: the dialog fits small screens, and wrapped labels
    cannot squeeze the form. Returns the layout (for the buttons below the scrolling part) and the area."""
    scroll = QScrollArea()
    scroll.setWidget(body)
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QScrollArea.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    layout = QVBoxLayout(dialog)
    layout.addWidget(scroll, 1)
    return layout, scroll


def _browser(parent: QWidget) -> QTextBrowser:
    b = QTextBrowser(parent)
    b.setOpenExternalLinks(False)  # the program opens nothing on the network
    b.setOpenLinks(False)
    return b


class InstructionsDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(translate("Instructions", INSTRUCTIONS_TITLE))
        self.browser = _browser(self)
        self.browser.setMarkdown(translate("Instructions", INSTRUCTIONS))  # the clinic's translation, where it has one
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser, 1)
        layout.addWidget(buttons)
        fit_to_screen(self, 820, 720)

    def text(self) -> str:
        """What the reader sees, as plain text."""
        return self.browser.toPlainText()


class AboutDialog(QDialog):
    """About Lesion Desktop: what it is, in plain words; "Technical details" shows the models' manifests' figures."""

    def __init__(self, plain_html: str, technical_html: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(translate("Help", "About Lesion Desktop"))
        self.browser = _browser(self)
        self.browser.setHtml(plain_html)
        self.details = _browser(self)
        self.details.setHtml(technical_html)
        self.details.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.details_button = QPushButton(translate("Help", "Technical details"))
        self.details_button.setCheckable(True)
        self.details_button.toggled.connect(self._show_details)
        buttons.addButton(self.details_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser, 2)
        layout.addWidget(self.details, 3)
        layout.addWidget(buttons)
        fit_to_screen(self, 640, 480)

    def _show_details(self, on: bool) -> None:
        self.details.setVisible(on)
        self.details_button.setText(translate("Help", "Hide technical details") if on
                                    else translate("Help", "Technical details"))
        fit_to_screen(self, 760 if on else 640, 720 if on else 480)

    def text(self) -> str:
        """The plain-language part, as the reader sees it."""
        return self.browser.toPlainText()

    def details_text(self) -> str:
        return self.details.toPlainText()


def open_dialog(dialog: QDialog) -> QDialog:
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog
