"""The one worker type: its signals, their payloads, cooperative cancel, and errors that reach the user."""

from __future__ import annotations

import logging
import time

from lesion_desktop.errors import ImageLoadError
from lesion_desktop.qt.workers import Worker, WorkerRunner
from training.progress import check_cancel


def _collect(worker: Worker) -> dict[str, list]:
    got: dict[str, list] = {"started": [], "progress": [], "partial": [], "finished": [], "errored": []}
    worker.signals.started.connect(lambda: got["started"].append(True))
    worker.signals.progress.connect(lambda f, m: got["progress"].append((f, m)))
    worker.signals.partial.connect(lambda v: got["partial"].append(v))
    worker.signals.finished.connect(lambda r: got["finished"].append(r))
    worker.signals.errored.connect(lambda m: got["errored"].append(m))
    return got


def test_signals_carry_progress_partial_and_result(qtbot):
    def job(progress, x):
        progress.report(0.5, "half way")
        progress.partial({"loss": 1.5})
        return x * 2

    runner = WorkerRunner()
    w = Worker(job, 21)
    got = _collect(w)
    with qtbot.waitSignal(w.signals.finished, timeout=5000):
        runner.start(w)
    assert got == {"started": [True], "progress": [(0.5, "half way")], "partial": [{"loss": 1.5}],
                   "finished": [42], "errored": []}
    assert w.done.is_set() and not runner.busy


def test_our_errors_reach_the_user_verbatim_and_unexpected_ones_are_named(qtbot, caplog):
    def bad_image(progress):
        raise ImageLoadError("The file 'x.jpg' is damaged.")

    def bug(progress):
        raise KeyError("oops")

    runner = WorkerRunner()
    for fn, expected in ((bad_image, "The file 'x.jpg' is damaged."), (bug, "Unexpected error (KeyError")):
        w = Worker(fn)
        got = _collect(w)
        with caplog.at_level(logging.INFO), qtbot.waitSignal(w.signals.errored, timeout=5000):
            runner.start(w)
        assert got["errored"][0].startswith(expected) and got["finished"] == []
    assert "log file" in got["errored"][0]
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert {r.exc_info[0] for r in tracebacks} >= {ImageLoadError, KeyError}


def test_cancel_is_cooperative(qtbot):
    def long_job(progress):
        for i in range(1000):
            check_cancel(progress)
            progress.report(i / 1000, f"step {i}")
            time.sleep(0.005)
        return "never"

    runner = WorkerRunner()
    w = Worker(long_job)
    got = _collect(w)
    runner.start(w)
    qtbot.waitUntil(lambda: len(got["progress"]) > 3, timeout=5000)
    with qtbot.waitSignal(w.signals.errored, timeout=5000):
        w.cancel()
    assert "Cancelled" in got["errored"][0] and got["finished"] == []
    assert runner.shutdown(1000)


def test_a_job_that_outlives_its_closed_and_deleted_window_touches_nothing(qtbot, tiny_models, monkeypatch, caplog):
    """A job the close cannot stop in time (a model load checks no cancel flag; on a busy PC it takes minutes)."""
    import threading

    import shiboken6
    from PySide6.QtWidgets import QApplication

    from lesion_desktop.qt import main_window as mw
    from lesion_desktop.qt.workers import wait_for_lingering
    from lesion_desktop.settings import Settings
    from tests.helpers import HAM, require_data

    image = sorted((require_data(HAM) / "images").glob("*.jpg"))[0]
    started, release = threading.Event(), threading.Event()
    real_analyse = mw.analyse

    def slow_analyse(progress, *args, **kwargs):
        started.set()
        release.wait(60)  # set by the test; the bound only ends a test whose window blocks on the job
        return real_analyse(progress, *args, **kwargs)

    monkeypatch.setattr(mw, "analyse", slow_analyse)
    window = mw.MainWindow(Settings(models_dir=str(tiny_models), device="cpu"))
    qtbot.waitUntil(lambda: window.idle, timeout=300000)
    window.open_path(image)
    (job,) = window.runner._active
    qtbot.waitUntil(started.is_set, timeout=120000)
    window.shutdown_timeout_ms = 50  # the close gives up waiting; the job goes on
    with qtbot.captureExceptions() as exceptions:
        with caplog.at_level(logging.INFO):
            window.close()
        shiboken6.delete(window)  # what deleteLater does at the next event loop; it must not wait for the job
        assert not shiboken6.isValid(window)
        assert not job.done.is_set()  # deleting the window did not wait for the job
        release.set()  # the job ends only once the window is gone
        assert wait_for_lingering(120000)
        QApplication.processEvents()  # delivers what the job sent at its end
    assert job.done.is_set()
    assert exceptions == []  # before the fix: RuntimeError, Internal C++ object (QProgressBar) already deleted
    assert "still running" in caplog.text


