"""Lever g of issue 17: age, sex and body site beside the image, measured from the feature cache.

The images' ensemble is left exactly as it is; the metadata only re-weighs its probabilities, and an examination
without metadata keeps the image-only probabilities unchanged (the term is simply absent). Two ways, both scored
on the validation split only, against the shipped ensemble on the same lesions:

- g1. **metadata prior** (a product of experts). A multinomial logistic regression p(class | age, sex, site) is
  fitted on the *training* split's metadata (the backbones never saw metadata, so these are not over-fitted
  features), and the ensemble's probabilities become
  softmax(log p_image + beta * (log p_meta(class | metadata) - log prior(class))), one beta chosen on validation
  (and cross-fitted over lesion folds, as every tuned lever in `training.ablation`).
- g2. **stacking on validation**: a class-balanced logistic regression over [log p_image, metadata] fitted on four
  validation lesion folds and scored on the fifth (out-of-fold), as row d3 does for heads.

`python -m training.metadata_lever` prints the rows and, with `--out`, writes them as JSON; `--test` scores the
configuration chosen on validation on the test split once.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lesion_desktop.classes import NUM_CLASSES
from training.ablation import (
    FOLDS,
    Config,
    Lab,
    better,
    cross_fit_arrays,
    figures,
    fit_head,
    fit_softmax_regression,
    lesion_folds,
    selection_key,
)
from training.levers import CacheSet

# HAM10000's `localization` values; "" and "unknown" both mean not recorded.
SITES = ("scalp", "face", "ear", "neck", "chest", "abdomen", "back", "trunk", "upper extremity", "hand",
         "lower extremity", "foot", "acral", "genital")
SEXES = ("female", "male")
AGE_EDGES = (15, 30, 45, 60, 75)  # bins: <15, 15-29, 30-44, 45-59, 60-74, >=75, plus "not recorded"
BETAS = tuple(round(float(b), 2) for b in np.arange(0.0, 1.501, 0.1))
META_L2 = (1e-3, 1e-2, 1e-1)
STACK_L2 = (0.01, 0.1, 1.0)


def encode(age: float | None, sex: str, site: str) -> np.ndarray:
    """One row of one-hot metadata: age bin (or missing), sex (or missing), body site (or missing)."""
    row = np.zeros(len(AGE_EDGES) + 2 + len(SEXES) + 1 + len(SITES) + 1)
    if age is None or not np.isfinite(age):
        row[len(AGE_EDGES) + 1] = 1
    else:
        row[int(np.searchsorted(AGE_EDGES, age, side="right"))] = 1
    off = len(AGE_EDGES) + 2
    row[off + (SEXES.index(sex) if sex in SEXES else len(SEXES))] = 1
    off += len(SEXES) + 1
    row[off + (SITES.index(site) if site in SITES else len(SITES))] = 1
    return row


def read_metadata(csv_path: Path) -> dict[str, np.ndarray]:
    """image_id -> encoded metadata, from a HAM10000-style CSV (columns age, sex, localization)."""
    out = {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            try:
                age: float | None = float(r.get("age") or "nan")
            except ValueError:
                age = None
            out[r["image_id"]] = encode(age, (r.get("sex") or "").strip().lower(),
                                        (r.get("localization") or "").strip().lower())
    return out


def metadata_for(ids: Sequence[str], table: dict[str, np.ndarray]) -> np.ndarray:
    missing = [i for i in ids if i not in table]
    if missing:
        raise KeyError(f"{len(missing)} images have no metadata row (first: {missing[0]})")
    return np.stack([table[i] for i in ids])


def fit_meta_model(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """p(class | metadata) by plain (not class-balanced) multinomial logistic regression: a true conditional."""
    return fit_softmax_regression(x, y, l2)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def with_prior(p_image: np.ndarray, log_p_meta: np.ndarray | None, prior: np.ndarray, beta: float) -> np.ndarray:
    """The image probabilities re-weighed by the metadata's likelihood ratio; unchanged where it is None."""
    if log_p_meta is None or beta == 0:
        return np.asarray(p_image, dtype=np.float64)
    z = np.log(np.clip(p_image, 1e-12, 1.0)) + beta * (log_p_meta - np.log(prior))
    return np.exp(log_softmax(z))


def stacked_oof(log_p: np.ndarray, meta: np.ndarray, y: np.ndarray, lesions: np.ndarray, l2: float,
                k: int = FOLDS) -> np.ndarray:
    """Out-of-fold probabilities of a class-balanced head over [log p_image, metadata], T fitted per fold."""
    from lesion_desktop.inference.runner import calibrated_softmax
    from training.calibrate import fit_temperature

    x = np.concatenate([log_p, meta], axis=1)
    folds = lesion_folds(lesions, k)
    out = np.zeros((len(y), NUM_CLASSES))
    for f in range(k):
        fit, held = folds != f, folds == f
        weight, bias = fit_head(x[fit], y[fit], l2)
        t = fit_temperature(x[fit] @ weight.T + bias, y[fit])
        out[held] = calibrated_softmax(x[held] @ weight.T + bias, t)
    return out


