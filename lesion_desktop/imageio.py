"""Turning a user's image file (or bytes) into an RGB array, and judging whether the photo is usable.

Everything a user can hand us ends either in an HxWx3 uint8 RGB array or in an `ImageLoadError` whose
message a clinician can act on; no decoder exception, warning or traceback gets through.

Decoding strategy, and why:

* Pillow reads only the header first (format, mode, size, EXIF orientation), so absurd sizes are refused
  before a single pixel buffer is allocated.
* The common JPEG/PNG/WebP/TIFF cases are decoded by OpenCV, because the training pipeline decodes with
  ``cv2.imdecode(IMREAD_COLOR)`` and an ordinary JPEG must give the identical array at inference; OpenCV
  also keeps 16 bits per sample where Pillow would truncate colour 16-bit files.
* Pillow decodes what OpenCV gets wrong or cannot do: CMYK JPEGs, BMP, GIF (first frame), animated WebP,
  RGBA TIFF (OpenCV mishandles unassociated alpha there).
* JPEG and PNG files are checked structurally first (end-of-image marker, chunk checksums), so a truncated or
  corrupted file is refused whatever the decoder version would do with it.
* Transparent pixels are composited on white rather than dropped: the colour hidden under alpha 0 is
  arbitrary (often black), and white matches what the clinician saw in an image viewer.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
import sys
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from lesion_desktop.errors import ImageLoadError
from lesion_desktop.wording import QT_TRANSLATE_NOOP, Phrase

MAX_PIXELS: int = 40_000_000
"""Largest image accepted (width x height): beyond any dermatoscope or phone, yet safe to decode."""

MIN_SIDE: int = 8
"""Smallest width or height accepted: below this a file is an icon or a placeholder, not a photo of skin."""

MAX_FILE_BYTES: int = 512 * 1024 * 1024
"""Largest file read into memory: an uncompressed 16-bit RGBA image of MAX_PIXELS is about 320 MB."""

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
)
"""Lower-case suffixes picked up when scanning folders; the loader itself trusts contents, never suffixes."""

# MPO files (JPEG plus extra pictures) open through the JPEG plugin.
_PILLOW_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF")
_SUPPORTED_NAMES = "JPEG, PNG, BMP, TIFF, WebP or GIF"
_UINT16_MODES: frozenset[str] = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ORIENTATION_TAG = 0x0112

_log = logging.getLogger(__name__)
# warnings.catch_warnings mutates process-wide state; serialise our own uses of it.
_WARNINGS_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Header:
    format: str
    mode: str
    width: int
    height: int
    orientation: int
    frames: int


def load_image(source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> np.ndarray:
    """Decode a file path or encoded bytes to an HxWx3 uint8 RGB C-contiguous array.

    `name` replaces the file name in error messages (useful for bytes from a camera or a drop).
    Raises ImageLoadError, with a message meant for the user, for anything that is not a usable image.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        subject = f"The image '{name}'" if name else "The image data"
    elif isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        if not isinstance(path, str):
            raise TypeError("load_image takes a str path, an os.PathLike[str] or the file's bytes")
        subject = f"The file '{name or os.path.basename(path) or path}'"
        data = _read_file(path, subject)
    else:
        raise TypeError(f"load_image takes a path or bytes, not {type(source).__name__}")
    try:
        return _decode(data, subject)
    except ImageLoadError:
        raise
    except MemoryError as exc:
        raise ImageLoadError(f"{subject} could not be opened: there is not enough memory.") from exc
    except Exception as exc:  # any decoder failure on hostile bytes must reach the user as a sentence
        _log.info("Unexpected decoder failure for %s", subject, exc_info=True)
        raise ImageLoadError(f"{subject} is damaged: its image data could not be decoded.") from exc


