"""Cheap levers on a trained ensemble, tried from the feature cache (`training.featcache`) in seconds.

`python -m training.levers extract`  scores the members on a split through the chosen views into the cache;
`python -m training.levers ablate`   compares each lever with the shipped ensemble on validation only;
`python -m training.levers final`    scores one chosen configuration on the test split (once, at the end).

The split is the default's own: `lesion_grouped_split(seed=0)` of the data, checked against the training image
ids its manifest records, so no candidate is ever scored on an image the members were trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from lesion_desktop.classes import NUM_CLASSES
from lesion_desktop.errors import DatasetError
from lesion_desktop.manifest import EnsembleInfo, onnx_graph, validate_ensemble
from training.featcache import VIEWS, default_cache_root, load_or_compute, member_key, run_view
from training.splits import lesion_grouped_split

SPLIT_SEED = 0
# as `python -m training split` computes them (its --train 0.7 --val 0.15): the float sum decides ties, and
# (0.7, 0.15, 0.15) deals 768 images differently
SPLIT_FRACTIONS = (0.7, 0.15, 1 - 0.7 - 0.15)


@dataclass
class SplitData:
    image_ids: list[str]
    labels: np.ndarray  # (N,) int64
    lesions: np.ndarray  # (N,) lesion id of each image, for lesion-resampled intervals and folds


@dataclass
class MemberData:
    name: str
    temperature: float
    weight: float
    logits: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (split, view) -> (N, K)
    features: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (split, view) -> (N, C)
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)  # scoring time when it was computed


@dataclass
class CacheSet:
    """Everything the levers need: each split's labels and each member's cached outputs."""

    splits: dict[str, SplitData]
    members: list[MemberData]
    prior: np.ndarray  # class frequencies of the training split

    @property
    def weights(self) -> list[float]:
        return [m.weight for m in self.members]


def default_split(data: str | Path, info: EnsembleInfo) -> tuple[dict[str, SplitData], Any]:
    """The ensemble's own split, regenerated and checked against the training ids its manifest records."""
    from training.data import read_dataset

    ds = read_dataset(data)
    split = lesion_grouped_split(ds.records, seed=SPLIT_SEED, fractions=SPLIT_FRACTIONS)
    trained = info.manifest.get("training", {}).get("trained_image_ids")
    if trained is not None and sorted(trained) != sorted(split["train"]):
        raise DatasetError(f"lesion_grouped_split(seed={SPLIT_SEED}) of {data} is not the split {info.path} was "
                           "trained on (its manifest's training.trained_image_ids differ)")
    by_id = {r.image_id: r for r in ds.records}
    out = {}
    for name, ids in split.items():
        rs = [by_id[i] for i in ids]
        out[name] = SplitData(list(ids), np.array([r.label for r in rs], np.int64),
                              np.array([r.lesion_id for r in rs]))
    return out, ds


def _effective_images(ds: Any, info: EnsembleInfo, ids: list[str]) -> np.ndarray:
    """The first preprocessing stage (effective size) of `ids`, decoded once into the image cache."""
    from training.data import build_cache, default_cache_dir
    from training.splits import indices_for

    cfg = info.members[0].preprocess
    if any(m.preprocess.effective_size != cfg.effective_size for m in info.members):
        raise ValueError("members with different effective sizes are not supported here")
    stage = replace(cfg, input_size=cfg.effective_size)
    cache = build_cache(ds, stage, default_cache_dir())
    idx = indices_for(cache.records, ids)
    if len(idx) != len(ids):
        raise DatasetError(f"{len(ids) - len(idx)} images of the split could not be decoded")
    return np.asarray(cache.images[idx])


