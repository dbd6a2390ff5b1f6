"""Exporting a member to ONNX: once, when models are built or installed, never when the program starts.

The graph takes a dynamic batch and a dynamic height and width (test-time augmentation's rotated views
run on it too) and returns logits, class activation maps and pooled features where the architecture
allows (`camnet`), logits only otherwise. `onnx.json` beside it records the graph's sha256 and the sha256
of the weights it was made from, which `manifest.onnx_graph` checks before the graph is used.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from lesion_desktop.bundle import load_member
from lesion_desktop.inference.camnet import CamNet, has_cam
from lesion_desktop.manifest import (
    ONNX_FILE,
    ONNX_FORMAT,
    ONNX_FORMAT_VERSION,
    ONNX_MANIFEST,
    ONNX_OUTPUTS,
    sha256_file,
    validate_ensemble,
    validate_member,
)

OPSET = 18
_NOISY_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx", "torch.export", "torch._dynamo", "torch.fx")


def quiet_exporter_logs() -> None:
    """The exporter logs its internals at INFO; none of it is for the user."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def export_graph(model: torch.nn.Module, architecture: str, input_size: tuple[int, int], path: Path) -> list[str]:
    """Write `model`'s graph to `path` (aside, then renamed); returns the output names."""
    quiet_exporter_logs()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.part-{os.getpid()}.onnx")
    net: torch.nn.Module = CamNet(model, architecture) if has_cam(architecture) else model
    outputs = list(ONNX_OUTPUTS) if has_cam(architecture) else ["logits"]
    net = net.eval().float().cpu()
    x = torch.zeros(2, 3, *input_size)
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=4096)}
    if has_cam(architecture):  # global pooling makes these networks size-agnostic
        dims.update({2: torch.export.Dim("height", min=32, max=2048), 3: torch.export.Dim("width", min=32, max=2048)})
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(net, (x,), dynamo=True, input_names=["input"], output_names=outputs,
                                        opset_version=OPSET, dynamic_shapes=(dims,), verbose=False)
            if program is None:
                raise RuntimeError("the exporter returned no program")
            program.save(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return outputs


def export_member(folder: Path) -> Path:
    """Export a bundle folder's weights (verified first) to `model.onnx` + `onnx.json` beside them."""
    info = validate_member(Path(folder))
    bundle = load_member(info, "cpu")
    graph = info.path / ONNX_FILE
    outputs = export_graph(bundle.model, info.architecture, info.preprocess.input_size, graph)
    description = {
        "format": ONNX_FORMAT, "format_version": ONNX_FORMAT_VERSION, "onnx_file": ONNX_FILE,
        "onnx_sha256": sha256_file(graph), "weights_sha256": info.weights_sha256,
        "architecture": info.architecture, "input_size": list(info.preprocess.input_size), "opset": OPSET,
        "outputs": outputs, "dynamic_size": has_cam(info.architecture), "exported_with": f"torch {torch.__version__}",
    }
    tmp = info.path / (ONNX_MANIFEST + ".tmp")
    tmp.write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, info.path / ONNX_MANIFEST)
    return graph


def export_ensemble(folder: Path) -> list[Path]:
    """Every member of an ensemble (or a single bundle) exported beside its weights."""
    return [export_member(m.path) for m in validate_ensemble(Path(folder)).members]


def _export_in_child(folders: list[str], conn: Any) -> None:
    """The child process's work: export each folder; send back {folder: traceback} for those that failed."""
    failures: dict[str, str] = {}
    for folder in folders:
        try:
            export_member(Path(folder))
        except Exception:
            import traceback

            failures[folder] = traceback.format_exc()
    conn.send(failures)
    conn.close()


def export_members_isolated(folders: list[Path], cancelled: Any = None, poll_s: float = 0.2) -> dict[str, str]:
    """Export bundle folders in a child process; returns {folder: why} for those that failed.

    The exporter is pure Python for seconds per member and holds the GIL for up to half a second at a time
    (benchmarks/bench_gui_stall.py measured 450-500 ms stalls of the window while a retrain exported in its
    worker thread); in a process of its own it cannot stall the GUI. `cancelled()` is polled: when it turns
    true the child is stopped and CancelledError raised (the folders then have no graph, or their previous one).
    """
    import multiprocessing

    from lesion_desktop.errors import CancelledError

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no copy of this one's threads or Qt state
    receive, send = ctx.Pipe(duplex=False)
    names = [str(f) for f in folders]
    child = ctx.Process(target=_export_in_child, args=(names, send), name="onnx-export", daemon=True)
    child.start()
    send.close()
    try:
        while True:
            if receive.poll(poll_s):
                try:
                    result: dict[str, str] = receive.recv()
                except EOFError:  # the child ended without an answer (killed, crashed)
                    break
                return result
            if cancelled is not None and cancelled():
                raise CancelledError("Cancelled by the user; the active models were not changed.")
            if not child.is_alive() and not receive.poll(0):
                break
    finally:  # answered, cancelled or gone: a child still running is stopped, and it is always reaped
        receive.close()
        if child.is_alive():
            child.terminate()
        child.join()
    why = f"the export process ended without an answer (exit code {child.exitcode})"
    return {name: why for name in names}
