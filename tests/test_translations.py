"""Every string the program shows can be translated by a clinic (issue 18, point 9; docs/translations.md).

Three checks, from the translator's side to the user's:
- pyside6-lupdate, which a clinic runs, lists exactly the sentences the core marks at run time (the core has no
  Qt: it marks them with its own QT_TRANSLATE_NOOP), under the contexts they are looked up with;
- a pseudo-translation of everything lupdate lists ("‹source›") is loaded, the window, its dialogs and the PDF
  report are opened, and every text they show must have come through it: a string left out of `translate`, or
  looked up under another context than lupdate saw, shows up without the marks;
- a small German file changes the records dialogs and the assessment, in the window and the PDF alike;
and a scan of the converted modules' source for literal text handed to a widget without `translate`.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QGroupBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QTableWidget,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QWidget,
)

from lesion_desktop import wording
from lesion_desktop.classes import CLASSES
from lesion_desktop.paths import config_dir
from lesion_desktop.records import RecordStore
from lesion_desktop.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
QT_DIR = ROOT / "lesion_desktop" / "qt"
# the core modules whose sentences the window translates (they mark them with lesion_desktop.wording)
# (and training's comparison: the retrain dialog's verdict, context "RetrainVerdict"; relative to lesion_desktop/)
CORE_MODULES = ["analysis.py", "classes.py", "scope.py", "imageio.py", "records.py", "settings.py", "store.py",
                "../training/comparison.py"]
# the window's modules whose user-visible strings go through translate / self.tr (retrain_dialog.py: its own test)
CONVERTED = ["about.py", "actions.py", "camera.py", "help.py", "help_text.py", "history_panel.py", "main_window.py",
             "patient_bar.py", "patient_bodymap.py", "patient_dialog.py", "patient_exam_dialog.py", "report_pdf.py",
             "result_panel.py", "settings_dialog.py", "timeline_dialog.py", "widgets.py", "window_dialogs.py"]
OPEN, CLOSE = "‹", "›"


def _qt_tool(name: str) -> str:
    tool = Path(sys.executable).with_name(name)
    found = str(tool) if tool.exists() else shutil.which(name)
    assert found, f"{name} (PySide6's Qt Linguist tools) is needed to make a translation"
    return found


def _lupdate(files: list[Path], ts: Path) -> list[tuple[str, str]]:
    """(context, source) of every message pyside6-lupdate finds in `files`, as a clinic's translator gets them."""
    subprocess.run([_qt_tool("pyside6-lupdate"), *map(str, files), "-ts", str(ts)], check=True, capture_output=True)
    return [(c.findtext("name") or "", m.findtext("source") or "") for c in ET.parse(ts).getroot().iter("context")
            for m in c.iter("message")]


def _install(qapp, ts_text: str, language: str, tmp_path: Path) -> list:
    """Compile `ts_text` into the clinic's translations folder and load it, as the program does at start."""
    from lesion_desktop.qt.translations import install_translations

    ts = tmp_path / f"lesion_desktop_{language}.ts"
    ts.write_text(ts_text, encoding="utf-8")
    folder = config_dir() / "translations"
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([_qt_tool("pyside6-lrelease"), str(ts), "-qm", str(folder / f"lesion_desktop_{language}.qm")],
                   check=True, capture_output=True)
    translators = install_translations(qapp, language)
    assert any(t.filePath().endswith(f"lesion_desktop_{language}.qm") for t in translators)
    return translators


# ---- what the translator gets ------------------------------------------------------------------------------------
def test_lupdate_lists_exactly_the_sentences_the_core_marks_without_qt(tmp_path):
    from lesion_desktop import analysis, classes, imageio, records, scope, settings  # noqa: F401 - they mark
    from training import comparison  # noqa: F401 - it marks the retrain dialog's verdict

    found = _lupdate([ROOT / "lesion_desktop" / m for m in CORE_MODULES], tmp_path / "core.ts")
    marked = set(wording.templates())
    assert set(found) == marked  # same text (implicit concatenation included) and same context, nothing missed
    for pair in [("Assessment", "⚠ Possible malignancy: {probability}"), ("Scope", scope.ADVICE),
                 ("ImageQuality", imageio.TOO_DARK), ("Records", "{n} stored images"), ("Settings", "Compute device"),
                 ("RetrainVerdict", "The new models are better than the active ones {on}: {figures}.")]:
        assert pair in marked, pair
    for c in classes.CLASSES:  # every form of a diagnosis's name the window shows is listed for the translator
        for form in (c.name, c.short_name, c.brief_name):
            assert ("Diagnosis", form) in marked, form
    assert "PySide6" not in sys.modules.get("lesion_desktop.wording").__dict__  # the marker is the core's own


