"""The lite edition's torch-free engine: PyTorch's probabilities from the build-time ONNX export, checked files,
and a CLI and GUI that run with PyTorch made unimportable (as in the lite bundle)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lesion_desktop import onnx_backend
from lesion_desktop.bundle import save_bundle, save_ensemble
from lesion_desktop.engine import EnsembleEngine
from lesion_desktop.errors import BundleError
from lesion_desktop.preprocess import PreprocessConfig
from lesion_desktop.registry import build_model
from tests.helpers import FULLRES, REPO, require_data

assert onnx_backend.available(), "onnxruntime is missing: install the package with its test extra (never skipped)"

# Run a module the way the lite bundle runs it: PyTorch and the exporter cannot be imported.
NO_TORCH = (
    "import runpy, sys\n"
    "for m in ('torch', 'torchvision', 'timm', 'safetensors', 'onnx', 'onnxscript'):\n"
    "    sys.modules[m] = None\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)


def _export_tool():  # packaging/export_onnx.py is a build script, not part of the package
    spec = importlib.util.spec_from_file_location("export_onnx", REPO / "packaging" / "export_onnx.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A two-member ensemble with confident (non-uniform) outputs, different temperatures and weights."""
    root = tmp_path_factory.mktemp("onnx-rt")
    src = root / "ensemble"
    for i in range(2):
        torch.manual_seed(i)
        model = build_model("baseline_cnn").eval()
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        torch.nn.init.normal_(last.weight, 0.0, 3.0)
        save_bundle(model, src / f"m{i}", architecture="baseline_cnn",
                    preprocess=PreprocessConfig(input_size=(48, 64)), temperature=1.0 + 0.5 * i)
    save_ensemble(src, [("m0", 1.0), ("m1", 2.0)], name="lite-test")
    out = root / "lite"
    assert _export_tool().main(["--models", str(src), "--output", str(out), "--tolerance", "1e-5"]) == 0
    return src, out


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (120 + 37 * k, 160 + 11 * k, 3), dtype=np.uint8) for k in range(n)]


def test_export_ships_graphs_not_weights(exported: tuple[Path, Path]) -> None:
    _, out = exported
    assert sorted(p.name for p in (out / "m0").iterdir()) == ["manifest.json", "model.onnx", "onnx.json"]
    info = json.loads((out / "m1" / "onnx.json").read_text())
    assert info["input_size"] == [48, 64]
    assert info["check"]["ensemble_max_abs_diff"] <= 1e-5


def test_probabilities_match_pytorch(exported: tuple[Path, Path]) -> None:
    from lesion_desktop.onnx_runtime_engine import OnnxRuntimeEngine

    src, out = exported
    images = _images(5)
    ref = EnsembleEngine(src, device="cpu", backend="torch").predict(images)
    got = OnnxRuntimeEngine(out).predict(images)
    diff = max(float(np.abs(a.probabilities - b.probabilities).max()) for a, b in zip(ref, got, strict=True))
    assert diff < 1e-5
    assert [p.top_code for p in got] == [p.top_code for p in ref]
    assert max(float(p.probabilities.max()) for p in got) > 0.25  # far from uniform (1/7): a mismatch shows
    for a, b in zip(ref, got, strict=True):
        for name in a.member_probabilities:
            np.testing.assert_allclose(b.member_probabilities[name], a.member_probabilities[name], atol=1e-5)
        assert np.array_equal(a.preprocessed, b.preprocessed)


def test_tta_and_gpu_requests_are_explained(exported: tuple[Path, Path]) -> None:
    from lesion_desktop.onnx_runtime_engine import OnnxRuntimeEngine

    engine = OnnxRuntimeEngine(exported[1], device="cuda", tta=True)
    assert engine.tta is False and str(engine.device) == "cpu"
    assert "CPU only" in engine.device_note and "Test-time augmentation" in engine.device_note


def test_tampered_graph_is_refused(exported: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    from lesion_desktop.onnx_runtime_engine import OnnxRuntimeEngine

    bad = tmp_path / "lite"
    shutil.copytree(exported[1], bad)
    with open(bad / "m1" / "model.onnx", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(BundleError, match="modified or damaged"):
        OnnxRuntimeEngine(bad)


def test_unexported_models_get_a_clear_error(exported: tuple[Path, Path]) -> None:
    from lesion_desktop.onnx_runtime_engine import OnnxRuntimeEngine

    with pytest.raises(BundleError, match="no ONNX export"):
        OnnxRuntimeEngine(exported[0])


def _run_without_torch(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LESION_DESKTOP_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([sys.executable, "-c", NO_TORCH, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_cli_runs_without_torch(exported: tuple[Path, Path], tmp_path: Path) -> None:
    image = sorted(require_data(FULLRES).rglob("*.jpg"))[0]
    out = tmp_path / "preds.csv"
    r = _run_without_torch(["lesion_desktop", "classify", str(image), "--models", str(exported[1]),
                            "-o", str(out)], tmp_path / "home")
    assert r.returncode == 0, r.stderr
    rows = out.read_text().splitlines()
    assert len(rows) == 2 and rows[1].split(",")[1] in {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}


@pytest.mark.slow
def test_gui_classifies_without_torch(exported: tuple[Path, Path], tmp_path: Path) -> None:
    """The lite edition's GUI: opens, classifies one image, quits with 0; retraining is not offered."""
    image = sorted(require_data(FULLRES).rglob("*.jpg"))[0]
    r = _run_without_torch(["lesion_desktop", "--models", str(exported[1]), "--open", str(image),
                            "--quit-after-result"], tmp_path / "home")
    assert r.returncode == 0, r.stderr
    probe = (
        "import sys\n"
        "for m in ('torch', 'torchvision', 'timm', 'safetensors'):\n"
        "    sys.modules[m] = None\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from lesion_desktop.qt.main_window import MainWindow\n"
        f"w = MainWindow(models_dir_override={str(exported[1])!r})\n"
        "print(w.actions_.retrain.isVisible(), w.actions_.heatmap.isVisible())\n"
        "w.close()\n"
    )
    env = {**os.environ, "LESION_DESKTOP_HOME": str(tmp_path / "home2"), "QT_QPA_PLATFORM": "offscreen"}
    p = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[-2:] == ["False", "False"]
