"""Batch throughput (images per second) of `lesion-desktop classify` on a folder.

Variants, taking turns (each repetition runs every variant once over the whole folder):
  baseline         a plain script: load the models, then for each file PIL open -> Resize -> ToTensor/Normalize
                   -> model(x) per member (torch.no_grad, batch of 1) -> CSV row
  classify-torch   lesion_desktop.cli.classify(..., backend="torch") in this process: engine load included
  classify-auto    the same with the default backend (ONNX Runtime on the shipped graphs)
  cli-process      `python -m lesion_desktop classify FOLDER -o out.csv` as a new process: interpreter start,
                   imports, model load and the CSV, i.e. what a user waits for at the command line

    python -m benchmarks.bench_classify [--models DIR] [--n 200 | --fullres] [--reps 3]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    FULLRES_IMAGES,
    HAM_IMAGES,
    REPO,
    default_models,
    image_files,
    interleaved,
    machine_info,
    print_machine,
    save_results,
    stats,
    table,
)


def plain_folder_loop(models_dir: Path) -> Any:
    import torch
    from PIL import Image
    from torchvision import transforms

    from lesion_desktop.bundle import load_ensemble
    from lesion_desktop.classes import CLASS_CODES

    ens = load_ensemble(models_dir, "cpu")
    members = [(m.model, transforms.Compose([transforms.Resize(m.preprocess.input_size), transforms.ToTensor(),
                                             transforms.Normalize(m.preprocess.mean, m.preprocess.std)]))
               for m in ens.members]

    def run(folder: Path, out: Path) -> None:
        with open(out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "prediction", *CLASS_CODES])
            for path in sorted(folder.iterdir()):
                img = Image.open(path).convert("RGB")
                with torch.no_grad():
                    p = torch.stack([torch.softmax(m(tf(img).unsqueeze(0)), 1) for m, tf in members]).mean(0)[0]
                w.writerow([str(path), CLASS_CODES[int(p.argmax())], *(f"{float(x):.6f}" for x in p)])

    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", help="ensemble folder (default: resources/models/default or a stand-in)")
    p.add_argument("--n", type=int, default=200, help="images from ../shared/data/ham10000/images (200x150)")
    p.add_argument("--fullres", action="store_true", help="use the 150 full-size (600x450) images instead")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--no-process", action="store_true", help="skip the separate-process CLI run")
    args = p.parse_args(argv)

    from lesion_desktop.cli import classify

    info = machine_info()
    print_machine(info)
    models, kind = default_models(args.models)
    work = Path(tempfile.mkdtemp(prefix="bench-classify-"))
    if args.fullres:
        folder, files = FULLRES_IMAGES, image_files(FULLRES_IMAGES)
    else:
        files = image_files(HAM_IMAGES, args.n)
        folder = work / "images"
        folder.mkdir()
        for f in files:
            os.symlink(f, folder / f.name)
    n = len(files)
    print(f"\nclassifying {n} images of {folder} with {models} ({kind}), {args.reps} repetitions ...", flush=True)

    cases: dict[str, Any] = {"baseline": lambda: plain_folder_loop(models)(folder, work / "baseline.csv")}
    backends = ["torch", "auto"]
    for b in backends:
        cases[f"classify-{b}"] = lambda b=b: classify([str(folder)], work / f"{b}.csv", models, "cpu",
                                                      progress_bar=False, backend=b)
    if not args.no_process:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "lesion_desktop", "classify", str(folder), "-o", str(work / "cli.csv"),
               "--models", str(models), "--device", "cpu"]
        cases["cli-process"] = lambda: subprocess.run(cmd, check=True, env=env, capture_output=True)
    t0 = time.perf_counter()
    times = interleaved(cases, args.reps, warmup=0)
    wall = time.perf_counter() - t0
    summary = {k: stats(v) for k, v in times.items()}
    base = summary["baseline"]["median"]
    rows = []
    for k, s in summary.items():
        s["images_per_s"] = n / s["median"]
        s["ms_per_image"] = s["median"] / n * 1e3
        s["speedup_vs_baseline"] = base / s["median"]
        rows.append([k, s["median"], s["images_per_s"], s["ms_per_image"], s["speedup_vs_baseline"]])
    # The CSVs must agree on the labels (baseline excepted: it resizes without the centre crop).
    with open(work / "torch.csv") as f:
        ref = {r["path"]: r["prediction"] for r in csv.DictReader(f)}
    agreement = {}
    for b in backends[1:]:
        with open(work / f"{b}.csv") as f:
            got = {r["path"]: r["prediction"] for r in csv.DictReader(f)}
        agreement[b] = sum(ref[k] == got.get(k) for k in ref) / max(len(ref), 1)
    print()
    print(table(rows, ["variant", "median s", "images/s", "ms/image", "x baseline"]))
    print(f"(median of {args.reps}; every variant includes loading the models; {wall:.0f} s in all)")
    save_results("classify", info, {"models": str(models), "models_kind": kind, "folder": str(folder),
                                    "n_images": n, "fullres": args.fullres, "summary": summary,
                                    "label_agreement_vs_torch": agreement})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
