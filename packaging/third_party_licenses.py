"""Licence texts for the third-party code a frozen bundle carries, found from the files it carries.

build.spec calls `write_bundle_licences` after PyInstaller's analysis. Every file that goes into the bundle is
traced to the installed distribution whose RECORD lists it; each such distribution's licence files (its PEP 639
`License-File` entries, else the LICENSE/COPYING/NOTICE files it installs) are copied to
`licenses/<distribution>/`, with an index (`licenses/INDEX.txt`) giving name, version and declared licence.
A distribution that installs no licence text must have one under `packaging/licenses/` (FALLBACK_TEXTS), or
the build stops: a new dependency cannot reach a clinic's PC without its licence.

Deriving the list from the collected files (not from a hand-kept list) keeps the texts in step with what was
really bundled: the CUDA edition gets NVIDIA's licences, the lite edition gets none of PyTorch's.

Also runnable by hand: `python packaging/third_party_licenses.py OUT_DIR FILE...` writes the texts for the
distributions owning FILE....
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# Distributions whose wheels carry no licence text, and the texts that apply (committed under packaging/licenses/).
# Qt for Python is offered under LGPL-3.0 (the option this program uses: Qt's libraries are shipped as separate,
# replaceable shared libraries) or GPL; the LGPL-3.0 is a set of permissions added to the GPL-3.0, so both texts.
FALLBACK_TEXTS: dict[str, str] = {
    "pyside6": "qt",
    "pyside6-essentials": "qt",
    "pyside6-addons": "qt",
    "shiboken6": "qt",
}

# NVIDIA's CUDA libraries by file name. PyPI's Linux torch takes them from nvidia-* distributions, which install
# their licence texts; PyTorch's Windows CUDA wheels carry them inside torch/lib, where no NVIDIA text comes along.
_NVIDIA_LIBRARY = re.compile(
    r"(cudnn|cublas|cudart|cufft|curand|cusolver|cusparse|nvrtc|nvjitlink|nccl|cupti|nvtoolsext)[\w.-]*\.(dll|so)",
    re.IGNORECASE)
_SHARED_LIBRARY = re.compile(r"\.(so|pyd|dll|dylib)(\.[\d.]+)?$", re.IGNORECASE)
_LICENCE_NAME = re.compile(r"^(licen[cs]e|copying|notice|thirdpartynotices|third[-_]party[-_]notices)([-_. ].*)?$",
                           re.IGNORECASE)


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name (PySide6_Essentials -> pyside6-essentials)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.normcase(os.path.abspath(os.fspath(path)))


@dataclass
class Owners:
    """Which installed distributions own a set of files, and which files no distribution owns."""

    distributions: dict[str, metadata.Distribution] = field(default_factory=dict)
    unowned: list[str] = field(default_factory=list)


def file_index(dists: Iterable[metadata.Distribution] | None = None) -> dict[str, metadata.Distribution]:
    """Absolute path of every file each distribution installed (its RECORD) -> that distribution."""
    index: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions() if dists is None else dists:
        for f in dist.files or ():
            index.setdefault(_key(str(dist.locate_file(f))), dist)
    return index


def owners(sources: Iterable[str | os.PathLike[str]],
           index: dict[str, metadata.Distribution] | None = None) -> Owners:
    """The distributions that installed the given files (by path, then by resolved path)."""
    index = file_index() if index is None else index
    out = Owners()
    for src in sources:
        dist = index.get(_key(src)) or index.get(_key(os.path.realpath(src)))
        if dist is None:
            out.unowned.append(os.fspath(src))
        else:
            out.distributions.setdefault(canonical(dist.metadata["Name"]), dist)
    return out


def licence_files(dist: metadata.Distribution) -> list[Path]:
    """The licence texts a distribution installed: its PEP 639 License-File entries, else files named like one."""
    files = list(dist.files or ())
    by_rel = {f.as_posix(): f for f in files}
    found: list[Path] = []
    for declared in dist.metadata.get_all("License-File") or []:
        for f in files:  # PEP 639 puts them under <name>.dist-info/licenses/; older tools at the dist-info's top
            rel = f.as_posix()
            if ".dist-info/" in rel and (rel.endswith(f".dist-info/licenses/{declared}")
                                         or rel.endswith(f".dist-info/{declared}")):
                found.append(Path(str(dist.locate_file(by_rel[rel]))))
                break
    if not found:
        found = [Path(str(dist.locate_file(f))) for f in files
                 if len(f.parts) <= 4 and _LICENCE_NAME.match(f.name) and not f.name.endswith((".py", ".pyc"))]
    return [p for p in found if p.is_file()]


def _first(dist: metadata.Distribution, key: str) -> str | None:
    values = dist.metadata.get_all(key)
    return str(values[0]) if values else None


def declared_licence(dist: metadata.Distribution) -> str:
    """What the distribution's metadata says its licence is (SPDX expression, License field or classifiers)."""
    md = dist.metadata
    expr = _first(dist, "License-Expression")
    if expr:
        return expr.strip()
    field_ = (_first(dist, "License") or "").strip()
    if field_ and len(field_) < 100 and "\n" not in field_:
        return field_
    classifiers = [c.split("::")[-1].strip() for c in md.get_all("Classifier") or [] if c.startswith("License ::")]
    return "; ".join(classifiers) or (field_.splitlines()[0][:100] if field_ else "not declared in its metadata")


def python_licence() -> Path | None:
    """The licence of the Python interpreter the bundle embeds (python3.dll / libpython)."""
    base = Path(sys.base_prefix)
    for p in (base / "LICENSE.txt", base / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "LICENSE.txt",
              Path(f"/usr/share/doc/python{sys.version_info[0]}.{sys.version_info[1]}/copyright")):
        if p.is_file():
            return p
    return None


