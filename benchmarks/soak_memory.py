"""Long-session soak: thousands of classifications in one process, watching resident memory (RSS).

Each iteration does what the app does for one image (lesion_desktop/analysis.py `analyse`): decode the file
(`load_image`), judge its quality, classify it with the ensemble and write the result to the records
database with its image copy and blobs. The app also computes a Grad-CAM heat-map per result; on a CPU that
costs 5-10x the classification, so by default every 10th iteration does it (--gradcam-every 1: all of them,
0: none), which still runs the hooks and autograd path hundreds of times. RSS is sampled every --every
iterations after a warm-up; a leak shows as steady growth across the samples.

    python benchmarks/soak_memory.py                 # 5,000 iterations (about 10-20 min on 2 busy cores)
    python benchmarks/soak_memory.py --n 300 --every 50

Models: the bundled default ensemble (resources/models/default) when present, else a stand-in with the
same architectures and input size (mobilenet_v2 + efficientnet_lite0 at 150x200, random weights: memory and
speed do not depend on the weights' values). All user paths (history, caches) go to a temporary folder.
Target (issue): RSS growth after warm-up under 50 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

HAM_IMAGES = REPO.parent / "shared" / "data" / "ham10000" / "images"
BUNDLED_DEFAULT = REPO / "resources" / "models" / "default"
TARGET_MB = 50.0


def rss_mb() -> float:
    """Resident set size of this process, from /proc (no psutil needed)."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_standin(folder: Path) -> Path:
    """The default ensemble's architectures and input size with random weights."""
    import torch

    from lesion_desktop.bundle import save_bundle, save_ensemble
    from lesion_desktop.preprocess import PreprocessConfig
    from lesion_desktop.registry import build_model, get_spec

    if (folder / "manifest.json").is_file():
        return folder
    members = []
    for i, arch in enumerate(("mobilenet_v2", "efficientnet_lite0")):
        torch.manual_seed(i)
        spec = get_spec(arch)
        pre = PreprocessConfig(input_size=(150, 200), mean=spec.mean, std=spec.std)
        save_bundle(build_model(arch).eval(), folder / arch, architecture=arch, preprocess=pre,
                    training={"note": "soak stand-in, random weights"}, half=True)
        members.append((arch, 1.0))
    return save_ensemble(folder, members, name="soak-standin (random weights)")


