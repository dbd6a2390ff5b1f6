"""History speed with a clinic's worth of records: listing and searching 10,000 examinations (target: under 100 ms).

A history of `--exams` examinations (default 10,000) is made in a temporary folder: `--patients` patients with one
to three lesions each, most examinations filed, the rest quick examinations, each with a real ~5 kB PNG thumbnail
(from HAM10000 images) like the app stores. The rows are written in one transaction with the store's own schema
(RecordStore creates it); image files are not needed to list. Timed, interleaved, medians of `--reps`:

  patients       the top level: one grouped query over all patients, lesions and examinations
  search         the same filtered by a patient ID or name fragment
  quick          the newest 200 quick examinations with their thumbnails
  panel          the history dock's refresh() (Qt offscreen), as after each new examination
  panel cold     a new dock's first fill (no thumbnail decoded yet), as when the program starts
  panel search   typing a search ("berg": about a fifth of the names) into the dock
  expand         opening one patient: their lesions and examinations with thumbnails
  baseline       the previous release's dock: the newest 500 records with thumbnails into a flat list

    python -m benchmarks.bench_history [--exams 10000] [--patients 3000] [--reps 15]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import random
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from benchmarks._common import HAM_IMAGES, image_files, interleaved, save_results, stats, table  # noqa: E402

TARGET_S = 0.100


def keep_none_alive() -> None:
    """PySide6 6.12.0 on Python 3.11 drops one reference to None on every call of a void method (setData,
    setText, fillRect...: measured, see docs/records.md), so a few thousand tree items end the process with
    "none_dealloc". Python 3.12 made None immortal; on 3.11 this process gives None references to spare."""
    if sys.version_info < (3, 12):
        import ctypes

        ctypes.c_ssize_t.from_address(id(None)).value += 1 << 40


def build_history(root: Path, n_exams: int, n_patients: int, seed: int = 0) -> dict[str, Any]:
    from lesion_desktop.classes import CLASS_CODES
    from lesion_desktop.imageio import load_image
    from lesion_desktop.records import BODY_SITES, RecordStore, make_thumbnail

    rng = random.Random(seed)
    store = RecordStore(root)
    thumbs = [make_thumbnail(load_image(p)) for p in image_files(HAM_IMAGES, 50)]
    first = ["Anna", "Bo", "Carl", "Dana", "Erik", "Frida", "Gustav", "Hanna", "Ida", "Johan"]
    last = ["Berg", "Lind", "Holm", "Nyberg", "Sandberg", "Ek", "Strand", "Lund", "Wik", "Dahl"]
    start = _dt.datetime(2020, 1, 1, 9, 0)
    with sqlite3.connect(store.db_path) as con:
        patients = []
        for i in range(n_patients):
            cur = con.execute("INSERT INTO patients (clinic_id, name, birth, sex, created) VALUES (?, ?, ?, ?, ?)",
                              (f"P-{i:05d}", f"{rng.choice(first)} {rng.choice(last)}", str(rng.randint(1930, 2005)),
                               rng.choice(["female", "male", ""]), start.isoformat()))
            patients.append(int(cur.lastrowid or 0))
        lesions = []
        for pid in patients:
            for _ in range(rng.randint(1, 3)):
                cur = con.execute("INSERT INTO lesions (patient_id, body_site, label, created) VALUES (?, ?, ?, ?)",
                                  (pid, rng.choice(BODY_SITES), "", start.isoformat()))
                lesions.append(int(cur.lastrowid or 0))
        cols = ["lesion_id", "created", "source_name", "image_file", "image_sha256", "image_kind", "thumbnail",
                *[f"p_{c}" for c in CLASS_CODES], "model_version", "details"]
        rows = []
        for i in range(n_exams):
            p = [rng.random() for _ in CLASS_CODES]
            s = sum(p)
            lesion = rng.choice(lesions) if rng.random() < 0.9 else None
            when = (start + _dt.timedelta(minutes=37 * i)).astimezone().isoformat(timespec="seconds")
            rows.append((lesion, when, f"ISIC_{i:07d}.jpg", f"{i:064x}.jpg", f"{i:064x}", "original",
                         rng.choice(thumbs), *[x / s for x in p], "bench", json.dumps({"threshold": 0.3})))
        con.executemany(f"INSERT INTO examinations ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
    return {"examinations": n_exams, "patients": n_patients, "lesions": len(lesions),
            "quick": sum(1 for r in rows if r[0] is None), "database_mb": round(store.db_path.stat().st_size / 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exams", type=int, default=10_000)
    ap.add_argument("--patients", type=int, default=3_000)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()

    import platform

    from PySide6.QtGui import QIcon, QPixmap
    from PySide6.QtWidgets import QApplication, QListWidget, QListWidgetItem

    from lesion_desktop.qt.history_panel import PATIENT, HistoryPanel
    from lesion_desktop.records import RecordStore

    keep_none_alive()
    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        made = build_history(root, args.exams, args.patients)
        print(f"history: {made}")
        store = RecordStore(root)
        panel = HistoryPanel(store)
        panel.resize(360, 900)
        panel.show()
        app.processEvents()
        old_list = QListWidget()

        def clear_search() -> None:
            panel.search.blockSignals(True)
            panel.search.setText("")
            panel.search.blockSignals(False)

        def panel_refresh() -> None:
            clear_search()
            panel.refresh()

        def panel_search() -> None:
            clear_search()
            panel.search.setText("berg")  # as typed: textChanged refreshes with the filter

        def expand() -> None:  # the first patient, opened afresh (refresh() rebuilt the items)
            item = panel._top_items(PATIENT)[0]
            item.takeChildren()
            panel._fill_patient(item)

        def baseline() -> None:  # the previous release's dock: 500 newest, each with its thumbnail decoded
            old_list.clear()
            for r in store.list(500):
                item = QListWidgetItem(f"{r.top_name} ({r.probabilities.max():.0%})\n{r.created_local()}")
                pix = QPixmap()
                pix.loadFromData(r.thumbnail, "PNG")
                item.setIcon(QIcon(pix))
                old_list.addItem(item)

        cases = {
            "patients": lambda: store.patients(),
            "search": lambda: store.patients("P-01"),
            "quick": lambda: store.unfiled(200),
            "panel": panel_refresh,
            "panel cold": lambda: HistoryPanel(store).deleteLater(),
            "panel search": panel_search,
            "expand": expand,
            "baseline (old flat list of 500)": baseline,
        }
        times = interleaved(cases, args.reps, warmup=2)
        shown = len(store.patients("P-01"))
    rows, results = [], {}
    base = stats(times["baseline (old flat list of 500)"])["median"]
    for name, samples in times.items():
        st = stats(samples)
        results[name] = st
        rows.append([name, st["median"] * 1000, st["p90"] * 1000, st["median"] / base,
                     "met" if st["median"] < TARGET_S else "NOT met"])
    print(table(rows, ["step", "median ms", "p90 ms", "ratio to baseline", f"< {TARGET_S * 1000:.0f} ms"]))
    print(f"search 'P-01' matched {shown} patients; machine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg() if hasattr(os, 'getloadavg') else 'n/a'}")
    save_results("history", {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
                 {"history": made, "reps": args.reps, "target_s": TARGET_S, "results": results})


if __name__ == "__main__":
    main()
