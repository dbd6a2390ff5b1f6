"""What one member's training is asked to do (`python -m training train`'s options, the dialog's choices)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from lesion_desktop.registry import Phase


class PhasePlan(NamedTuple):
    name: Phase
    epochs: int
    lr: float


@dataclass
class TrainConfig:
    architecture: str
    data: str
    out_dir: str
    input_size: tuple[int, int] | None = None  # None: the architecture's native size
    epochs_head: int = 1
    epochs_top: int = 2
    epochs_all: int = 6
    batch_size: int = 32
    lr_head: float = 1e-3
    lr_top: float = 3e-4
    lr_all: float = 1e-4
    weight_decay: float = 1e-4
    class_weight_power: float = 1.0  # 1: inverse-frequency loss weights; 0: none
    # > 0: class-balanced sampling instead (draws with replacement, weight 1/count^power); usually with
    # class_weight_power 0, or the rare classes are favoured twice
    sampling_power: float = 0.0
    # > 0: keep an exponential moving average of the weights (decay per step, e.g. 0.998); epochs are judged,
    # and the best one kept, by the average rather than by the weights of the last step
    ema_decay: float = 0.0
    # > 0: also tilt each training image's colour balance, each channel x exp(U(-channel_gain, channel_gain))
    # (another camera's white balance; training.augment.ChannelGains)
    channel_gain: float = 0.0
    patience: int = 3
    seed: int = 0
    imagenet: str = "auto"  # "auto": torch cache if present; "none"; or a weights file path
    # A model bundle to start from instead (fine-tuning an installed model): its weights, head included, and
    # its preprocessing (input size, effective size, JPEG quality, colour constancy, hair removal); `imagenet`,
    # `input_size` and the preprocessing options are then not used.
    init_from: str | None = None
    color_constancy: bool = False
    hair_removal: bool = False
    # "auto": the training images' own quality (estimate_jpeg_quality); None or "none": no re-encoding
    jpeg_quality: int | str | None = "auto"
    # (height, width) every image is brought to first; None: the training images' own (measure_effective_size)
    effective_size: tuple[int, int] | None = None
    device: str = "auto"
    split_file: str | None = None
    cache_dir: str | None = None
    max_batches: int | None = None  # limit batches per epoch (smoke tests)
    eval_batch_size: int = 64
    workers: int | None = None  # DataLoader processes that augment; None: chosen for the device (auto_workers)
    half_weights: bool = False
    command: str = ""

    def phases(self) -> list[PhasePlan]:
        p = [PhasePlan("head", self.epochs_head, self.lr_head), PhasePlan("top", self.epochs_top, self.lr_top),
             PhasePlan("all", self.epochs_all, self.lr_all)]
        return [x for x in p if x.epochs > 0]
