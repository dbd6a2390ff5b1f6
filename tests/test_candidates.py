"""Trained member bundles against the shipped ensemble (training.candidates): grids, choice on validation only."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from lesion_desktop.preprocess import PreprocessConfig, shades_of_gray
from tests.test_featcache import K, synthetic_cache
from training.candidates import compare, shifted_table, simplex, view_for
from training.featcache import colour_cast
from training.levers import CacheSet, MemberData


def with_extra(cs: CacheSet, strength: float, seed: int) -> CacheSet:
    """A third member whose logits carry `strength` times the true class (plus noise) on every split."""
    rng = np.random.default_rng(seed)
    md = MemberData("extra", 1.0, 0.0)
    for name, split in cs.splits.items():
        y = split.labels
        md.logits[(name, "plain")] = strength * np.eye(K)[y] + rng.normal(size=(len(y), K))
        md.features[(name, "plain")] = md.logits[(name, "plain")]
    cs.members.append(md)
    return cs


def row(rows, start):
    return next(r for r in rows if r["candidate"].startswith(start))


def test_the_weight_grid_covers_the_simplex_of_the_chosen_members():
    grid = simplex(4, [0, 1, 3])
    assert len(grid) == 66  # weights in tenths over three members that sum to 1: C(12, 2)
    for cfg in grid:
        assert cfg.weights is not None and abs(sum(cfg.weights) - 1) < 1e-9 and cfg.weights[2] == 0.0


def test_a_stronger_member_is_kept_and_a_useless_one_is_not():
    strong = compare(with_extra(synthetic_cache(0.0, 0.0), strength=4.0, seed=1), shipped=2)
    assert row(strong, "shipped default")["cross_fitted"]["delta"]["balanced_accuracy"] == 0
    extra = row(strong, "extra as an extra member, weights tuned")
    assert extra["kept"] and extra["cross_fitted"]["delta"]["balanced_accuracy"] > 0.05
    assert row(strong, "extra alone")["kept"]
    useless = compare(with_extra(synthetic_cache(0.0, 0.0), strength=0.0, seed=1), shipped=2)
    assert not any(r["kept"] for r in useless)
    equal = row(useless, "extra as an extra member, equal weights")
    assert equal["cross_fitted"]["delta"]["balanced_accuracy"] < 0  # a third of the vote to noise costs
    tuned = row(useless, "extra in place of m0, weights tuned")  # judged cross-fitted: less than chosen in-sample
    assert len(tuned["fold_choices"]) == 5
    assert tuned["cross_fitted"]["balanced_accuracy"] < tuned["in_sample"]["balanced_accuracy"]


def test_the_test_split_never_matters():
    first = compare(with_extra(synthetic_cache(0.0, 0.0), strength=1.0, seed=2), shipped=2)
    cs = with_extra(synthetic_cache(0.0, 0.0), strength=1.0, seed=2)
    rng = np.random.default_rng(7)
    cs.splits["test"].labels[:] = rng.permutation(cs.splits["test"].labels)
    for m in cs.members:
        m.logits[("test", "plain")] = rng.normal(size=m.logits[("test", "plain")].shape) * 5
    assert json.dumps(compare(cs, shipped=2), sort_keys=True) == json.dumps(first, sort_keys=True)


def test_a_bundle_with_colour_constancy_is_shown_the_images_as_the_app_would():
    """The validation copies are effective-size images without Shades of Gray: a bundle trained with it must get
    it (the `sog` view), or its figures would be those of a member seeing colours it was never trained on."""
    shipped = PreprocessConfig(input_size=(150, 200), effective_size=(150, 200), jpeg_quality=75)
    assert view_for(replace(shipped, input_size=(192, 256)), shipped).name == "plain"
    view = view_for(replace(shipped, color_constancy=True), shipped)
    assert view.name == "sog" and view.color_constancy
    for bad in (replace(shipped, hair_removal=True), replace(shipped, effective_size=(300, 400)),
                replace(shipped, jpeg_quality=None)):
        with pytest.raises(ValueError):
            view_for(bad, shipped)
    with pytest.raises(ValueError, match="colour constancy"):
        view_for(shipped, replace(shipped, color_constancy=True))


def test_a_colour_cast_is_the_same_for_every_member_and_shades_of_gray_undoes_it():
    rng = np.random.default_rng(0)
    img = rng.integers(40, 160, size=(150, 200, 3), dtype=np.uint8)  # no channel near 255: the cast never clips
    cast = colour_cast(img, 3, 0.2)
    assert np.array_equal(cast, colour_cast(img, 3, 0.2)) and not np.array_equal(cast, colour_cast(img, 4, 0.2))
    gains = cast.reshape(-1, 3).astype(float).mean(0) / img.reshape(-1, 3).astype(float).mean(0)
    assert np.all(gains > np.exp(-0.21)) and np.all(gains < np.exp(0.21)) and np.ptp(gains) > 0.02


    def chroma(x: np.ndarray) -> np.ndarray:  # the balance between the channels, whatever the brightness
        means = x.reshape(-1, 3).astype(float).mean(0)
        return means / means.sum()

    assert np.abs(chroma(cast) - chroma(img)).max() > 0.01  # the cast changes the colour balance
    assert np.abs(chroma(shades_of_gray(cast)) - chroma(shades_of_gray(img))).max() < 0.005  # SoG takes it out


def with_shift(cs: CacheSet, extra_survives: bool) -> CacheSet:
    """A "cast20" view in which the shipped members lose their signal and the extra member keeps it (or not)."""
    rng = np.random.default_rng(5)
    for k, m in enumerate(cs.members):
        z = m.logits[("val", "plain")]
        keep = k == len(cs.members) - 1 and extra_survives
        m.logits[("val", "cast20")] = z if keep else rng.normal(size=z.shape)
    return cs


def test_the_colour_cast_scores_each_choice_but_never_makes_it():
    plain = compare(with_extra(synthetic_cache(0.0, 0.0), strength=2.0, seed=3), shipped=2)
    survives = compare(with_shift(with_extra(synthetic_cache(0.0, 0.0), 2.0, 3), True), shipped=2, shifted="cast20")
    lost = compare(with_shift(with_extra(synthetic_cache(0.0, 0.0), 2.0, 3), False), shipped=2, shifted="cast20")
    strip = [{k: v for k, v in r.items() if k != "shifted"} for r in survives]
    assert json.dumps(strip, sort_keys=True) == json.dumps(plain, sort_keys=True)
    assert row(survives, "shipped default")["shifted"]["delta"]["balanced_accuracy"] == 0
    alone = row(survives, "extra alone")["shifted"]
    assert alone["delta"]["balanced_accuracy"] > 0.2 and alone["paired_95"]["balanced_accuracy"][0] > 0
    assert row(lost, "extra alone")["shifted"]["paired_95"]["balanced_accuracy"][0] < 0.05
    assert "| extra alone | cast20 |" in shifted_table(survives)


def test_the_cast_view_casts_each_image_by_its_place_in_the_split(tmp_path):
    from tests.test_featcache import FakeRunner, fake_info, images
    from training.featcache import VIEWS, run_view

    runner, batch = FakeRunner(fake_info(tmp_path), seed=0), images(5)
    by_hand = np.stack([colour_cast(im, i, 0.2) for i, im in enumerate(batch)])
    got = run_view(runner, batch, VIEWS["cast20"], batch=2)  # three chunks: the index runs on across them
    np.testing.assert_array_equal(got[0], run_view(runner, by_hand, VIEWS["plain"])[0])
    assert not np.allclose(got[0], run_view(runner, batch, VIEWS["plain"])[0])


def test_two_new_members_are_also_tried_as_an_ensemble_of_their_own():
    cs = with_extra(with_extra(synthetic_cache(0.0, 0.0), strength=3.0, seed=1), strength=3.0, seed=2)
    cs.members[3].name = "extra2"
    rows = compare(cs, shipped=2)
    tuned, equal = row(rows, "the new members together, weights tuned"), row(rows, "the new members together, equal")
    assert equal["config"]["weights"] == (0.0, 0.0, 0.5, 0.5)
    assert all("weights=0.00/0.00/" in c for c in tuned["fold_choices"])  # the shipped members never get a vote
    assert tuned["kept"] and equal["kept"]  # two members stronger than the shipped pair beat it together
    assert not any(r["candidate"].startswith("the new members") for r in compare(with_extra(
        synthetic_cache(0.0, 0.0), strength=3.0, seed=1), shipped=2))
