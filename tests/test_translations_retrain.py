"""The retrain dialog's verdict in the clinic's language (issue 18, point 9; docs/translations.md).

The sentence that decides whether a clinic installs new models is built by the pipeline (training.comparison) as
Wordings marked under "RetrainVerdict": the command line and the model store's manifest keep the English text,
the dialog renders each part through the clinic's translation.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QMessageBox

from lesion_desktop import wording
from lesion_desktop.settings import Settings
from tests.test_gui_retrain import compared
from tests.test_translations import _install, _xml
from training import comparison
from training.comparison import small_class_notes
from training.pipeline import RetrainResult


def _result(tmp_path: Path, *, worse: bool) -> RetrainResult:
    figures = compared(worse=worse)  # the figures tests/test_gui_retrain.py's dialog tests show
    result = RetrainResult(tmp_path / "candidate", figures.candidate, None, figures)
    result.notes = small_class_notes({"df": 2})
    return result


GERMAN = {
    comparison._BETTER: "Die neuen Modelle sind besser als die aktiven {on}: {figures}.",
    comparison._ON: "auf {images} Validierungsbildern ({lesions} Läsionen), mit denen keines trainiert wurde",
    "balanced accuracy": "balancierte Genauigkeit",
    comparison._FIGURE_INTERVAL: "{label} {new} statt {old} ({change}, 95%-Intervall {low} bis {high})",
    "{code}: only {n} validation lesions, too few to judge its recall (at least {min} are needed).":
        "{code}: nur {n} Validierungsläsionen, zu wenige, um die Sensitivität zu beurteilen (nötig sind {min}).",
    comparison._MEASURED: "Gemessen {on}.",
    comparison._NOT_RECOMMENDED: "Die Installation wird nicht empfohlen und braucht eine ausdrückliche Übersteuerung.",
}


def test_the_verdict_is_shown_in_german_and_stays_english_for_the_cli(qapp, make_window, tmp_path):
    assert all(("RetrainVerdict", s) in wording.templates() for s in GERMAN)  # all of them marked for lupdate
    body = "<context><name>RetrainVerdict</name>" + "".join(
        f"<message><source>{_xml(s)}</source><translation>{_xml(t)}</translation></message>"
        for s, t in GERMAN.items()) + "</context>"
    translators = _install(qapp, f'<?xml version="1.0" encoding="utf-8"?><!DOCTYPE TS><TS version="2.1" '
                                 f'language="de">{body}</TS>', "de", tmp_path)
    try:
        dlg = make_window(Settings(device="cpu")).open_retrain()
        better = _result(tmp_path, worse=False)
        dlg._on_finished(better)
        assert dlg.verdict_label.text().startswith(
            "Die neuen Modelle sind besser als die aktiven auf 812 Validierungsbildern (640 Läsionen), mit denen "
            "keines trainiert wurde: balancierte Genauigkeit 0.800 statt 0.770 (+0.030, 95%-Intervall +0.010 bis "
            "+0.050), melanoma recall 0.750 statt 0.710 (+0.040, 95%-Intervall -0.020 bis +0.100). df: nur 2 "
            "Validierungsläsionen, zu wenige, um die Sensitivität zu beurteilen (nötig sind 5).")  # (the label of
        # melanoma recall has no German here: each part is translated on its own)
        # the command line, the store's manifest and install_candidate's refusal keep the English sentence
        summary = better.verdict.summary
        assert str(summary) == better.difference_text() == (
            "The new models are better than the active ones on 812 validation images (640 lesions) that neither "
            "trained on: balanced accuracy 0.800 vs 0.770 (+0.030, 95% interval +0.010 to +0.050), melanoma recall "
            "0.750 vs 0.710 (+0.040, 95% interval -0.020 to +0.100). df: only 2 validation lesions, too few to "
            "judge its recall (at least 5 are needed).")
        dlg.install()
        box = dlg.confirm_box
        assert box is not None and box.informativeText().startswith("Die neuen Modelle sind besser als die aktiven")
        box.button(QMessageBox.StandardButton.No).click()

        worse = _result(tmp_path, worse=True)
        dlg._on_finished(worse)
        assert dlg.verdict_label.text().startswith("The new models are WORSE than the active ones auf 812 "
                                                   "Validierungsbildern")  # untranslated template, translated part
        dlg.install()
        box = dlg.confirm_box
        assert box is not None and "balancierte Genauigkeit 0.520 statt 0.770" in box.text()
        assert box.informativeText().startswith(
            "Gemessen auf 812 Validierungsbildern (640 Läsionen), mit denen keines trainiert wurde. Die Installation "
            "wird nicht empfohlen und braucht eine ausdrückliche Übersteuerung. df: nur 2")
        assert str(worse.verdict.detail).startswith("Measured on 812 validation images (640 lesions) that neither "
                                                    "trained on. Installing them is not recommended")
        box.button(QMessageBox.StandardButton.No).click()
    finally:
        for t in translators:
            qapp.removeTranslator(t)
