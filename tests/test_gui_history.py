"""The records in the window: file before or after the capture, the grouped history and its search, a lesion's
timeline, the clinician's assessment, delete a patient, reports with patient and comparison, and the File menu's
export, backup and retention. Dialogs are driven as a user would (clicks, typing) while they run modally."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from lesion_desktop.imageio import load_image
from lesion_desktop.qt.history_panel import EXAM, LESION, PATIENT, UNFILED, id_of, kind_of
from lesion_desktop.qt.patient_dialog import PatientDialog, PatientForm
from lesion_desktop.qt.patient_exam_dialog import ExaminationDialog
from lesion_desktop.records import SCHEMA_VERSION, RecordStore
from lesion_desktop.settings import Settings
from tests.helpers import FULLRES, require_data

WAIT = 300_000  # generous: a busy 2-core machine (see test_gui_main)


def on_modal(kind: type, action: Callable[[Any], None], deadline_s: float = 60) -> None:
    """Run `action(dialog)` once a modal dialog of type `kind` is shown (its exec() blocks the test's call)."""
    end = time.monotonic() + deadline_s

    def check() -> None:
        w = QApplication.activeModalWidget()
        if isinstance(w, kind) and w.isVisible():
            action(w)
        elif time.monotonic() < end:
            QTimer.singleShot(20, check)

    QTimer.singleShot(0, check)


def _images(n: int, start: int = 30) -> list[Path]:
    return sorted((require_data() / "images").glob("*.jpg"))[start:start + n]


def _classify(qtbot, w, path: Path) -> Any:
    with qtbot.waitSignal(w.result_shown, timeout=WAIT) as blocker:
        w.open_path(path)
    qtbot.waitUntil(lambda: w.idle, timeout=WAIT)
    return blocker.args[0]


def _settings(tiny_models: Path, **kw: Any) -> Settings:
    return Settings(models_dir=str(tiny_models), device="cpu", **kw)


def _create_patient_and_lesion(dlg: PatientDialog, clinic_id: str, name: str, site: str, label: str) -> None:
    def fill(form: PatientForm) -> None:
        QTest.keyClicks(form.clinic_id, clinic_id)
        QTest.keyClicks(form.name, name)
        QTest.keyClicks(form.birth, "1970-05-31")
        form.sex.setCurrentIndex(form.sex.findData("female"))
        form.accept()

    on_modal(PatientForm, fill)
    dlg.new_patient_button.click()
    view = 1 if site == "back" else 0
    QTest.mouseClick(dlg.body_map, Qt.MouseButton.LeftButton, pos=dlg.body_map.point_of(site, view).toPoint())
    assert dlg.site_combo.currentData() == site  # the map set the site
    QTest.keyClicks(dlg.label_edit, label)
    dlg.ok_button.click()


def test_quick_examinations_list_newest_first_and_keep_the_original_file(qtbot, make_window):
    w = make_window()
    images = _images(2)
    for img in images:
        _classify(qtbot, w, img)
    ids = w.history.record_ids()
    assert len(ids) == 2 and ids[0] > ids[1]
    group = w.history.tree.topLevelItem(0)
    assert kind_of(group) == UNFILED and "(2)" in group.text(0)
    first = group.child(0)
    assert not first.icon(0).isNull() and images[1].name in first.text(0)
    assert w.history.tree.currentItem() is first  # the new result is selected
    stored = RecordStore().get(ids[0])
    assert stored.image_path.read_bytes() == images[1].read_bytes()  # kept as it came, not re-encoded
    assert "not filed under a patient" in w.records_ui.bar.current_label.text()
    again = _classify(qtbot, w, images[0])  # the same file opened twice: one stored file, and the user is told
    assert RecordStore().get(again.record.id).image_path == RecordStore().get(ids[1]).image_path
    assert f"The same image file was examined before (#{ids[1]})" in w.records_ui.bar.current_label.text()


def test_choose_the_patient_before_the_capture(qtbot, make_window):
    w = make_window()
    on_modal(PatientDialog, lambda d: _create_patient_and_lesion(d, "P-001", "Anna Berg", "back", "left shoulder"))
    w.records_ui.bar.choose_button.click()
    assert "P-001 · Anna Berg</b>, back: left shoulder" in w.records_ui.bar.target_label.text()
    a = _classify(qtbot, w, _images(1)[0])
    rec = RecordStore().get(a.record.id)
    assert rec.filed_under() == "P-001 · Anna Berg, back: left shoulder"
    assert a.record.filed_under() == rec.filed_under()  # the shown result knows too (its report will)
    assert "This examination: P-001 · Anna Berg, back: left shoulder" in w.records_ui.bar.current_label.text()
    item = w.history.tree.currentItem()  # revealed under its patient and lesion
    assert kind_of(item) == EXAM
    assert kind_of(item.parent()) == LESION
    assert kind_of(item.parent().parent()) == PATIENT
    # a second image of the same lesion, then quick examinations again
    b = _classify(qtbot, w, _images(1, 40)[0])
    assert RecordStore().get(b.record.id).lesion_id == rec.lesion_id
    w.records_ui.bar.stop_button.click()
    c = _classify(qtbot, w, _images(1, 41)[0])
    assert RecordStore().get(c.record.id).lesion_id is None


def test_file_a_quick_examination_after_the_capture_under_an_existing_lesion(qtbot, make_window):
    store = RecordStore()
    anna = store.add_patient("P-001", "Anna Berg")
    store.add_patient("P-002", "Bo Lind")
    back = store.add_lesion(anna.id, "back", "left shoulder")
    store.add_lesion(anna.id, "face")
    w = make_window()
    a = _classify(qtbot, w, _images(1)[0])
    assert not w.records_ui.bar.timeline_button.isVisible()

    def choose(d: PatientDialog) -> None:
        QTest.keyClicks(d.search, "berg")  # search by name
        assert d.patient_list.count() == 1
        d.patient_list.setCurrentRow(0)
        assert d.lesion_list.count() == 2
        d.lesion_list.setCurrentRow(0)
        d.ok_button.click()

    on_modal(PatientDialog, choose)
    w.records_ui.bar.file_button.click()
    assert RecordStore().get(a.record.id).lesion_id == back.id
    assert w.current.record.lesion_id == back.id and "P-001" in w.records_ui.bar.current_label.text()
    assert w.history.current() == (EXAM, a.record.id)


def test_history_search_by_patient_id_or_name(qtbot, make_window):
    store = RecordStore()
    for cid, name in (("P-001", "Anna Berg"), ("P-002", "Bo Lind"), ("X-17", "Carl Berglund")):
        store.add_patient(cid, name)
    w = make_window()
    assert sorted(w.history.shown_patients()) == ["P-001", "P-002", "X-17"]
    QTest.keyClicks(w.history.search, "berg")
    assert sorted(w.history.shown_patients()) == ["P-001", "X-17"]
    assert kind_of(w.history.tree.topLevelItem(0)) == PATIENT  # no quick group now
    w.history.search.clear()
    QTest.keyClicks(w.history.search, "p-002")
    assert w.history.shown_patients() == ["P-002"]
    QTest.keyClicks(w.history.search, "9")
    assert w.history.shown_patients() == [] and "No patient" in w.history.tree.topLevelItem(0).text(0)


def _follow_up(store: RecordStore, mal_before: float, mal_after: float) -> tuple[int, int, int]:
    """A lesion with two examinations: a small image, then a 3x larger one, with set malignant probabilities."""
    def probs(mal: float) -> np.ndarray:
        p = np.zeros(7)
        p[[0, 1, 4]] = mal / 3
        p[5] = 1 - mal
        return p

    p = store.add_patient("P-010", "Dana Holm")
    les = store.add_lesion(p.id, "back", "mole")
    small = _images(1)[0]
    large = sorted((require_data(FULLRES) / "images").glob("*.jpg"))[0]
    a = store.add(load_image(small), probs(mal_before), source_name=small.name, model_version="tiny-test-ensemble",
                  original=small, lesion_id=les.id)
    time.sleep(1.1)  # examinations are timed to the second
    b = store.add(load_image(large), probs(mal_after), source_name=large.name, model_version="tiny-test-ensemble",
                  original=large, lesion_id=les.id)
    return les.id, a.id, b.id


def test_timeline_compares_two_examinations_at_the_same_scale(qtbot, make_window, tiny_models):
    store = RecordStore()
    lesion, first, second = _follow_up(store, 0.12, 0.26)
    w = make_window(_settings(tiny_models))
    w.history.select_examination(second)
    w.history.timeline_button.click()
    dlg = w.records_ui.timeline
    qtbot.waitExposed(dlg)
    assert dlg.follow_up is not None and dlg.follow_up.earlier.id == first and dlg.follow_up.later.id == second
    (wa, ha), (wb, hb) = dlg.pair.drawn_sizes()
    assert wb / wa == pytest.approx(3.0) and hb / ha == pytest.approx(3.0)  # one scale: the larger stays larger
    assert "rose by 14 points (12% → 26%)" in dlg.alert.text() and "10-point" in dlg.alert.text()
    assert "#c62828" in dlg.alert.styleSheet()  # the clear (red) note
    assert dlg.table.item(7, 0).text() == "Malignant classes combined" and dlg.table.item(7, 3).text() == "+14.0 points"
    assert dlg.table.item(4, 3).text() == "+4.7 points"  # melanoma's own change
    dlg.close()
    w2 = make_window(_settings(tiny_models, follow_up_alert_points=20))
    dlg2 = w2.records_ui.open_timeline(lesion)
    assert not dlg2.follow_up.alert and "#c62828" not in dlg2.alert.styleSheet()
    assert "rose by 14 points" in dlg2.alert.text()


def test_assessment_and_histopathology_from_the_history(qtbot, make_window, tiny_models):
    w = make_window(_settings(tiny_models, clinician="Dr Ada Lind"))
    a = _classify(qtbot, w, _images(1)[0])
    assert RecordStore().get(a.record.id).clinician == "Dr Ada Lind"  # from the settings, at the capture

    def assess(d: ExaminationDialog) -> None:
        assert d.clinician.text() == "Dr Ada Lind"
        d.assessment.setCurrentText("Excise or biopsy")
        QTest.keyClicks(d.notes, "irregular network at 6 o'clock")
        d.histopathology.setCurrentIndex(d.histopathology.findData("mel"))
        QTest.keyClicks(d.histo_date, "2024-07-01")
        d.accept()

    on_modal(ExaminationDialog, assess)
    w.history.edit_button.click()
    rec = RecordStore().get(a.record.id)
    assert (rec.assessment, rec.notes, rec.histopathology, rec.histopathology_date) == (
        "Excise or biopsy", "irregular network at 6 o'clock", "mel", "2024-07-01")
    assert "histology mel" in w.history.tree.currentItem().text(0)


def test_delete_a_patient_after_a_confirmation_that_names_what_goes(qtbot, make_window, monkeypatch):
    store = RecordStore()
    anna, bo = store.add_patient("P-001", "Anna Berg"), store.add_patient("P-002", "Bo Lind")
    l1, l2 = store.add_lesion(anna.id, "back"), store.add_lesion(anna.id, "face")
    lb = store.add_lesion(bo.id, "scalp")
    imgs = _images(4)
    recs = [store.add(load_image(f), np.full(7, 1 / 7), source_name=f.name, model_version="m", original=f,
                      lesion_id=les) for f, les in zip(imgs, (l1.id, l1.id, l2.id, lb.id), strict=True)]
    w = make_window()
    top = next(w.history.tree.topLevelItem(i) for i in range(w.history.tree.topLevelItemCount())
               if id_of(w.history.tree.topLevelItem(i)) == anna.id)
    w.history.tree.setCurrentItem(top)
    asked: list[str] = []

    def answer(reply: QMessageBox.StandardButton) -> Callable[..., QMessageBox.StandardButton]:
        def ask(_parent: Any, _title: str, text: str, *a: Any, **k: Any) -> QMessageBox.StandardButton:
            asked.append(text)
            return reply
        return ask

    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.No))
    w.history.delete_button.click()
    assert asked[-1] == ("Delete patient P-001 (Anna Berg) with 2 lesions, 3 examinations and 3 stored images? "
                         "This cannot be undone.")
    assert RecordStore().get_patient(anna.id) is not None
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Yes))
    with qtbot.waitSignal(w.history.patient_deleted, timeout=5000):
        w.history.delete_button.click()
    s = RecordStore()
    assert s.get_patient(anna.id) is None and all(s.get(r.id) is None for r in recs[:3])
    assert not any(r.image_path.exists() for r in recs[:3]) and recs[3].image_path.is_file()
    assert w.history.shown_patients() == ["P-002"]


