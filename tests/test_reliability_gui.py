"""Reliability of the GUI (issue points 1, 3 and 5): every bad image opened in the main window gets its
message and the window still classifies afterwards; a missing CUDA device is announced; the camera worker
survives a camera that cannot be opened, raises, or stops delivering frames."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from lesion_desktop import paths
from lesion_desktop.bundle import WEIGHTS
from lesion_desktop.errors import ImageLoadError
from lesion_desktop.imageio import load_image
from lesion_desktop.qt.camera import CameraThread
from lesion_desktop.settings import Settings
from lesion_desktop.store import ModelStore
from tests.bad_images import ACCEPTED, BOMB_SIDE, REFUSED, make_bad_images
from tests.helpers import HAM, make_tiny_ensemble, require_data


def _ham(n: int, start: int = 0) -> list[Path]:
    require_data()
    return sorted((HAM / "images").glob("*.jpg"))[start : start + n]


def _expected_message(path: Path) -> str:
    with pytest.raises(ImageLoadError) as refused:
        load_image(path, name=path.name)
    return str(refused.value)


# ---- 1. bad images in the main window --------------------------------------------------------------------------


def test_every_bad_image_gets_its_message_and_the_window_keeps_working(qtbot, make_window, tmp_path, monkeypatch):
    w = make_window()
    bad = make_bad_images(tmp_path / "bad")
    for name, word in REFUSED.items():
        expected = _expected_message(bad[name])
        with qtbot.waitSignal(w.failed, timeout=300000) as blocker:
            w.open_path(bad[name])
        message = blocker.args[0]
        assert message == expected and word in message.lower() and name in message
        assert w.message_bar.text() == message and w.message_bar.level == "error"
        qtbot.waitUntil(lambda: w.idle, timeout=300000)
    assert f"{BOMB_SIDE:,} x {BOMB_SIDE:,}" in _expected_message(bad["bomb.png"])
    assert w.history.record_ids() == [], "nothing refused reaches the history"

    for name in ACCEPTED:  # odd but usable files: 16-bit, grey, CMYK, alpha, animated GIF, non-ASCII name
        with qtbot.waitSignal(w.result_shown, timeout=300000) as blocker:
            w.open_path(bad[name])
        a = blocker.args[0]
        assert a.record.source_name == name and a.image.dtype == np.uint8 and a.image.shape == (48, 64, 3)
        assert float(np.sum(a.record.probabilities)) == pytest.approx(1.0, abs=1e-4)  # classified and stored
        # shown, or (synthetic pictures) held back by the scope gate with its 'show anyway' button
        panel = w.result_panel
        assert (sum(panel.chart.values()) == pytest.approx(1.0, abs=1e-4)
                or panel.show_anyway_button.isVisibleTo(panel)), name
        qtbot.waitUntil(lambda: w.idle, timeout=300000)

    deep = tmp_path.joinpath(*[f"dossier_patient_{i:02d}_éè" for i in range(8)])
    deep.mkdir(parents=True)
    long_path = deep / ("lesion_" + "x" * 189 + ".jpg")
    shutil.copy(_ham(1, 60)[0], long_path)
    with qtbot.waitSignal(w.result_shown, timeout=300000) as blocker:
        w.open_path(long_path)
    assert blocker.args[0].record.source_path == str(long_path)
    qtbot.waitUntil(lambda: w.idle, timeout=300000)

    # a file deleted while it waits in the queue: the job before it is held until the file is gone
    first, victim = tmp_path / "first.jpg", tmp_path / "deleted_while_queued.jpg"
    shutil.copy(_ham(1, 61)[0], first)
    shutil.copy(_ham(1, 62)[0], victim)
    gate, held = threading.Event(), []
    require = w.holder.require

    def held_require():
        if not held:
            held.append(True)
            assert gate.wait(30)
        return require()

    monkeypatch.setattr(w.holder, "require", held_require)
    before = len(w.history.record_ids())
    w.open_path(first)
    w.open_path(victim)
    victim.unlink()
    with qtbot.waitSignal(w.failed, timeout=300000) as blocker:
        gate.set()
    assert "deleted_while_queued.jpg" in blocker.args[0] and "was not found" in blocker.args[0]
    qtbot.waitUntil(lambda: w.idle, timeout=300000)
    assert len(w.history.record_ids()) == before + 1  # the one before it was still classified and saved

    with qtbot.waitSignal(w.result_shown, timeout=300000) as blocker:
        w.open_path(_ham(1, 63)[0])
    assert blocker.args[0].record.source_name == _ham(1, 63)[0].name
    assert w.message_bar.text() == ""


# ---- 3. installed models damaged on disk: the GUI falls back too -----------------------------------------------


def test_damaged_installed_models_fall_back_in_the_window(qtbot, make_window, tmp_path, monkeypatch):
    default = make_tiny_ensemble(tmp_path / "default", members=1)
    monkeypatch.setattr(paths, "bundled_models_dir", lambda: default)
    store = ModelStore(paths.model_store_dir())
    previous = store.install(make_tiny_ensemble(tmp_path / "a"), name="A")
    active = store.install(make_tiny_ensemble(tmp_path / "b", members=3), name="B")
    w_ = active / "tiny0" / WEIGHTS
    w_.write_bytes(w_.read_bytes()[:-1] + b"\x00")
    w = make_window(Settings(device="cpu"))
    assert w.engine is not None and w.engine.ensemble.path == previous
    assert "installed models 'B' could not be used" in w.message_bar.text()
    assert "Using the previous installed models 'A'" in w.message_bar.text()


# ---- 5. a CUDA device asked for but absent -----------------------------------------------------------------------


def test_missing_cuda_is_announced_in_the_window(qtbot, make_window, tiny_models, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    w = make_window(Settings(models_dir=str(tiny_models), device="cuda"))
    note = "CUDA was requested but no CUDA device is available: using the CPU."
    assert w.engine is not None and w.engine.device_type == "cpu"
    assert note in w.message_bar.text() and w.message_bar.level == "warning"
    assert "CPU" in w.device_label.text()
    with qtbot.waitSignal(w.result_shown, timeout=300000) as blocker:
        w.open_path(_ham(1)[0])
    assert note in blocker.args[0].record.warnings  # the stored result says where it was computed


# ---- 5. camera faults, at the camera-worker level ------------------------------------------------------------------


class FakeCapture:
    """A capture device whose failures are scripted: `open_ok`/`open_raises`, frames then silence or errors."""

    description = "fake USB dermatoscope"

    def __init__(self, *, open_ok: bool = True, open_raises: bool = False, frames: int = 0,
                 read_raises: bool = False) -> None:
        self.open_ok, self.open_raises, self.frames, self.read_raises = open_ok, open_raises, frames, read_raises
        self.opens = self.reads = self.releases = 0

    def open(self) -> bool:
        self.opens += 1
        if self.open_raises:
            raise RuntimeError("VIDIOC_STREAMON: driver crashed")
        ok = self.open_ok
        if self.opens > 1 and self.frames:  # once it has stopped delivering, it stays unplugged
            ok = False
        return ok

    def read(self) -> np.ndarray | None:
        self.reads += 1
        if self.reads <= self.frames:
            return np.full((48, 64, 3), self.reads % 256, np.uint8)
        if self.read_raises:
            raise OSError("select() timeout")
        return None

    def release(self) -> None:
        self.releases += 1


def _run_camera(qtbot, source: FakeCapture) -> tuple[CameraThread, list[tuple[str, str]], list[np.ndarray]]:
    thread = CameraThread(source, fps=200, max_failures=3, retry_s=0.02)
    states: list[tuple[str, str]] = []
    frames: list[np.ndarray] = []
    thread.status_changed.connect(lambda s, m: states.append((s, m)))

    def take(frame: np.ndarray) -> None:
        frames.append(frame)
        thread.frame_consumed()

    thread.frame_ready.connect(take)
    thread.start()
    return thread, states, frames


def _stop(qtbot, thread: CameraThread, source: FakeCapture, caplog) -> None:
    thread.stop(timeout_ms=5000)
    assert thread.isFinished()
    assert not any("did not stop" in r.getMessage() for r in caplog.records), "the thread had to be terminated"
    assert source.releases >= 1


@pytest.mark.parametrize("raises", [False, True], ids=["open-fails", "open-raises"])
def test_camera_that_cannot_be_opened(qtbot, caplog, raises):
    caplog.set_level(logging.INFO)
    cam = FakeCapture(open_ok=False, open_raises=raises)
    thread, states, frames = _run_camera(qtbot, cam)
    qtbot.waitUntil(lambda: cam.opens >= 4, timeout=60000)  # it keeps retrying
    assert states[0][0] == "no_camera" and len(states) == 1, "reported once, not at every retry"
    assert "No camera found (fake USB dermatoscope)" in states[0][1] and "Retrying" in states[0][1]
    assert frames == []
    if raises:
        assert any("Opening fake USB dermatoscope failed" in r.getMessage() and r.exc_info for r in caplog.records)
    _stop(qtbot, thread, cam, caplog)


@pytest.mark.parametrize("read_raises", [False, True], ids=["returns-nothing", "read-raises"])
def test_camera_that_stops_delivering_frames(qtbot, caplog, read_raises):
    caplog.set_level(logging.INFO)
    cam = FakeCapture(frames=5, read_raises=read_raises)
    thread, states, frames = _run_camera(qtbot, cam)
    qtbot.waitUntil(lambda: [s for s, _ in states] == ["live", "lost"], timeout=60000)
    assert states[0][1] == "Camera on: fake USB dermatoscope."
    assert "stopped sending images" in states[1][1] and "reconnect" in states[1][1]
    assert len(frames) == 5 and [int(f[0, 0, 0]) for f in frames] == [1, 2, 3, 4, 5]
    qtbot.waitUntil(lambda: cam.opens >= 3, timeout=60000)  # tries to reconnect, without repeating the message
    assert [s for s, _ in states] == ["live", "lost"]
    if read_raises:
        assert any("Reading from fake USB dermatoscope failed" in r.getMessage() for r in caplog.records)
    _stop(qtbot, thread, cam, caplog)
