"""The levers of issue 17 that need no backbone training, each scored against the shipped ensemble.

Every candidate is a `Config` (which views, which member weights, which logit adjustment, which head) turned
into probabilities with the app's own functions (calibrated_softmax per view, weighted_mean). Selection uses
the validation split only: a tuned lever (tau, weights, head strength) is reported twice, as chosen on all of
validation (optimistic) and cross-fitted (each lesion fold scored with the setting chosen on the other folds),
which is the honest estimate of what the choice buys. `ablate` never reads the test split; `final` scores one
chosen configuration there, once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lesion_desktop.classes import MALIGNANT_INDICES, MEL_INDEX, NUM_CLASSES
from lesion_desktop.inference.runner import weighted_mean
from training.featcache import APP_TTA, view_probs
from training.levers import CacheSet, SplitData
from training.metrics import evaluate, expected_calibration_error, paired_intervals

WARNING = 0.3  # the app's default warning threshold (Settings.warning_threshold)
TAUS = tuple(round(float(t), 2) for t in np.arange(-1.0, 1.501, 0.05))
WEIGHT_STEPS = tuple(round(float(w), 2) for w in np.arange(0.0, 1.001, 0.05))
HEAD_L2 = (1e-3, 1e-2, 3e-2, 1e-1)
VAL_HEAD_L2 = (0.1, 1.0, 10.0)
FUSION_L2 = (0.03, 0.1, 0.3, 1.0)
FOLDS = 5


@dataclass(frozen=True)
class Config:
    """How to turn cached member outputs into the ensemble's probabilities."""

    views: tuple[str, ...] = ("plain",)  # probabilities averaged over these (the app's TTA is APP_TTA)
    weights: tuple[float, ...] | None = None  # member weights; None: the shipped ones
    tau: float = 0.0  # logit adjustment: z/T - tau * log(prior), prior = training-split class frequencies
    head: str = ""  # "" the shipped heads; else a head set: "l2=<value>" or "flip-l2=<value>"

    def label(self) -> str:
        parts = [f"views={'+'.join(self.views)}"]
        if self.weights is not None:
            parts.append("weights=" + "/".join(f"{w:.2f}" for w in self.weights))
        if self.tau:
            parts.append(f"tau={self.tau:+.2f}")
        if self.head:
            parts.append(f"head={self.head}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Head:
    """A member's refitted linear head over its cached pooled features: logits = features @ weight.T + bias."""

    weight: np.ndarray
    bias: np.ndarray
    temperature: float


def logit_adjustment(prior: np.ndarray, tau: float) -> np.ndarray:
    """The per-class offset added to z / T (Menon et al. 2021): -tau * log(prior); zeros for tau = 0."""
    return -float(tau) * np.log(np.asarray(prior, dtype=np.float64))


def adjusted(logits: np.ndarray, prior: np.ndarray, tau: float, temperature: float) -> np.ndarray:
    """Logits whose calibrated_softmax(., T) is softmax(z / T - tau * log(prior))."""
    return np.asarray(logits, dtype=np.float64) + temperature * logit_adjustment(prior, tau)


@dataclass
class Lab:
    """A cache set plus the heads fitted on it and the probabilities computed so far."""

    cs: CacheSet
    heads: dict[str, list[Head]] = field(default_factory=dict)
    _memo: dict[tuple[Config, str, tuple[float, ...] | None], np.ndarray] = field(default_factory=dict)

    def views_available(self, split: str) -> set[str]:
        return {v for (s, v) in self.cs.members[0].logits if s == split}

    def member_logits(self, cfg: Config, k: int, split: str) -> list[np.ndarray]:
        m = self.cs.members[k]
        if cfg.head:
            h = self.heads[cfg.head][k]
            return [m.features[(split, v)] @ h.weight.T + h.bias for v in cfg.views]
        return [m.logits[(split, v)] for v in cfg.views]

    def temperature(self, cfg: Config, k: int) -> float:
        return self.heads[cfg.head][k].temperature if cfg.head else self.cs.members[k].temperature

    def member_probs(self, cfg: Config, k: int, split: str, temperature: float | None = None) -> np.ndarray:
        t = self.temperature(cfg, k) if temperature is None else temperature
        zs = [adjusted(z, self.cs.prior, cfg.tau, t) for z in self.member_logits(cfg, k, split)]
        return view_probs(zs, t)

    def probs(self, cfg: Config, split: str, temperatures: tuple[float, ...] | None = None) -> np.ndarray:
        key = (cfg, split, temperatures)
        if key not in self._memo:
            n = len(self.cs.members)
            ts = temperatures or (None,) * n
            per_member = [self.member_probs(cfg, k, split, ts[k]) for k in range(n)]
            self._memo[key] = weighted_mean(per_member, list(cfg.weights or self.cs.weights))
        return self._memo[key]

    def refit_temperatures(self, cfg: Config) -> tuple[float, ...]:
        """Each member's temperature re-fitted on validation by likelihood, for this configuration."""
        y = self.cs.splits["val"].labels
        out = []
        for k in range(len(self.cs.members)):
            def nll(t: float, k: int = k) -> float:
                p = self.member_probs(cfg, k, "val", t)
                return float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))

            grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 81))
            best = grid[int(np.argmin([nll(t) for t in grid]))]
            fine = best * np.exp(np.linspace(-0.04, 0.04, 17))
            out.append(float(fine[int(np.argmin([nll(t) for t in fine]))]))
        return tuple(out)


