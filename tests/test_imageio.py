"""load_image and quality_check: what a clinician sees when opening any file, good or bad."""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import random
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from bad_images import (
    ACCEPTED,
    BOMB_SIDE,
    NON_ASCII_NAME,
    REFUSED,
    encode,
    make_bad_images,
    png_with_size,
    synthetic_rgb,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, ImageOps

from lesion_desktop import imageio
from lesion_desktop.errors import ImageLoadError, LesionError
from lesion_desktop.imageio import IMAGE_SUFFIXES, MAX_PIXELS, QualityReport, load_image, quality_check

pytestmark = pytest.mark.filterwarnings("error")

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HAM_DIR = DATA_DIR / "ham10000" / "images"
FULLRES_DIR = DATA_DIR / "ham10000_fullres_sample" / "images"
SAMPLE_SEED = 20_240_617


# ---------------------------------------------------------------------------------------------- helpers


@functools.cache
def _ham_files() -> tuple[Path, ...]:
    files = tuple(sorted(HAM_DIR.glob("ISIC_*.jpg")))
    if len(files) != 10_015:
        pytest.fail(
            f"Expected the 10,015 HAM10000 images in {HAM_DIR}, found {len(files)}. "
            "These tests need ../shared/data next to the repository (see ../shared/data/README.md)."
        )
    return files


def ham_files() -> tuple[Path, ...]:
    return _ham_files()


def fullres_files() -> tuple[Path, ...]:
    files = tuple(sorted(FULLRES_DIR.glob("ISIC_*.jpg")))
    if len(files) != 150:
        pytest.fail(f"Expected the 150 full-resolution HAM10000 images in {FULLRES_DIR}, found {len(files)}.")
    return files


def ham_sample(count: int) -> list[Path]:
    return random.Random(SAMPLE_SEED).sample(ham_files(), count)


def training_decode(data: bytes) -> np.ndarray:
    """How the training pipeline decodes: the reference an ordinary JPEG must match exactly."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None
    return np.ascontiguousarray(bgr[:, :, ::-1])


def synthetic() -> np.ndarray:
    return synthetic_rgb()


def assert_rgb8(image: np.ndarray, height: int, width: int) -> None:
    assert image.dtype == np.uint8
    assert image.shape == (height, width, 3)
    assert image.flags.c_contiguous and image.flags.writeable


def refused(source: str | os.PathLike[str] | bytes) -> str:
    with pytest.raises(ImageLoadError) as caught:
        load_image(source)
    message = str(caught.value)
    assert message.endswith("."), message
    assert "Traceback" not in message and "Error" not in message, message
    return message.lower()


def with_exif_orientation(rgb: np.ndarray, fmt: str, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    options: dict[str, object] = {"exif": exif.tobytes()}
    if fmt == "JPEG":
        options["quality"] = 95
    if fmt == "WEBP":
        options["lossless"] = True
    return encode(rgb, fmt, **options)


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk CRC so mutations reach libpng's decoder instead of our checksum test."""
    out = bytearray(data)
    pos = 8
    while pos + 12 <= len(out):
        length = int.from_bytes(out[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > len(out):
            break
        out[end - 4 : end] = zlib.crc32(bytes(out[pos + 4 : end - 4])).to_bytes(4, "big")
        pos = end
    return bytes(out)


# ---------------------------------------------------------------------------------------------- constants


def test_constants_match_the_contract() -> None:
    assert MAX_PIXELS == 40_000_000
    assert {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"} <= IMAGE_SUFFIXES
    assert all(s == s.lower() and s.startswith(".") for s in IMAGE_SUFFIXES)
    assert issubclass(ImageLoadError, LesionError)


def test_pillow_never_pads_truncated_images() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# ---------------------------------------------------------------------------------------------- real images


def test_real_jpegs_decode_exactly_like_training() -> None:
    for path in [*ham_sample(20), *fullres_files()[:5]]:
        data = path.read_bytes()
        image = load_image(path)
        expected = training_decode(data)
        assert_rgb8(image, *expected.shape[:2])
        assert np.array_equal(image, expected), path.name


def test_bytes_input_equals_path_input(tmp_path: Path) -> None:
    real = ham_files()[0]
    png = tmp_path / "real.png"
    bgr = cv2.imread(str(real))
    assert bgr is not None
    ok, encoded = cv2.imencode(".png", bgr)
    assert ok
    png.write_bytes(encoded.tobytes())
    for path in (real, png):
        data = path.read_bytes()
        assert np.array_equal(load_image(data), load_image(path))
        assert np.array_equal(load_image(str(path)), load_image(path))
        # Not in the signature, but tolerated: buffers other callers may hold.
        assert np.array_equal(load_image(bytearray(data)), load_image(data))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("PNG", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
        ("WEBP", {"lossless": True}),
    ],
)
def test_lossless_formats_round_trip_exactly(fmt: str, options: dict[str, object]) -> None:
    rgb = synthetic()
    image = load_image(encode(rgb, fmt, **options))
    assert_rgb8(image, 48, 64)
    assert np.array_equal(image, rgb)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_lossy_formats_decode_like_opencv(fmt: str) -> None:
    rgb = synthetic()
    data = encode(rgb, fmt, quality=90)
    image = load_image(data)
    assert_rgb8(image, 48, 64)
    assert np.array_equal(image, training_decode(data))
    assert np.abs(image.astype(int) - rgb).mean() < 6


def test_gif_loads_its_first_frame(tmp_path: Path) -> None:
    paths = make_bad_images(tmp_path)
    image = load_image(paths["animated.gif"])
    assert_rgb8(image, 48, 64)
    assert np.all(image == 40)  # the first frame is dark, the second light
    still = encode(synthetic(), "GIF")
    expected = np.asarray(Image.open(io.BytesIO(still)).convert("RGB"))
    assert np.array_equal(load_image(still), expected)


def test_mpo_loads_its_first_picture() -> None:
    first, second = synthetic(), 255 - synthetic()
    buffer = io.BytesIO()
    Image.fromarray(first).save(buffer, "MPO", save_all=True, append_images=[Image.fromarray(second)])
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    image = load_image(data)
    assert np.array_equal(image, training_decode(data))
    assert np.abs(image.astype(int) - first).mean() < 6


@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_16_bit_grey_is_scaled_not_clipped(suffix: str) -> None:
    ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    ok, encoded = cv2.imencode(suffix, ramp)
    assert ok
    image = load_image(encoded.tobytes())
    assert_rgb8(image, 16, 16)
    expected = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for channel in range(3):
        assert np.array_equal(image[:, :, channel], expected)

    odd = np.array([[0, 128, 129, 1000, 32896, 65535] * 2] * 8, dtype=np.uint16)
    ok, encoded = cv2.imencode(suffix, odd)
    assert ok
    assert load_image(encoded.tobytes())[0, :6, 0].tolist() == [0, 0, 1, 4, 128, 255]


@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_16_bit_colour_keeps_channel_order(suffix: str) -> None:
    rgb16 = np.zeros((12, 10, 3), np.uint16)
    rgb16[..., 0], rgb16[..., 1], rgb16[..., 2] = 65535, 257 * 10, 32896
    ok, encoded = cv2.imencode(suffix, rgb16[:, :, ::-1].copy())  # OpenCV writes BGR
    assert ok
    image = load_image(encoded.tobytes())
    assert_rgb8(image, 12, 10)
    assert image[5, 5].tolist() == [255, 10, 128]


def test_grayscale_becomes_three_equal_channels() -> None:
    gray = synthetic()[:, :, 1]
    for data in (encode(gray, "PNG"), encode(gray, "TIFF"), encode(gray, "BMP")):
        image = load_image(data)
        assert_rgb8(image, 48, 64)
        for channel in range(3):
            assert np.array_equal(image[:, :, channel], gray)
    jpeg = encode(gray, "JPEG", quality=92)
    assert np.array_equal(load_image(jpeg), training_decode(jpeg))
    bilevel = Image.fromarray(gray).convert("1")
    buffer = io.BytesIO()
    bilevel.save(buffer, "PNG")
    assert set(np.unique(load_image(buffer.getvalue())).tolist()) == {0, 255}


def _alpha_image() -> tuple[np.ndarray, np.ndarray]:
    rgb = synthetic()
    alpha = np.full((48, 64), 255, np.uint8)
    alpha[:, :16] = 0
    alpha[:, 16:32] = 128
    hidden = rgb.copy()
    hidden[:, :16] = 0  # what a viewer never shows: must not leak as black
    expected = rgb.astype(np.float32) * (alpha[..., None] / 255.0) + 255.0 * (1 - alpha[..., None] / 255.0)
    return np.dstack([hidden, alpha]), np.rint(expected).astype(np.uint8)


@pytest.mark.parametrize(
    ("fmt", "options"), [("PNG", {}), ("WEBP", {"lossless": True, "exact": True}), ("TIFF", {})]
)
def test_alpha_is_composited_on_white(fmt: str, options: dict[str, object]) -> None:
    rgba, expected = _alpha_image()
    image = load_image(encode(rgba, fmt, **options))
    assert_rgb8(image, 48, 64)
    assert np.all(image[:, :16] == 255)
    assert np.abs(image.astype(int) - expected).max() <= 1


def test_16_bit_alpha_and_grey_alpha_and_palette_transparency() -> None:
    rgba16 = np.zeros((10, 12, 4), np.uint16)
    rgba16[..., 2] = 65535  # red, in OpenCV's BGRA order
    rgba16[:, :6, 3] = 0
    rgba16[:, 6:, 3] = 65535
    ok, encoded = cv2.imencode(".png", rgba16)
    assert ok
    image = load_image(encoded.tobytes())
    assert image[0, 0].tolist() == [255, 255, 255] and image[0, 11].tolist() == [255, 0, 0]

    grey_alpha = Image.fromarray(
        np.dstack([np.full((10, 12), 20, np.uint8), rgba16[..., 3].astype(np.uint8)]), "LA"
    )
    buffer = io.BytesIO()
    grey_alpha.save(buffer, "PNG")
    image = load_image(buffer.getvalue())
    assert image[0, 0].tolist() == [255, 255, 255] and image[0, 11].tolist() == [20, 20, 20]

    palette = Image.fromarray(np.where(rgba16[..., 3] > 0, 1, 0).astype(np.uint8), "P")
    palette.putpalette([0, 0, 0, 0, 0, 200] + [0] * 762)
    for fmt in ("PNG", "GIF"):
        buffer = io.BytesIO()
        palette.save(buffer, fmt, transparency=0)
        image = load_image(buffer.getvalue())
        assert image[0, 0].tolist() == [255, 255, 255] and image[0, 11].tolist() == [0, 0, 200], fmt


def test_cmyk_jpeg_has_the_right_colours(tmp_path: Path) -> None:
    paths = make_bad_images(tmp_path)
    with Image.open(paths["cmyk.jpg"]) as original:
        assert original.mode == "CMYK"
    image = load_image(paths["cmyk.jpg"])
    assert_rgb8(image, 48, 64)
    assert np.abs(image[:, :28].astype(int) - (220, 30, 30)).max() <= 8
    assert np.abs(image[:, 36:].astype(int) - (30, 30, 220)).max() <= 8


def test_accepted_odd_files_load(tmp_path: Path) -> None:
    paths = make_bad_images(tmp_path)
    for name in ACCEPTED:
        assert_rgb8(load_image(paths[name]), 48, 64)
    assert np.array_equal(load_image(paths["gray16.png"])[-1, -1], [255, 255, 255])
    alpha = load_image(paths["alpha.png"])
    assert np.all(alpha[:, :32] == 255) and not np.all(alpha[:, 32:] == 255)


def test_unsupported_sample_formats_are_refused() -> None:
    float_tiff = io.BytesIO()
    Image.fromarray(np.ones((16, 16), np.float32)).save(float_tiff, "TIFF")
    assert "floating-point" in refused(float_tiff.getvalue())
    int_tiff = io.BytesIO()
    Image.fromarray(np.ones((16, 16), np.int32)).save(int_tiff, "TIFF")
    assert "32-bit" in refused(int_tiff.getvalue())
    assert "supported format" in refused(encode(synthetic(), "PPM"))


# ---------------------------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation_is_applied(orientation: int) -> None:
    real = training_decode(ham_files()[1].read_bytes())  # 200 x 150: a wrong rotation changes the shape
    data = with_exif_orientation(real, "JPEG", orientation)
    pillow = Image.open(io.BytesIO(data))
    assert pillow.getexif()[0x0112] == orientation
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert raw is not None
    assert np.array_equal(np.asarray(pillow.convert("RGB")), raw[:, :, ::-1])  # same pixels in both decoders
    expected = np.asarray(ImageOps.exif_transpose(pillow).convert("RGB"))
    image = load_image(data)
    assert np.array_equal(image, expected)
    assert image.shape == ((200, 150, 3) if orientation >= 5 else (150, 200, 3))
    assert np.array_equal(image, training_decode(data))  # no train/serve skew on rotated photos either


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize(("orientation", "turns"), [(3, 2), (6, -1), (8, 1)])
def test_exif_orientation_in_other_formats(fmt: str, orientation: int, turns: int) -> None:
    rgb = synthetic()
    image = load_image(with_exif_orientation(rgb, fmt, orientation))
    assert np.array_equal(image, np.rot90(rgb, turns))


# ---------------------------------------------------------------------------------------------- paths


def test_non_ascii_path(tmp_path: Path) -> None:
    folder = tmp_path / "Patiënt_患者"
    paths = make_bad_images(folder)
    assert np.array_equal(load_image(paths[NON_ASCII_NAME]), load_image(paths[NON_ASCII_NAME].read_bytes()))
    assert NON_ASCII_NAME in refused(folder / ("x" + NON_ASCII_NAME))


def test_very_long_path(tmp_path: Path) -> None:
    folder = tmp_path
    for index in range(6):
        folder = folder / f"{index}_{'long_folder_name_' * 3}"
    folder.mkdir(parents=True)
    path = folder / f"{'lesion_' * 6}.png"
    assert len(str(path)) > 260
    rgb = synthetic()
    path.write_bytes(encode(rgb, "PNG"))
    assert np.array_equal(load_image(path), rgb)
    assert np.array_equal(load_image(str(path)), rgb)


def test_deleted_file_is_reported_as_not_found(tmp_path: Path) -> None:
    path = tmp_path / "lesion.jpg"
    path.write_bytes(encode(synthetic(), "JPEG"))
    path.unlink()
    message = refused(path)
    assert "'lesion.jpg' was not found" in message and "deleted" in message


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.jpg"
    path.write_bytes(encode(synthetic(), "JPEG"))
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root, or Windows: make the operating system's refusal explicit

            def deny(*args: object, **kwargs: object) -> None:
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr(imageio, "open", deny, raising=False)
        assert "permission denied" in refused(path)
    finally:
        path.chmod(0o600)


def test_name_replaces_the_file_name_in_messages() -> None:
    with pytest.raises(ImageLoadError, match=r"^The image 'camera frame' is empty \(0 bytes\)\.$"):
        load_image(b"", name="camera frame")
    with pytest.raises(ImageLoadError, match=r"^The image data is empty \(0 bytes\)\.$"):
        load_image(b"")


def test_wrong_argument_type_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        load_image(42)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_bad_files_are_refused_with_the_reason(tmp_path: Path, name: str) -> None:
    paths = make_bad_images(tmp_path)
    message = refused(paths[name])
    assert REFUSED[name] in message
    assert f"'{name}'" in message


def test_one_pixel_message_is_clear(tmp_path: Path) -> None:
    message = refused(make_bad_images(tmp_path)["one_pixel.png"])
    assert "only 1 x 1 pixel." in message and "8 x 8" in message


def test_size_limits_are_inclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    rgb = synthetic()
    assert "too small" in refused(encode(rgb[:, :7], "PNG"))
    assert_rgb8(load_image(encode(rgb[:8, :8], "PNG")), 8, 8)
    monkeypatch.setattr(imageio, "MAX_PIXELS", 64 * 48)
    assert_rgb8(load_image(encode(rgb, "PNG")), 48, 64)
    monkeypatch.setattr(imageio, "MAX_PIXELS", 64 * 48 - 1)
    assert "too large" in refused(encode(rgb, "PNG"))


def _jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(synthetic(), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    data[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def _bmp_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(synthetic(), "BMP"))
    data[18:22] = width.to_bytes(4, "little", signed=True)
    data[22:26] = height.to_bytes(4, "little", signed=True)
    return bytes(data)


@pytest.mark.parametrize(
    "bomb",
    [
        png_with_size(BOMB_SIDE, BOMB_SIDE),
        png_with_size(10_000, 10_000),  # between Pillow's warning and error thresholds: no warning may leak
        png_with_size(7_000, 6_000),  # just above our limit, below Pillow's
        _jpeg_claiming(BOMB_SIDE, BOMB_SIDE),
        _bmp_claiming(BOMB_SIDE, BOMB_SIDE),
    ],
    ids=["png-50k", "png-10k", "png-42mp", "jpeg-50k", "bmp-50k"],
)
def test_huge_headers_are_refused_before_decoding(bomb: bytes) -> None:
    """Files that only claim a huge size: the message names the limit (memory: the real bombs below)."""
    assert len(bomb) < 20_000
    message = refused(bomb)
    assert "too large" in message and "40 megapixels" in message


def real_png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG whose pixels really decompress to width x height (all black): a few KB on disk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    rows = (b"\x00" + bytes((width + 7) // 8)) * height
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9))
            + chunk(b"IEND", b""))


_PEAK_CHILD = """
import json, sys
from lesion_desktop.errors import ImageLoadError
from lesion_desktop.imageio import load_image

def status_kb(field):  # this process's own figures; ru_maxrss would include the parent's from before exec
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

data = open(sys.argv[1], "rb").read()
resident_before = status_kb("VmRSS")
try:
    outcome = "loaded %s" % (load_image(data).shape,)
except ImageLoadError as e:
    outcome = str(e)
print(json.dumps({"growth": (status_kb("VmHWM") - resident_before) * 1024, "outcome": outcome}))
"""


def load_in_fresh_process(tmp_path: Path, data: bytes) -> tuple[int, str]:
    """(peak resident memory above the resident memory just before load_image, outcome) in a new process.

    The peak is a high-water mark, so it measures one call only in a process that has done nothing big
    before it: hence a child per case, compared with what that child held just before the call.
    """
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/status (Linux)")
    source = tmp_path / "image.bin"
    source.write_bytes(data)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run([sys.executable, "-c", _PEAK_CHILD, str(source)], env=env, cwd=repo,
                          capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return int(result["growth"]), str(result["outcome"])


BOMB_MEMORY_BOUND = 32 * 2**20
"""Memory a refused bomb may cost: far below what decoding one of the bombs below would hold."""


@pytest.mark.parametrize(("width", "height"), [(7_000, 6_000), (10_000, 10_000)], ids=["42mp", "100mp"])
def test_real_decompression_bombs_are_refused_without_decoding(tmp_path: Path, width: int, height: int) -> None:
    """42 and 100 megapixels: above our limit, below Pillow's own error threshold (179 megapixels)."""
    bomb = real_png_bomb(width, height)
    assert len(bomb) < 20_000
    assert 3 * width * height > 3 * BOMB_MEMORY_BOUND  # decoding holds the RGB picture at least: 120 or 286 MB
    growth, outcome = load_in_fresh_process(tmp_path, bomb)
    assert f"too large to open: {width:,} x {height:,} pixels" in outcome and "40 megapixels" in outcome
    assert growth < BOMB_MEMORY_BOUND, f"refusing the bomb cost {growth / 2**20:.0f} MB"


def test_the_fresh_process_measurement_sees_a_decode(tmp_path: Path) -> None:
    """Control for the bomb test: a 36-megapixel PNG under the limit loads, and its RGB array shows up."""
    growth, outcome = load_in_fresh_process(tmp_path, real_png_bomb(6_000, 6_000))
    assert outcome == "loaded (6000, 6000, 3)"
    assert growth > 3 * 6_000 * 6_000 > 3 * BOMB_MEMORY_BOUND


def test_bomb_message_names_the_declared_size(tmp_path: Path) -> None:
    message = refused(make_bad_images(tmp_path)["bomb.png"])
    assert "50,000 x 50,000 pixels" in message


def test_truncated_jpegs_are_refused_at_any_cut() -> None:
    data = ham_files()[2].read_bytes()
    cuts = [len(data) * percent // 100 for percent in range(30, 100, 7)] + [len(data) - 2, len(data) - 1]
    for cut in cuts:
        assert "truncated" in refused(data[:cut]), cut


def test_truncation_check_does_not_trust_the_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    data = ham_files()[2].read_bytes()
    # Older OpenCV builds return a grey-padded picture for a cut JPEG; pretend this one does too.
    monkeypatch.setattr(cv2, "imdecode", lambda buffer, flags: np.full((150, 200, 3), 128, np.uint8))
    assert "truncated" in refused(data[: len(data) // 2])


def test_truncated_files_of_every_format_are_refused() -> None:
    rgb = np.ascontiguousarray(training_decode(ham_files()[3].read_bytes()))
    cases: list[tuple[str, dict[str, object]]] = [
        ("PNG", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("WEBP", {"quality": 90}),
        ("GIF", {}),
        ("JPEG", {"progressive": True}),
    ]
    for fmt, options in cases:
        data = encode(rgb, fmt, **options)
        for fraction in (0.5, 0.9):
            message = refused(data[: int(len(data) * fraction)])
            assert "truncated" in message or "damaged" in message, (fmt, fraction, message)


def test_damaged_headers_and_non_images() -> None:
    png = bytearray(encode(synthetic(), "PNG"))
    png[20] ^= 0xFF  # IHDR changed, CRC not
    assert "damaged" in refused(bytes(png))
    assert "text" in refused(b"Patient notes: naevus, left shoulder.\n" * 3)
    assert "pdf" in refused(b"%PDF-1.7\n" + bytes(300))
    assert "heic" in refused(b"\x00\x00\x00\x18ftypheic" + bytes(300))
    assert "supported format" in refused(bytes(range(256)) * 4)
    assert "damaged" in refused(b"\xff\xd8\xff" + bytes(50))


# ---------------------------------------------------------------------------------------------- fuzzing


@functools.cache
def _fuzz_seeds() -> dict[str, bytes]:
    real_jpeg = ham_files()[4].read_bytes()
    rgb = training_decode(real_jpeg)[:48, :64].copy()
    ok, png16 = cv2.imencode(".png", (rgb.astype(np.uint16) * 257)[:, :, ::-1].copy())
    assert ok
    return {
        "jpeg": real_jpeg,
        "png": encode(rgb, "PNG"),
        "png16": png16.tobytes(),
        "png-alpha": encode(np.dstack([rgb, rgb[:, :, 0]]), "PNG"),
        "progressive": encode(rgb, "JPEG", progressive=True),
        "tiff": encode(rgb, "TIFF"),
        "bmp": encode(rgb, "BMP"),
        "gif": encode(rgb, "GIF"),
        "webp": encode(rgb, "WEBP"),
        "cmyk": _cmyk(rgb),
    }


def _cmyk(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buffer, "JPEG")
    return buffer.getvalue()


@st.composite
def mutated_image_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "magic", *sorted(_fuzz_seeds())]))
    if kind == "random":
        return draw(st.binary(max_size=4096))
    if kind == "magic":
        magic = draw(st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"GIF89a", b"II*\x00"]))
        return magic + draw(st.binary(max_size=2048))
    data = bytearray(_fuzz_seeds()[kind])
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        header_biased = st.integers(0, min(len(data), 300) - 1)
        position = draw(st.one_of(header_biased, st.integers(0, len(data) - 1)))
        operation = draw(st.sampled_from(["flip", "set", "big", "cut", "insert", "delete"]))
        if operation == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "set":
            data[position] = draw(st.integers(0, 255))
        elif operation == "big":
            data[position : position + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00"]))
        elif operation == "cut":
            del data[position:]
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        else:
            del data[position : position + draw(st.integers(1, 64))]
    blob = bytes(data)
    if kind.startswith("png") and draw(st.booleans()):
        blob = fix_png_crcs(blob)
    return blob


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(blob=mutated_image_bytes())
def test_fuzzed_bytes_only_ever_raise_image_load_error(blob: bytes) -> None:
    try:
        image = load_image(blob)
    except ImageLoadError as error:
        message = str(error)
        assert message.endswith(".") and "Traceback" not in message
    else:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert image.flags.c_contiguous
        assert image.shape[0] * image.shape[1] <= MAX_PIXELS


# ---------------------------------------------------------------------------------------------- quality


def _rate(images: list[np.ndarray], word: str) -> float:
    hits = [any(word in warning for warning in quality_check(image).warnings) for image in images]
    return sum(hits) / len(hits)


@functools.cache
def _quality_sample() -> tuple[np.ndarray, ...]:
    return tuple(load_image(path) for path in ham_sample(500))


def test_real_images_rarely_get_quality_warnings() -> None:
    images = _quality_sample()
    reports = [quality_check(image) for image in images]
    assert all(not any("pixels;" in w for w in r.warnings) for r in reports), "200x150 must not be too small"
    flagged = sum(bool(r.warnings) for r in reports) / len(reports)
    print(f"quality warnings on {len(reports)} real HAM10000 images: {flagged:.2%}")
    assert flagged < 0.03
    full = [quality_check(load_image(path)) for path in fullres_files()]
    assert sum(bool(r.warnings) for r in full) / len(full) < 0.03


def test_blurred_copies_get_the_blur_warning() -> None:
    blurred = [cv2.GaussianBlur(image, (0, 0), 4) for image in _quality_sample()[:150]]
    rate = _rate(blurred, "blurred")
    print(f"blur warning on sigma-4 copies: {rate:.1%}")
    assert rate >= 0.9


def test_badly_exposed_copies_get_exposure_warnings() -> None:
    images = _quality_sample()[:150]
    dark = [(image * 0.15).astype(np.uint8) for image in images]
    bright = [np.clip(image.astype(np.float32) * 3, 0, 255).astype(np.uint8) for image in images]
    assert _rate(dark, "too dark") >= 0.9
    assert _rate(bright, "too bright") >= 0.9
    assert _rate(dark, "blurred") == 0  # the exposure warning is the one to act on


def test_quality_report_values_and_sizes() -> None:
    flat = np.full((150, 200, 3), 128, np.uint8)
    report = quality_check(flat)
    assert (report.width, report.height) == (200, 150)
    assert report.brightness == pytest.approx(128.0)
    assert report.sharpness == pytest.approx(0.0)
    assert len(report.warnings) == 1 and "blurred" in report.warnings[0]
    real = _quality_sample()[0]
    assert not any("pixels;" in w for w in quality_check(np.ascontiguousarray(np.rot90(real))).warnings)
    small = quality_check(real[:, :199])
    assert small.warnings and "199 x 150 pixels" in small.warnings[0] and "200 x 150" in small.warnings[0]
    assert all("blurred" not in w for w in quality_check(cv2.resize(flat, (100, 75))).warnings)
    assert all(w.endswith(".") and w[0].isupper() for w in small.warnings + report.warnings)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.sharpness = 1.0  # type: ignore[misc]
    assert isinstance(report, QualityReport)


def test_quality_check_rejects_wrong_arrays() -> None:
    for bad in (
        np.zeros((150, 200), np.uint8),
        np.zeros((150, 200, 3), np.float32),
        np.zeros((0, 0, 3), np.uint8),
    ):
        with pytest.raises(ValueError):
            quality_check(bad)
