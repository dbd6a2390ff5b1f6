"""Trained member bundles tried against the shipped ensemble: alone, in place of a member, or as an extra member.

Issue 17's backbone levers (a fine-tune at another size, another architecture) each produce one member bundle.
This scores such bundles on the validation split only, beside the shipped members' cached logits
(`training.levers`), with the member weights chosen on a simplex grid and cross-fitted over lesion folds, and
compares every candidate ensemble with the shipped one on the same lesions (paired intervals).

    python -m training.candidates BUNDLE [BUNDLE ...] [--out FILE]

A bundle must share the ensemble's effective size (its first preprocessing stage); its own input size, mean and
colour constancy are applied as the app would. Bundles without an ONNX graph are exported first.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from lesion_desktop.preprocess import PreprocessConfig
from training.ablation import Config, Lab, figures, fmt_iv, scored_grid
from training.featcache import VIEWS, View
from training.levers import CacheSet, MemberData

WEIGHT_STEP = 0.1


def simplex(n: int, active: list[int], step: float = WEIGHT_STEP) -> list[Config]:
    """Every weighting of the `active` members (of n) on a `step` grid that sums to 1; the others get 0."""
    steps = [round(float(x), 2) for x in np.arange(0.0, 1.0 + 1e-9, step)]
    out = []
    for combo in itertools.product(steps, repeat=len(active)):
        if abs(sum(combo) - 1.0) > 1e-9:
            continue
        ws = [0.0] * n
        for i, c in zip(active, combo, strict=True):
            ws[i] = c
        out.append(Config(weights=tuple(ws)))
    return out


def candidate_grids(cs: CacheSet, shipped: int) -> list[tuple[str, list[Config]]]:
    """For each member after the first `shipped`: alone, in place of each shipped member, and as an extra one;
    with two or more new members, also the new members as an ensemble of their own."""
    n = len(cs.members)
    names = [m.name for m in cs.members]
    base = tuple(cs.members[i].weight if i < shipped else 0.0 for i in range(n))
    out: list[tuple[str, list[Config]]] = [("shipped default", [Config(weights=base)])]
    for k in range(shipped, n):
        out.append((f"{names[k]} alone", [Config(weights=tuple(1.0 if i == k else 0.0 for i in range(n)))]))
        for j in range(shipped):
            swapped = tuple(base[j] if i == k else (0.0 if i == j else base[i]) for i in range(n))
            out.append((f"{names[k]} in place of {names[j]}, shipped weights", [Config(weights=swapped)]))
            others = [i for i in range(shipped) if i != j]
            out.append((f"{names[k]} in place of {names[j]}, weights tuned", simplex(n, [*others, k])))
        out.append((f"{names[k]} as an extra member, weights tuned", simplex(n, [*range(shipped), k])))
        equal = tuple(1.0 / (shipped + 1) if (i < shipped or i == k) else 0.0 for i in range(n))
        out.append((f"{names[k]} as an extra member, equal weights", [Config(weights=equal)]))
    new = list(range(shipped, n))
    if len(new) >= 2:  # an ensemble of the new members only (members trained alike, such as all colour-corrected)
        out.append(("the new members together, weights tuned", simplex(n, new)))
        together = tuple(1.0 / len(new) if i >= shipped else 0.0 for i in range(n))
        out.append(("the new members together, equal weights", [Config(weights=together)]))
    return out


def compare(cs: CacheSet, shipped: int, shifted: str | None = None) -> list[dict[str, Any]]:
    """Each candidate on validation against the shipped ensemble (the first `shipped` members, their weights).

    With `shifted` (a view every member has, such as "cast20"), each candidate's setting, chosen on the plain
    images, is also scored on the shifted images against the shipped ensemble on the same shifted images: a
    proxy for another clinic's camera that never takes part in the choice."""
    lab = Lab(cs)
    grids = candidate_grids(cs, shipped)
    base = lab.probs(grids[0][1][0], "val")
    base_shifted = lab.probs(replace(grids[0][1][0], views=(shifted,)), "val") if shifted else None
    rows = []
    for label, grid in grids:
        row: dict[str, Any] = {"candidate": label, **scored_grid(lab, grid, base, refit=False)}
        if label == "shipped default":
            row["kept"], row["why"] = False, "the baseline"
        if shifted and base_shifted is not None:
            cfg = replace(Config(**row["config"]), views=(shifted,))
            row["shifted"] = {"view": shifted, **figures(lab, lab.probs(cfg, "val"), "val", base_shifted)}
        rows.append(row)
    return rows


def view_for(member: PreprocessConfig, shown: PreprocessConfig) -> View:
    """How to show a bundle the images `shown` (the ensemble's first stage) so that it sees what the app gives it.

    The validation copies are already at the effective size, so that stage adds only hair removal and colour
    constancy. A bundle that adds Shades of Gray gets the `sog` view (applied to the effective-size image, as
    `preprocess.to_effective` does); any other difference in the first stage cannot be reproduced here.
    """
    if member.effective_size != shown.effective_size:
        raise ValueError(f"effective size {member.effective_size} is not the ensemble's {shown.effective_size}")
    if member.hair_removal != shown.hair_removal or member.jpeg_quality != shown.jpeg_quality:
        raise ValueError("a bundle whose hair removal or JPEG quality differs from the ensemble's is not supported")
    if member.color_constancy == shown.color_constancy:
        return VIEWS["plain"]
    if member.color_constancy:
        return VIEWS["sog"]
    raise ValueError("the ensemble applies colour constancy and the bundle does not: not supported")


