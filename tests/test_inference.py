"""One inference path: PyTorch and ONNX Runtime runners under one predict, temperature, weights, heat-maps,
the shipped graphs (no export at start), and the lite edition with PyTorch made unimportable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from lesion_desktop.bundle import load_bundle, save_bundle, save_ensemble
from lesion_desktop.errors import BundleError
from lesion_desktop.imageio import load_image
from lesion_desktop.inference import load_engine, open_engine
from lesion_desktop.inference.export import export_ensemble
from lesion_desktop.paths import bundled_models_dir
from lesion_desktop.preprocess import PreprocessConfig, normalise_batch, prepare_image
from lesion_desktop.registry import build_model, get_spec
from tests.helpers import FULLRES, REPO, require_data

NO_TORCH = (
    "import runpy, sys\n"
    "for m in ('torch', 'torchvision', 'timm', 'safetensors', 'onnx', 'onnxscript'):\n"
    "    sys.modules[m] = None\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)


def _confident(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights with a strong last layer, so probabilities are far from uniform and a mismatch shows."""
    torch.manual_seed(seed)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    torch.nn.init.normal_(last.weight, 0.0, 3.0)
    torch.nn.init.normal_(last.bias, 0.0, 1.0)
    return model.eval()


def _ensemble(folder: Path, archs: list[str], size: tuple[int, int], temps: list[float],
              weights: list[float]) -> Path:
    for i, arch in enumerate(archs):
        torch.manual_seed(i)
        spec = get_spec(arch)
        pre = PreprocessConfig(input_size=size, effective_size=(96, 128), mean=spec.mean, std=spec.std)
        save_bundle(_confident(build_model(arch), i), folder / f"m{i}", architecture=arch, preprocess=pre,
                    temperature=temps[i])
    return save_ensemble(folder, [(f"m{i}", w) for i, w in enumerate(weights)], name="inference-test")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A baseline CNN (logits only, Grad-CAM in PyTorch) and a MobileNetV2 (class activation maps), both exported."""
    folder = _ensemble(tmp_path_factory.mktemp("inference") / "ens", ["baseline_cnn", "mobilenet_v2"], (64, 80),
                       temps=[1.7, 0.6], weights=[1.0, 3.0])
    export_ensemble(folder)
    return folder


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (90 + 10 * k, 120 + 5 * k, 3), dtype=np.uint8) for k in range(n)]


def _raw_logits(member: Path, img: np.ndarray) -> np.ndarray:
    """The member's logits straight from PyTorch, outside the inference package."""
    b = load_bundle(member)
    with torch.no_grad():
        return b.model(normalise_batch(prepare_image(img, b.preprocess)[None], b.preprocess)).numpy()[0]


def test_auto_runs_members_with_graphs_on_onnx_runtime_and_matches_pytorch(models):
    images = _images(4)
    ref = load_engine(models, "cpu", backend="torch")
    onnx = load_engine(models, "cpu")
    assert ref.backend == "torch" and onnx.backend == "onnxruntime"
    for a, b in zip(ref.predict(images), onnx.predict(images), strict=True):
        np.testing.assert_allclose(b.probabilities, a.probabilities, atol=1e-5)
        for name in a.member_probabilities:
            np.testing.assert_allclose(b.member_probabilities[name], a.member_probabilities[name], atol=1e-5)
        np.testing.assert_allclose(b.features["m1"], a.features["m1"], rtol=1e-4, atol=1e-4)
        assert np.array_equal(a.preprocessed, b.preprocessed)
        assert a.top_code == b.top_code and a.probabilities.max() > 0.3  # far from uniform: a mismatch shows


def test_temperature_divides_each_members_logits_and_weights_average_them(models):
    img = _images(1, seed=5)[0]
    raw = [_raw_logits(models / f"m{i}", img) for i in range(2)]
    expected = []
    for logits, t in zip(raw, (1.7, 0.6), strict=True):
        z = logits / t
        expected.append(np.exp(z - z.max()) / np.exp(z - z.max()).sum())
    for backend in ("torch", "auto"):
        p = load_engine(models, "cpu", backend=backend).predict_one(img)
        for i, e in enumerate(expected):
            np.testing.assert_allclose(p.member_probabilities[f"m{i}"], e, atol=1e-5)
        np.testing.assert_allclose(p.probabilities, 0.25 * expected[0] + 0.75 * expected[1], atol=1e-5)


