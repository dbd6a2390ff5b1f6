"""What the ensemble says about one image; shared by the PyTorch and the ONNX Runtime engines (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lesion_desktop.classes import CLASS_CODES, CLASSES, MALIGNANT_INDICES


class ClassProbabilities:
    """What follows from seven class probabilities; for a live Prediction and a stored Record alike."""

    probabilities: np.ndarray  # (7,) in CLASS_CODES order, sum 1

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


@dataclass
class Prediction(ClassProbabilities):
    probabilities: np.ndarray  # (7,) ensemble probabilities, sum 1
    member_probabilities: dict[str, np.ndarray]
    seconds: float
    preprocessed: np.ndarray | None = field(default=None, repr=False)  # first member's network input (uint8)
    features: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # member -> pooled features (C,)
    cams: np.ndarray | None = field(default=None, repr=False)  # (K, H, W) per-class heat-maps in [0, 1], or None

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