def test_core_sentences_render_in_another_language_and_stay_english_for_the_cli():
    from lesion_desktop.analysis import CANNOT_RULE_OUT, MALIGNANT_NAMES, assess
    from lesion_desktop.imageio import TOO_BRIGHT
    from lesion_desktop.scope import REASONS, reason_for

    assert str(wording.Phrase("actinic keratosis, basal cell carcinoma, melanoma")) == MALIGNANT_NAMES
    bright = wording.Phrase(TOO_BRIGHT, clipped="40%")
    a = assess(0.1, "nv", 0.3, quality_warnings=[bright])
    assert a.level == CANNOT_RULE_OUT and "(the image is too bright (over-exposed): 40% of it" in a.text
    fake = {TOO_BRIGHT: "Zu hell: {clipped} weiß.", "The image quality is poor ({problems}): retake it.":
            "Bildqualität schlecht ({problems}): neu aufnehmen."}

    def tr(_context: str, text: str) -> str:
        return fake.get(text, text)

    assert wording.render(a.text, tr).startswith("Bildqualität schlecht (zu hell: 40% weiß): neu aufnehmen. From")
    # read back from the history as plain strings (JSON), they are recognised and translate the same
    stored = [str(bright)]
    again = assess(0.1, "nv", 0.3, quality_warnings=stored)
    assert again.text == a.text and wording.render(again.text, tr) == wording.render(a.text, tr)
    out = assess(0.5, "mel", 0.3, out_of_scope=str(reason_for("grey")))
    assert ("Scope", REASONS["grey"]) in wording.phrases(out.text)
    # a translation with a mistyped placeholder cannot break the window: the name stays, in braces
    assert wording.render(bright, lambda c, t: "Zu hell: {clip}") == "Zu hell: {clip}"


# ---- what the user sees -------------------------------------------------------------------------------------------
def _pseudo_ts(pairs: list[tuple[str, str]]) -> str:
    """Every message 'translated' as ‹source›: placeholders, HTML and Markdown are kept as they are."""
    root = ET.Element("TS", version="2.1", language="eo")
    contexts: dict[str, ET.Element] = {}
    for context, source in pairs:
        if context not in contexts:
            contexts[context] = ET.SubElement(root, "context")
            ET.SubElement(contexts[context], "name").text = context
        m = ET.SubElement(contexts[context], "message")
        ET.SubElement(m, "source").text = source
        ET.SubElement(m, "translation").text = f"{OPEN}{source}{CLOSE}"
    return '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE TS>\n' + ET.tostring(root, encoding="unicode")


def _shown_texts(widget: QWidget) -> list[tuple[str, str]]:
    """(where, text) of every text a user can read in `widget` and its children: labels, buttons, group titles,
    placeholders, list, tree, table and combo items, tool tips, the window title."""
    out: list[tuple[str, str]] = [("title", widget.windowTitle())] if widget.isWindow() else []
    for w in [widget, *widget.findChildren(QWidget)]:
        name = type(w).__name__
        if w.toolTip():
            out.append((f"{name} tooltip", w.toolTip()))
        if isinstance(w, QLabel | QAbstractButton):
            out.append((name, w.text()))
        if isinstance(w, QGroupBox):
            out.append((name, w.title()))
        if isinstance(w, QLineEdit | QPlainTextEdit):
            out.append((f"{name} placeholder", w.placeholderText()))
        if isinstance(w, QComboBox):
            out += [(f"{name} item", w.itemText(i)) for i in range(w.count())]
        if isinstance(w, QListWidget):
            out += [(f"{name} item", w.item(i).text()) for i in range(w.count())]
        if isinstance(w, QTableWidget):
            out += [(f"{name} header", w.horizontalHeaderItem(i).text()) for i in range(w.columnCount())]
            out += [(f"{name} cell", w.item(r, 0).text()) for r in range(w.rowCount()) if w.item(r, 0)]
        if isinstance(w, QTreeWidget):
            stack: list[QTreeWidgetItem] = [w.topLevelItem(i) for i in range(w.topLevelItemCount())]
            while stack:
                item = stack.pop()
                out += [(f"{name} item", item.text(0)), (f"{name} tooltip", item.toolTip(0))]
                stack += [item.child(i) for i in range(item.childCount())]
        if isinstance(w, QTextBrowser):
            out.append((name, w.toPlainText()[:200]))
    return out


