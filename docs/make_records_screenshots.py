"""Screenshots of the clinic records: the window with the grouped history and the filing bar, a lesion's timeline,
and the two pages of a follow-up report, all made by the real program with the shipped models.

HAM10000 has several images of some lesions (taken at one visit). The script classifies the first such pairs with
the shipped models and takes the pair whose malignant probability differs most, so the follow-up alert can be
seen; the two images stand for two visits, dated six months apart for the illustration. The probabilities are the
models' real outputs. Run from the project root (poppler-utils' pdftoppm renders the report):

    flock /tmp/heavy.lock xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python docs/make_records_screenshots.py

Everything but the PNGs in docs/ lives in a temporary folder.
"""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOME = Path(tempfile.mkdtemp(prefix="lesion-records-screens-"))
os.environ["LESION_DESKTOP_HOME"] = str(HOME)
os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "ham10000"
PAIRS_TRIED = 60


def pause(ms: int = 500) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait(condition: Callable[[], bool], seconds: float = 300) -> None:
    for _ in range(int(seconds * 20)):
        if condition():
            return
        pause(50)
    raise TimeoutError("the window did not get there")


def pick_pair() -> tuple[str, Path, Path, float]:
    """The HAM10000 lesion (of the first PAIRS_TRIED with two images) whose malignant probability rises most."""
    from lesion_desktop.imageio import load_image
    from lesion_desktop.inference import open_engine

    by_lesion: dict[str, list[str]] = defaultdict(list)
    with open(DATA / "HAM10000_metadata.csv", newline="") as f:
        for row in csv.DictReader(f):
            by_lesion[row["lesion_id"]].append(row["image_id"])
    engine, _ = open_engine(device="cpu")
    best: tuple[float, str, Path, Path] | None = None
    for lesion, ids in [(k, v) for k, v in sorted(by_lesion.items()) if len(v) == 2][:PAIRS_TRIED]:
        paths = [DATA / "images" / f"{i}.jpg" for i in ids]
        a, b = (engine.predict_one(load_image(p)).malignant_probability for p in paths)
        rise, first, second = (b - a, paths[0], paths[1]) if b >= a else (a - b, paths[1], paths[0])
        if best is None or rise > best[0]:
            best = (rise, lesion, first, second)
    assert best is not None
    print(f"lesion {best[1]}: {best[2].name} -> {best[3].name}, malignant +{best[0] * 100:.0f} points")
    return best[1], best[2], best[3], best[0]


def main() -> int:
    lesion_name, first, second, _ = pick_pair()
    from lesion_desktop.qt.main_window import MainWindow
    from lesion_desktop.qt.report_pdf import write_record_report
    from lesion_desktop.records import RecordStore
    from lesion_desktop.settings import Settings

    app = QApplication.instance() or QApplication(sys.argv)  # noqa: F841 - kept alive for the window
    store = RecordStore()
    anna = store.add_patient("P-004217", "Anna Berg", "1961-03-08", "female")
    back = store.add_lesion(anna.id, "back", "left shoulder blade")
    store.add_lesion(anna.id, "lower extremity", "right calf")
    store.add_patient("P-003990", "Bo Lind", "1978", "male")
    store.add_patient("P-004102", "Carl Nyberg", "1949-11-23", "male")
    w = MainWindow(Settings(device="cpu", clinician="Dr Eva Holm"))
    w.resize(1366, 740)
    w.move(0, 0)
    w.show()
    wait(lambda: w.idle and w.engine is not None)
    w.records_ui.set_target(back.id)
    ids = []
    for path in (first, second):
        w.open_path(path)
        wait(lambda name=path.name: w.idle and w.current is not None and w.current.record.source_name == name)
        ids.append(w.current.record.id)
    with sqlite3.connect(store.db_path) as con:  # two visits, six months apart (the images are one visit's)
        for rid, when in zip(ids, ("2024-01-15T10:20:00+01:00", "2024-07-16T09:45:00+02:00"), strict=True):
            con.execute("UPDATE examinations SET created = ? WHERE id = ?", (when, rid))
    store.set_assessment(ids[1], clinician="Dr Eva Holm", assessment="Excise or biopsy",
                         notes=f"HAM10000 lesion {lesion_name}; asymmetric pigment network at 6 o'clock.")
    w.records_ui.set_target(None)
    w.open_path(DATA / "images" / "ISIC_0024306.jpg")  # a quick examination, not filed
    wait(lambda: w.idle and w.current is not None and w.current.record.source_name == "ISIC_0024306.jpg")
    w.open_record(ids[1])
    wait(lambda: w.idle and w.current is not None and w.current.record.id == ids[1])
    w.history.refresh(select_id=ids[1])
    pause(800)
    out = ROOT / "docs"
    w.grab().save(str(out / "records-window.png"))
    dlg = w.records_ui.open_timeline(back.id)
    assert dlg is not None
    dlg.resize(1200, 760)
    pause(800)
    dlg.grab().save(str(out / "records-timeline.png"))
    dlg.close()
    later = store.get(ids[1])
    assert later is not None
    pdf = HOME / "report.pdf"
    s = w.settings
    write_record_report(pdf, store, later, threshold=s.warning_threshold, opacity=s.heatmap_opacity,
                        rates=w.rates_for(later), rise_points=s.follow_up_alert_points)
    subprocess.run(["pdftoppm", "-png", "-r", "80", str(pdf), str(out / "records-report")], check=True)
    for f in sorted(out.glob("records-*.png")):
        print("wrote", f.relative_to(ROOT))
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
