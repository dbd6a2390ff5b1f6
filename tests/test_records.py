"""Clinic records: examinations with their original image bytes, patients, lesions, follow-up, retention, backup,
privacy, and the store's refusal of a newer history. (The upgrade from the released format is in
test_records_upgrade below, in this file.)"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lesion_desktop.imageio import load_image
from lesion_desktop.paths import data_dir
from lesion_desktop.records import (
    BODY_SITES,
    IMAGE_ORIGINAL,
    IMAGE_PNG,
    SCHEMA_VERSION,
    FollowUp,
    NewerHistoryError,
    RecordStore,
)
from tests.helpers import HAM, REPO, require_data


def _probs(top: int, mal: float | None = None) -> np.ndarray:
    p = np.full(7, 0.05)
    p[top] = 0.7
    if mal is not None:  # set the malignant classes' sum (akiec, bcc, mel) and share the rest among nv
        p = np.full(7, 0.0)
        p[[0, 1, 4]] = mal / 3
        p[5] = 1 - mal
    return p


def _jpeg(i: int = 0) -> tuple[bytes, np.ndarray]:
    src = sorted((require_data() / "images").glob("*.jpg"))[i]
    return src.read_bytes(), load_image(src)


def test_original_bytes_are_kept_as_they_came_with_their_sha256():
    data, rgb = _jpeg()
    store = RecordStore()
    assert store.db_path == data_dir() / "history.sqlite"
    rec = store.add(rgb, _probs(4), source_name="a.jpg", model_version="v1", original=data)
    assert rec.image_kind == IMAGE_ORIGINAL and rec.image_path.suffix == ".jpg"
    assert rec.image_path.read_bytes() == data  # byte for byte, never re-encoded
    assert rec.image_sha256 == hashlib.sha256(data).hexdigest()
    assert rec.image_path.stat().st_size < 2 * len(data)
    np.testing.assert_array_equal(rec.load_image(), rgb)


def test_a_path_is_read_as_it_is_on_disk():
    require_data()
    src = sorted((HAM / "images").glob("*.jpg"))[3]
    rec = RecordStore().add(load_image(src), _probs(5), source_name=src.name, model_version="v1", original=src)
    assert rec.image_path.read_bytes() == src.read_bytes() and rec.image_kind == IMAGE_ORIGINAL


def test_camera_pixels_have_no_file_and_are_stored_losslessly_as_png():
    rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    rec = RecordStore().add(rgb, _probs(5), source_name="Camera capture", model_version="v1")
    assert rec.image_kind == IMAGE_PNG and rec.image_path.read_bytes().startswith(b"\x89PNG")
    np.testing.assert_array_equal(rec.load_image(), rgb)


def test_add_list_get_delete():
    data, rgb = _jpeg()
    store = RecordStore()
    heat = np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64)
    rec = store.add(rgb, _probs(4), source_name="a.jpg", source_path="/x/a.jpg", model_version="v1",
                    warnings=["blurred"], details={"threshold": 0.3}, preprocessed=rgb[:48, :64], heatmap=heat,
                    original=data)
    assert rec.id is not None and rec.top_code == "mel" and rec.lesion_id is None and rec.filed_under() == ""
    other = store.add(rgb[::2, ::2].copy(), _probs(5), source_name="camera", model_version="v2")
    listed = store.list()
    assert [r.source_name for r in listed] == ["camera", "a.jpg"]  # newest first
    assert listed[1].preprocessed_png is None and listed[1].heatmap_png is None  # the list stays light
    got = store.get(rec.id)
    assert got is not None
    np.testing.assert_allclose(got.probabilities, _probs(4))
    assert got.warnings == ("blurred",) and got.model_version == "v1" and got.details == {"threshold": 0.3}
    np.testing.assert_array_equal(got.preprocessed(), rgb[:48, :64])
    np.testing.assert_allclose(got.heatmap(), heat, atol=1 / 255)
    assert store.update_details(rec.id, {"shown_anyway": True})
    assert store.get(rec.id).details == {"threshold": 0.3, "shown_anyway": True}
    assert store.delete(rec.id) is True
    assert store.get(rec.id) is None and not rec.image_path.exists()
    assert store.delete(rec.id) is False
    assert store.count() == 1 and store.ids() == [other.id]


def test_the_same_file_twice_is_one_stored_file_and_says_so():
    data, rgb = _jpeg()
    store = RecordStore()
    first = store.add(rgb, _probs(5), source_name="a.jpg", model_version="v1", original=data)
    second = store.add(rgb, _probs(5), source_name="a again.jpg", model_version="v1", original=data)
    assert first.image_path == second.image_path
    assert second.details["same_image_as"] == [first.id] and "same_image_as" not in first.details
    assert store.delete(first.id) and second.image_path.read_bytes() == data  # still used by the second
    assert store.delete(second.id) and not second.image_path.exists()


def test_rejects_bad_probabilities_without_leaving_files():
    store = RecordStore()
    with pytest.raises(ValueError):
        store.add(np.zeros((20, 20, 3), np.uint8), [0.5, 0.5], source_name="x", model_version="m")
    assert store.count() == 0 and not any(store.images_dir.iterdir())


def test_a_failed_insert_leaves_no_image_behind():
    store = RecordStore()
    with sqlite3.connect(store.db_path) as con:  # a database that refuses the row
        con.execute("CREATE TRIGGER no_insert BEFORE INSERT ON examinations BEGIN SELECT RAISE(ABORT, 'full'); END")
    with pytest.raises(sqlite3.IntegrityError):
        store.add(np.full((30, 30, 3), 9, np.uint8), _probs(1), source_name="x", model_version="m")
    assert list(store.images_dir.iterdir()) == []


def test_patients_lesions_and_filing():
    data, rgb = _jpeg()
    store = RecordStore()
    anna = store.add_patient("P-001", "Anna Berg", "1970-05-31", "female")
    bo = store.add_patient("p-002", "Bo Lind", "1985", "")
    assert anna.age_at("2024-05-30T10:00:00+02:00") == 53 and anna.age_at("2024-05-31T00:00:00") == 54
    assert bo.age_at("2024-01-01T00:00:00") == 39 and bo.sex == ""
    with pytest.raises(ValueError, match="already a patient with the ID P-002"):
        store.add_patient("P-002")  # IDs compare without case
    for bad in ("1970-13-01", "31.05.1970", "1800", "2999"):
        with pytest.raises(ValueError):
            store.add_patient("P-003", birth=bad)
    with pytest.raises(ValueError):
        store.add_patient("P-003", sex="x")
    with pytest.raises(ValueError, match="Unknown body site"):
        store.add_lesion(anna.id, "left shoulder")
    back = store.add_lesion(anna.id, "back", "left shoulder")
    face = store.add_lesion(anna.id, "face")
    quick = store.add(rgb, _probs(5), source_name="quick", model_version="v1", original=data)
    assert quick.lesion_id is None and [r.id for r in store.unfiled()] == [quick.id]
    assert store.assign(quick.id, back.id)  # filed after the capture
    filed = store.get(quick.id)
    assert filed.lesion_id == back.id and filed.patient_id == anna.id
    assert filed.filed_under() == "P-001 · Anna Berg, back: left shoulder" and store.unfiled() == []
    direct = store.add(rgb, _probs(4), source_name="direct", model_version="v1", lesion_id=face.id)
    assert direct.body_site == "face" and direct.patient_clinic_id == "P-001"
    summary = {s.patient.clinic_id: s for s in store.patients()}
    assert (summary["P-001"].lesions, summary["P-001"].examinations) == (2, 2)
    assert (summary["p-002"].lesions, summary["p-002"].examinations) == (0, 0)
    assert [s.patient.clinic_id for s in store.patients()] == ["P-001", "p-002"]  # most recently examined first
    assert [s.patient.id for s in store.patients("berg")] == [anna.id]  # name, any case
    assert [s.patient.id for s in store.patients("P-00")] == [anna.id, bo.id]
    assert store.patients("%") == [] and store.patients("_") == []  # wildcards are literal
    assert [x.lesion.body_site for x in store.lesions(anna.id)] == ["back", "face"]
    assert [r.id for r in store.examinations_of(back.id)] == [quick.id]
    with pytest.raises(Exception, match="no longer exists"):
        store.assign(quick.id, 999)
    assert store.find_patient("p-001") == anna
    bo2 = store.update_patient(bo.id, "P-002", "Bo Lind", "1985-02-03", "male")
    assert bo2.birth == "1985-02-03" and bo2.sex == "male"
    assert set(BODY_SITES) >= {"back", "face", "lower extremity", "unknown"}


def test_assessment_and_histopathology_added_later():
    store = RecordStore()
    rec = store.add(np.full((40, 40, 3), 90, np.uint8), _probs(4), source_name="x", model_version="v1",
                    clinician="Dr A")
    assert store.get(rec.id).clinician == "Dr A"
    assert store.set_assessment(rec.id, clinician="Dr B", assessment="excise", notes="irregular border ")
    assert store.set_histopathology(rec.id, "MEL", "melanoma in situ", "2024-06-01")
    got = store.get(rec.id)
    assert (got.clinician, got.assessment, got.notes) == ("Dr B", "excise", "irregular border")
    assert (got.histopathology, got.histopathology_note, got.histopathology_date) == ("mel", "melanoma in situ",
                                                                                      "2024-06-01")
    with pytest.raises(ValueError, match="Unknown histopathology"):
        store.set_histopathology(rec.id, "scc")
    assert store.set_histopathology(rec.id, "other", "squamous cell carcinoma")


def test_deleting_a_patient_takes_their_lesions_examinations_and_images_only():
    store = RecordStore()
    anna = store.add_patient("P-1")
    bo = store.add_patient("P-2")
    a1, a2 = store.add_lesion(anna.id, "back"), store.add_lesion(anna.id, "face")
    b1 = store.add_lesion(bo.id, "back")
    imgs = [np.full((30, 30, 3), v, np.uint8) for v in (10, 20, 30, 40)]
    ra = [store.add(imgs[0], _probs(5), source_name="a0", model_version="m", lesion_id=a1.id),
          store.add(imgs[1], _probs(5), source_name="a1", model_version="m", lesion_id=a1.id),
          store.add(imgs[2], _probs(5), source_name="a2", model_version="m", lesion_id=a2.id)]
    rb = store.add(imgs[3], _probs(5), source_name="b", model_version="m", lesion_id=b1.id)
    shared = store.add(imgs[2], _probs(5), source_name="same pixels, unfiled", model_version="m")
    d = store.patient_deletion(anna.id)
    assert (d.lesions, d.examinations, d.images) == (2, 3, 3)
    assert d.sentence() == "2 lesions, 3 examinations and 3 stored images"
    done = store.delete_patient(anna.id)
    assert (done.patients, done.lesions, done.examinations) == (1, 2, 3)
    assert store.get_patient(anna.id) is None and store.lesions(anna.id) == []
    assert all(store.get(r.id) is None for r in ra)
    assert not ra[0].image_path.exists() and not ra[1].image_path.exists()
    assert shared.image_path.is_file()  # the same file is still used by an examination that stays
    assert store.get(rb.id) is not None and rb.image_path.is_file()
    assert store.delete_patient(anna.id).patients == 0


def test_an_interrupted_deletion_is_settled_at_the_next_open():
    """A deletion sets files aside (.deleting) before it commits: a crash before COMMIT restores them."""
    store = RecordStore()
    kept = store.add(np.full((30, 30, 3), 1, np.uint8), _probs(5), source_name="kept", model_version="m")
    gone = store.add(np.full((30, 30, 3), 2, np.uint8), _probs(5), source_name="gone", model_version="m")
    with sqlite3.connect(store.db_path) as con:
        con.execute("DELETE FROM examinations WHERE id = ?", (gone.id,))  # this deletion committed
    for r in (kept, gone):
        os.replace(r.image_path, str(r.image_path) + ".deleting")
    RecordStore(store.root)
    assert kept.image_path.is_file() and not gone.image_path.exists()
    assert list(store.images_dir.glob("*.deleting")) == []


def test_follow_up_alerts_when_the_malignant_probability_rose_more_than_the_setting():
    store = RecordStore()
    p = store.add_patient("P-1")
    les = store.add_lesion(p.id, "back")
    a = store.add(np.full((30, 30, 3), 1, np.uint8), _probs(0, mal=0.12), source_name="a", model_version="m",
                  lesion_id=les.id)
    b = store.add(np.full((30, 30, 3), 2, np.uint8), _probs(0, mal=0.26), source_name="b", model_version="m",
                  lesion_id=les.id)
    up = FollowUp(a, b, 0.10)
    assert up.alert and round(up.malignant_change * 100) == 14
    assert "rose by 14 points (12% → 26%)" in up.summary() and "10-point" in up.summary()
    np.testing.assert_allclose(up.changes, b.probabilities - a.probabilities)
    assert not FollowUp(a, b, 0.20).alert and "rose by 14 points" in FollowUp(a, b, 0.20).summary()
    assert not FollowUp(b, a, 0.10).alert and "fell by 14 points" in FollowUp(b, a, 0.10).summary()
    c = store.add(np.full((30, 30, 3), 3, np.uint8), _probs(0, mal=0.36), source_name="c", model_version="m2",
                  lesion_id=les.id)
    assert not FollowUp(b, c, 0.10).alert  # exactly 10 points is not more than 10
    assert "different models" in FollowUp(b, c, 0.10).summary()
    assert store.previous_examination(store.get(c.id)).id == b.id
    assert store.previous_examination(store.get(a.id)) is None


def test_retention_counts_then_deletes_what_is_older():
    store = RecordStore()
    p = store.add_patient("P-old")
    les = store.add_lesion(p.id, "back")
    old = store.add(np.full((30, 30, 3), 1, np.uint8), _probs(5), source_name="old", model_version="m",
                    lesion_id=les.id)
    new = store.add(np.full((30, 30, 3), 2, np.uint8), _probs(5), source_name="new", model_version="m")
    with sqlite3.connect(store.db_path) as con:
        con.execute("UPDATE examinations SET created = '2010-03-01T10:00:00+01:00' WHERE id = ?", (old.id,))
        con.execute("UPDATE lesions SET created = '2010-03-01T10:00:00+01:00'")
        con.execute("UPDATE patients SET created = '2010-03-01T10:00:00+01:00'")
    import datetime as dt

    cutoff = RecordStore.retention_cutoff(10, dt.date(2024, 2, 29))
    assert cutoff == "2014-02-28"
    assert store.count_before(cutoff) == 1
    gone = store.delete_before(cutoff)
    assert (gone.examinations, gone.lesions, gone.patients) == (1, 1, 1)
    assert store.ids() == [new.id] and not old.image_path.exists() and store.patients() == []


def test_backup_while_in_use_is_a_complete_history(tmp_path):
    data, rgb = _jpeg()
    store = RecordStore()
    p = store.add_patient("P-1", "Anna")
    rec = store.add(rgb, _probs(4), source_name="a.jpg", model_version="v1", original=data,
                    lesion_id=store.add_lesion(p.id, "back").id)
    reader = sqlite3.connect(store.db_path)  # another connection in the middle of a read
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM examinations").fetchall()
    steps = []
    folder = store.backup(tmp_path / "backups", progress=lambda f, m: steps.append(m))
    reader.close()
    copy = RecordStore(folder)
    got = copy.get(rec.id)
    assert got is not None and got.filed_under() == "P-1 · Anna, back"
    assert got.image_path.read_bytes() == data and got.image_path.parent == folder / "images"
    assert not (folder / "MISSING-IMAGES.txt").exists() and steps


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_the_data_folder_is_private_to_its_user():
    store = RecordStore()
    rec = store.add(np.full((30, 30, 3), 1, np.uint8), _probs(5), source_name="x", model_version="m")
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.images_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.db_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(rec.image_path.stat().st_mode) == 0o600
    wal = store.db_path.with_name(store.db_path.name + "-wal")
    assert not wal.exists() or stat.S_IMODE(wal.stat().st_mode) == 0o600


def test_a_newer_history_is_refused_and_left_untouched():
    store = RecordStore()
    store.add(np.full((30, 30, 3), 1, np.uint8), _probs(5), source_name="x", model_version="m")
    with sqlite3.connect(store.db_path) as con:
        con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = store.db_path.read_bytes()
    with pytest.raises(NewerHistoryError, match=r"newer version of Lesion Desktop .*format 3.*has not been changed"):
        RecordStore()
    assert store.db_path.read_bytes() == before
    with sqlite3.connect(store.db_path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_opening_does_not_stamp_the_version_again(monkeypatch):
    """The old store wrote PRAGMA user_version on every open, so an old program re-stamped a newer history:
    now an open only reads the version, and only a creation or a migration writes it."""
    RecordStore()
    statements: list[str] = []
    real_connect = sqlite3.connect

    def traced(*args, **kwargs):
        con = real_connect(*args, **kwargs)
        con.set_trace_callback(statements.append)
        return con

    monkeypatch.setattr(sqlite3, "connect", traced)
    RecordStore()
    assert any("user_version" in s for s in statements)  # it was read...
    assert not [s for s in statements if "user_version" in s and "=" in s]  # ...and never written


# ---- the upgrade from the released history (format 1) ------------------------------------------------

V1_COUNT = 120
V1_DELETED = (7, V1_COUNT)  # ids deleted in the old history: the last one too, so its id must never come back


def v1_image(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (150, 200, 3), dtype=np.uint8)


def v1_probs(i: int) -> np.ndarray:
    p = np.random.default_rng(10_000 + i).random(7) + 0.01
    return p / p.sum()


V1_WRITER = """
import sys
from pathlib import Path
import numpy as np
from tests.records_v1_release import RecordStore
from tests.test_records import V1_COUNT, V1_DELETED, v1_image, v1_probs
store = RecordStore(Path(sys.argv[1]))
for i in range(1, V1_COUNT + 1):
    rgb = v1_image(i)
    rec = store.add(rgb, v1_probs(i), source_name=f"rec-{i}.jpg", source_path=f"/photos/rec-{i}.jpg",
                    model_version="release-1", warnings=[f"warning {i}"], details={"i": i, "threshold": 0.3},
                    preprocessed=rgb[:48, :64], heatmap=np.full((48, 64), (i % 10) / 10, np.float32))
    assert rec.id == i