class _MemberScorer:
    """Scores one member on demand (the graph is opened and the images decoded only on a cache miss)."""

    def __init__(self, member: Any, graph: Path, ds: Any, info: EnsembleInfo, splits: dict[str, SplitData],
                 images: dict[str, np.ndarray], compute: bool) -> None:
        self.member, self.graph, self.ds, self.info, self.splits = member, graph, ds, info, splits
        self.images, self.compute = images, compute
        self.runner: Any = None

    def score(self, split: str, view: str) -> tuple[np.ndarray, np.ndarray]:
        from lesion_desktop.inference.onnx_runner import OnnxRunner

        if not self.compute:
            raise FileNotFoundError(f"{self.member.name} {split}/{view} is not cached: run `extract` first")
        if split not in self.images:
            self.images[split] = _effective_images(self.ds, self.info, self.splits[split].image_ids)
        self.runner = self.runner or OnnxRunner(self.member, self.graph, None)
        return run_view(self.runner, self.images[split], VIEWS[view])


def load_cache(models_dir: Path, data: str | Path, cache_root: Path, wanted: dict[str, list[str]],
               compute: bool = True, log: Any = None) -> CacheSet:
    """Each member's cached outputs for `wanted` (split -> views); scored now where missing and `compute`."""
    info = validate_ensemble(Path(models_dir))
    splits, ds = default_split(data, info)
    members: list[MemberData] = []
    images: dict[str, np.ndarray] = {}
    for m, w in zip(info.members, info.weights, strict=True):
        graph = onnx_graph(m)
        assert graph is not None
        key = member_key(m, graph)
        md = MemberData(m.name, m.temperature, w)
        scorer = _MemberScorer(m, graph, ds, info, splits, images, compute)
        for split, views in wanted.items():
            ids = splits[split].image_ids
            for view in views:
                e = load_or_compute(cache_root, key, split, view, ids,
                                    partial(scorer.score, split, view))
                md.logits[(split, view)] = e.logits
                md.features[(split, view)] = e.features
                md.seconds[(split, view)] = e.seconds
                if log is not None:
                    state = "cached" if e.cached else "scored"
                    log(f"{m.name} {split}/{view}: {state}, {len(ids)} images, {e.seconds:.1f} s "
                        f"({1000 * e.seconds / max(len(ids), 1):.1f} ms per image)")
        members.append(md)
    counts = np.bincount(splits["train"].labels, minlength=NUM_CLASSES).astype(np.float64)
    return CacheSet(splits, members, counts / counts.sum())


def _views_arg(text: str) -> list[str]:
    views = [v for v in text.split(",") if v]
    bad = [v for v in views if v not in VIEWS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown views {bad}; known: {', '.join(VIEWS)}")
    return views


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.levers", description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=Path("resources/models/default"))
    p.add_argument("--data", default="../shared/data/ham10000")
    p.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: the user's cache)")
    sub = p.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("extract", help="score the members on a split through views into the cache")
    ex.add_argument("split", choices=("train", "val", "test"))
    ex.add_argument("--views", type=_views_arg, default=list(VIEWS))
    ab = sub.add_parser("ablate", help="each lever against the shipped ensemble, on validation only")
    ab.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    ab.add_argument("--markdown", type=Path, default=None, help="write the table as Markdown here")
    fi = sub.add_parser("final", help="score one configuration (JSON from `ablate`) on the test split")
    fi.add_argument("config", type=Path)
    fi.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    root = args.cache or default_cache_root()
    if args.command == "extract":
        t0 = time.perf_counter()
        load_cache(args.models, args.data, root, {args.split: args.views}, log=print)
        print(f"extract {args.split}: {time.perf_counter() - t0:.1f} s in all")
        return 0
    from training.ablation import final, markdown, run

    if args.command == "ablate":
        report = run(args.models, args.data, root, log=print)
        text = json.dumps(report, indent=1)
        if args.out:
            args.out.write_text(text)
        if args.markdown:
            args.markdown.write_text(markdown(report))
        print(markdown(report))
        return 0
    config = json.loads(args.config.read_text())
    result = final(args.models, args.data, root, config.get("chosen", config), log=print)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "per_class"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

