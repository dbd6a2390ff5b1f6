"""Model bundles (safetensors weights + JSON manifest) and ensembles (a folder of bundles).

Loading checks everything a tampered, truncated or mismatched bundle could get wrong and says what
it is; a pickle is never loaded (`torch.load` on a user-reachable file can run code).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lesion_desktop import __version__
from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.errors import BundleError
from lesion_desktop.manifest import (
    BUNDLE_FORMAT,
    ENSEMBLE_FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    MemberInfo,
    check_weights_file,
    sha256_file,
    validate_ensemble,
    validate_member,
)
from lesion_desktop.preprocess import PreprocessConfig

WEIGHTS = "weights.safetensors"
HAM_LICENCE = (
    "Trained on HAM10000 (ViDIR Group, Medical University of Vienna; Tschandl et al., Sci Data 2018), "
    "licensed CC BY-NC 4.0: these weights inherit its non-commercial terms."
)


@dataclass
class ModelBundle:
    path: Path
    manifest: dict[str, Any]
    model: nn.Module
    preprocess: PreprocessConfig
    temperature: float

    @property
    def architecture(self) -> str:
        return str(self.manifest["architecture"])

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class Ensemble:
    path: Path
    manifest: dict[str, Any]
    members: list[ModelBundle]
    weights: list[float] = field(default_factory=list)

    @property
    def version(self) -> str:
        return str(self.manifest.get("name") or self.path.name)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_bundle(
    model: nn.Module,
    folder: Path,
    *,
    architecture: str,
    preprocess: PreprocessConfig,
    temperature: float = 1.0,
    metrics: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    half: bool = False,
    licence: str = HAM_LICENCE,
) -> Path:
    """Write `model` as a bundle folder; `half` stores fp16 weights (loaded back as fp32)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().to("cpu").half() if half and v.is_floating_point() else v.detach().to("cpu")).contiguous()
        for k, v in model.state_dict().items()
    }
    wpath = folder / WEIGHTS
    save_file(state, str(wpath))
    manifest = {
        "format": BUNDLE_FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "classes": list(CLASS_CODES),
        "input_size": list(preprocess.input_size),
        "preprocessing": preprocess.to_dict(),
        "temperature": float(temperature),
        "metrics": metrics or {},
        "training": training or {},
        "weights_file": WEIGHTS,
        "weights_sha256": sha256_file(wpath),
        "weights_dtype": "float16" if half else "float32",
        "licence": licence,
        "created": _now(),
        "software_version": __version__,
    }
    _write_json_atomic(folder / MANIFEST, manifest)
    return folder


def _check_safetensors_file(path: Path) -> None:
    """Refuse pickles and truncated files before any parser sees them."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        hlen = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        header = f.read(hlen) if 0 < hlen <= min(size - 8, 100_000_000) else b""
    if not header.startswith(b"{"):
        if head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
            raise BundleError(
                f"{path.name} is a pickle/PyTorch checkpoint, which can run code when loaded: refused. "
                "Models must be stored as safetensors."
            )
        raise BundleError(f"{path.name} is truncated or is not a safetensors file ({size} bytes).")
    try:
        meta = json.loads(header)
        end = max((int(v["data_offsets"][1]) for k, v in meta.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError):
        raise BundleError(f"{path.name} is truncated or is not a safetensors file (bad header).") from None
    if 8 + hlen + end != size:
        raise BundleError(f"{path.name} is truncated or padded: {size} bytes, expected {8 + hlen + end}.")


def load_bundle(folder: Path, device: torch.device | str = "cpu") -> ModelBundle:
    """Load and verify one model bundle (manifest, weights' sha256 and bytes, tensor names and shapes)."""
    return load_member(validate_member(Path(folder)), device)


def load_member(info: MemberInfo, device: torch.device | str = "cpu") -> ModelBundle:
    """The PyTorch model of a validated member; raises BundleError saying what is wrong with its weights."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from lesion_desktop.registry import get_spec

    folder, wname = info.path, info.weights_path.name
    spec = get_spec(info.architecture)
    if not info.weights_path.is_file():
        raise BundleError(f"{folder}: the weights file {wname} is missing.")
    _check_safetensors_file(info.weights_path)
    check_weights_file(info)
    try:
        state = load_file(str(info.weights_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise BundleError(f"{folder}: cannot read {wname}: {e}.") from None
    model = spec.build()
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise BundleError(
            f"{folder}: the weights do not match architecture {info.architecture} "
            f"({len(missing)} missing, {len(extra)} unexpected tensors)."
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise BundleError(f"{folder}: tensor {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}.")
        if v.is_floating_point() and own[k].is_floating_point():
            state[k] = v.float()
    model.load_state_dict(state, strict=True)
    model.eval().to(device)
    return ModelBundle(folder, info.manifest, model, info.preprocess, info.temperature)


def save_ensemble(
    folder: Path,
    members: list[tuple[str, float]],
    *,
    name: str,
    metrics: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    licence: str = HAM_LICENCE,
) -> Path:
    """Write an ensemble manifest listing member bundle sub-folders and their averaging weights."""
    folder = Path(folder)
    entries = []
    for sub, w in members:
        mpath = folder / sub / MANIFEST
        if not mpath.is_file():
            raise BundleError(f"Ensemble member {sub} is not a bundle inside {folder}.")
        entries.append({"path": sub, "weight": float(w), "manifest_sha256": sha256_file(mpath)})
    manifest = {
        "format": ENSEMBLE_FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "classes": list(CLASS_CODES),
        "members": entries,
        "metrics": metrics or {},
        "training": training or {},
        "licence": licence,
        "created": _now(),
        "software_version": __version__,
    }
    _write_json_atomic(folder / MANIFEST, manifest)
    return folder


def load_ensemble(folder: Path, device: torch.device | str = "cpu") -> Ensemble:
    """Load an ensemble folder, or a single bundle as a one-member ensemble (PyTorch models, for training)."""
    info = validate_ensemble(Path(folder))
    members = [load_member(m, device) for m in info.members]
    return Ensemble(info.path, info.manifest, members, list(info.weights))
