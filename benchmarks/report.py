"""Regenerate the figures in docs/benchmarks.md from benchmarks/results/*.json.

    python -m benchmarks.report            # print the Markdown
    python -m benchmarks.report --write    # replace the block between the markers in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from benchmarks._common import REPO, RESULTS, table, verdict

DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _when(d: dict[str, Any]) -> str:
    m = d["machine"]
    return (f"_{d['when']}, `{d['command']}`; {m['cpu']}, {m['usable_cpus']} CPUs, torch {m['torch']} "
            f"({m['torch_threads']} threads), onnxruntime {m.get('onnxruntime')}, CUDA {m.get('cuda') or 'none'}; "
            f"load average {m.get('load_average_start')} at start, {m.get('load_average_end')} at end._")


def latency(d: dict[str, Any]) -> str:
    rows = []
    for label, e in d["ensembles"].items():
        for device, r in e["devices"].items():
            for variant, s in r["summary"].items():
                rows.append([label, device, variant, s["median"] * 1e3, s["p90"] * 1e3,
                             None if variant == "decode-only" else f"{s['speedup_vs_baseline']:.2f}x",
                             r["max_abs_diff_vs_engine_torch"].get(variant)])
    t = d["targets"]
    return "\n".join([
        "### Single-image latency (file on disk to probabilities)", "", _when(d), "",
        table(rows, ["ensemble", "device", "variant", "median ms", "p90 ms", "speed-up vs baseline",
                     "max abs diff vs engine-torch"]), "",
        f"Target (default ensemble, CPU, `{t['variant']}` = what `backend=\"auto\"` picks): "
        f"{t['latency_ms']:.1f} ms per image (target <= {t['latency_target_ms']:.0f} ms: "
        f"**{verdict(t['latency_met'])}**), {t['speedup']:.2f}x the baseline (target >= {t['speedup_target']:.0f}x: "
        f"**{verdict(t['speedup_met'])}**).", ""])


def classify(d: dict[str, Any]) -> str:
    rows = [[k, s["median"], s["images_per_s"], s["ms_per_image"], f"{s['speedup_vs_baseline']:.2f}x"]
            for k, s in d["summary"].items()]
    agree = ", ".join(f"{k}: {v:.1%}" for k, v in d.get("label_agreement_vs_torch", {}).items()) or "n/a"
    return "\n".join([
        f"### Batch throughput: `lesion-desktop classify` on {d['n_images']} images", "", _when(d), "",
        table(rows, ["variant", "median s (whole folder)", "images/s", "ms/image", "speed-up vs baseline"]), "",
        f"Every variant includes loading the models. Labels identical to the torch backend's: {agree}.", ""])


def training(d: dict[str, Any]) -> str:
    base = d["summary"]["baseline"]["images_per_s"]
    rows = [[k, s["images_per_s"], 1000 / s["images_per_s"], f"{s['images_per_s'] / base:.2f}x",
             ", ".join(f"{x:.1f}" for x in s["samples"])] for k, s in d["summary"].items()]
    aug = d.get("augmentation_per_batch") or {}
    aug_line = ""
    if len(aug) == 2:
        (na, a), (nb, b) = aug.items()
        aug_line = (f" Augmentation of one batch: {a['median'] * 1e3:.0f} ms ({na}) vs {b['median'] * 1e3:.0f} ms "
                    f"({nb}), {b['median'] / a['median']:.1f}x.")
    return "\n".join([
        f"### Training throughput: {d['arch']} at {d['input_size'][0]}x{d['input_size'][1]}, phase "
        f"`{d['phase']}`, batch {d['batch_size']}", "", _when(d), "",
        table(rows, ["loop", "images/s (median)", "ms/image", "vs plain loop", "runs (images/s)"]), "",
        f"Plain loop: DataLoader with {d['plain_workers']} workers. One-off decode-once cache: "
        f"{d['cache_build_s']:.1f} s for {d['cache_images']} images. Target >= {d['target']}x: "
        f"{d['speedup']:.2f}x, **{verdict(d['target_met'])}**.{aug_line}", ""])


def startup(d: dict[str, Any]) -> str:
    rows = []
    for proc, s in d["summary"].items():
        for k, st in s.items():
            if k != "failures":
                rows.append([proc, k, st["median"], st["p90"]])
    first = d.get("first_start") or {}
    r = d["ratios"]
    fs = ", ".join(f"{k} {v:.1f} s" for k, v in first.items() if k in ("window_painted", "engine_loaded",
                                                                          "result_shown"))
    return "\n".join([
        "### App start-up", "", _when(d), "",
        table(rows, ["process", "milestone", "median s", "p90 s"]), "",
        f"Window shown / bare Qt window: {r['window_vs_bare_qt']:.2f}x; first result / plain torch script: "
        f"{r['result_vs_plain_script']:.2f}x. First start with an empty data folder: {fs or 'not measured'}. "
        f"Target window <= {d['target_window_s']:.0f} s: **{verdict(d['target_met'])}**.", ""])


def gui_stall(d: dict[str, Any]) -> str:
    rows = [[k, s["n"], s["median"], s["p99"], s["max"], s["over_50ms"],
             None if s["ratio_max_vs_idle"] is None else f"{s['ratio_max_vs_idle']:.1f}x"]
            for k, s in d["summary"].items()]
    return "\n".join([
        f"### GUI responsiveness (QTimer every {d['tick_ms']} ms on the GUI thread)"
        + ("" if d.get("gc_freeze", True) else ": without the GC freeze (`--no-gc-freeze`)")
        + ("" if d.get("gc_guard", True) else ": with Python's automatic collector in every thread (`--no-gc-guard`)"),
        "", _when(d), "",
        table(rows, ["phase", "ticks", "median gap ms", "p99 gap ms", "max gap ms", "gaps > 50 ms",
                     "max vs idle"]), "",
        f"Target: no stall over {d['target_ms']:.0f} ms: worst {d['worst_ms']:.0f} ms, "
        f"**{verdict(d['target_met'])}**.", ""])


def flops(d: dict[str, Any]) -> str:
    peak = d["peak_gflops"]
    prow = [[k, v["threads"], v["dtype"], v["gflops"], v["best_gflops"]] for k, v in d["peaks"].items()]
    rows = []
    for name, m in d["models"].items():
        for key, f in m["forward"].items():
            backend, batch = key.rsplit("-b", 1)
            rows.append([name, "x".join(map(str, m["input_size"])), m["flops"] / 1e9, m["macs"] / 1e9,
                         backend, batch, f["ms_per_image"], f["gflops"], f"{f['share_of_peak']:.0%}",
                         m["floor_ms_at_peak"]])
    ens = "; ".join(f"{k} ensemble {v['flops'] / 1e9:.2f} GFLOPs per image, floor {v['floor_ms_at_peak']:.1f} ms"
                    for k, v in d["ensembles"].items())
    return "\n".join([
        "### The limit: FLOPs per image and the machine's peak", "", _when(d), "",
        table(prow, ["peak (torch.mm 2048x2048 / conv 3x3 256ch)", "threads", "dtype", "median GFLOP/s",
                     "best GFLOP/s"]), "",
        table(rows, ["model", "input", "GFLOPs", "GMACs", "backend", "batch", "ms/image (forward only)",
                     "achieved GFLOP/s", "of fp32 peak", "floor ms at peak"]), "",
        f"FLOPs counted by `torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products; "
        f"1 multiply-add = 2 FLOPs). fp32 peak used (best repetition of `{d.get('peak_source')}`): "
        f"{peak:.1f} GFLOP/s. {ens}.", ""])


def build() -> str:
    parts = []
    for name, fn in (("latency", latency), ("classify", classify), ("startup", startup),
                     ("gui_stall", gui_stall), ("gui_stall-no_gc_freeze", gui_stall),
                     ("gui_stall-no_gc_guard", gui_stall), ("flops", flops)):
        d = _load(name)
        if d:
            parts.append(fn(d))
    for path in sorted(RESULTS.glob("training-*.json")):
        parts.append(training(json.loads(path.read_text())))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help=f"update {DOC.relative_to(REPO)} in place")
    args = p.parse_args(argv)
    md = build()
    if not args.write:
        print(md)
        return 0
    text = DOC.read_text()
    a, b = text.index(START) + len(START), text.index(END)
    DOC.write_text(text[:a] + "\n\n" + md + "\n" + text[b:])
    print(f"updated {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
