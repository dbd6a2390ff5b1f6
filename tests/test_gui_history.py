"""The history dock: thumbnails, reopen, export a stored result as PDF, delete with confirmation."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from lesion_desktop.records import RecordStore
from tests.helpers import HAM, require_data


@pytest.fixture
def two_results(qtbot, make_window):
    require_data()
    w = make_window()
    images = sorted((HAM / "images").glob("*.jpg"))[30:32]
    for img in images:
        with qtbot.waitSignal(w.result_shown, timeout=300000):
            w.open_path(img)
    return w, images


def test_list_shows_thumbnails_newest_first(two_results):
    w, images = two_results
    ids = w.history.record_ids()
    assert len(ids) == 2 and ids[0] > ids[1]
    first = w.history.list.item(0)
    assert not first.icon().isNull() and images[1].name in first.text()
    assert w.history.list.currentItem() is first  # the new result is selected


def test_export_a_stored_result_from_the_history(qtbot, two_results, tmp_path, monkeypatch):
    w, images = two_results
    out = tmp_path / "older.pdf"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "PDF (*.pdf)"))
    w.history.list.setCurrentRow(1)  # the older one
    with qtbot.waitSignal(w.result_shown, timeout=300000) as blocker:
        w.history.export_button.click()
    assert blocker.args[0].record.source_name == images[0].name
    qtbot.waitUntil(out.exists, timeout=60000)
    assert out.read_bytes().startswith(b"%PDF")


def test_delete_asks_first(qtbot, two_results, monkeypatch):
    w, _ = two_results
    keep, drop = w.history.record_ids()
    w.history.list.setCurrentRow(1)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    w.history.delete_button.click()
    assert w.history.record_ids() == [keep, drop]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(w.history.deleted, timeout=1000):
        w.history.delete_button.click()
    assert w.history.record_ids() == [keep]
    assert RecordStore().get(drop) is None
