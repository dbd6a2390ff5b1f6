"""The optional ONNX Runtime backend gives PyTorch's probabilities, caches its export and falls back cleanly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lesion_desktop import onnx_backend
from lesion_desktop.bundle import save_bundle, save_ensemble
from lesion_desktop.engine import EnsembleEngine
from lesion_desktop.preprocess import PreprocessConfig
from lesion_desktop.registry import build_model, get_spec
from tests.helpers import FULLRES, require_data

# The test extra installs onnxruntime: its absence is a failed install, never a reason to skip.
needs_ort = pytest.mark.usefixtures("_require_onnxruntime")


@pytest.fixture
def _require_onnxruntime() -> None:
    assert onnx_backend.available(), "onnxruntime is missing: install the package with its test extra"


def _confident(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights with a strong last layer, so probabilities are far from uniform and a mismatch shows."""
    torch.manual_seed(seed)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    torch.nn.init.normal_(last.weight, 0.0, 3.0)
    torch.nn.init.normal_(last.bias, 0.0, 1.0)
    return model


def _ensemble(folder: Path, archs: list[str], input_size: tuple[int, int]) -> Path:
    for i, arch in enumerate(archs):
        torch.manual_seed(i)
        spec = get_spec(arch)
        model = _confident(build_model(arch).eval(), i)
        pre = PreprocessConfig(input_size=input_size, effective_size=input_size, mean=spec.mean, std=spec.std)
        save_bundle(model, folder / f"m{i}", architecture=arch, preprocess=pre)
    return save_ensemble(folder, [(f"m{i}", 1.0 + i) for i in range(len(archs))], name="onnx-test")


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (90 + 10 * k, 120 + 5 * k, 3), dtype=np.uint8) for k in range(n)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _ensemble(tmp_path_factory.mktemp("tiny-onnx"), ["baseline_cnn", "baseline_cnn"], (48, 64))


@needs_ort
def test_onnx_probabilities_match_pytorch(tiny):
    ref = EnsembleEngine(tiny, "cpu", backend="torch")
    ort = EnsembleEngine(tiny, "cpu", backend="onnx")
    assert (ref.backend, ort.backend) == ("torch", "onnx")
    assert ort.device_note == ""
    images = _images(5)
    a, b = ref.predict(images), ort.predict(images)
    pa = np.stack([p.probabilities for p in a])
    pb = np.stack([p.probabilities for p in b])
    assert pa.max() > 0.4, "test models too close to uniform to show a mismatch"
    assert np.abs(pa - pb).max() < 1e-4
    for x, y in zip(a, b, strict=True):
        assert x.top_code == y.top_code
        for name in x.member_probabilities:
            assert np.abs(x.member_probabilities[name] - y.member_probabilities[name]).max() < 1e-4


@needs_ort
def test_onnx_tta_matches_pytorch(tiny):
    """TTA's rotated views have another shape than the exported graph: they run on PyTorch, results agree."""
    img = _images(1, seed=3)[0]
    a = EnsembleEngine(tiny, "cpu", tta=True, backend="torch").predict_one(img).probabilities
    b = EnsembleEngine(tiny, "cpu", tta=True, backend="onnx").predict_one(img).probabilities
    assert np.abs(a - b).max() < 1e-4


