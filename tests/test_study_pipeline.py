"""The study's own ensemble (InceptionV3 + DenseNet-201) through the whole pipeline, and DDP training."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys

import pytest

from lesion_desktop.bundle import load_ensemble
from lesion_desktop.cli import main as cli_main
from lesion_desktop.store import ModelStore
from tests.helpers import REPO
from tests.training_data import make_class_folders, make_ham_subset
from training.pipeline import RetrainConfig, install_candidate, retrain

pytestmark = pytest.mark.slow


def test_inception_v3_and_densenet201_train_calibrate_ensemble_install_classify(tmp_path):
    data = make_class_folders(tmp_path / "data", per_class=6)
    cfg = RetrainConfig(data=str(data), architectures=["inception_v3", "densenet201"],
                        work_dir=str(tmp_path / "work"), epochs_head=1, epochs_top=1, epochs_all=1,
                        imagenet="none", batch_size=4, max_batches=1, input_size=(128, 128),
                        export_onnx=False)  # the export is covered by test_inference; these two take ~2 min
    res = retrain(cfg)
    ens = load_ensemble(res.ensemble_dir)
    assert [m.architecture for m in ens.members] == ["inception_v3", "densenet201"]
    # Small inputs keep the test fast; the documented command trains at the native 299x299 / 224x224.
    assert [m.preprocess.input_size for m in ens.members] == [(128, 128), (128, 128)]
    for m in ens.members:
        history = m.manifest["training"]["history"]
        assert [h["phase"] for h in history] == ["head", "top", "all"]
        assert 0.05 <= m.temperature <= 20
        assert history[0]["trainable_params"] < history[1]["trainable_params"] < history[2]["trainable_params"]
    assert abs(sum(ens.weights) - 1) < 1e-9
    store = ModelStore(tmp_path / "store")
    active = install_candidate(res, store, override=True)  # no active models to be shown better than
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for p in sorted((data / "mel").iterdir())[:3]:
        shutil.copy(p, imgs)
    out = tmp_path / "preds.csv"
    assert cli_main(["classify", str(imgs), "-o", str(out), "--models", str(active)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 3 and all(r["prediction"] for r in rows)


def _split_with_train_images(data, n_train: int, path) -> dict[str, list[str]]:
    """A lesion-grouped split whose training part has exactly `n_train` images."""
    from training.data import read_dataset
    from training.splits import save_split

    lesions: dict[str, list[str]] = {}
    for r in read_dataset(data).records:
        lesions.setdefault(r.lesion_id, []).append(r.image_id)
    train: list[str] = []
    rest: list[list[str]] = []
    for ids in sorted(lesions.values(), key=len):
        if len(train) + len(ids) <= n_train:
            train.extend(ids)
        else:
            rest.append(ids)
    assert len(train) == n_train
    split = {"train": train, "val": [i for ids in rest[::2] for i in ids],
             "test": [i for ids in rest[1::2] for i in ids]}
    save_split(path, split, seed=0, data_fingerprint="test")
    return split


def test_distributed_data_parallel_on_two_cpu_processes(tmp_path):
    """torchrun with two processes (gloo on the CPU here; NCCL on a multi-GPU machine).

    17 training images on 2 ranks in batches of 4: unpadded, one rank would take a third step alone and both
    would wait for each other for ever. The timeout only guards the suite against such a hang.
    """
    data = make_ham_subset(tmp_path / "data", per_class=8)
    split = _split_with_train_images(data, 17, tmp_path / "split.json")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "training",
         "train", str(data), "-a", "baseline_cnn", "-o", str(out), "--input-size", "48x64", "--imagenet", "none",
         "--epochs-head", "1", "--epochs-top", "0", "--epochs-all", "1", "--batch-size", "4",
         "--split-file", str(tmp_path / "split.json")],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    ens = load_ensemble(out / "bundle")
    training = ens.members[0].manifest["training"]
    hist = training["history"]
    assert len(hist) == 2 and hist[-1]["val_balanced_accuracy"] is not None
    assert training["trained_image_ids"] == sorted(split["train"])
