"""A member network split at its last feature map: logits, class activation maps and pooled features in one pass.

For networks that end in global average pooling and one linear layer (every shipped architecture, and
InceptionV3 / DenseNet-201 / Inception-ResNet-V2), Grad-CAM's channel weights are the linear layer's weights
divided by the map's area, so Grad-CAM equals the plain class activation map (Zhou et al. 2016) up to a
scale that the normalisation removes. Computing the maps in the forward pass needs no gradients, so the
ONNX graph (and with it the lite edition) gives heat-maps too, for every class at once; the pooled features
feed the scope gate. The study's baseline CNN and VGG16 have non-linear heads: they get logits only here
and Grad-CAM through `lesion_desktop.explain`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

Split = tuple[Callable[[torch.Tensor], torch.Tensor], Any]  # (feature map function, final Linear)


def _mobilenet_v2(model: Any) -> Split:
    return model.features, model.classifier[-1]


def _densenet(model: Any) -> Split:
    return (lambda x: F.relu(model.features(x))), model.classifier


def _inception_v3(model: Any) -> Split:
    if getattr(model, "transform_input", False):
        raise ValueError("inception_v3 with transform_input is not split")
    names = [n for n, _ in model.named_children()]
    body = nn.Sequential(*[getattr(model, n) for n in names[: names.index("Mixed_7c") + 1] if n != "AuxLogits"])
    return body, model.fc


def _timm(model: Any) -> Split:
    pool = getattr(model, "global_pool", None)
    if getattr(pool, "pool_type", "avg") != "avg":
        raise ValueError("only average-pooled timm models are split")
    return model.forward_features, model.get_classifier()


SPLITTERS: dict[str, Callable[[Any], Split]] = {
    "mobilenet_v2": _mobilenet_v2,
    "densenet201": _densenet,
    "inception_v3": _inception_v3,
    "inception_resnet_v2": _timm,
    "efficientnet_lite0": _timm,
    "efficientnet_lite1": _timm,
    "efficientnet_lite2": _timm,
}


def has_cam(architecture: str) -> bool:
    return architecture in SPLITTERS


class CamNet(nn.Module):
    """forward(x) -> (logits (N, K), cams (N, K, h, w), features (N, C)); the logits equal the model's in eval mode."""

    def __init__(self, model: nn.Module, architecture: str) -> None:
        super().__init__()
        if architecture not in SPLITTERS:
            raise ValueError(f"{architecture} has no linear head on pooled features")
        self.model = model
        body, fc = SPLITTERS[architecture](model)
        if not isinstance(fc, nn.Linear):
            raise ValueError(f"{architecture}: the last layer is {type(fc).__name__}, not Linear")
        self._body = body
        self.fc = fc

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fmap = self._body(x)
        features = fmap.mean(dim=(2, 3))
        logits = self.fc(features)
        cams = torch.einsum("kc,nchw->nkhw", self.fc.weight.to(fmap.dtype), fmap)
        return logits, cams, features