@needs_ort
def test_export_is_cached_and_reused(tiny, monkeypatch, tmp_path):
    EnsembleEngine(tiny, "cpu", backend="onnx")
    files = sorted(onnx_backend.default_cache_dir().glob("*.onnx"))
    assert len(files) == 2, files  # one graph per member (same architecture, different weights)
    calls: list[Path] = []
    real = onnx_backend.export_onnx
    monkeypatch.setattr(onnx_backend, "export_onnx", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    engine = EnsembleEngine(tiny, "cpu", backend="onnx")
    assert engine.backend == "onnx" and calls == []


@needs_ort
def test_damaged_cache_file_is_exported_again(tiny):
    EnsembleEngine(tiny, "cpu", backend="onnx")
    for f in onnx_backend.default_cache_dir().glob("*.onnx"):
        f.write_bytes(b"not an onnx file")
    engine = EnsembleEngine(tiny, "cpu", backend="onnx")
    assert engine.backend == "onnx"
    assert engine.predict_one(_images(1)[0]).probabilities.sum() == pytest.approx(1.0)


def test_falls_back_to_pytorch_without_onnxruntime(tiny, monkeypatch):
    monkeypatch.setattr(onnx_backend, "available", lambda: False)
    auto = EnsembleEngine(tiny, "cpu", backend="auto")
    assert auto.backend == "torch" and auto.device_note == ""
    forced = EnsembleEngine(tiny, "cpu", backend="onnx")
    assert forced.backend == "torch"
    assert "ONNX Runtime is not installed" in forced.device_note
    assert forced.predict_one(_images(1)[0]).probabilities.sum() == pytest.approx(1.0)


@needs_ort
def test_export_failure_falls_back_with_a_note(tiny, monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("exporter bug")

    monkeypatch.setattr(onnx_backend, "export_onnx", broken)
    engine = EnsembleEngine(tiny, "cpu", backend="onnx")
    assert engine.backend == "torch"
    assert "could not be prepared for ONNX Runtime" in engine.device_note
    assert EnsembleEngine(tiny, "cpu", backend="auto").device_note == ""


def test_torch_backend_and_unknown_backend(tiny):
    assert EnsembleEngine(tiny, "cpu", backend="torch").backend == "torch"
    odd = EnsembleEngine(tiny, "cpu", backend="tensorrt")
    assert odd.backend == "torch" and "Unknown backend" in odd.device_note


def test_auto_keeps_pytorch_for_unmeasured_architectures(tiny):
    assert "baseline_cnn" not in onnx_backend.AUTO_ARCHITECTURES
    assert EnsembleEngine(tiny, "cpu", backend="auto").backend == "torch"


@needs_ort
@pytest.mark.slow
def test_default_architectures_match_pytorch_on_real_images(tmp_path):
    """The shipped ensemble's architectures at their real input size, on real photos: auto picks ONNX."""
    models = _ensemble(tmp_path / "default", ["mobilenet_v2", "efficientnet_lite0"], (150, 200))
    from lesion_desktop.imageio import load_image

    images = [load_image(p) for p in sorted(require_data(FULLRES).glob("images/*.jpg"))[:4]]
    ref = EnsembleEngine(models, "cpu", backend="torch").predict(images)
    auto = EnsembleEngine(models, "cpu", backend="auto")
    assert auto.backend == "onnx"
    got = auto.predict(images)
    diff = max(np.abs(a.probabilities - b.probabilities).max() for a, b in zip(ref, got, strict=True))
    assert diff < 1e-4
    assert [a.top_code for a in ref] == [b.top_code for b in got]


@needs_ort
def test_a_shipped_graph_is_used_without_exporting(tmp_path, monkeypatch):
    """packaging/export_onnx.py's model.onnx + onnx.json beside the weights: no export at first start."""
    import json

    from lesion_desktop.bundle import load_bundle, sha256_file
    from lesion_desktop.onnx_runtime_engine import ONNX_FILE, ONNX_FORMAT, ONNX_FORMAT_VERSION, ONNX_MANIFEST

    models = _ensemble(tmp_path / "ens", ["baseline_cnn"], (48, 64))
    member = load_bundle(models / "m0")
    onnx_backend.export_onnx(member.model, (48, 64), models / "m0" / ONNX_FILE)
    info = {"format": ONNX_FORMAT, "format_version": ONNX_FORMAT_VERSION, "onnx_file": ONNX_FILE,
            "onnx_sha256": sha256_file(models / "m0" / ONNX_FILE),
            "weights_sha256": member.manifest["weights_sha256"], "input_size": [48, 64]}
    (models / "m0" / ONNX_MANIFEST).write_text(json.dumps(info))
    exports: list[object] = []
    real = onnx_backend.export_onnx
    monkeypatch.setattr(onnx_backend, "export_onnx", lambda *a, **k: exports.append(a) or real(*a, **k))
    img = _images(1)[0]
    ref = EnsembleEngine(models, "cpu", backend="torch").predict_one(img).probabilities
    engine = EnsembleEngine(models, "cpu", backend="onnx")
    assert engine.backend == "onnx" and exports == []
    assert np.abs(engine.predict_one(img).probabilities - ref).max() < 1e-4
    # A graph that no longer matches its description is ignored: exported (and cached) instead.
    (models / "m0" / ONNX_FILE).write_bytes((models / "m0" / ONNX_FILE).read_bytes() + b"\0")
    engine = EnsembleEngine(models, "cpu", backend="onnx")
    assert engine.backend == "onnx" and len(exports) == 1
