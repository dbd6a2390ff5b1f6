"""The window in the clinic's language: Qt Linguist translations (.qm files) loaded at start.

A clinic adds a language without rebuilding the program: it puts `lesion_desktop_<language>.qm` (for example
`lesion_desktop_de.qm`) into the `translations` folder of the program's configuration folder, or a release
ships it in `resources/translations`. The language is the system's, or `LESION_DESKTOP_LANGUAGE` (for
example `de` or `pt_BR`). Qt's own strings (standard buttons, file dialogs) come from Qt's translations.
See docs/translations.md for how a translation is made.
"""

from __future__ import annotations

import logging
import os
import string
from importlib import resources
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QLibraryInfo, QLocale, QTranslator

from lesion_desktop import analysis, imageio, scope, store  # noqa: F401 - importing them marks their sentences
from lesion_desktop.classes import CLASSES, DIAGNOSIS, LesionClass, by_code
from lesion_desktop.paths import config_dir
from lesion_desktop.wording import recognise, render

log = logging.getLogger(__name__)
LANGUAGE_ENV = "LESION_DESKTOP_LANGUAGE"
CATALOGUE = "lesion_desktop"  # lesion_desktop_<language>.qm


def translation_folders() -> list[Path]:
    """Where the program's .qm files are looked for, first match wins: the clinic's folder, then the shipped one."""
    folders = [config_dir() / "translations"]
    try:
        shipped = resources.files("lesion_desktop.resources") / "translations"
        folders.append(Path(str(shipped)))
    except (ModuleNotFoundError, TypeError):  # a source tree without the resources package mapping
        pass
    return folders


def placeholders(text: str) -> set[str] | None:
    """The `{name}` fields of a message; None when its braces do not parse (a translation cannot be formatted)."""
    try:
        return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
    except ValueError:
        return None


class CheckedTranslator(QTranslator):
    """A clinic's translation, with each message's placeholders checked against the English source.

    The program fills `{name}` fields in after translating; a translation that misspells, drops or adds one would
    raise at that moment (or show a raw `{field}`). Such a message is not used: Qt then shows the English
    source, and the log names the message once, so the translator can mend it.
    """

    def __init__(self, parent: QCoreApplication | None = None) -> None:
        super().__init__(parent)
        self._reported: set[tuple[str, str]] = set()

    def translate(self, context: str, source: str, disambiguation: str | None = None,
                  n: int = -1) -> str | None:
        text = super().translate(context, source, disambiguation, n)
        if not text:  # not in this file: None, so Qt asks the next translator or shows the source. An empty
            return None  # string would be taken as the translation: every message the file lacks shown blank
        if text == source:
            return text
        wanted = placeholders(source)
        if wanted is None or placeholders(text) == wanted:
            return text
        if (context, source) not in self._reported:
            self._reported.add((context, source))
            log.warning("Translation %s: the text for %r (%s) has other {placeholders} than the English one; the "
                        "English text is shown", self.filePath(), source, context)
        return source  # (an empty string from Python would be shown as it is, not as "no translation")


def install_translations(app: QCoreApplication, language: str | None = None) -> list[QTranslator]:
    """Install Qt's and the program's translations for `language` (default: $LESION_DESKTOP_LANGUAGE or the
    system's); returns the installed translators (the caller may remove them again)."""
    name = language or os.environ.get(LANGUAGE_ENV) or QLocale.system().name()
    locale = QLocale(name)
    installed: list[QTranslator] = []
    qt = QTranslator(app)
    if qt.load(locale, "qtbase", "_", QLibraryInfo.path(QLibraryInfo.LibraryPath.TranslationsPath)):
        app.installTranslator(qt)
        installed.append(qt)
    for folder in translation_folders():
        own = CheckedTranslator(app)
        if folder.is_dir() and own.load(locale, CATALOGUE, "_", str(folder)):
            app.installTranslator(own)
            installed.append(own)
            log.info("Translation %s loaded for %s", own.filePath(), locale.name())
            break
    return installed


def tr_core(text: str) -> str:
    """A sentence of the core (the assessment, the scope gate's reasons, the image-quality warnings) in the
    clinic's language, where the translation has it; any other string as it is. See lesion_desktop.wording."""
    return render(recognise(text), QCoreApplication.translate)


def diagnosis_name(which: LesionClass | str | int, form: str = "name") -> str:
    """A diagnosis's name in the clinic's language (context "Diagnosis"), for display only: the history, the CSV
    files and the command line keep the English names. `which` is a class, its code ('mel') or its index;
    `form` is "name" (the full name), "short" (without its parenthesis) or "brief" (the shortest, for a narrow
    list). See lesion_desktop.classes."""
    c = which if isinstance(which, LesionClass) else CLASSES[which] if isinstance(which, int) else by_code(which)
    english = {"name": c.name, "short": c.short_name, "brief": c.brief_name}[form]
    return QCoreApplication.translate(DIAGNOSIS, english)
