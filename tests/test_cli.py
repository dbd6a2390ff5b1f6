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
                        "--models", str(models)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert _rows(out)[0]["prediction"]
    # what the user reads: notes and the summary, no library's log lines or warnings
    assert r.stderr.splitlines()[-1].startswith("1 classified, 0 could not be read")
    assert all(line.startswith("note: ") for line in r.stderr.splitlines()[:-1]), r.stderr


def test_classify_without_stdout_and_stderr(tmp_path):
    """A windowed PyInstaller program has sys.stdout and sys.stderr set to None: the CLI must still work."""
    models = make_tiny_ensemble(tmp_path / "models")
    images = sorted((require_data(HAM) / "images").glob("*.jpg"))[:2]
    out = tmp_path / "out" / "p.csv"
    run = ("import sys; sys.stdout = sys.stderr = None; from lesion_desktop.__main__ import main; "
           "raise SystemExit(main())")
    args = [*map(str, images), str(tmp_path / "missing.jpg"), "-o", str(out), "--device", "cpu"]
    r = subprocess.run([sys.executable, "-c", run, "classify", *args, "--models", str(models)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout == r.stderr == ""  # 1 would be a traceback nobody sees
    rows = {Path(r["path"]).name: r for r in _rows(out)}
    assert sorted(rows) == sorted([images[0].name, images[1].name, "missing.jpg"])
    assert rows[images[0].name]["prediction"] and rows[images[1].name]["prediction"]
    assert "not found" in rows["missing.jpg"]["warnings"].lower()
    # a handled error (no such models) is exit status 2, not a crash on the missing stderr
    r = subprocess.run([sys.executable, "-c", run, "classify", *args, "--models", str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, r


@pytest.mark.parametrize(("argv", "status"), [(["--help"], 0), (["classify", "--help"], 0), (["classify"], 2),
                                              (["gui", "--size", "x"], 2)])
def test_help_and_usage_errors_without_stdout_and_stderr(argv, status):
    run = ("import sys; sys.stdout = sys.stderr = None; from lesion_desktop.__main__ import main; "
           "raise SystemExit(main())")
    r = subprocess.run([sys.executable, "-c", run, *argv], capture_output=True, text=True, timeout=600)
    assert r.returncode == status and r.stdout == r.stderr == ""


def test_no_stderr_in_process_with_a_progress_bar_asked_for(tmp_path, monkeypatch):
    from lesion_desktop.cli import classify

    models = make_tiny_ensemble(tmp_path / "models")
    images = sorted((require_data(HAM) / "images").glob("*.jpg"))[:2]
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", None)
    ok, failed = classify([str(p) for p in images], tmp_path / "p.csv", models, "cpu", progress_bar=True)
    monkeypatch.undo()
    assert (ok, failed) == (2, 0) and len(_rows(tmp_path / "p.csv")) == 2


@pytest.mark.parametrize("argv", [["--help"], ["gui", "--help"]])
def test_help_lists_the_application_options(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    text = capsys.readouterr().out
    for option in ("IMAGE", "--open", "--models", "--screenshot", "--quit-after-result", "--size"):
        assert option in text
    if argv == ["--help"]:
        assert "classify" in text and "gui" in text


def test_application_arguments_are_checked_before_qt_starts(capsys):
    from lesion_desktop.cli import GUI_REQUESTED, parse_gui_args

    assert main(["gui", "--open", "a.jpg", "--size", "800x600"]) == GUI_REQUESTED
    assert main(["a.jpg"]) == GUI_REQUESTED and main([]) == GUI_REQUESTED
    args, qt = parse_gui_args(["a.jpg", "-style", "fusion", "-reverse", "--quit-after-result"])
    assert args.open == Path("a.jpg") and args.quit_after_result and qt == ["-style", "fusion", "-reverse"]
    for bad in (["--size", "big"], ["a.jpg", "--open", "b.jpg"], ["gui", "--no-such-option"]):
        with pytest.raises(SystemExit) as done:
            main(bad)
        assert done.value.code == 2
    err = capsys.readouterr().err
    assert "WIDTHxHEIGHT" in err and "give the image once" in err and "--no-such-option" in err
