"""A cache of each member's logits and pooled features, per split and per test-time view.

Why: heads, a logit adjustment, ensemble weights, TTA views and test sizes can then be compared in seconds
instead of a scoring run over thousands of images. A member is run through its own ONNX graph on the app's
own preprocessing (`preprocess.to_effective` / `to_input`, `runner.normalise_batch_np`), so a cached plain
view is what the app computes for that image.

A cache entry is keyed by the bytes of the member's weights *and* graph (their sha256, computed, not read
from the manifest) and its preprocessing, and stores the image ids it covers: weights that change, or another
image set, miss the cache and are scored again; a stale entry is never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lesion_desktop.inference.runner import Runner, calibrated_softmax, normalise_batch_np, weighted_mean
from lesion_desktop.manifest import MemberInfo, sha256_file
from lesion_desktop.preprocess import PreprocessConfig, scale_channels, shades_of_gray, to_input

CACHE_VERSION = 1
CACHE_ENV = "LESION_DESKTOP_FEATCACHE"


def default_cache_root() -> Path:
    """Outside the checkout: `LESION_DESKTOP_FEATCACHE`, else the user's cache folder."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    return Path.home() / ".cache" / "lesion-desktop" / "featcache"


@dataclass(frozen=True)
class View:
    """One way of showing an image to a member at test time."""

    name: str
    scale: float = 1.0  # input size x scale (FixRes: test larger than trained)
    flip: str = ""  # "h", "v" or "hv", applied to the normalised NCHW input as inference.runner.tta_views does
    quarter_turns: int = 0  # np.rot90 over (H, W)
    color_constancy: bool = False  # Shades of Gray on the effective-size image, before the resize
    cast: float = 0.0  # a simulated camera colour cast (`colour_cast`) before everything else; 0: none

    def input_size(self, cfg: PreprocessConfig) -> tuple[int, int]:
        h, w = cfg.input_size
        return (int(round(h * self.scale)), int(round(w * self.scale)))

    def orient(self, x: np.ndarray) -> np.ndarray:
        """Flip / rotate a normalised NCHW batch."""
        if "h" in self.flip:
            x = x[:, :, :, ::-1]
        if "v" in self.flip:
            x = x[:, :, ::-1, :]
        if self.quarter_turns:
            x = np.rot90(x, self.quarter_turns, (2, 3))
        return np.ascontiguousarray(x)


VIEWS: dict[str, View] = {v.name: v for v in (
    View("plain"),
    View("hflip", flip="h"),
    View("vflip", flip="v"),
    View("hvflip", flip="hv"),
    View("rot90", quarter_turns=1),
    View("rot270", quarter_turns=3),
    View("fix1.15", scale=1.15),
    View("fix1.30", scale=1.30),
    View("fix1.15-hflip", scale=1.15, flip="h"),
    View("sog", color_constancy=True),
    View("cast20", cast=0.2),
)}
CAST_SEED = 20260


def colour_cast(rgb: np.ndarray, index: int, strength: float, seed: int = CAST_SEED) -> np.ndarray:
    """Another camera's colour balance, simulated: each channel of an effective-size image scaled by exp(u), u
    drawn uniformly from [-strength, strength] per channel and per image (from `seed` and the image's `index`,
    so every member sees the same cast on the same image)."""
    rng = np.random.default_rng([seed, index])
    return scale_channels(rgb, np.exp(rng.uniform(-strength, strength, 3)))

# the app's six test-time views (inference.runner.tta_views), in its order
APP_TTA = ("plain", "hflip", "vflip", "hvflip", "rot90", "rot270")


def member_key(info: MemberInfo, graph: Path) -> str:
    """sha256 over the weights' bytes, the graph's bytes and the preprocessing: any change gives another key."""
    h = hashlib.sha256()
    h.update(f"featcache-v{CACHE_VERSION}\n".encode())
    h.update(sha256_file(info.weights_path).encode())
    h.update(sha256_file(graph).encode())
    h.update(json.dumps(info.preprocess.to_dict(), sort_keys=True).encode())
    return h.hexdigest()


def ids_digest(image_ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(image_ids).encode()).hexdigest()[:16]


def entry_path(root: Path, key: str, split: str, view: str, image_ids: Sequence[str]) -> Path:
    return Path(root) / key[:24] / f"{split}-{view}-{ids_digest(image_ids)}.npz"


@dataclass
class Entry:
    logits: np.ndarray  # (N, K) float32, before temperature
    features: np.ndarray  # (N, C) float32 pooled penultimate features
    image_ids: list[str]
    seconds: float  # how long scoring took when it was computed (also when read back from the cache)
    cached: bool = False  # read from the cache rather than computed now


def run_view(runner: Runner, effective: np.ndarray, view: View, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Logits and features of effective-size uint8 images (N, h, w, 3) seen through `view`."""
    cfg = runner.info.preprocess
    sized = replace(cfg, input_size=view.input_size(cfg))
    logits, feats = [], []
    for i in range(0, len(effective), batch):
        chunk = [np.asarray(im) for im in effective[i : i + batch]]
        if view.cast:
            chunk = [colour_cast(im, i + j, view.cast) for j, im in enumerate(chunk)]
        if view.color_constancy:
            chunk = [shades_of_gray(im) for im in chunk]
        x = normalise_batch_np(np.stack([to_input(im, sized) for im in chunk]), cfg.mean, cfg.std)
        out = runner.run(view.orient(x))
        if out.features is None:
            raise ValueError(f"{runner.info.path}: the graph gives no pooled features; export it again")
        logits.append(np.asarray(out.logits, np.float32))
        feats.append(np.asarray(out.features, np.float32))
    return np.concatenate(logits), np.concatenate(feats)


def load_or_compute(root: Path, key: str, split: str, view: str, image_ids: Sequence[str],
                    compute: Callable[[], tuple[np.ndarray, np.ndarray]]) -> Entry:
    """The cached entry for (key, split, view, image ids), or `compute()` stored atomically under that name."""
    path = entry_path(root, key, split, view, image_ids)
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == key and [str(s) for s in z["image_ids"]] == list(image_ids):
                return Entry(z["logits"], z["features"], list(image_ids), float(z["seconds"]), cached=True)
    t0 = time.perf_counter()
    logits, features = compute()
    seconds = time.perf_counter() - t0
    if len(logits) != len(image_ids) or len(features) != len(image_ids):
        raise ValueError(f"scored {len(logits)} images for {len(image_ids)} ids")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.part-{os.getpid()}.npz")
    np.savez(tmp, logits=logits.astype(np.float32), features=features.astype(np.float32),
             image_ids=np.asarray(list(image_ids)), key=np.asarray(key), view=np.asarray(view),
             seconds=np.asarray(seconds))
    os.replace(tmp, path)
    return Entry(logits, features, list(image_ids), seconds)


def view_probs(logits_by_view: Sequence[np.ndarray], temperature: float) -> np.ndarray:
    """A member's probabilities averaged over views, each softmaxed over its temperature (the app's TTA)."""
    return weighted_mean([calibrated_softmax(z, temperature) for z in logits_by_view],
                         np.ones(len(logits_by_view)))
