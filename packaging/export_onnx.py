"""Prepare an ensemble for the lite edition: manifests + one verified ONNX graph per member, no weights.

    python packaging/export_onnx.py --models resources/models/default --output build/onnx-models/default \
        --check-images ../shared/data/ham10000_fullres_sample

Members that already carry a graph made from their weights (the shipped default does) keep it; others are
exported first (lesion_desktop.inference.export, the exporter the training pipeline uses). The copy leaves
out the safetensors weights. Exits 1 when ONNX Runtime's probabilities differ from PyTorch's by more than
--tolerance on any check image, or when a top class differs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def check_images(folders: list[str], limit: int) -> list[np.ndarray]:
    """Real images (decoded by the program's loader) plus synthetic ones of odd sizes."""
    from lesion_desktop.cli import iter_inputs
    from lesion_desktop.imageio import load_image

    images = [load_image(p) for p in list(iter_inputs(folders))[:limit] if p.is_file()]
    rng = np.random.default_rng(0)
    images += [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((450, 600), (720, 1280), (300, 300))]
    return images


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--models", type=Path, required=True, help="ensemble (or bundle) folder to export")
    p.add_argument("--output", type=Path, required=True, help="folder to write (replaced)")
    p.add_argument("--check-images", nargs="*", default=[], help="image files or folders to compare on")
    p.add_argument("--limit", type=int, default=64, help="at most this many check images")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed probability difference")
    args = p.parse_args(argv)

    from lesion_desktop.errors import BundleError
    from lesion_desktop.inference import load_engine
    from lesion_desktop.inference.export import export_member
    from lesion_desktop.manifest import onnx_graph, validate_ensemble

    src, out = args.models.resolve(), args.output.resolve()
    t0 = time.perf_counter()
    for member in validate_ensemble(src).members:
        try:
            onnx_graph(member)
        except BundleError:
            t = time.perf_counter()
            export_member(member.path)
            print(f"exported {member.architecture} ({member.name}) in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("*.safetensors", "__pycache__", "*.part-*"))
    images = check_images(args.check_images, args.limit)
    ref = load_engine(src, device="cpu", backend="torch").predict(images)
    os.environ["LESION_DESKTOP_EDITION"] = "lite"
    try:
        got = load_engine(out).predict(images)
    finally:
        del os.environ["LESION_DESKTOP_EDITION"]
    diff = max(float(np.abs(a.probabilities - b.probabilities).max()) for a, b in zip(ref, got, strict=True))
    same_top = sum(a.top_index == b.top_index for a, b in zip(ref, got, strict=True))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"lite models in {out} ({size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s); vs PyTorch on "
          f"{len(images)} images: max |dp| = {diff:.2e}, same top class {same_top}/{len(images)}", file=sys.stderr)
    if diff > args.tolerance or same_top != len(images):
        print(f"error: the ONNX graphs differ from PyTorch beyond {args.tolerance}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
