"""No silent downgrade (issue 14, point 4): the comparison on images no model trained on, the install rule the
dialog and the CLI share, and the store's record of models installed by override."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lesion_desktop.bundle import load_ensemble
from lesion_desktop.classes import CLASS_CODES, MEL_INDEX
from lesion_desktop.errors import LesionError
from lesion_desktop.paths import bundled_models_dir, model_store_dir
from lesion_desktop.store import ModelStore, installation_record, unvalidated_note
from tests.helpers import make_tiny_ensemble
from training.pipeline import (
    MIN_COMPARED_IMAGES,
    Comparison,
    RetrainResult,
    compare_on_unseen,
    install_candidate,
    install_verdict,
    trained_image_ids,
)

NV = CLASS_CODES.index("nv")


def _one_hot(pred: np.ndarray, confidence: float = 0.9) -> np.ndarray:
    p = np.full((len(pred), len(CLASS_CODES)), (1 - confidence) / (len(CLASS_CODES) - 1))
    p[np.arange(len(pred)), pred] = confidence
    return p


def _validation(n_per_class: int = 40) -> tuple[np.ndarray, list[str], list[str]]:
    """Labels, lesion ids (two images per lesion) and image ids of a balanced validation split."""
    labels = np.repeat(np.arange(len(CLASS_CODES)), n_per_class)
    groups = [f"L{i // 2}" for i in range(len(labels))]
    ids = [f"IMG_{i:04d}" for i in range(len(labels))]
    return labels, groups, ids


def test_only_images_neither_model_trained_on_are_compared():
    labels, groups, ids = _validation()
    rng = np.random.default_rng(0)
    # The active models are right on the images they were trained on and right half the time on the others;
    # scored on all images they would look better than they are (the flattering 0.943).
    seen = set(ids[::3])
    right = np.array([i in seen or rng.random() < 0.5 for i in ids])
    active = _one_hot(np.where(right, labels, (labels + 1) % len(CLASS_CODES)))
    candidate = _one_hot(labels)  # always right
    c = compare_on_unseen(active, candidate, labels, groups, ids, seen)
    keep = np.array([i not in seen for i in ids])
    assert (c.n_validation, c.n_excluded, c.n_images) == (len(ids), len(seen), int(keep.sum()))
    assert c.n_melanomas == int((labels[keep] == MEL_INDEX).sum()) and not c.problem
    assert c.active is not None and c.candidate is not None and c.difference is not None
    assert c.active["n"] == c.n_images
    assert c.active["accuracy"] == pytest.approx(right[keep].mean())  # only the unseen images count
    assert c.active["accuracy"] < right.mean() - 0.1
    lo, hi = c.difference["balanced_accuracy"]
    change = c.candidate["balanced_accuracy"] - c.active["balanced_accuracy"]
    assert c.difference["unit"] == "lesion" and lo - 1e-9 <= change <= hi + 1e-9 and lo > 0
    v = install_verdict(c)
    assert not v.needs_override and not v.worse and v.summary.startswith("The new models are better")
    assert f"balanced accuracy {c.candidate['balanced_accuracy']:.3f} vs {c.active['balanced_accuracy']:.3f} " \
           f"({change:+.3f}, 95% interval {lo:+.3f} to {hi:+.3f})" in v.figures
    assert f"on {c.n_images} validation images ({c.n_lesions} lesions) that neither trained on" in v.summary


def test_a_worse_candidate_says_how_much_worse():
    labels, groups, ids = _validation()
    active = _one_hot(labels)
    candidate = _one_hot(np.full(len(labels), NV))  # a one-minute baseline: everything is a naevus
    v = install_verdict(compare_on_unseen(active, candidate, labels, groups, ids, set()))
    assert v.needs_override and v.worse
    assert "WORSE" in v.summary and "override" in v.summary
    assert v.figures.startswith("balanced accuracy 0.143 vs 1.000 (-0.857, 95% interval")
    assert "melanoma recall 0.000 vs 1.000 (-1.000, 95% interval -1.000 to -1.000)" in v.figures


def test_an_indistinguishable_candidate_needs_an_override():
    labels, groups, ids = _validation()
    active = _one_hot(labels)
    candidate = active.copy()
    v = install_verdict(compare_on_unseen(active, candidate, labels, groups, ids, set()))
    assert v.needs_override and not v.worse and "cannot tell the new models from the active ones" in v.summary


def test_too_few_or_unknown_unseen_images_say_so_plainly():
    labels, groups, ids = _validation()
    probs = _one_hot(labels)
    seen = set(ids[: len(ids) - MIN_COMPARED_IMAGES + 1])
    c = compare_on_unseen(probs, probs, labels, groups, ids, seen)
    assert c.n_images == MIN_COMPARED_IMAGES - 1
    assert c.problem.startswith(f"Only {MIN_COMPARED_IMAGES - 1} validation images")
    assert f"{len(seen)} of the {len(ids)} validation images were left out" in c.problem
    v = install_verdict(c)
    assert v.needs_override and v.summary.startswith("The new models cannot be judged.")
    unknown = compare_on_unseen(probs, probs, labels, groups, ids, None)
    assert unknown.active is None and "do not record which images they were trained on" in unknown.problem
    assert install_verdict(unknown).needs_override
    assert install_verdict(None).needs_override  # nothing to compare with


def _write(path: Path, manifest: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_trained_image_ids_from_the_ensemble_or_all_its_members(tmp_path):
    members = [{"path": "a"}, {"path": "b"}]
    _write(tmp_path / "e", {"format": "lesion-desktop-ensemble", "members": members})
    _write(tmp_path / "e" / "a", {"format": "lesion-desktop-model", "training": {"trained_image_ids": ["x", "y"]}})
    _write(tmp_path / "e" / "b", {"format": "lesion-desktop-model", "training": {}})
    assert trained_image_ids(tmp_path / "e") is None  # one member does not say: unknown, not a partial set
    _write(tmp_path / "e" / "b", {"format": "lesion-desktop-model", "training": {"trained_image_ids": ["z"]}})
    assert trained_image_ids(tmp_path / "e") == {"x", "y", "z"}
    _write(tmp_path / "e", {"format": "lesion-desktop-ensemble", "members": members,
                            "training": {"trained_image_ids": ["w"]}})
    assert trained_image_ids(tmp_path / "e") == {"w"}
    assert trained_image_ids(tmp_path / "missing") is None


def test_the_shipped_default_records_its_training_split():
    """Regenerated with `python -m training split ../shared/data/ham10000 --seed 0` (docs/model-card.md)."""
    ids = trained_image_ids(bundled_models_dir())
    assert ids is not None and len(ids) == 7005 and all(i.startswith("ISIC_") for i in ids)
    manifest = json.loads((bundled_models_dir() / "manifest.json").read_text())
    assert any("trained_image_ids" in a for a in manifest["training"]["amendments"])
    load_ensemble(bundled_models_dir())  # the member digests still hold


def _result(ensemble_dir: Path, comparison: Comparison) -> RetrainResult:
    assert comparison.candidate is not None
    return RetrainResult(ensemble_dir, comparison.candidate, None, comparison)


def _worse() -> Comparison:
    labels, groups, ids = _validation()
    return compare_on_unseen(_one_hot(labels), _one_hot(np.full(len(labels), NV)), labels, groups, ids, set())


def _better() -> Comparison:
    labels, groups, ids = _validation()
    return compare_on_unseen(_one_hot(np.full(len(labels), NV)), _one_hot(labels), labels, groups, ids, set())


def test_install_rule_and_the_record_of_an_override(tmp_path):
    cand = make_tiny_ensemble(tmp_path / "cand")
    store = ModelStore(tmp_path / "store")
    worse = _result(cand, _worse())
    with pytest.raises(LesionError, match="Not installed: The new models are WORSE"):
        install_candidate(worse, store)
    assert store.active() is None
    first = install_candidate(worse, store, override=True)
    record = installation_record(first)
    assert record is not None and record["by_override"] is True and "WORSE" in record["comparison"]
    assert load_ensemble(first).version == "tiny-test-ensemble [UNVALIDATED]"
    assert "installation" not in json.loads((cand / "manifest.json").read_text())  # the candidate is untouched
    note = unvalidated_note(first)
    assert note.startswith("Unvalidated models in use") and "balanced accuracy 0.143 vs 1.000" in note

    second = install_candidate(_result(cand, _better()), store)  # shown better: no override needed
    assert installation_record(second)["by_override"] is False and unvalidated_note(second) == ""
    assert load_ensemble(second).version == "tiny-test-ensemble"
    assert store.rollback() == first and unvalidated_note(store.active()) == note  # back to the unvalidated ones
    assert unvalidated_note(bundled_models_dir()) == "" and unvalidated_note(None) == ""


def _cli_retrain(monkeypatch, tmp_path, result: RetrainResult, *flags: str) -> int:
    import training.pipeline
    from training.cli import main

    monkeypatch.setattr(training.pipeline, "retrain", lambda cfg, progress=None, active_dir=None: result)
    return main(["retrain", str(tmp_path), "-a", "baseline_cnn", "--work-dir", str(tmp_path / "w"), *flags])


def test_cli_installs_a_worse_candidate_only_with_the_explicit_flag(tmp_path, monkeypatch, capsys):
    cand = make_tiny_ensemble(tmp_path / "cand")
    worse = _result(cand, _worse())
    assert _cli_retrain(monkeypatch, tmp_path, worse, "--install") == 1
    out = capsys.readouterr().out
    assert "The new models are WORSE" in out and "not installed" in out and "--install-even-if-worse" in out
    assert ModelStore(model_store_dir()).active() is None
    assert _cli_retrain(monkeypatch, tmp_path, worse, "--install-even-if-worse") == 0
    assert "marked as unvalidated" in capsys.readouterr().out
    active = ModelStore(model_store_dir()).active()
    assert active is not None and installation_record(active)["by_override"] is True


def test_cli_installs_a_better_candidate_with_install(tmp_path, monkeypatch, capsys):
    cand = tmp_path / "cand"
    shutil.copytree(make_tiny_ensemble(tmp_path / "made"), cand)
    assert _cli_retrain(monkeypatch, tmp_path, _result(cand, _better()), "--install") == 0
    out = capsys.readouterr().out
    assert "The new models are better" in out and "installed:" in out and "unvalidated" not in out
    active = ModelStore(model_store_dir()).active()
    assert active is not None and installation_record(active)["by_override"] is False


def test_plain_install_command_compares_nothing_so_it_needs_unvalidated(tmp_path, capsys):
    from training.cli import main as train_cli

    store_dir = tmp_path / "store"
    models = make_tiny_ensemble(tmp_path / "m")
    assert train_cli(["install", str(models), "--store", str(store_dir)]) == 2
    assert "--unvalidated" in capsys.readouterr().err and ModelStore(store_dir).active() is None
    assert train_cli(["install", str(models), "--store", str(store_dir), "--unvalidated"]) == 0
    active = ModelStore(store_dir).active()
    assert active is not None and unvalidated_note(active)
