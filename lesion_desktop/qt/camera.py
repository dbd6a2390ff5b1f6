"""Live camera preview: frames are read in a QThread and handed to the GUI thread by a signal.

The source is injectable (`FrameSource`): tests pass a fake one or a video file, users a webcam or a
USB dermatoscope. A camera that cannot be opened or stops delivering frames (unplugged) is reported
once and retried until it comes back, so the user never has to restart the program.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal

from lesion_desktop.settings import Settings

log = logging.getLogger(__name__)
translate = QCoreApplication.translate  # a literal context and text in each call: pyside6-lupdate finds them


class FrameSource(Protocol):
    description: str

    def open(self) -> bool: ...
    def read(self) -> np.ndarray | None: ...  # RGB uint8, or None when no frame came
    def release(self) -> None: ...


class OpenCVSource:
    """A camera index or a video file through cv2.VideoCapture; files loop, like a camera never ends."""

    def __init__(self, source: int | str, resolution: tuple[int, int] | None = None) -> None:
        self.source = source
        self.resolution = resolution
        self.is_file = isinstance(source, str)
        self.description = (translate("Camera", "video file {name}").format(name=Path(source).name)
                            if isinstance(source, str) else translate("Camera", "camera {index}").format(index=source))
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> bool:
        self.release()
        if self.is_file and not Path(str(self.source)).is_file():
            return False
        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            return False
        if not self.is_file and self.resolution:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.resolution[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.resolution[1])
        self._cap = cap
        return True

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        ok, frame = self._cap.read()
        if not ok and self.is_file:  # end of the file: start again
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read()
        if not ok or frame is None or frame.ndim != 3:
            return None
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def default_source(settings: Settings) -> FrameSource:
    if settings.camera_video:
        return OpenCVSource(settings.camera_video)
    return OpenCVSource(settings.camera_index, settings.camera_resolution)


SourceFactory = Callable[[Settings], FrameSource]


class CameraThread(QThread):
    """Reads frames until stopped; `status_changed(state, message)` with state live/no_camera/lost."""

    frame_ready = Signal(object)
    status_changed = Signal(str, str)

    def __init__(self, source: FrameSource, *, fps: float = 30.0, max_failures: int = 10,
                 retry_s: float = 1.0, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.source = source
        self.frame_interval = 1.0 / fps
        self.max_failures = max_failures
        self.retry_s = retry_s
        self.state = ""
        self._stop = threading.Event()
        self._consumed = threading.Event()  # the GUI took the last frame: frames never pile up in the queue
        self._consumed.set()

    def stop(self, timeout_ms: int = 5000) -> None:
        """Ask the loop to end and wait; a stuck driver is terminated only after the wait failed."""
        self._stop.set()
        if self.isRunning() and not self.wait(timeout_ms):
            log.error("Camera thread did not stop within %d ms; terminating it", timeout_ms)
            self.terminate()
            self.wait(1000)

    def frame_consumed(self) -> None:
        self._consumed.set()

    def _set_state(self, state: str, message: str) -> None:
        if state != self.state:
            self.state = state
            log.info("camera %s: %s", state, message)
            self.status_changed.emit(state, message)

    def _open(self, was_lost: bool) -> bool:
        try:
            opened = self.source.open()
        except Exception:
            log.exception("Opening %s failed", self.source.description)
            opened = False
        if not opened:
            where = f"{self.source.description}"
            text = (translate("Camera", "The camera ({where}) is still disconnected; retrying…") if was_lost else
                    translate("Camera", "No camera found ({where}). Check that it is plugged in and not used by "
                              "another program, or choose another camera in Settings. Retrying…")).format(where=where)
            self._set_state("lost" if was_lost else "no_camera", text)
            return False
        self._set_state("live", translate("Camera", "Camera reconnected.") if was_lost
                        else translate("Camera", "Camera on: {source}.").format(source=self.source.description))
        return True

    def _read(self) -> np.ndarray | None:
        try:
            return self.source.read()
        except Exception:
            log.exception("Reading from %s failed", self.source.description)
            return None

    def run(self) -> None:
        opened = was_lost = False
        failures = 0
        try:
            while not self._stop.is_set():
                if not opened:
                    opened = self._open(was_lost)
                    failures = 0
                    if not opened:
                        self._stop.wait(self.retry_s)
                    continue
                frame = self._read()
                if frame is None:
                    failures += 1
                    if failures >= self.max_failures:
                        self._set_state("lost", translate("Camera", "The camera ({where}) stopped sending images; is "
                                                          "it unplugged? Trying to reconnect…").format(
                            where=self.source.description))
                        self.source.release()
                        opened, was_lost = False, True
                        self._stop.wait(self.retry_s)
                    else:
                        self._stop.wait(0.02)
                    continue
                failures = 0
                if self._consumed.is_set():
                    self._consumed.clear()
                    self.frame_ready.emit(frame)
                self._stop.wait(self.frame_interval)
        finally:
            self.source.release()
