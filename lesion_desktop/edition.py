"""Which edition is running: full (PyTorch: CUDA or CPU, retraining, heat-maps) or lite (ONNX Runtime only).

The lite installer ships no PyTorch (see docs/packaging.md); the same code then classifies with ONNX
Runtime (lesion_desktop.inference) and the GUI hides what needs PyTorch. `LESION_DESKTOP_EDITION=lite` runs the
lite edition's code paths where PyTorch is installed (tests, trying the lite behaviour from a checkout).
"""

from __future__ import annotations

import importlib.util
import os
import sys


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
