"""The shipped default ensemble: it loads, is honest about its figures, and is robust to full-size photos."""

from __future__ import annotations

import numpy as np
import pytest

from lesion_desktop.bundle import load_ensemble
from lesion_desktop.engine import EnsembleEngine
from lesion_desktop.imageio import load_image
from lesion_desktop.paths import bundled_models_dir
from tests.helpers import FULLRES, HAM, require_data

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
    require_data(FULLRES)
    engine = EnsembleEngine(bundled_models_dir(), device="cpu")
    paths = sorted((FULLRES / "images").glob("*.jpg"))
    assert len(paths) == 150
    agree, diffs = 0, []
    for i in range(0, len(paths), 25):
        chunk = paths[i : i + 25]
        big = engine.predict([load_image(p) for p in chunk])
        small = engine.predict([load_image(HAM / "images" / p.name) for p in chunk])
        for a, b in zip(big, small, strict=True):
            agree += a.top_index == b.top_index
            diffs.append(np.abs(a.probabilities - b.probabilities).mean())
    print(f"agreement {agree / len(paths):.3f}, mean abs probability difference {np.mean(diffs):.4f}")
    assert agree / len(paths) >= 0.95
    assert float(np.mean(diffs)) <= 0.05
