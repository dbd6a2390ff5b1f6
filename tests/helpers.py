"""Shared test helpers: tiny models (fast) and paths to the real data in ../shared."""

from __future__ import annotations

from pathlib import Path

import torch

from lesion_desktop.bundle import save_bundle, save_ensemble
from lesion_desktop.preprocess import PreprocessConfig
from lesion_desktop.registry import build_model

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
HAM = SHARED_DATA / "ham10000"
FULLRES = SHARED_DATA / "ham10000_fullres_sample"
TINY_SIZE = (48, 64)


def require_data(path: Path = HAM) -> Path:
    """Real-data tests fail loudly (never skip) when ../shared/data is missing."""
    if not path.exists():
        raise AssertionError(f"test data missing: {path} (the repo expects ../shared/data beside it)")
    return path


def make_tiny_bundle(folder: Path, seed: int = 0, input_size: tuple[int, int] = TINY_SIZE) -> Path:
    torch.manual_seed(seed)
    model = build_model("baseline_cnn")
    pre = PreprocessConfig(input_size=input_size)
    return save_bundle(model, folder, architecture="baseline_cnn", preprocess=pre, temperature=1.0,
                       metrics={"val": {"balanced_accuracy": 0.0}}, training={"note": "untrained test model"})


def make_tiny_ensemble(folder: Path, members: int = 2) -> Path:
    names = []
    for i in range(members):
        make_tiny_bundle(folder / f"tiny{i}", seed=i)
        names.append((f"tiny{i}", 1.0))
    return save_ensemble(folder, names, name="tiny-test-ensemble")