# texts that are data, not the program's words: numbers, keys; and Qt's standard buttons, which Qt's own catalogue
# translates (there is none for this pseudo-language). The diagnoses' names are not among them: they are shown
# translated (stored in English)
_DATA = {"CPU", "✕"} | {"OK", "Cancel", "Close", "Save", "Restore Defaults", "&OK", "&Cancel", "&Close", "&Save"}


def _untranslated(texts: list[tuple[str, str]], data: set[str]) -> list[tuple[str, str]]:
    skip = _DATA | data
    return [(where, t) for where, t in texts
            if t and re.search(r"[A-Za-z]{2}", t) and OPEN not in t and t not in skip
            and not re.fullmatch(r"[\d x]+", t)]


def _painted(monkeypatch) -> list[str]:
    """Every text the PDF report's painter draws: its probability rows and comparison table are drawn directly."""
    from PySide6.QtGui import QPainter

    from lesion_desktop.qt import report_pdf

    texts: list[str] = []

    class Recording(QPainter):
        def drawText(self, *args):  # noqa: N802 - Qt API
            texts.extend(a for a in args if isinstance(a, str))
            return super().drawText(*args)

    monkeypatch.setattr(report_pdf, "QPainter", Recording)
    return texts


def _records(store: RecordStore) -> tuple[int, int]:
    """A patient with one lesion examined twice (no words of their own: IDs and numbers)."""
    rgb = np.full((60, 80, 3), 120, np.uint8)
    patient = store.add_patient("4711", "")
    lesion = store.add_lesion(patient.id, "back", "")
    probs = np.array([0.3, 0.1, 0.05, 0.4, 0.1, 0.03, 0.02])
    store.add(rgb, probs, source_name="1", model_version="tiny-test-ensemble", lesion_id=lesion.id)
    second = store.add(rgb, probs[::-1].copy(), source_name="2", model_version="tiny-test-ensemble",
                       lesion_id=lesion.id)
    store.set_histopathology(second.id, "mel", "", "")
    return lesion.id, second.id


