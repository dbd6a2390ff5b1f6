"""Training throughput (images per second) of our trainer's inner loop against a plain PyTorch loop.

  ours      training.trainer.train() itself, on a small HAM10000 subset: decode-once uint8 memmap cache,
            training.augment (torchvision v2 on uint8 tensors), normalise, channels_last, AdamW step.
            Images/s are timed between the trainer's own per-batch progress events, so model building,
            validation and saving are not counted (the one-off cache build is reported separately).
  baseline  the plain loop: torch DataLoader over the JPEG files (PIL open, the same augmentation policy
            applied to PIL images, ToTensor/Normalize) decoding every epoch, same model, batch size,
            optimizer and trainable layers, default (contiguous) memory format.
The two take turns, `--reps` times each.

    python -m benchmarks.bench_training [--arch mobilenet_v2] [--phase all] [--batches 10] [--reps 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    HAM_IMAGES,
    HAM_METADATA,
    interleaved,
    machine_info,
    print_machine,
    save_results,
    stats,
    table,
    verdict,
)

TARGET_SPEEDUP = 1.5


def make_subset(root: Path, per_class: int) -> tuple[Path, Path, list[tuple[Path, int]]]:
    """A class-folder data set of symlinks, a split file (almost all of it for training), and (path, label)."""
    from lesion_desktop.classes import CLASS_CODES

    by_class: dict[str, list[str]] = {c: [] for c in CLASS_CODES}
    with open(HAM_METADATA, newline="") as f:
        for row in csv.DictReader(f):
            if len(by_class[row["dx"]]) < per_class:
                by_class[row["dx"]].append(row["image_id"])
    data = root / "data"
    split: dict[str, Any] = {"seed": 0, "data_fingerprint": "benchmark", "train": [], "val": [], "test": []}
    items: list[tuple[Path, int]] = []
    for label, (code, ids) in enumerate(by_class.items()):
        (data / code).mkdir(parents=True, exist_ok=True)
        for i, image_id in enumerate(ids):
            link = data / code / f"{image_id}.jpg"
            if not link.exists():
                os.symlink(HAM_IMAGES / f"{image_id}.jpg", link)
            part = "val" if i == 0 else "test" if i == 1 else "train"
            split[part].append(image_id)
            if part == "train":
                items.append((link, label))
    split_file = root / "split.json"
    split_file.write_text(json.dumps(split))
    return data, split_file, items


class BatchClock:
    """A Progress that notes when the trainer reports each batch (it does so every 5 batches and at the end)."""

    def __init__(self) -> None:
        self.events: list[tuple[int, float]] = []

    def report(self, fraction: float, message: str) -> None:
        pass

    def cancelled(self) -> bool:
        return False

    def partial(self, value: Any) -> None:
        if isinstance(value, dict) and value.get("event") == "batch":
            self.events.append((int(value["batch"]), time.perf_counter()))


def run_ours(args: argparse.Namespace, data: Path, split_file: Path, work: Path, rep: int) -> float:
    """Images per second between the first and the last batch event of one epoch."""
    from training.trainer import TrainConfig, train

    epochs = {"head": (1, 0, 0), "top": (0, 1, 0), "all": (0, 0, 1)}[args.phase]
    cfg = TrainConfig(architecture=args.arch, data=str(data), out_dir=str(work / f"ours-{rep}"),
                      input_size=tuple(args.size), epochs_head=epochs[0], epochs_top=epochs[1],
                      epochs_all=epochs[2], batch_size=args.batch, max_batches=args.batches + 1,
                      imagenet="none", device="cpu", split_file=str(split_file), cache_dir=str(work / "cache"))
    clock = BatchClock()
    train(cfg, clock)
    (b0, t0), (b1, t1) = clock.events[0], clock.events[-1]
    return (b1 - b0) * args.batch / (t1 - t0)


def run_plain(args: argparse.Namespace, items: list[tuple[Path, int]]) -> float:
    """The plain loop: DataLoader decoding JPEGs with PIL every epoch; images/s after the first batch."""
    import torch
    from PIL import Image
    from torch import nn
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    from lesion_desktop.registry import build_model, get_spec, set_trainable
    from training.augment import training_transform

    spec = get_spec(args.arch)
    tf = transforms.Compose([training_transform(tuple(args.size)), transforms.ToTensor(),
                             transforms.Normalize(spec.mean, spec.std)])

    class Files(Dataset):
        def __len__(self) -> int:
            return len(items)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            path, label = items[i]
            return tf(Image.open(path).convert("RGB")), label

    torch.manual_seed(0)
    model = build_model(args.arch)
    set_trainable(model, args.arch, args.phase)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    loader = DataLoader(Files(), batch_size=args.batch, shuffle=True, num_workers=args.workers, drop_last=True,
                        persistent_workers=False)
    t0 = None
    seen = 0
    while seen < args.batches:
        for x, y in loader:
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
            if t0 is None:
                t0 = time.perf_counter()  # clock starts after the first batch, as for ours
                continue
            seen += 1
            if seen >= args.batches:
                break
    return args.batches * args.batch / (time.perf_counter() - t0)


def augmentation_costs(items: list[tuple[Path, int]], args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per batch of training.augment.augment_batch (PIL) against the same v2 policy on uint8 tensors
    (how augment_batch worked before: the change this benchmark motivated)."""
    import numpy as np
    import torch

    from lesion_desktop.imageio import load_image
    from lesion_desktop.preprocess import PreprocessConfig, prepare_image
    from training.augment import augment_batch, training_transform

    pre = PreprocessConfig(input_size=tuple(args.size))
    batch = torch.from_numpy(np.stack([prepare_image(load_image(p), pre) for p, _ in items[: args.batch]]))
    tf = training_transform(tuple(args.size))

    def on_tensors() -> torch.Tensor:
        chw = batch.permute(0, 3, 1, 2)
        return torch.stack([tf(img) for img in chw]).permute(0, 2, 3, 1).contiguous()

    times = interleaved({"augment_batch (PIL)": lambda: augment_batch(batch, tf), "v2 on uint8 tensors": on_tensors},
                        5, warmup=1)
    return {k: stats(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="mobilenet_v2")
    p.add_argument("--size", type=int, nargs=2, default=(150, 200), metavar=("H", "W"))
    p.add_argument("--phase", choices=("head", "top", "all"), default="all",
                   help="which layers train: all (Part B, most epochs) is the default")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=10, help="timed batches per run")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the plain loop")
    p.add_argument("--per-class", type=int, default=60, help="images per class in the subset")
    args = p.parse_args(argv)

    info = machine_info()
    print_machine(info)
    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    data, split_file, items = make_subset(work, args.per_class)
    need = (args.batches + 1) * args.batch
    if len(items) < need:
        raise SystemExit(f"{len(items)} training images, {need} needed: raise --per-class")
    print(f"\n{args.arch} at {args.size[0]}x{args.size[1]}, phase {args.phase!r}, batch {args.batch}, "
          f"{args.batches} timed batches x {args.reps} repetitions; plain loop with {args.workers} workers ...",
          flush=True)

    from training.data import read_dataset
    from training.trainer import TrainConfig, prepare_data

    t0 = time.perf_counter()
    cfg = TrainConfig(architecture=args.arch, data=str(data), out_dir=str(work / "prep"), input_size=tuple(args.size),
                      split_file=str(split_file), cache_dir=str(work / "cache"))
    prepare_data(cfg, None)
    cache_s = time.perf_counter() - t0
    n_cached = len(read_dataset(data).records)
    samples: dict[str, list[float]] = {"baseline": [], "ours": []}
    for r in range(args.reps):
        for name in (("ours", "baseline") if r % 2 == 0 else ("baseline", "ours")):
            ips = run_ours(args, data, split_file, work, r) if name == "ours" else run_plain(args, items)
            samples[name].append(ips)
            print(f"  rep {r + 1} {name}: {ips:.1f} images/s", flush=True)
    aug = augmentation_costs(items, args)
    # Throughput: the median of images/s; stats() on seconds per image keeps the other figures consistent.
    summary = {k: {"images_per_s": stats(v)["median"], "samples": v} for k, v in samples.items()}
    speedup = summary["ours"]["images_per_s"] / summary["baseline"]["images_per_s"]
    rows = [[k, s["images_per_s"], 1000 / s["images_per_s"], s["images_per_s"] / summary["baseline"]["images_per_s"]]
            for k, s in summary.items()]
    print()
    print(table(rows, ["loop", "images/s", "ms/image", "x baseline"]))
    print(f"one-off decode-once cache of {n_cached} images: {cache_s:.1f} s "
          f"({cache_s / max(n_cached, 1) * 1e3:.1f} ms per image)")
    a_pil, a_t = aug["augment_batch (PIL)"]["median"], aug["v2 on uint8 tensors"]["median"]
    print(f"augmentation of one batch of {args.batch}: {a_pil * 1e3:.0f} ms with augment_batch (PIL), "
          f"{a_t * 1e3:.0f} ms with the same policy on uint8 tensors ({a_t / a_pil:.1f}x)")
    print(f"target: ours >= {TARGET_SPEEDUP}x the plain loop: {speedup:.2f}x, {verdict(speedup >= TARGET_SPEEDUP)}")
    save_results(f"training-{args.arch}-{args.phase}", info, {
        "arch": args.arch, "input_size": list(args.size), "phase": args.phase, "batch_size": args.batch,
        "timed_batches": args.batches, "reps": args.reps, "plain_workers": args.workers, "summary": summary,
        "speedup": speedup, "target": TARGET_SPEEDUP, "target_met": speedup >= TARGET_SPEEDUP,
        "cache_build_s": cache_s, "cache_images": n_cached, "augmentation_per_batch": aug})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