def _pdf_text(path: Path) -> str:
    if shutil.which("pdftotext") is None:
        raise AssertionError("pdftotext is missing (apt install poppler-utils; .ci/run installs it)")
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


def _pages(path: Path) -> int:
    data = path.read_bytes()
    return data.count(b"/Type /Page\n") + data.count(b"/Type /Page ") + data.count(b"/Type /Page/")


def test_report_has_patient_assessment_signature_and_a_comparison_page(qtbot, make_window, tiny_models, tmp_path,
                                                                       monkeypatch):
    store = RecordStore()
    lesion, first, second = _follow_up(store, 0.12, 0.26)
    store.set_assessment(second, clinician="Dr Ada Lind", assessment="Excise or biopsy", notes="grew since March")
    w = make_window(_settings(tiny_models))
    with qtbot.waitSignal(w.result_shown, timeout=WAIT):
        w.history.open_requested.emit(second)
    qtbot.waitUntil(lambda: w.idle, timeout=WAIT)
    out = tmp_path / "follow-up.pdf"
    assert w.export_pdf(out) == out
    raw = out.read_bytes()
    assert raw.startswith(b"%PDF") and b"pdfaid:part" in raw  # PDF/A-1b metadata
    assert _pages(out) == 2
    text = " ".join(_pdf_text(out).split())
    for expected in ("P-010 (Dana Holm)", "back: mole", "Dr Ada Lind", "Excise or biopsy", "grew since March",
                     "Signature", "Report made", "Follow-up comparison", "rose by 14 points (12% → 26%)",
                     "same scale", w.current.record.created_local()):
        assert expected in text, expected
    warning = w.assessment.text if w.assessment is not None else ""
    assert warning and " ".join(warning.split())[:60] in text  # the window's own words
    # the first examination has no earlier one: one page
    single = tmp_path / "first.pdf"
    assert w.records_ui.comparison_report(second, first, tmp_path / "pair.pdf") is not None
    with qtbot.waitSignal(w.result_shown, timeout=WAIT):
        w.history.open_requested.emit(first)
    qtbot.waitUntil(lambda: w.idle, timeout=WAIT)
    w.export_pdf(single)
    assert _pages(single) == 1 and "Follow-up comparison" not in _pdf_text(single)


