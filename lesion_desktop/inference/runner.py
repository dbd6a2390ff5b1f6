"""The runner protocol: one member's network, on whatever runs it (PyTorch or ONNX Runtime).

A runner knows its member's validated manifest (preprocessing, temperature) and turns a normalised NCHW
float32 batch into logits and, where the architecture allows, class activation maps and pooled features.
Everything around it (preparing, normalising, temperature, averaging) is `inference.ensemble`'s, once.
No torch here: the lite edition imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lesion_desktop.manifest import MemberInfo


@dataclass
class RunOutput:
    logits: np.ndarray  # (N, K) float32
    cams: np.ndarray | None = None  # (N, K, h, w) float32 class activation maps, None where not available
    features: np.ndarray | None = None  # (N, C) float32 pooled penultimate features


class Runner(Protocol):
    info: MemberInfo
    backend: str  # "torch" or "onnxruntime"
    gives_cams: bool  # run() returns class activation maps

    def run(self, x: np.ndarray) -> RunOutput:
        """x: (N, 3, H, W) float32, normalised as the member's manifest says."""
        ...


def normalise_batch_np(batch_uint8: np.ndarray, mean: tuple[float, float, float],
                       std: tuple[float, float, float]) -> np.ndarray:
    """NHWC uint8 -> NCHW float32 normalised: the one normalisation, for both runners and training's evaluation."""
    x = np.asarray(batch_uint8)
    if x.ndim == 3:
        x = x[None]
    t = x.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    m = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((t - m) / s, dtype=np.float32)


def calibrated_softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) in float64, row-wise (the temperature fitted on validation at training time)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def tta_views(x: np.ndarray) -> list[np.ndarray]:
    """Flips and 90-degree rotations of an NCHW batch (lesions have no up); rotated views are batched apart."""
    return [
        np.ascontiguousarray(np.concatenate([x, x[:, :, :, ::-1], x[:, :, ::-1, :], x[:, :, ::-1, ::-1]])),
        np.ascontiguousarray(np.concatenate([np.rot90(x, 1, (2, 3)), np.rot90(x, 3, (2, 3))])),
    ]


def weighted_mean(probs: list[np.ndarray], weights: list[float] | np.ndarray) -> np.ndarray:
    """The ensemble's probabilities: members' calibrated probabilities averaged with their weights, rows sum 1."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    p = sum(wi * np.asarray(pi, dtype=np.float64) for wi, pi in zip(w, probs, strict=True))
    p = np.asarray(p)
    return p / p.sum(axis=1, keepdims=True)
