"""Lever g of issue 17 (age, sex, body site beside the image): what it may change and where it is chosen."""

from __future__ import annotations

import json

import numpy as np

from tests.test_featcache import K, synthetic_cache
from training.ablation import Config, Lab
from training.metadata_lever import SITES, encode, rows, with_prior


def metadata(y: np.ndarray, informative: float, seed: int) -> np.ndarray:
    """Site follows the class with probability `informative`, else random; age and sex are noise."""
    rng = np.random.default_rng(seed)
    out = []
    for c in y:
        site = SITES[int(c)] if rng.random() < informative else SITES[int(rng.integers(len(SITES)))]
        out.append(encode(float(rng.integers(10, 90)), str(rng.choice(["male", "female", ""])), site))
    return np.stack(out)


def test_encoding_marks_what_is_not_recorded():
    row = encode(None, "", "")
    assert row.sum() == 3  # one hot each for age, sex and site, all on "not recorded"
    assert not np.array_equal(encode(50.0, "male", "back"), row)
    assert np.array_equal(encode(float("nan"), "unknown", "unknown"), row)


def test_without_metadata_the_image_probabilities_are_unchanged():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(K), size=20)
    prior = np.full(K, 1 / K)
    assert np.array_equal(with_prior(p, None, prior, 1.0), p)
    log_pm = np.log(rng.dirichlet(np.ones(K), size=20))
    moved = with_prior(p, log_pm, prior, 1.0)
    assert np.allclose(moved.sum(axis=1), 1) and not np.allclose(moved, p)


def test_informative_metadata_is_found_and_noise_is_not_kept():
    cs = synthetic_cache(c_val=0.0, c_test=0.0)
    useful = {s: metadata(cs.splits[s].labels, 0.9, i) for i, s in enumerate(("train", "val"))}
    report = rows(cs, useful)
    g1 = report["rows"][0]
    assert report["chosen_g1"] != "beta=0" and g1["cross_fitted"]["delta"]["balanced_accuracy"] > 0.05 and g1["kept"]
    noise = {s: metadata(cs.splits[s].labels, 0.0, i) for i, s in enumerate(("train", "val"))}
    assert not rows(cs, noise)["rows"][0]["kept"]


def test_the_test_split_never_matters():
    cs = synthetic_cache(c_val=0.0, c_test=0.0)
    meta = {s: metadata(cs.splits[s].labels, 0.6, i) for i, s in enumerate(("train", "val"))}
    first = rows(cs, meta)
    rng = np.random.default_rng(3)
    cs.splits["test"].labels[:] = rng.permutation(cs.splits["test"].labels)
    for m in cs.members:
        m.logits[("test", "plain")] = rng.normal(size=m.logits[("test", "plain")].shape) * 5
    assert json.dumps(rows(cs, meta), sort_keys=True) == json.dumps(first, sort_keys=True)
    assert Lab(cs).probs(Config(), "val").shape[1] == K
