"""GUI responsiveness: the longest event-loop stall while the worker loads models, classifies and retrains.

A QTimer ticks every 5 ms on the GUI thread of the real MainWindow (Qt offscreen); a stall is the gap between
two ticks. Phases, in order, each gap counted in the phase where it ends:
  idle       the baseline: the same window and timer with nothing running
  load       the window's start-up job: loading (and warming up) the ensemble in the worker
  classify   `--images` photos opened one after another (decode, quality check, inference, Grad-CAM,
             history entry in the worker; result panel, pictures and plots drawn on the GUI thread)
  retrain    the retrain dialog's own job (training.pipeline.retrain, one member, a few batches) with its
             progress bar, ETA and live curves updated from the worker's signals
The ratio is each phase's longest gap over the idle one. A full cyclic-GC pass over the ~400k objects of a
loaded app holds the GIL for ~170 ms, whichever thread triggers it: Engine.warm_up() therefore calls
gc.freeze(); `--no-gc-freeze` measures without it (results in gui_stall-no_gc_freeze.json). The app collects
cyclic garbage only on the GUI thread (lesion_desktop.qt.gc_guard, installed here as run_gui does): `--no-gc-guard`
measures with Python's automatic collector instead (gui_stall-no_gc_guard.json). `--diagnose` shows where the
threads were during stalls.

    python -m benchmarks.bench_gui_stall [--models DIR] [--images 8] [--batches 6]
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks._common import (
    FULLRES_IMAGES,
    default_models,
    image_files,
    machine_info,
    print_machine,
    save_results,
    stats,
    table,
    verdict,
)

TICK_MS = 5
TARGET_STALL_MS = 50.0


class StallWatchdog(threading.Thread):
    """Samples the Python stacks of all threads while the GUI thread has not ticked for a while.

    The GUI thread's frame tells whether it was busy in a slot (its own work) or waiting to get the GIL
    back from a worker (then it sits in the tick callback or in Qt's dispatch of a Python slot).
    """

    def __init__(self, ticks: list[float], phases: list[tuple[str, float, float]], threshold_ms: float = 30) -> None:
        super().__init__(daemon=True)
        self.ticks, self.phases, self.threshold = ticks, phases, threshold_ms / 1e3
        self.gui = threading.get_ident()
        self.samples: Counter[tuple[str, str]] = Counter()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.01):
            if not self.ticks or time.perf_counter() - self.ticks[-1] < self.threshold:
                continue
            frames = sys._current_frames()
            gui = _where(frames.get(self.gui))
            others = " | ".join(_where(f) for ident, f in frames.items() if ident not in (self.gui, self.ident))
            self.samples[(gui, others)] += 1

    def stop_and_report(self) -> None:
        self._halt.set()
        self.join(1)
        if not self.samples:
            print("diagnose: no stall over the threshold was sampled")
            return
        print("diagnose: where the threads were during stalls (10 ms samples, most frequent first)")
        for (gui, others), n in self.samples.most_common(8):
            print(f"  {n:4d}x GUI thread: {gui}\n        others: {others}")


def _where(frame: Any, depth: int = 5) -> str:
    """The innermost `depth` frames as file:line function, innermost first."""
    out = []
    while frame is not None and len(out) < depth:
        code = frame.f_code
        out.append(f"{Path(code.co_filename).name}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return " < ".join(out) or "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", help="ensemble folder (default: resources/models/default or a stand-in)")
    p.add_argument("--images", type=int, default=8, help="photos classified in the classify phase")
    p.add_argument("--batches", type=int, default=6, help="training batches in the retrain phase (0 skips it)")
    p.add_argument("--idle-s", type=float, default=2.0)
    p.add_argument("--no-gc-freeze", action="store_true",
                   help="make gc.freeze() a no-op, to measure the app without Engine.warm_up's GC freeze")
    p.add_argument("--no-gc-guard", action="store_true",
                   help="leave Python's automatic collector on, as before lesion_desktop.qt.gc_guard")
    p.add_argument("--diagnose", action="store_true",
                   help="sample every thread's Python stack during stalls over 30 ms and print where they were")
    args = p.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    info = machine_info()
    print_machine(info)
    models, kind = default_models(args.models)
    files = image_files(FULLRES_IMAGES, args.images)
    if args.no_gc_freeze:
        gc.freeze = lambda: None  # the state before the fix

    from PySide6.QtCore import QEventLoop, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(["bench"])
    if not args.no_gc_guard:
        from lesion_desktop.qt.gc_guard import install_main_thread_collector

        install_main_thread_collector()  # as run_gui does before the window exists
    ticks: list[float] = []
    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)
    dump = tempfile.TemporaryFile(mode="w+") if args.diagnose else None

    def tick() -> None:
        ticks.append(time.perf_counter())
        if dump is not None:  # a C-level watchdog: dumps every thread's stack if the next tick is 100 ms late
            faulthandler.dump_traceback_later(0.1, repeat=False, file=dump)

    timer.timeout.connect(tick)
    phases: list[tuple[str, float, float]] = []
    keep: list[Any] = []
    messages: list[tuple[float, str]] = []  # (time, progress message) from the retrain worker

    def wait(cond: Any, timeout_s: float) -> bool:
        """Run the event loop (not a processEvents loop) until cond() holds."""
        loop = QEventLoop()
        check = QTimer()
        check.timeout.connect(lambda: loop.quit() if cond() else None)
        check.start(20)
        limit = QTimer()
        limit.setSingleShot(True)
        limit.timeout.connect(loop.quit)
        limit.start(int(timeout_s * 1000))
        loop.exec()
        check.stop()
        limit.stop()
        keep.extend([loop, check, limit])  # destroyed on this thread at the end, never by a GC elsewhere
        return bool(cond())

    def phase(name: str, start: Any, done: Any, timeout_s: float) -> None:
        t0 = time.perf_counter()
        start()
        ok = wait(done, timeout_s)
        phases.append((name, t0, time.perf_counter()))
        print(f"  {name}: {time.perf_counter() - t0:.1f} s{'' if ok else ' (timed out)'}", flush=True)

    from lesion_desktop.qt.main_window import MainWindow
    from lesion_desktop.settings import Settings

    timer.start()
    watchdog = StallWatchdog(ticks, phases) if args.diagnose else None
    if watchdog:
        watchdog.start()
    holder: dict[str, Any] = {"dialog_open_s": None}
    print(f"\nmodels {models} ({kind}) ...", flush=True)

    def open_window() -> None:
        holder["w"] = MainWindow(Settings(models_dir=str(models), device="cpu"), camera_retry_s=0.05)
        holder["w"].show()

    phase("load", open_window, lambda: holder["w"].idle and holder["w"].engine is not None, 600)
    window = holder["w"]
    phase("idle", lambda: None, lambda: time.perf_counter() - phases[-1][2] >= args.idle_s, args.idle_s + 5)
    shown: list[Any] = []

    def next_image(_analysis: Any = None) -> None:
        # One after another, as a user opens photos: a queued request would supersede the one before it.
        if _analysis is not None:
            shown.append(_analysis)
        if len(shown) < len(files):
            window.classify(files[len(shown)], files[len(shown)].name)

    window.result_shown.connect(next_image)
    phase("classify", next_image, lambda: len(shown) >= len(files) and window.idle, 900)
    window.result_shown.disconnect(next_image)
    if args.batches > 0:
        from benchmarks.bench_training import make_subset
        from training.pipeline import RetrainConfig

        work = Path(tempfile.mkdtemp(prefix="bench-gui-"))
        data, _, _ = make_subset(work, 40)
        t0 = time.perf_counter()
        dialog = window.open_retrain()  # building the dialog is GUI-thread work: timed apart
        opened_s = time.perf_counter() - t0
        holder["dialog_open_s"] = opened_s
        print(f"  opening the retrain dialog: {opened_s * 1e3:.0f} ms on the GUI thread", flush=True)
        wait(lambda: False, 0.5)  # let it paint before the phase starts
        cfg = RetrainConfig(data=str(data), architectures=["mobilenet_v2"], work_dir=str(work / "run"),
                            epochs_head=0, epochs_top=0, epochs_all=1, input_size=(150, 200), imagenet="none",
                            batch_size=32, max_batches=args.batches, device="cpu", command="benchmark")
        dialog.config = lambda: cfg  # the fields would say the same; the dialog's own start() runs the job

        def start_retrain() -> None:
            dialog.start()
            if dialog.worker is not None:  # note, on the worker thread, when each step began
                dialog.worker.signals.progress.connect(
                    lambda _f, msg: messages.append((time.perf_counter(), msg)), Qt.ConnectionType.DirectConnection)

        phase("retrain", start_retrain, lambda: not dialog.running, 900)
        dialog.close()
    timer.stop()
    window.close()
    if watchdog:
        watchdog.stop_and_report()
    if dump is not None:
        faulthandler.cancel_dump_traceback_later()
        dump.seek(0)
        text = dump.read()
        print(f"diagnose: stacks dumped 100 ms into stalls ({text.count('Timeout (')} dumps), "
              "the GUI thread's (first listed as 'Current thread' or its ident) and the others':")
        print(text[-6000:] or "  none")

    gaps: dict[str, list[float]] = {name: [] for name, _, _ in phases}
    for a, b in zip(ticks, ticks[1:], strict=False):
        for name, t0, t1 in phases:
            if t0 <= b <= t1:
                gaps[name].append((b - a) * 1e3)
    summary: dict[str, Any] = {}
    idle_max = max(gaps["idle"]) if gaps["idle"] else None
    rows = []
    for name, g in gaps.items():
        if not g:
            continue
        s = stats(g)
        g_sorted = sorted(g)
        s["p99"] = g_sorted[min(len(g) - 1, int(0.99 * len(g)))]
        s["over_50ms"] = sum(x > TARGET_STALL_MS for x in g)
        s["ratio_max_vs_idle"] = s["max"] / idle_max if idle_max else None
        summary[name] = s
        rows.append([name, len(g), s["median"], s["p99"], s["max"], s["over_50ms"], s["ratio_max_vs_idle"]])
    if args.diagnose:
        worst_gaps = sorted(((b - a, a, b) for a, b in zip(ticks, ticks[1:], strict=False)), reverse=True)[:5]
        print("diagnose: longest gaps and the retrain worker's last progress message before each")
        for g, a, _b in worst_gaps:
            before = [m for t, m in messages if t <= a + g]
            print(f"  {g * 1e3:6.0f} ms  after: {before[-1] if before else '-'}")
    print()
    print(table(rows, ["phase", "ticks", "median gap ms", "p99 gap ms", "max gap ms", "gaps > 50 ms",
                       "max / idle max"]))
    worst = max((s["max"] for k, s in summary.items() if k != "idle"), default=0.0)
    met = worst <= TARGET_STALL_MS
    print(f"target: no stall over {TARGET_STALL_MS:.0f} ms while working: worst {worst:.0f} ms, {verdict(met)}")
    name = "gui_stall" + ("-no_gc_freeze" if args.no_gc_freeze else "") + ("-no_gc_guard" if args.no_gc_guard else "")
    save_results(name, info, {"models": str(models), "models_kind": kind, "tick_ms": TICK_MS,
                                     "images": len(files), "retrain_batches": args.batches, "summary": summary,
                                     "retrain_dialog_open_s": holder["dialog_open_s"],
                                     "worst_ms": worst, "target_ms": TARGET_STALL_MS, "target_met": met,
                               "gc_freeze": not args.no_gc_freeze, "gc_guard": not args.no_gc_guard,
                               "gc_tracked_objects": len(gc.get_objects())})
    app.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
