"""The training module: data, splits, the two-part fine-tuning, calibration, ensembles and reports."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from lesion_desktop.bundle import load_bundle, load_ensemble
from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.errors import CancelledError, DatasetError, LesionError
from lesion_desktop.preprocess import PreprocessConfig
from tests.helpers import HAM, make_tiny_ensemble, require_data
from tests.training_data import make_class_folders, make_ham_subset
from training.calibrate import fit_temperature
from training.data import build_cache, read_dataset
from training.ensemble import choose_weights, combine
from training.metrics import binary_auc, evaluate
from training.pipeline import RetrainConfig, install_candidate, retrain
from training.progress import TaskState
from training.report import write_report
from training.splits import check_no_leak, lesion_grouped_split, split_counts
from training.trainer import TrainConfig, train


def test_real_metadata_split_is_lesion_grouped_and_stratified():
    ds = read_dataset(require_data(HAM))
    assert len(ds.records) == 10015 and not ds.problems
    split = lesion_grouped_split(ds.records, seed=0)
    check_no_leak(ds.records, split)
    lesion_splits: dict[str, set[str]] = defaultdict(set)
    lesion_of = {r.image_id: r.lesion_id for r in ds.records}
    for name, ids in split.items():
        for i in ids:
            lesion_splits[lesion_of[i]].add(name)
    assert all(len(s) == 1 for s in lesion_splits.values())
    assert sum(len(v) for v in split.values()) == 10015
    counts = split_counts(ds.records, split)
    for code in CLASS_CODES:
        total = sum(counts[s][code] for s in counts)
        assert counts["val"][code] >= 0.1 * total and counts["test"][code] >= 0.1 * total
        assert counts["train"][code] >= 0.6 * total
    assert lesion_grouped_split(ds.records, seed=0) == split
    assert lesion_grouped_split(ds.records, seed=1) != split


def test_data_problems_reported_and_skipped(tmp_path):
    root = make_class_folders(tmp_path / "data", per_class=6)
    (root / "melanoma?").mkdir()
    (root / "mel" / "notes.jpg").write_text("not an image")
    ds = read_dataset(root)
    assert ds.layout == "class folders" and ds.counts()["mel"] == 7
    assert any("melanoma?" in p for p in ds.problems)
    cache = build_cache(ds, PreprocessConfig(input_size=(48, 64)), tmp_path / "cache")
    assert len(cache.records) == 42 and cache.images.shape == (42, 48, 64, 3)
    assert any("notes.jpg" in p for p in ds.problems)

    ham = make_ham_subset(tmp_path / "ham", per_class=6)
    meta = ham / "HAM10000_metadata.csv"
    meta.write_text(meta.read_text() + "HAM_X,ISIC_9999999,mel,histo,50,male,back\nHAM_Y,ISIC_0024306,tumour,x,1,m,b\n")
    ds = read_dataset(ham)
    assert any("ISIC_9999999" in p and "not found" in p for p in ds.problems)
    assert any("unknown label 'tumour'" in p for p in ds.problems)

    few = make_class_folders(tmp_path / "few", per_class=6)
    for p in sorted((few / "df").iterdir())[:4]:
        p.unlink()
    with pytest.raises(DatasetError, match=r"Too few images for df \(2\)"):
        read_dataset(few)
    with pytest.raises(DatasetError, match="does not exist"):
        read_dataset(tmp_path / "nowhere")


def test_cache_decodes_once_and_notices_changes(tmp_path, monkeypatch):
    root = make_class_folders(tmp_path / "data", per_class=5)
    cfg = PreprocessConfig(input_size=(48, 64))
    first = build_cache(read_dataset(root), cfg, tmp_path / "cache")
    import training.data as data_mod

    def no_decoding(*a, **k):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(data_mod, "load_image", no_decoding)
    again = build_cache(read_dataset(root), cfg, tmp_path / "cache")
    assert again.fingerprint == first.fingerprint and np.array_equal(np.asarray(again.images), np.asarray(first.images))
    monkeypatch.undo()
    victim = sorted((root / "nv").iterdir())[0]
    victim.write_bytes((root / "mel" / sorted(p.name for p in (root / "mel").iterdir())[0]).read_bytes())
    assert build_cache(read_dataset(root), cfg, tmp_path / "cache").fingerprint != first.fingerprint


def test_metrics_on_a_known_example():
    y = np.array([0, 0, 1, 1, 4, 4, 4, 5, 5, 5])
    pred = np.array([0, 1, 1, 1, 4, 5, 5, 5, 5, 5])
    probs = np.full((10, 7), 0.01)
    probs[np.arange(10), pred] = 0.94
    m = evaluate(probs, y)
    assert m["accuracy"] == pytest.approx(0.7)
    # recalls: akiec 1/2, bcc 2/2, mel 1/3, nv 3/3 -> mean of the classes present
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 1 / 3 + 1) / 4)
    assert m["melanoma_recall"] == pytest.approx(1 / 3)
    assert m["confusion_matrix"][4][5] == 2
    assert binary_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)


def test_malignancy_warning_rates_count_the_combined_malignant_probability():
    """A melanoma ranked as a nevus still counts as warned on when mel + bcc + akiec reach the threshold."""
    from lesion_desktop.settings import Settings
    from training.metrics import WARNING_THRESHOLDS

    probs = np.zeros((5, 7))
    probs[0, [4, 5]] = (0.25, 0.75)  # melanoma, nevus on top, malignant 0.25
    probs[1, [4, 5]] = (0.60, 0.40)  # melanoma, malignant 0.60
    probs[2, [0, 1, 5]] = (0.15, 0.20, 0.65)  # bcc, nevus on top, malignant 0.35
    probs[3, [1, 5]] = (0.10, 0.90)  # nevus, malignant 0.10
    probs[4, [4, 2]] = (0.30, 0.70)  # bkl, malignant 0.30 (exactly at the threshold: warned)
    y = np.array([4, 4, 1, 5, 2])
    rows = {r["threshold"]: r for r in evaluate(probs, y)["malignancy_warning"]}
    assert Settings().warning_threshold in WARNING_THRESHOLDS
    assert rows[0.3] == {"threshold": 0.3, "melanoma": 0.5, "malignant": pytest.approx(2 / 3), "benign": 0.5}
    assert rows[0.2] == {"threshold": 0.2, "melanoma": 1.0, "malignant": 1.0, "benign": 0.5}
    assert rows[0.5]["malignant"] == pytest.approx(1 / 3) and rows[0.5]["benign"] == 0.0
    only_benign = evaluate(probs[3:], y[3:])["malignancy_warning"][0]
    assert only_benign["melanoma"] is None and only_benign["malignant"] is None


def test_bootstrap_intervals_resample_lesions_and_cover_the_figure():
    """Intervals bracket the point figure, narrow with more data, and widen when images repeat lesions."""
    from training.metrics import bootstrap_intervals

    rng = np.random.default_rng(3)
    y = rng.integers(0, 7, 600)
    pred = np.where(rng.random(600) < 0.7, y, rng.integers(0, 7, 600))
    probs = np.eye(7)[pred] * 0.9 + 0.1 / 7
    m = evaluate(probs, y)
    ci = bootstrap_intervals(probs, y)
    for k in ("balanced_accuracy", "melanoma_recall", "accuracy"):
        lo, hi = ci[k]
        assert lo < m[k] < hi and hi - lo < 0.25
    assert ci["unit"] == "image" and bootstrap_intervals(probs, y) == ci  # seeded: the same every time
    big = bootstrap_intervals(np.tile(probs, (4, 1)), np.tile(y, 4))
    width = lambda c: c["accuracy"][1] - c["accuracy"][0]  # noqa: E731
    assert width(big) < 0.7 * width(ci)
    # The same 600 images shown four times each: as lesions they are 600 draws, not 2400.
    lesions = np.tile(np.arange(600).astype(str), 4)
    grouped = bootstrap_intervals(np.tile(probs, (4, 1)), np.tile(y, 4), lesions)
    assert grouped["unit"] == "lesion" and width(grouped) > 1.5 * width(big)
    no_mel = bootstrap_intervals(probs[y != 4], y[y != 4])
    assert no_mel["melanoma_recall"] is None and no_mel["balanced_accuracy"] is not None


def test_paired_intervals_see_a_real_gain_and_not_a_tie():
    from training.metrics import paired_intervals

    rng = np.random.default_rng(5)
    y = rng.integers(0, 7, 1500)
    lesions = (np.arange(1500) // 2).astype(str)  # two images per lesion
    old_pred = np.where(rng.random(1500) < 0.7, y, (y + 1) % 7)
    better_pred = np.where(rng.random(1500) < 0.5, y, old_pred)  # fixes about half the old mistakes
    probs = lambda pred: np.eye(7)[pred] * 0.9 + 0.1 / 7  # noqa: E731
    gain = paired_intervals(probs(old_pred), probs(better_pred), y, lesions)
    assert gain["unit"] == "lesion" and gain["balanced_accuracy"][0] > 0.05
    same = paired_intervals(probs(old_pred), probs(old_pred), y, lesions)
    assert same["balanced_accuracy"] == [0.0, 0.0] and same["melanoma_recall"] == [0.0, 0.0]
    swapped = old_pred.copy()
    swapped[:40] = np.where(swapped[:40] == y[:40], (y[:40] + 1) % 7, y[:40])  # a few changes either way
    tie = paired_intervals(probs(old_pred), probs(swapped), y, lesions)
    assert tie["balanced_accuracy"][0] < 0 < tie["balanced_accuracy"][1]


def test_temperature_and_ensemble_weights():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 3000)
    true_logits = rng.normal(0, 1, (3000, 7))
    true_logits[np.arange(3000), y] += 2.0
    # Labels drawn from softmax(true_logits); the model reports logits 3x too confident.
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    y = np.array([rng.choice(7, p=row) for row in p])
    assert fit_temperature(true_logits * 3.0, y) == pytest.approx(3.0, rel=0.15)
    good = np.eye(7)[y] * 0.6 + 0.4 / 7
    noise = rng.dirichlet(np.ones(7), 3000)
    w = choose_weights([noise, good], y)
    assert w[1] > w[0]
    assert np.allclose(combine([noise, good], w).sum(1), 1)


def test_report_files(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 7, 200)
    probs = rng.dirichlet(np.ones(7), 200)
    out = write_report(evaluate(probs, y), tmp_path / "r", "Test report")
    for f in ("metrics.json", "confusion.png", "reliability.png", "report.md"):
        assert (tmp_path / "r" / f).stat().st_size > 100
    assert "balanced acc" in out.read_text() and "| mel |" in out.read_text()
    assert "| 30% |" in out.read_text()  # the malignancy warning at the app's default threshold
    from training.metrics import bootstrap_intervals

    m = evaluate(probs, y) | {"intervals": bootstrap_intervals(probs, y)}
    text = write_report(m, tmp_path / "ci", "With intervals").read_text()
    lo, hi = m["intervals"]["balanced_accuracy"]
    assert f"balanced acc {m['balanced_accuracy']:.3f} ({lo:.3f}-{hi:.3f})" in text and "bootstrap" in text


def _tiny_cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(architecture="baseline_cnn", data=str(data), out_dir=str(out), input_size=(48, 64),
                epochs_head=1, epochs_top=1, epochs_all=1, batch_size=8, max_batches=2, imagenet="none")
    base.update(kw)
    return TrainConfig(**base)


def test_two_part_training_writes_a_calibrated_bundle_and_reports_progress(tmp_path):
    data = make_ham_subset(tmp_path / "data", per_class=10)
    events: list[dict] = []
    fractions: list[float] = []
    res = train(_tiny_cfg(data, tmp_path / "run"), TaskState(lambda f, m: fractions.append(f), events.append))
    b = load_bundle(res.bundle)
    assert b.manifest["training"]["data_fingerprint"] and b.manifest["training"]["history"]
    assert b.manifest["metrics"]["val"]["n"] > 0 and "melanoma_recall" in b.manifest["metrics"]["val"]
    assert [r["threshold"] for r in b.manifest["metrics"]["val"]["malignancy_warning"]] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert b.manifest["metrics"]["val"]["intervals"]["unit"] == "lesion"
    assert b.manifest["preprocessing"]["effective_size"] == [150, 200]
    assert b.manifest["preprocessing"]["jpeg_quality"] == 75  # read from the HAM10000 copies it trained on
    assert [h["phase"] for h in res.history] == ["head", "top", "all"]
    kinds = {e["event"] for e in events}
    assert kinds == {"batch", "epoch"}
    batch = next(e for e in events if e["event"] == "batch")
    assert {"phase", "epoch", "batch", "loss", "eta_s"} <= set(batch)
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["seed"] == 0 and split["train"]
    # what the weights were fitted on, so that models are compared only on images neither saw
    trained = b.manifest["training"]["trained_image_ids"]
    assert trained == sorted(split["train"]) and not set(trained) & set(split["val"] + split["test"])


def test_effective_size_is_the_training_images_own(tmp_path):
    """The most common size, either orientation; the median when none dominates; large photos capped."""
    import cv2

    from tests.helpers import FULLRES
    from training.data import Record
    from training.prepare import MAX_EFFECTIVE_SIDE, measure_effective_size

    def records(sizes: list[tuple[int, int]]) -> list[Record]:
        out = []
        for k, (h, w) in enumerate(sizes):
            p = tmp_path / f"{k}-{h}x{w}.png"
            cv2.imwrite(str(p), np.zeros((h, w, 3), np.uint8))
            out.append(Record(p, 0, p.stem, p.stem))
        return out

    ham = read_dataset(require_data(HAM)).records
    assert measure_effective_size(ham) == (150, 200)
    full = [Record(p, 0, p.stem, p.stem) for p in sorted((require_data(FULLRES) / "images").glob("*.jpg"))]
    assert measure_effective_size(full) == (450, 600)
    assert measure_effective_size(records([(400, 300), (300, 400), (400, 300), (240, 320)])) == (300, 400)
    assert measure_effective_size(records([(300, 400), (240, 320), (480, 640)])) == (300, 400)  # the median
    assert MAX_EFFECTIVE_SIDE == 800
    assert measure_effective_size(records([(3000, 4000)] * 2)) == (600, 800)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    broken = Record(tmp_path / "broken.jpg", 0, "b", "b")
    assert measure_effective_size([broken, *records([(120, 160)])]) == (120, 160)


def test_training_on_larger_images_records_their_size(tmp_path):
    """A clinic's photos at 300x400 (some portrait): the bundle brings every input to 300x400, not 150x200."""
    import cv2

    data = make_class_folders(tmp_path / "data", per_class=5)
    small = train(_tiny_cfg(data, tmp_path / "run", epochs_top=0, epochs_all=0))
    assert load_bundle(small.bundle).manifest["preprocessing"]["effective_size"] == [150, 200]
    for k, p in enumerate(sorted(data.rglob("*.jpg"))):
        big = cv2.resize(cv2.imread(str(p)), (400, 300), interpolation=cv2.INTER_CUBIC)
        if k % 3 == 0:
            big = np.ascontiguousarray(np.rot90(big))
        cv2.imwrite(str(p), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
    res = train(_tiny_cfg(data, tmp_path / "run", epochs_top=0, epochs_all=0))
    pre = load_bundle(res.bundle).manifest["preprocessing"]
    assert pre["effective_size"] == [300, 400] and pre["jpeg_quality"] == 90 and pre["input_size"] == [48, 64]
    # the 150x200 run's checkpoint in the same folder was not resumed: it learnt from other pixels
    assert (tmp_path / "run" / "checkpoint.other-config.pt").exists()


def _batches(loader, epoch: int) -> list:
    loader.batch_sampler.set_epoch(epoch)
    return list(loader)


def test_augmentation_in_worker_processes_gives_the_same_batches(tmp_path):
    """Workers change where augmentation runs, not what the model sees, and leave the global stream alone."""
    import pickle

    import torch

    from training.augment import training_transform
    from training.loader import AugmentedImages, training_loader

    rng = np.random.default_rng(0)
    images = np.memmap(tmp_path / "cache.u8", dtype=np.uint8, mode="w+", shape=(21, 48, 64, 3))
    images[:] = rng.integers(0, 256, images.shape, dtype=np.uint8)
    images.flush()
    labels = rng.integers(0, 7, 21)
    pre = PreprocessConfig(input_size=(48, 64))

    def loader(workers: int):
        return training_loader(images, labels, np.arange(3, 21), pre, training_transform((48, 64)), batch_size=4,
                               seed=7, workers=workers)

    torch.manual_seed(123)
    before = torch.get_rng_state()
    serial = [_batches(loader(0), e) for e in (0, 1)]
    assert torch.equal(torch.get_rng_state(), before)
    parallel = [_batches(loader(2), e) for e in (0, 1)]
    for s_epoch, p_epoch in zip(serial, parallel, strict=True):
        assert len(s_epoch) == len(p_epoch) == 5  # 18 images in batches of 4
        for (xs, ys), (xp, yp) in zip(s_epoch, p_epoch, strict=True):
            assert xs.shape[1:] == (3, 48, 64) and xs.dtype == torch.float32
            assert torch.equal(xs, xp) and torch.equal(ys, yp)
    assert not torch.equal(serial[0][0][0], serial[1][0][0])  # another epoch: other order, other draws
    again = _batches(loader(0), 0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(again, serial[0], strict=True))
    seen = torch.cat([y for _, y in serial[0]])
    assert sorted(seen.tolist()) == sorted(labels[3:].tolist())
    # a spawned worker reopens the memmap instead of receiving every image pickled
    ds = AugmentedImages(images, labels, training_transform((48, 64)))
    blob = pickle.dumps(ds)
    assert len(blob) < images.nbytes / 20
    assert np.array_equal(np.asarray(pickle.loads(blob).images), np.asarray(images))


def test_distributed_shards_are_padded_to_one_length():
    """17 images on 2 ranks in batches of 4: both ranks take 3 steps (a rank with fewer would hang the other)."""
    from training.loader import EpochBatches

    ranks = [EpochBatches(np.arange(100, 117), 4, seed=0, rank=r, world=2) for r in (0, 1)]
    for s in ranks:
        s.set_epoch(3)
    batches = [list(s) for s in ranks]
    assert [len(s) for s in ranks] == [3, 3] and [len(b) for b in batches] == [3, 3]
    assert [[len(b) for b in bs] for bs in batches] == [[4, 4, 1], [4, 4, 1]]
    shown = [i for bs in batches for b in bs for i, _ in b]
    assert len(shown) == 18 and set(shown) == set(range(100, 117))  # one image twice, as DistributedSampler does
    seeds = [seed for bs in batches for b in bs for _, seed in b]
    assert len(set(seeds)) == 18


def test_class_balanced_sampling_draws_the_classes_alike_and_repeats_on_resume(tmp_path):
    """--sampling-power 1: an epoch's draws give each class about the same share, whatever its frequency;
    the same epoch draws the same images again (resume), another epoch others; 0 keeps one pass per epoch."""
    from training.augment import training_transform
    from training.loader import training_loader

    counts = [600, 200, 100, 50, 30, 15, 5]  # 1,000 images, as skewed as HAM10000
    labels = np.repeat(np.arange(7), counts)
    images = np.zeros((len(labels), 8, 8, 3), np.uint8)
    idx = np.arange(len(labels))

    def drawn(power: float, epoch: int) -> np.ndarray:
        loader = training_loader(images, labels, idx, PreprocessConfig(input_size=(8, 8)), training_transform((8, 8)),
                                 batch_size=50, seed=3, sampling_power=power)
        loader.batch_sampler.set_epoch(epoch)
        return np.array([i for batch in loader.batch_sampler for i, _ in batch])

    balanced = drawn(1.0, 0)
    share = np.bincount(labels[balanced], minlength=7) / len(balanced)
    assert len(balanced) == 1000 and np.all(np.abs(share - 1 / 7) < 0.05)  # vs 0.60 ... 0.005 in the data
    assert np.array_equal(drawn(1.0, 0), balanced) and not np.array_equal(drawn(1.0, 1), balanced)
    half = np.bincount(labels[drawn(0.5, 0)], minlength=7)
    assert half[0] > half[6] * 3 and half[6] > 5 * 2  # square-root balancing lies in between
    plain = drawn(0.0, 0)
    assert sorted(plain.tolist()) == idx.tolist()  # each image once


def test_sampling_power_reaches_training_and_its_record(tmp_path):
    from training.trainer import setup

    data = make_ham_subset(tmp_path / "data", per_class=6)
    cfg = _tiny_cfg(data, tmp_path / "run", epochs_top=0, sampling_power=1.0, class_weight_power=0.0)
    run = setup(cfg, None, 0.0)
    assert run.loader.batch_sampler.draw_p is not None  # the loader draws class-balanced
    assert run.loss_fn.weight is not None and bool((run.loss_fn.weight == 1).all())  # and the loss weighs alike
    res = train(cfg)
    config = json.loads((res.bundle / "manifest.json").read_text())["training"]["config"]
    assert config["sampling_power"] == 1.0 and config["class_weight_power"] == 0.0


def test_ema_keeps_the_average_of_the_weights_and_resumes_it(tmp_path):
    """--ema-decay: the bundle holds the moving average (what each epoch was judged by), not the last step's
    weights; an interrupted run goes on with the average it had, so it ends where an uninterrupted one does."""
    import torch
    from safetensors.torch import load_file

    data = make_ham_subset(tmp_path / "data", per_class=6)
    kw = dict(epochs_head=0, epochs_top=0, ema_decay=0.5, max_batches=3)
    one = train(_tiny_cfg(data, tmp_path / "one", epochs_all=1, **kw))
    ck = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    assert ck["ema"] and int(ck["ema"]["n_averaged"]) == 3
    saved = load_file(str(one.bundle / "weights.safetensors"))
    averaged = {k.removeprefix("module."): v for k, v in ck["ema"].items() if k.startswith("module.")}
    last = ck["model"]
    name = next(k for k, v in last.items() if v.dtype.is_floating_point and v.ndim > 1)
    assert torch.equal(saved[name].float(), averaged[name].float())
    assert (saved[name].float() - last[name].float()).abs().max() > 1e-6  # the last step's weights differ
    # two epochs straight, or stopped after the first and resumed from its checkpoint: the same average
    straight = train(_tiny_cfg(data, tmp_path / "straight", epochs_all=2, **kw))
    state = TaskState(on_report=lambda _f, msg: state.cancel() if msg.startswith("all epoch 1/2:") else None)
    with pytest.raises(CancelledError):
        train(_tiny_cfg(data, tmp_path / "stopped", epochs_all=2, **kw), state)
    resumed = train(_tiny_cfg(data, tmp_path / "stopped", epochs_all=2, **kw))
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["ema"]
    b = torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=True)["ema"]
    assert int(b["n_averaged"]) == 6 and all(torch.equal(a[k], b[k]) for k in a)
    assert len(resumed.history) == 2
    assert [(h["loss"], h["val_balanced_accuracy"]) for h in straight.history] == \
        [(h["loss"], h["val_balanced_accuracy"]) for h in resumed.history]
    assert torch.equal(load_file(str(straight.bundle / "weights.safetensors"))[name],
                       load_file(str(resumed.bundle / "weights.safetensors"))[name])


