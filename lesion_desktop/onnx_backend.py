"""Optional CPU backend: each ensemble member exported once to ONNX and run by ONNX Runtime.

Why: on a laptop CPU, ONNX Runtime runs our small CNNs 2-3x faster than eager PyTorch (fused
conv+BN+activation kernels, no Python dispatch per layer); see docs/benchmarks.md. Everything else (loading
and checking the bundle, preprocessing, temperature, averaging, Grad-CAM) stays in PyTorch, so the two
backends give the same probabilities to about 1e-6 (tests/test_onnx_backend.py checks it).

Optional: needs the `onnx` extra (onnxruntime, onnx, onnxscript). Without it, or when a model cannot be
exported, the engine runs PyTorch and says why in `EnsembleEngine.device_note`.

A graph shipped beside the weights (`model.onnx` + `onnx.json`, as packaging/export_onnx.py writes them) is used
when it verifiably matches the weights; otherwise the export is cached in the user's data folder, keyed by the
weights' sha256 (checked at load), the architecture, the input size and the torch version, so the export
(10-20 s for the default ensemble on a laptop) happens once per model. The graph has a dynamic batch dimension
and a fixed input size (other sizes, e.g. TTA's rotated views, run on PyTorch).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from lesion_desktop.bundle import Ensemble, ModelBundle

BACKENDS = ("auto", "torch", "onnx")
EXPORT_VERSION = 1  # bump when the export settings change: old cached graphs are then ignored
OPSET = 18
# "auto" picks ONNX Runtime only for architectures where benchmarks/bench_latency.py measured it faster
# (and that export cleanly); "onnx" forces it for any architecture.
AUTO_ARCHITECTURES = frozenset({"mobilenet_v2", "efficientnet_lite0"})
_log = logging.getLogger(__name__)

Forward = Callable[[torch.Tensor], torch.Tensor]


def available() -> bool:
    """True when onnxruntime and the exporter's dependencies are installed (nothing is imported)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript"))


def default_cache_dir() -> Path:
    from lesion_desktop.paths import data_dir

    return data_dir() / "cache" / "onnx"


def cache_key(bundle: ModelBundle) -> str:
    """Changes whenever the weights, architecture, input size, exporter or export settings change."""
    parts = [bundle.manifest.get("weights_sha256", ""), bundle.architecture,
             "x".join(map(str, bundle.preprocess.input_size)), torch.__version__, str(EXPORT_VERSION), str(OPSET)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def export_onnx(model: torch.nn.Module, input_size: tuple[int, int], path: Path) -> Path:
    """Export `model` (eval mode, CPU) with a dynamic batch dimension; written aside then renamed."""
    import contextlib
    import io

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.part-{os.getpid()}.onnx")
    x = torch.zeros(2, 3, *input_size)
    was_training = model.training
    model.eval()
    try:
        # The exporter prints progress and warns about internals; neither is for the user.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, (x,), dynamo=True, input_names=["input"], output_names=["logits"], opset_version=OPSET,
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},), verbose=False,
            )
            if program is None:
                raise RuntimeError("the exporter returned no program")
            program.save(str(tmp))
        os.replace(tmp, path)
    finally:
        model.train(was_training)
        if tmp.exists():
            tmp.unlink()
    return path


class OnnxMember:
    """A member's forward pass on ONNX Runtime; inputs of another size than exported run on PyTorch."""

    def __init__(self, onnx_path: Path, fallback: torch.nn.Module, input_size: tuple[int, int],
                 threads: int | None = None, spinning: bool = False) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning worker threads would steal the GUI thread's core between images on a 2-core laptop.
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.path = Path(onnx_path)
        self.fallback = fallback
        self.input_size = tuple(input_size)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or tuple(x.shape[2:]) != self.input_size:
            return self.fallback(x)
        arr = np.ascontiguousarray(x.detach().numpy(), dtype=np.float32)
        (logits,) = self.session.run(None, {self.input_name: arr})
        return torch.from_numpy(logits)