def test_file_menu_export_with_reports_backup_and_retention(qtbot, make_window, tiny_models, tmp_path, monkeypatch):
    store = RecordStore()
    lesion, first, second = _follow_up(store, 0.12, 0.26)
    old = store.add(np.full((40, 40, 3), 9, np.uint8), np.full(7, 1 / 7), source_name="old", model_version="m")
    with sqlite3.connect(store.db_path) as con:
        con.execute("UPDATE examinations SET created = '2001-01-01T10:00:00+00:00' WHERE id = ?", (old.id,))
    w = make_window(_settings(tiny_models, retention_years=0))
    titles = [a.text() for a in w.menuBar().actions()[0].menu().actions()]
    assert {"Export &records…", "&Back up the history…", "Apply the &retention period…"} <= set(titles)
    # export: the same folder as the command line, plus one PDF per examination
    out = tmp_path / "export"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(out))
    w.records_ui.export_action.trigger()
    assert sorted(p.name for p in (out / "reports").iterdir()) == [f"exam-{i:06d}.pdf" for i in (first, second,
                                                                                                  old.id)]
    assert (out / "records.csv").read_text(encoding="utf-8").count("reports/exam-") == 3
    assert "Exported 3 examinations" in w.message_bar.text() and "3 PDF reports" in w.message_bar.text()
    # backup while the window has the history open
    backups = tmp_path / "backups"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(backups))
    w.records_ui.backup_action.trigger()
    qtbot.waitUntil(lambda: w.idle and backups.exists() and any(backups.iterdir()), timeout=WAIT)
    copy = RecordStore(next(backups.iterdir()))
    assert sorted(copy.ids()) == sorted([first, second, old.id])
    # retention: off by default; once set, a confirmation that says how many go
    w.settings = _settings(tiny_models, retention_years=10)
    asked: list[str] = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda _p, _t, text, *a, **k: asked.append(text) or QMessageBox.StandardButton.Yes)
    w.records_ui.retention_action.trigger()
    assert asked and asked[0].startswith("1 examination made before ") and "10 years" in asked[0]
    assert sorted(RecordStore().ids()) == sorted([first, second])