def test_every_text_of_the_window_its_dialogs_and_the_report_goes_through_translation(qtbot, qapp, make_window,
                                                                                    tmp_path, monkeypatch):
    from lesion_desktop.qt import report_pdf
    from lesion_desktop.qt.patient_dialog import PatientDialog, PatientForm
    from lesion_desktop.qt.patient_exam_dialog import ExaminationDialog
    from lesion_desktop.qt.timeline_dialog import TimelineDialog

    pairs = _lupdate([*(QT_DIR / f for f in CONVERTED), *(ROOT / "lesion_desktop" / m for m in CORE_MODULES)],
                     tmp_path / "all.ts")
    assert len(pairs) > 400 and all(context for context, _ in pairs)
    translators = _install(qapp, _pseudo_ts(pairs), "eo", tmp_path)
    try:
        store = RecordStore()
        lesion_id, exam_id = _records(store)
        w = make_window()
        data = {"4711", "tiny-test-ensemble"}
        missed = _untranslated(_shown_texts(w), data)
        menus = [a for a in w.menuBar().actions()] + [a for m in w.menuBar().actions() for a in m.menu().actions()]
        missed += [("menu", a.text()) for a in menus if a.text() and OPEN not in a.text()]
        missed += [("action tip", a.toolTip()) for a in menus if a.toolTip() and OPEN not in a.toolTip()]
        # a poor image: the assessment (the core's words) and the quality warnings, in the window and the PDF
        with qtbot.waitSignal(w.result_shown, timeout=300_000):
            w.classify(np.random.default_rng(0).integers(0, 40, (100, 120, 3), dtype=np.uint8), "7")
        panel = w.result_panel
        for label in (panel.alert_headline, panel.alert_text, panel.top_label, panel.quality_label,
                      panel.agreement_label):
            assert OPEN in label.text(), label.text()
        assert panel.alert_text.text().count(OPEN) >= 3  # the poor-image sentence, each warning, the verdict
        # the diagnoses' names: the chart (drawn, and its text for a screen reader) and the heat-map's choice
        chart = panel.chart
        assert all(line.startswith(OPEN) for line in chart.text().splitlines()), chart.text()
        assert all(lines[0].startswith(OPEN) for lines in chart.name_lines(chart.width()))
        painted = _painted(monkeypatch)
        drawn: list[str] = []
        text, boxed = report_pdf._Page.text, report_pdf._Page.boxed
        monkeypatch.setattr(report_pdf._Page, "text", lambda s, t, *a, **k: (drawn.append(t), text(s, t, *a, **k)))
        monkeypatch.setattr(report_pdf._Page, "boxed", lambda s, t, *a, **k: (drawn.append(t), boxed(s, t, *a, **k)))
        assert w.export_pdf(tmp_path / "r.pdf") is not None
        assert f"{panel.alert_headline.text()}\n{panel.alert_text.text()}" in drawn  # the window's words, translated
        missed += [("PDF", t) for t in drawn if OPEN not in t]
        rows = [t for t in painted if t.split("  ")[0] in {c.code for c in CLASSES}]
        assert len(rows) == len(CLASSES) and all(f"  {OPEN}" in t for t in rows), rows  # the probability rows
        w.history.refresh(select_id=exam_id)
        missed += _untranslated(_shown_texts(w.history), data)
        # the records dialogs, opened as the buttons open them
        dialogs = [PatientDialog(store, w, patient_id=store.get_lesion(lesion_id).patient_id, lesion_id=lesion_id),
                   PatientForm(store, store.get_patient(store.get_lesion(lesion_id).patient_id), w),
                   ExaminationDialog(store, store.get(exam_id), "", w), TimelineDialog(store, lesion_id, 10.0, w),
                   w.open_settings(), w.show_about(), w.show_instructions()]
        drawn.clear()
        painted.clear()
        w.records_ui.comparison_report(exam_id, exam_id - 1, tmp_path / "pair.pdf")
        missed += [("comparison PDF", t) for t in drawn if OPEN not in t]
        rows = [t for t in painted if t.split("  ")[0] in {c.code for c in CLASSES}]
        assert len(rows) >= 2 * len(CLASSES) and all(f"  {OPEN}" in t for t in rows), rows  # both tables
        for dlg in dialogs:
            texts = _shown_texts(dlg)
            assert len(texts) >= 3, type(dlg).__name__
            missed += [(f"{type(dlg).__name__}: {where}", t) for where, t in _untranslated(texts, data)]
            dlg.close()
        about = w.dialogs.about_box
        assert about is not None and about.details_text().count(OPEN) > 3
        assert not missed, "shown without going through translation:\n" + "\n".join(f"{a}: {b!r}" for a, b in missed)
    finally:
        for t in translators:
            qapp.removeTranslator(t)


