"""The feature cache and the levers tried on it: stale entries, the app's TTA, tau and where it is chosen."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lesion_desktop.inference.ensemble import member_probabilities
from lesion_desktop.inference.runner import RunOutput, calibrated_softmax, weighted_mean
from lesion_desktop.manifest import MemberInfo, validate_ensemble
from lesion_desktop.preprocess import PreprocessConfig
from tests.helpers import HAM, REPO, make_tiny_bundle, require_data
from training.ablation import TAUS, Config, Lab, ablate, adjusted
from training.featcache import APP_TTA, VIEWS, entry_path, load_or_compute, member_key, run_view
from training.levers import CacheSet, MemberData, SplitData, default_split
from training.metrics import evaluate

K = 7


class FakeRunner:
    """A position- and colour-sensitive function of the input, so every view gives other outputs."""

    backend = "onnxruntime"
    gives_cams = False

    def __init__(self, info: MemberInfo, seed: int) -> None:
        self.info = info
        rng = np.random.default_rng(seed)
        self.a = rng.normal(size=(K, 3, 4))
        self.sizes: list[tuple[int, int]] = []

    def run(self, x: np.ndarray) -> RunOutput:
        n, _, h, w = x.shape
        self.sizes.append((h, w))
        ramp_h = np.linspace(0, 1, h)[None, None, :, None]
        ramp_w = np.linspace(0, 1, w)[None, None, None, :]
        feats = np.concatenate([x.mean((2, 3)), (x * ramp_h).mean((2, 3)), (x * ramp_w).mean((2, 3)),
                                (x**2 * ramp_h * ramp_w).mean((2, 3))], axis=1)  # (N, 12)
        logits = np.einsum("nc,kc->nk", feats, self.a.reshape(K, 12)) * 3
        return RunOutput(logits.astype(np.float32), None, feats.astype(np.float32))


def fake_info(tmp: Path, size: tuple[int, int] = (24, 32), temperature: float = 1.3,
              mean: tuple[float, float, float] = (0.485, 0.456, 0.406)) -> MemberInfo:
    pre = PreprocessConfig(input_size=size, effective_size=size, mean=mean)
    return MemberInfo(tmp, {}, "fake", pre, temperature, tmp / "w.safetensors", "0" * 64)


def images(n: int = 5, size: tuple[int, int] = (24, 32), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *size, 3), dtype=np.uint8)


def test_cache_key_follows_the_weights_and_a_stale_entry_is_never_read(tmp_path):
    member = make_tiny_bundle(tmp_path / "m", seed=0)
    graph = member / "model.onnx"
    graph.write_bytes(b"graph-v1")
    info = replace(fake_info(member), weights_path=member / "weights.safetensors")
    key1 = member_key(info, graph)
    ids = ["a", "b"]
    calls = []

    def compute(value: float):
        def f():
            calls.append(value)
            return np.full((2, K), value, np.float32), np.full((2, 4), value, np.float32)
        return f

    root = tmp_path / "cache"
    e = load_or_compute(root, key1, "val", "plain", ids, compute(1.0))
    assert not e.cached and calls == [1.0]
    e = load_or_compute(root, key1, "val", "plain", ids, compute(9.0))
    assert e.cached and calls == [1.0] and float(e.logits[0, 0]) == 1.0  # read back, not scored again

    make_tiny_bundle(member, seed=1)  # new weights in the same folder
    key2 = member_key(info, graph)
    assert key2 != key1
    e = load_or_compute(root, key2, "val", "plain", ids, compute(2.0))
    assert not e.cached and float(e.logits[0, 0]) == 2.0  # the old weights' entry is not used

    graph.write_bytes(b"graph-v2")  # another graph for the same weights
    key3 = member_key(info, graph)
    assert key3 not in (key1, key2)

    # an entry stored under another key (copied, or a prefix collision) is scored again, not trusted
    stale = entry_path(root, key3, "val", "plain", ids)
    stale.parent.mkdir(parents=True)
    shutil.copy(entry_path(root, key1, "val", "plain", ids), stale)
    e = load_or_compute(root, key3, "val", "plain", ids, compute(3.0))
    assert not e.cached and float(e.logits[0, 0]) == 3.0
    # and another image set is another entry
    e = load_or_compute(root, key3, "val", "plain", ["a", "c"], compute(4.0))
    assert not e.cached and float(e.logits[0, 0]) == 4.0


def test_tta_views_average_like_the_app(tmp_path):
    infos = [fake_info(tmp_path, temperature=1.3), fake_info(tmp_path, temperature=0.8, mean=(0.5, 0.5, 0.5))]
    runners = [FakeRunner(info, seed=i) for i, info in enumerate(infos)]
    batch = images()
    weights = [0.6, 0.4]
    # the app: each member's six views (inference.runner.tta_views), then the ensemble's weighted mean
    app = weighted_mean([member_probabilities(r, batch, tta=True)[0] for r in runners], weights)
    app_plain = weighted_mean([member_probabilities(r, batch, tta=False)[0] for r in runners], weights)

    members = []
    for r, w in zip(runners, weights, strict=True):
        md = MemberData(r.info.name, r.info.temperature, w)
        for v in APP_TTA:
            md.logits[("val", v)], md.features[("val", v)] = run_view(r, batch, VIEWS[v], batch=2)
        members.append(md)
    split = SplitData(list("abcde"), np.zeros(5, np.int64), np.array(list("abcde")))
    lab = Lab(CacheSet({"val": split}, members, np.full(K, 1 / K)))
    np.testing.assert_allclose(lab.probs(Config(views=APP_TTA), "val"), app, rtol=0, atol=1e-6)
    np.testing.assert_allclose(lab.probs(Config(), "val"), app_plain, rtol=0, atol=1e-6)
    assert np.abs(app - app_plain).max() > 1e-3  # the views do differ, so the comparison means something

    runners[0].sizes.clear()
    run_view(runners[0], batch, VIEWS["fix1.30"])
    assert runners[0].sizes == [(31, 42)]  # 24x32 tested at 1.3x


def test_logit_adjustment_with_tau_zero_is_the_shipped_ensemble(tmp_path):
    rng = np.random.default_rng(0)
    prior = np.array([0.03, 0.05, 0.11, 0.01, 0.11, 0.67, 0.02])
    z = [rng.normal(size=(50, K)) * 3 for _ in range(2)]
    np.testing.assert_array_equal(adjusted(z[0], prior, 0.0, 1.3), z[0])
    members = [MemberData(f"m{i}", t, w, {("val", "plain"): z[i]}) for i, (t, w) in enumerate([(1.3, 0.6), (0.9, 0.4)])]
    lab = Lab(CacheSet({"val": SplitData([], np.zeros(50, np.int64), np.arange(50))}, members, prior))
    shipped = weighted_mean([calibrated_softmax(z[0], 1.3), calibrated_softmax(z[1], 0.9)], [0.6, 0.4])
    np.testing.assert_allclose(lab.probs(Config(tau=0.0), "val"), shipped, rtol=0, atol=1e-12)
    # a positive tau moves probability from the common class (nv) to the rare ones
    moved = lab.probs(Config(tau=1.0), "val")
    assert (moved[:, 5] < shipped[:, 5]).all() and (moved[:, 3] > shipped[:, 3]).all()


def synthetic_cache(c_val: float, c_test: float, seed: int = 0) -> CacheSet:
    """Two members whose logits carry c * log(prior): the best tau on a split is about c."""
    rng = np.random.default_rng(seed)
    prior = np.array([0.03, 0.05, 0.11, 0.01, 0.11, 0.67, 0.02])

    def split(n: int, c: float) -> tuple[SplitData, list[np.ndarray], list[np.ndarray]]:
        y = np.arange(n) % K
        lesions = np.array([f"L{i // 2}" for i in range(n)])
        logits, feats = [], []
        for _ in range(2):
            signal = 1.2 * np.eye(K)[y] + rng.normal(scale=1.0, size=(n, K))
            logits.append(signal + c * np.log(prior))
            feats.append(np.concatenate([signal, rng.normal(size=(n, 3))], axis=1))
        return SplitData([f"{i}" for i in range(n)], y, lesions), logits, feats

    tr, tr_z, tr_f = split(140, 0.0)
    va, va_z, va_f = split(420, c_val)
    te, te_z, te_f = split(420, c_test)
    members = []
    for k in range(2):
        md = MemberData(f"m{k}", 1.0, 0.5)
        for name, z, f in (("train", tr_z, tr_f), ("val", va_z, va_f), ("test", te_z, te_f)):
            md.logits[(name, "plain")], md.features[(name, "plain")] = z[k], f[k]
        members.append(md)
    return CacheSet({"train": tr, "val": va, "test": te}, members, prior)


def best_tau(cs: CacheSet, split: str) -> float:
    """Brute force with training.metrics.evaluate: the tau of highest balanced accuracy, ties to lower NLL."""
    lab = Lab(cs)
    y = cs.splits[split].labels
    scored = [(evaluate(p := lab.probs(Config(tau=t), split), y)["balanced_accuracy"],
               -evaluate(p, y)["nll"], -i) for i, t in enumerate(TAUS)]
    return TAUS[-max(scored)[2]]


@pytest.mark.slow  # two full ablations on synthetic data (heads included): 10-60 s
def test_tau_is_chosen_on_validation_and_test_labels_never_matter():
    cs = synthetic_cache(c_val=0.8, c_test=-0.6)
    on_val, on_test = best_tau(cs, "val"), best_tau(cs, "test")
    assert abs(on_val - on_test) >= 0.5  # the two splits disagree, so a leak would show
    report = ablate(cs)
    row = next(r for r in report["rows"] if r["lever"].startswith("a."))
    assert row["config"]["tau"] == on_val

    # whatever the test split holds, the selection and every figure stay the same
    other = synthetic_cache(c_val=0.8, c_test=-0.6)
    rng = np.random.default_rng(5)
    other.splits["test"].labels[:] = rng.permutation(other.splits["test"].labels)
    for m in other.members:
        m.logits[("test", "plain")] = rng.normal(size=m.logits[("test", "plain")].shape) * 5
    again = ablate(other)

    def figures(rep):
        return json.dumps([{k: v for k, v in r.items() if k != "seconds"} for r in rep["rows"]], sort_keys=True)

    assert figures(again) == figures(report) and again["chosen"] == report["chosen"]


@pytest.mark.slow
def test_default_split_is_the_one_the_default_was_trained_on():
    info = validate_ensemble(REPO / "resources" / "models" / "default")
    splits, _ = default_split(require_data(HAM), info)
    assert sorted(splits["train"].image_ids) == sorted(info.manifest["training"]["trained_image_ids"])
    assert (len(splits["val"].image_ids), len(splits["test"].image_ids)) == (
        info.manifest["metrics"]["val"]["n"], info.manifest["metrics"]["test"]["n"])
