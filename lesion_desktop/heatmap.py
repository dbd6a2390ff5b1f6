"""Drawing a heat-map over an image (no torch: the lite edition shows heat-maps too)."""

from __future__ import annotations

import cv2
import numpy as np


def overlay(rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a jet-coloured heat-map over `rgb` (resized to it); uint8 RGB of rgb's size."""
    h, w = rgb.shape[:2]
    cam_u8 = np.clip(cv2.resize(cam.astype(np.float32), (w, h)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    colour = cv2.cvtColor(cv2.applyColorMap(cam_u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(rgb, 1.0 - alpha, colour, alpha, 0.0)