def meta_models(cs: CacheSet, meta: dict[str, np.ndarray]) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """p(class | metadata) fitted on the training split, one per L2."""
    return {l2: fit_meta_model(meta["train"], cs.splits["train"].labels, l2) for l2 in META_L2}


def rows(cs: CacheSet, meta: dict[str, np.ndarray]) -> dict[str, Any]:
    """Rows g1 and g2 on validation, in `training.ablation`'s format, and the chosen g1 setting."""
    lab = Lab(cs)
    base = lab.probs(Config(), "val")
    val = cs.splits["val"]
    models = meta_models(cs, meta)
    cands: dict[str, np.ndarray] = {"beta=0": base}
    for l2, (w, b) in models.items():
        log_pm = log_softmax(meta["val"] @ w.T + b)
        for beta in BETAS[1:]:
            cands[f"l2={l2:g}, beta={beta:.1f}"] = with_prior(base, log_pm, cs.prior, beta)
    name = max(cands, key=lambda c: selection_key(cands[c], val.labels))
    oof, choices = cross_fit_arrays(cands, val)
    g1: dict[str, Any] = {
        "lever": "g1. metadata prior (age, sex, site)", "cost": "none (a 7x29 table per image)",
        "what": "log p_image + beta * (log p(class | age, sex, site) - log prior); p(class | metadata) by logistic "
                "regression on the training split's metadata; beta and its L2 chosen on validation",
        "config": None, "label": name, "in_sample": figures(lab, cands[name], "val", base),
        "cross_fitted": figures(lab, oof, "val", base), "fold_choices": choices}
    g1["kept"], g1["why"] = better(g1)
    log_p = np.log(np.clip(base, 1e-12, 1.0))
    oofs = {l2: stacked_oof(log_p, meta["val"], val.labels, val.lesions, l2) for l2 in STACK_L2}
    l2 = max(STACK_L2, key=lambda v: selection_key(oofs[v], val.labels))
    g2: dict[str, Any] = {
        "lever": "g2. stacking image + metadata on validation", "cost": "none",
        "what": "class-balanced logistic regression over [log p_image, age, sex, site], each lesion fold scored by "
                "the model fitted on the other folds; L2 chosen by the out-of-fold figure (slightly optimistic)",
        "config": None, "label": f"l2={l2:g} (out-of-fold)", "in_sample": figures(lab, oofs[l2], "val", base)}
    g2["cross_fitted"] = g2["in_sample"]
    g2["kept"], g2["why"] = better(g2)
    return {"rows": [g1, g2], "chosen_g1": name}


def test_once(cs: CacheSet, meta: dict[str, np.ndarray], chosen: str) -> dict[str, Any]:
    """The g1 setting chosen on validation, on the test split against the shipped ensemble (run once)."""
    lab = Lab(cs)
    base = lab.probs(Config(), "test")
    if chosen == "beta=0":
        p = base
    else:
        l2 = float(chosen.split(",")[0].split("=")[1])
        beta = float(chosen.split("beta=")[1])
        w, b = fit_meta_model(meta["train"], cs.splits["train"].labels, l2)
        p = with_prior(base, log_softmax(meta["test"] @ w.T + b), cs.prior, beta)
    return {"label": chosen, "test": figures(lab, p, "test", base), "shipped": figures(lab, base, "test", base)}


def main(argv: list[str] | None = None) -> int:
    from training.featcache import default_cache_root
    from training.levers import load_cache

    p = argparse.ArgumentParser(prog="python -m training.metadata_lever", description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=Path("resources/models/default"))
    p.add_argument("--data", default="../shared/data/ham10000")
    p.add_argument("--cache", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--test", metavar="CHOSEN", default=None,
                   help="score this g1 setting (as `rows` printed it) on the test split: once, at the end")
    args = p.parse_args(argv)
    table = read_metadata(Path(args.data) / "HAM10000_metadata.csv")
    splits = ["train", "val"] + (["test"] if args.test else [])
    cs = load_cache(args.models, args.data, args.cache or default_cache_root(), {s: ["plain"] for s in splits},
                    compute=bool(args.test))
    meta = {s: metadata_for(cs.splits[s].image_ids, table) for s in splits}
    result = test_once(cs, meta, args.test) if args.test else rows(cs, meta)
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text)
    if args.test:
        for k in ("shipped", "test"):
            f = result[k]
            print(f"{k}: BA {f['balanced_accuracy']:.4f}, mel recall {f['melanoma_recall']:.4f}, "
                  f"warn mel {f['warning_melanoma']:.3f} / benign {f['warning_benign']:.3f}, ECE {f['ece']:.3f}")
        return 0
    from training.ablation import markdown

    print(markdown({"rows": result["rows"]}))
    for r in result["rows"]:
        print(r["lever"], "->", r["why"], "| recall", {c: round(v, 3) for c, v in r["cross_fitted"]["recall"].items()})
    print("chosen on all of validation (g1):", result["chosen_g1"],
          "| fold choices:", result["rows"][0]["fold_choices"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
