"""The installed-models store: new ensembles are swapped in atomically and the previous one kept.

Layout: `<root>/ensembles/<name>/` (complete ensemble folders) and `<root>/active.json` naming the
active and previous ones. A copy is written under a temporary name, fsynced and renamed, and only
then does a fresh `active.json` (also written aside and renamed) point at it; a crash at any moment
leaves either the old or the new pointer, each naming a complete folder.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from lesion_desktop.errors import BundleError
from lesion_desktop.wording import QT_TRANSLATE_NOOP, Phrase

POINTER = "active.json"
DEFAULT = None  # the bundled default ensemble
INSTALLATION = "installation"  # the block install() adds to an installed copy's manifest
UNVALIDATED_TAG = " [UNVALIDATED]"  # appended to the name, so every result and report made with it says so


def _fsync_tree(folder: Path) -> None:
    for dirpath, _, files in os.walk(folder):
        for f in files:
            with open(Path(dirpath) / f, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    if os.name == "posix":
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _record_installation(folder: Path, record: dict[str, Any]) -> None:
    """Add the installation block to a copy's top-level manifest (no digest covers it: member digests do not)."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest[INSTALLATION] = record
    if record["by_override"]:
        base = str(manifest.get("name") or folder.name.removeprefix(".incoming-"))
        manifest["name"] = base if base.endswith(UNVALIDATED_TAG) else base + UNVALIDATED_TAG
    path.write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def _install_error(root: Path, e: OSError) -> str:
    """A sentence naming the problem; copytree reports per-file errors as text, so the errno is read back."""
    code, detail = e.errno, e.strerror or str(e)
    if isinstance(e, shutil.Error) and e.args and isinstance(e.args[0], list) and e.args[0]:
        detail = str(e.args[0][0][-1])
        found = re.search(r"\[Errno (\d+)\]", detail)
        code = int(found.group(1)) if found else None
    if code == errno.ENOSPC:
        why = "the disk is full. Free some space and try again"
    elif code in (errno.EROFS, errno.EACCES, errno.EPERM):
        why = f"the folder is read-only or not writable ({os.strerror(code)})"
    else:
        why = detail.rstrip(".")
    return f"Could not install the new models in {root}: {why}. The models in use are unchanged."


