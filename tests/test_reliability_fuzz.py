"""Fuzzing the model manifests (issue point 2): random and mutated JSON for bundles and ensembles, and
mutated safetensors headers. Whatever the bytes, loading ends in a model or a BundleError: no other
exception, no hang. (Image decoding is fuzzed in test_imageio.py.)"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lesion_desktop.bundle import MANIFEST, WEIGHTS, load_bundle, load_ensemble, sha256_file
from lesion_desktop.errors import BundleError, LesionError
from lesion_desktop.manifest import read_manifest
from lesion_desktop.preprocess import PreprocessConfig
from tests.helpers import make_tiny_ensemble

FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
HANG_S = 30  # one load of a tiny bundle takes milliseconds; this long means it hangs


class Hang(Exception):
    pass


@contextmanager
def no_hang(seconds: int = HANG_S) -> Iterator[None]:
    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"loading did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def only_bundle_errors(load: Callable[[], Any]) -> Any:
    """Run `load`; a BundleError is an accepted outcome, and its message must be a readable sentence."""
    with no_hang():
        try:
            return load()
        except BundleError as e:
            text = str(e)
            assert text and "Traceback" not in text and len(text) < 5000, text[:300]
            return None


# JSON values, with the awkward ones a hand-edited or hostile file holds: huge integers, NaN and
# Infinity (Python's json reads them), floats, deep nesting, and strings with NUL bytes or path tricks.
awkward_numbers = st.sampled_from([0, -1, 1, 2**63, -(2**64), 10**400, float("nan"), float("inf"), -float("inf"),
                                   1e308, 5e-324, 0.049, 20.0001, True, False])
awkward_text = st.sampled_from(["", ".", "..", "/", "../x", "a\x00b", "x" * 300, "a/" * 200, "weights.pth",
                                "ü.safetensors", "baseline_cnn", "mobilenet_v2", "tiny0", "tiny1", "RGB", "BGR"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12), awkward_numbers,
                    awkward_text)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny ensemble with its ONNX graphs, so the lite edition's loader reads the same files."""
    from lesion_desktop.inference.export import export_ensemble

    folder = make_tiny_ensemble(tmp_path_factory.mktemp("fuzz") / "ens")
    export_ensemble(folder)
    return folder


def lite_load(folder: Path) -> Any:
    """The lite edition's path (ONNX Runtime, no PyTorch weights read): one validator serves both loaders."""
    import os

    from lesion_desktop.inference import load_engine

    os.environ["LESION_DESKTOP_EDITION"] = "lite"
    try:
        return load_engine(folder)
    finally:
        del os.environ["LESION_DESKTOP_EDITION"]


class Originals(dict):
    """The pristine manifests and weights every example starts from (short repr: Hypothesis prints it)."""

    def __repr__(self) -> str:
        return "<pristine tiny ensemble>"


@pytest.fixture(scope="module")
def originals(ensemble: Path) -> dict[str, Any]:
    return Originals(bundle=_manifest(ensemble / "tiny0"), ensemble=_manifest(ensemble),
                     weights=(ensemble / "tiny0" / WEIGHTS).read_bytes())


@pytest.fixture
def scratch(ensemble: Path, tmp_path: Path) -> Path:
    """A private copy of the ensemble whose manifests each example rewrites (the weights stay valid)."""
    return Path(shutil.copytree(ensemble, tmp_path / "scratch"))


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST).read_text())


def _write(folder: Path, manifest: Any) -> None:
    text = manifest if isinstance(manifest, str) else json.dumps(manifest, allow_nan=True)
    (folder / MANIFEST).write_text(text, encoding="utf-8", errors="surrogatepass")


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any], nested: tuple[str, ...] = ()) -> dict[str, Any]:
    """`base` with 1-6 random edits: keys replaced by random values, deleted or added, nested blocks too."""
    m = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 6))):
        target = m
        block = draw(st.sampled_from(["top", *nested]))
        if block != "top":
            if isinstance(m.get(block), dict):
                target = m[block]
            elif isinstance(m.get(block), list) and any(isinstance(e, dict) for e in m[block]):
                target = draw(st.sampled_from([e for e in m[block] if isinstance(e, dict)]))
        keys = sorted(target) or ["x"]
        op = draw(st.sampled_from(["set", "set", "delete", "add", "awkward"]))
        key = draw(st.sampled_from(keys))
        if op == "set":
            target[key] = draw(json_values)
        elif op == "awkward":
            target[key] = draw(st.one_of(awkward_numbers, awkward_text))
        elif op == "delete":
            target.pop(key, None)
        else:
            target[draw(st.text(max_size=8))] = draw(json_values)
    return m


@st.composite
def broken_text(draw: st.DrawFn, base: dict[str, Any]) -> str:
    """The manifest's text cut short, with bytes changed, or replaced by noise or absurd nesting."""
    text = json.dumps(base, indent=2)
    kind = draw(st.sampled_from(["cut", "flip", "noise", "nest", "bigint"]))
    if kind == "cut":
        return text[: draw(st.integers(0, len(text) - 1))]
    if kind == "flip":
        chars = list(text)
        for _ in range(draw(st.integers(1, 8))):
            chars[draw(st.integers(0, len(chars) - 1))] = draw(st.characters(max_codepoint=0x2FF))
        return "".join(chars)
    if kind == "noise":
        return draw(st.text(max_size=200))
    if kind == "nest":
        depth = draw(st.sampled_from([10, 1_000, 100_000]))
        return "[" * depth + "]" * depth
    return '{"temperature": ' + "9" * draw(st.integers(4000, 6000)) + "}"


