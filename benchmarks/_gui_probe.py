"""Child process of bench_startup: starts something and writes when each milestone happened.

Times are seconds since the parent's `time.time()` just before it spawned this process (BENCH_T0), so the
interpreter's own start-up counts. Events go to the file named by BENCH_EVENTS, one JSON object a line.

  app ARGS...          the real entry point, lesion_desktop.qt.app.run_gui([prog, *ARGS]); events
                       window_painted (first paint of the main window), engine_loaded, result_shown
  bare                 the floor for a Qt window: PySide6, a QApplication and an empty QMainWindow
  plain MODELS IMAGE   the floor for a first result: a plain script building the models with torchvision/timm,
                       loading the safetensors weights, PIL + transforms, one forward pass per member
"""

from __future__ import annotations

import json
import os
import sys
import time

T0 = float(os.environ.get("BENCH_T0", time.time()))
_EVENTS = open(os.environ.get("BENCH_EVENTS", os.devnull), "a")  # noqa: SIM115 - open for the process


def emit(event: str) -> None:
    _EVENTS.write(json.dumps({"event": event, "t": time.time() - T0}) + "\n")
    _EVENTS.flush()


def _install_window_probe(app: object, window_class: str, quit_after_paint: bool = False) -> None:
    from PySide6.QtCore import QEvent, QObject, QTimer

    seen: set[str] = set()

    class Probe(QObject):
        def eventFilter(self, obj: QObject, ev: QEvent) -> bool:  # noqa: N802 - Qt API
            if ev.type() == QEvent.Type.Paint and "window_painted" not in seen and obj.isWidgetType():
                win = obj.window()  # type: ignore[attr-defined]
                if type(win).__name__ == window_class:
                    seen.add("window_painted")
                    emit("window_painted")
                    if quit_after_paint:
                        QTimer.singleShot(0, app.quit)  # type: ignore[attr-defined]
                    elif hasattr(win, "result_shown"):
                        win.result_shown.connect(lambda _a: emit("result_shown"))
                        win.engine_changed.connect(lambda: emit("engine_loaded"))
                        if getattr(win, "engine", None) is not None:
                            emit("engine_loaded")
            return False

    probe = Probe()
    app.installEventFilter(probe)  # type: ignore[attr-defined]
    app._bench_probe = probe  # type: ignore[attr-defined]  # keep it alive


def run_app(args: list[str]) -> int:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    emit("qt_imported")
    # run_gui reuses an existing QApplication: create it here (as run_gui would) to watch its events.
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication(["lesion-desktop"])
    _install_window_probe(app, "MainWindow")
    from lesion_desktop.qt.app import run_gui

    code = run_gui(["lesion-desktop", *args])
    emit("exited")
    return code


def run_bare() -> int:
    from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

    app = QApplication(["bare"])
    _install_window_probe(app, "QMainWindow", quit_after_paint=True)
    win = QMainWindow()
    win.setCentralWidget(QLabel("hello"))
    win.resize(1000, 700)
    win.show()
    return app.exec()


def run_plain(models: str, image: str) -> int:
    import json as _json
    from pathlib import Path

    import torch
    from PIL import Image
    from safetensors.torch import load_file
    from torchvision import transforms

    from lesion_desktop.registry import get_spec

    emit("torch_imported")
    root = Path(models)
    manifest = _json.loads((root / "manifest.json").read_text())
    img = Image.open(image).convert("RGB")
    probs = []
    for entry in manifest["members"]:
        sub = root / entry["path"]
        m = _json.loads((sub / "manifest.json").read_text())
        model = get_spec(m["architecture"]).build()
        model.load_state_dict({k: v.float() for k, v in load_file(str(sub / m["weights_file"])).items()})
        model.eval()
        pre = m["preprocessing"]
        tf = transforms.Compose([transforms.Resize(tuple(pre["input_size"])), transforms.ToTensor(),
                                 transforms.Normalize(pre["mean"], pre["std"])])
        with torch.no_grad():
            probs.append(torch.softmax(model(tf(img).unsqueeze(0)), 1))
    torch.stack(probs).mean(0)
    emit("result_shown")
    return 0


def main() -> int:
    emit("python_started")
    kind, rest = sys.argv[1], sys.argv[2:]
    if kind == "app":
        return run_app(rest)
    if kind == "bare":
        return run_bare()
    if kind == "plain":
        return run_plain(*rest)
    raise SystemExit(f"unknown probe {kind!r}")


if __name__ == "__main__":
    sys.exit(main())