def test_a_newer_history_stops_the_window_with_a_clear_message(qtbot, tiny_models, monkeypatch):
    from lesion_desktop.qt.main_window import MainWindow

    store = RecordStore()
    with sqlite3.connect(store.db_path) as con:
        con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    before = store.db_path.read_bytes()
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "critical", lambda _p, _t, text, *a, **k: shown.append(text))
    with pytest.raises(SystemExit) as stop:
        MainWindow(_settings(tiny_models))
    assert stop.value.code == 2
    assert shown and "newer version of Lesion Desktop" in shown[0] and "has not been changed" in shown[0]
    assert store.db_path.read_bytes() == before


def test_the_body_map_and_the_lesion_list_pick_one_lesion(qtbot):
    store = RecordStore()
    p = store.add_patient("P-1")
    back = store.add_lesion(p.id, "back")
    dlg = PatientDialog(store, patient_id=p.id)
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitExposed(dlg)
    dlg.lesion_list.setCurrentRow(0)
    QTest.mouseClick(dlg.body_map, Qt.MouseButton.LeftButton, pos=dlg.body_map.point_of("face").toPoint())
    assert dlg.site_combo.currentData() == "face" and dlg.lesion_list.currentItem() is None  # a new lesion
    dlg.lesion_list.setCurrentRow(0)
    assert dlg.site_combo.currentData() == ""  # back to the existing one
    dlg.ok_button.click()
    assert dlg.lesion_id == back.id and len(store.lesions(p.id)) == 1
    for site in ("scalp", "ear", "neck", "chest", "abdomen", "genital", "hand", "foot", "upper extremity",
                 "lower extremity"):
        assert dlg.body_map.site_at(dlg.body_map.point_of(site)) == site
    assert dlg.body_map.site_at(dlg.body_map.point_of("back", 1)) == "back"


