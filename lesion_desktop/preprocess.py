"""The one preprocessing definition shared by inference and by training's evaluation.

A bundle's manifest records a `PreprocessConfig`; the same config drives the app, the CLI and the
training cache, so there is no train/serve skew.

Every input is first brought to the *effective resolution* of the training copies (HAM10000 at
200x150 px): a 600x450 dermoscopy photo or a 1280x720 webcam frame is centre-cropped to 4:3 and
downsampled with area interpolation, which removes the detail the models never saw in training.
When the training copies were JPEGs of a known quality (HAM10000's are quality 75, found from their
quantisation tables by `training.data.estimate_jpeg_quality`), a downsampled input is also re-encoded at
that quality: the copies lost detail to the resize *and* to the encoder, and a full-size photo brought
down to 200x150 without the second step looks cleaner than anything the models were trained on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import cv2
import numpy as np

PREPROCESS_VERSION = 2  # written when jpeg_quality is set; version 1 (no jpeg_quality) is still read
SUPPORTED_VERSIONS = (1, 2)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    input_size: tuple[int, int] = (150, 200)  # (height, width) fed to the network
    effective_size: tuple[int, int] = (150, 200)  # (height, width) every image is normalised to first
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    color_constancy: bool = False  # Shades of Gray, p = 6
    hair_removal: bool = False  # DullRazor-style black-hat + inpainting
    jpeg_quality: int | None = None  # re-encode downsampled inputs like the training copies; None: never

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.jpeg_quality is None:
            del d["jpeg_quality"]  # readable by software that knows only version 1
        d["version"] = PREPROCESS_VERSION if self.jpeg_quality is not None else 1
        d["color_order"] = "RGB"
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        """Build from a manifest's dict; raises ValueError naming the bad field."""
        if not isinstance(d, dict):
            raise ValueError("preprocessing must be an object")
        if d.get("color_order", "RGB") != "RGB":
            raise ValueError(f"unsupported colour order {d.get('color_order')!r}")
        version = d.get("version", 1)
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(f"preprocessing version {version!r} is not supported by this software")
        quality = d.get("jpeg_quality")
        if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int)
                                    or not 1 <= quality <= 100):
            raise ValueError(f"jpeg_quality must be an integer 1..100 or null, not {quality!r}")

        def pair(key: str, default: tuple[int, int]) -> tuple[int, int]:
            v = d.get(key, default)
            if not (isinstance(v, list | tuple) and len(v) == 2 and all(isinstance(x, int) for x in v)):
                raise ValueError(f"{key} must be two integers")
            if not all(16 <= x <= 2048 for x in v):
                raise ValueError(f"{key} {list(v)} is outside 16..2048 px")
            return (int(v[0]), int(v[1]))

        def triple(key: str, default: tuple[float, float, float]) -> tuple[float, float, float]:
            v = d.get(key, default)
            if not (isinstance(v, list | tuple) and len(v) == 3 and all(isinstance(x, int | float) for x in v)):
                raise ValueError(f"{key} must be three numbers")
            try:
                out = (float(v[0]), float(v[1]), float(v[2]))
            except OverflowError:
                raise ValueError(f"{key} must be three finite numbers") from None
            if not all(math.isfinite(x) for x in out):  # NaN or infinity would turn every prediction into NaN
                raise ValueError(f"{key} must be three finite numbers")
            return out

        std = triple("std", IMAGENET_STD)
        if min(std) <= 0:
            raise ValueError("std must be positive")
        return cls(
            input_size=pair("input_size", (150, 200)),
            effective_size=pair("effective_size", (150, 200)),
            mean=triple("mean", IMAGENET_MEAN),
            std=std,
            color_constancy=bool(d.get("color_constancy", False)),
            hair_removal=bool(d.get("hair_removal", False)),
            jpeg_quality=quality,
        )


def normalise_resolution(rgb: np.ndarray, effective_size: tuple[int, int]) -> np.ndarray:
    """Centre-crop to the target aspect ratio (portrait frames are turned first) and resize."""
    h, w = rgb.shape[:2]
    th, tw = effective_size
    if (h > w) != (th > tw) and h != w:
        rgb = np.ascontiguousarray(np.rot90(rgb))
        h, w = w, h
    target_aspect = tw / th
    if w / h > target_aspect + 1e-3:  # too wide
        nw = int(round(h * target_aspect))
        x0 = (w - nw) // 2
        rgb = rgb[:, x0 : x0 + nw]
    elif w / h < target_aspect - 1e-3:  # too tall
        nh = int(round(w / target_aspect))
        y0 = (h - nh) // 2
        rgb = rgb[y0 : y0 + nh]
    h, w = rgb.shape[:2]
    if (h, w) == (th, tw):
        return np.ascontiguousarray(rgb)
    interp = cv2.INTER_AREA if h >= th else cv2.INTER_LINEAR
    return cv2.resize(rgb, (tw, th), interpolation=interp)


