"""Draw the application icon (a pigmented lesion under a dermatoscope's ring) as PNGs and a Windows .ico.

    python packaging/make_icon.py      # writes resources/icons/lesion-desktop-{16..256}.png and .ico

Drawn at 1024 px and downsampled with Lanczos, so every size is anti-aliased; deterministic (fixed seed).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "resources" / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256)
S = 1024


def lesion_outline(cx: float, cy: float, r: float, seed: int = 7) -> list[tuple[float, float]]:
    """A slightly irregular closed outline: a circle with a few low-frequency bumps."""
    rng = np.random.default_rng(seed)
    amps = rng.uniform(0.02, 0.06, 5)
    phases = rng.uniform(0, 2 * math.pi, 5)
    pts = []
    for k in range(360):
        t = 2 * math.pi * k / 360
        rr = r * (1 + sum(a * math.sin((i + 2) * t + p) for i, (a, p) in enumerate(zip(amps, phases, strict=True))))
        pts.append((cx + rr * math.cos(t), cy + 0.92 * rr * math.sin(t)))
    return pts


def draw() -> Image.Image:
    img = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    # Rounded tile in a clinical teal.
    d.rounded_rectangle((40, 40, S - 40, S - 40), radius=200, fill=(0, 121, 128, 255))
    # Skin-coloured field seen through the dermatoscope's ring.
    c, r = S / 2, 360
    d.ellipse((c - r, c - r, c + r, c + r), fill=(240, 200, 170, 255))
    # The lesion: dark brown outline, lighter centre, blurred edge like a real naevus.
    lesion = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    ld = ImageDraw.Draw(lesion)
    ld.polygon(lesion_outline(c, c, 210), fill=(110, 62, 38, 255))
    ld.polygon(lesion_outline(c + 18, c - 12, 120, seed=3), fill=(150, 92, 60, 255))
    ld.ellipse((c - 70, c + 30, c - 20, c + 80), fill=(70, 38, 25, 255))
    lesion = lesion.filter(ImageFilter.GaussianBlur(6))
    img.alpha_composite(lesion)
    # The ring of the dermatoscope over it.
    d = ImageDraw.Draw(img)
    d.ellipse((c - r, c - r, c + r, c + r), outline=(255, 255, 255, 255), width=48)
    # Scale ticks at the ring, as on a dermatoscope's graticule.
    for k in range(12):
        t = 2 * math.pi * k / 12
        x0, y0 = c + (r - 70) * math.cos(t), c + (r - 70) * math.sin(t)
        x1, y1 = c + (r - 24) * math.cos(t), c + (r - 24) * math.sin(t)
        d.line((x0, y0, x1, y1), fill=(255, 255, 255, 220), width=14)
    return img


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    big = draw()
    for size in SIZES:
        big.resize((size, size), Image.Resampling.LANCZOS).save(OUT / f"lesion-desktop-{size}.png", optimize=True)
    big.resize((256, 256), Image.Resampling.LANCZOS).save(OUT / "lesion-desktop.ico",
                                                          sizes=[(s, s) for s in SIZES])
    print(f"icons written to {OUT}")


if __name__ == "__main__":
    main()