def ba_nll(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Balanced accuracy (mean recall over the classes present) and NLL: the selection key."""
    pred = p.argmax(axis=1)
    recalls = [float((pred[y == c] == c).mean()) for c in range(NUM_CLASSES) if (y == c).any()]
    nll = float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))
    return float(np.mean(recalls)), nll


def select(lab: Lab, grid: Sequence[Config], rows: np.ndarray | None = None) -> Config:
    """The grid's best on validation (`rows` of it): balanced accuracy, then lower NLL, then the earlier entry."""
    y = lab.cs.splits["val"].labels
    best: tuple[float, float] | None = None
    chosen = grid[0]
    for cfg in grid:
        p = lab.probs(cfg, "val")
        ba, nll = ba_nll(p if rows is None else p[rows], y if rows is None else y[rows])
        if best is None or (ba, -nll) > best:
            best, chosen = (ba, -nll), cfg
    return chosen


def lesion_folds(lesions: np.ndarray, k: int = FOLDS, seed: int = 0) -> np.ndarray:
    """A fold number per image; all images of a lesion share one."""
    uniq, inverse = np.unique(lesions, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of_lesion = np.empty(len(uniq), np.int64)
    fold_of_lesion[order] = np.arange(len(uniq)) % k
    return fold_of_lesion[inverse]


def cross_fitted(lab: Lab, grid: Sequence[Config], k: int = FOLDS) -> tuple[np.ndarray, list[str]]:
    """Validation probabilities where each fold's come from the setting chosen on the other folds."""
    folds = lesion_folds(lab.cs.splits["val"].lesions, k)
    out = np.zeros_like(lab.probs(grid[0], "val"))
    chosen = []
    for f in range(k):
        cfg = select(lab, grid, np.flatnonzero(folds != f))
        out[folds == f] = lab.probs(cfg, "val")[folds == f]
        chosen.append(cfg.label())
    return out, chosen


def warning_rates(p: np.ndarray, y: np.ndarray, threshold: float = WARNING) -> tuple[float, float]:
    """How often the warning (mel + bcc + akiec >= threshold) fires on melanomas and on benign lesions."""
    warned = p[:, list(MALIGNANT_INDICES)].sum(axis=1) >= threshold - 1e-9
    benign = ~np.isin(y, MALIGNANT_INDICES)
    return float(warned[y == MEL_INDEX].mean()), float(warned[benign].mean())


def paired_warning_intervals(old: np.ndarray, new: np.ndarray, split: SplitData, threshold: float = WARNING,
                             resamples: int = 1000, seed: int = 0) -> dict[str, list[float]]:
    """95% lesion-resampled intervals for new minus old warning rates on melanomas and on benign lesions."""
    y = split.labels
    _, gi = np.unique(split.lesions, return_inverse=True)
    n_groups = int(gi.max()) + 1
    masks = {"warning_melanoma": y == MEL_INDEX, "warning_benign": ~np.isin(y, MALIGNANT_INDICES)}
    fired = [p[:, list(MALIGNANT_INDICES)].sum(axis=1) >= threshold - 1e-9 for p in (old, new)]
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[float]] = {k: [] for k in masks}
    for start in range(0, resamples, 100):
        b = min(100, resamples - start)
        draws = rng.integers(0, n_groups, size=(b, n_groups))
        w = np.stack([np.bincount(d, minlength=n_groups) for d in draws]).astype(np.float64)[:, gi]
        for name, mask in masks.items():
            denom = w[:, mask].sum(axis=1)
            rates = [(w[:, mask] * f[mask]).sum(axis=1) / np.maximum(denom, 1e-12) for f in fired]
            diffs[name] += list(rates[1] - rates[0])
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in diffs.items()}


