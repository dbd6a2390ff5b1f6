"""The one place that decides which models to open and which runner runs each member.

Which models: a folder the user named (`--models`, the settings' override) or, without one, the installed
active ensemble, then the previous installed one, then the bundled default. Why a fallback: installed
(retrained) models live in the user's data folder, where a disk error, a sync tool or a person can damage
them; a damaged active ensemble must not stop the program, so it runs on the next one and says so. The
store's pointer is left as it is (nothing is rolled back behind the user's back). A folder the user named
gets no fallback: a silent switch would hide from them that the folder they chose is unusable.

Which runner: ONNX Runtime on the CPU wherever a member has a verified graph (the shipped models do; the
training pipeline exports retrained ones), PyTorch on CUDA and for members without a graph; the lite
edition has ONNX Runtime only. Nothing is exported here, so the first start is as fast as the next.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from lesion_desktop import edition, paths
from lesion_desktop.errors import BundleError, LesionError
from lesion_desktop.inference.ensemble import Engine
from lesion_desktop.inference.runner import Runner
from lesion_desktop.manifest import EnsembleInfo, onnx_graph, validate_ensemble
from lesion_desktop.scope import load_scope

if TYPE_CHECKING:
    from lesion_desktop.settings import Settings
    from lesion_desktop.store import ModelStore

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "onnx")


def load_engine(models_dir: Path | str, device: str = "auto", tta: bool = False, backend: str = "auto",
                threads: int | None = None) -> Engine:
    """Open one model folder (ensemble or single bundle); raises BundleError saying what is wrong.

    `backend`: "auto" (ONNX Runtime on the CPU where a member has a graph, PyTorch otherwise), "onnx"
    (ONNX Runtime wherever possible, with a note where not) or "torch" (PyTorch only; full edition).
    """
    from lesion_desktop.inference.onnx_runner import OnnxRunner, available

    info = validate_ensemble(Path(models_dir))
    req = (backend or "auto").lower()
    notes: list[str] = []
    if req not in BACKENDS:
        notes.append(f"Unknown backend {backend!r}: using the default.")
        req = "auto"
    if edition.is_lite():
        if str(device or "auto").lower() not in ("auto", "cpu"):
            notes.append(f"This edition runs on the CPU only ({device!r} was requested).")
        if req == "torch":
            notes.append("This edition has no PyTorch: using ONNX Runtime.")
        runners: list[Runner] = [OnnxRunner(m, onnx_graph(m), threads) for m in info.members]  # type: ignore[arg-type]
        if tta and not all(r.dynamic_size for r in runners):  # type: ignore[attr-defined]
            notes.append("Test-time augmentation needs graphs that take any input size, and these models' do not: "
                         "each image is classified once.")
            tta = False
        return Engine(info, runners, device="cpu", tta=tta, device_note=" ".join(notes), scope=load_scope(info.path))

    fast = _onnx_only(info, str(device or "auto").lower(), req, tta, threads)
    if fast is not None:  # every member runs on ONNX Runtime: PyTorch is not even imported (about 2 s saved)
        return Engine(info, fast, device="cpu", tta=tta, device_note=" ".join(notes), scope=load_scope(info.path))

    import torch

    from lesion_desktop.inference.torch_runner import TorchRunner, resolve_device

    dev, note = resolve_device(device)
    if note:
        notes.append(note)
    runners = []
    for m in info.members:
        graph = onnx_graph(m, required=False) if dev.type == "cpu" and req != "torch" and available() else None
        runner = OnnxRunner(m, graph, threads or torch.get_num_threads()) if graph is not None else None
        if runner is None or (tta and not runner.dynamic_size):  # rotated views need a size-agnostic graph
            runners.append(TorchRunner(m, dev))
        else:
            runners.append(runner)
    if req == "onnx" and any(r.backend != "onnxruntime" for r in runners):
        why = ("it runs on the CPU only" if dev.type != "cpu" else
               "ONNX Runtime is not installed" if not available() else "some of these models have no ONNX export")
        notes.append(f"ONNX Runtime was requested, but {why}: using PyTorch where needed.")
    return Engine(info, runners, device=str(dev), tta=tta, device_note=" ".join(notes), scope=load_scope(info.path))


def cuda_possible() -> bool:
    """Whether an NVIDIA driver is installed; without one torch.cuda cannot be available (no torch import)."""
    import ctypes.util
    import os
    import sys

    if sys.platform.startswith("linux") and os.path.exists("/proc/driver/nvidia/version"):
        return True
    return any(ctypes.util.find_library(n) for n in (("nvcuda",) if os.name == "nt" else ("cuda",)))


def _onnx_only(info: EnsembleInfo, device: str, backend: str, tta: bool, threads: int | None) -> list[Runner] | None:
    """ONNX Runtime runners for every member when the CPU is what runs them and each has a verified graph."""
    from lesion_desktop.inference.onnx_runner import OnnxRunner, available

    on_cpu = device == "cpu" or (device == "auto" and not cuda_possible())
    if backend == "torch" or not on_cpu or not available():
        return None
    graphs = [onnx_graph(m, required=False) for m in info.members]
    if any(g is None for g in graphs):
        return None
    runners = [OnnxRunner(m, g, threads) for m, g in zip(info.members, graphs, strict=True) if g is not None]
    if tta and not all(r.dynamic_size for r in runners):  # rotated views need a size-agnostic graph
        return None
    return list(runners)


def open_engine(settings: Settings | None = None, *, models_dir: Path | str | None = None,
                device: str | None = None, tta: bool | None = None, backend: str = "auto",
                store: ModelStore | None = None, bundled: Path | None = None) -> tuple[Engine, list[str]]:
    """Load the engine the user should get and the notes (sentences) to show them about any fallback.

    Explicit arguments win over `settings` (device, tta, and `models_dir` over `settings.models_dir`).
    Raises BundleError (naming every failure) when nothing loads, or when an explicit folder does not.
    """
    dev = device if device is not None else (settings.device if settings is not None else "auto")
    use_tta = tta if tta is not None else (settings.tta if settings is not None else False)
    explicit = models_dir if models_dir is not None else (settings.models_dir if settings is not None else "")
    if explicit:
        return load_engine(Path(explicit), device=dev, tta=use_tta, backend=backend), []

    failures: list[tuple[str, str]] = []  # (label, why)
    for label, folder, problem in candidates(store, bundled):
        if folder is None:
            failures.append((label, problem))
            continue
        try:
            engine = load_engine(folder, device=dev, tta=use_tta, backend=backend)
        except Exception as e:  # whatever a damaged file does, the next candidate must still be tried
            if not isinstance(e, LesionError):
                log.exception("Loading the %s from %s failed", label, folder)
            failures.append((label, str(e) if isinstance(e, LesionError) else f"{type(e).__name__}: {e}"))
            continue
        notes = [f"The {lab} could not be used: {why}" for lab, why in failures]
        if failures:
            notes.append(f"Using the {label} ({engine.version}) instead.")
        for note in notes:
            log.warning("%s", note)
        return engine, notes
    raise BundleError("No usable models were found. "
                      + " ".join(f"The {lab} could not be used: {why}" for lab, why in failures))


def candidates(store: ModelStore | None = None, bundled: Path | None = None) -> list[tuple[str, Path | None, str]]:
    """(label, folder or None, why it is unusable) in the order they are tried."""
    from lesion_desktop.store import POINTER, ModelStore

    store = store if store is not None else ModelStore(paths.model_store_dir())
    active_name, previous_name = store.pointer_names()
    default = ("bundled default models", bundled if bundled is not None else paths.bundled_models_dir(), "")
    found: list[tuple[str, Path | None, str]] = []
    for label, name in (("installed models", active_name), ("previous installed models", previous_name)):
        if not name:
            continue
        folder = store.ensembles / name
        if (folder / "manifest.json").is_file():
            found.append((f"{label} '{name}'", folder, ""))
        else:
            found.append((f"{label} '{name}'", None, f"the folder {folder} is missing or incomplete."))
    # No installed active ensemble means the bundled default is the active one (e.g. after a roll-back).
    ordered = [*found, default] if active_name else [default, *found]
    pointer = store.root / POINTER
    if not active_name and not previous_name and pointer.exists() and not _readable_pointer(pointer):
        # the store reads a damaged pointer as "bundled default": say so rather than switch models silently
        ordered.insert(0, ("record of the installed models", None, f"{pointer} is damaged."))
    return ordered


def chosen_folder(settings: Settings | None = None, override: Path | None = None) -> Path | None:
    """The folder the user named (this session's --models, then the settings' override), or None for the store."""
    if override is not None:
        return Path(override)
    if settings is not None and settings.models_dir:
        return Path(settings.models_dir)
    return None


def _readable_pointer(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False
