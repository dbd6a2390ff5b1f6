"""Reading model manifests and hashing model files, without PyTorch.

Shared by `bundle` (the full edition, which loads weights with torch) and `onnx_runtime_engine` (the
lite edition, which must not import torch), so both refuse a damaged manifest the same way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lesion_desktop.errors import BundleError

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 1_000_000


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
