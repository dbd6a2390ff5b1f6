"""Camera preview and capture: a video file through the real cv2.VideoCapture path, and a fake camera
that is unplugged and plugged back in during the preview."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView

from lesion_desktop.imageio import load_image
from lesion_desktop.settings import Settings
from tests.helpers import HAM, require_data


def _ham_images(n: int) -> list[np.ndarray]:
    require_data()
    return [load_image(p) for p in sorted((HAM / "images").glob("*.jpg"))[20 : 20 + n]]


@pytest.fixture
def lesion_video(tmp_path) -> Path:
    """An MJPG video made from real HAM10000 images: the capture path without a camera."""
    path = tmp_path / "dermatoscope.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (200, 150))
    assert writer.isOpened()
    for rgb in _ham_images(8):
        for _ in range(3):
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    assert path.stat().st_size > 10_000
    return path


class FakeCamera:
    """A camera that can be unplugged: reads fail and it cannot be reopened until plugged back in."""

    description = "fake dermatoscope"

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = frames
        self.unplugged = threading.Event()
        self.reads = self.opens = self.releases = 0
        self.is_open = False

    def open(self) -> bool:
        self.opens += 1
        self.is_open = not self.unplugged.is_set()
        return self.is_open

    def read(self) -> np.ndarray | None:
        if self.unplugged.is_set() or not self.is_open:
            return None
        self.reads += 1
        return self.frames[self.reads % len(self.frames)].copy()

    def release(self) -> None:
        self.releases += 1
        self.is_open = False


def test_capture_from_a_video_file_through_opencv(qtbot, make_window, tiny_models, lesion_video):
    w = make_window(Settings(models_dir=str(tiny_models), device="cpu", camera_video=str(lesion_video)))
    w.actions_.camera.trigger()
    qtbot.waitUntil(lambda: w.live_frame is not None, timeout=60000)
    assert not w.live_view.isHidden() and w.live_view.image_size() == (150, 200)
    assert "dermatoscope.avi" in w.live_view.caption
    with qtbot.waitSignal(w.result_shown, timeout=300000) as blocker:
        w.actions_.capture.trigger()
    a = blocker.args[0]
    assert a.record.source_name.startswith("Camera capture")
    assert a.image.shape == (150, 200, 3)
    # the frame is one of the lesion images (MJPG is lossy: compare loosely)
    assert min(np.abs(a.image.astype(int) - f.astype(int)).mean() for f in _ham_images(8)) < 12
    assert sum(w.result_panel.chart.values()) == pytest.approx(1.0, abs=1e-4)
    assert w.image_view.image_size() == (150, 200) and w.input_view.image_size() == (48, 64)
    camera = w.camera
    w.close()
    assert w.camera is None and camera is not None and camera.isFinished()


def test_capture_shortcut_with_an_injected_camera(qtbot, make_window):
    cam = FakeCamera(_ham_images(3))
    w = make_window(camera_source=lambda settings: cam)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    w.set_camera_on(True)
    qtbot.waitUntil(lambda: w.live_frame is not None, timeout=60000)
    with qtbot.waitSignal(w.result_shown, timeout=300000) as blocker:
        qtbot.keyClick(w, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert blocker.args[0].record.source_name.startswith("Camera capture")
    w.close()
    assert cam.releases >= 1 and not cam.is_open


def test_unplugged_camera_is_reported_and_recovers(qtbot, make_window):
    cam = FakeCamera(_ham_images(3))
    w = make_window(camera_source=lambda settings: cam)
    w.set_camera_on(True)
    qtbot.waitUntil(lambda: w.live_frame is not None, timeout=60000)

    with qtbot.waitSignal(w.camera.status_changed, timeout=60000,
                          check_params_cb=lambda state, msg: state == "lost"):
        cam.unplugged.set()
    assert "stopped sending images" in w.message_bar.text() and w.message_bar.level == "warning"
    assert w.live_frame is None and "unplugged" in w.live_view.caption
    w.capture()  # nothing to capture while it is gone
    assert "No camera image yet" in w.message_bar.text()
    opens_while_unplugged = cam.opens
    qtbot.waitUntil(lambda: cam.opens > opens_while_unplugged + 1, timeout=60000)  # it keeps retrying

    with qtbot.waitSignal(w.camera.status_changed, timeout=60000,
                          check_params_cb=lambda state, msg: state == "live" and "reconnected" in msg):
        cam.unplugged.clear()
    qtbot.waitUntil(lambda: w.live_frame is not None, timeout=60000)
    assert "reconnected" in w.message_bar.text()
    with qtbot.waitSignal(w.result_shown, timeout=300000):
        w.capture()
    w.close()
    assert not cam.is_open


def test_no_camera_gives_a_clear_message(qtbot, make_window, tiny_models, tmp_path):
    missing = tmp_path / "no-such-video.avi"  # the same path as a camera index that does not exist
    w = make_window(Settings(models_dir=str(tiny_models), device="cpu", camera_video=str(missing)))
    w.capture()  # starts the camera
    qtbot.waitUntil(lambda: "No camera found" in w.message_bar.text(), timeout=60000)
    assert "no-such-video.avi" in w.message_bar.text() and "Settings" in w.message_bar.text()
    w.capture()
    assert "No camera image yet" in w.message_bar.text()
    w.actions_.camera.trigger()  # stop
    assert w.camera is None and w.live_view.isHidden()


def test_space_captures_only_while_the_camera_is_on(qtbot, make_window):
    """Space in the history list (or anywhere) must not start the camera; while the camera runs, it captures."""
    from lesion_desktop.qt.history_panel import HistoryPanel

    cam = FakeCamera(_ham_images(3))
    w = make_window(camera_source=lambda settings: cam)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)  # shortcuts reach only the active window: else Space would do nothing anyway
    lists = w.history.findChildren(QAbstractItemView)  # the history's list of examinations
    assert isinstance(w.history, HistoryPanel) and lists
    target = lists[0]
    target.setFocus()
    qtbot.keyClick(target, Qt.Key.Key_Space)
    target.clearFocus()
    qtbot.keyClick(w, Qt.Key.Key_Space)  # nor with no widget to take it: Space alone never starts the camera
    qtbot.wait(50)
    assert w.camera is None and cam.opens == 0 and w.idle and w.history.record_ids() == []
    w.set_camera_on(True)
    qtbot.waitUntil(lambda: w.live_frame is not None, timeout=60000)
    target.setFocus()
    with qtbot.waitSignal(w.result_shown, timeout=300000) as blocker:
        qtbot.keyClick(target, Qt.Key.Key_Space)
    assert blocker.args[0].record.source_name.startswith("Camera capture")
    w.actions_.camera.trigger()  # off again: Space is the list's once more
    assert w.camera is None and not w.space_capture.isEnabled()
    w.close()


def test_live_preview_is_large_enough_to_focus_and_says_how_sharp(qtbot, make_window):
    """At 1024x768 with the history open, the preview is the largest picture, zoomable, with a sharpness figure."""
    frames = _ham_images(3)
    big = [cv2.resize(f, (640, 480)) for f in frames]
    blurred = [cv2.GaussianBlur(f, (0, 0), 8) for f in big]
    cam = FakeCamera(big)
    w = make_window(camera_source=lambda settings: cam)
    w.resize(1024, 768)
    w.show()
    qtbot.waitExposed(w)
    w.set_camera_on(True)
    qtbot.waitUntil(lambda: w.live_frame is not None, timeout=60000)
    qtbot.waitUntil(lambda: w.live_view.picture_rect().width() > 300)
    live = w.live_view.picture_rect()
    assert live.width() >= 380, live
    assert live.width() > 1.5 * w.image_view.picture_rect().width() or not w.image_view.has_image()
    assert "in focus" in w.live_view.caption and "Sharpness" in w.live_view.caption
    w.live_view.zoom_at(4.0)
    cam.frames = blurred
    qtbot.waitUntil(lambda: "blurred" in w.live_view.caption, timeout=60000)
    assert w.live_view.zoom() == 4.0  # new frames keep the zoom the user set to check the focus
    # under the preview, the captured image and its heat-map side by side: narrow, their captions wrap, never cut
    with qtbot.waitSignal(w.result_shown, timeout=300000):
        w.capture()
    assert not w.view_grid.stacked()
    for view in (w.image_view, w.input_view):
        assert view.has_image() and not view.caption_cut(), view.caption
    w.input_view.set_image(w.current.preprocessed, "Heat-map for Actinic keratosis / intraepithelial carcinoma (akiec)")
    assert not w.input_view.caption_cut()
    w.close()


def test_camera_messages_go_when_the_camera_stops(qtbot, make_window):
    cam = FakeCamera(_ham_images(3))
    w = make_window(camera_source=lambda settings: cam)
    w.capture()  # camera off: starts it and says how to capture
    assert "Starting the camera" in w.message_bar.text()
    qtbot.waitUntil(lambda: w.live_frame is not None, timeout=60000)
    assert "Camera on" in w.message_bar.text()  # the start message replaced by the news, not left standing
    w.actions_.camera.trigger()
    assert w.camera is None and w.message_bar.text() == ""
