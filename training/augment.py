"""Training augmentation: the geometric and photometric changes a clinic's images bring.

Covers flips and rotations (lesions have no up), scale and crop, colour shifts between devices,
blur and sharpness of other optics, and JPEG compression of other cameras. Built on torchvision's v2
transforms, applied per image to PIL images: the same policy runs 3-4x faster there than on uint8 tensors
(hue, rotation and blur above all; benchmarks/bench_training.py). The trainer runs it in DataLoader
workers (training.loader), each image with its own seed, so the step does not wait on it.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from lesion_desktop.preprocess import scale_channels


class ChannelGains:
    """Another camera's white balance: each colour channel scaled by exp(u), u uniform in [-strength, strength]
    per channel, drawn from torch's generator (so `augment_image`'s seed fixes it). ColorJitter changes
    brightness for all channels alike and turns the hue; it does not tilt the balance between the channels."""

    def __init__(self, strength: float) -> None:
        self.strength = float(strength)

    def __call__(self, img: Image.Image) -> Image.Image:
        u = (torch.rand(3, dtype=torch.float64) * 2 - 1) * self.strength
        return Image.fromarray(scale_channels(np.asarray(img), np.exp(u.numpy())))

    def __repr__(self) -> str:
        return f"ChannelGains(strength={self.strength})"


def training_transform(input_size: tuple[int, int], channel_gain: float = 0.0) -> v2.Compose:
    """The policy; `channel_gain` > 0 adds `ChannelGains(channel_gain)` after the colour jitter (0 leaves the
    policy, and so every seed's draws, exactly as before)."""
    h, w = input_size
    aspect = w / h
    gains = [ChannelGains(channel_gain)] if channel_gain > 0 else []
    return v2.Compose([
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        v2.RandomApply([v2.RandomRotation(30)], p=0.3),
        v2.RandomResizedCrop((h, w), scale=(0.55, 1.0), ratio=(aspect * 0.85, aspect / 0.85), antialias=True),
        v2.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.2, hue=0.03),
        *gains,
        v2.RandomApply([v2.GaussianBlur(5, sigma=(0.2, 1.5))], p=0.2),
        v2.RandomAdjustSharpness(2.0, p=0.15),
        v2.RandomApply([v2.JPEG((35, 95))], p=0.3),
    ])


def augment_image(image: np.ndarray, transform: v2.Compose, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) uint8, the random draw fixed by `seed` whatever process runs it.

    The caller's torch random state is left as it was (with no workers this runs on the training thread).
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU stream the transforms draw from (not CUDA's: 100x dearer)
        return np.array(transform(Image.fromarray(image)))


def augment_batch(images: torch.Tensor, transform: v2.Compose) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, H, W, 3) uint8, each image with its own random draw."""
    out = [np.asarray(transform(Image.fromarray(img))) for img in images.numpy()]
    return torch.from_numpy(np.stack(out))
