"""A process killed (SIGKILL) while writing history records (issue point 4): the database stays sound,
every committed record reads back intact, and on restart the app's records API and models work.
(Kills during training and model installation are in test_crash.py.)"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from lesion_desktop.records import RecordStore

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def image_for(i: int) -> np.ndarray:
    """A distinct 300 x 400 picture per record (large enough that a write takes a while)."""
    rng = np.random.default_rng(i)
    return rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)


def probs_for(i: int) -> np.ndarray:
    p = np.random.default_rng(10_000 + i).random(7) + 0.01
    return p / p.sum()


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np
    from lesion_desktop.records import RecordStore
    from tests.test_reliability_crash import image_for, probs_for
    store = RecordStore(Path(sys.argv[1]))
    print("ready", flush=True)
    i = int(sys.argv[2])
    while True:
        rgb = image_for(i)
        rec = store.add(rgb, probs_for(i), source_name=f"rec-{i}", source_path=f"/photos/rec-{i}.jpg",
                        model_version="v-test", warnings=[f"warning {i}"], details={"i": i},
                        preprocessed=rgb[:48, :64], heatmap=np.full((48, 64), (i % 10) / 10, np.float32))
        print(f"committed {rec.id} {i}", flush=True)
        i += 1
""")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _check_record(store: RecordStore, record_id: int, i: int) -> None:
    rec = store.get(record_id)
    assert rec is not None, f"committed record {record_id} (rec-{i}) is gone"
    assert rec.source_name == f"rec-{i}" and rec.source_path == f"/photos/rec-{i}.jpg"
    np.testing.assert_allclose(rec.probabilities, probs_for(i), rtol=0, atol=1e-12)
    assert rec.warnings == (f"warning {i}",) and rec.details == {"i": i} and rec.model_version == "v-test"
    rgb = image_for(i)
    np.testing.assert_array_equal(rec.load_image(), rgb)
    np.testing.assert_array_equal(rec.preprocessed(), rgb[:48, :64])
    heat = rec.heatmap()
    assert heat is not None and np.allclose(heat, (i % 10) / 10, atol=1 / 255)


def _kill_writer(root: Path, start: int, delay: float, wait_ready: bool) -> list[tuple[int, int]]:
    """Run the writer, SIGKILL it `delay` seconds in, and return the (id, i) pairs it reported committed."""
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(start)], env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    if wait_ready:
        line = p.stdout.readline().strip()
        assert line == "ready", (line, p.stderr.read() if p.stderr and p.poll() is not None else "")
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    out, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL, err[-2000:]
    committed = []
    for line in out.splitlines():
        if line.startswith("committed "):
            _, rid, i = line.split()
            committed.append((int(rid), int(i)))
    return committed


def test_history_survives_kills_during_writes(tmp_path):
    root = tmp_path / "data"
    committed: list[tuple[int, int]] = []
    rounds = [(0.0, False), (0.3, False), (0.0, True), (0.05, True), (0.15, True), (0.3, True), (0.6, True),
              (1.0, True), (1.5, True)]
    for n, (delay, wait_ready) in enumerate(rounds):
        committed += _kill_writer(root, start=n * 100_000, delay=delay, wait_ready=wait_ready)
        if not (root / "history.sqlite").exists():
            continue  # killed before the database was created
        con = sqlite3.connect(root / "history.sqlite")
        try:
            assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f"round {n}"
        finally:
            con.close()
        store = RecordStore(root)  # what the app does on restart
        for rid, i in committed:
            _check_record(store, rid, i)
        # rows committed but killed before the writer could report them are intact too
        for rec in store.list(limit=100_000):
            i = int(rec.source_name.removeprefix("rec-"))
            assert rec.image_path.is_file(), f"row {rec.id} points at a missing image"
            _check_record(store, rec.id, i)
    assert len(committed) >= 5, "the writer never got far enough to test anything; raise the delays"
    assert {rid for rid, _ in committed} <= {r.id for r in RecordStore(root).list(limit=100_000)}

    # after all that, the app's records API works as usual
    store = RecordStore(root)
    before = store.count()
    new = store.add(image_for(7), probs_for(7), source_name="rec-7", source_path="/photos/rec-7.jpg",
                    model_version="v-test", warnings=["warning 7"], details={"i": 7},
                    preprocessed=image_for(7)[:48, :64], heatmap=np.full((48, 64), 0.7, np.float32))
    assert store.count() == before + 1 and store.list(limit=1)[0].id == new.id
    _check_record(store, new.id, 7)
    assert store.delete(new.id) and store.count() == before
    # leftovers of interrupted writes are only image files no row points at (harmless, never a broken row)
    referenced = {r.image_path.name for r in store.list(limit=100_000)}
    stray = [f for f in store.images_dir.iterdir() if f.name not in referenced]
    assert all(f.suffix in (".png", ".tmp") for f in stray)


def test_restart_after_kills_runs_with_intact_models_and_history(tmp_path, monkeypatch):
    """A store with installed models and a history that was being written when the process died."""
    from lesion_desktop import paths
    from lesion_desktop.imageio import load_image
    from lesion_desktop.inference import open_engine
    from lesion_desktop.store import ModelStore
    from tests.helpers import HAM, make_tiny_ensemble, require_data

    installed = ModelStore(paths.model_store_dir()).install(make_tiny_ensemble(tmp_path / "m"), name="retrained")
    monkeypatch.setattr(paths, "bundled_models_dir", lambda: tmp_path / "no-default")
    committed = _kill_writer(paths.data_dir(), start=0, delay=0.5, wait_ready=True)
    store = RecordStore()  # the app's default location, as after a restart
    for rid, i in committed:
        _check_record(store, rid, i)
    engine, notes = open_engine(device="cpu")
    assert engine.ensemble.path == installed and notes == []
    rgb = load_image(sorted((require_data() / "images").glob("*.jpg"))[0])
    assert HAM.exists()
    pred = engine.predict_one(rgb)
    rec = store.add(rgb, pred.probabilities, source_name="after restart", model_version=engine.version)
    assert store.get(rec.id) is not None and store.count() == len(store.list(limit=100_000))
