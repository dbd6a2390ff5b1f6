"""The model card's figures by age band, sex and body site: grouping, intervals only where a group allows them,
and the melanomas the warning missed."""

from __future__ import annotations

import numpy as np

from lesion_desktop.classes import CLASS_CODES, MEL_INDEX
from training.subgroups import age_band, markdown, missed_melanomas, subgroup_figures

NV = CLASS_CODES.index("nv")


def _probs(pred: list[int], confidence: float = 0.9) -> np.ndarray:
    p = np.full((len(pred), len(CLASS_CODES)), (1 - confidence) / (len(CLASS_CODES) - 1))
    p[np.arange(len(pred)), pred] = confidence
    return p


def test_age_bands():
    assert [age_band(a) for a in ("0.0", "29.9", "30.0", "44.0", "45", "74.0", "75.0", "85.0", "", "x")] == [
        "under 30", "under 30", "30-44", "30-44", "45-59", "60-74", "75 and over", "75 and over", "unknown",
        "unknown"]


def test_groups_get_their_own_figures_and_intervals_only_when_large_enough():
    # 60 women (30 lesions, all melanomas, all found) and 8 men (naevi, half called melanoma)
    labels = np.array([MEL_INDEX] * 60 + [NV] * 8)
    pred = [MEL_INDEX] * 60 + [NV, MEL_INDEX] * 4
    lesions = [f"F{i // 2}" for i in range(60)] + [f"M{i}" for i in range(8)]
    ids = [f"I{i}" for i in range(68)]
    meta = {i: {"sex": "female" if k < 60 else "male", "age": "50.0", "localization": "back"}
            for k, i in enumerate(ids)}
    result = subgroup_figures(_probs(pred), labels, lesions, ids, meta, train_ids=ids[:5])
    by_sex = {r["group"]: r for r in result["sex"]}
    women, men = by_sex["female"], by_sex["male"]
    assert (women["n"], women["lesions"], women["melanoma_lesions"], women["train_images"]) == (60, 30, 30, 5)
    assert women["melanoma_recall"] == 1.0 and women["intervals"]["melanoma_recall"] == [1.0, 1.0]
    assert set(women["intervals"]) == {"accuracy", "balanced_accuracy", "melanoma_recall"}
    assert (men["n"], men["accuracy"], men["melanoma_recall"], men["intervals"]) == (8, 0.5, None, {})
    assert men["warning_benign"] == 0.5 and men["warning_malignant"] is None
    text = markdown({"groups": result}, "t")
    assert "| male | 8 (8) | 0 | 0 (0) | 0.50 | 0.50 [1 class] | – | – / 50% |" in text


def test_missed_melanomas_are_counted_by_top_label_and_site():
    labels = np.array([MEL_INDEX, MEL_INDEX, MEL_INDEX, NV])
    probs = _probs([MEL_INDEX, NV, NV, NV], confidence=0.95)
    meta = {"a": {"localization": "foot"}, "b": {"localization": "foot"}, "c": {"localization": "back"}}
    miss = missed_melanomas(probs, labels, ["a", "b", "c", "d"], meta)
    assert (miss["melanomas"], miss["missed"]) == (3, 2)
    assert miss["top_label"] == {"nv": 2} and miss["body_site"] == {"foot": 1, "back": 1}
