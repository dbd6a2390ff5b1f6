"""Classifying without PyTorch: the ensemble's ONNX export run by ONNX Runtime on the CPU.

Why: the lite edition for clinic PCs without an NVIDIA GPU ships neither PyTorch (about 5 GB with its
CUDA libraries) nor torchvision, whose PyPI build cannot load beside a CPU-only PyTorch. The export is
made once, at build time, by `packaging/export_onnx.py` from the very bundles the full edition runs: each
member folder keeps its manifest (preprocessing, temperature) and gains `model.onnx` plus `onnx.json`,
which records the graph's sha256 and the sha256 of the weights it was exported from.

Everything around the network is the full engine's: the same `prepare_image`, normalisation written in
numpy to the same float32 arithmetic as `normalise_batch`, temperature, weighted average and the same
`Prediction`; `tests/test_onnx_runtime_engine.py` checks the probabilities against `EnsembleEngine`.
Nothing here imports torch (the test checks that too).

Not available here: test-time augmentation (the graphs have a fixed input size, so rotated views cannot
run) and Grad-CAM heat-maps (no gradients); the engine says so in `device_note`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.errors import BundleError
from lesion_desktop.manifest_io import MANIFEST, read_json_object, sha256_file
from lesion_desktop.prediction import Prediction
from lesion_desktop.preprocess import PreprocessConfig, prepare_for_members

ONNX_FORMAT = "lesion-desktop-onnx"
ONNX_FORMAT_VERSION = 1
ONNX_MANIFEST = "onnx.json"
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class CpuDevice:
    """Stands in for torch.device("cpu") where the GUI shows or records the device."""

    type: str = "cpu"
    index: int | None = None

    def __str__(self) -> str:
        return "cpu"


@dataclass
class OnnxMember:
    path: Path
    manifest: dict[str, Any]
    preprocess: PreprocessConfig
    temperature: float
    onnx_manifest: dict[str, Any]
    session: Any = field(repr=False)
    input_name: str = "input"

    @property
    def architecture(self) -> str:
        return str(self.manifest["architecture"])

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class OnnxEnsemble:
    """Shaped like bundle.Ensemble, so the About box and settings describe either engine's models."""

    path: Path
    manifest: dict[str, Any]
    members: list[OnnxMember]
    weights: list[float] = field(default_factory=list)

    @property
    def version(self) -> str:
        return str(self.manifest.get("name") or self.path.name)