def test_the_records_dialogs_and_the_assessment_in_german(qtbot, qapp, make_window, tiny_models, tmp_path,
                                                          monkeypatch):
    """What a clinic does (docs/translations.md): a .qm in its translations folder; dialogs and the core's words
    change, in the window and in its PDF alike."""
    from lesion_desktop.imageio import TOO_DARK, TOO_SMALL
    from lesion_desktop.qt import report_pdf
    from lesion_desktop.qt.main_window import MainWindow
    from lesion_desktop.qt.patient_dialog import PatientDialog, PatientForm
    from lesion_desktop.qt.patient_exam_dialog import ExaminationDialog

    german = {
        "PatientDialog": {"New patient": "Neuer Patient", "Patient ID": "Patienten-ID",
                          "New lesion: click where it is": "Neue Läsion: dorthin klicken, wo sie ist"},
        "ExaminationDialog": {"Histopathology": "Histopathologie", "Excise or biopsy": "Exzision oder Biopsie"},
        "BodySite": {"back": "Rücken"},
        "Records": {"Choose patient…": "Patient wählen…"},
        "Actions": {"&File": "&Datei"},
        "Analysis": {"Loading the models from {where}…": "Die Modelle werden geladen aus {where}…",
                     "the active model store": "dem Modellspeicher"},
        "Assessment": {"⚠ This image cannot rule out malignancy": "⚠ Dieses Bild kann Malignität nicht ausschließen",
                       "actinic keratosis, basal cell carcinoma, melanoma":
                           "aktinische Keratose, Basalzellkarzinom, Melanom",
                       "The image quality is poor ({problems}): retake it.":
                           "Die Bildqualität ist schlecht ({problems}): bitte neu aufnehmen."},
        "ImageQuality": {TOO_DARK: "Das Bild ist zu dunkel (unterbelichtet); Details der Läsion können verborgen sein.",
                         TOO_SMALL: "Das Bild hat nur {width} x {height} Pixel; nötig sind mindestens {long_side} x "
                                    "{short_side}."},
        "Diagnosis": GERMAN_DIAGNOSES,
    }
    body = "".join(f"<context><name>{c}</name>" + "".join(
        f"<message><source>{_xml(s)}</source><translation>{_xml(t)}</translation></message>" for s, t in m.items())
        + "</context>" for c, m in german.items())
    translators = _install(qapp, f'<?xml version="1.0" encoding="utf-8"?><!DOCTYPE TS><TS version="2.1" '
                                 f'language="de">{body}</TS>', "de", tmp_path)
    try:
        store = RecordStore()
        lesion_id, exam_id = _records(store)
        shown: list[str] = []
        idle_status = MainWindow._show_idle_status
        monkeypatch.setattr(MainWindow, "_show_idle_status", lambda self, t: shown.append(t))
        w = make_window(Settings(device="cpu", warning_threshold=0.99))  # the bundled models, from the model store
        assert "Die Modelle werden geladen aus dem Modellspeicher…" in shown  # the core's progress, translated
        # (not monkeypatch.undo(): that would also undo conftest's per-test home, and the next window's history
        # would be the user's own)
        monkeypatch.setattr(MainWindow, "_show_idle_status", idle_status)
        w.close()
        w = make_window(Settings(models_dir=str(tiny_models), device="cpu", warning_threshold=0.99))
        assert w.records_ui.bar.choose_button.text() == "Patient wählen…"
        assert w.menuBar().actions()[0].text() == "&Datei"
        assert w.records_ui.export_action in w.menuBar().actions()[0].menu().actions()  # found by name, not title
        form = PatientForm(store, None, w)
        assert form.windowTitle() == "Neuer Patient" and "Patienten-ID" in [t for _, t in _shown_texts(form)]
        dlg = PatientDialog(store, w, lesion_id=lesion_id, patient_id=store.get_lesion(lesion_id).patient_id)
        texts = [t for _, t in _shown_texts(dlg)]
        assert "Neue Läsion: dorthin klicken, wo sie ist" in texts and "Rücken" in texts  # the site combo
        assert any(t.startswith("Rücken (") for t in texts)  # the lesion list: its site in German
        exam = ExaminationDialog(store, store.get(exam_id), "", w)
        texts = [t for _, t in _shown_texts(exam)]
        assert "Histopathologie" in texts and "Exzision oder Biopsie" in texts and any("4711, Rücken" in t
                                                                                        for t in texts)
        for d in (form, dlg, exam):
            d.close()
        # a dark, small image: the core's assessment and warnings in German, the same in the window and the PDF
        with qtbot.waitSignal(w.result_shown, timeout=300_000):
            w.classify(np.random.default_rng(0).integers(0, 40, (100, 120, 3), dtype=np.uint8), "7")
        panel = w.result_panel
        assert panel.alert_headline.text() == "⚠ Dieses Bild kann Malignität nicht ausschließen"
        assert panel.alert_text.text().startswith(
            "Die Bildqualität ist schlecht (das Bild hat nur 120 x 100 Pixel; nötig sind mindestens 200 x 150; das "
            "Bild ist zu dunkel (unterbelichtet); Details der Läsion können verborgen sein): bitte neu aufnehmen. ")
        assert "• Das Bild ist zu dunkel (unterbelichtet)" in panel.quality_label.text()
        assert w.assessment is not None and w.assessment.text.startswith("The image quality is poor (the image is")
        drawn: list[str] = []
        boxed = report_pdf._Page.boxed
        monkeypatch.setattr(report_pdf._Page, "boxed", lambda s, t, *a, **k: (drawn.append(t), boxed(s, t, *a, **k)))
        w.export_pdf(tmp_path / "de.pdf")
        assert f"{panel.alert_headline.text()}\n{panel.alert_text.text()}" in drawn
        # reopened from the history (plain strings now), the stored warnings are recognised and still German
        rid = w.current.record.id
        with qtbot.waitSignal(w.result_shown, timeout=300_000):
            w.open_record(rid)
        assert "• Das Bild ist zu dunkel (unterbelichtet)" in panel.quality_label.text()
        assert panel.alert_text.text().startswith("Die Bildqualität ist schlecht (das Bild hat nur 120 x 100 Pixel")
        _a_melanoma_in_german(qtbot, w, lesion_id, tmp_path, monkeypatch)
    finally:
        for t in translators:
            qapp.removeTranslator(t)
    # and the command line's words stay English, whatever the window loaded
    from lesion_desktop.imageio import quality_check

    assert quality_check(np.zeros((100, 120, 3), np.uint8)).warnings[0].startswith("The image is only 120 x 100")