def add_bundles(cs: CacheSet, models: Path, data: str, bundles: list[Path],
                shifted: str | None = None) -> dict[str, dict[str, Any]]:
    """Score each bundle on the validation images (the app's preprocessing) and append it to `cs.members`; with
    `shifted`, also through that view (its cast before the bundle's own colour constancy, if any)."""
    from lesion_desktop.inference.onnx_runner import OnnxRunner
    from lesion_desktop.manifest import onnx_graph, validate_ensemble, validate_member
    from training.featcache import run_view
    from training.levers import _effective_images, default_split

    info = validate_ensemble(models)
    _, ds = default_split(data, info)
    images = _effective_images(ds, info, cs.splits["val"].image_ids)
    timing = {}
    for bundle in bundles:
        member = validate_member(bundle)
        try:
            view = view_for(member.preprocess, info.members[0].preprocess)
        except ValueError as e:
            raise ValueError(f"{bundle}: {e}") from None
        graph = onnx_graph(member, required=False)
        if graph is None:
            from lesion_desktop.inference.export import export_member

            graph = export_member(bundle)
            member = validate_member(bundle)
        runner = OnnxRunner(member, graph, None)
        t0 = time.perf_counter()
        logits, features = run_view(runner, images, view)
        seconds = time.perf_counter() - t0
        name = f"{bundle.parent.name}/{bundle.name}"
        md = MemberData(name, member.temperature, 0.0)
        md.logits[("val", "plain")], md.features[("val", "plain")] = logits, features
        if shifted:
            cast = replace(VIEWS[shifted], color_constancy=view.color_constancy)
            md.logits[("val", shifted)], md.features[("val", shifted)] = run_view(runner, images, cast)
        cs.members.append(md)
        timing[name] = {"view": view.name, "seconds": seconds, "ms_per_image": 1000 * seconds / max(len(images), 1),
                        "input_size": list(member.preprocess.input_size), "temperature": member.temperature}
    return timing


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| candidate | weights chosen on val | val BA (cross-fitted) | d BA [paired 95%] | mel recall | "
             "d mel recall [95%] | warn@30% mel / benign | ECE | kept |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s, c = r["in_sample"], r["cross_fitted"]
        ba = f"{s['balanced_accuracy']:.3f}" + (f" ({c['balanced_accuracy']:.3f})" if c is not s else "")
        lines.append(f"| {r['candidate']} | {r['label']} | {ba} | {c['delta']['balanced_accuracy']:+.3f} "
                     f"{fmt_iv(c['paired_95']['balanced_accuracy'])} | {c['melanoma_recall']:.3f} | "
                     f"{c['delta']['melanoma_recall']:+.3f} {fmt_iv(c['paired_95']['melanoma_recall'])} | "
                     f"{c['warning_melanoma']:.3f} / {c['warning_benign']:.3f} | {c['ece']:.3f} | "
                     f"{'yes' if r['kept'] else 'no'} |")
    return "\n".join(lines) + "\n"


def shifted_table(rows: list[dict[str, Any]]) -> str:
    """Each candidate, as chosen on the plain images, under the shifted view against the shipped ensemble there."""
    lines = ["| candidate (setting chosen on plain images) | view | BA | d BA [paired 95%] | mel recall | "
             "d mel recall [95%] | warn@30% mel / benign |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["shifted"]
        lines.append(f"| {r['candidate']} | {s['view']} | {s['balanced_accuracy']:.3f} | "
                     f"{s['delta']['balanced_accuracy']:+.3f} {fmt_iv(s['paired_95']['balanced_accuracy'])} | "
                     f"{s['melanoma_recall']:.3f} | {s['delta']['melanoma_recall']:+.3f} "
                     f"{fmt_iv(s['paired_95']['melanoma_recall'])} | "
                     f"{s['warning_melanoma']:.3f} / {s['warning_benign']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from training.featcache import default_cache_root
    from training.levers import load_cache

    p = argparse.ArgumentParser(prog="python -m training.candidates", description=__doc__.splitlines()[0])
    p.add_argument("bundles", type=Path, nargs="+", help="trained member bundles (folders with manifest.json)")
    p.add_argument("--models", type=Path, default=Path("resources/models/default"))
    p.add_argument("--data", default="../shared/data/ham10000")
    p.add_argument("--cache", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--colour-cast", action="store_true",
                   help="also score every candidate, as chosen on the plain images, under a simulated camera "
                        "colour cast (the cast20 view: each channel x exp(U(-0.2, 0.2)) per image)")
    args = p.parse_args(argv)
    shifted = "cast20" if args.colour_cast else None
    cs = load_cache(args.models, args.data, args.cache or default_cache_root(),
                    {"val": ["plain", *([shifted] if shifted else [])]})
    shipped = len(cs.members)
    timing = add_bundles(cs, args.models, args.data, args.bundles, shifted)
    rows = compare(cs, shipped, shifted)
    if args.out:
        args.out.write_text(json.dumps({"timing": timing, "rows": rows}, indent=1))
    print(json.dumps(timing, indent=1))
    print(table(rows))
    if shifted:
        print(shifted_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
