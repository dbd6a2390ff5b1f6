from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from lesion_desktop.bundle import ModelBundle
from lesion_desktop.explain import grad_cam
from lesion_desktop.heatmap import overlay
from lesion_desktop.imageio import load_image
from lesion_desktop.preprocess import PreprocessConfig
from lesion_desktop.registry import ARCHITECTURES, build_model
from tests.helpers import HAM, make_tiny_ensemble, require_data


class _Tiny:
    """The tiny ensemble's PyTorch members and a predict through the one inference path."""

    def __init__(self, folder) -> None:
        from lesion_desktop.inference import load_engine

        self.engine = load_engine(folder, "cpu", backend="torch")
        self.members = [r.bundle for r in self.engine.runners]

    def predict_one(self, image):
        return self.engine.predict_one(image)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return _Tiny(make_tiny_ensemble(tmp_path_factory.mktemp("models")))


def gcam(tiny, image, c=None):
    """The engine's heat-map: Grad-CAM under the engine's lock for the baseline CNN members."""
    return tiny.engine.heatmap(image, tiny.engine.predict_one(image), c)


@pytest.fixture(scope="module")
def image():
    require_data()
    return load_image(sorted((HAM / "images").glob("*.jpg"))[3])


def test_map_shape_range_and_top_class(engine, image):
    pred = engine.predict_one(image)
    cam = gcam(engine, image)
    assert cam.shape == pred.preprocessed.shape[:2] == (48, 64)
    assert cam.dtype == np.float32 and cam.min() >= 0 and cam.max() <= 1
    assert cam.max() == pytest.approx(1.0) or cam.max() == 0
    # defaulting to the ensemble's top class gives the same map as asking for it
    np.testing.assert_allclose(cam, gcam(engine, image, pred.top_index), atol=1e-5)


def test_map_depends_on_the_class_and_the_image(engine, image):
    maps = [gcam(engine, image, k) for k in range(7)]
    assert any(not np.allclose(maps[0], m) for m in maps[1:])
    flipped = gcam(engine, np.ascontiguousarray(image[:, ::-1]), 0)
    assert not np.allclose(flipped, maps[0])


def test_leaves_no_gradients_or_hooks_and_predictions_unchanged(engine, image):
    before = engine.predict_one(image).probabilities
    gcam(engine, image)
    for m in engine.members:
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
        gcam(engine, image)
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
    cam = grad_cam([member], [1.0], image)
    assert cam.shape == (64, 64) and np.isfinite(cam).all()
    assert ARCHITECTURES[arch].gradcam_layer