def test_training_with_worker_processes_learns_the_same_weights(tmp_path):
    data = make_ham_subset(tmp_path / "data", per_class=6)
    serial = train(_tiny_cfg(data, tmp_path / "serial", epochs_top=0, workers=0))
    parallel = train(_tiny_cfg(data, tmp_path / "parallel", epochs_top=0, workers=2))
    assert [h["loss"] for h in serial.history] == [h["loss"] for h in parallel.history]
    assert serial.val_metrics["nll"] == parallel.val_metrics["nll"]


def test_mixed_precision_scaler_state_is_checkpointed_and_resumed(tmp_path, monkeypatch):
    """The loss scale learnt before an interruption goes on after it (not back to its initial value)."""
    import torch

    import training.trainer as trainer_mod
    from training.trainer import CHECKPOINT

    scalers: list[torch.amp.GradScaler] = []

    def growing_scaler(device):  # CUDA's float16 scaler, made to work on the CPU: doubles after every step
        scalers.append(torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1))
        return scalers[-1]

    monkeypatch.setattr(trainer_mod, "grad_scaler", growing_scaler)
    data = make_ham_subset(tmp_path / "data", per_class=6)
    state = TaskState(None, lambda e: e["event"] == "epoch" and e["phase"] == "all" and state.cancel())
    cfg = _tiny_cfg(data, tmp_path / "run", epochs_top=0, epochs_all=2)
    with pytest.raises(CancelledError):
        train(cfg, state)
    saved = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)
    assert saved["scaler"]["scale"] == 2.0**12  # the all-layers phase's two steps
    scalers.clear()
    resumed = train(cfg)
    assert [h["phase"] for h in resumed.history] == ["head", "all", "all"]
    assert len(scalers) == 1 and scalers[0].get_scale() == 2.0**14  # went on from 2**12 for two more steps


