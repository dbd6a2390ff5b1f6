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
