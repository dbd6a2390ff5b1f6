"""Inference: one runner protocol (PyTorch, ONNX Runtime), one predict, one place that opens the models."""

from lesion_desktop.inference.ensemble import Engine
from lesion_desktop.inference.open import load_engine, open_engine

__all__ = ["Engine", "load_engine", "open_engine"]
