"""Opening the models the program should use, falling back when the installed ones are damaged.

Why a fallback: installed (retrained) models live in the user's data folder, where a disk error, a sync
tool or a person can damage them after installation. A damaged active ensemble must not stop the program:
it runs on the previous installed ensemble or, failing that, on the bundled default, and says so. The
store's pointer is left as it is (nothing is rolled back behind the user's back), so the next start tries
the active ensemble again and the user decides what to do.

A folder the user named explicitly (`--models`, the settings' override) gets no fallback: a silent switch
would hide from them that the folder they chose is unusable.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from lesion_desktop import paths
from lesion_desktop.errors import BundleError, LesionError

if TYPE_CHECKING:
    from lesion_desktop.engine import EnsembleEngine
    from lesion_desktop.onnx_runtime_engine import OnnxRuntimeEngine
    from lesion_desktop.settings import Settings
    from lesion_desktop.store import ModelStore

log = logging.getLogger(__name__)


def open_engine(settings: Settings | None = None, *, models_dir: Path | str | None = None,
                device: str | None = None, tta: bool | None = None, backend: str = "auto",
                store: ModelStore | None = None,
                bundled: Path | None = None) -> tuple[EnsembleEngine | OnnxRuntimeEngine, list[str]]:
    """Load the engine the user should get and the notes (sentences) to show them about any fallback.

    Explicit arguments win over `settings` (device, tta, and `models_dir` over `settings.models_dir`).
    Without an explicit folder the candidates are: the installed active ensemble, the installed previous
    one, the bundled default; the first that loads is used. Raises BundleError (naming every failure)
    when none loads, or when an explicit folder does not. `engine.device_note` is separate (unchanged).
    """
    from lesion_desktop.edition import create_engine

    dev = device if device is not None else (settings.device if settings is not None else "auto")
    use_tta = tta if tta is not None else (settings.tta if settings is not None else False)
    explicit = models_dir if models_dir is not None else (settings.models_dir if settings is not None else "")
    if explicit:
        return create_engine(Path(explicit), device=dev, tta=use_tta, backend=backend), []

    failures: list[tuple[str, str]] = []  # (label, why)
    for label, folder, problem in _candidates(store, bundled):
        if folder is None:
            failures.append((label, problem))
            continue
        try:
            engine = create_engine(folder, device=dev, tta=use_tta, backend=backend)
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


def _candidates(store: ModelStore | None, bundled: Path | None) -> list[tuple[str, Path | None, str]]:
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


def _readable_pointer(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False