def test_results_that_arrive_after_the_window_closed_are_ignored(qtbot, make_window, monkeypatch):
    import threading

    from PySide6.QtWidgets import QApplication

    from lesion_desktop.qt import main_window as mw
    from lesion_desktop.qt.workers import wait_for_lingering
    from tests.helpers import HAM, require_data

    image = sorted((require_data(HAM) / "images").glob("*.jpg"))[0]
    started = threading.Event()
    real_analyse = mw.analyse

    def analyse(progress, *args, **kwargs):
        started.set()
        return real_analyse(progress, *args, **kwargs)

    monkeypatch.setattr(mw, "analyse", analyse)
    w = make_window()
    shown: list = []
    w.result_shown.connect(lambda a: shown.append(a))
    w.failed.connect(lambda m: shown.append(m))
    w.open_path(image)
    qtbot.waitUntil(started.is_set, timeout=120000)
    with qtbot.captureExceptions() as exceptions:
        w.close()  # waits for the analysis (or gives up and leaves it running); what it sends is not shown
        assert wait_for_lingering(120000)
        QApplication.processEvents()  # delivers what the job sent while the window was closing
    assert exceptions == [] and shown == []


def test_cyclic_garbage_is_collected_in_the_gui_thread_never_in_a_worker(qtbot):
    """CI crashed (segmentation fault) when a worker building a model triggered a collection that freed a
    closed dialog caught in a reference cycle: a QWidget destroyed outside the GUI thread. With the guard the
    collector runs only from the GUI thread's timer, whatever the worker allocates."""
    import gc
    import threading

    from lesion_desktop.qt.gc_guard import installed

    assert installed() is not None and not gc.isenabled()  # the tests' qapp installs it, as the app does
    freed_in: list[str] = []

    class InACycle:
        def __del__(self) -> None:
            freed_in.append(threading.current_thread().name)

    gc.collect()
    garbage = InACycle()
    garbage.me = garbage  # type: ignore[attr-defined]
    del garbage

    def allocate(_state):
        threading.current_thread().name = "worker"
        kept = [[] for _ in range(300_000)]  # far past every threshold of the automatic collector
        return len(kept)

    runner = WorkerRunner()
    w = runner.run(allocate)
    qtbot.waitUntil(w.done.is_set, timeout=120000)
    assert "worker" not in freed_in
    qtbot.waitUntil(lambda: bool(freed_in), timeout=60000)  # the timer's collection, in this thread
    assert freed_in == [threading.main_thread().name]


GUARDED_DIALOGS = """
from PySide6.QtWidgets import QApplication, QDialog, QPushButton, QVBoxLayout
from lesion_desktop.qt.gc_guard import install_main_thread_collector
from lesion_desktop.qt.workers import WorkerRunner

app = QApplication([])
install_main_thread_collector()
runner = WorkerRunner()
for _round in range(8):
    for _ in range(20):  # closed dialogs in reference cycles: garbage only the collector frees
        dialog = QDialog()
        button = QPushButton("Close", dialog)
        QVBoxLayout(dialog).addWidget(button)
        button.clicked.connect(lambda: dialog.close())
        dialog.show()
        dialog.close()
        dialog.itself = dialog
        del dialog, button
    worker = runner.run(lambda _state: len([[] for _ in range(300_000)]))
    while not worker.done.is_set():  # the GUI thread busy meanwhile, as in the app
        app.processEvents()
    for _ in range(5):
        app.processEvents()
print("all dialogs freed safely")
"""


def test_closed_dialogs_in_cycles_do_not_crash_a_worker_that_allocates(tmp_path):
    """The crash itself, in a process of its own: without the guard this exits with a segmentation fault
    (the worker's allocations trigger the collection that destroys the dialogs in the worker thread)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", GUARDED_DIALOGS], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "all dialogs freed safely" in done.stdout