def figures(lab: Lab, p: np.ndarray, split: str, base: np.ndarray, refit: np.ndarray | None = None) -> dict[str, Any]:
    """The figures #17 asks for, with paired intervals against `base` on the same lesions."""
    sd = lab.cs.splits[split]
    m = evaluate(p, sd.labels)
    mel, benign = warning_rates(p, sd.labels)
    out = {
        "n": m["n"], "balanced_accuracy": m["balanced_accuracy"], "melanoma_recall": m["melanoma_recall"],
        "accuracy": m["accuracy"], "macro_auc": m["macro_auc"], "nll": m["nll"], "ece": m["ece"],
        "warning_melanoma": mel, "warning_benign": benign,
        "recall": {c: v["recall"] for c, v in m["per_class"].items()},
    }
    if refit is not None:
        out["ece_refit"] = expected_calibration_error(refit, sd.labels)[0]
    diff = paired_intervals(base, p, sd.labels, sd.lesions)
    base_m = evaluate(base, sd.labels)
    base_mel, base_benign = warning_rates(base, sd.labels)
    out["delta"] = {"balanced_accuracy": out["balanced_accuracy"] - base_m["balanced_accuracy"],
                    "melanoma_recall": out["melanoma_recall"] - base_m["melanoma_recall"],
                    "accuracy": out["accuracy"] - base_m["accuracy"],
                    "warning_melanoma": mel - base_mel, "warning_benign": benign - base_benign}
    out["paired_95"] = {k: diff[k] for k in ("balanced_accuracy", "melanoma_recall", "accuracy")}
    out["paired_95"].update(paired_warning_intervals(base, p, sd))
    return out