GERMAN_DIAGNOSES = {
    "Actinic keratosis / intraepithelial carcinoma (Bowen's disease)":
        "Aktinische Keratose / intraepitheliales Karzinom (Morbus Bowen)",
    "Actinic keratosis / intraepithelial carcinoma": "Aktinische Keratose / intraepitheliales Karzinom",
    "Actinic keratosis": "Aktinische Keratose", "Basal cell carcinoma": "Basalzellkarzinom",
    "Benign keratosis-like lesion": "Benigne keratoseartige Läsion", "Dermatofibroma": "Dermatofibrom",
    "Melanoma": "Melanom", "Melanocytic nevus": "Melanozytärer Nävus", "Vascular lesion": "Vaskuläre Läsion"}


def _a_melanoma_in_german(qtbot, w, lesion_id: int, tmp_path: Path, monkeypatch) -> None:
    """A stored melanoma reopened with the German file loaded: 'Melanom' on the result screen, its chart, the
    heat-map's choice, the PDF, the history and the dialogs; the history's database, its CSV export and the core's
    English text keep 'Melanoma'."""
    import csv

    from lesion_desktop.classes import MEL_INDEX
    from lesion_desktop.export import export_records
    from lesion_desktop.qt import report_pdf
    from lesion_desktop.qt.patient_exam_dialog import ExaminationDialog
    from lesion_desktop.qt.timeline_dialog import TimelineDialog
    from lesion_desktop.qt.widgets import class_label

    store = w.store  # the window's history, in this test's home
    assert str(store.db_path).startswith(str(tmp_path))
    probs = np.array([0.05, 0.05, 0.05, 0.05, 0.6, 0.15, 0.05])
    rec = store.add(np.full((60, 80, 3), 120, np.uint8), probs, source_name="3", model_version="tiny-test-ensemble",
                    lesion_id=lesion_id)
    with qtbot.waitSignal(w.result_shown, timeout=300_000):
        w.open_record(rec.id)
    panel = w.result_panel
    # what the file lacks stays English ("Most likely"), what it has is German
    assert panel.top_label.text() == "Most likely: Melanom (mel), 60%", panel.top_label.text()
    # below the 99% threshold: the core's sentence names the malignant classes, in German in the window
    assert "(aktinische Keratose, Basalzellkarzinom, Melanom)" in panel.risk_label.text(), panel.risk_label.text()
    assert w.assessment is not None and "(actinic keratosis, basal cell carcinoma, melanoma)" in w.assessment.text
    chart = panel.chart
    assert chart.text().splitlines()[0] == "Melanom (mel), malignant: 60.0%"
    assert [" ".join(x) for x in chart.name_lines(chart.width())] == [class_label(c) for c in CLASSES]  # none cut
    assert class_label(CLASSES[MEL_INDEX]) == "Melanom (mel)"
    combo = w.heatmap_bar.combo
    assert combo.itemText(combo.findData("mel")) == "Melanom (mel)"
    painted = _painted(monkeypatch)
    drawn: list[str] = []
    text = report_pdf._Page.text
    monkeypatch.setattr(report_pdf._Page, "text", lambda s, t, *a, **k: (drawn.append(t), text(s, t, *a, **k)))
    assert w.export_pdf(tmp_path / "mel.pdf") is not None
    assert "Most likely: Melanom (mel), 60.0%" in drawn and "mel  Melanom" in painted, (drawn, painted)
    assert panel.risk_label.text() in drawn  # the core's sentence: one text in the window and the PDF
    w.history.refresh(select_id=rec.id)
    assert any("60% Melanom\n" in t for _, t in _shown_texts(w.history)), _shown_texts(w.history)
    exam = ExaminationDialog(store, store.get(rec.id), "", w)
    histology = exam.histopathology
    assert histology.itemText(histology.findData("mel")) == "Melanom (mel)"  # shown in German, stored as its code
    timeline = TimelineDialog(store, lesion_id, 10.0, w)
    assert "Melanom (mel)" in [t for _, t in _shown_texts(timeline)]
    retrain = w.open_retrain()
    rows = [retrain.report_table.verticalHeaderItem(r).text() for r in range(retrain.report_table.rowCount())]
    assert "Recall: Melanom" in rows and "Recall: Aktinische Keratose / intraepitheliales Karzinom" in rows, rows
    for d in (exam, timeline, retrain):
        d.close()
    # what is recorded stays English: the history's CSV export (its codes and the models' assessment)
    export_records(store, tmp_path / "export")
    with open(tmp_path / "export" / "records.csv", encoding="utf-8", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["source_name"] == "3")
    assert row["prediction"] == "mel"
    assert "actinic keratosis, basal cell carcinoma, melanoma" in row["models_assessment"]
    assert "Melanom " not in str(row) and "Melanom," not in str(row)
    assert store.get(rec.id).top_name == "Melanoma"


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---- the source -------------------------------------------------------------------------------------------------
# calls whose string arguments a user reads
_SHOWN_BY = {"setText", "setWindowTitle", "setPlaceholderText", "setToolTip", "setStatusTip", "setTitle", "addRow",
             "addItem", "addItems", "addMenu", "QLabel", "QPushButton", "QGroupBox", "QAction", "QToolBar",
             "QMessageBox", "information", "question", "warning", "critical", "showMessage", "show_message",
             "show_error", "setAccessibleName", "setAccessibleDescription", "setHorizontalHeaderLabels",
             "QListWidgetItem", "QTreeWidgetItem", "QProgressDialog", "getOpenFileName", "getSaveFileName",
             "getExistingDirectory", "setLabelText", "drawText", "text", "boxed", "set_placeholder", "set_image",
             "clear", "show_status", "show_busy", "_set_state", "_camera_says", "_item", "LesionError", "setHtml",
             "setMarkdown", "PatientDialog", "_action", "ImageView"}
