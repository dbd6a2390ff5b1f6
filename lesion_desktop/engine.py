"""The ensemble engine: load once, then classify images on CUDA (fp16 autocast) or the CPU.

Safe to call from a worker thread while the GUI thread runs: inference is serialised by a lock
and touches no Qt object.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lesion_desktop.bundle import Ensemble, load_ensemble
from lesion_desktop.classes import CLASS_CODES, CLASSES, MALIGNANT_INDICES
from lesion_desktop.preprocess import PreprocessConfig, normalise_batch, prepare_image


@dataclass
class Prediction:
    probabilities: np.ndarray  # (7,) ensemble probabilities, sum 1
    member_probabilities: dict[str, np.ndarray]
    seconds: float
    preprocessed: np.ndarray | None = field(default=None, repr=False)  # first member's network input (uint8)

    @property
    def top_index(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def top_code(self) -> str:
        return CLASS_CODES[self.top_index]

    @property
    def top_name(self) -> str:
        return CLASSES[self.top_index].name

    @property
    def malignant_probability(self) -> float:
        """Combined probability of mel, bcc and akiec: what a benign top label must never hide."""
        return float(self.probabilities[list(MALIGNANT_INDICES)].sum())

    @property
    def member_agreement(self) -> float:
        """Fraction of members whose top class is the ensemble's top class."""
        if not self.member_probabilities:
            return 1.0
        tops = [int(np.argmax(p)) for p in self.member_probabilities.values()]
        return sum(t == self.top_index for t in tops) / len(tops)

    @property
    def member_spread(self) -> float:
        """Largest difference between members' probabilities for the top class (0 = full agreement)."""
        vals = [float(p[self.top_index]) for p in self.member_probabilities.values()]
        return max(vals) - min(vals) if vals else 0.0

    def as_dict(self) -> dict[str, float]:
        return {c: float(p) for c, p in zip(CLASS_CODES, self.probabilities, strict=True)}


def resolve_device(requested: str = "auto") -> tuple[torch.device, str]:
    """The device to use and a note for the user when the request could not be honoured."""
    req = (requested or "auto").lower()
    if req == "cpu":
        return torch.device("cpu"), ""
    if req == "auto":
        return (torch.device("cuda"), "") if torch.cuda.is_available() else (torch.device("cpu"), "")
    if req.startswith("cuda"):
        if not torch.cuda.is_available():
            return torch.device("cpu"), "CUDA was requested but no CUDA device is available: using the CPU."
        dev = torch.device(req)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return torch.device("cuda", 0), f"{req} does not exist: using cuda:0."
        return dev, ""
    return torch.device("cpu"), f"Unknown device {requested!r}: using the CPU."


def _tta_views(x: torch.Tensor) -> list[torch.Tensor]:
    """Flips and 90-degree rotations (lesions have no up); rotated views are batched separately."""
    return [
        torch.cat([x, x.flip(3), x.flip(2), x.flip(2).flip(3)]),
        torch.cat([x.rot90(1, (2, 3)), x.rot90(3, (2, 3))]),
    ]


class EnsembleEngine:
    def __init__(self, models_dir: Path | str, device: str = "auto", tta: bool = False) -> None:
        self.device, self.device_note = resolve_device(device)
        self.tta = tta
        self._lock = threading.Lock()
        self.ensemble: Ensemble = load_ensemble(Path(models_dir), self.device)
        if self.device.type == "cpu":
            for m in self.ensemble.members:
                m.model.to(memory_format=torch.channels_last)

    @property
    def version(self) -> str:
        return self.ensemble.version

    @property
    def members(self) -> list[str]:
        return [m.name for m in self.ensemble.members]

    def warm_up(self) -> None:
        self.predict([np.zeros((150, 200, 3), np.uint8)])

    def _member_probs(self, member_idx: int, batch: np.ndarray, cfg: PreprocessConfig) -> torch.Tensor:
        m = self.ensemble.members[member_idx]
        x = normalise_batch(batch, cfg).to(self.device)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        n = x.shape[0]
        use_amp = self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=use_amp):
            if not self.tta:
                logits = m.model(x).float()
                return torch.softmax(logits / m.temperature, dim=1).cpu()
            acc = torch.zeros(n, len(CLASS_CODES))
            count = 0
            for view in _tta_views(x):
                logits = m.model(view).float().cpu()
                p = torch.softmax(logits / m.temperature, dim=1).view(-1, n, len(CLASS_CODES))
                acc += p.sum(0)
                count += p.shape[0]
            return acc / count

    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Raw RGB uint8 images of any size -> one Prediction each."""
        if not images:
            return []
        with self._lock, torch.inference_mode():
            t0 = time.perf_counter()
            prepared: dict[PreprocessConfig, np.ndarray] = {}
            member_probs: list[torch.Tensor] = []
            for i, m in enumerate(self.ensemble.members):
                if m.preprocess not in prepared:
                    prepared[m.preprocess] = np.stack([prepare_image(img, m.preprocess) for img in images])
                member_probs.append(self._member_probs(i, prepared[m.preprocess], m.preprocess))
            w = torch.tensor(self.ensemble.weights).view(-1, 1, 1)
            combined = (torch.stack(member_probs) * w).sum(0)
            combined = combined / combined.sum(1, keepdim=True)
            seconds = (time.perf_counter() - t0) / len(images)
        first = prepared[self.ensemble.members[0].preprocess]
        names = self.members
        return [
            Prediction(
                probabilities=combined[k].numpy().astype(np.float64),
                member_probabilities={names[i]: member_probs[i][k].numpy().astype(np.float64)
                                      for i in range(len(names))},
                seconds=seconds,
                preprocessed=first[k],
            )
            for k in range(len(images))
        ]

    def predict_one(self, image: np.ndarray) -> Prediction:
        return self.predict([image])[0]
