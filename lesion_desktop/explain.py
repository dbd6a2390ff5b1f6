"""Grad-CAM for members whose head is not one linear layer (the study's baseline CNN, VGG16), and the overlay.

Every shipped architecture gets its heat-map from the class activation maps that its forward pass (and
its ONNX graph) computes (`inference.camnet`); for those, Grad-CAM gives the same map.

Each member's activations at its registry `gradcam_layer` are captured by a forward hook; the gradient
of the class logit with respect to them comes from `torch.autograd.grad` (not a backward hook, which
breaks on the in-place ReLUs of torchvision models and would accumulate parameter gradients). Member
maps are normalised, resized to the first member's input size (the size of `Prediction.preprocessed`)
and averaged with the ensemble weights.

Thread safety: `Engine.heatmap` calls it under the engine's lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from lesion_desktop.errors import LesionError
from lesion_desktop.preprocess import normalise_batch, prepare_image
from lesion_desktop.registry import get_spec

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lesion_desktop.bundle import ModelBundle


class _Capture:
    """Forward hook that keeps the layer's output and hands a copy downstream.

    DenseNet applies `relu(inplace=True)` to norm5's output; differentiating against a tensor that was
    modified in place fails, so the rest of the network gets a clone and the original stays intact.
    """

    def __init__(self) -> None:
        self.activation: torch.Tensor | None = None

    def __call__(self, module: torch.nn.Module, inputs: Any, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise LesionError(f"Grad-CAM layer {type(module).__name__} does not output a single tensor.")
        self.activation = output
        return output.clone()


def _forward(member: ModelBundle, rgb: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (1, 7) with their graph, and the hooked layer's activation (1, C, h, w)."""
    layer = get_spec(member.architecture).gradcam_layer
    modules = dict(member.model.named_modules())
    if layer not in modules:
        raise LesionError(f"Grad-CAM: {member.architecture} has no layer named {layer!r}.")
    capture = _Capture()
    handle = modules[layer].register_forward_hook(capture)
    try:
        x = normalise_batch(prepare_image(rgb, member.preprocess)[None], member.preprocess).to(device)
        x.requires_grad_(True)  # a graph exists even if someone froze the parameters
        logits = member.model(x).float()
    finally:
        handle.remove()
    if capture.activation is None or capture.activation.ndim != 4:
        raise LesionError(f"Grad-CAM: layer {layer!r} of {member.architecture} gave no spatial activation.")
    return logits, capture.activation


def _cam(logits: torch.Tensor, activation: torch.Tensor, class_index: int, size: tuple[int, int]) -> np.ndarray:
    (grad,) = torch.autograd.grad(logits[0, class_index], activation)
    weights = grad[0].mean(dim=(1, 2))
    cam = torch.relu((weights[:, None, None] * activation[0].detach()).sum(0)).float().cpu().numpy()
    cam = cv2.resize(cam, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    top = float(cam.max())
    return cam / top if top > 0 else np.zeros(size, np.float32)


def grad_cam(members: Sequence[ModelBundle], weights: Sequence[float], rgb: np.ndarray,
             class_index: int | None = None, device: torch.device | str = "cpu") -> np.ndarray:
    """HxW float32 map in [0, 1] at the first member's input size, for `class_index` (default: ensemble top)."""
    size = members[0].preprocess.input_size
    dev = torch.device(device)
    with torch.inference_mode(False), torch.enable_grad():
        passes = [_forward(m, rgb, dev) for m in members]
        if class_index is None:
            probs = sum(w * torch.softmax(lg.detach() / m.temperature, dim=1)
                        for w, (lg, _), m in zip(weights, passes, members, strict=True))
            class_index = int(torch.as_tensor(probs).argmax())
        total = np.zeros(size, np.float32)
        for w, (logits, act) in zip(weights, passes, strict=True):
            total += w * _cam(logits, act, class_index, size)
    top = float(total.max())
    return (total / top if top > 0 else total).astype(np.float32)