class MissingLicenceError(RuntimeError):
    pass


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)


def write_licences(dists: dict[str, metadata.Distribution], out: Path,
                   fallback_root: Path = HERE / "licenses") -> list[str]:
    """Copy each distribution's licence texts to out/<name>/ and write out/INDEX.txt; returns the index lines.

    Raises MissingLicenceError naming every distribution with neither its own text nor a fallback.
    """
    lines: list[str] = []
    missing: list[str] = []
    out.mkdir(parents=True, exist_ok=True)
    for name in sorted(dists):
        dist = dists[name]
        texts = licence_files(dist)
        fallback = FALLBACK_TEXTS.get(name)
        if not texts and fallback:
            texts = sorted(p for p in (fallback_root / fallback).iterdir() if p.is_file())
        if not texts:
            missing.append(f"{dist.metadata['Name']} {dist.version}")
            continue
        dest = out / _safe(name)
        written: list[str] = []
        for src in texts:
            rel = _relative_name(dist, src)
            target = dest / rel
            if target.exists():  # two declared files with one relative name: keep both
                target = target.with_name(f"{len(written)}-{target.name}")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            written.append(target.relative_to(out).as_posix())
        lines.append(f"{dist.metadata['Name']} {dist.version}: {declared_licence(dist)}\n    "
                     + "\n    ".join(written))
    if missing:
        raise MissingLicenceError(
            "No licence text for: " + ", ".join(missing) + ". Add the texts under packaging/licenses/ and map the "
            "distribution in FALLBACK_TEXTS (packaging/third_party_licenses.py), or leave it out of the bundle.")
    return lines


def _relative_name(dist: metadata.Distribution, src: Path) -> Path:
    """Where a licence file goes under the distribution's folder: its path below dist-info/licenses, else its name."""
    parts = src.parts
    for i, part in enumerate(parts):
        if part.endswith(".dist-info"):
            rest = parts[i + 1:]
            if rest and rest[0] == "licenses":
                rest = rest[1:]
            return Path(*rest) if rest else Path(src.name)
    try:  # a file inside the package (nvidia/cusparselt/LICENSE.txt, onnxruntime/ThirdPartyNotices.txt)
        rel = os.path.relpath(str(src), str(dist.locate_file("")))
    except ValueError:  # another drive (Windows)
        return Path(src.name)
    return Path(src.name) if rel.startswith("..") else Path(rel)


def write_bundle_licences(sources: Iterable[str | os.PathLike[str]], out: Path, edition_note: str = "") -> Owners:
    """All licence files for a bundle made of `sources`: the project's, Python's, and every owning distribution's."""
    if out.exists():
        shutil.rmtree(out)
    sources = [os.fspath(s) for s in sources]
    found = owners(sources)
    found.distributions.pop("lesion-desktop", None)  # the project itself: LICENSE and the notices, below
    lines = write_licences(found.distributions, out)
    shutil.copyfile(ROOT / "LICENSE", out / "LICENSE-lesion-desktop.txt")
    shutil.copyfile(ROOT / "THIRD_PARTY_NOTICES.md", out / "THIRD_PARTY_NOTICES.md")
    nvidia = sorted({Path(s).name for s in sources if _NVIDIA_LIBRARY.search(Path(s).name)})
    if nvidia:  # NVIDIA's texts and notice, whichever package brought the libraries
        shutil.copytree(HERE / "licenses" / "nvidia", out / "nvidia")
        lines.append(f"NVIDIA CUDA libraries ({len(nvidia)} files, e.g. {', '.join(nvidia[:3])}): NVIDIA proprietary, "
                     "redistributable with this program\n    nvidia/README-NVIDIA.txt\n    nvidia/CUDA-SDK-License.txt"
                     "\n    nvidia/cuDNN-License.txt")
    py = python_licence()
    if py is not None:
        (out / "python").mkdir(exist_ok=True)
        shutil.copyfile(py, out / "python" / "LICENSE.txt")
        lines.insert(0, f"Python {sys.version.split()[0]}: PSF-2.0\n    python/LICENSE.txt")
    binaries = sorted({s for s in found.unowned if _SHARED_LIBRARY.search(Path(s).name)})
    if binaries:  # e.g. the interpreter's own extension modules, or a system library the build bundled
        (out / "UNTRACED-LIBRARIES.txt").write_text(
            "Shared libraries the build collected that no installed Python package lists: the Python interpreter's\n"
            "own (its licence: python/LICENSE.txt) and any system library the build machine supplied. Listed so\n"
            "that their origin and licence can be checked:\n\n" + "\n".join(binaries) + "\n", encoding="utf-8")
        lines.append(f"{len(binaries)} shared libraries from outside any Python package: UNTRACED-LIBRARIES.txt")
    header = ("Licences of the software in this folder's program\n"
              "==================================================\n\n"
              "Lesion Desktop itself: MIT (LICENSE-lesion-desktop.txt). The bundled models: CC BY-NC 4.0, and what\n"
              "that means for a clinic: THIRD_PARTY_NOTICES.md.\n"
              + (f"{edition_note}\n" if edition_note else "")
              + "\nThird-party components (name version: licence, then its texts in this folder), found from the\n"
              "files the build collected:\n\n")
    (out / "INDEX.txt").write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    found = owners(argv[1:])
    lines = write_licences(found.distributions, Path(argv[0]))
    print("\n".join(lines))
    if found.unowned:
        print(f"{len(found.unowned)} file(s) belong to no installed distribution", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
