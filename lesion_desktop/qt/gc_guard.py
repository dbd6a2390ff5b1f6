"""Python's cyclic garbage collector runs only in the GUI thread while the window is up.

Left automatic, a collection runs in whichever thread happens to allocate past the threshold: a model load or a
retraining job in a worker thread then frees a closed dialog that sat in a reference cycle (a slot closing over
its own widget), and a QWidget destroyed outside the GUI thread crashes the process (a segmentation fault seen
in CI while a worker built a model). So the automatic collector is switched off and the same thresholds are
checked from a timer in the GUI thread, which does the collections there. Reference counting still frees
everything that is not in a cycle at once, in any thread.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer

CHECK_INTERVAL_MS = 500


class MainThreadCollector(QObject):
    """Install once, from the GUI thread, after the QApplication exists; `uninstall` gives the collector back."""

    def __init__(self, interval_ms: int = CHECK_INTERVAL_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        self._thresholds = gc.get_threshold()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.collect_if_due)

    def install(self) -> MainThreadCollector:
        app = QCoreApplication.instance()
        if app is None or QThread.currentThread() is not app.thread():
            raise RuntimeError("the garbage collector guard is installed from the GUI thread, after the application")
        gc.disable()
        self._timer.start()
        return self

    def uninstall(self) -> None:
        self._timer.stop()
        self.collect_if_due()
        if self._was_enabled:
            gc.enable()

    def collect_if_due(self) -> int:
        """Collect here the oldest generation the automatic collector would have reached; returns it.

        The youngest generation is collected on every tick (cheap): the counts are allocations less
        deallocations, so a worker that allocates a burst and frees it leaves them low although the automatic
        collector would have run during the burst. Each of these collections counts towards the next
        generation's threshold, so older garbage is reached too, as it would be without the guard.
        """
        counts = gc.get_count()
        generation = 0
        for gen in range(1, len(counts)):
            if self._thresholds[gen] and counts[gen] > self._thresholds[gen]:
                generation = gen
        gc.collect(generation)
        return generation


_installed: MainThreadCollector | None = None


def installed() -> MainThreadCollector | None:
    return _installed


def install_main_thread_collector() -> Callable[[], None]:
    """Install the process-wide guard; returns what undoes it (nothing, where it was installed already)."""
    global _installed
    if _installed is not None:
        return lambda: None
    collector = _installed = MainThreadCollector().install()

    def undo() -> None:
        global _installed
        collector.uninstall()
        collector.deleteLater()
        _installed = None

    return undo