def test_cancel_stops_without_a_bundle(tmp_path):
    data = make_ham_subset(tmp_path / "data", per_class=6)
    state = TaskState()
    calls = {"n": 0}

    def on_partial(v):
        calls["n"] += 1
        if calls["n"] == 2:
            state.cancel()

    state._on_partial = on_partial
    with pytest.raises(CancelledError):
        train(_tiny_cfg(data, tmp_path / "run", epochs_all=3), state)
    assert not (tmp_path / "run" / "bundle").exists()


def test_retrain_pipeline_then_install_and_roll_back(tmp_path):
    from lesion_desktop.store import ModelStore

    data = make_class_folders(tmp_path / "data", per_class=8)
    active = make_tiny_ensemble(tmp_path / "active")
    events: list[dict] = []
    cfg = RetrainConfig(data=str(data), architectures=["baseline_cnn"], work_dir=str(tmp_path / "work"),
                        epochs_head=1, epochs_top=0, epochs_all=1, input_size=(48, 64), imagenet="none",
                        batch_size=8, max_batches=2)
    res = retrain(cfg, TaskState(None, events.append), active_dir=active)
    # The tiny active models record no training images, so no validation image is known to be new to them:
    # no figures are compared (tests/test_safe_install.py covers the paired figures), and installing is refused
    # without an explicit override (issue 14, point 4).
    c = res.comparison
    assert c is not None and c.n_validation == res.metrics["n"] and c.active is None
    assert "do not record which images" in c.problem and res.verdict.needs_override and not res.better
    assert all(e.get("member") == "baseline_cnn" for e in events)
    ens = load_ensemble(res.ensemble_dir)
    assert ens.manifest["metrics"]["val"]["balanced_accuracy"] == pytest.approx(res.metrics["balanced_accuracy"])
    from lesion_desktop.inference import load_engine

    # the candidate carries its ONNX graphs, so the app runs it on ONNX Runtime without exporting at start
    assert load_engine(res.ensemble_dir, "cpu").backend == "onnxruntime"
    store = ModelStore(tmp_path / "store")
    with pytest.raises(LesionError, match="Not installed"):
        install_candidate(res, store)
    assert store.active() is None
    installed = install_candidate(res, store, override=True)
    assert store.active() == installed
    assert store.rollback() is None  # back to the bundled default
    assert store.rollback() == installed


