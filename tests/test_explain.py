from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from lesion_desktop.bundle import Ensemble, ModelBundle
from lesion_desktop.engine import EnsembleEngine
from lesion_desktop.explain import grad_cam, overlay
from lesion_desktop.imageio import load_image
from lesion_desktop.preprocess import PreprocessConfig
from lesion_desktop.registry import ARCHITECTURES, build_model
from tests.helpers import HAM, make_tiny_ensemble, require_data


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return EnsembleEngine(make_tiny_ensemble(tmp_path_factory.mktemp("models")), device="cpu")


@pytest.fixture(scope="module")
def image():
    require_data()
    return load_image(sorted((HAM / "images").glob("*.jpg"))[3])


def test_map_shape_range_and_top_class(engine, image):
    pred = engine.predict_one(image)
    cam = grad_cam(engine, image)
    assert cam.shape == pred.preprocessed.shape[:2] == (48, 64)
    assert cam.dtype == np.float32 and cam.min() >= 0 and cam.max() <= 1
    assert cam.max() == pytest.approx(1.0) or cam.max() == 0
    # defaulting to the ensemble's top class gives the same map as asking for it
    np.testing.assert_allclose(cam, grad_cam(engine, image, pred.top_index), atol=1e-5)


def test_map_depends_on_the_class_and_the_image(engine, image):
    maps = [grad_cam(engine, image, k) for k in range(7)]
    assert any(not np.allclose(maps[0], m) for m in maps[1:])
    flipped = grad_cam(engine, np.ascontiguousarray(image[:, ::-1]), 0)
    assert not np.allclose(flipped, maps[0])


def test_leaves_no_gradients_or_hooks_and_predictions_unchanged(engine, image):
    before = engine.predict_one(image).probabilities
    grad_cam(engine, image)
    for m in engine.ensemble.members:
        assert all(p.grad is None for p in m.model.parameters())
        assert all(not mod._forward_hooks for mod in m.model.modules())
    np.testing.assert_allclose(engine.predict_one(image).probabilities, before, atol=1e-6)


def test_concurrent_with_prediction(engine, image):
    errors: list[BaseException] = []

    def classify():
        try:
            for _ in range(5):
                engine.predict_one(image)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=classify)
    t.start()
    for _ in range(5):
        grad_cam(engine, image)
    t.join()
    assert not errors


def test_overlay_blends_at_image_size(image):
    cam = np.zeros((48, 64), np.float32)
    cam[10:20, 10:20] = 1.0
    out = overlay(image, cam, alpha=0.5)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)


@pytest.mark.parametrize("arch", ["mobilenet_v2", "densenet201"])
def test_real_architectures_hooks_work(arch, image):
    """DenseNet's in-place ReLU after norm5 is the case a naive backward hook breaks on."""
    torch.manual_seed(0)
    pre = PreprocessConfig(input_size=(64, 64))
    member = ModelBundle(path=__import__("pathlib").Path(arch), manifest={"architecture": arch},
                         model=build_model(arch).eval(), preprocess=pre, temperature=1.0)
    eng = EnsembleEngine.__new__(EnsembleEngine)
    eng.device = torch.device("cpu")
    eng._lock = threading.Lock()
    eng.ensemble = Ensemble(path=member.path, manifest={}, members=[member], weights=[1.0])
    cam = grad_cam(eng, image)
    assert cam.shape == (64, 64) and np.isfinite(cam).all()
    assert ARCHITECTURES[arch].gradcam_layer
