"""Help > Instructions for use (F1) and the About box in plain language, the ML detail one click away (issue 14,
point 5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence

from lesion_desktop import __version__
from lesion_desktop.qt.help_text import INSTRUCTIONS

DOC = Path(__file__).resolve().parents[1] / "docs" / "instructions-for-use.md"

# What a clinician must be told before using the program (issue 14, point 5), as the dialog shows it.
KEY_SENTENCES = (
    "Decision support only, not a diagnosis. A clinician makes the diagnosis.",
    "photographed through a dermatoscope",
    "Clinical (non-dermoscopic) photographs",
    "squamous cell carcinoma",
    "Spitz and Reed naevi",
    "lesions on acral skin (palms and soles), nails and mucosa (lips, genital mucosa, conjunctiva)",
    "The patients were mostly fair-skinned; dark skin types are barely represented",
    "at 30% the warning fired for 87% of melanomas",
    "No warning does not mean benign.",
    "95% interval",
    "the result says that it cannot rule out malignancy and asks for a new image",
    "the program says so and shows no diagnosis",
    "Melanoma",
    "Basal cell carcinoma",
    "Actinic keratosis / intraepithelial carcinoma (Bowen's disease)",
    "Melanocytic naevus",
    "Benign keratosis-like lesion",
    "Dermatofibroma",
    "Vascular lesion",
    "CC BY-NC 4.0",
)


def _fits_the_screen(dialog) -> bool:
    room = dialog.screen().availableGeometry()
    return dialog.width() <= room.width() and dialog.height() <= room.height()


def test_f1_opens_the_instructions_for_use(qtbot, make_window):
    w = make_window()
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)
    assert w.dialogs.instructions is None
    qtbot.keyClick(w, Qt.Key.Key_F1)
    dlg = w.dialogs.instructions
    assert dlg is not None and dlg.isVisible()
    assert dlg.windowTitle() == "Lesion Desktop: instructions for use"
    text = " ".join(dlg.text().split())
    missing = [s for s in KEY_SENTENCES if s not in text]
    assert not missing
    assert _fits_the_screen(dlg)
    assert w.show_instructions() is dlg  # one dialog, raised again


def test_help_menu_has_the_instructions_and_the_about_box(make_window):
    w = make_window()
    help_menu = next(a.menu() for a in w.menuBar().actions() if a.text() == "&Help")
    assert [a.text() for a in help_menu.actions()] == ["&Instructions for use", "&About Lesion Desktop"]
    assert QKeySequence("F1") in w.actions_.instructions.shortcuts()
    assert QKeySequence("F1") not in w.actions_.about.shortcuts()


def test_the_instructions_in_docs_are_the_ones_the_program_shows():
    assert DOC.read_text(encoding="utf-8") == INSTRUCTIONS


def test_about_box_speaks_plainly_with_the_detail_one_click_away(qtbot, make_window):
    w = make_window()
    box = w.show_about()
    text = " ".join(box.text().split())
    assert f"Lesion Desktop {__version__}" in text and "not a diagnosis" in text
    assert "Models in use: tiny-test-ensemble, two networks whose answers are averaged." in text
    assert "CC BY-NC" in text and "Runs on: CPU" in text and "makes no network connection" in text
    assert "Help > Instructions for use (F1)" in text
    assert "temperature" not in text and "baseline_cnn" not in text  # the ML detail is behind the button
    assert box.details.isHidden()
    box.details_button.click()
    assert not box.details.isHidden() and box.details_button.text() == "Hide technical details"
    details = box.details_text()
    assert "baseline_cnn" in details and "temperature" in details and "Device in use: CPU" in details
    assert _fits_the_screen(box)
    box.close()


@pytest.mark.slow
def test_about_gives_the_shipped_models_figures_in_words():
    from lesion_desktop.inference import load_engine
    from lesion_desktop.paths import bundled_models_dir
    from lesion_desktop.qt.about import about_html

    text = about_html(load_engine(bundled_models_dir(), "cpu"), threshold=0.30)
    assert ("On 1506 images they had not been trained on, they put the right diagnosis first for 76% (95% interval "
            "73% to 79%); at your warning threshold (30%) the malignancy warning fired for 87% of melanomas, and "
            "also for 34% of benign lesions.") in text
    at_20 = about_html(load_engine(bundled_models_dir(), "cpu"), threshold=0.20)
    assert "at your warning threshold (20%) the malignancy warning fired for 96% of melanomas" in at_20


def test_about_names_unvalidated_models(qtbot, make_window, tiny_models, tmp_path):
    from lesion_desktop.paths import model_store_dir
    from lesion_desktop.settings import Settings
    from lesion_desktop.store import ModelStore

    ModelStore(model_store_dir()).install(tiny_models, comparison="The new models are WORSE", by_override=True)
    w = make_window(Settings(device="cpu"))
    text = " ".join(w.show_about().text().split())
    assert "tiny-test-ensemble [UNVALIDATED]" in text and "Unvalidated models in use" in text