_TRANSLATING = {"translate", "tr", "QT_TRANSLATE_NOOP", "tr_core", "site_name", "disclaimer"}


def untranslated_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each literal with words that reaches a widget, a message or a drawn text without passing
    through translate / self.tr: an argument of one of _SHOWN_BY, outside any translating call."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []

    def name(call: ast.Call) -> str:
        f = call.func
        return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""

    def words(node: ast.AST) -> str:
        """The literal text with words in `node` that does not sit inside a translating call."""
        if isinstance(node, ast.Call) and name(node) in _TRANSLATING:
            return ""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.fullmatch(r"[a-z_]+|(Ctrl|Shift|Alt)\+.*|Space|F\d+", node.value):
                return ""  # a key, a level ("warning") or a state ("live"), or a shortcut: not words
            text = re.sub(r"<[^>]+>|&\w+;|\bpx\b|\bPDF\b|\*\.\w+|sha256|\bn = ", " ", node.value)
            return node.value if re.search(r"[A-Za-z]{3}", text) else ""
        if isinstance(node, ast.Subscript):  # value["image"]: a key
            return words(node.value)
        if isinstance(node, ast.Call) and name(node) in ("format", "join") and isinstance(node.func, ast.Attribute):
            return " ".join(filter(None, [words(node.func.value), *(words(a) for a in node.args),
                                          *(words(k.value) for k in node.keywords)]))
        if isinstance(node, ast.Call):  # another function's result: its own literals are checked where they are
            return ""
        return " ".join(filter(None, (words(c) for c in ast.iter_child_nodes(node))))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and name(node) in _SHOWN_BY:
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                text = words(arg)
                if text:
                    found.append((node.lineno, text))
    return found