@FUZZ
@given(data=st.data())
def test_fuzzed_bundle_manifests_load_or_raise_bundle_error(scratch: Path, originals: dict[str, Any],
        data: st.DataObject) -> None:
    bundle = scratch / "tiny0"
    base = originals["bundle"]
    manifest = data.draw(st.one_of(mutated(base, ("preprocessing", "metrics", "training")), broken_text(base)))
    _write(bundle, manifest)
    loaded = only_bundle_errors(lambda: load_bundle(bundle))
    if loaded is not None:
        assert loaded.preprocess.input_size == (48, 64) and 0.05 <= loaded.temperature <= 20


@FUZZ
@given(data=st.data())
def test_fuzzed_ensemble_manifests_load_or_raise_bundle_error(scratch: Path, originals: dict[str, Any],
        data: st.DataObject) -> None:
    base = originals["ensemble"]
    manifest = data.draw(st.one_of(mutated(base, ("members",)), broken_text(base)))
    _write(scratch, manifest)
    loaded = only_bundle_errors(lambda: load_ensemble(scratch))
    if loaded is not None:
        assert loaded.members and abs(sum(loaded.weights) - 1) < 1e-9
    only_bundle_errors(lambda: lite_load(scratch))  # the lite loader: the same validator, BundleError only


@FUZZ
@given(data=st.data())
def test_fuzzed_member_manifest_behind_a_resealed_ensemble(scratch: Path, originals: dict[str, Any],
        data: st.DataObject) -> None:
    """The member manifest is edited and the ensemble's digest updated, so the member's own checks must hold."""
    base = originals["bundle"]
    _write(scratch / "tiny0", data.draw(mutated(base, ("preprocessing",))))
    ens = originals["ensemble"]
    resealed = json.loads(json.dumps(ens))
    resealed["members"][0]["manifest_sha256"] = sha256_file(scratch / "tiny0" / MANIFEST)
    _write(scratch, resealed)
    only_bundle_errors(lambda: load_ensemble(scratch))
    only_bundle_errors(lambda: lite_load(scratch))


@FUZZ
@given(data=st.data())
def test_fuzzed_safetensors_headers_behind_a_matching_hash(scratch: Path, originals: dict[str, Any],
        data: st.DataObject) -> None:
    """Weights whose header is damaged, with the manifest's sha256 updated so the parsers see the damage."""
    bundle = scratch / "tiny0"
    original = originals["weights"]
    blob = bytearray(original)
    header_end = 8 + int.from_bytes(original[:8], "little")
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "length", "text", "cut"]))
        if op == "flip":
            pos = data.draw(st.integers(0, header_end - 1))
            blob[pos] = data.draw(st.integers(0, 255))
        elif op == "length":
            blob[:8] = data.draw(st.sampled_from([0, 1, 7, 2**63, 2**64 - 1, header_end - 9, header_end + 9])).to_bytes(
                8, "little")
        elif op == "text":  # a syntactically valid but hostile header of the same length
            hostile = data.draw(st.sampled_from([
                '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,Infinity]}}',
                '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,' + "9" * 30 + "]}}",
                '{"a":' + "[" * 5000 + "]" * 5000 + "}",
                '{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}',
                '{"__metadata__":{"x":1}}',
                '{"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}}',
            ]))
            enc = hostile.encode()
            blob[:8] = len(enc).to_bytes(8, "little")
            blob[8:header_end] = enc
            header_end = 8 + len(enc)
        else:
            del blob[data.draw(st.integers(0, len(blob) - 1)):]
            header_end = min(header_end, len(blob))
        if header_end <= 8:
            break
    (bundle / WEIGHTS).write_bytes(bytes(blob))
    m = dict(originals["bundle"])
    m["weights_sha256"] = sha256_file(bundle / WEIGHTS)
    _write(bundle, m)
    only_bundle_errors(lambda: load_bundle(bundle))


@FUZZ
@given(raw=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_random_bytes_as_a_manifest(scratch: Path, raw: bytes) -> None:
    (scratch / MANIFEST).write_bytes(raw)
    manifest = only_bundle_errors(lambda: read_manifest(scratch))
    assert manifest is None or isinstance(manifest, dict)
    only_bundle_errors(lambda: load_ensemble(scratch))


@FUZZ
@given(block=st.one_of(json_values, st.dictionaries(st.sampled_from(
    ["input_size", "effective_size", "mean", "std", "color_order", "version", "color_constancy", "hair_removal",
     "jpeg_quality"]),
    st.one_of(json_values, st.lists(st.one_of(st.integers(), st.floats(), awkward_numbers), max_size=4)),
    max_size=8)))
def test_preprocess_config_from_any_json(block: Any) -> None:
    """PreprocessConfig.from_dict's contract is ValueError (load_bundle turns it into a BundleError)."""
    with no_hang():
        try:
            cfg = PreprocessConfig.from_dict(block)
        except ValueError as e:
            assert str(e)
            return
    assert all(16 <= x <= 2048 for x in (*cfg.input_size, *cfg.effective_size))
    assert all(v == v and abs(v) != float("inf") for v in (*cfg.mean, *cfg.std)) and min(cfg.std) > 0
    assert cfg.jpeg_quality is None or 1 <= cfg.jpeg_quality <= 100


def test_the_project_errors_share_one_base() -> None:
    assert issubclass(BundleError, LesionError)


