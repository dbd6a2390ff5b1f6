"""The ensemble engine: load once, then classify images on CUDA (fp16 autocast) or the CPU.

Safe to call from a worker thread while the GUI thread runs: inference is serialised by a lock
and touches no Qt object.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from lesion_desktop.bundle import Ensemble, load_ensemble
from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.prediction import Prediction
from lesion_desktop.preprocess import PreprocessConfig, normalise_batch, prepare_for_members


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


def tta_views(x: torch.Tensor) -> list[torch.Tensor]:
    """Flips and 90-degree rotations (lesions have no up); rotated views are batched separately."""
    return [
        torch.cat([x, x.flip(3), x.flip(2), x.flip(2).flip(3)]),
        torch.cat([x.rot90(1, (2, 3)), x.rot90(3, (2, 3))]),
    ]


def tta_probs(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, temperature: float) -> torch.Tensor:
    """Calibrated softmax averaged over the six views of `x` (N, 3, H, W) -> (N, classes) on the CPU.

    The engine and the training module's evaluation both use this, so validation figures with TTA are
    the figures the app gives with TTA switched on.
    """
    n = x.shape[0]
    acc = torch.zeros(n, len(CLASS_CODES))
    count = 0
    for view in tta_views(x):
        logits = forward(view).float().cpu()
        p = torch.softmax(logits / temperature, dim=1).view(-1, n, len(CLASS_CODES))
        acc += p.sum(0)
        count += p.shape[0]
    return acc / count


class EnsembleEngine:
    def __init__(self, models_dir: Path | str, device: str = "auto", tta: bool = False,
                 backend: str = "auto") -> None:
        """`backend`: "torch", "onnx" (ONNX Runtime, CPU only, optional extra) or "auto" (ONNX when installed)."""
        from lesion_desktop.onnx_backend import select_backend

        self.device, self.device_note = resolve_device(device)
        self.tta = tta
        self._lock = threading.Lock()
        self.ensemble: Ensemble = load_ensemble(Path(models_dir), self.device)
        self.backend, self._forwards, note = select_backend(self.ensemble, self.device, backend)
        self.device_note = " ".join(n for n in (self.device_note, note) if n)
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
        """Make the first real image as fast as the next ones, then keep the cyclic GC off the loaded objects.

        gc.freeze(): a full collection over a loaded app's ~400k long-lived objects (modules, models,
        widgets) holds the GIL ~170 ms in whichever thread triggers it, stalling the GUI thread
        (benchmarks/bench_gui_stall.py); frozen objects are still freed by reference counting.
        """
        self.predict([np.zeros((150, 200, 3), np.uint8)])
        gc.freeze()

    def _member_probs(self, member_idx: int, batch: np.ndarray, cfg: PreprocessConfig) -> torch.Tensor:
        m = self.ensemble.members[member_idx]
        forward = self._forwards[member_idx] if self._forwards else m.model
        x = normalise_batch(batch, cfg).to(self.device)
        if self.device.type == "cpu" and not self._forwards:
            x = x.contiguous(memory_format=torch.channels_last)
        use_amp = self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=use_amp):
            if not self.tta:
                logits = forward(x).float()
                return torch.softmax(logits / m.temperature, dim=1).cpu()
            return tta_probs(forward, x, m.temperature)

    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Raw RGB uint8 images of any size -> one Prediction each."""
        if not images:
            return []
        with self._lock, torch.inference_mode():
            t0 = time.perf_counter()
            prepared = prepare_for_members(images, [m.preprocess for m in self.ensemble.members])
            member_probs = [self._member_probs(i, prepared[i], m.preprocess)
                            for i, m in enumerate(self.ensemble.members)]
            w = torch.tensor(self.ensemble.weights).view(-1, 1, 1)
            combined = (torch.stack(member_probs) * w).sum(0)
            combined = combined / combined.sum(1, keepdim=True)
            seconds = (time.perf_counter() - t0) / len(images)
        first = prepared[0]  # the first member's network input
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
