"""Export the records: one CSV row per examination, the original image files, one PDF report per examination
(when a report writer is given: the PDF writer is Qt's, so the window passes it in; the command line has no
GUI libraries), and the examinations with a histopathology outcome as a training set.

The training set is `training_metadata.csv` in HAM10000's metadata format beside `images/`, so the export
folder itself is a data folder `training.data.read_dataset` (and so the retraining) accepts. No Qt here.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.errors import LesionError
from lesion_desktop.progress import Progress, check_cancel
from lesion_desktop.records import IMAGE_KIND_TEXT, Patient, Record, RecordStore

RECORDS_CSV = "records.csv"
TRAINING_CSV = "training_metadata.csv"  # read_dataset finds the CSV whose name contains "metadata"
COLUMNS = ["examination_id", "patient_id", "birth", "sex", "lesion_id", "body_site", "lesion_label", "exam_time",
           "image_file", "image_sha256", "image_stored_as", "source_name", "model_version", "prediction",
           *CLASS_CODES, "malignant", "warnings", "scope", "models_assessment", "clinician", "clinician_assessment",
           "clinician_notes", "histopathology", "histopathology_note", "histopathology_date", "report_file"]
TRAINING_COLUMNS = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]

ReportWriter = Callable[[Record, Path], None]


@dataclass
class ExportSummary:
    folder: Path
    examinations: int = 0
    images: int = 0
    reports: int = 0
    training_images: int = 0
    problems: list[str] = field(default_factory=list)

    def sentence(self) -> str:
        text = (f"Exported {self.examinations} examination{'s' * (self.examinations != 1)} to {self.folder}: "
                f"{self.images} original image{'s' * (self.images != 1)} and {self.reports} PDF "
                f"report{'s' * (self.reports != 1)}.")
        if self.training_images:
            text += (f" {self.training_images} with a histopathology outcome are in {TRAINING_CSV}: the folder "
                     "can be given to the retraining as a data folder.")
        if self.problems:
            text += f" {len(self.problems)} problem(s): " + " ".join(self.problems)
        return text


def _scope_text(record: Record) -> str:
    scope = record.details.get("scope")
    if not isinstance(scope, dict) or "in_scope" not in scope:
        return ""
    if scope.get("in_scope"):
        return "in scope"
    text = f"out of scope: {scope.get('reason', '')}".strip()
    return text + (" (shown anyway at the user's request)" if record.details.get("shown_anyway") else "")


def _models_assessment(record: Record, threshold: float) -> str:
    from lesion_desktop.analysis import assess_record

    return assess_record(record, threshold).text


def _age(patient: Patient | None, record: Record) -> str:
    age = patient.age_at(record.created) if patient is not None else None
    return "" if age is None else f"{age}.0"


def _private_folder(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise LesionError(f"{folder} is not an empty folder: choose a new or empty one, so that no earlier "
                          "export is mixed into this one.")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "posix":
        os.chmod(folder, 0o700)  # patient data: private to its user until they decide to share it


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    tmp = path.with_name(path.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def export_records(store: RecordStore, output_dir: Path, *, patient: str | None = None, threshold: float = 0.30,
                   report_writer: ReportWriter | None = None, progress: Progress | None = None,
                   training_only: bool = False) -> ExportSummary:
    """Write the export into `output_dir` (new or empty). `patient`: one patient's clinic ID, else everyone.
    `training_only`: only the examinations with a histopathology outcome of the seven classes (the retraining's
    data). records.csv is written last, so a folder with one is a complete export."""
    output_dir = Path(output_dir)
    who: Patient | None = None
    if patient is not None:
        who = store.find_patient(patient)
        if who is None:
            raise LesionError(f"There is no patient with the ID {patient!r} in the history at {store.root}.")
    _private_folder(output_dir)
    images = output_dir / "images"
    images.mkdir(mode=0o700)
    reports = output_dir / "reports"
    if report_writer is not None:
        reports.mkdir(mode=0o700)
    summary = ExportSummary(output_dir)
    records = [r for r in store.all_for_export(who.id if who is not None else None)
               if not training_only or r.histopathology in CLASS_CODES]
    patients: dict[int, Patient | None] = {}
    rows: list[list[str]] = []
    training: dict[str, list[str]] = {}  # by image sha256: the same file examined twice is one training image
    for n, rec in enumerate(records):
        check_cancel(progress)
        if progress is not None:
            progress.report(n / max(1, len(records)), f"Exporting examination {n + 1} of {len(records)}…")
        assert rec.id is not None
        if rec.patient_id is not None and rec.patient_id not in patients:
            patients[rec.patient_id] = store.get_patient(rec.patient_id)
        pat = patients.get(rec.patient_id) if rec.patient_id is not None else None
        stem = f"exam-{rec.id:06d}"
        image_file, warnings = _copy_image(rec, images / (stem + rec.image_path.suffix), summary)
        report_file = ""
        if report_writer is not None:
            try:
                report_writer(rec, reports / f"{stem}.pdf")
                report_file = f"reports/{stem}.pdf"
                summary.reports += 1
            except (OSError, LesionError, ValueError) as e:
                summary.problems.append(f"Examination #{rec.id}: the report could not be written ({e}).")
        rows.append([
            str(rec.id), rec.patient_clinic_id, pat.birth if pat else "", pat.sex if pat else "",
            str(rec.lesion_id or ""), rec.body_site, rec.lesion_label, rec.created, image_file, rec.image_sha256,
            IMAGE_KIND_TEXT.get(rec.image_kind, rec.image_kind), rec.source_name, rec.model_version, rec.top_code,
            *(f"{p:.6f}" for p in rec.probabilities), f"{rec.malignant_probability:.6f}",
            "; ".join([*rec.warnings, *warnings]), _scope_text(rec), _models_assessment(rec, threshold),
            rec.clinician, rec.assessment, rec.notes, rec.histopathology, rec.histopathology_note,
            rec.histopathology_date, report_file])
        key = rec.image_sha256 or stem
        if rec.histopathology in CLASS_CODES and image_file and key not in training:
            training[key] = [
                f"lesion-{rec.lesion_id}" if rec.lesion_id is not None else stem, stem, rec.histopathology,
                "histo", _age(pat, rec), (pat.sex if pat and pat.sex else "unknown"), rec.body_site or "unknown"]
        summary.examinations += 1
    if training:
        _write_csv(output_dir / TRAINING_CSV, TRAINING_COLUMNS, list(training.values()))
        summary.training_images = len(training)
    _write_csv(output_dir / RECORDS_CSV, COLUMNS, rows)
    if progress is not None:
        progress.report(1.0, summary.sentence())
    return summary


def _copy_image(rec: Record, target: Path, summary: ExportSummary) -> tuple[str, list[str]]:
    """Copy the stored file byte for byte; returns its path relative to the export and any warning."""
    try:
        data = rec.image_path.read_bytes()
    except OSError as e:
        summary.problems.append(f"Examination #{rec.id}: its image is missing from the history ({e.strerror}).")
        return "", ["the stored image is missing"]
    warnings = []
    if rec.image_sha256 and hashlib.sha256(data).hexdigest() != rec.image_sha256:
        summary.problems.append(f"Examination #{rec.id}: the stored image no longer matches its sha256.")
        warnings.append("the stored image does not match its sha256 (changed or damaged since it was stored)")
    _write_file(target, data)
    summary.images += 1
    return f"images/{target.name}", warnings


def export_parser() -> argparse.ArgumentParser:
    """`lesion-desktop export --help`."""
    e = argparse.ArgumentParser(
        prog="lesion-desktop export",
        description="Export the records into a folder: records.csv (one row per examination), the original image "
        f"files and, for examinations with a histopathology outcome, {TRAINING_CSV} in HAM10000's format (the "
        "folder is then a data folder for the retraining) and one PDF report per examination (drawn by the "
        "application's Qt libraries, without opening a window).")
    e.add_argument("output", type=Path, metavar="OUTPUT_DIR", help="a new or empty folder")
    e.add_argument("--patient", metavar="ID", help="only this patient (the clinic's patient ID)")
    e.add_argument("--no-pdf", dest="no_pdf", action="store_true", help="leave out the PDF reports")
    return e


def run_export_command(args: argparse.Namespace, report_writer: ReportWriter | None = None) -> int:
    """`lesion-desktop export OUTPUT_DIR [--patient ID]`; returns the exit status."""
    import sys

    from lesion_desktop.settings import load_settings

    def say(text: str) -> None:
        if sys.stderr is not None:
            print(text, file=sys.stderr, flush=True)

    try:
        store = RecordStore()
        summary = export_records(store, args.output, patient=args.patient,
                                 threshold=load_settings().warning_threshold, report_writer=report_writer)
    except LesionError as e:
        say(f"error: {e}")
        return 2
    say(summary.sentence())
    if report_writer is None and not getattr(args, "no_pdf", False):
        say("No PDF reports: the Qt libraries that draw them could not be used. File > Export records in the "
            "desktop application writes the same export with one PDF per examination.")
    if summary.examinations == 0:
        say("The history holds no examinations" + (f" of patient {args.patient}." if args.patient else "."))
    return 0 if not summary.problems else 1

