"""What every benchmark shares: the machine it ran on, interleaved timing, stand-in models, results files.

Timing rule (docs/benchmarks.md): each figure is the median of repeated runs, and each variant is measured
interleaved with a plain baseline in the same process, so a background job slows both alike and the ratio
stays meaningful even when the absolute numbers do not.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python benchmarks/x.py` works as well as `python -m benchmarks.x`
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results"
SHARED_DATA = REPO.parent / "shared" / "data"
HAM_IMAGES = SHARED_DATA / "ham10000" / "images"
HAM_METADATA = SHARED_DATA / "ham10000" / "HAM10000_metadata.csv"
FULLRES_IMAGES = SHARED_DATA / "ham10000_fullres_sample" / "images"
BUNDLED_DEFAULT = REPO / "resources" / "models" / "default"
STANDIN_ROOT = Path(tempfile.gettempdir()) / "lesion-desktop-bench-standin"
# Never touch the user's own settings, history or caches (the ONNX export cache lands here too).
os.environ.setdefault("LESION_DESKTOP_HOME", str(STANDIN_ROOT / "home"))

# (architecture, (height, width)) as shipped (default) and as in the study (native sizes).
DEFAULT_MEMBERS = [("mobilenet_v2", (150, 200)), ("efficientnet_lite0", (150, 200))]
STUDY_MEMBERS = [("inception_v3", (299, 299)), ("densenet201", (224, 224))]


# ---- the machine ---------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_start": load_average(),
    }
    for mod in ("torchvision", "onnxruntime", "PySide6", "timm"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # optional or broken: the report just says so
            info[mod] = None
    return info


def print_machine(info: dict[str, Any]) -> None:
    print(f"machine: {info['cpu']}, {info['usable_cpus']} usable of {info['logical_cpus']} logical CPUs, "
          f"{info['os']}; Python {info['python']}, torch {info['torch']} ({info['torch_threads']} threads), "
          f"torchvision {info['torchvision']}, onnxruntime {info['onnxruntime']}, CUDA: {info['cuda'] or 'none'}")
    print(f"load average at start (1/5/15 min): {info['load_average_start']}")


# ---- timing ----------------------------------------------------------------------------------------------
def interleaved(cases: dict[str, Callable[[], Any]], reps: int, warmup: int = 1,
                sync: Callable[[], None] | None = None,
                before_rep: Callable[[int], None] | None = None) -> dict[str, list[float]]:
    """Seconds per call for each case, the cases taking turns (order rotated every repetition).

    `before_rep(r)` runs untimed before repetition r (e.g. to move on to the next image).
    """
    names = list(cases)
    for w in range(warmup):
        if before_rep:
            before_rep(-1 - w)
        for n in names:
            cases[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        if before_rep:
            before_rep(r)
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            if sync:
                sync()
            t0 = time.perf_counter()
            cases[n]()
            if sync:
                sync()
            times[n].append(time.perf_counter() - t0)
    return times


def stats(samples: Sequence[float]) -> dict[str, float]:
    s = sorted(samples)
    q = statistics.quantiles(s, n=10) if len(s) >= 2 else [s[0]] * 9
    return {"median": statistics.median(s), "p10": q[0], "p90": q[-1], "min": s[0], "max": s[-1], "n": len(s)}


def table(rows: list[list[Any]], headers: list[str]) -> str:
    """A Markdown table (also readable in a terminal)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return "" if v is None else str(v)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


# ---- models ----------------------------------------------------------------------------------------------
def build_standin(folder: Path, members: list[tuple[str, tuple[int, int]]]) -> Path:
    """An ensemble with the real architectures and input sizes but random weights (cost does not depend on them)."""
    import torch

    from lesion_desktop.bundle import read_manifest, save_bundle, save_ensemble
    from lesion_desktop.preprocess import PreprocessConfig
    from lesion_desktop.registry import build_model, get_spec

    folder = Path(folder)
    try:
        if len(read_manifest(folder).get("members", [])) == len(members):
            return folder
    except Exception:  # absent or half-written: build it again
        pass
    for name, size in members:
        spec = get_spec(name)
        torch.manual_seed(0)
        save_bundle(build_model(name).eval(), folder / name, architecture=name,
                    preprocess=PreprocessConfig(input_size=size, mean=spec.mean, std=spec.std),
                    training={"note": "benchmark stand-in: random weights"})
    return save_ensemble(folder, [(n, 1.0) for n, _ in members], name=f"stand-in {folder.name}")


def default_models(arg: str | None) -> tuple[Path, str]:
    """The `--models` folder, else the shipped default ensemble, else a stand-in; and a label saying which."""
    if arg:
        return Path(arg), "given"
    if (BUNDLED_DEFAULT / "manifest.json").is_file():
        return BUNDLED_DEFAULT, "shipped default"
    return build_standin(STANDIN_ROOT / "default", DEFAULT_MEMBERS), "stand-in (random weights)"


def study_models(arg: str | None) -> tuple[Path, str]:
    if arg:
        return Path(arg), "given"
    return build_standin(STANDIN_ROOT / "study", STUDY_MEMBERS), "stand-in (random weights)"


def image_files(folder: Path, n: int | None = None) -> list[Path]:
    if not folder.is_dir():
        raise SystemExit(f"images not found: {folder} (the benchmarks expect ../shared/data beside the repo)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return files[:n] if n else files


# ---- results ---------------------------------------------------------------------------------------------
def save_results(name: str, machine: dict[str, Any], payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = {**machine, "load_average_end": load_average()}
    data = {"benchmark": name, "when": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "machine": machine, **payload}
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)
    print(f"results written to {path.relative_to(REPO)}")
    return path
