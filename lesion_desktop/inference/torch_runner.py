"""A member run by PyTorch: CUDA with fp16 autocast, or the CPU when a member has no ONNX graph."""

from __future__ import annotations

import numpy as np
import torch

from lesion_desktop.bundle import ModelBundle, load_member
from lesion_desktop.inference.camnet import CamNet, has_cam
from lesion_desktop.inference.runner import RunOutput
from lesion_desktop.manifest import MemberInfo


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
        try:
            dev = torch.device(req)
        except RuntimeError:
            return torch.device("cuda", 0), f"{requested!r} is not a device name: using cuda:0."
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return torch.device("cuda", 0), f"{req} does not exist: using cuda:0."
        return dev, ""
    return torch.device("cpu"), f"Unknown device {requested!r}: using the CPU."


class TorchRunner:
    backend = "torch"

    def __init__(self, info: MemberInfo, device: torch.device, bundle: ModelBundle | None = None) -> None:
        self.info = info
        self.device = device
        self.bundle = bundle if bundle is not None else load_member(info, device)
        self.model = self.bundle.model
        self.gives_cams = has_cam(info.architecture)
        self.net: torch.nn.Module = CamNet(self.model, info.architecture) if has_cam(info.architecture) else self.model
        if device.type == "cpu":
            self.model.to(memory_format=torch.channels_last)

    def run(self, x: np.ndarray) -> RunOutput:
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
            if self.device.type == "cpu":
                t = t.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda"):
                out = self.net(t)
            if isinstance(out, tuple):
                logits, cams, features = (o.float().cpu().numpy() for o in out)
                return RunOutput(logits, cams, features)
            return RunOutput(out.float().cpu().numpy())


def tta_probs(forward: torch.nn.Module, x: torch.Tensor, temperature: float) -> torch.Tensor:
    """Training's evaluation with test-time augmentation: the engine's views and averaging, on a torch batch."""
    from lesion_desktop.inference.runner import calibrated_softmax, tta_views

    arr = x.detach().float().cpu().numpy()
    n = arr.shape[0]
    total: np.ndarray | None = None
    count = 0
    for view in tta_views(arr):
        with torch.no_grad():
            logits = forward(torch.from_numpy(view).to(x.device))
        if isinstance(logits, tuple):
            logits = logits[0]
        p = calibrated_softmax(logits.float().cpu().numpy(), temperature).reshape(-1, n, logits.shape[1])
        total = p.sum(0) if total is None else total + p.sum(0)
        count += p.shape[0]
    assert total is not None
    return torch.from_numpy((total / count).astype(np.float32))
