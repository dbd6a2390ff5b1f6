from __future__ import annotations

import numpy as np

from lesion_desktop.imageio import load_image
from lesion_desktop.paths import data_dir
from lesion_desktop.records import RecordStore
from tests.helpers import HAM, require_data


def _probs(top: int) -> np.ndarray:
    p = np.full(7, 0.05)
    p[top] = 0.7
    return p


def test_add_list_get_delete_with_image_copy(tmp_path):
    require_data()
    src = sorted((HAM / "images").glob("*.jpg"))[0]
    rgb = load_image(src)
    store = RecordStore()
    assert store.db_path == data_dir() / "history.sqlite"
    heat = np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64)
    rec = store.add(rgb, _probs(4), source_name=src.name, source_path=str(src), model_version="v1",
                    warnings=["blurred"], details={"threshold": 0.3}, preprocessed=rgb[:48, :64], heatmap=heat)
    assert rec.id is not None and rec.top_code == "mel"
    assert rec.image_path.parent == data_dir() / "images" and rec.image_path.is_file()
    np.testing.assert_array_equal(rec.load_image(), rgb)  # lossless copy
    store.add(rgb, _probs(5), source_name="camera", model_version="v2")
    listed = store.list()
    assert [r.source_name for r in listed] == ["camera", src.name]  # newest first
    assert listed[1].preprocessed_png is None  # the list stays light
    got = store.get(rec.id)
    assert got is not None
    np.testing.assert_allclose(got.probabilities, _probs(4))
    assert got.warnings == ("blurred",) and got.model_version == "v1" and got.details == {"threshold": 0.3}
    np.testing.assert_array_equal(got.preprocessed(), rgb[:48, :64])
    np.testing.assert_allclose(got.heatmap(), heat, atol=1 / 255)
    assert store.delete(rec.id) is True
    assert store.get(rec.id) is None and not rec.image_path.exists()
    assert store.delete(rec.id) is False
    assert store.count() == 1


def test_history_survives_a_new_connection_and_uses_wal():
    rgb = np.full((150, 200, 3), 120, np.uint8)
    RecordStore().add(rgb, _probs(0), source_name="a.jpg", model_version="m")
    again = RecordStore()
    assert [r.source_name for r in again.list()] == ["a.jpg"]
    import sqlite3

    con = sqlite3.connect(again.db_path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_rejects_bad_probabilities_without_leaving_files():
    store = RecordStore()
    rgb = np.zeros((20, 20, 3), np.uint8)
    import pytest

    with pytest.raises(ValueError):
        store.add(rgb, [0.5, 0.5], source_name="x", model_version="m")
    assert store.count() == 0
    assert not any(store.images_dir.glob("*.png")) if store.images_dir.exists() else True