def test_a_finished_run_can_be_given_more_epochs(tmp_path):
    data = make_ham_subset(tmp_path / "data", per_class=6)
    first = train(_tiny_cfg(data, tmp_path / "run"))
    assert [h["phase"] for h in first.history] == ["head", "top", "all"]
    more = train(_tiny_cfg(data, tmp_path / "run", epochs_all=3))
    assert [h["phase"] for h in more.history] == ["head", "top", "all", "all", "all"]
    assert more.history[:3] == first.history
    training = load_bundle(more.bundle).manifest["training"]
    assert training["config"]["epochs_all"] == 3
    # the manifest's time is the whole training's: both runs, each with its epochs
    assert [r["epochs"] for r in training["runs"]] == [3, 2]
    assert training["seconds"] >= sum(r["seconds"] for r in training["runs"]) - 0.2  # each rounded to 0.1 s
    assert training["seconds"] > first.seconds


def test_a_checkpoint_from_before_the_jpeg_setting_still_resumes(tmp_path):
    """Upgrading the program must not throw away a half-finished training."""
    import torch

    from training.trainer import CHECKPOINT

    data = make_ham_subset(tmp_path / "data", per_class=6)
    first = train(_tiny_cfg(data, tmp_path / "run"))
    ckpt = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=False)
    del ckpt["config"]["jpeg_quality"]  # as written by the previous versions
    del ckpt["config"]["effective_size"], ckpt["config"]["workers"], ckpt["effective_size"], ckpt["scaler"]
    torch.save(ckpt, tmp_path / "run" / CHECKPOINT)
    more = train(_tiny_cfg(data, tmp_path / "run", epochs_all=2))
    assert more.history[:3] == first.history and len(more.history) == 4
    assert not (tmp_path / "run" / "checkpoint.other-config.pt").exists()


