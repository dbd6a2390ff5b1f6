"""Two synthetic dermoscopy-like photos for smoke-testing a frozen program where no real image may be copied.

A brown, blurred, irregular blob on skin-coloured noise: enough for the models to run end to end (they give
a prediction; whether it means anything is not the point). Deterministic, so two builds' CSVs compare.
Used by .github/workflows/windows-installer.yml:  python packaging/smoke_images.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np


def lesion_like(seed: int, size: tuple[int, int] = (450, 600)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = size
    skin = np.empty((h, w, 3), np.float32)
    skin[:] = (150, 160, 215)  # BGR
    skin += rng.normal(0, 6, skin.shape)
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    radii = rng.uniform(0.20, 0.31, angles.size) * h
    outline = np.stack([w / 2 + 1.2 * radii * np.cos(angles), h / 2 + radii * np.sin(angles)], axis=1)
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [outline.astype(np.int32)], 1.0)
    soft = cv2.GaussianBlur(mask, (0, 0), 12)[..., None]
    lesion = np.empty_like(skin)
    lesion[:] = (40, 60, 110) if seed % 2 else (70, 90, 150)
    lesion += rng.normal(0, 12, skin.shape)
    return np.clip(skin * (1 - soft) + lesion * soft, 0, 255).astype(np.uint8)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path(".")
    out.mkdir(parents=True, exist_ok=True)
    for i in (1, 2):
        path = out / f"smoke-{i}.jpg"
        if not cv2.imwrite(str(path), lesion_like(i), [cv2.IMWRITE_JPEG_QUALITY, 92]):
            print(f"could not write {path}", file=sys.stderr)
            return 1
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
