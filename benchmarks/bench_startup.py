"""App start-up: time from launching the process to the window shown and to the first result.

Each repetition launches, in turn (order rotated):
  app    the real GUI, lesion_desktop.qt.app.run_gui with --open IMAGE --models DIR --quit-after-result
         (Qt offscreen): milestones window_painted, engine_loaded, result_shown (the result panel filled,
         Grad-CAM and the history entry included)
  bare   the floor for a window: a process that imports PySide6 and paints an empty QMainWindow
  plain  the floor for a result: a plain script importing torch, building the models, loading their
         safetensors weights and classifying the image with PIL + torchvision transforms
Times count from just before the process is spawned (interpreter start included). The user-data folder
persists across repetitions, as on a user's machine after the first start; one extra "first start" run
with an empty data folder (ONNX export, if that backend is used, and new history database) is reported apart.

    python -m benchmarks.bench_startup [--models DIR] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    FULLRES_IMAGES,
    REPO,
    default_models,
    image_files,
    machine_info,
    print_machine,
    save_results,
    stats,
    table,
    verdict,
)

PROBE = Path(__file__).with_name("_gui_probe.py")
TARGET_WINDOW_S = 2.0


def launch(args: list[str], home: Path, timeout: float = 180.0) -> dict[str, float]:
    events = Path(tempfile.mkstemp(prefix="bench-events-", suffix=".jsonl")[1])
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("BENCH_QPA", "offscreen"),
           "LESION_DESKTOP_HOME": str(home), "BENCH_EVENTS": str(events),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env["BENCH_T0"] = repr(time.time())
    proc = subprocess.run([sys.executable, str(PROBE), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    out: dict[str, float] = {}
    for line in events.read_text().splitlines():
        e = json.loads(line)
        out.setdefault(e["event"], e["t"])
    events.unlink()
    if proc.returncode != 0:
        out["failed"] = float(proc.returncode)
        print(f"  {args[0]} exited with {proc.returncode}: {proc.stderr.strip()[-800:]}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", help="ensemble folder (default: resources/models/default or a stand-in)")
    p.add_argument("--image", default=str(image_files(FULLRES_IMAGES)[0]), help="image opened at start-up")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--no-first-start", action="store_true", help="skip the empty-data-folder run")
    args = p.parse_args(argv)

    info = machine_info()
    print_machine(info)
    models, kind = default_models(args.models)
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    app_args = ["app", "--open", args.image, "--models", str(models), "--quit-after-result"]
    runs = {"app": app_args, "bare": ["bare"], "plain": ["plain", str(models), args.image]}
    print(f"\nmodels {models} ({kind}); image {args.image}; {args.reps} repetitions ...", flush=True)
    first: dict[str, float] = {}
    if not args.no_first_start:
        first = launch(app_args, work / "first-home")
        print(f"  first start (empty data folder): {first}", flush=True)
    home = work / "home"
    launch(app_args, home)  # fills the data folder (and any ONNX cache) like an earlier session would
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in runs}
    names = list(runs)
    for r in range(args.reps):
        for name in names[r % 3:] + names[: r % 3]:
            samples[name].append(launch(runs[name], home))
    summary: dict[str, Any] = {}
    for name, evs in samples.items():
        keys = sorted({k for e in evs for k in e if k != "failed"}, key=lambda k: min(e.get(k, 1e9) for e in evs))
        summary[name] = {k: stats([e[k] for e in evs if k in e]) for k in keys}
        summary[name]["failures"] = sum("failed" in e for e in evs)
    app, bare, plain = summary["app"], summary["bare"], summary["plain"]
    rows = []
    for name, s in summary.items():
        for k, st in s.items():
            if k != "failures":
                rows.append([name, k, st["median"], st["p10"], st["p90"]])
    print()
    print(table(rows, ["process", "milestone", "median s", "p10 s", "p90 s"]))
    window = app.get("window_painted", {}).get("median")
    result = app.get("result_shown", {}).get("median")
    ratios = {
        "window_vs_bare_qt": window / bare["window_painted"]["median"] if window and "window_painted" in bare else None,
        "result_vs_plain_script": result / plain["result_shown"]["median"] if result and "result_shown" in plain
        else None,
    }
    print(f"\nwindow shown: {window:.2f} s ({ratios['window_vs_bare_qt']:.2f}x a bare Qt window); "
          f"first result: {result:.2f} s ({ratios['result_vs_plain_script']:.2f}x a plain torch script)"
          if window and result else f"\nmissing milestones: {summary['app']}")
    met = window is not None and window <= TARGET_WINDOW_S
    print(f"target: window shown within {TARGET_WINDOW_S:.0f} s: {verdict(met if window else None)}")
    save_results("startup", info, {"models": str(models), "models_kind": kind, "image": args.image,
                                   "reps": args.reps, "summary": summary, "first_start": first, "ratios": ratios,
                                   "target_window_s": TARGET_WINDOW_S, "target_met": met})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
