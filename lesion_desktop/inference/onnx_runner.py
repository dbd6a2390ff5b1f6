"""A member run by ONNX Runtime on the CPU: the default on every CPU, and the only runner of the lite edition.

The graph is exported once, at build time or when retrained models are made (`inference.export`), never
when the program starts; `manifest.onnx_graph` checks it against the weights the manifest names. No torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from lesion_desktop.errors import BundleError
from lesion_desktop.inference.runner import RunOutput
from lesion_desktop.manifest import ONNX_MANIFEST, MemberInfo, read_json_object


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def _session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or max(1, min(os.cpu_count() or 1, 8))
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: its warnings are about internals, not for the user
    # Spinning worker threads would steal the GUI thread's core between images on a 2-core PC.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OnnxRunner:
    backend = "onnxruntime"

    def __init__(self, info: MemberInfo, graph: Path, threads: int | None = None) -> None:
        self.info = info
        self.graph = graph
        description = read_json_object(info.path / ONNX_MANIFEST)
        described = description.get("outputs", ["logits"])
        self.dynamic_size = description.get("dynamic_size") is True  # any input size: TTA's rotated views run
        try:
            self.session = _session(graph, threads)
        except Exception as e:  # onnxruntime raises its own exception types for unreadable graphs
            raise BundleError(f"{info.path}: ONNX Runtime cannot load {graph.name} ({type(e).__name__}: "
                              f"{str(e)[:300]}).") from None
        self.input_name = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        if "logits" not in names or not isinstance(described, list) or set(described) != set(names):
            raise BundleError(f"{info.path}: the graph's outputs {names} are not the ones {ONNX_MANIFEST} "
                              f"describes ({str(described)[:80]}).")
        self.output_names = names
        self.gives_cams = "cams" in names

    def run(self, x: np.ndarray) -> RunOutput:
        outs = dict(zip(self.output_names, self.session.run(None, {self.input_name: x}), strict=True))
        return RunOutput(np.asarray(outs["logits"], np.float32), outs.get("cams"), outs.get("features"))
