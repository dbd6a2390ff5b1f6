"""`lesion-desktop export`: records.csv, the original images, a training set the retraining reads, privacy;
and the PDF reports the window's export adds (Qt's writer)."""

from __future__ import annotations

import csv
import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.cli import main as cli_main
from lesion_desktop.export import COLUMNS, RECORDS_CSV, TRAINING_CSV, export_records
from lesion_desktop.imageio import load_image
from lesion_desktop.records import RecordStore
from tests.helpers import HAM, require_data

REQUIRED = ["patient_id", "lesion_id", "body_site", "exam_time", "image_file", "model_version", "prediction",
            "akiec", "bcc", "bkl", "df", "mel", "nv", "vasc", "warnings", "clinician_assessment", "histopathology"]


def _probs(top: int) -> np.ndarray:
    p = np.full(7, 0.04)
    p[top] = 0.76
    return p


@pytest.fixture
def clinic() -> tuple[RecordStore, list[Path]]:
    """Two patients; 35 examinations of real images with a histopathology outcome (5 per class), one quick
    examination without a patient and one camera capture without histopathology."""
    require_data()
    files = sorted((HAM / "images").glob("*.jpg"))[:36]
    store = RecordStore()
    anna = store.add_patient("P-001", "Anna Berg", "1970-05-31", "female")
    bo = store.add_patient("P-002", "Bo Lind", "1985", "male")
    sites = ["back", "face", "lower extremity"]
    lesions = [store.add_lesion(anna.id, s, f"lesion {i}") for i, s in enumerate(sites)]
    lesions.append(store.add_lesion(bo.id, "scalp"))
    for i, f in enumerate(files[:35]):
        rec = store.add(load_image(f), _probs(i % 7), source_name=f.name, model_version="v-test", original=f,
                        lesion_id=lesions[i % 4].id, warnings=["slightly blurred"] if i == 0 else [])
        store.set_histopathology(rec.id, CLASS_CODES[i % 7], "", "2024-06-01")
        store.set_assessment(rec.id, clinician="Dr A", assessment="excise" if i % 7 == 4 else "monitor", notes="")
    store.add(load_image(files[35]), _probs(5), source_name="quick.jpg", model_version="v-test", original=files[35])
    store.add(np.full((60, 80, 3), 120, np.uint8), _probs(5), source_name="Camera capture", model_version="v-test",
              lesion_id=lesions[3].id)
    return store, files


