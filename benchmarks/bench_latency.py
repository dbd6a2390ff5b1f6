"""Single-image latency, file on disk to probabilities, for the default and the study ensemble.

Variants, measured interleaved on the same images:
  baseline      plain eager torchvision: PIL open -> Resize -> ToTensor/Normalize -> model(x) per member
                (torch.no_grad, contiguous memory, no other tricks), softmax, mean
  engine-torch  our path: lesion_desktop.imageio.load_image -> load_engine(backend="torch").predict_one
                (OpenCV decode, centre crop + area resize, inference_mode, channels_last)
  engine-onnx   the same with the default backend (ONNX Runtime on the graphs shipped beside the weights)
  engine-compile  (--compile) engine-torch with torch.compile'd members
On CUDA (when present) the baseline and the engine are measured again on the GPU.

    python -m benchmarks.bench_latency [--models DIR] [--study-models DIR] [--reps 40]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    FULLRES_IMAGES,
    default_models,
    image_files,
    interleaved,
    machine_info,
    print_machine,
    save_results,
    stats,
    study_models,
    table,
    verdict,
)

TARGET_MS = 60.0
TARGET_SPEEDUP = 2.0


def plain_pipeline(models_dir: Path, device: str) -> Any:
    """What a plain PyTorch script does: PIL + torchvision transforms + eager model calls."""
    import torch
    from PIL import Image
    from torchvision import transforms

    from lesion_desktop.bundle import load_ensemble

    ens = load_ensemble(models_dir, device)
    members = []
    for m in ens.members:
        tf = transforms.Compose([transforms.Resize(m.preprocess.input_size), transforms.ToTensor(),
                                 transforms.Normalize(m.preprocess.mean, m.preprocess.std)])
        members.append((m.model, tf))

    def run(path: Path) -> Any:
        img = Image.open(path).convert("RGB")
        with torch.no_grad():
            probs = [torch.softmax(model(tf(img).unsqueeze(0).to(device)), 1).cpu() for model, tf in members]
        return torch.stack(probs).mean(0)[0].numpy()

    return run


def engine_pipeline(models_dir: Path, device: str, backend: str, compile_: bool = False) -> tuple[Any, Any, float]:
    from lesion_desktop.imageio import load_image
    from lesion_desktop.inference import load_engine

    t0 = time.perf_counter()
    engine = load_engine(models_dir, device=device, backend=backend)
    if compile_:
        import torch

        for r in engine.runners:
            r.net = torch.compile(r.net)  # type: ignore[attr-defined]
    engine.warm_up()
    load_s = time.perf_counter() - t0

    def run(path: Path) -> Any:
        return engine.predict_one(load_image(path)).probabilities

    return run, engine, load_s


def bench_ensemble(label: str, models_dir: Path, files: list[Path], reps: int, devices: list[str],
                   compile_: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"models": str(models_dir), "devices": {}}
    for device in devices:
        out["devices"][device] = bench_device(models_dir, device, files, reps, compile_)
    return out


def bench_device(models_dir: Path, device: str, files: list[Path], reps: int, compile_: bool) -> dict[str, Any]:
    import numpy as np
    import torch

    from lesion_desktop.imageio import load_image

    pipelines: dict[str, Any] = {"baseline": plain_pipeline(models_dir, device)}
    notes: dict[str, Any] = {"auto_backend": "torch"}
    variants = [("engine-torch", "torch", False)]
    if device == "cpu":
        variants.append(("engine-onnx", "auto", False))
    if compile_:
        variants.append(("engine-compile", "torch", True))
    for name, backend, comp in variants:
        run, engine, load_s = engine_pipeline(models_dir, device, backend, comp)
        pipelines[name] = run
        notes[name] = {"load_and_warmup_s": load_s, "backend": "torch.compile" if comp else engine.backend}
        if backend == "auto":
            notes["auto_backend"] = engine.backend
    # Parity with engine-torch (the baseline resizes without the centre crop, so it differs by design).
    ref = pipelines["engine-torch"](files[0])
    parity = {k: float(np.abs(f(files[0]) - ref).max()) for k, f in pipelines.items() if k.startswith("engine-")}
    current = {"path": files[0]}

    def next_image(r: int) -> None:
        current["path"] = files[r % len(files)]

    cases = {k: (lambda f=f: f(current["path"])) for k, f in pipelines.items()}
    cases["decode-only"] = lambda: load_image(current["path"])
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    times = interleaved(cases, reps, warmup=2, sync=sync, before_rep=next_image)
    summary = {k: stats(v) for k, v in times.items()}
    base = summary["baseline"]["median"]
    for s in summary.values():
        s["speedup_vs_baseline"] = base / s["median"]
    return {"summary": summary, "notes": notes, "max_abs_diff_vs_engine_torch": parity}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", help="default ensemble folder (default: resources/models/default or a stand-in)")
    p.add_argument("--study-models", help="InceptionV3 + DenseNet-201 folder (default: a stand-in)")
    p.add_argument("--images", default=str(FULLRES_IMAGES), help="folder of images (default: 600x450 sample)")
    p.add_argument("--reps", type=int, default=40, help="repetitions for the default ensemble")
    p.add_argument("--study-reps", type=int, default=10, help="repetitions for the study ensemble (0 skips it)")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    p.add_argument("--no-cuda", action="store_true", help="skip the GPU even when one is available")
    args = p.parse_args(argv)

    import torch

    info = machine_info()
    print_machine(info)
    files = image_files(Path(args.images), 40)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.no_cuda else [])
    default_dir, default_kind = default_models(args.models)
    runs = [("default", default_dir, default_kind, args.reps)]
    if args.study_reps > 0:
        study_dir, study_kind = study_models(args.study_models)
        runs.append(("study", study_dir, study_kind, args.study_reps))
    results: dict[str, Any] = {"images": args.images, "n_images": len(files), "ensembles": {}}
    rows = []
    for label, folder, kind, reps in runs:
        print(f"\n{label} ensemble: {folder} ({kind}), {reps} repetitions ...", flush=True)
        r = bench_ensemble(label, folder, files, reps, devices, args.compile)
        r["kind"] = kind
        results["ensembles"][label] = r
        for device, d in r["devices"].items():
            for variant, s in d["summary"].items():
                rows.append([label, device, variant, s["median"] * 1e3, s["p10"] * 1e3, s["p90"] * 1e3,
                             s["speedup_vs_baseline"] if variant != "decode-only" else None,
                             d["max_abs_diff_vs_engine_torch"].get(variant)])
    print()
    print(table(rows, ["ensemble", "device", "variant", "median ms", "p10 ms", "p90 ms", "x baseline",
                       "max|dp| vs torch"]))
    # Targets: the default ensemble on the CPU, with what "auto" picks (what a user gets).
    d = results["ensembles"]["default"]["devices"]["cpu"]
    auto = d["notes"].get("auto_backend") or "torch"
    s = d["summary"][f"engine-{auto}"]
    targets = {
        "variant": f"engine-{auto}",
        "latency_ms": s["median"] * 1e3, "latency_target_ms": TARGET_MS, "latency_met": s["median"] * 1e3 <= TARGET_MS,
        "speedup": s["speedup_vs_baseline"], "speedup_target": TARGET_SPEEDUP,
        "speedup_met": s["speedup_vs_baseline"] >= TARGET_SPEEDUP,
    }
    results["targets"] = targets
    print(f"\ntarget, default ensemble on the CPU ({targets['variant']}, what backend='auto' picks): "
          f"{targets['latency_ms']:.1f} ms <= {TARGET_MS:.0f} ms: {verdict(targets['latency_met'])}; "
          f"{targets['speedup']:.2f}x baseline >= {TARGET_SPEEDUP:.0f}x: {verdict(targets['speedup_met'])}")
    save_results("latency", info, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
