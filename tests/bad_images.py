"""One shared set of awkward image files, so the loader, CLI and GUI tests all face the same inputs.

`make_bad_images(folder)` writes them and returns {file name: path}. `REFUSED` maps each file that
`load_image` must refuse to a word its ImageLoadError message contains; `ACCEPTED` maps each file it must
accept to what the result looks like. Everything is synthetic (no real data needed) and deterministic.
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

NON_ASCII_NAME = "läsion_病变.jpg"
BOMB_SIDE = 50_000

REFUSED: dict[str, str] = {
    "empty.jpg": "empty",  # 0 bytes
    "text.jpg": "text",  # a text file renamed .jpg
    "truncated.jpg": "truncated",  # a valid JPEG cut at 60% of its length
    "corrupt_chunk.png": "checksum",  # valid PNG whose IDAT chunk CRC is wrong
    "one_pixel.png": "too small",  # 1 x 1 pixel
    "bomb.png": "too large",  # 5 KB file whose header claims 50,000 x 50,000 pixels
    "zero_width.png": "no pixels",  # header claims 0 x 48 pixels
    "folder_as_file.jpg": "folder",  # a directory named like an image
}

ACCEPTED: dict[str, str] = {
    "gray16.png": "16-bit grey ramp; loads as 3 equal channels scaled to 0-255",
    "gray.jpg": "8-bit greyscale JPEG; loads as 3 equal channels",
    "cmyk.jpg": "CMYK JPEG of a left-red / right-blue image; loads with those colours in RGB",
    "alpha.png": "RGBA; left half transparent (hidden black) loads white, right half opaque keeps its colour",
    "animated.gif": "two frames, dark then light; loads the first (dark) frame",
    NON_ASCII_NAME: "an ordinary 64 x 48 RGB JPEG under a non-ASCII file name",
}


def synthetic_rgb(width: int = 64, height: int = 48) -> np.ndarray:
    """A smooth, textured, non-symmetric RGB picture: orientation mistakes and colour swaps show."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 255 * x / max(width - 1, 1)
    green = 255 * y / max(height - 1, 1)
    blue = 127 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0)
    rgb: np.ndarray = np.clip(np.dstack([red, green, blue]), 0, 255).astype(np.uint8)
    return rgb


def encode(rgb: np.ndarray, fmt: str, **options: object) -> bytes:
    """Encode an RGB(A)/L array with Pillow."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, fmt, **options)
    return buffer.getvalue()


def png_with_size(width: int, height: int) -> bytes:
    """A small valid PNG whose IHDR claims width x height (CRC fixed): a decompression bomb, or empty."""
    ok, encoded = cv2.imencode(".png", synthetic_rgb()[:, :, ::-1])
    assert ok
    data = bytearray(encoded.tobytes())
    data[16:20] = width.to_bytes(4, "big")
    data[20:24] = height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def png_with_bad_idat_crc() -> bytes:
    """A PNG whose pixel data is intact but whose IDAT checksum is wrong."""
    data = bytearray(encode(synthetic_rgb(), "PNG"))
    start = data.index(b"IDAT") - 4
    length = int.from_bytes(data[start : start + 4], "big")
    crc_at = start + 8 + length
    data[crc_at : crc_at + 4] = bytes(b ^ 0xFF for b in data[crc_at : crc_at + 4])
    return bytes(data)


def make_bad_images(folder: Path) -> dict[str, Path]:
    """Write every file of REFUSED and ACCEPTED into `folder` and return {file name: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = synthetic_rgb()
    jpeg = encode(rgb, "JPEG", quality=92)
    gray16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    ok, gray16_png = cv2.imencode(".png", gray16)
    assert ok
    cmyk = np.zeros((48, 64, 3), np.uint8)
    cmyk[:, :32] = (220, 30, 30)
    cmyk[:, 32:] = (30, 30, 220)
    alpha = np.dstack([rgb, np.zeros((48, 64), np.uint8)])
    alpha[:, :32, :3] = 0
    alpha[:, 32:, 3] = 255
    frames = [Image.fromarray(np.full((48, 64, 3), level, np.uint8)) for level in (40, 210)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)

    contents: dict[str, bytes] = {
        "empty.jpg": b"",
        "text.jpg": b"This is a note about the patient, saved with the wrong name.\n",
        "truncated.jpg": jpeg[: len(jpeg) * 6 // 10],
        "corrupt_chunk.png": png_with_bad_idat_crc(),
        "one_pixel.png": encode(np.zeros((1, 1, 3), np.uint8), "PNG"),
        "bomb.png": png_with_size(BOMB_SIDE, BOMB_SIDE),
        "zero_width.png": png_with_size(0, 48),
        "gray16.png": gray16_png.tobytes(),
        "gray.jpg": encode(rgb[:, :, 1], "JPEG", quality=92),
        "cmyk.jpg": _cmyk_jpeg(cmyk),
        "alpha.png": encode(alpha, "PNG"),
        "animated.gif": gif.getvalue(),
        NON_ASCII_NAME: jpeg,
    }
    paths: dict[str, Path] = {}
    for name, data in contents.items():
        path = folder / name
        path.write_bytes(data)
        paths[name] = path
    directory = folder / "folder_as_file.jpg"
    directory.mkdir(exist_ok=True)
    paths["folder_as_file.jpg"] = directory
    assert set(paths) == set(REFUSED) | set(ACCEPTED)
    return paths


def _cmyk_jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buffer, "JPEG", quality=95)
    return buffer.getvalue()