def shipped_graph(bundle: ModelBundle) -> Path | None:
    """The graph shipped beside the weights (packaging/export_onnx.py's model.onnx + onnx.json), if it is
    verifiably made from these weights at this input size; None otherwise (then the cache or an export)."""
    import json

    from lesion_desktop.bundle import sha256_file
    from lesion_desktop.onnx_runtime_engine import ONNX_FILE, ONNX_FORMAT, ONNX_FORMAT_VERSION, ONNX_MANIFEST

    info_path = bundle.path / ONNX_MANIFEST
    if not info_path.is_file():
        return None
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        name = str(info.get("onnx_file", ONNX_FILE))
        graph = bundle.path / name
        ok = (info.get("format") == ONNX_FORMAT and info.get("format_version") == ONNX_FORMAT_VERSION
              and Path(name).name == name and graph.is_file()
              and info.get("weights_sha256") == bundle.manifest.get("weights_sha256")
              and list(info.get("input_size", [])) == list(bundle.preprocess.input_size)
              and info.get("onnx_sha256") == sha256_file(graph))
    except (OSError, ValueError, AttributeError):
        ok = False
    if not ok:
        _log.warning("Ignoring the ONNX graph shipped in %s: it does not match the bundle", bundle.path)
        return None
    return graph


def load_member(bundle: ModelBundle, cache_dir: Path | None = None, threads: int | None = None) -> OnnxMember:
    """The member's ONNX Runtime session: the shipped graph if valid, else the cached or a new export."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    h, w = bundle.preprocess.input_size
    shipped = shipped_graph(bundle)
    if shipped is not None:
        try:
            return OnnxMember(shipped, bundle.model, (h, w), threads)
        except Exception:
            _log.warning("ONNX Runtime cannot load the shipped graph %s; exporting instead", shipped, exc_info=True)
    path = cache_dir / f"{bundle.architecture}-{h}x{w}-{cache_key(bundle)}.onnx"
    if not path.is_file():
        _log.info("Exporting %s to ONNX (%s); this happens once per model", bundle.name, path)
        export_onnx(bundle.model, (h, w), path)
    try:
        return OnnxMember(path, bundle.model, (h, w), threads)
    except Exception:
        # A damaged cache file (e.g. disk full during an old export): export again once.
        _log.warning("Cached ONNX graph %s is unusable; exporting again", path, exc_info=True)
        export_onnx(bundle.model, (h, w), path)
        return OnnxMember(path, bundle.model, (h, w), threads)


def select_backend(ensemble: Ensemble, device: torch.device, backend: str = "auto",
                   cache_dir: Path | None = None) -> tuple[str, list[Forward] | None, str]:
    """(backend in use, one forward per member or None for plain PyTorch, a note for the user or "").

    "auto": ONNX Runtime on the CPU when installed and every member's architecture is one where it was
    measured faster, silently PyTorch otherwise; "onnx": ONNX Runtime whatever the architecture, with a note
    when it cannot be honoured; "torch": always PyTorch.
    """
    req = (backend or "auto").lower()
    if req not in BACKENDS:
        return "torch", None, f"Unknown backend {backend!r}: using PyTorch."
    if req == "torch":
        return "torch", None, ""
    if device.type != "cpu":
        return "torch", None, ("The ONNX backend runs on the CPU only: using PyTorch on "
                               f"{device.type}." if req == "onnx" else "")
    if not available():
        return "torch", None, ("ONNX Runtime is not installed (pip install 'lesion-desktop[onnx]'): "
                               "using PyTorch." if req == "onnx" else "")
    if req == "auto" and not all(m.architecture in AUTO_ARCHITECTURES for m in ensemble.members):
        return "torch", None, ""
    try:
        runners: list[Forward] = [load_member(m, cache_dir) for m in ensemble.members]
    except Exception as e:  # an architecture the exporter cannot handle must not stop the app
        _log.warning("ONNX backend unavailable, using PyTorch", exc_info=True)
        note = f"The models could not be prepared for ONNX Runtime ({type(e).__name__}): using PyTorch."
        return "torch", None, note if req == "onnx" else ""
    return "onnx", runners, ""