def test_early_stopping_judges_the_all_layers_phase_from_its_midpoint(tmp_path, monkeypatch):
    """Patience counts only once the one-cycle rate has come down, and only epochs without a new best."""
    import training.trainer as trainer_mod

    data = make_ham_subset(tmp_path / "data", per_class=6)
    real_evaluate = trainer_mod.evaluate
    # head 0.5; all-layers: a high-rate first half that is worse, then two epochs without a new best
    script = [0.5, 0.2, 0.3, 0.3, 0.4, 0.45, 0.44, 0.9, 0.9]

    def scripted(probs, y, lesions=None):
        m = real_evaluate(probs, y, lesions)
        if script:
            m["balanced_accuracy"] = script.pop(0)
        return m

    monkeypatch.setattr(trainer_mod, "evaluate", scripted)
    res = train(_tiny_cfg(data, tmp_path / "run", epochs_top=0, epochs_all=8, patience=2))
    assert [h["val_balanced_accuracy"] for h in res.history] == [0.5, 0.2, 0.3, 0.3, 0.4, 0.45, 0.44]

    # an improvement after the midpoint resets the count
    script[:] = [0.5, 0.2, 0.3, 0.3, 0.4, 0.6, 0.55, 0.7, 0.65, 0.6]
    res = train(_tiny_cfg(data, tmp_path / "run2", epochs_top=0, epochs_all=8, patience=2))
    assert [h["val_balanced_accuracy"] for h in res.history] == [0.5, 0.2, 0.3, 0.3, 0.4, 0.6, 0.55, 0.7, 0.65]


