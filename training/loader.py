"""Feeding the training step: augmentation in DataLoader workers, the same batches for any number of them.

As in torchvision's classification references, worker processes prepare the batches (here: augment and
normalise the cached uint8 images, 4-12 ms of CPU per image) into pinned memory while the training step
runs, so a GPU does not wait on the CPU. Each image's random draw is seeded from (seed, epoch, position),
not from a worker's own stream: 0 or 8 workers, a first run or a resumed one, give the same batches.

The shards of a distributed run are padded to one length as `DistributedSampler` pads them: a rank that
runs out of batches first leaves the others waiting in their gradient all-reduce for ever.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from lesion_desktop.preprocess import PreprocessConfig, normalise_batch
from training.augment import augment_image

Key = tuple[int, int]  # (image index in the cache, the seed of its augmentation)


class EpochBatches(Sampler[list[Key]]):
    """One epoch's batches for one rank: a seeded permutation of the training images, padded and sharded.

    `set_epoch` picks the epoch (its permutation and augmentation seeds), like DistributedSampler's.
    Within a batch the images are sorted by index, so reading them from the memmap cache is sequential.
    """

    def __init__(self, indices: np.ndarray, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 max_batches: int | None = None, draw_weights: np.ndarray | None = None) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        # None: each image once per epoch. Else one weight per index: an epoch of as many draws, with replacement.
        self.draw_p = None if draw_weights is None else np.asarray(draw_weights, np.float64) / np.sum(draw_weights)
        self.per_rank = math.ceil(len(self.indices) / world)
        batches = math.ceil(self.per_rank / batch_size)
        self.batches = min(batches, max_batches) if max_batches else batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches

    def shard(self) -> tuple[np.ndarray, np.ndarray]:
        """This rank's images for the epoch and their augmentation seeds (every rank gets `per_rank`)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.draw_p is None:
            order = rng.permutation(self.indices)
        else:
            order = rng.choice(self.indices, size=len(self.indices), replace=True, p=self.draw_p)
        seeds = rng.integers(0, 2**62, size=self.per_rank * self.world)
        padding = self.per_rank * self.world - len(order)
        order = np.concatenate([order, np.resize(order, padding)])  # repeats from the start, as torch does
        return order[self.rank :: self.world], seeds[self.rank :: self.world]

    def __iter__(self) -> Iterator[list[Key]]:
        order, seeds = self.shard()
        for b in range(self.batches):
            part = slice(b * self.batch_size, (b + 1) * self.batch_size)
            chosen, chosen_seeds = order[part], seeds[part]
            by_index = np.argsort(chosen, kind="stable")
            yield [(int(chosen[k]), int(chosen_seeds[k])) for k in by_index]


class AugmentedImages(Dataset[tuple[torch.Tensor, int]]):
    """The cached images, each augmented with the seed its key carries.

    A memmap cache is reopened from its file in each worker instead of being pickled whole (under the
    spawn start method, Windows' and macOS's, pickling a memmap copies every image into each worker).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: v2.Compose) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if isinstance(self.images, np.memmap) and self.images.filename:
            state["images"] = (str(self.images.filename), self.images.shape, self.images.offset)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["images"], tuple):
            filename, shape, offset = state["images"]
            state["images"] = np.memmap(filename, dtype=np.uint8, mode="r", shape=shape, offset=offset)
        self.__dict__.update(state)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, int]:
        index, seed = key
        image = augment_image(np.asarray(self.images[index]), self.transform, seed)
        return torch.from_numpy(image), int(self.labels[index])


def collate(samples: list[tuple[torch.Tensor, int]], pre: PreprocessConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack and normalise (in the worker): NCHW float32 as the model takes it, and the labels."""
    images = torch.stack([s[0] for s in samples])
    return normalise_batch(images, pre), torch.tensor([s[1] for s in samples], dtype=torch.int64)


def training_loader(images: np.ndarray, labels: np.ndarray, indices: np.ndarray, pre: PreprocessConfig,
                    transform: v2.Compose, *, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                    max_batches: int | None = None, workers: int = 0, pin_memory: bool = False,
                    sampling_power: float = 0.0) -> DataLoader:
    """Augmented, normalised training batches; call `loader.batch_sampler.set_epoch(e)` before each epoch.

    `sampling_power` p > 0 draws each epoch's images with replacement, an image of class c with weight
    1 / count(c)^p (1: every class equally often; 0.5: square-root balancing); 0: each image once per epoch.
    """
    draw = None
    if sampling_power > 0:
        counts = np.bincount(labels[indices], minlength=int(labels.max()) + 1).astype(np.float64)
        draw = 1.0 / np.maximum(counts[labels[indices]], 1.0) ** sampling_power
    return DataLoader(
        AugmentedImages(images, labels, transform),
        batch_sampler=EpochBatches(indices, batch_size, seed, rank, world, max_batches, draw),
        collate_fn=partial(collate, pre=pre), num_workers=workers, pin_memory=pin_memory,
        # its own generator: drawing worker seeds must not move the global torch stream (dropout, resume)
        generator=torch.Generator().manual_seed(seed),
    )