def installation_record(models_dir: Path | None) -> dict[str, Any] | None:
    """How the ensemble in `models_dir` was installed (None: not installed through the store, e.g. the default)."""
    if models_dir is None:
        return None
    try:
        manifest = json.loads((Path(models_dir) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    record = manifest.get(INSTALLATION) if isinstance(manifest, dict) else None
    return record if isinstance(record, dict) else None


UNVALIDATED = QT_TRANSLATE_NOOP(
    "ModelStore", "Unvalidated models in use: installed by override, not shown to be at least as good as the models "
    "they replaced: {figures}. Treat their results with extra caution; roll back with Tools > Retrain models > "
    "Roll back.")
UNVALIDATED_UNCOMPARED = QT_TRANSLATE_NOOP(
    "ModelStore", "Unvalidated models in use: installed by override, not shown to be at least as good as the models "
    "they replaced (no fair comparison was possible). Treat their results with extra caution; roll back with "
    "Tools > Retrain models > Roll back.")


def unvalidated_note(models_dir: Path | None) -> str:
    """A warning for the window and the results when these models were installed by override; "" otherwise.
    A Wording: the window shows it in the clinic's language (the recorded figures stay as recorded)."""
    record = installation_record(models_dir)
    if not record or not record.get("by_override"):
        return ""
    figures = str(record.get("figures") or "").strip()
    return Phrase(UNVALIDATED, figures=figures.rstrip(".")) if figures else Phrase(UNVALIDATED_UNCOMPARED)


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.ensembles = self.root / "ensembles"

    def _read_pointer(self) -> dict[str, Any]:
        p = self.root / POINTER
        if not p.is_file():
            return {"active": None, "previous": None}
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return data
        except (OSError, ValueError):
            pass
        return {"active": None, "previous": None}

    def _write_pointer(self, data: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / (POINTER + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / POINTER)
        _fsync_dir(self.root)

    def _path(self, name: str | None) -> Path | None:
        if not name:
            return None
        p = self.ensembles / name
        return p if (p / "manifest.json").is_file() else None

    def active(self) -> Path | None:
        """The installed ensemble in use, or None for the bundled default."""
        return self._path(self._read_pointer().get("active"))

    def pointer_names(self) -> tuple[str | None, str | None]:
        """The (active, previous) names the pointer records, whether or not their folders still exist."""
        ptr = self._read_pointer()
        active, previous = ptr.get("active"), ptr.get("previous")
        return (active if isinstance(active, str) and active else None,
                previous if isinstance(previous, str) and previous else None)

    def previous(self) -> Path | None:
        return self._path(self._read_pointer().get("previous"))

    def has_previous(self) -> bool:
        ptr = self._read_pointer()
        return bool(ptr.get("active")) or ptr.get("previous") is not None

    def clean_partial(self) -> None:
        """Remove copies left half-written by a crash during installation."""
        if self.ensembles.is_dir():
            for d in self.ensembles.iterdir():
                if d.name.startswith(".incoming-"):
                    shutil.rmtree(d, ignore_errors=True)

    def install(self, candidate: Path, name: str | None = None, *, comparison: str = "", figures: str = "",
                by_override: bool = False) -> Path:
        """Copy a verified ensemble in and make it active; the one it replaces becomes `previous`.

        The installed copy's manifest records how it got there (`installation`: when, the comparison with the
        models it replaced and its figures, and whether the user overrode a failed or impossible comparison).
        An override also tags the copy's name, so every result, history entry and PDF made with it reads
        UNVALIDATED.
        """
        from lesion_desktop.bundle import load_ensemble

        candidate = Path(candidate)
        load_ensemble(candidate)  # refuses anything that would not load
        now = _dt.datetime.now()
        stamp = now.strftime("%Y%m%d-%H%M%S-%f")
        name = name or f"ensemble-{stamp}"
        tmp = self.ensembles / f".incoming-{name}"
        final = self.ensembles / name
        try:
            self.ensembles.mkdir(parents=True, exist_ok=True)
            self.clean_partial()
            if final.exists():
                raise BundleError(f"An installed ensemble named {name} already exists.")
            shutil.copytree(candidate, tmp)
            _record_installation(tmp, {"installed": now.isoformat(timespec="seconds"), "by_override": by_override,
                                       "comparison": comparison, "figures": figures})
            _fsync_tree(tmp)
            os.replace(tmp, final)
            _fsync_dir(self.ensembles)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BundleError(_install_error(self.root, e)) from None
        ptr = self._read_pointer()
        try:
            load_ensemble(final)
            self._write_pointer({"active": name, "previous": ptr.get("active"), "installed": stamp})
        except (OSError, BundleError) as e:  # never leave a copy behind that is not the active one
            if self._read_pointer().get("active") != name:  # (the rename may have happened before the error)
                shutil.rmtree(final, ignore_errors=True)
            raise BundleError(_install_error(self.root, e) if isinstance(e, OSError) else str(e)) from None
        self._prune(keep={name, ptr.get("active")})
        return final

    def rollback(self) -> Path | None:
        """Make the previous ensemble active again (None: back to the bundled default)."""
        ptr = self._read_pointer()
        if not ptr.get("active") and ptr.get("previous") is None:
            raise BundleError("There is no earlier model version to roll back to.")
        self._write_pointer({"active": ptr.get("previous"), "previous": ptr.get("active")})
        return self.active()

    def _prune(self, keep: set[str | None]) -> None:
        """Keep the active and the previous ensemble only; older ones are removed to save disk."""
        for d in self.ensembles.iterdir():
            if d.is_dir() and not d.name.startswith(".") and d.name not in keep:
                shutil.rmtree(d, ignore_errors=True)