def test_retention_is_offered_at_start_only_when_set_and_never_deletes_unasked(qtbot, make_window, tiny_models,
                                                                              monkeypatch):
    store = RecordStore()
    old = store.add(np.full((40, 40, 3), 9, np.uint8), np.full(7, 1 / 7), source_name="old", model_version="m")
    with sqlite3.connect(store.db_path) as con:
        con.execute("UPDATE examinations SET created = '2001-01-01T10:00:00+00:00' WHERE id = ?", (old.id,))
    asked: list[str] = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda _p, _t, text, *a, **k: asked.append(text) or QMessageBox.StandardButton.No)
    make_window()  # default: keep everything, ask nothing
    qtbot.wait(200)
    assert asked == [] and RecordStore().get(old.id) is not None
    make_window(_settings(tiny_models, retention_years=5))
    qtbot.waitUntil(lambda: bool(asked), timeout=WAIT)
    assert "1 examination made before" in asked[0] and "5 years" in asked[0]
    assert RecordStore().get(old.id) is not None  # the answer was No


def test_history_rows_of_out_of_scope_examinations_show_no_diagnosis(tmp_path):
    import numpy as np

    from lesion_desktop.qt.history_panel import exam_text
    from lesion_desktop.records import RecordStore

    store = RecordStore(tmp_path / "db")
    p = np.array([0.05, 0.05, 0.05, 0.05, 0.05, 0.7, 0.05])
    rec = store.add(np.full((60, 80, 3), 200, np.uint8), p, source_name="letter.png", model_version="v",
                    details={"scope": {"in_scope": False, "reason": "not dermoscopy"}})
    assert "no diagnosis" in exam_text(rec) and "nevus" not in exam_text(rec)
    rec.details["shown_anyway"] = True
    assert "Melanocytic nevus" in exam_text(rec)
