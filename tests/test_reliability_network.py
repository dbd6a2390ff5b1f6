"""No network (issue point 7): starting the app, classifying (GUI and CLI), exporting a PDF report and
retraining (with ImageNet weights from the local torch cache) open no network connection.

A subprocess installs a `sys.addaudithook` before importing anything of ours and records every
INET/INET6 socket created, bound, connected or sent to, every name lookup and every urllib request. A
control phase at the end does one lookup and one local connection, to prove the hook sees them. Because
native code (Qt, torch) can open sockets without Python's audit events, each phase also ends with a look
at the process's open file descriptors for INET sockets (/proc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import FULLRES, REPO, make_tiny_ensemble, require_data
from tests.training_data import make_class_folders

pytestmark = pytest.mark.slow
WEIGHTS_DIR = REPO.parent / "shared" / "weights"

SCRIPT = textwrap.dedent(r'''
    import json, os, socket, sys, time
    from pathlib import Path

    cfg = json.loads(Path(sys.argv[1]).read_text())
    PHASE = ["start"]
    EVENTS = []
    OPEN_SOCKETS = []
    INET = (socket.AF_INET, socket.AF_INET6)
    LOOKUPS = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr",
               "socket.getnameinfo", "urllib.Request", "http.client.connect", "ftplib.connect", "smtplib.connect",
               "imaplib.open", "poplib.connect", "nntplib.connect", "telnetlib.Telnet.open", "webbrowser.open"}

    def hook(event, args):
        if event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"):
            if getattr(args[0], "family", None) in INET:
                EVENTS.append([PHASE[0], event, repr(args[1:])[:200]])
        elif event == "socket.__new__":
            if len(args) > 1 and args[1] in INET:
                EVENTS.append([PHASE[0], event, repr(args[1:])[:200]])
        elif event in LOOKUPS:
            EVENTS.append([PHASE[0], event, repr(args)[:200]])

    sys.addaudithook(hook)

    def inet_fds():
        """INET sockets this process holds open right now (native code included)."""
        inodes = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        found = []
        for table in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
            try:
                rows = Path(f"/proc/self/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            found += [f"{table} {r.split()[1]} -> {r.split()[2]}" for r in rows if r.split()[9] in inodes]
        return found

    DONE = []

    def phase(name):
        OPEN_SOCKETS.extend(f"{PHASE[0]}: {s}" for s in inet_fds())
        DONE.append(PHASE[0])
        PHASE[0] = name

    def wait(app, cond, timeout=600):  # generous: a busy 2-core PC loads models slowly
        end = time.time() + timeout
        while not cond():
            app.processEvents()
            if time.time() > end:
                raise TimeoutError(PHASE[0])
            time.sleep(0.01)

    # ---- the app starts and classifies (driving the main window as a user would) ----
    from PySide6.QtWidgets import QApplication
    app = QApplication([sys.argv[0]])
    from lesion_desktop.qt.main_window import MainWindow
    from lesion_desktop.settings import Settings
    phase("gui start")
    w = MainWindow(Settings(models_dir=cfg["models"], device="cpu"))
    w.show()
    wait(app, lambda: w.idle and w.engine is not None)
    phase("gui classify")
    shown = []
    w.result_shown.connect(shown.append)
    w.open_path(Path(cfg["image"]))
    wait(app, lambda: shown and w.idle)
    phase("pdf report")
    assert w.export_pdf(Path(cfg["pdf"])) == Path(cfg["pdf"])
    w.close()
    app.processEvents()

    # ---- the real entry point: --open, classify, quit ----
    phase("run_gui --open --quit-after-result")
    from lesion_desktop.qt.app import run_gui
    code = run_gui(["lesion-desktop", "--open", cfg["image"], "--models", cfg["models"], "--quit-after-result"])
    assert code == 0, code

    # ---- the command line ----
    phase("cli classify")
    from lesion_desktop.cli import main
    assert main(["classify", cfg["image"], "-o", cfg["csv"], "--models", cfg["models"], "--device", "cpu"]) == 0

    # ---- retraining with ImageNet weights from the torch cache, installing, loading the result ----
    phase("retrain")
    from lesion_desktop.inference import open_engine
    from lesion_desktop.paths import model_store_dir
    from lesion_desktop.store import ModelStore
    from training.pipeline import RetrainConfig, install_candidate, retrain
    rc = RetrainConfig(data=cfg["data"], architectures=["mobilenet_v2"], work_dir=cfg["work"], epochs_head=1,
                       epochs_top=0, epochs_all=1, input_size=(48, 64), imagenet="auto", batch_size=8,
                       max_batches=2, device="cpu")
    result = retrain(rc, None, active_dir=Path(cfg["models"]))
    install_candidate(result, ModelStore(model_store_dir()), override=True)  # a 2-batch model is not better
    engine, notes = open_engine(device="cpu")
    assert [m.architecture for m in engine.ensemble.members] == ["mobilenet_v2"], engine.members

    # ---- control: the hook does see network use ----
    phase("control")
    try:
        socket.getaddrinfo("localhost", 80)
    except OSError:
        pass
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", 9))
    except OSError:
        pass
    s.close()
    phase("end")
    Path(cfg["out"]).write_text(json.dumps({"events": EVENTS, "open_sockets": OPEN_SOCKETS, "done": DONE}))
''')


def test_no_network_while_starting_classifying_reporting_and_retraining(tmp_path):
    require_data(FULLRES)
    models = make_tiny_ensemble(tmp_path / "models")
    data = make_class_folders(tmp_path / "clinic-data", per_class=8)
    torch_home = tmp_path / "torch"
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    src = WEIGHTS_DIR / "mobilenet_v2-b0353104.pth"
    assert src.is_file(), f"missing ImageNet weights {src}"
    (torch_home / "hub" / "checkpoints" / src.name).symlink_to(src)
    cfg = {"models": str(models), "image": str(sorted((FULLRES / "images").glob("*.jpg"))[0]),
           "pdf": str(tmp_path / "report.pdf"), "csv": str(tmp_path / "preds.csv"), "data": str(data),
           "work": str(tmp_path / "work"), "out": str(tmp_path / "audit.json")}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen", "TORCH_HOME": str(torch_home),
           "OMP_NUM_THREADS": "1", "no_proxy": "", "NO_PROXY": ""}
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "cfg.json")], env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    audit = json.loads((tmp_path / "audit.json").read_text())
    assert audit["done"] == ["start", "gui start", "gui classify", "pdf report", "run_gui --open --quit-after-result",
                             "cli classify", "retrain", "control"]
    assert Path(cfg["pdf"]).read_bytes().startswith(b"%PDF") and Path(cfg["csv"]).is_file()
    used = [e for e in audit["events"] if e[0] != "control"]
    assert used == [], f"network use: {used}"
    assert not [s for s in audit["open_sockets"] if not s.startswith("control")], audit["open_sockets"]
    control = {e[1] for e in audit["events"] if e[0] == "control"}
    assert {"socket.getaddrinfo", "socket.__new__", "socket.connect"} <= control, "the audit hook saw nothing"
