"""The one worker type: runs a plain `fn(progress, ...)` in a thread pool and reports through signals.

The function gets a `training.progress.TaskState` (report / cancelled / partial), the same object the
command line uses, so long-running core code never knows it runs under Qt. Signals are queued to the
GUI thread, where the only widget updates happen.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from lesion_desktop.errors import CancelledError, LesionError
from training.progress import TaskState

log = logging.getLogger(__name__)
SIGNAL_NAMES = ("started", "progress", "partial", "finished", "errored")
# Pools whose jobs were still running when their owner shut down: kept alive, owned by no widget, until
# those jobs end (a QThreadPool's destructor blocks until its jobs are done; see WorkerRunner.shutdown).
_lingering: list[tuple[QThreadPool, set[Worker]]] = []


class WorkerSignals(QObject):
    started = Signal()
    progress = Signal(float, str)
    partial = Signal(object)
    finished = Signal(object)
    errored = Signal(str)


def describe_error(exc: BaseException) -> str:
    """Our own errors are written for the user; anything else is named and pointed at the log."""
    if isinstance(exc, LesionError):
        return str(exc) or type(exc).__name__
    return f"Unexpected error ({type(exc).__name__}: {exc}). The details are in the log file."


class Worker(QRunnable):
    """Runs `fn(state, *args, **kwargs)`; exactly one of finished/errored is emitted at the end."""

    def __init__(self, fn: Callable[..., Any], *args: Any, name: str = "", **kwargs: Any) -> None:
        super().__init__()
        self.setAutoDelete(False)  # Python owns it: the pool must not delete the object we keep signals on
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.name = name or getattr(fn, "__name__", "task")
        self.signals = WorkerSignals()
        self.state = TaskState(on_report=self.signals.progress.emit, on_partial=self.signals.partial.emit)
        self.done = threading.Event()

    def cancel(self) -> None:
        """Cooperative: the function stops at its next `cancelled()` check."""
        self.state.cancel()

    def detach(self) -> None:
        """Disconnect every slot: whatever the job reports from now on reaches no one (its owner is gone)."""
        for name in SIGNAL_NAMES:
            signal = getattr(self.signals, name)
            with warnings.catch_warnings():  # PySide warns when a signal had no connection left
                warnings.simplefilter("ignore", RuntimeWarning)
                try:
                    signal.disconnect()
                except (RuntimeError, TypeError):
                    pass

    def run(self) -> None:
        self.signals.started.emit()
        error: str | None = None
        result: Any = None
        try:
            result = self.fn(self.state, *self.args, **self.kwargs)
        except CancelledError as e:
            log.info("%s cancelled: %s", self.name, e)
            error = describe_error(e)
        except LesionError as e:
            log.warning("%s failed: %s", self.name, e, exc_info=True)
            error = describe_error(e)
        except Exception as e:
            log.exception("%s failed unexpectedly", self.name)
            error = describe_error(e)
        except BaseException:
            self.done.set()
            raise
        # `done` before the signal: a slot reacting to it must already see this worker as finished.
        self.done.set()
        if error is None:
            self.signals.finished.emit(result)
        else:
            self.signals.errored.emit(error)


class WorkerRunner(QObject):
    """A pool plus the workers it is running, so a window can cancel and wait for them when it closes."""

    def __init__(self, max_threads: int = 1, parent: QObject | None = None) -> None:
        super().__init__(parent)
        # No Qt parent: deleting the owner (a closed window) must never block on a job that is still running.
        self.pool = QThreadPool()
        self._max_threads = max_threads
        self.pool.setMaxThreadCount(max_threads)  # one at a time: model jobs then run in submission order
        self._active: set[Worker] = set()

    def start(self, worker: Worker) -> Worker:
        self._active.add(worker)
        worker.signals.finished.connect(lambda _r, w=worker: self._active.discard(w))
        worker.signals.errored.connect(lambda _m, w=worker: self._active.discard(w))
        self.pool.start(worker)
        return worker

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Worker:
        return self.start(Worker(fn, *args, **kwargs))

    @property
    def busy(self) -> bool:
        return any(not w.done.is_set() for w in self._active)

    def cancel_all(self) -> None:
        for w in list(self._active):
            w.cancel()

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel everything and wait; False if something is still running after the timeout.

        Either way the jobs are detached: their signals reach no slot of the owner, which is going away.
        A job that does not stop in time (a model load checks no cancel flag) runs on, and its pool
        lingers, owned by no widget, until it is done.
        """
        self.cancel_all()
        self.pool.clear()  # queued jobs that never started are dropped
        ok = self.pool.waitForDone(timeout_ms)
        for w in self._active:
            w.detach()
        if not ok:
            running = [w.name for w in self._active if not w.done.is_set()]
            log.error("Background work still running after %d ms at shutdown (%s); its results will be ignored",
                      timeout_ms, ", ".join(running) or "a queued job")
            _lingering.append((self.pool, set(self._active)))
            self.pool = QThreadPool()
            self.pool.setMaxThreadCount(self._max_threads)
        self._active.clear()
        reap_lingering()
        return ok


def reap_lingering() -> None:
    """Drop the pools kept for jobs that outlived their owner, once those jobs are done."""
    _lingering[:] = [(pool, jobs) for pool, jobs in _lingering if not pool.waitForDone(0)]


def wait_for_lingering(timeout_ms: int) -> bool:
    """At exit: give jobs that outlived their windows a last chance to end; False if some still run."""
    ok = all(pool.waitForDone(timeout_ms) for pool, _jobs in list(_lingering))
    reap_lingering()
    return ok