def _read_file(path: str, subject: str) -> bytes:
    """Read with Python's own file API, so non-ASCII and long paths work where cv2.imread fails."""
    os_path = _long_path(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        info = os.stat(os_path)
        if stat.S_ISDIR(info.st_mode):
            raise ImageLoadError(f"{subject} is a folder, not an image file.")
        if not stat.S_ISREG(info.st_mode):  # a pipe or device would block or never end
            raise ImageLoadError(f"{subject} is not a regular file, so it cannot be an image.")
        if info.st_size > MAX_FILE_BYTES:
            raise ImageLoadError(_too_big_file_message(subject, info.st_size))
        with open(os_path, "rb") as fh:
            return fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise ImageLoadError(
            f"{subject} was not found in '{folder}'. It may have been moved, renamed or deleted."
        ) from exc
    except IsADirectoryError as exc:
        raise ImageLoadError(f"{subject} is a folder, not an image file.") from exc
    except PermissionError as exc:
        if os.path.isdir(os_path):  # Windows reports opening a folder as permission denied
            raise ImageLoadError(f"{subject} is a folder, not an image file.") from exc
        raise ImageLoadError(
            f"{subject} could not be opened: permission denied. Check that your account may read it."
        ) from exc
    except ValueError as exc:  # e.g. an embedded NUL character
        raise ImageLoadError(f"{subject} does not have a valid file name.") from exc
    except OSError as exc:
        reason = exc.strerror or "the system refused to read it"
        raise ImageLoadError(f"{subject} could not be read: {reason}.") from exc


def _long_path(path: str) -> str:
    """On Windows, paths past MAX_PATH only open with the extended-length prefix."""
    if sys.platform == "win32":
        full = os.path.abspath(path)
        if len(full) >= 248 and not full.startswith("\\\\?\\"):
            return "\\\\?\\UNC\\" + full[2:] if full.startswith("\\\\") else "\\\\?\\" + full
    return path


def _too_big_file_message(subject: str, size: int) -> str:
    limit = MAX_FILE_BYTES // 2**20
    return f"{subject} is too big to open ({size / 2**20:,.0f} MB; the limit is {limit} MB)."


@contextmanager
def _pillow_warnings_logged() -> Iterator[None]:
    """Keep Pillow's warnings (decompression bombs, odd EXIF) away from the user; they go to the log."""
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                _log.info("Pillow warning while reading an image: %s", warning.message)


def _decode(data: bytes, subject: str) -> np.ndarray:
    if not data:
        raise ImageLoadError(f"{subject} is empty (0 bytes).")
    if len(data) > MAX_FILE_BYTES:
        raise ImageLoadError(_too_big_file_message(subject, len(data)))
    with _pillow_warnings_logged():
        header = _read_header(data, subject)
    _check_dimensions(header, subject)
    if header.format in ("JPEG", "MPO"):
        _check_jpeg_complete(data, subject)
    elif header.format == "PNG":
        _check_png_chunks(data, subject)
    if _opencv_decodes(header):
        rgb = _decode_with_opencv(data, header, subject)
    else:
        with _pillow_warnings_logged():
            rgb = _decode_with_pillow(data, subject)
    if rgb.shape[:2] != (header.height, header.width):
        raise ImageLoadError(f"{subject} is damaged: its pixel data does not match the size in its header.")
    # libtiff (in both decoders) already applies the TIFF orientation tag; the others leave it to us.
    if header.format != "TIFF":
        rgb = _apply_orientation(rgb, header.orientation)
    if not (rgb.flags.c_contiguous and rgb.flags.writeable):  # Pillow's arrays are read-only views
        rgb = rgb.copy(order="C")
    return rgb


def _read_header(data: bytes, subject: str) -> _Header:
    try:
        image = Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS)
    except Image.DecompressionBombError as exc:  # Pillow's own check runs inside open(), before ours
        declared = _png_declared_size(data)
        if declared is not None:
            _check_dimensions(_Header("PNG", "", declared[0], declared[1], 1, 1), subject)
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f" ({int(found.group(1)) / 1e6:,.0f} megapixels)" if found else ""
        raise ImageLoadError(f"{subject} is too large to open{size}; {_pixel_limit_sentence()}") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(_describe_unreadable(data, subject)) from exc
    except Exception as exc:
        raise ImageLoadError(_describe_unreadable(data, subject)) from exc
    with image:
        fmt = image.format or ""
        width, height = image.size
        frames = int(getattr(image, "n_frames", 1)) if fmt == "WEBP" else 1
        return _Header(fmt, image.mode, width, height, _exif_orientation(image), frames)


