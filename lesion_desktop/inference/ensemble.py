"""The one predict: prepare, normalise, run each member, softmax over its temperature, weighted mean.

Whatever runs the members (ONNX Runtime on a CPU and in the lite edition, PyTorch on CUDA or for members
without a graph), this is the code that turns images into a `Prediction`; training's ensemble evaluation
combines members with the same `weighted_mean` and `calibrated_softmax`. Safe to call from a worker
thread while the GUI thread runs: a lock serialises inference, and nothing here touches Qt.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Sequence

import cv2
import numpy as np

from lesion_desktop.imageio import QualityReport
from lesion_desktop.inference.runner import (
    Runner,
    RunOutput,
    calibrated_softmax,
    normalise_batch_np,
    tta_views,
    weighted_mean,
)
from lesion_desktop.manifest import EnsembleInfo
from lesion_desktop.prediction import Prediction
from lesion_desktop.preprocess import prepare_for_members
from lesion_desktop.scope import ImageChecks, ScopeModel, ScopeResult, image_finding, image_stats


def member_probabilities(runner: Runner, batch_uint8: np.ndarray, tta: bool = False) -> tuple[np.ndarray, RunOutput]:
    """One member's calibrated probabilities (N, K) for prepared uint8 inputs, and its plain view's outputs."""
    pre = runner.info.preprocess
    x = normalise_batch_np(batch_uint8, pre.mean, pre.std)
    out = runner.run(x)
    probs = calibrated_softmax(out.logits, runner.info.temperature)
    if tta:
        n = x.shape[0]
        views = tta_views(x)
        total = np.zeros_like(probs)
        count = 0
        for view in views:
            p = calibrated_softmax(runner.run(view).logits, runner.info.temperature).reshape(-1, n, probs.shape[1])
            total += p.sum(0)
            count += p.shape[0]
        probs = total / count
    return probs, out


def _normalised(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One class's activation map: negative evidence dropped, resized to (h, w), scaled to [0, 1]."""
    m = cv2.resize(np.maximum(cam.astype(np.float32), 0.0), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    top = float(m.max())
    return m / top if top > 0 else np.zeros(size, np.float32)


def combine_cams(cams: list[np.ndarray], weights: Sequence[float], size: tuple[int, int]) -> np.ndarray:
    """Members' maps (K, h_i, w_i) -> (K, H, W) in [0, 1]: each normalised, then averaged with the member weights."""
    k = cams[0].shape[0]
    out = np.zeros((k, *size), np.float32)
    for w, cam in zip(weights, cams, strict=True):
        for c in range(k):
            out[c] += float(w) * _normalised(cam[c], size)
    for c in range(k):
        top = float(out[c].max())
        if top > 0:
            out[c] /= top
    return out


class Engine:
    """An ensemble ready to classify: validated manifests, one runner per member, the averaging weights."""

    def __init__(self, info: EnsembleInfo, runners: list[Runner], *, device: str = "cpu", tta: bool = False,
                 device_note: str = "", scope: ScopeModel | None = None) -> None:
        self.ensemble = info
        self.runners = runners
        self.scope = scope  # the scope gate fitted for these models, when they have one
        self.device = device
        self.tta = tta
        self.device_note = device_note
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return self.ensemble.version

    @property
    def members(self) -> list[str]:
        return [m.name for m in self.ensemble.members]

    @property
    def backend(self) -> str:
        kinds = sorted({r.backend for r in self.runners})
        return kinds[0] if len(kinds) == 1 else "+".join(kinds)

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]

    @property
    def explains(self) -> bool:
        """Heat-maps come from the graphs' class activation maps, or from Grad-CAM where PyTorch runs the member."""
        return all(r.gives_cams or r.backend == "torch" for r in self.runners)

    def warm_up(self) -> None:
        """Make the first real image as fast as the next ones, then keep the cyclic GC off the loaded objects.

        gc.freeze(): a full collection over a loaded app's ~400k long-lived objects (modules, models,
        widgets) holds the GIL ~170 ms in whichever thread triggers it, stalling the GUI thread
        (benchmarks/bench_gui_stall.py); frozen objects are still freed by reference counting.
        """
        self.predict([np.zeros((150, 200, 3), np.uint8)])
        gc.freeze()

    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Raw RGB uint8 images of any size -> one Prediction each."""
        if not images:
            return []
        with self._lock:
            t0 = time.perf_counter()
            prepared = prepare_for_members(images, [m.preprocess for m in self.ensemble.members])
            results = [member_probabilities(r, batch, self.tta)
                       for r, batch in zip(self.runners, prepared, strict=True)]
            combined = weighted_mean([p for p, _ in results], self.ensemble.weights)
            size = self.ensemble.members[0].preprocess.input_size
            have_cams = all(out.cams is not None for _, out in results)
            seconds = (time.perf_counter() - t0) / len(images)
        names = self.members
        preds = []
        for k in range(len(images)):
            cams = (combine_cams([out.cams[k] for _, out in results if out.cams is not None],
                                 self.ensemble.weights, size) if have_cams else None)
            preds.append(Prediction(
                probabilities=combined[k],
                member_probabilities={names[i]: results[i][0][k] for i in range(len(names))},
                seconds=seconds,
                preprocessed=prepared[0][k],
                features={names[i]: out.features[k] for i, (_, out) in enumerate(results)
                          if out.features is not None},
                cams=cams,
            ))
        return preds

    def predict_one(self, image: np.ndarray) -> Prediction:
        return self.predict([image])[0]

    def check_scope(self, image: np.ndarray, prediction: Prediction,
                    quality: QualityReport | None = None) -> ScopeResult:
        """Is `image` a dermoscopy image of a skin lesion like those the models learnt from?

        With the models' own scope model: their features' distance and the image checks. Models without one
        (retrained, until a scope model is fitted for them) get the image checks alone, and the result says so.
        """
        if self.scope is not None:
            return self.scope.check(prediction.features, image, quality)  # quality: computed there if None
        from lesion_desktop.scope import reason_for

        finding = image_finding(image_stats(image), ImageChecks())
        reason = reason_for(finding) if finding else ""
        return ScopeResult(not finding, float("nan"), float("nan"), reason, finding)

    def heatmap(self, image: np.ndarray, prediction: Prediction, class_index: int | None = None) -> np.ndarray | None:
        """(H, W) map in [0, 1] at the first member's input size for `class_index` (default: the top class).

        From the prediction's class activation maps when every member gave them; Grad-CAM through PyTorch for
        members whose head is not linear (the study's baseline CNN, VGG16); None when neither is possible
        (such a member in the lite edition).
        """
        c = prediction.top_index if class_index is None else int(class_index)
        if prediction.cams is not None:
            return prediction.cams[c]
        if not all(r.backend == "torch" for r in self.runners):
            return None
        from lesion_desktop.explain import grad_cam

        with self._lock:
            return grad_cam([r.bundle for r in self.runners], self.ensemble.weights, image, c,  # type: ignore[attr-defined]
                            self.runners[0].device)  # type: ignore[attr-defined]
