"""What a model's weights have seen and where they started: read from and written to its manifests.

Two facts keep comparisons fair. `trained_image_ids`: the images whose pixels an ensemble's (or bundle's)
weights were fitted on, so that models are scored only on images none of them saw. A model fine-tuned from
another inherits what that one saw, so its record is the union (`inherited_image_ids`). `start_record`:
what the weights were before the first step (an installed model, ImageNet weights, random numbers), which
each member's manifest and the retrained ensemble's manifest carry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lesion_desktop.errors import LesionError
from lesion_desktop.manifest import ENSEMBLE_FORMAT, MANIFEST, read_json_object, sha256_file, validate_member


def _recorded(manifest: dict[str, Any]) -> set[str] | None:
    t = manifest.get("training")
    ids = t.get("trained_image_ids") if isinstance(t, dict) else None
    return {str(i) for i in ids} if isinstance(ids, list) else None


def trained_image_ids(models_dir: Path) -> set[str] | None:
    """The image ids an ensemble's (or bundle's) weights were fitted on, from its manifests; None if not recorded.

    Read from `training.trained_image_ids` of the ensemble manifest, else the union over its members' manifests
    (every member must record it: one unknown member makes the whole set unknown).
    """
    folder = Path(models_dir)
    try:
        manifest = read_json_object(folder / MANIFEST)
        own = _recorded(manifest)
        if own is not None or manifest.get("format") != ENSEMBLE_FORMAT:
            return own
        union: set[str] = set()
        for entry in manifest.get("members") or []:
            member = _recorded(read_json_object(folder / str(entry.get("path", "")) / MANIFEST))
            if member is None:
                return None
            union |= member
        return union if manifest.get("members") else None
    except (LesionError, AttributeError):
        return None


def _parent_ensemble(bundle_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The ensemble folder a member bundle sits in, and its manifest; None for a bundle on its own."""
    parent = Path(bundle_dir).resolve().parent
    try:
        manifest = read_json_object(parent / MANIFEST)
    except LesionError:
        return None
    return (parent, manifest) if manifest.get("format") == ENSEMBLE_FORMAT else None


def inherited_image_ids(bundle_dir: Path) -> set[str] | None:
    """What a bundle's weights had seen, for a model fine-tuned from it: its own record, else its ensemble's
    (which covers all its members: a superset, so the comparison stays fair); None when neither records it."""
    own = trained_image_ids(bundle_dir)
    if own is not None:
        return own
    parent = _parent_ensemble(bundle_dir)
    return _recorded(parent[1]) if parent is not None else None


def start_record(init_from: str | None, imagenet: bool | str | Path) -> dict[str, Any]:
    """What a member's weights were before training: {"init": "model" | "imagenet" | "random", ...}.

    `init_from`: a bundle folder (the whole model, head included, is the start); else `imagenet`: a weights
    file, or False for random weights. Hashes name the exact weights.
    """
    if init_from:
        info = validate_member(Path(init_from))
        parent = _parent_ensemble(info.path)
        return {"init": "model", "path": str(init_from), "architecture": info.architecture,
                "ensemble": str(parent[1].get("name") or parent[0].name) if parent else None,
                "member": info.path.name, "weights_sha256": info.weights_sha256}
    if imagenet:
        path = Path(str(imagenet))
        return {"init": "imagenet", "file": str(path), "sha256": sha256_file(path) if path.is_file() else None}
    return {"init": "random"}