def test_evaluation_with_tta_gives_the_engines_tta_probabilities(tmp_path):
    """`python -m training evaluate --tta` must score what the app shows with TTA on, not something else."""
    import torch

    from lesion_desktop.inference import load_engine
    from lesion_desktop.inference.ensemble import member_probabilities
    from training.ensemble import evaluate_models, member_probs
    from training.splits import save_split

    data = make_ham_subset(tmp_path / "data", per_class=5)
    ens_dir = make_tiny_ensemble(tmp_path / "ens")
    ds = read_dataset(data)
    ids = [r.image_id for r in ds.records]
    split_file = tmp_path / "split.json"
    save_split(split_file, {"train": [], "val": ids, "test": []}, seed=0, data_fingerprint="test")
    ens = load_ensemble(ens_dir)
    plain = member_probs(ens.members, str(data), str(split_file), "val", tmp_path / "cache")
    tta = member_probs(ens.members, str(data), str(split_file), "val", tmp_path / "cache", tta=True)
    assert not np.allclose(plain.probs[0], tta.probs[0], atol=1e-4)  # the views change the answer
    engine = load_engine(ens_dir, "cpu", tta=True, backend="torch")
    cache = build_cache(ds, ens.members[0].preprocess, tmp_path / "cache")
    order = [next(k for k, r in enumerate(cache.records) if r.image_id == i) for i in ids]
    with torch.inference_mode():
        expected = member_probabilities(engine.runners[0], cache.images[order], tta=True)[0]
    np.testing.assert_allclose(tta.probs[0], expected, atol=1e-5)
    m_plain = evaluate_models(ens_dir, data=str(data), split_file=str(split_file), which="val",
                              cache_dir=tmp_path / "cache")
    m_tta = evaluate_models(ens_dir, data=str(data), split_file=str(split_file), which="val",
                            cache_dir=tmp_path / "cache", tta=True)
    assert m_plain["n"] == m_tta["n"] == len(ids)
    assert m_plain["nll"] != pytest.approx(m_tta["nll"], abs=1e-6)
    assert m_plain["intervals"]["unit"] == "lesion"
    lesion_of = {r.image_id: r.lesion_id for r in ds.records}
    assert sorted(plain.groups) == sorted(lesion_of[i] for i in ids)


