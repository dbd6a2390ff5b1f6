"""Which edition is running: full (PyTorch: CUDA or CPU, retraining, heat-maps) or lite (ONNX Runtime only).

The lite installer ships no PyTorch (see docs/packaging.md); the same code then classifies with
`OnnxRuntimeEngine` and the GUI hides what needs PyTorch. `LESION_DESKTOP_EDITION=lite` runs the lite
edition's code paths where PyTorch is installed (tests, trying the lite behaviour from a checkout).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lesion_desktop.engine import EnsembleEngine
    from lesion_desktop.onnx_runtime_engine import OnnxRuntimeEngine


def has_torch() -> bool:
    """True when PyTorch can be imported (checked without importing it)."""
    if "torch" in sys.modules:
        return sys.modules["torch"] is not None
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def is_lite() -> bool:
    return os.environ.get("LESION_DESKTOP_EDITION", "").strip().lower() == "lite" or not has_torch()


def name() -> str:
    return "lite (ONNX Runtime, CPU)" if is_lite() else "full (PyTorch)"


def create_engine(models_dir: Path | str, device: str = "auto", tta: bool = False,
                  backend: str = "auto") -> EnsembleEngine | OnnxRuntimeEngine:
    """The engine this edition classifies with; both have the same interface."""
    if is_lite():
        from lesion_desktop.onnx_runtime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(models_dir, device=device, tta=tta, backend=backend)
    from lesion_desktop.engine import EnsembleEngine

    return EnsembleEngine(models_dir, device=device, tta=tta, backend=backend)