def test_onnx_runtime_path_runs_without_pytorch(models, tmp_path):
    """The lite edition: PyTorch cannot be imported at all, and its probabilities are PyTorch's."""
    img_path = sorted((require_data(FULLRES) / "images").glob("*.jpg"))[0]
    ref = load_engine(models, "cpu", backend="torch").predict_one(load_image(img_path))
    out = tmp_path / "p.csv"
    env = {**os.environ, "LESION_DESKTOP_HOME": str(tmp_path / "home")}
    r = subprocess.run([sys.executable, "-c", NO_TORCH, "lesion_desktop", "classify", str(img_path), "--models",
                        str(models), "-o", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    row = out.read_text().splitlines()[1].split(",")
    got = np.array([float(x) for x in row[2:9]])
    np.testing.assert_allclose(got, ref.probabilities, atol=2e-5)


def test_onnx_runner_never_calls_pytorch_in_process(models, monkeypatch):
    engine = load_engine(models, "cpu")
    assert engine.backend == "onnxruntime"

    def forbidden(*a, **k):
        raise AssertionError("PyTorch ran a module")

    monkeypatch.setattr(torch.nn.Module, "__call__", forbidden)
    assert engine.predict_one(_images(1)[0]).probabilities.shape == (7,)


def test_tta_agrees_between_runners_and_differs_from_one_view(models):
    img = _images(1, seed=2)[0]
    torch_tta = load_engine(models, "cpu", tta=True, backend="torch").predict_one(img).probabilities
    onnx_tta = load_engine(models, "cpu", tta=True).predict_one(img).probabilities
    plain = load_engine(models, "cpu").predict_one(img).probabilities
    np.testing.assert_allclose(onnx_tta, torch_tta, atol=1e-5)
    assert np.abs(onnx_tta - plain).max() > 1e-3


def test_class_activation_maps_equal_grad_cam(tmp_path):
    """For a linear head on pooled features the graph's CAM is Grad-CAM: the heat-map needs no gradients."""
    from lesion_desktop.explain import grad_cam

    folder = _ensemble(tmp_path / "one", ["mobilenet_v2"], (64, 80), temps=[1.0], weights=[1.0])
    engine = load_engine(folder, "cpu", backend="torch")
    img = _images(1, seed=3)[0]
    pred = engine.predict_one(img)
    assert pred.cams is not None and pred.cams.shape == (7, 64, 80)
    b = load_bundle(folder / "m0")
    for c in (pred.top_index, 4):
        reference = grad_cam([b], [1.0], img, c)
        np.testing.assert_allclose(engine.heatmap(img, pred, c), reference, atol=1e-4)
    assert np.abs(pred.cams[0] - pred.cams[4]).max() > 0.05  # each class has its own map


def test_heatmaps_in_every_runner(models):
    img = _images(1, seed=4)[0]
    for backend in ("torch", "auto"):
        engine = load_engine(models, "cpu", backend=backend)
        pred = engine.predict_one(img)
        heat = engine.heatmap(img, pred, 4)
        if backend == "torch":  # the baseline CNN's Grad-CAM through PyTorch
            assert heat is not None and heat.shape == (64, 80) and 0 <= heat.min() and heat.max() <= 1
        else:  # ONNX Runtime: the baseline member's graph has no maps, so no heat-map (never a wrong one)
            assert heat is None and not engine.explains


def test_shipped_default_opens_on_its_graphs_without_any_export(monkeypatch):
    import lesion_desktop.inference.export as export

    def forbidden(*a, **k):
        raise AssertionError("exported at start")

    monkeypatch.setattr(export, "export_graph", forbidden)
    monkeypatch.setattr(torch.onnx, "export", forbidden)
    engine, notes = open_engine(device="cpu")
    assert notes == [] and engine.backend == "onnxruntime" and engine.explains
    images = [load_image(p) for p in sorted((require_data(FULLRES) / "images").glob("*.jpg"))[:3]]
    got = engine.predict(images)
    ref = load_engine(bundled_models_dir(), "cpu", backend="torch").predict(images)
    for a, b in zip(ref, got, strict=True):
        assert np.abs(a.probabilities - b.probabilities).max() < 1e-4
        assert b.cams is not None and set(b.features) == set(engine.members)


def test_tampered_or_mismatched_graph_is_refused(models, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(models, bad)
    graph = bad / "m1" / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="modified or damaged"):
        load_engine(bad, "cpu")
    shutil.rmtree(bad)
    shutil.copytree(models, bad)
    info = json.loads((bad / "m0" / "onnx.json").read_text())
    info["weights_sha256"] = "0" * 64
    (bad / "m0" / "onnx.json").write_text(json.dumps(info))
    with pytest.raises(BundleError, match="other weights"):
        load_engine(bad, "cpu")


def test_lite_edition_refuses_unexported_models_and_explains_requests(tmp_path, monkeypatch):
    folder = _ensemble(tmp_path / "plain", ["baseline_cnn"], (48, 64), temps=[1.0], weights=[1.0])
    monkeypatch.setenv("LESION_DESKTOP_EDITION", "lite")
    with pytest.raises(BundleError, match="no ONNX export"):
        load_engine(folder)
    engine = load_engine(bundled_models_dir(), device="cuda")
    assert engine.device == "cpu" and "CPU only" in engine.device_note
    monkeypatch.delenv("LESION_DESKTOP_EDITION")
    plain = load_engine(folder, "cpu")  # the full edition runs it on PyTorch, nothing exported at start
    assert plain.backend == "torch" and not (folder / "model.onnx").exists()


@pytest.mark.parametrize("edit", [
    {"weight": 10**400}, {"weight": float("nan")}, {"weight": -1}, {"path": "../x"}, {"path": "a\x00b"},
])
def test_both_loaders_refuse_the_same_bad_ensemble_entries(models, tmp_path, monkeypatch, edit):
    bad = tmp_path / "bad"
    shutil.copytree(models, bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["members"][0].update(edit)
    (bad / "manifest.json").write_text(json.dumps(m).replace("NaN", "NaN"))
    with pytest.raises(BundleError):
        load_engine(bad, "cpu", backend="torch")
    monkeypatch.setenv("LESION_DESKTOP_EDITION", "lite")
    with pytest.raises(BundleError):
        load_engine(bad)


@pytest.mark.parametrize("edit", [{"format_version": 2}, {"temperature": 10**400}, {"classes": ["nv"]}])
def test_both_loaders_refuse_the_same_bad_member_manifests(models, tmp_path, monkeypatch, edit):
    bad = tmp_path / "bad"
    shutil.copytree(models, bad)
    path = bad / "m1" / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    ens = json.loads((bad / "manifest.json").read_text())
    for e in ens["members"]:
        e.pop("manifest_sha256")
    (bad / "manifest.json").write_text(json.dumps(ens))
    with pytest.raises(BundleError):
        load_engine(bad, "cpu", backend="torch")
    monkeypatch.setenv("LESION_DESKTOP_EDITION", "lite")
    with pytest.raises(BundleError):
        load_engine(bad)


def test_engine_is_safe_from_several_threads(models):
    engine = load_engine(models, "cpu")
    imgs = _images(6)
    expected = [p.probabilities for p in engine.predict(imgs)]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = engine.predict_one(imgs[i]).probabilities

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(imgs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, e in enumerate(expected):
        np.testing.assert_allclose(results[i], e, atol=1e-5)


@pytest.mark.slow
def test_lite_window_classifies_with_heatmaps_and_offers_no_retraining(tmp_path):
    """The lite edition's GUI on the shipped models, PyTorch unimportable: classifies, quits with 0."""
    image = sorted((require_data(FULLRES) / "images").glob("*.jpg"))[0]
    env = {**os.environ, "LESION_DESKTOP_HOME": str(tmp_path / "home"), "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run([sys.executable, "-c", NO_TORCH, "lesion_desktop", "--open", str(image),
                        "--quit-after-result"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    probe = (
        "import sys\n"
        "for m in ('torch', 'torchvision', 'timm', 'safetensors'):\n"
        "    sys.modules[m] = None\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from lesion_desktop.qt.main_window import MainWindow\n"
        "w = MainWindow()\n"
        "print(w.actions_.retrain.isVisible())\n"
        "w.close()\n"
    )
    env["LESION_DESKTOP_HOME"] = str(tmp_path / "home2")
    p = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[-1] == "False"


def test_on_a_cpu_the_shipped_models_classify_without_importing_pytorch(tmp_path):
    """PyTorch's import alone costs ~2 s of every start and every `classify`: with graphs it is not needed."""
    probe = ("import sys, numpy as np\n"
             "from lesion_desktop.inference import load_engine\n"
             "from lesion_desktop.paths import bundled_models_dir\n"
             "e = load_engine(bundled_models_dir(), 'cpu')\n"
             "p = e.predict_one(np.full((150, 200, 3), 128, np.uint8))\n"
             "print(e.backend, 'torch' in sys.modules, round(float(p.probabilities.sum()), 6))\n")
    env = {**os.environ, "LESION_DESKTOP_HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-500:]
    assert r.stdout.split() == ["onnxruntime", "False", "1.0"]