def jpeg_round_trip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as a JPEG of `quality` (libjpeg tables, 4:2:0 chroma), as the training copies were."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:  # cannot happen for a valid uint8 image; never fail a prediction over it
        return rgb
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def scale_channels(rgb: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 image with each channel multiplied by its gain (float32), clipped to 0..255."""
    return np.clip(rgb.astype(np.float32) * np.asarray(gains, np.float32), 0, 255).astype(np.uint8)


def shades_of_gray(rgb: np.ndarray, power: int = 6) -> np.ndarray:
    """Colour constancy: scale channels so the Minkowski p-norm illuminant becomes neutral grey."""
    img = rgb.astype(np.float32)
    illum = np.power(np.mean(np.power(img, power), axis=(0, 1)), 1.0 / power)
    illum = illum / max(float(np.sqrt(np.sum(illum**2))), 1e-6)
    gain = 1.0 / np.maximum(illum * np.sqrt(3.0), 1e-6)
    return scale_channels(img, gain)


def remove_hair(rgb: np.ndarray) -> np.ndarray:
    """DullRazor-style: find thin dark lines with a black-hat filter and inpaint over them."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    size = max(5, int(round(min(rgb.shape[:2]) / 15)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (size, size))
    blackhat = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, kernel)
    _, mask = cv2.threshold(blackhat, 10, 255, cv2.THRESH_BINARY)
    return cv2.inpaint(rgb, mask, 1, cv2.INPAINT_TELEA)


def to_effective(rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """First stage: the effective resolution (and the copies' JPEG quality), then hair removal and colour
    constancy. Members that differ only in input size or normalisation share this stage's output."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {rgb.shape} {rgb.dtype}")
    img = normalise_resolution(rgb, cfg.effective_size)
    if cfg.jpeg_quality is not None and rgb.shape[0] * rgb.shape[1] > img.shape[0] * img.shape[1]:
        img = jpeg_round_trip(img, cfg.jpeg_quality)
    if cfg.hair_removal:
        img = remove_hair(img)
    if cfg.color_constancy:
        img = shades_of_gray(img)
    return img


def to_input(img: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Second stage: resize a `to_effective` image to the network's input size."""
    th, tw = cfg.input_size
    if img.shape[:2] != (th, tw):
        img = cv2.resize(img, (tw, th), interpolation=cv2.INTER_LINEAR)
    return img


def stage_key(cfg: PreprocessConfig) -> PreprocessConfig:
    """The fields that decide `to_effective`'s output (equal keys: the same first-stage image)."""
    return replace(cfg, input_size=cfg.effective_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def prepare_for_members(images: Sequence[np.ndarray], configs: Sequence[PreprocessConfig]) -> list[np.ndarray]:
    """Each config's stacked network inputs (N, H, W, 3) for `images`, as `prepare_image` gives them.

    Work is shared between configs that agree on the pixels: the first stage when they differ only in
    input size or normalisation, the resize too when they differ only in normalisation.
    """
    effective: dict[PreprocessConfig, list[np.ndarray]] = {}
    prepared: dict[PreprocessConfig, np.ndarray] = {}
    out = []
    for cfg in configs:
        stage = stage_key(cfg)
        if stage not in effective:
            effective[stage] = [to_effective(img, cfg) for img in images]
        key = replace(cfg, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        if key not in prepared:
            prepared[key] = np.stack([to_input(img, cfg) for img in effective[stage]])
        out.append(prepared[key])
    return out


def prepare_image(rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Raw RGB uint8 image of any size -> uint8 image at the network's input size.

    This is what the app shows as "preprocessed" and what the training cache stores.
    """
    return to_input(to_effective(rgb, cfg), cfg)


def normalise_batch(batch_uint8: Any, cfg: PreprocessConfig) -> Any:
    """NHWC uint8 (numpy or torch) -> NCHW float32 torch tensor, normalised as the manifest says."""
    import torch

    t = torch.as_tensor(batch_uint8)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    t = t.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(cfg.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (t - mean) / std
