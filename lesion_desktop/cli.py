"""`lesion-desktop classify PATH... --output preds.csv`: batch classification from the command line."""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.errors import LesionError

CSV_COLUMNS = ["path", "prediction", *CLASS_CODES, "warnings"]
BATCH = 16
GUI_REQUESTED = -1


def iter_inputs(paths: list[str]) -> Iterator[Path]:
    """Files as given (whatever their suffix: the loader judges them); folders searched recursively."""
    from lesion_desktop.imageio import IMAGE_SUFFIXES

    for p in map(Path, paths):
        if p.is_dir():
            found = False
            for dirpath, dirnames, files in os.walk(p):
                dirnames.sort()
                for f in sorted(files):
                    if Path(f).suffix.lower() in IMAGE_SUFFIXES:
                        found = True
                        yield Path(dirpath) / f
            if not found:  # the loader's "is a folder" row tells the user it gave nothing to classify
                yield p
        else:
            yield p


def classify(paths: list[str], output: Path, models: Path | None, device: str = "auto", tta: bool = False,
             progress_bar: bool | None = None, backend: str = "auto") -> tuple[int, int]:
    """Write the CSV; returns (classified, failed). Unreadable files get a row with the reason.

    `models` None: the active models, falling back (with a note) when the installed ones are damaged.
    """
    from lesion_desktop.analysis import row_warnings
    from lesion_desktop.imageio import load_image, quality_check
    from lesion_desktop.inference import open_engine

    engine, notes = open_engine(models_dir=models, device=device, tta=tta, backend=backend)
    for note in (*notes, engine.device_note):
        if note:
            print(f"note: {note}", file=sys.stderr)
    files = list(iter_inputs(paths))
    show = sys.stderr.isatty() if progress_bar is None else progress_bar
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="img", desc="classify")
    ok = failed = 0
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for start in range(0, len(files), BATCH):
            chunk = files[start : start + BATCH]
            images, good, warns = [], [], []
            for path in chunk:
                try:
                    img = load_image(path)
                except LesionError as e:
                    writer.writerow([str(path), "", *[""] * len(CLASS_CODES), str(e)])
                    failed += 1
                    continue
                images.append(img)
                good.append(path)
                warns.append(quality_check(img).warnings)
            for path, img, pred, w in zip(good, images, engine.predict(images), warns, strict=True):
                row = row_warnings(engine, img, pred, w)
                writer.writerow([str(path), pred.top_code, *(f"{p:.6f}" for p in pred.probabilities), "; ".join(row)])
                ok += 1
            if bar is not None:
                bar.update(len(chunk))
    os.replace(tmp, output)
    if bar is not None:
        bar.close()
    return ok, failed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lesion-desktop",
                                description="Skin-lesion decision support (not a diagnosis).")
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("classify", help="classify images or folders into a CSV")
    c.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    c.add_argument("--output", "-o", required=True, type=Path, help="CSV file to write")
    c.add_argument("--models", type=Path, default=None, help="ensemble or bundle folder (default: active models)")
    c.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    c.add_argument("--tta", action="store_true", help="test-time augmentation: flips, 90-degree rotations")
    c.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                   help="auto (default): ONNX Runtime on the CPU where the models have a graph, else PyTorch; "
                   "onnx: ONNX Runtime wherever possible; torch: PyTorch only")
    sub.add_parser("gui", help="start the desktop application (the default with no command)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "classify":
        return GUI_REQUESTED  # lesion_desktop.__main__ starts the GUI: the CLI itself never imports Qt
    try:
        ok, failed = classify(args.paths, args.output, args.models, args.device, args.tta, backend=args.backend)
    except LesionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{ok} classified, {failed} could not be read; results in {args.output}", file=sys.stderr)
    return 0 if ok > 0 else 1