def normalise_batch_np(batch_uint8: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """NHWC uint8 -> NCHW float32, the same float32 arithmetic as preprocess.normalise_batch."""
    x = np.asarray(batch_uint8)
    if x.ndim == 3:
        x = x[None]
    t = x.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    mean = np.asarray(cfg.mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(cfg.std, dtype=np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((t - mean) / std, dtype=np.float32)


def softmax_np(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or max(1, min(os.cpu_count() or 1, 8))
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning worker threads would steal the GUI thread's core between images on a 2-core PC.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def load_member(folder: Path, threads: int | None = None) -> OnnxMember:
    """One member: its manifest, its ONNX export (checked against the manifest's weights) and a session."""
    m = read_json_object(folder / MANIFEST)
    if m.get("format") != "lesion-desktop-model":
        raise BundleError(f"{folder}: not a model bundle (format {m.get('format')!r}).")
    if m.get("classes") != list(CLASS_CODES):
        raise BundleError(f"{folder}: the model's classes {m.get('classes')} do not match {list(CLASS_CODES)}.")
    try:
        pre = PreprocessConfig.from_dict(m.get("preprocessing"))  # type: ignore[arg-type]
    except ValueError as e:
        raise BundleError(f"{folder}: bad preprocessing in manifest: {e}.") from None
    temp = m.get("temperature")
    if not isinstance(temp, int | float) or isinstance(temp, bool) or not (math.isfinite(temp) and 0.05 <= temp <= 20):
        raise BundleError(f"{folder}: temperature {temp!r} is missing or outside 0.05..20.")
    if not (folder / ONNX_MANIFEST).is_file():
        raise BundleError(
            f"{folder} has no ONNX export ({ONNX_MANIFEST}). The lite edition runs only models exported for it: "
            "use the full edition for retrained models, or export them with packaging/export_onnx.py."
        )
    om = read_json_object(folder / ONNX_MANIFEST)
    if om.get("format") != ONNX_FORMAT or om.get("format_version") != ONNX_FORMAT_VERSION:
        raise BundleError(f"{folder}: {ONNX_MANIFEST} is not a supported ONNX export description.")
    if om.get("weights_sha256") != m.get("weights_sha256"):
        raise BundleError(f"{folder}: the ONNX export was made from other weights than the manifest names; "
                          "export the models again.")
    onnx_path = folder / str(om.get("onnx_file", ONNX_FILE))
    if onnx_path.parent != folder or not onnx_path.is_file():
        raise BundleError(f"{folder}: the ONNX graph {onnx_path.name} is missing.")
    if sha256_file(onnx_path) != om.get("onnx_sha256"):
        raise BundleError(f"{folder}: {onnx_path.name} has been modified or damaged (sha256 mismatch).")
    if list(om.get("input_size", [])) != list(pre.input_size):
        raise BundleError(f"{folder}: the ONNX graph's input size {om.get('input_size')} is not the manifest's "
                          f"{list(pre.input_size)}.")
    try:
        session = _session(onnx_path, threads)
    except Exception as e:  # onnxruntime raises its own exception types for unreadable graphs
        raise BundleError(f"{folder}: ONNX Runtime cannot load {onnx_path.name} ({type(e).__name__}: {e}).") from None
    return OnnxMember(folder, m, pre, float(temp), om, session, session.get_inputs()[0].name)


def load_onnx_ensemble(folder: Path, threads: int | None = None) -> OnnxEnsemble:
    """An exported ensemble folder, or a single exported bundle as a one-member ensemble."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"Model folder {folder} does not exist.")
    m = read_json_object(folder / MANIFEST)
    if m.get("format") == "lesion-desktop-model":
        return OnnxEnsemble(folder, {"name": folder.name, **m}, [load_member(folder, threads)], [1.0])
    if m.get("format") != "lesion-desktop-ensemble":
        raise BundleError(f"{folder}: not a model bundle or ensemble (format {m.get('format')!r}).")
    if m.get("classes") != list(CLASS_CODES):
        raise BundleError(f"{folder}: the ensemble's classes {m.get('classes')} do not match {list(CLASS_CODES)}.")
    entries = m.get("members")
    if not isinstance(entries, list) or not entries:
        raise BundleError(f"{folder}: the ensemble lists no members.")
    root = folder.resolve()
    members: list[OnnxMember] = []
    weights: list[float] = []
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("path"), str):
            raise BundleError(f"{folder}: malformed member entry {e!r}.")
        sub = (folder / e["path"]).resolve()
        if root not in sub.parents:
            raise BundleError(f"{folder}: member path {e['path']!r} points outside the ensemble folder.")
        w = e.get("weight", 1.0)
        if not isinstance(w, int | float) or isinstance(w, bool) or not math.isfinite(w) or w < 0:
            raise BundleError(f"{folder}: member {e['path']!r} has an invalid weight {w!r}.")
        digest = e.get("manifest_sha256")
        if digest is not None and (sub / MANIFEST).is_file() and sha256_file(sub / MANIFEST) != digest:
            raise BundleError(f"{folder}: the manifest of member {e['path']!r} has been modified.")
        members.append(load_member(sub, threads))
        weights.append(float(w))
    total = sum(weights)
    if total <= 0:
        raise BundleError(f"{folder}: member weights sum to zero.")
    return OnnxEnsemble(folder, m, members, [w / total for w in weights])


class OnnxRuntimeEngine:
    """The lite edition's engine: the same interface as engine.EnsembleEngine, on ONNX Runtime (CPU)."""

    backend = "onnxruntime"
    explains = False  # no Grad-CAM: the graphs have no gradients

    def __init__(self, models_dir: Path | str, device: str = "auto", tta: bool = False,
                 backend: str = "auto", threads: int | None = None) -> None:
        self.device = CpuDevice()
        self.tta = False
        notes = []
        if str(device or "auto").lower() not in ("auto", "cpu"):
            notes.append(f"This edition runs on the CPU only ({device!r} was requested).")
        if tta:
            notes.append("Test-time augmentation is not available in this edition: each image is classified once.")
        self.device_note = " ".join(notes)
        self._lock = threading.Lock()
        self.ensemble = load_onnx_ensemble(Path(models_dir), threads)

    @property
    def version(self) -> str:
        return self.ensemble.version

    @property
    def members(self) -> list[str]:
        return [m.name for m in self.ensemble.members]

    def warm_up(self) -> None:
        self.predict([np.zeros((150, 200, 3), np.uint8)])

    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Raw RGB uint8 images of any size -> one Prediction each."""
        if not images:
            return []
        with self._lock:
            t0 = time.perf_counter()
            prepared = prepare_for_members(images, [m.preprocess for m in self.ensemble.members])
            member_probs: list[np.ndarray] = []
            for m, batch in zip(self.ensemble.members, prepared, strict=True):
                x = normalise_batch_np(batch, m.preprocess)
                (logits,) = m.session.run(None, {m.input_name: x})
                member_probs.append(softmax_np(np.asarray(logits, dtype=np.float32) / np.float32(m.temperature)))
            w = np.asarray(self.ensemble.weights, dtype=np.float32).reshape(-1, 1, 1)
            combined = (np.stack(member_probs) * w).sum(0)
            combined = combined / combined.sum(1, keepdims=True)
            seconds = (time.perf_counter() - t0) / len(images)
        first = prepared[0]
        names = self.members
        return [
            Prediction(
                probabilities=combined[k].astype(np.float64),
                member_probabilities={names[i]: member_probs[i][k].astype(np.float64) for i in range(len(names))},
                seconds=seconds,
                preprocessed=first[k],
            )
            for k in range(len(images))
        ]

    def predict_one(self, image: np.ndarray) -> Prediction:
        return self.predict([image])[0]
