"""The shipped default ensemble: it loads, is honest about its figures, and is robust to full-size photos."""

from __future__ import annotations

import pytest

from lesion_desktop.bundle import load_ensemble
from lesion_desktop.paths import bundled_models_dir
from tests.helpers import FULLRES, HAM, require_data
from training.robustness import size_agreement

pytestmark = pytest.mark.slow


def test_default_ensemble_manifest_records_how_it_was_made():
    ens = load_ensemble(bundled_models_dir())
    m = ens.manifest
    assert "CC BY-NC 4.0" in m["licence"]
    assert {"balanced_accuracy", "melanoma_recall", "accuracy"} <= set(m["metrics"]["val"])
    assert m["metrics"]["test"]["n"] > 1000
    for b in ens.members:
        t = b.manifest["training"]
        assert t["command"].startswith("python -m training train") and t["data_fingerprint"] and t["seconds"] > 0
        assert b.manifest["weights_dtype"] == "float16"


def test_full_size_originals_agree_with_their_training_size_copies():
    """The 150 original 600x450 images against their 200x150 copies: same top class, close probabilities."""
    r = size_agreement(bundled_models_dir(), require_data(FULLRES) / "images", HAM / "images")
    assert r.n == 150 and not r.problems
    print(f"agreement {r.agreement:.3f}, mean abs probability difference {r.mean_abs_difference:.4f}")
    assert r.agreement >= 0.95
    assert r.mean_abs_difference <= 0.05
    assert len(r.disagreements) == round((1 - r.agreement) * 150)