def fit_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 with fewer than two points)."""
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def soak(n: int, every: int, warmup: int, models: Path, images: list[Path], gradcam_every: int,
         home: Path) -> dict[str, Any]:
    from lesion_desktop.imageio import load_image, quality_check
    from lesion_desktop.inference import load_engine
    from lesion_desktop.records import RecordStore

    t_start = time.perf_counter()
    engine = load_engine(models, device="cpu")
    engine.warm_up()
    store = RecordStore(home / "data")
    load_s = time.perf_counter() - t_start
    phases: dict[str, list[float]] = {k: [] for k in ("load", "quality", "predict", "gradcam", "record", "total")}
    samples: list[dict[str, float]] = [{"iteration": 0, "rss_mb": rss_mb(), "seconds": 0.0}]
    print(f"engine {engine.version} ({', '.join(engine.members)}, backend {engine.backend}) loaded in "
          f"{load_s:.1f} s; RSS {samples[0]['rss_mb']:.1f} MB", flush=True)
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        path = images[(i - 1) % len(images)]
        a = time.perf_counter()
        rgb = load_image(path)
        b = time.perf_counter()
        quality = quality_check(rgb)
        c = time.perf_counter()
        pred = engine.predict_one(rgb)
        d = time.perf_counter()
        heat = engine.heatmap(rgb, pred) if gradcam_every and i % gradcam_every == 0 else None
        e = time.perf_counter()
        store.add(rgb, pred.probabilities, source_name=path.name, source_path=str(path), model_version=engine.version,
                  warnings=list(quality.warnings), details={"iteration": i, "seconds": pred.seconds},
                  preprocessed=pred.preprocessed, heatmap=heat)
        f = time.perf_counter()
        for key, value in zip(phases, (b - a, c - b, d - c, e - d, f - e, f - a), strict=True):
            if key != "gradcam" or heat is not None:
                phases[key].append(value)
        if i % every == 0 or i == n:
            samples.append({"iteration": i, "rss_mb": rss_mb(), "seconds": time.perf_counter() - t0})
            s = samples[-1]
            print(f"{i:6d}  RSS {s['rss_mb']:8.1f} MB  {s['seconds']:7.0f} s  "
                  f"median {statistics.median(phases['total'][-every:]) * 1000:6.1f} ms/iteration", flush=True)
    after = [s for s in samples if s["iteration"] >= warmup]
    base = after[0]["rss_mb"] if after else samples[0]["rss_mb"]
    growth = after[-1]["rss_mb"] - base if after else 0.0
    peak = max(s["rss_mb"] for s in after) - base if after else 0.0
    slope = fit_slope([s["iteration"] for s in after], [s["rss_mb"] for s in after]) * 1000
    return {
        "iterations": n, "every": every, "warmup": warmup, "gradcam_every": gradcam_every,
        "models": str(models), "model_version": engine.version, "members": engine.members,
        "backend": engine.backend, "images": len(images), "records_written": store.count(),
        "rss_start_mb": samples[0]["rss_mb"], "rss_after_warmup_mb": base, "rss_end_mb": samples[-1]["rss_mb"],
        "growth_after_warmup_mb": growth, "peak_above_warmup_mb": peak, "slope_mb_per_1000": slope,
        "target_mb": TARGET_MB, "passed": growth < TARGET_MB,
        "median_ms": {k: statistics.median(v) * 1000 for k, v in phases.items() if v},
        "wall_s": time.perf_counter() - t0, "engine_load_s": load_s, "samples": samples,
        "history_db_mb": (home / "data" / "history.sqlite").stat().st_size / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=5000, help="classifications (default 5000)")
    p.add_argument("--every", type=int, default=250, help="RSS sample interval in iterations (default 250)")
    p.add_argument("--warmup", type=int, default=None, help="iterations before the baseline (default: --every)")
    p.add_argument("--models", type=Path, default=None, help="ensemble folder (default: bundled, else stand-in)")
    p.add_argument("--images", type=Path, default=HAM_IMAGES, help="folder of JPEGs to cycle through")
    p.add_argument("--limit-images", type=int, default=1000, help="distinct images used (default 1000)")
    p.add_argument("--gradcam-every", type=int, default=10, help="heat-map every K iterations (0: never)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="lesion-soak-"))
    os.environ["LESION_DESKTOP_HOME"] = str(work / "home")  # never the user's history or caches
    models = args.models
    if models is None:
        models = BUNDLED_DEFAULT if (BUNDLED_DEFAULT / "manifest.json").is_file() else build_standin(work / "standin")
    images = sorted(args.images.glob("*.jpg"))[: args.limit_images]
    if not images:
        print(f"no JPEG images in {args.images}", file=sys.stderr)
        return 2
    import torch

    print(f"soak: {args.n} iterations, {len(images)} images, models {models}, torch threads "
          f"{torch.get_num_threads()}, load {os.getloadavg()}", flush=True)
    result = soak(args.n, args.every, args.warmup if args.warmup is not None else args.every, models, images,
                  args.gradcam_every, work / "home")
    result.update({"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                   "load_average_end": list(os.getloadavg()), "work_dir": str(work)})
    m = result["median_ms"]
    print(f"\nRSS: {result['rss_start_mb']:.1f} MB at start, {result['rss_after_warmup_mb']:.1f} MB after "
          f"{result['warmup']} warm-up iterations, {result['rss_end_mb']:.1f} MB after {args.n}")
    print(f"growth after warm-up: {result['growth_after_warmup_mb']:+.1f} MB "
          f"(peak {result['peak_above_warmup_mb']:+.1f} MB, trend {result['slope_mb_per_1000']:+.2f} MB per 1000); "
          f"target < {TARGET_MB:.0f} MB: "
          f"{'PASS' if result['passed'] else 'FAIL'}")
    print("median ms per iteration: " + ", ".join(f"{k} {v:.1f}" for k, v in m.items()))
    print(f"{result['records_written']} records written ({result['history_db_mb']:.1f} MB database), "
          f"{result['wall_s']:.0f} s; work folder {work}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
