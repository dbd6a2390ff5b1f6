"""`lesion-desktop classify` on the real images, with unreadable files mixed in."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lesion_desktop.cli import CSV_COLUMNS, main
from tests.bad_images import make_bad_images
from tests.helpers import FULLRES, HAM, make_tiny_ensemble, require_data


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == CSV_COLUMNS
        return list(reader)


def test_classify_folder_with_bad_files(tmp_path, capsys):
    require_data(FULLRES)
    models = make_tiny_ensemble(tmp_path / "models")
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for p in sorted((FULLRES / "images").glob("*.jpg"))[:5]:
        shutil.copy(p, folder / "sub")
    shutil.copy(sorted((HAM / "images").glob("*.jpg"))[0], folder / "läsion_é.jpg")
    bad = make_bad_images(tmp_path / "bad")
    out = tmp_path / "out" / "preds.csv"
    code = main(["classify", str(folder), str(bad["truncated.jpg"]), str(bad["text.jpg"]),
                 str(tmp_path / "deleted.jpg"), "--output", str(out), "--models", str(models), "--device", "cpu"])
    assert code == 0
    rows = _rows(out)
    assert len(rows) == 9
    good = [r for r in rows if r["prediction"]]
    assert len(good) == 6
    for r in good:
        probs = [float(r[c]) for c in CSV_COLUMNS[2:9]]
        assert all(0 <= p <= 1 for p in probs) and abs(sum(probs) - 1) < 1e-4
        assert r["prediction"] in CSV_COLUMNS[2:9]
        assert max(probs) == float(r[r["prediction"]])
    reasons = {Path(r["path"]).name: r["warnings"] for r in rows if not r["prediction"]}
    assert "truncated" in reasons["truncated.jpg"].lower()
    assert reasons["text.jpg"] and "not found" in reasons["deleted.jpg"].lower()
    assert "6 classified, 3 could not be read" in capsys.readouterr().err


def test_exit_status_when_nothing_could_be_classified(tmp_path):
    models = make_tiny_ensemble(tmp_path / "models")
    bad = make_bad_images(tmp_path / "bad")
    out = tmp_path / "p.csv"
    assert main(["classify", str(bad["empty.jpg"]), "-o", str(out), "--models", str(models)]) == 1
    assert _rows(out)[0]["prediction"] == ""
    assert main(["classify", str(bad["empty.jpg"]), "-o", str(out), "--models", str(tmp_path / "none")]) == 2


def test_default_models_are_the_bundled_ensemble(tmp_path):
    from lesion_desktop.paths import active_models_dir, bundled_models_dir

    assert active_models_dir() == bundled_models_dir()
    assert (bundled_models_dir() / "manifest.json").is_file(), "the default ensemble must ship in resources/models"


@pytest.mark.slow
def test_console_script_runs(tmp_path):
    models = make_tiny_ensemble(tmp_path / "models")
    img = sorted((require_data() / "images").glob("*.jpg"))[0]
    out = tmp_path / "p.csv"
    r = subprocess.run([sys.executable, "-m", "lesion_desktop", "classify", str(img), "-o", str(out),
                        "--models", str(models)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert _rows(out)[0]["prediction"]
