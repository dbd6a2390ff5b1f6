"""The one-image use case: the malignancy rule, poor images that never reassure, out-of-scope images, and the
command line's warnings, from the same functions the window and the PDF use."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from lesion_desktop.analysis import (
    BELOW_THRESHOLD,
    CANNOT_RULE_OUT,
    OUT_OF_SCOPE,
    WARNING,
    EngineHolder,
    analyse,
    assess,
    assess_record,
    effective_threshold,
    load_models,
)
from lesion_desktop.cli import main as cli_main
from lesion_desktop.imageio import load_image, quality_check
from lesion_desktop.progress import TaskState
from lesion_desktop.records import RecordStore
from tests.helpers import FULLRES, HAM, require_data

RATES = [{"threshold": 0.3, "melanoma": 0.874, "malignant": 0.919, "benign": 0.340}]


def test_warning_depends_on_the_combined_malignant_probability_not_the_top_label():
    a = assess(0.35, "nv", 0.30, rates=RATES)
    assert a.level == WARNING and a.warns
    assert "35%" in a.text and "top label is benign" in a.text
    assert "fired for 87% of the test melanomas and 34% of benign lesions" in a.text
    b = assess(0.10, "nv", 0.30, rates=RATES)
    assert b.level == BELOW_THRESHOLD and b.reassures and "below the 30% warning threshold" in b.text


def test_a_poor_image_never_reassures():
    a = assess(0.07, "nv", 0.30, quality_warnings=["The image is too dark (under-exposed)."])
    assert a.level == CANNOT_RULE_OUT and not a.reassures
    assert "cannot rule out malignancy" in a.text and "retake" in a.text
    assert "below" not in a.text.lower()
    # a poor image whose risk is high still warns, and still asks for a retake
    b = assess(0.6, "mel", 0.30, quality_warnings=["The image looks blurred."])
    assert b.level == WARNING and "retake" in b.text


def test_out_of_scope_shows_no_diagnosis():
    a = assess(0.43, "bcc", 0.30, out_of_scope="This does not look like a dermoscopy image.")
    assert a.level == OUT_OF_SCOPE and "No diagnosis" in a.text and "43%" not in a.text
    from lesion_desktop.scope import ADVICE, REASONS

    gate = assess(0.43, "bcc", 0.30, out_of_scope=f"{REASONS['drawing']} {ADVICE}")
    assert gate.text.count("diagnosis") == 1  # the gate's own advice is not repeated


def test_the_stricter_threshold_wins():
    assert effective_threshold(0.2, 0.3) == 0.2 and effective_threshold(0.4, 0.3) == 0.3
    assert effective_threshold(None, 0.3) == 0.3


def _degraded(rgb: np.ndarray) -> np.ndarray:
    """Darkened and blurred, as in the trust finding (a biopsy-proven melanoma that reassured)."""
    return cv2.GaussianBlur((rgb.astype(np.float32) * 0.15).astype(np.uint8), (0, 0), 6)


@pytest.fixture(scope="module")
def holder() -> EngineHolder:
    h = EngineHolder()
    load_models(TaskState(), h, None, "cpu", False)  # the shipped default, as a clinic gets it
    return h


def _melanoma_path() -> Path:
    with open(require_data(FULLRES) / "HAM10000_metadata.csv", encoding="utf-8") as f:
        mel = next(r["image_id"] for r in csv.DictReader(f) if r["dx"] == "mel")
    return FULLRES / "images" / f"{mel}.jpg"


def test_a_darkened_blurred_melanoma_asks_for_a_retake_in_the_window_path(holder, tmp_path):
    rgb = load_image(_melanoma_path())
    store = RecordStore(tmp_path / "db")
    poor = analyse(TaskState(), holder, _degraded(rgb), source_name="poor", store=store, threshold=0.30)
    a = assess_record(poor.record, 0.30)
    assert a.level in (CANNOT_RULE_OUT, WARNING) and not a.reassures
    assert poor.record.details["quality_warnings"]  # the quality problem is recorded with the result
    assert poor.record.details["scope"]["in_scope"] in (True, False)


def test_cli_rows_carry_scope_and_quality_warnings(tmp_path):
    text = np.full((300, 400, 3), 255, np.uint8)
    cv2.putText(text, "Patient letter", (20, 150), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (20, 20, 20), 3)
    cv2.imwrite(str(tmp_path / "letter.png"), text)
    dark = _degraded(load_image(_melanoma_path()))
    cv2.imwrite(str(tmp_path / "dark.png"), cv2.cvtColor(dark, cv2.COLOR_RGB2BGR))
    real = sorted((require_data(HAM) / "images").glob("*.jpg"))[:3]
    out = tmp_path / "p.csv"
    assert cli_main(["classify", str(tmp_path / "letter.png"), str(tmp_path / "dark.png"), *map(str, real),
                     "-o", str(out), "--device", "cpu"]) == 0
    rows = {Path(r["path"]).name: r for r in csv.DictReader(open(out, encoding="utf-8"))}
    assert rows["letter.png"]["warnings"].startswith("out of scope: ")
    assert rows["letter.png"]["prediction"] and float(rows["letter.png"]["nv"]) >= 0  # probabilities kept
    assert "cannot rule out malignancy" in rows["dark.png"]["warnings"]
    for p in real:
        assert not rows[p.name]["warnings"].startswith("out of scope"), rows[p.name]["warnings"]
    assert quality_check(dark).warnings
