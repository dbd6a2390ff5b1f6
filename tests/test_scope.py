"""The scope gate: pictures that are not dermoscopy images are flagged, real dermoscopy images are not, and a
damaged scope model is refused. The shipped default's own scope model is what is checked on real images."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from lesion_desktop.errors import BundleError
from lesion_desktop.imageio import load_image
from lesion_desktop.manifest import sha256_file
from lesion_desktop.scope import (
    ARRAYS_FILE,
    REASONS,
    SCOPE_FILE,
    ImageChecks,
    MemberDistance,
    ScopeModel,
    image_finding,
    image_stats,
    load_scope,
    load_scope_file,
)
from tests.helpers import FULLRES, HAM, REPO, require_data

DEFAULT = REPO / "resources" / "models" / "default"


def _ood_module():
    spec = importlib.util.spec_from_file_location("ood_images", REPO / "benchmarks" / "ood_images.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---- image checks on synthetic pictures ------------------------------------------------------------------------

def _finding(rgb: np.ndarray) -> str:
    return image_finding(image_stats(rgb), ImageChecks())


def test_image_checks_name_what_is_wrong():
    rng = np.random.default_rng(0)
    assert _finding(np.full((450, 600, 3), (224, 172, 140), np.uint8)) == "flat"  # skin-coloured, but flat
    grey = np.repeat(rng.integers(0, 256, (450, 600, 1), dtype=np.uint8), 3, axis=2)
    assert _finding(grey) == "grey"
    drawing = np.full((450, 600, 3), (135, 206, 235), np.uint8)
    cv2.circle(drawing, (300, 225), 150, (236, 188, 150), -1)
    cv2.circle(drawing, (300, 225), 150, (0, 0, 0), 4)
    cv2.rectangle(drawing, (0, 380), (600, 450), (80, 160, 60), -1)
    assert _finding(drawing) == "drawing"
    assert _finding(rng.integers(0, 256, (450, 600, 3), dtype=np.uint8)) == ""  # colour noise: the features' job


def test_image_checks_pass_real_lesions_including_black_borders():
    paths = sorted((require_data(HAM) / "images").glob("*.jpg"))[::50]  # 201 images across the data set
    for p in paths:
        rgb = load_image(p)
        assert _finding(rgb) == "", p.name
        h, w = rgb.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        circle = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= (h / 2) ** 2  # a round dermatoscope's field of view
        assert _finding(rgb * circle[..., None].astype(np.uint8)) == "", p.name


# ---- the scope model's files --------------------------------------------------------------------------------------

def _toy_model() -> ScopeModel:
    rng = np.random.default_rng(1)
    basis, _ = np.linalg.qr(rng.normal(size=(16, 4)))
    members = [MemberDistance(name, rng.normal(size=16).astype(np.float32), basis.astype(np.float32), 0.5, 2.0)
               for name in ("0-a", "1-b")]
    return ScopeModel(members, threshold=1.0, calibration={"validation": {"n": 10, "flagged": 0}},
                      fitted_for={"0-a": "aa" * 32}, poor_quality_threshold=3.0)


def _toy_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    block = _toy_model().save(folder)
    manifest = {"format": "lesion-desktop-ensemble", "members": [{"path": "0-a", "manifest_sha256": "aa" * 32},
                                                                  {"path": "1-b"}], "scope": block}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_scope_model_round_trips_without_pickle(tmp_path):
    folder = _toy_folder(tmp_path)
    model = load_scope(folder)
    assert model is not None and model.member_names == ["0-a", "1-b"]
    assert model.threshold == 1.0 and model.poor_quality_threshold == 3.0
    original = _toy_model()
    x = {m.name: np.random.default_rng(2).normal(size=(3, 16)).astype(np.float32) for m in original.members}
    np.testing.assert_allclose(model.feature_scores(x), original.feature_scores(x), rtol=1e-2, atol=1e-2)
    with zipfile.ZipFile(folder / ARRAYS_FILE) as z:
        assert all(name.endswith(".npy") for name in z.namelist())


def test_models_without_a_scope_model_have_none(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "lesion-desktop-ensemble", "members": []}))
    assert load_scope(tmp_path) is None


@pytest.mark.parametrize("damage", ["arrays_byte", "arrays_truncated", "truncated_and_resigned", "json_edited",
                                    "arrays_missing", "pickled_arrays", "threshold_nan", "other_members",
                                    "other_weights"])
def test_damaged_scope_files_are_refused(tmp_path, damage):
    folder = _toy_folder(tmp_path)
    arrays, doc_path, manifest_path = folder / ARRAYS_FILE, folder / SCOPE_FILE, folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())

    def rewrite_doc(change: dict) -> None:  # an edit that also updates the manifest's sha256: only the content is wrong
        doc = json.loads(doc_path.read_text())
        doc.update(change)
        doc_path.write_text(json.dumps(doc))
        manifest["scope"]["sha256"] = sha256_file(doc_path)
        manifest_path.write_text(json.dumps(manifest))

    if damage == "arrays_byte":
        data = bytearray(arrays.read_bytes())
        data[len(data) // 2] ^= 0xFF
        arrays.write_bytes(bytes(data))
    elif damage == "arrays_truncated":
        arrays.write_bytes(arrays.read_bytes()[:100])
    elif damage == "truncated_and_resigned":  # sha256 updated to match: the zip itself is unreadable
        arrays.write_bytes(arrays.read_bytes()[:100])
        rewrite_doc({"arrays_sha256": sha256_file(arrays)})
    elif damage == "json_edited":
        doc_path.write_text(doc_path.read_text().replace('"threshold": 1.0', '"threshold": 99.0'))
    elif damage == "arrays_missing":
        arrays.unlink()
    elif damage == "pickled_arrays":  # an object array needs pickle to load: np.load(allow_pickle=False) refuses it
        np.savez(arrays.with_suffix(".tmp.npz"), m0_mean=np.array([{"x": 1}], dtype=object))
        arrays.with_suffix(".tmp.npz").replace(arrays)
        rewrite_doc({"arrays_sha256": sha256_file(arrays)})
    elif damage == "threshold_nan":
        doc_path.write_text(doc_path.read_text().replace('"threshold": 1.0', '"threshold": NaN'))
        manifest["scope"]["sha256"] = sha256_file(doc_path)
        manifest_path.write_text(json.dumps(manifest))
    elif damage == "other_members":
        manifest["members"] = [{"path": "0-a"}, {"path": "2-c"}]
        manifest_path.write_text(json.dumps(manifest))
    elif damage == "other_weights":
        manifest["members"][0]["manifest_sha256"] = "bb" * 32
        manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError):
        load_scope(folder)


def test_check_says_why_in_plain_words():
    model = _toy_model()
    rng = np.random.default_rng(3)
    near = {m.name: m.mean + m.basis @ rng.normal(size=4).astype(np.float32) for m in model.members}
    far = {m.name: m.mean + 50 * rng.normal(size=16).astype(np.float32) for m in model.members}
    lesion = load_image(sorted((require_data(HAM) / "images").glob("*.jpg"))[0])
    ok = model.check(near, lesion)
    assert ok.in_scope and ok.reason == "" and ok.warning == ""
    out = model.check(far, lesion)
    assert not out.in_scope and out.kind == "features" and out.score > out.threshold
    assert out.reason.startswith("This does not look like a dermoscopy image") and "no diagnosis" in out.reason
    assert out.warning.startswith("out of scope: ")
    flat = model.check(near, np.full((300, 400, 3), 128, np.uint8))
    assert not flat.in_scope and flat.kind == "flat" and flat.reason.startswith(REASONS["flat"])


def test_unscored_features_are_never_in_scope():
    model = _toy_model()
    nan = {m.name: np.full(16, np.nan, np.float32) for m in model.members}
    lesion = load_image(sorted((require_data(HAM) / "images").glob("*.jpg"))[0])
    assert not model.check(nan, lesion).in_scope
    with pytest.raises(ValueError):
        model.check({"0-a": nan["0-a"]}, lesion)  # a member's features missing


# ---- the shipped default on real and generated pictures ------------------------------------------------------------

@pytest.fixture(scope="module")
def engine():
    from lesion_desktop.inference.open import load_engine

    return load_engine(DEFAULT, device="cpu")


@pytest.fixture(scope="module")
def shipped_scope():
    model = load_scope(DEFAULT)
    assert model is not None, "the shipped default has no scope model (python -m training scope)"
    return model


def _flags(model: ScopeModel, engine, images: list[np.ndarray]) -> list[str]:
    """The kind of each image's verdict ('' in scope), through the app's own path."""
    out = []
    for i in range(0, len(images), 32):
        batch = images[i : i + 32]
        for rgb, pred in zip(batch, engine.predict(batch), strict=True):
            out.append(model.check(pred.features, rgb).kind)
    return out


def test_shipped_gate_flags_pictures_that_are_not_dermoscopy(tmp_path_factory, engine, shipped_scope):
    folder = tmp_path_factory.mktemp("ood")
    paths = _ood_module().generate(folder, qt=False)
    assert len(paths) >= 45
    images = [load_image(p) for p in paths]
    kinds = _flags(shipped_scope, engine, images)
    missed = [p.name for p, k in zip(paths, kinds, strict=True) if not k]
    assert len(missed) <= 0.10 * len(paths), missed
    assert kinds.count("features") >= 10  # the feature distance does part of the work, not only the image checks


def _test_split_slice(n: int = 200) -> list[str]:
    from training.data import read_dataset
    from training.splits import lesion_grouped_split

    split = lesion_grouped_split(read_dataset(require_data(HAM)).records, seed=0)  # the shipped models' split
    return split["test"][:: max(1, len(split["test"]) // n)][:n]


def test_shipped_gate_passes_real_dermoscopy_images(engine, shipped_scope):
    ids = _test_split_slice()
    images = [load_image(HAM / "images" / f"{i}.jpg") for i in ids]
    kinds = _flags(shipped_scope, engine, images)
    flagged = [i for i, k in zip(ids, kinds, strict=True) if k]
    assert len(flagged) <= 0.02 * len(ids), flagged


def test_shipped_gate_passes_full_size_photos(engine, shipped_scope):
    paths = sorted((require_data(FULLRES) / "images").glob("*.jpg"))
    assert len(paths) == 150
    kinds = _flags(shipped_scope, engine, [load_image(p) for p in paths])
    flagged = [p.name for p, k in zip(paths, kinds, strict=True) if k]
    assert len(flagged) <= 2, flagged


def test_shipped_gate_leaves_poor_photos_of_real_lesions_to_the_quality_check(engine, shipped_scope):
    """Darkened or blurred real lesions: the quality check asks for a retake; the gate does not call them
    'not dermoscopy' (docs/scope.md gives the rates for each kind of degradation)."""
    ids = _test_split_slice(60)
    images = [load_image(HAM / "images" / f"{i}.jpg") for i in ids]
    degraded = [cv2.GaussianBlur((im.astype(np.float32) * 0.15).astype(np.uint8), (0, 0), 2.0) for im in images]
    kinds = _flags(shipped_scope, engine, degraded)
    assert sum(bool(k) for k in kinds) <= 3, kinds


def test_shipped_scope_is_recorded_in_the_manifest():
    manifest = json.loads((DEFAULT / "manifest.json").read_text())
    block = manifest["scope"]
    assert block["file"] == SCOPE_FILE and block["sha256"] == sha256_file(DEFAULT / SCOPE_FILE)
    model = load_scope_file(DEFAULT, block["sha256"])
    assert model.threshold == block["threshold"]
    cal = block["calibration"]
    assert cal["validation"]["rate"] <= 0.01 and cal["test"]["rate"] <= 0.01
    assert (DEFAULT / ARRAYS_FILE).stat().st_size < 4_000_000
