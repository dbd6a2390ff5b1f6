"""Screenshots of a real worse candidate's install confirmation, the unvalidated-models banner, and Help.

A baseline CNN is trained for about a minute on HAM10000 (the issue's "melanoma recall 0.000" candidate) with
the real retraining pipeline, and compared with the shipped default on the validation images neither was
trained on. The retrain dialog then shows that real result (the pipeline's run is handed to it rather than
repeated), the user asks to install, and the override box is captured; after "Install anyway", a real
melanoma is analysed and the main window with its banner is captured. Run from the project root:

    flock /tmp/heavy.lock xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python docs/make_safety_screenshots.py

Needs ../shared/data/ham10000 and runs/default/cache (decoded images, made by `python -m training.subgroups`;
reused so the default models' images are not decoded again). Everything else lives in a temporary folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOME = Path(tempfile.mkdtemp(prefix="lesion-screens-"))
os.environ["LESION_DESKTOP_HOME"] = str(HOME)
os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from lesion_desktop.qt.main_window import MainWindow  # noqa: E402
from lesion_desktop.settings import Settings  # noqa: E402
from training.pipeline import RetrainConfig, RetrainResult, retrain  # noqa: E402
from training.progress import Progress, TerminalProgress  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "ham10000"
MELANOMA = DATA / "images" / "ISIC_0026531.jpg"  # a biopsy-proven melanoma of the default's test split


def wait(app: QApplication, condition: Callable[[], bool], seconds: float = 300) -> None:
    for _ in range(int(seconds * 20)):
        if condition():
            return
        pause(app, 50)
    raise TimeoutError("the window did not get there")


def pause(app: QApplication, ms: int = 600) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def shoot(app: QApplication, name: str) -> None:
    out = ROOT / "docs" / name
    app.primaryScreen().grabWindow(0).save(str(out))
    print("wrote", out)


def main() -> int:
    work = HOME / "work"
    work.mkdir(parents=True)
    (work / "cache").symlink_to(ROOT / "runs" / "default" / "cache")
    from lesion_desktop.paths import bundled_models_dir

    cfg = RetrainConfig(data=str(DATA), architectures=["baseline_cnn"], work_dir=str(work), epochs_head=1,
                        epochs_top=0, epochs_all=0, input_size=(150, 200), imagenet="none", batch_size=32,
                        max_batches=30, device="cpu", command="screenshot: one-minute baseline CNN")
    prog = TerminalProgress("retrain")
    try:
        result: RetrainResult = retrain(cfg, prog, active_dir=bundled_models_dir())
    finally:
        prog.close()
    print(result.verdict.summary)

    app = QApplication.instance() or QApplication(sys.argv)
    w = MainWindow(Settings(device="cpu"))
    w.resize(1366, 740)
    w.move(0, 0)
    w.show()
    wait(app, lambda: w.idle and w.engine is not None)

    import lesion_desktop.qt.retrain_dialog as rd

    def hand_over(progress: Progress, _cfg: RetrainConfig, _active: Path | None) -> RetrainResult:
        """The real run above, handed to the dialog rather than repeated."""
        progress.report(1.0, "Retraining finished; review the reports before installing")
        return result

    rd._run_retrain = hand_over
    dlg = w.open_retrain()
    dlg.data_edit.setText(str(DATA))
    for name, box in dlg.arch_boxes.items():
        box.setChecked(name == "baseline_cnn")
    dlg.epoch_spins["head"].setValue(1)
    dlg.epoch_spins["top"].setValue(0)
    dlg.epoch_spins["all"].setValue(0)
    dlg.size_edit.setText("150x200")
    dlg.init_combo.setCurrentIndex(dlg.init_combo.findData("random"))
    dlg.max_batches_spin.setValue(30)
    dlg.move(60, 0)
    dlg.start()
    wait(app, lambda: dlg.candidate is not None)
    dlg.install()
    pause(app)
    box = dlg.confirm_box
    assert box is not None
    box.move(260, 150)
    pause(app)
    shoot(app, "screenshot-retrain-override.png")

    box.button(QMessageBox.StandardButton.Yes).click()
    wait(app, lambda: dlg.candidate is None and w.idle and "UNVALIDATED" in (w.engine.version if w.engine else ""))
    dlg.close()
    w.open_path(MELANOMA)
    wait(app, lambda: w.idle and w.current is not None)
    pause(app, 1000)
    shoot(app, "screenshot-unvalidated-banner.png")
    help_dialog = w.show_instructions()
    help_dialog.move(200, 20)
    pause(app)
    shoot(app, "screenshot-instructions.png")
    help_dialog.close()
    about = w.show_about()
    about.details_button.click()
    about.move(300, 20)
    pause(app)
    shoot(app, "screenshot-about.png")
    about.close()
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