for i in V1_DELETED:
    assert store.delete(i)
"""

MIGRATOR = """
import os, signal, sys, time
from pathlib import Path
from lesion_desktop import records
kill_at = int(sys.argv[2])
if kill_at:  # SIGKILL this process as it hashes the kill_at-th image, inside the migration's transaction
    real, calls = records.sha256_file, [0]
    def hashing(path):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path)
    records.sha256_file = hashing
print("ready", flush=True)
start = time.perf_counter()
records.RecordStore(Path(sys.argv[1]))
print(f"migrated {time.perf_counter() - start:.4f}", flush=True)
"""


def _connect(path: Path) -> contextlib.closing[sqlite3.Connection]:
    """Closed at the end of the block: a connection left open would keep SQLite from recovering the WAL of a
    killed process at the next open, and show a stale state the program itself would never see."""
    return contextlib.closing(sqlite3.connect(path))


def _run(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def released_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A history written by the released store (aeb4159), in its own process, as a user's would be."""
    root = tmp_path_factory.mktemp("released") / "data"
    p = _run(V1_WRITER, str(root))
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    return root


def _fresh_copy(released: Path, tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copytree(released, dst)
    return dst


def _expected_ids() -> list[int]:
    return [i for i in range(V1_COUNT, 0, -1) if i not in V1_DELETED]


def _check_readable_by_release(root: Path) -> None:
    """The old database, still usable by the released program: every record reads back as written."""
    from tests.records_v1_release import RecordStore as ReleasedStore

    with _connect(root / "history.sqlite") as con:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    old = ReleasedStore(root)
    listed = old.list(limit=10_000)
    assert [r.id for r in listed] == _expected_ids()
    for i in (1, 2, 60, V1_COUNT - 1):
        rec = old.get(i)
        np.testing.assert_allclose(rec.probabilities, v1_probs(i), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(rec.load_image(), v1_image(i))


def _check_migrated(root: Path, every_image: bool = False) -> None:
    store = RecordStore(root)
    with _connect(root / "history.sqlite") as con:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "records" not in tables
    listed = store.list(limit=10_000)
    assert [r.id for r in listed] == _expected_ids() == [r.id for r in store.unfiled(None)]
    for rec in listed if every_image else [r for r in listed if r.id in (1, 2, 60, V1_COUNT - 1)]:
        i = int(rec.source_name.removeprefix("rec-").removesuffix(".jpg"))
        full = store.get(rec.id)
        assert full is not None and full.id == i and full.source_path == f"/photos/rec-{i}.jpg"
        assert full.warnings == (f"warning {i}",) and full.details == {"i": i, "threshold": 0.3}
        assert full.model_version == "release-1" and full.image_kind == "png-v1"
        np.testing.assert_allclose(full.probabilities, v1_probs(i), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(full.load_image(), v1_image(i))
        np.testing.assert_array_equal(full.preprocessed(), v1_image(i)[:48, :64])
        assert np.allclose(full.heatmap(), (i % 10) / 10, atol=1 / 255)
        assert full.image_sha256 == hashlib.sha256(full.image_path.read_bytes()).hexdigest()


def test_the_released_history_is_migrated_with_nothing_lost(released_history, tmp_path):
    root = _fresh_copy(released_history, tmp_path, "data")
    images_before = {p.name: p.read_bytes() for p in (root / "images").iterdir()}
    _check_readable_by_release(_fresh_copy(released_history, tmp_path, "control"))
    _check_migrated(root, every_image=True)
    assert {p.name: p.read_bytes() for p in (root / "images").iterdir()} == images_before
    store = RecordStore(root)
    new = store.add(v1_image(0), v1_probs(0), source_name="after the upgrade", model_version="m")
    assert new.id == V1_COUNT + 1  # the released history's deleted last id is not reused
    p = store.add_patient("P-1")
    assert store.assign(1, store.add_lesion(p.id, "back").id) and store.get(1).filed_under() == "P-1, back"


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_a_kill_during_the_migration_leaves_the_released_history_usable(released_history, tmp_path):
    # Deterministic: killed inside the migration's transaction, at its first, middle and last image.
    n_images = V1_COUNT - len(V1_DELETED)
    for n, kill_at in enumerate((1, n_images // 2, n_images)):
        root = _fresh_copy(released_history, tmp_path, f"at-{n}")
        p = _run(MIGRATOR, str(root), str(kill_at))
        out, err = p.communicate(timeout=600)
        assert p.returncode == -signal.SIGKILL and "migrated" not in out, (out, err[-2000:])
        _check_readable_by_release(_fresh_copy(root, tmp_path, f"at-{n}-release"))
        _check_migrated(root)  # and the next start migrates it
    # Spread over the measured migration time, from outside, all on one history as repeated restarts would.
    timing = _fresh_copy(released_history, tmp_path, "timing")
    p = _run(MIGRATOR, str(timing), "0")
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-2000:]
    seconds = float(out.split("migrated ")[1])
    root = _fresh_copy(released_history, tmp_path, "spread")
    outcomes = []
    for n, fraction in enumerate((0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.2)):
        p = _run(MIGRATOR, str(root), "0")
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        time.sleep(seconds * fraction)
        p.send_signal(signal.SIGKILL)
        out, err = p.communicate(timeout=600)
        with _connect(root / "history.sqlite") as con:
            version = con.execute("PRAGMA user_version").fetchone()[0]
        outcomes.append((fraction, p.returncode, version))
        if version == 1:
            _check_readable_by_release(_fresh_copy(root, tmp_path, f"spread-{n}-release"))
        else:
            _check_migrated(root)
            break
    _check_migrated(root, every_image=True)
    print(f"migration {seconds:.3f} s; kills (fraction of it, exit status, format after):", outcomes)
