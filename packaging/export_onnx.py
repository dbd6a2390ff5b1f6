"""Export an ensemble for the lite edition: manifests + one ONNX graph per member, checked against PyTorch.

    python packaging/export_onnx.py --models resources/models/default --output build/onnx-models/default \
        --check-images ../shared/data/ham10000_fullres_sample

Writes a copy of the ensemble folder without the safetensors weights; each member gains `model.onnx`
(exported by lesion_desktop.onnx_backend.export_onnx: the same exporter and settings as the full
edition's optional ONNX backend) and `onnx.json` (graph sha256, source weights sha256, opset, torch
version, and the largest probability difference measured here). Exits 1 when the ONNX Runtime engine's
probabilities differ from the PyTorch engine's by more than --tolerance on any check image.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def member_folders(models: Path) -> list[Path]:
    m = json.loads((models / "manifest.json").read_text(encoding="utf-8"))
    if m.get("format") == "lesion-desktop-model":
        return [models]
    return [(models / e["path"]).resolve() for e in m["members"]]


def check_images(folders: list[str], limit: int) -> list[np.ndarray]:
    """Real images (decoded by the program's loader) plus synthetic ones of odd sizes."""
    from lesion_desktop.cli import iter_inputs
    from lesion_desktop.imageio import load_image

    images = [load_image(p) for p in list(iter_inputs(folders))[:limit] if p.is_file()]
    rng = np.random.default_rng(0)
    images += [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((450, 600), (720, 1280), (300, 300))]
    return images


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, required=True, help="ensemble (or bundle) folder to export")
    p.add_argument("--output", type=Path, required=True, help="folder to write (replaced)")
    p.add_argument("--check-images", nargs="*", default=[], help="image files or folders to compare on")
    p.add_argument("--limit", type=int, default=64, help="at most this many check images")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed probability difference")
    args = p.parse_args(argv)

    import torch

    from lesion_desktop.bundle import load_bundle
    from lesion_desktop.engine import EnsembleEngine
    from lesion_desktop.onnx_backend import OPSET, export_onnx
    from lesion_desktop.onnx_runtime_engine import (
        ONNX_FILE,
        ONNX_FORMAT,
        ONNX_FORMAT_VERSION,
        ONNX_MANIFEST,
        OnnxRuntimeEngine,
        sha256_file,
    )

    src, out = args.models.resolve(), args.output.resolve()
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("*.safetensors", "*.onnx", ONNX_MANIFEST, "__pycache__"))
    t0 = time.perf_counter()
    members = member_folders(src)
    for folder in members:
        bundle = load_bundle(folder, "cpu")  # verifies the weights' sha256 before exporting them
        dest = out / folder.relative_to(src) if folder != src else out
        h, w = bundle.preprocess.input_size
        t = time.perf_counter()
        export_onnx(bundle.model, (h, w), dest / ONNX_FILE)
        info = {
            "format": ONNX_FORMAT, "format_version": ONNX_FORMAT_VERSION, "onnx_file": ONNX_FILE,
            "onnx_sha256": sha256_file(dest / ONNX_FILE), "weights_sha256": bundle.manifest["weights_sha256"],
            "architecture": bundle.architecture, "input_size": [h, w], "opset": OPSET,
            "exported_with": f"torch {torch.__version__}",
        }
        (dest / ONNX_MANIFEST).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        print(f"exported {bundle.architecture} ({folder.name}) in {time.perf_counter() - t:.1f} s", file=sys.stderr)

    images = check_images(args.check_images, args.limit)
    ref = EnsembleEngine(src, device="cpu", backend="torch").predict(images)
    got = OnnxRuntimeEngine(out).predict(images)
    diff = max(float(np.abs(a.probabilities - b.probabilities).max()) for a, b in zip(ref, got, strict=True))
    same_top = sum(a.top_index == b.top_index for a, b in zip(ref, got, strict=True))
    for folder in members:  # record what was measured beside each graph
        dest = out / folder.relative_to(src) if folder != src else out
        info = json.loads((dest / ONNX_MANIFEST).read_text(encoding="utf-8"))
        info["check"] = {"images": len(images), "ensemble_max_abs_diff": diff, "tolerance": args.tolerance}
        (dest / ONNX_MANIFEST).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"ONNX export of {len(members)} member(s) in {time.perf_counter() - t0:.1f} s, {size / 1e6:.1f} MB; "
          f"vs PyTorch on {len(images)} images: max |dp| = {diff:.2e}, same top class {same_top}/{len(images)}",
          file=sys.stderr)
    if diff > args.tolerance or same_top != len(images):
        print(f"error: the ONNX export differs from PyTorch beyond {args.tolerance}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
