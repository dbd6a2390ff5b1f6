"""What is on disk for a model: manifests read, hashed and validated in one place, without PyTorch.

Both runners (PyTorch for the full edition, ONNX Runtime for every CPU and for the lite edition, which has no
PyTorch) and the exporter go through these functions, so a damaged, tampered or hostile manifest is refused
the same way whichever path reads it, and every refusal is a `BundleError` that says what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.errors import BundleError
from lesion_desktop.preprocess import PreprocessConfig

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 1_000_000
BUNDLE_FORMAT = "lesion-desktop-model"
ENSEMBLE_FORMAT = "lesion-desktop-ensemble"
FORMAT_VERSION = 1
ONNX_FORMAT = "lesion-desktop-onnx"
ONNX_FORMAT_VERSION = 2  # 2: outputs logits, class activation maps and pooled features (1: logits only)
ONNX_MANIFEST = "onnx.json"
ONNX_FILE = "model.onnx"
ONNX_OUTPUTS = ("logits", "cams", "features")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; BundleError saying what is wrong when it is missing, huge or not one."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path.parent} has no {path.name}; it is not a model folder for this program.")
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path} is {size} bytes; a manifest is never that large.")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as e:  # bad UTF-8 or JSON, 4300+ digit numbers, absurd nesting
        raise BundleError(f"{path} is not valid JSON ({type(e).__name__}: {str(e)[:200]}).") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path} must hold a JSON object.")
    return data


def read_manifest(folder: Path) -> dict[str, Any]:
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"Model folder {folder} does not exist.")
    if not (folder / MANIFEST).is_file():
        raise BundleError(f"{folder} has no {MANIFEST}; it is not a model bundle or ensemble.")
    return read_json_object(folder / MANIFEST)


def finite_number(v: Any) -> float:
    """float(v) for a JSON number; integers too large for a float read as infinity instead of raising."""
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


def _file_inside(folder: Path, name: str, suffix: str, what: str) -> Path:
    if Path(name).name != name or not name.endswith(suffix) or "\x00" in name:
        raise BundleError(f"{folder}: {what} must be a {suffix} file inside the bundle.")
    return folder / name


@dataclass(frozen=True)
class MemberInfo:
    """A member bundle's validated manifest."""

    path: Path
    manifest: dict[str, Any]
    architecture: str
    preprocess: PreprocessConfig
    temperature: float
    weights_path: Path
    weights_sha256: str

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class EnsembleInfo:
    """An ensemble folder's validated manifest (a single bundle reads as a one-member ensemble)."""

    path: Path
    manifest: dict[str, Any]
    members: list[MemberInfo]
    weights: list[float]  # normalised to sum 1

    @property
    def version(self) -> str:
        return str(self.manifest.get("name") or self.path.name)


def validate_member(folder: Path) -> MemberInfo:
    """Check a bundle's manifest (not yet its weights' bytes: see `check_weights_file`)."""
    folder = Path(folder)
    m = read_manifest(folder)
    if m.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{folder}: not a model bundle (format {m.get('format')!r}).")
    if m.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{folder}: bundle format version {m.get('format_version')!r} is not supported.")
    arch = _require(m, "architecture", str, folder)
    classes = _require(m, "classes", list, folder)
    if classes != list(CLASS_CODES):
        raise BundleError(f"{folder}: the model's classes {classes} do not match this software's {list(CLASS_CODES)}.")
    try:
        pre = PreprocessConfig.from_dict(_require(m, "preprocessing", dict, folder))
    except ValueError as e:
        raise BundleError(f"{folder}: bad preprocessing in manifest: {e}.") from None
    if list(pre.input_size) != _require(m, "input_size", list, folder):
        raise BundleError(f"{folder}: input_size disagrees with the preprocessing block.")
    temp = finite_number(_require(m, "temperature", (int, float), folder))
    if not (math.isfinite(temp) and 0.05 <= temp <= 20):
        raise BundleError(f"{folder}: temperature {temp} is outside 0.05..20.")
    wpath = _file_inside(folder, _require(m, "weights_file", str, folder), ".safetensors", "weights_file")
    digest = _require(m, "weights_sha256", str, folder)
    return MemberInfo(folder, m, arch, pre, temp, wpath, digest)


def check_weights_file(info: MemberInfo) -> None:
    """The weights file exists and is the one the manifest names (sha256)."""
    if not info.weights_path.is_file():
        raise BundleError(f"{info.path}: the weights file {info.weights_path.name} is missing.")
    actual = sha256_file(info.weights_path)
    if actual != info.weights_sha256:
        raise BundleError(f"{info.path}: {info.weights_path.name} has been modified or damaged (sha256 "
                          f"{actual[:12]}..., manifest says {info.weights_sha256[:12]}...).")