def _rows(folder: Path, name: str = RECORDS_CSV) -> list[dict[str, str]]:
    with open(folder / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_export_writes_rows_and_original_images(clinic, tmp_path):
    store, files = clinic
    out = tmp_path / "export"
    summary = export_records(store, out)
    rows = _rows(out)
    assert set(REQUIRED) <= set(rows[0]) and list(rows[0]) == COLUMNS
    assert len(rows) == summary.examinations == 37 and summary.images == 37 and summary.problems == []
    by_name = {r["source_name"]: r for r in rows}
    first = by_name[files[0].name]
    assert first["patient_id"] == "P-001" and first["body_site"] == "back" and first["histopathology"] == "akiec"
    assert first["clinician_assessment"] == "monitor" and first["warnings"] == "slightly blurred"
    assert first["prediction"] == "akiec" and float(first["akiec"]) == pytest.approx(0.76)
    assert first["image_stored_as"] == "the original file, as it came"
    for f in files[:35]:
        row = by_name[f.name]
        assert not Path(row["image_file"]).is_absolute()
        copied = out / row["image_file"]
        assert copied.read_bytes() == f.read_bytes()  # the original bytes, not a re-encoding
        assert row["image_sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    quick = by_name["quick.jpg"]
    assert quick["patient_id"] == "" and quick["lesion_id"] == "" and quick["histopathology"] == ""
    cam = by_name["Camera capture"]
    assert cam["image_file"].endswith(".png") and "lossless PNG" in cam["image_stored_as"]
    assert "Malignant classes combined" in cam["models_assessment"]
    assert not (out / "reports").exists()  # no writer given: no PDFs


def test_histopathology_outcomes_are_a_training_set_the_retraining_reads(clinic, tmp_path):
    from training.data import read_dataset

    store, files = clinic
    out = tmp_path / "export"
    summary = export_records(store, out)
    assert summary.training_images == 35
    meta = _rows(out, TRAINING_CSV)
    assert list(meta[0]) == ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
    ds = read_dataset(out)
    assert ds.layout == "HAM10000" and len(ds.records) == 35 and ds.problems == []
    assert ds.counts() == {c: 5 for c in CLASS_CODES}
    exported = {r["image_file"]: r for r in _rows(out)}
    for rec in ds.records:
        row = exported[f"images/{rec.path.name}"]
        assert CLASS_CODES[rec.label] == row["histopathology"]
        assert rec.lesion_id == f"lesion-{row['lesion_id']}"  # the lesion, so splits keep its images together
    first = next(m for m in meta if m["dx"] == "akiec" and m["localization"] == "back")
    assert first["sex"] == "female" and first["age"].endswith(".0") and first["dx_type"] == "histo"
    assert {m["sex"] for m in meta} == {"female", "male"}


def test_one_patient_and_the_command_line(clinic, tmp_path, capsys):
    store, _ = clinic
    out = tmp_path / "bo"
    assert cli_main(["export", str(out), "--patient", "p-002"]) == 0
    rows = _rows(out)
    assert {r["patient_id"] for r in rows} == {"P-002"} and len(rows) == 9
    err = capsys.readouterr().err
    assert "Exported 9 examinations" in err and "No PDF reports" in err and "File > Export records" in err
    assert cli_main(["export", str(tmp_path / "nobody"), "--patient", "P-404"]) == 2
    assert "no patient with the ID 'P-404'" in capsys.readouterr().err
    assert not (tmp_path / "nobody").exists()
    assert cli_main(["export", str(out)]) == 2  # never mixed into an earlier export
    assert "not an empty folder" in capsys.readouterr().err


def test_a_damaged_stored_image_is_reported_not_hidden(clinic, tmp_path, capsys):
    store, files = clinic
    victim = next(r for r in store.list() if r.source_name == files[3].name)
    victim.image_path.write_bytes(victim.image_path.read_bytes()[:-100])
    gone = next(r for r in store.list() if r.source_name == files[4].name)
    gone.image_path.unlink()
    assert cli_main(["export", str(tmp_path / "out")]) == 1
    rows = {r["source_name"]: r for r in _rows(tmp_path / "out")}
    assert "does not match its sha256" in rows[files[3].name]["warnings"]
    assert rows[files[4].name]["image_file"] == "" and "missing" in rows[files[4].name]["warnings"]
    assert "2 problem(s)" in capsys.readouterr().err


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_the_export_is_private_to_its_user(clinic, tmp_path):
    store, _ = clinic
    out = tmp_path / "export"
    export_records(store, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for f in [out / RECORDS_CSV, out / TRAINING_CSV, *(out / "images").iterdir()]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_the_installed_command_writes_one_pdf_per_examination(clinic, tmp_path):
    """`lesion-desktop export` as a user runs it: the reports are drawn offscreen, no window, no display."""
    import subprocess
    import sys

    out = tmp_path / "bo-pdf"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "QT_QPA_PLATFORM")}
    r = subprocess.run([sys.executable, "-m", "lesion_desktop", "export", str(out), "--patient", "P-002"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-800:]
    rows = _rows(out)
    pdfs = sorted(out.rglob("*.pdf"))
    assert len(rows) == 9 and len(pdfs) == 9 and "No PDF reports" not in r.stderr
    assert all(p.read_bytes().startswith(b"%PDF") for p in pdfs)
    r = subprocess.run([sys.executable, "-m", "lesion_desktop", "export", str(tmp_path / "nopdf"), "--no-pdf"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and not list((tmp_path / "nopdf").rglob("*.pdf"))