def fit_softmax_regression(x: np.ndarray, labels: np.ndarray, l2: float, class_weights: np.ndarray | None = None,
                           steps: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by L-BFGS: weight (K, C) and bias (K,) minimising the (weighted)
    cross-entropy plus l2 * |weight|^2."""
    import torch

    xt = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.int64)
    cw = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
    w = torch.zeros(NUM_CLASSES, xt.shape[1], requires_grad=True)
    b = torch.zeros(NUM_CLASSES, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w.T + b, y, weight=cw) + l2 * (w * w).sum()
        loss.backward()
        return loss

    torch.manual_seed(0)
    opt.step(closure)
    return w.detach().numpy().astype(np.float64), b.detach().numpy().astype(np.float64)


def fit_head(features: np.ndarray, labels: np.ndarray, l2: float, steps: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """A class-balanced multinomial logistic regression on standardised features, folded back to raw features."""
    mu = features.mean(axis=0)
    sd = features.std(axis=0) + 1e-6
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    cw = np.where(counts > 0, len(labels) / (NUM_CLASSES * np.maximum(counts, 1)), 0.0)
    w, b = fit_softmax_regression((features - mu) / sd, labels, l2, cw, steps)
    weight = w / sd
    bias = b - weight @ mu
    return weight, bias


def fit_heads(lab: Lab, l2: float, flips: bool) -> list[Head]:
    """One new head per member on the training split's cached features (with the h-flipped view if `flips`)."""
    from training.calibrate import fit_temperature

    y_train = lab.cs.splits["train"].labels
    y_val = lab.cs.splits["val"].labels
    heads = []
    for m in lab.cs.members:
        views = ["plain", "hflip"] if flips else ["plain"]
        x = np.concatenate([m.features[("train", v)] for v in views])
        weight, bias = fit_head(x, np.concatenate([y_train] * len(views)), l2)
        t = fit_temperature(m.features[("val", "plain")] @ weight.T + bias, y_val)  # as training.trainer.finish
        heads.append(Head(weight, bias, t))
    return heads


def val_fitted_heads(lab: Lab, l2: float, k: int = FOLDS) -> np.ndarray:
    """Validation probabilities from new heads fitted on the *other* validation folds (stacking, cross-fitted).

    Validation features come from images the backbones never trained on, unlike the training split's; each
    fold's heads and temperatures are fitted on the remaining folds, so every figure is out-of-fold.
    """
    from training.calibrate import fit_temperature

    val = lab.cs.splits["val"]
    folds = lesion_folds(val.lesions, k)
    out = np.zeros((len(val.labels), NUM_CLASSES))
    for f in range(k):
        fit, held = folds != f, folds == f
        per_member = []
        for m in lab.cs.members:
            x = m.features[("val", "plain")]
            weight, bias = fit_head(x[fit], val.labels[fit], l2)
            t = fit_temperature(x[fit] @ weight.T + bias, val.labels[fit])
            z = adjusted(x[held] @ weight.T + bias, lab.cs.prior, 0.0, t)
            per_member.append(view_probs([z], t))
        out[held] = weighted_mean(per_member, lab.cs.weights)
    return out


def fusion_val_probs(lab: Lab, l2: float) -> np.ndarray:
    """One class-balanced head over both members' concatenated training features (late fusion), T fitted on val."""
    from lesion_desktop.inference.runner import calibrated_softmax
    from training.calibrate import fit_temperature

    def stacked(split: str) -> np.ndarray:
        return np.concatenate([m.features[(split, "plain")] for m in lab.cs.members], axis=1)

    weight, bias = fit_head(stacked("train"), lab.cs.splits["train"].labels, l2)
    z = stacked("val") @ weight.T + bias
    return calibrated_softmax(z, fit_temperature(z, lab.cs.splits["val"].labels))


def selection_key(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Higher is better: balanced accuracy, then lower NLL (as `select` orders candidates)."""
    ba, nll = ba_nll(p, y)
    return ba, -nll


def cross_fit_arrays(candidates: dict[str, np.ndarray], split: SplitData,
                     k: int = FOLDS) -> tuple[np.ndarray, list[str]]:
    """Like `cross_fitted`, for candidates given as validation probability arrays."""
    folds = lesion_folds(split.lesions, k)
    out = np.zeros_like(next(iter(candidates.values())))
    chosen = []
    for f in range(k):
        rows = folds != f
        name = max(candidates, key=lambda c: selection_key(candidates[c][rows], split.labels[rows]))
        out[folds == f] = candidates[name][folds == f]
        chosen.append(name)
    return out, chosen


@dataclass
class Lever:
    name: str
    what: str
    grid: list[Config]  # one entry: a fixed candidate; several: a tuned lever
    cost: str = ""


def levers(lab: Lab) -> list[Lever]:
    """The candidates, as far as the cached views allow."""
    val_views = lab.views_available("val")
    n = len(lab.cs.members)
    out = [
        Lever("a. logit adjustment", "z/T - tau*log(prior), one tau for both members, chosen on validation",
              [Config(tau=t) for t in TAUS], "none"),
    ]
    if n == 2:
        out.append(Lever("b. ensemble weights", "member weights on a 0.05 grid, chosen on validation",
                         [Config(weights=(w, round(1 - w, 2))) for w in WEIGHT_STEPS], "none"))
    fixed = [
        ("c1. TTA h-flip", ("plain", "hflip"), "2 views: ~2x inference"),
        ("c2. TTA 4 flips", ("plain", "hflip", "vflip", "hvflip"), "4 views: ~4x inference"),
        ("c3. TTA app's 6 views", APP_TTA, "6 views: ~6x inference (the app's TTA switch)"),
        ("c4. FixRes 1.15x", ("fix1.15",), "~1.3x inference"),
        ("c5. FixRes 1.30x", ("fix1.30",), "~1.7x inference"),
        ("c6. plain + FixRes 1.15x", ("plain", "fix1.15"), "~2.3x inference"),
        ("e. Shades of Gray (test only)", ("sog",), "+ colour constancy per image (~1 ms)"),
    ]
    for name, views, cost in fixed:
        if set(views) <= val_views:
            out.append(Lever(name, f"average over {'+'.join(views)}", [Config(views=tuple(views))], cost))
    if "train" in {s for (s, _) in lab.cs.members[0].features}:
        for flips in (False, True):
            if flips and ("train", "hflip") not in lab.cs.members[0].features:
                continue
            grid = []
            for l2 in HEAD_L2:
                name = f"{'flip-' if flips else ''}l2={l2:g}"
                if name not in lab.heads:
                    lab.heads[name] = fit_heads(lab, l2, flips)
                grid.append(Config(head=name))
            what = ("new class-balanced linear head per member on cached train features"
                    + (" + their h-flipped view" if flips else "") + "; L2 chosen on validation, T refitted")
            out.append(Lever(f"d{2 if flips else 1}. new head{' + flips' if flips else ''}", what, grid, "none"))
    return out


def better(row: dict[str, Any]) -> tuple[bool, str]:
    """Kept only when the cross-fitted validation gain in balanced accuracy is clear and melanoma recall holds."""
    cf = row["cross_fitted"]
    lo, hi = cf["paired_95"]["balanced_accuracy"]
    if hi < 0:
        return False, (f"worse: cross-fitted balanced accuracy {cf['delta']['balanced_accuracy']:+.3f}, "
                       f"paired 95% interval {fmt_iv(cf['paired_95']['balanced_accuracy'])} below 0")
    if lo <= 0:
        return False, (f"no clear gain: cross-fitted balanced accuracy {cf['delta']['balanced_accuracy']:+.3f}, "
                       f"paired 95% interval {fmt_iv(cf['paired_95']['balanced_accuracy'])} includes 0")
    if cf["delta"]["melanoma_recall"] < 0:
        return False, f"balanced accuracy up but melanoma recall {cf['delta']['melanoma_recall']:+.3f}"
    return True, f"balanced accuracy {cf['delta']['balanced_accuracy']:+.3f}, interval above 0"


def scored_grid(lab: Lab, grid: Sequence[Config], base: np.ndarray, refit: bool = True) -> dict[str, Any]:
    """A candidate (one Config) or a tuned lever (several) on validation against `base`: the setting chosen on
    all of validation with its figures (and the ECE with temperatures re-fitted, if `refit`), the cross-fitted
    figures where the grid has a choice to make, and whether it is kept (`better`)."""
    chosen = select(lab, grid)
    refitted = lab.probs(chosen, "val", lab.refit_temperatures(chosen)) if refit else None
    row: dict[str, Any] = {"config": asdict(chosen), "label": chosen.label(),
                           "in_sample": figures(lab, lab.probs(chosen, "val"), "val", base, refitted)}
    if len(grid) > 1:
        oof, fold_choices = cross_fitted(lab, grid)
        row["cross_fitted"] = figures(lab, oof, "val", base)
        row["fold_choices"] = fold_choices
    else:
        row["cross_fitted"] = row["in_sample"]
    row["kept"], row["why"] = better(row)
    return row


def fmt_iv(iv: Sequence[float] | None) -> str:
    return f"[{iv[0]:+.3f}, {iv[1]:+.3f}]" if iv else "n/a"


def ablate(cs: CacheSet, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every lever on validation against the shipped configuration. Never reads the test split."""
    t0 = time.perf_counter()
    lab = Lab(cs)
    base_cfg = Config()
    base = lab.probs(base_cfg, "val")
    rows: list[dict[str, Any]] = [{
        "lever": "shipped default", "what": "plain view, shipped heads, temperatures and weights",
        "config": asdict(base_cfg), "in_sample": figures(lab, base, "val", base,
                                                          lab.probs(base_cfg, "val", lab.refit_temperatures(base_cfg))),
    }]
    rows[0]["cross_fitted"] = rows[0]["in_sample"]
    for lever in levers(lab):
        t1 = time.perf_counter()
        row: dict[str, Any] = {"lever": lever.name, "what": lever.what, "cost": lever.cost,
                               **scored_grid(lab, lever.grid, base)}
        row["seconds"] = time.perf_counter() - t1
        rows.append(row)
        if log is not None:
            log(f"{lever.name}: {row['label']} -> in-sample BA "
                f"{row['in_sample']['balanced_accuracy']:.4f}, cross-fitted "
                f"{row['cross_fitted']['balanced_accuracy']:.4f} ({'kept' if row['kept'] else 'not kept'})")
    t1 = time.perf_counter()
    oofs = {l2: val_fitted_heads(lab, l2) for l2 in VAL_HEAD_L2}
    y = cs.splits["val"].labels
    l2 = max(VAL_HEAD_L2, key=lambda v: ba_nll(oofs[v], y)[0])
    row = {"lever": "d3. new head fitted on validation", "cost": "none",
           "what": "stacking: class-balanced linear heads on validation features, each lesion fold scored by heads "
                   "and temperatures fitted on the other folds; L2 (of " + ", ".join(map(str, VAL_HEAD_L2))
                   + ") chosen by the out-of-fold figure, so slightly optimistic; shipping it would fit on all of "
                   "validation and leave no clean validation figures",
           "config": None, "label": f"l2={l2:g} (out-of-fold)", "in_sample": figures(lab, oofs[l2], "val", base)}
    row["cross_fitted"] = row["in_sample"]
    row["kept"], row["why"] = better(row)
    row["seconds"] = time.perf_counter() - t1
    rows.append(row)
    if log is not None:
        log(f"d3. val-fitted head: l2={l2:g} -> out-of-fold BA {row['in_sample']['balanced_accuracy']:.4f}")
    if ("train", "plain") in cs.members[0].features and len(cs.members) > 1:
        t1 = time.perf_counter()
        val = cs.splits["val"]
        cands = {f"l2={v:g}": fusion_val_probs(lab, v) for v in FUSION_L2}
        name = max(cands, key=lambda c: selection_key(cands[c], val.labels))
        oof, choices = cross_fit_arrays(cands, val)
        row = {"lever": "d4. fused head over both members", "cost": "none (one 7x2560 head instead of two)",
               "what": "one class-balanced linear head over both members' concatenated train features (late "
                       "fusion), L2 chosen on validation, T fitted on validation",
               "config": None, "label": f"fusion {name}", "in_sample": figures(lab, cands[name], "val", base),
               "cross_fitted": figures(lab, oof, "val", base), "fold_choices": choices}
        row["kept"], row["why"] = better(row)
        row["seconds"] = time.perf_counter() - t1
        rows.append(row)
        if log is not None:
            log(f"d4. fused head: {name} -> in-sample BA {row['in_sample']['balanced_accuracy']:.4f}, "
                f"cross-fitted {row['cross_fitted']['balanced_accuracy']:.4f}")
    kept = [r for r in rows[1:] if r["kept"] and r["config"] is not None]
    chosen_cfg = combine_kept(lab, kept) if kept else base_cfg
    return {"rows": rows, "chosen": asdict(chosen_cfg), "chosen_label": chosen_cfg.label(),
            "seconds": time.perf_counter() - t0,
            "extraction_seconds": {m.name: {f"{s}/{v}": t for (s, v), t in m.seconds.items()} for m in cs.members}}


def combine_kept(lab: Lab, kept: list[dict[str, Any]]) -> Config:
    """The kept levers together, their settings chosen jointly on validation."""
    fields: dict[str, list[Any]] = {"views": [("plain",)], "weights": [None], "tau": [0.0], "head": [""]}
    for r in kept:
        c = r["config"]
        for k in fields:
            v = tuple(c[k]) if isinstance(c[k], list) else c[k]
            if v != fields[k][0] and v not in fields[k]:
                fields[k].append(v)
    grid = [Config(views=v, weights=w, tau=t, head=h) for v in fields["views"] for w in fields["weights"]
            for t in fields["tau"] for h in fields["head"]]
    return select(lab, grid)


def config_from(d: dict[str, Any]) -> Config:
    return Config(views=tuple(d.get("views", ("plain",))),
                  weights=tuple(d["weights"]) if d.get("weights") is not None else None,
                  tau=float(d.get("tau", 0.0)), head=str(d.get("head", "")))


def run(models: Path, data: str, root: Path, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    from training.featcache import VIEWS
    from training.levers import load_cache

    wanted = {"val": [v for v in VIEWS if v != "fix1.15-hflip"], "train": ["plain", "hflip"]}
    cs = load_cache(models, data, root, wanted, compute=False)
    return ablate(cs, log)


def final(models: Path, data: str, root: Path, chosen: dict[str, Any],
          log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The chosen configuration on the test split, against the shipped one on the same lesions: run once."""
    from training.levers import load_cache

    cfg = config_from(chosen)
    views = sorted(set(cfg.views) | {"plain"})
    wanted = {"val": views, "test": views} | ({"train": ["plain", "hflip"]} if cfg.head else {})
    cs = load_cache(models, data, root, wanted, compute=True, log=log)
    lab = Lab(cs)
    if cfg.head:
        flips = cfg.head.startswith("flip-")
        lab.heads[cfg.head] = fit_heads(lab, float(cfg.head.split("l2=")[1]), flips)
    base = lab.probs(Config(), "test")
    refit = lab.probs(cfg, "test", lab.refit_temperatures(cfg))
    out = figures(lab, lab.probs(cfg, "test"), "test", base, refit)
    out["config"] = asdict(cfg)
    out["label"] = cfg.label()
    out["shipped"] = figures(lab, base, "test", base)
    return out


def markdown(report: dict[str, Any]) -> str:
    """The ablation table: one row per lever, validation figures and paired intervals against the default."""
    head = ("| lever | setting chosen on val | val BA (cross-fitted) | d BA [paired 95%] | mel recall | "
            "d mel recall [95%] | warn@30% mel / benign | ECE (T refit) | kept |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in report["rows"]:
        s, c = r["in_sample"], r["cross_fitted"]
        ece = f"{s['ece_refit']:.3f}" if "ece_refit" in s else "n/a"
        ba = f"{s['balanced_accuracy']:.3f}" + (f" ({c['balanced_accuracy']:.3f})" if c != s else "")
        lines.append(
            f"| {r['lever']} | {r.get('label', 'shipped')} | {ba} | {c['delta']['balanced_accuracy']:+.3f} "
            f"{fmt_iv(c['paired_95']['balanced_accuracy'])} | {c['melanoma_recall']:.3f} | "
            f"{c['delta']['melanoma_recall']:+.3f} {fmt_iv(c['paired_95']['melanoma_recall'])} | "
            f"{c['warning_melanoma']:.3f} / {c['warning_benign']:.3f} | "
            f"{ece} | "
            f"{'yes' if r.get('kept') else ('-' if 'kept' not in r else 'no')} |")
    return head + "\n".join(lines) + "\n"
