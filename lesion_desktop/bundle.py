"""Model bundles (safetensors weights + JSON manifest) and ensembles (a folder of bundles).

Loading checks everything a tampered, truncated or mismatched bundle could get wrong and says what
it is; a pickle is never loaded (`torch.load` on a user-reachable file can run code).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
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
from lesion_desktop.manifest_io import MANIFEST, read_json_object, sha256_file
from lesion_desktop.preprocess import PreprocessConfig

BUNDLE_FORMAT = "lesion-desktop-model"
ENSEMBLE_FORMAT = "lesion-desktop-ensemble"
FORMAT_VERSION = 1
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


def read_manifest(folder: Path) -> dict[str, Any]:
    if not Path(folder).is_dir():
        raise BundleError(f"Model folder {folder} does not exist.")
    if not (Path(folder) / MANIFEST).is_file():
        raise BundleError(f"{folder} has no {MANIFEST}; it is not a model bundle or ensemble.")
    return read_json_object(Path(folder) / MANIFEST)


def _finite(v: float) -> float:
    """float(v), with integers too large for a float (valid JSON) read as infinity instead of raising."""
    try:
        return float(v)
    except OverflowError:
        return math.inf


def _require(m: dict[str, Any], key: str, typ: type | tuple[type, ...], where: Path) -> Any:
    if key not in m:
        raise BundleError(f"{where}: the manifest lacks '{key}'.")
    v = m[key]
    if not isinstance(v, typ) or isinstance(v, bool) and typ is not bool:
        raise BundleError(f"{where}: '{key}' has the wrong type ({type(v).__name__}).")
    return v


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
    """Load and verify one model bundle; raises BundleError saying what is wrong."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from lesion_desktop.registry import get_spec

    folder = Path(folder)
    m = read_manifest(folder)
    if m.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{folder}: not a model bundle (format {m.get('format')!r}).")
    if m.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{folder}: bundle format version {m.get('format_version')!r} is not supported.")
    arch = _require(m, "architecture", str, folder)
    spec = get_spec(arch)
    classes = _require(m, "classes", list, folder)
    if classes != list(CLASS_CODES):
        raise BundleError(
            f"{folder}: the model's classes {classes} do not match this software's {list(CLASS_CODES)}."
        )
    try:
        pre = PreprocessConfig.from_dict(_require(m, "preprocessing", dict, folder))
    except ValueError as e:
        raise BundleError(f"{folder}: bad preprocessing in manifest: {e}.") from None
    if list(pre.input_size) != _require(m, "input_size", list, folder):
        raise BundleError(f"{folder}: input_size disagrees with the preprocessing block.")
    temp = _finite(_require(m, "temperature", (int, float), folder))
    if not (math.isfinite(temp) and 0.05 <= temp <= 20):
        raise BundleError(f"{folder}: temperature {temp} is outside 0.05..20.")
    wname = _require(m, "weights_file", str, folder)
    if Path(wname).name != wname or not wname.endswith(".safetensors"):
        raise BundleError(f"{folder}: weights_file must be a .safetensors file inside the bundle.")
    wpath = folder / wname
    if not wpath.is_file():
        raise BundleError(f"{folder}: the weights file {wname} is missing.")
    _check_safetensors_file(wpath)
    expected = _require(m, "weights_sha256", str, folder)
    actual = sha256_file(wpath)
    if actual != expected:
        raise BundleError(
            f"{folder}: {wname} has been modified or damaged (sha256 {actual[:12]}..., manifest says "
            f"{expected[:12]}...)."
        )
    try:
        state = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as e:
        raise BundleError(f"{folder}: cannot read {wname}: {e}.") from None
    model = spec.build()
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise BundleError(
            f"{folder}: the weights do not match architecture {arch} "
            f"({len(missing)} missing, {len(extra)} unexpected tensors)."
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise BundleError(f"{folder}: tensor {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}.")
        if v.is_floating_point() and own[k].is_floating_point():
            state[k] = v.float()
    model.load_state_dict(state, strict=True)
    model.eval().to(device)
    return ModelBundle(folder, m, model, pre, temp)


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
    """Load an ensemble folder, or a single bundle as a one-member ensemble."""
    folder = Path(folder)
    m = read_manifest(folder)
    if m.get("format") == BUNDLE_FORMAT:
        b = load_bundle(folder, device)
        return Ensemble(folder, {"name": folder.name, **m, "members": [{"path": ".", "weight": 1.0}]}, [b], [1.0])
    if m.get("format") != ENSEMBLE_FORMAT:
        raise BundleError(f"{folder}: not a model bundle or ensemble (format {m.get('format')!r}).")
    if m.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{folder}: ensemble format version {m.get('format_version')!r} is not supported.")
    if m.get("classes") != list(CLASS_CODES):
        raise BundleError(f"{folder}: the ensemble's classes {m.get('classes')} do not match {list(CLASS_CODES)}.")
    entries = _require(m, "members", list, folder)
    if not entries:
        raise BundleError(f"{folder}: the ensemble lists no members.")
    members: list[ModelBundle] = []
    weights: list[float] = []
    root = folder.resolve()
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("path"), str):
            raise BundleError(f"{folder}: malformed member entry {e!r}.")
        try:
            sub = (folder / e["path"]).resolve()
            found = sub.is_dir()
        except (OSError, ValueError):  # NUL bytes, names too long for the file system
            raise BundleError(f"{folder}: member path {e['path'][:100]!r} is not a valid folder name.") from None
        if root not in sub.parents:
            raise BundleError(f"{folder}: member path {e['path']!r} points outside the ensemble folder.")
        if not found:
            raise BundleError(f"{folder}: member {e['path']!r} is missing.")
        w = e.get("weight", 1.0)
        if not isinstance(w, int | float) or isinstance(w, bool) or not math.isfinite(_finite(w)) or w < 0:
            raise BundleError(f"{folder}: member {e['path']!r} has an invalid weight {w!r}.")
        digest = e.get("manifest_sha256")
        if digest is not None and (sub / MANIFEST).is_file() and sha256_file(sub / MANIFEST) != digest:
            raise BundleError(f"{folder}: the manifest of member {e['path']!r} has been modified.")
        members.append(load_bundle(sub, device))
        weights.append(float(w))
    total = sum(weights)
    if total <= 0:
        raise BundleError(f"{folder}: member weights sum to zero.")
    return Ensemble(folder, m, members, [w / total for w in weights])