def test_the_training_copies_jpeg_quality_is_read_from_their_quantisation_tables(tmp_path):
    import cv2

    from training.data import Record, estimate_jpeg_quality, jpeg_quality_of

    img = (np.random.default_rng(0).random((150, 200, 3)) * 255).astype(np.uint8)
    for q in (30, 75, 95):
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        (tmp_path / f"q{q}.jpg").write_bytes(buf.tobytes())
        assert jpeg_quality_of(tmp_path / f"q{q}.jpg") == q
    cv2.imwrite(str(tmp_path / "x.png"), img)
    assert jpeg_quality_of(tmp_path / "x.png") is None
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    assert jpeg_quality_of(tmp_path / "bad.jpg") is None
    ds = read_dataset(require_data(HAM))
    assert estimate_jpeg_quality(ds.records, (150, 200)) == 75
    from tests.helpers import FULLRES

    full = [Record(p, 0, p.stem, p.stem) for p in sorted((require_data(FULLRES) / "images").glob("*.jpg"))]
    assert estimate_jpeg_quality(full, (150, 200)) is None  # 600x450: not the training resolution
    mixed = [Record(tmp_path / f"q{q}.jpg", 0, str(q), str(q)) for q in (30, 75)]
    assert estimate_jpeg_quality(mixed, (150, 200)) is None
    assert estimate_jpeg_quality([mixed[1]], (150, 200)) == 75