def test_no_literal_text_reaches_the_user_without_translation():
    left = {f: untranslated_literals(QT_DIR / f) for f in CONVERTED}
    assert not {f: v for f, v in left.items() if v}, left
    # the scan itself finds what it should (a broken copy of a real line)
    probe = QT_DIR.parent.parent / "tests" / "_probe_untranslated.py"
    probe.write_text('from PySide6.QtWidgets import QLabel, QPushButton\n'
                     'a = QPushButton("Add lesion")\n'
                     'b = QLabel(f"Lesions of {who}:")\n'
                     'c = QLabel(translate("X", "Fine {x}").format(x="ok"))\n'
                     'd.setText("Only " + str(n) + " images")\n', encoding="utf-8")
    try:
        assert [line for line, _ in untranslated_literals(probe)] == [2, 3, 5]
    finally:
        probe.unlink()


def test_a_translation_with_a_mistyped_placeholder_shows_english_instead_of_crashing(qapp, tmp_path, caplog):
    """A clinic's translator misspells `{filed}`: formatting that message would raise KeyError in whatever
    dialog shows it. The program uses the English text for that message (and logs which one), the rest of the
    translation still applies."""
    from PySide6.QtCore import QCoreApplication

    messages = {"This examination: {filed}.": "Diese Untersuchung: {abgelegt}.",  # misspelt placeholder
                "Report saved: {path}": "Bericht gespeichert: {path}",  # good
                "History backed up to {folder}.": "Sicherung in {folder"}  # broken braces
    body = "".join(f"<message><source>{_xml(s)}</source><translation>{_xml(t)}</translation></message>"
                   for s, t in messages.items())
    translators = _install(qapp, f'<?xml version="1.0" encoding="utf-8"?><!DOCTYPE TS><TS version="2.1" '
                                 f'language="de"><context><name>Records</name>{body}</context></TS>', "de", tmp_path)
    try:
        shown = QCoreApplication.translate("Records", "This examination: {filed}.").format(filed="Rücken, L1")
        assert shown == "This examination: Rücken, L1."
        assert QCoreApplication.translate("Records", "History backed up to {folder}.").format(folder="X") == \
            "History backed up to X."
        assert QCoreApplication.translate("Records", "Report saved: {path}").format(path="a.pdf") == \
            "Bericht gespeichert: a.pdf"
        assert "This examination: {filed}." in caplog.text
    finally:
        for t in translators:
            qapp.removeTranslator(t)


def test_the_unvalidated_models_banner_in_german(qtbot, qapp, make_window, tiny_models, tmp_path, monkeypatch):
    """Models installed by override: the red banner is in the clinic's language, the recorded figures as
    recorded; the note itself (what other code reads) stays English."""
    from lesion_desktop import store

    monkeypatch.setattr(store, "installation_record",
                        lambda _path: {"by_override": True, "figures": "balanced accuracy 0.520 vs 0.770."})
    german = {store.UNVALIDATED: "Nicht validierte Modelle in Gebrauch: {figures}. Bitte besonders vorsichtig sein."}
    body = "".join(f"<message><source>{_xml(s)}</source><translation>{_xml(t)}</translation></message>"
                   for s, t in german.items())
    translators = _install(qapp, f'<?xml version="1.0" encoding="utf-8"?><!DOCTYPE TS><TS version="2.1" '
                                 f'language="de"><context><name>ModelStore</name>{body}</context></TS>', "de",
                           tmp_path)
    try:
        w = make_window(Settings(models_dir=str(tiny_models), device="cpu"))
        w._update_status_labels()
        assert w.unvalidated_banner.text() == ("Nicht validierte Modelle in Gebrauch: balanced accuracy 0.520 vs "
                                               "0.770. Bitte besonders vorsichtig sein.")
        assert store.unvalidated_note(tiny_models).startswith("Unvalidated models in use: installed by override")
    finally:
        for t in translators:
            qapp.removeTranslator(t)
