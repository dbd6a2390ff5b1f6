"""`python -m training` as the README runs it: split into a new folder, evaluate with the default cache."""

from __future__ import annotations

import json
from pathlib import Path

from lesion_desktop.progress import TaskState
from tests.helpers import make_tiny_ensemble
from tests.training_data import make_ham_subset
from training.cli import main
from training.data import default_cache_dir


def test_split_makes_its_folder_and_evaluate_decodes_only_the_scored_split_into_the_user_cache(tmp_path, monkeypatch):
    data = make_ham_subset(tmp_path / "data", per_class=12)
    models = make_tiny_ensemble(tmp_path / "models")
    work = tmp_path / "checkout"
    work.mkdir()
    monkeypatch.chdir(work)  # nothing may land in the folder the command is run from
    split = Path("runs/default/split.json")  # runs/default/ does not exist yet
    assert main(["split", str(data), "-o", str(split), "--seed", "0"]) == 0
    parts = json.loads(split.read_text())
    assert main(["evaluate", str(models), str(data), "--split-file", str(split), "--which", "test"]) == 0
    assert sorted(p.name for p in work.iterdir()) == ["runs"]
    indexes = list(default_cache_dir().glob("images-*.json"))
    assert indexes, f"no cache in {default_cache_dir()}"
    for index in indexes:  # both tiny members share a preprocessing, so one cache
        assert sorted(json.loads(index.read_text())["image_ids"]) == sorted(parts["test"])


def test_evaluation_progress_covers_scoring_and_only_moves_forward(tmp_path):
    from training.ensemble import evaluate_models

    data = make_ham_subset(tmp_path / "data", per_class=12)
    models = make_tiny_ensemble(tmp_path / "models")
    assert main(["split", str(data), "-o", str(tmp_path / "split.json")]) == 0
    reports: list[tuple[float, str]] = []
    evaluate_models(models, data=str(data), split_file=str(tmp_path / "split.json"), which="val",
                    cache_dir=tmp_path / "cache", progress=TaskState(on_report=lambda f, m: reports.append((f, m))))
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0  # a bar that never jumps back (no wild ETA)
    for member in ("member 1/2", "member 2/2"):
        scoring = [f for f, m in reports if m.startswith(member) and "scor" in m]
        assert scoring and max(scoring) - min(scoring) >= 0.3  # scoring is most of each member's share


def test_default_cache_folder(monkeypatch, tmp_path):
    from platformdirs import user_cache_dir

    monkeypatch.setenv("LESION_DESKTOP_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("LESION_DESKTOP_CACHE")
    monkeypatch.delenv("LESION_DESKTOP_HOME")
    assert default_cache_dir() == Path(user_cache_dir("LesionDesktop", appauthor=False)) / "images"