def test_training_command_line_reads_and_refuses_jpeg_quality(capsys):
    from training.cli import _jpeg_quality, build_parser

    p = build_parser()
    a = p.parse_args(["train", "data", "-a", "mobilenet_v2", "-o", "out", "--jpeg-quality", "none"])
    assert a.jpeg_quality == "none"
    assert p.parse_args(["train", "data", "-a", "mobilenet_v2", "-o", "out", "--jpeg-quality", "80"]).jpeg_quality == 80
    assert _jpeg_quality("AUTO") == "auto"
    for bad in ("0", "101", "high"):
        with pytest.raises(SystemExit):
            p.parse_args(["train", "data", "-a", "mobilenet_v2", "-o", "out", "--jpeg-quality", bad])
        assert "expected 'auto', 'none' or a quality 1..100" in capsys.readouterr().err


def test_every_training_command_option_is_explained_in_help():
    """`--help` tells what each option does, and names every architecture this software can train."""
    import argparse

    from lesion_desktop.registry import ARCHITECTURES
    from training.cli import build_parser

    p = build_parser()
    subs = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    undocumented = [f"{name} {o.dest}" for name, sp in subs.choices.items() for o in sp._actions
                    if not isinstance(o, argparse._HelpAction) and not o.help]
    assert undocumented == []
    for cmd in ("train", "retrain"):
        text = subs.choices[cmd].format_help()
        assert [a for a in ARCHITECTURES if a not in text] == []


def test_agreement_command_reports_pairs_problems_and_the_verdict(tmp_path, capsys):
    """`python -m training agreement`: pairs by file name, skips what it cannot use, exits 1 when not met."""
    import shutil

    from tests.helpers import FULLRES
    from training.cli import main as train_main

    full, copies = tmp_path / "full", tmp_path / "copies"
    full.mkdir()
    copies.mkdir()
    for p in sorted((require_data(FULLRES) / "images").glob("*.jpg"))[:4]:
        shutil.copy(p, full)
        shutil.copy(HAM / "images" / p.name, copies)
    (full / "ISIC_missing.jpg").write_bytes((full / p.name).read_bytes())  # no copy of that name
    (full / "ISIC_broken.jpg").write_bytes(b"not an image")
    (copies / "ISIC_broken.jpg").write_bytes(b"not an image either")
    ens = make_tiny_ensemble(tmp_path / "ens")
    # the same image at both sizes through one untrained model: a loose target is met, an impossible one not
    assert train_main(["agreement", str(ens), str(full), str(copies), "--min-agreement", "0",
                       "--max-difference", "1"]) == 0
    out = capsys.readouterr().out
    assert "4 pairs" in out and "ISIC_missing.jpg: no copy" in out and "ISIC_broken.jpg" in out and ": met" in out
    assert train_main(["agreement", str(ens), str(full), str(copies), "--max-difference", "0"]) == 1
    assert "NOT met" in capsys.readouterr().out
    assert train_main(["agreement", str(ens), str(full), str(tmp_path / "nowhere")]) != 0


def test_channel_gains_tilt_the_colour_balance_and_stay_off_by_default(tmp_path):
    """--channel-gain S: each training image's channels scaled by exp(U(-S, S)), fixed by the image's seed; 0
    leaves the policy as it was, so runs without it draw exactly what they drew before."""
    from training.augment import ChannelGains, augment_image, training_transform
    from training.trainer import setup

    grey = np.full((48, 64, 3), 120, np.uint8)  # the jitter's hue and saturation leave grey grey
    def balance(transform, seed: int) -> np.ndarray:
        means = augment_image(grey, transform, seed).reshape(-1, 3).astype(float).mean(0)
        return means / means.mean()

    tilted = [balance(training_transform((48, 64), 0.2), s) for s in range(20)]
    plain = [balance(training_transform((48, 64)), s) for s in range(20)]
    assert max(np.ptp(b) for b in plain) < 0.03
    assert np.mean([np.ptp(b) for b in tilted]) > 0.1 and max(np.ptp(b) for b in tilted) < 2 * (np.exp(0.2) - 1) + 0.05
    assert np.array_equal(augment_image(grey, training_transform((48, 64), 0.2), 4),
                          augment_image(grey, training_transform((48, 64), 0.2), 4))
    assert not any(isinstance(t, ChannelGains) for t in training_transform((48, 64)).transforms)

    data = make_ham_subset(tmp_path / "data", per_class=6)
    cfg = _tiny_cfg(data, tmp_path / "run", epochs_top=0, channel_gain=0.2)
    gains = [t for t in setup(cfg, None, 0.0).loader.dataset.transform.transforms if isinstance(t, ChannelGains)]
    assert [g.strength for g in gains] == [0.2]
    res = train(cfg)
    assert json.loads((res.bundle / "manifest.json").read_text())["training"]["config"]["channel_gain"] == 0.2