def _exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8); damaged metadata must not cost the user the picture, so it reads as 1."""
    try:
        if image.format == "PNG":
            raw = image.info.get("exif")  # getexif() on a PNG would decode all pixels to find a late eXIf
            if not isinstance(raw, bytes):
                return 1
            exif = Image.Exif()
            exif.load(raw)
        elif image.format in ("JPEG", "MPO", "TIFF", "WEBP"):
            exif = image.getexif()
        else:
            return 1
        value = exif.get(_ORIENTATION_TAG, 1)
    except Exception:
        _log.info("Ignoring unreadable EXIF data", exc_info=True)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _pixel_limit_sentence() -> str:
    return f"the limit is {MAX_PIXELS / 1e6:,.0f} megapixels. Please use a smaller copy of the image."


def _check_dimensions(header: _Header, subject: str) -> None:
    width, height = header.width, header.height
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"{subject} is damaged: its header says it has no pixels ({width} x {height}).")
    if width * height > MAX_PIXELS:
        raise ImageLoadError(
            f"{subject} is too large to open: {width:,} x {height:,} pixels "
            f"({width * height / 1e6:,.0f} megapixels); {_pixel_limit_sentence()}"
        )
    if min(width, height) < MIN_SIDE:
        unit = "pixel" if width * height == 1 else "pixels"
        raise ImageLoadError(
            f"{subject} is too small to be a photo: it is only {width} x {height} {unit}. "
            f"At least {MIN_SIDE} x {MIN_SIDE} pixels are needed."
        )


def _truncated_message(subject: str) -> str:
    return (
        f"{subject} is incomplete (truncated): the file ends before the end of the image. "
        "It was probably cut off while being copied or downloaded."
    )


def _check_jpeg_complete(data: bytes, subject: str) -> None:
    """Refuse a JPEG with no end-of-image marker after its scan: some decoders pad the missing part grey."""
    pos, size = 2, len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:  # stray bytes between segments: Pillow and libjpeg skip them too
            pos += 1
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # segments without a length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # start of scan: 0xFFD9 can only appear in the entropy data as the real end
            if data.find(b"\xff\xd9", pos + 2 + length) == -1:
                raise ImageLoadError(_truncated_message(subject))
            return
        pos += 2 + length
    raise ImageLoadError(_truncated_message(subject))


def _check_png_chunks(data: bytes, subject: str) -> None:
    """Verify every chunk's CRC and the final IEND: libpng only warns about damage in some chunks."""
    view = memoryview(data)
    pos, size = 8, len(data)
    while True:
        if pos + 12 > size:
            raise ImageLoadError(_truncated_message(subject))
        length = int.from_bytes(view[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > size:
            raise ImageLoadError(_truncated_message(subject))
        kind = bytes(view[pos + 4 : pos + 8])
        if zlib.crc32(view[pos + 4 : end - 4]) != int.from_bytes(view[end - 4 : end], "big"):
            label = kind.decode("ascii", errors="replace")
            raise ImageLoadError(
                f"{subject} is damaged: its '{label}' data block fails its checksum (CRC) test."
            )
        if kind == b"IEND":
            return
        pos = end


def _opencv_decodes(header: _Header) -> bool:
    """Whether OpenCV decodes this header's image correctly; see the module docstring for the split."""
    if header.format in ("JPEG", "MPO"):  # MPO (phones' JPEG + depth/gain map): cv2 reads the first picture
        return header.mode in ("L", "RGB")
    if header.format == "PNG":
        return True
    if header.format == "TIFF":
        return header.mode in ("L", "RGB") or header.mode in _UINT16_MODES
    if header.format == "WEBP":
        return header.frames == 1
    return False


def _decode_with_opencv(data: bytes, header: _Header, subject: str) -> np.ndarray:
    if header.format in ("JPEG", "MPO"):  # the training decode; orientation is applied afterwards, as for all
        flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    else:  # keeps 16-bit samples and alpha
        flags = cv2.IMREAD_UNCHANGED
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if decoded is None:
        raise ImageLoadError(f"{subject} is damaged or incomplete: its image data could not be decoded.")
    return _to_rgb8(decoded, bgr=True, subject=subject)


def _decode_with_pillow(data: bytes, subject: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS) as image:
            image.seek(0)  # animated GIF/WebP: the first frame
            image.load()
            mode = image.mode
            if mode in _UINT16_MODES:
                pixels = np.asarray(image).astype(np.uint16)
            elif mode in ("I", "I;16S", "F"):
                raise ImageLoadError(
                    f"{subject} stores its pixels as 32-bit or floating-point numbers, which this program "
                    "does not read. Please save it as an 8- or 16-bit image."
                )
            elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
                pixels = np.asarray(image.convert("RGBA"))
            else:  # includes CMYK (Adobe-inverted or not) and palette images
                pixels = np.asarray(image.convert("RGB"))
    except ImageLoadError:
        raise
    except Exception as exc:
        if "truncated" in str(exc):
            raise ImageLoadError(_truncated_message(subject)) from exc
        raise ImageLoadError(
            f"{subject} is damaged or incomplete: its image data could not be decoded."
        ) from exc
    return _to_rgb8(pixels, bgr=False, subject=subject)


def _to_rgb8(pixels: np.ndarray, *, bgr: bool, subject: str) -> np.ndarray:
    """Any of 1/2/3/4 channels at 8 or 16 bits to RGB uint8; alpha composited on white."""
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ImageLoadError(
            f"{subject} stores its pixels as {pixels.dtype.itemsize * 8}-bit numbers, which this program "
            "does not read. Please save it as an 8- or 16-bit image."
        )
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    channels = pixels.shape[2] if pixels.ndim == 3 else 0
    if channels not in (1, 2, 3, 4):
        raise ImageLoadError(f"{subject} has an unusual pixel layout that this program cannot read.")
    colour_channels = 1 if channels <= 2 else 3
    colour = pixels[:, :, :colour_channels]
    top = float(np.iinfo(pixels.dtype).max)
    alpha = pixels[:, :, colour_channels] if channels in (2, 4) else None
    if alpha is not None and int(alpha.min()) < top:
        weight = alpha.astype(np.float32)[:, :, np.newaxis] / top
        blended = colour.astype(np.float32) * weight + top * (1.0 - weight)
        colour = np.rint(blended * (255.0 / top)).astype(np.uint8)
    elif pixels.dtype == np.uint16:
        colour = _scale_16_to_8(colour)
    # cv2.cvtColor: several times faster than numpy's strided copies on camera-sized images.
    if colour_channels == 1:
        return cv2.cvtColor(np.ascontiguousarray(colour[:, :, 0]), cv2.COLOR_GRAY2RGB)
    colour = np.ascontiguousarray(colour)
    return cv2.cvtColor(colour, cv2.COLOR_BGR2RGB) if bgr else colour


def _scale_16_to_8(pixels: np.ndarray) -> np.ndarray:
    """Map the full 16-bit range onto 0-255 with rounding (65535 -> 255, 257 -> 1): no clip, no byte cut."""
    return cv2.convertScaleAbs(np.ascontiguousarray(pixels), alpha=255.0 / 65535.0).reshape(pixels.shape)


def _apply_orientation(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation as Pillow's ImageOps.exif_transpose (and OpenCV's IMREAD_COLOR) apply it."""
    if orientation == 2:
        return rgb[:, ::-1]
    if orientation == 3:
        return rgb[::-1, ::-1]
    if orientation == 4:
        return rgb[::-1]
    if orientation == 5:
        return rgb.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(rgb, k=-1)
    if orientation == 7:
        return rgb[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(rgb, k=1)
    return rgb


def _looks_like_text(data: bytes) -> bool:
    sample = data[:1024]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 3:  # not just a character cut in half at the end of the sample
            return False
        text = sample[: exc.start].decode("utf-8")
    return bool(text.strip()) and all(ch.isprintable() or ch in "\t\n\r\f\v" for ch in text)


_IMAGE_SIGNATURES: tuple[bytes, ...] = (b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"BM", b"GIF8", b"II*\0", b"MM\0*")


def _png_declared_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR, for messages about headers Pillow refuses to open."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def _describe_unreadable(data: bytes, subject: str) -> str:
    """A specific sentence for bytes Pillow could not even identify."""
    brand = data[8:12] if data[4:8] == b"ftyp" else b""
    if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
        return (
            f"{subject} is a HEIC/HEIF photo (the iPhone format), which this program cannot open. "
            "Please export it as JPEG."
        )
    if brand in (b"avif", b"avis"):
        return f"{subject} is an AVIF image, which this program cannot open. Please export it as JPEG or PNG."
    if data.startswith(b"%PDF"):
        return f"{subject} is a PDF document, not an image."
    if data.startswith(b"PK\x03\x04"):
        return f"{subject} is a ZIP archive or an Office document, not an image."
    if data[128:132] == b"DICM":
        return f"{subject} is a DICOM file, which this program cannot open. Please export it as JPEG or PNG."
    if data.startswith(_IMAGE_SIGNATURES) or (data.startswith(b"RIFF") and data[8:12] == b"WEBP"):
        declared = _png_declared_size(data)
        if declared is not None and 0 in declared:
            return f"{subject} is damaged: its header says it has no pixels ({declared[0]} x {declared[1]})."
        return f"{subject} is damaged: its header cannot be read."
    if _looks_like_text(data):
        return f"{subject} is not an image: it contains text."
    return f"{subject} is not an image in a supported format ({_SUPPORTED_NAMES})."


# ----------------------------------------------------------------------------------------------------------
# Photo quality
# ----------------------------------------------------------------------------------------------------------

QUALITY_SIZE: tuple[int, int] = (200, 150)
"""(long side, short side) every image is measured at, so thresholds do not depend on resolution."""

BLUR_THRESHOLD: float = 8.0
"""Variance of the Laplacian at 200x150 below which a photo is called blurred.

On HAM10000 (10,015 images at 200x150): the real images range from 5.7 to 4,800 (0.2% below 8), while
Gaussian-blurred copies (sigma 4) all fall below 3.8; copies blurred with sigma 1.5 fall below 8 in 95%.
"""

DARK_THRESHOLD: float = 50.0
"""Mean grey level (0-255) below which a photo is under-exposed: real images >= 58, darkened x0.15 <= 35."""

CLIPPED_LEVEL: int = 250
CLIPPED_FRACTION: float = 0.20
"""Share of near-white pixels (grey >= CLIPPED_LEVEL) above which a photo is over-exposed.

One HAM10000 image of 10,015 exceeds it (25.5%), while 99.97% of copies brightened x3 do.
"""


# The warnings, marked for translators (lesion_desktop.wording): the window shows them in the clinic's language.
TOO_SMALL = QT_TRANSLATE_NOOP("ImageQuality", "The image is only {width} x {height} pixels; at least {long_side} x "
                              "{short_side} are needed to judge it reliably.")
TOO_DARK = QT_TRANSLATE_NOOP("ImageQuality", "The image is too dark (under-exposed); details of the lesion may be "
                             "hidden.")
TOO_BRIGHT = QT_TRANSLATE_NOOP("ImageQuality", "The image is too bright (over-exposed): {clipped} of it is pure white, "
                               "so details are lost.")
BLURRED = QT_TRANSLATE_NOOP("ImageQuality", "The image looks blurred (out of focus or moved); retake it if you can.")


@dataclass(frozen=True)
class QualityReport:
    """What a clinician should know about a photo before trusting a prediction on it."""

    warnings: tuple[str, ...]
    sharpness: float  # variance of the Laplacian at QUALITY_SIZE
    brightness: float  # mean grey level, 0-255
    width: int
    height: int


def quality_check(rgb: np.ndarray) -> QualityReport:
    """Warn about blur, bad exposure, and images too small to judge (under 200x150 in either orientation).

    Blur is not judged on badly exposed or too-small images: the Laplacian measures contrast, so a dark,
    washed-out or upscaled image always looks blurred, and the exposure or size warning is the one to act on.
    """
    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3):
        raise ValueError("quality_check expects an HxWx3 uint8 RGB array")
    height, width = rgb.shape[:2]
    if height == 0 or width == 0:
        raise ValueError("quality_check expects a non-empty image")
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    long_side, short_side = QUALITY_SIZE
    target = (long_side, short_side) if width >= height else (short_side, long_side)
    if (width, height) != target:
        gray = cv2.resize(gray, target, interpolation=cv2.INTER_AREA)
    sharpness = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    brightness = float(gray.mean())
    clipped = float(np.count_nonzero(gray >= CLIPPED_LEVEL)) / gray.size

    found: list[str] = []
    too_small = min(width, height) < short_side or max(width, height) < long_side
    if too_small:
        found.append(Phrase(TOO_SMALL, width=width, height=height, long_side=long_side, short_side=short_side))
    badly_exposed = True
    if brightness < DARK_THRESHOLD:
        found.append(Phrase(TOO_DARK))
    elif clipped > CLIPPED_FRACTION:
        found.append(Phrase(TOO_BRIGHT, clipped=f"{clipped:.0%}"))
    else:
        badly_exposed = False
    if not too_small and not badly_exposed and sharpness < BLUR_THRESHOLD:
        found.append(Phrase(BLURRED))
    return QualityReport(tuple(found), sharpness, brightness, width, height)