def validate_ensemble(folder: Path) -> EnsembleInfo:
    """An ensemble folder, or a single bundle as a one-member ensemble; every member's manifest checked."""
    folder = Path(folder)
    m = read_manifest(folder)
    if m.get("format") == BUNDLE_FORMAT:
        member = validate_member(folder)
        return EnsembleInfo(folder, {"name": folder.name, **m, "members": [{"path": ".", "weight": 1.0}]},
                            [member], [1.0])
    if m.get("format") != ENSEMBLE_FORMAT:
        raise BundleError(f"{folder}: not a model bundle or ensemble (format {m.get('format')!r}).")
    if m.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{folder}: ensemble format version {m.get('format_version')!r} is not supported.")
    if m.get("classes") != list(CLASS_CODES):
        raise BundleError(f"{folder}: the ensemble's classes {m.get('classes')} do not match {list(CLASS_CODES)}.")
    entries = _require(m, "members", list, folder)
    if not entries:
        raise BundleError(f"{folder}: the ensemble lists no members.")
    root = folder.resolve()
    members: list[MemberInfo] = []
    weights: list[float] = []
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("path"), str):
            raise BundleError(f"{folder}: malformed member entry {str(e)[:200]!r}.")
        try:
            sub = (folder / e["path"]).resolve()
            found = sub.is_dir()
        except (OSError, ValueError):  # NUL bytes, names too long for the file system
            raise BundleError(f"{folder}: member path {e['path'][:100]!r} is not a valid folder name.") from None
        if root not in sub.parents:
            raise BundleError(f"{folder}: member path {e['path'][:100]!r} points outside the ensemble folder.")
        if not found:
            raise BundleError(f"{folder}: member {e['path']!r} is missing.")
        w = e.get("weight", 1.0)
        if not isinstance(w, int | float) or isinstance(w, bool) or not math.isfinite(finite_number(w)) or w < 0:
            raise BundleError(f"{folder}: member {e['path']!r} has an invalid weight {str(w)[:40]}.")
        digest = e.get("manifest_sha256")
        if digest is not None and (sub / MANIFEST).is_file() and sha256_file(sub / MANIFEST) != digest:
            raise BundleError(f"{folder}: the manifest of member {e['path']!r} has been modified.")
        members.append(validate_member(sub))
        weights.append(finite_number(w))
    total = sum(weights)
    if total <= 0:
        raise BundleError(f"{folder}: member weights sum to zero.")
    return EnsembleInfo(folder, m, members, [w / total for w in weights])


def onnx_graph(info: MemberInfo, required: bool = True) -> Path | None:
    """The member's ONNX graph, verified against the manifest's weights, input size and its own sha256.

    `required` False: None when the member has no graph at all (a damaged or mismatched one still raises).
    """
    folder = info.path
    if not (folder / ONNX_MANIFEST).is_file():
        if not required:
            return None
        raise BundleError(
            f"{folder} has no ONNX export ({ONNX_MANIFEST}). This edition runs only models exported for it: use the "
            "full edition for these models, or export them with `python -m training export-onnx`.")
    om = read_json_object(folder / ONNX_MANIFEST)
    if om.get("format") != ONNX_FORMAT or om.get("format_version") != ONNX_FORMAT_VERSION:
        raise BundleError(f"{folder}: {ONNX_MANIFEST} is not a supported ONNX export description (format "
                          f"{str(om.get('format'))[:40]!r} version {str(om.get('format_version'))[:20]}).")
    if om.get("architecture", info.architecture) != info.architecture:
        raise BundleError(f"{folder}: the ONNX graph is of another architecture than the manifest names.")
    if om.get("weights_sha256") != info.weights_sha256:
        raise BundleError(f"{folder}: the ONNX export was made from other weights than the manifest names; "
                          "export the models again.")
    name = om.get("onnx_file", ONNX_FILE)
    if not isinstance(name, str):
        raise BundleError(f"{folder}: {ONNX_MANIFEST} names no graph file.")
    graph = _file_inside(folder, name, ".onnx", "onnx_file")
    if not graph.is_file():
        raise BundleError(f"{folder}: the ONNX graph {graph.name} is missing.")
    if list(om.get("input_size", [])) != list(info.preprocess.input_size):
        raise BundleError(f"{folder}: the ONNX graph's input size {str(om.get('input_size'))[:40]} is not the "
                          f"manifest's {list(info.preprocess.input_size)}.")
    if sha256_file(graph) != om.get("onnx_sha256"):
        raise BundleError(f"{folder}: {graph.name} has been modified or damaged (sha256 mismatch).")
    return graph
