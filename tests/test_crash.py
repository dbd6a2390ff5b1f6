"""A process killed (SIGKILL) mid-training or mid-installation leaves working models and can resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from lesion_desktop.bundle import load_bundle, load_ensemble
from lesion_desktop.store import ModelStore
from tests.helpers import REPO, make_tiny_ensemble
from tests.training_data import make_ham_subset

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def test_training_killed_then_resumed(tmp_path):
    data = make_ham_subset(tmp_path / "data", per_class=10)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "training", "train", str(data), "-a", "baseline_cnn", "-o", str(out),
           "--input-size", "96x128", "--imagenet", "none", "--epochs-head", "1", "--epochs-top", "1",
           "--epochs-all", "6", "--patience", "99", "--batch-size", "4"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, "training finished before it could be killed; make the run longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "bundle").exists()
    import torch

    done_before = len(torch.load(ckpt, weights_only=True)["state"]["history"])
    assert 1 <= done_before < 8
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    b = load_bundle(out / "bundle")
    history = b.manifest["training"]["history"]
    assert len(history) == 8 and [h["global_epoch"] for h in history] == list(range(1, 9))


INSTALL_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from lesion_desktop.store import ModelStore
    store = ModelStore(Path(sys.argv[1]))
    print("ready", flush=True)
    for i in range(1000):
        store.install(Path(sys.argv[2 + i % 2]))
""")


def test_installation_killed_at_random_moments_leaves_working_models(tmp_path):
    a = make_tiny_ensemble(tmp_path / "a")
    b = make_tiny_ensemble(tmp_path / "b", members=3)
    root = tmp_path / "store"
    ModelStore(root).install(a)
    for delay in (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.8):
        p = subprocess.Popen([sys.executable, "-c", INSTALL_SCRIPT, str(root), str(a), str(b)], env=_env(),
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        store = ModelStore(root)
        active = store.active()
        assert active is not None, f"no active models after a kill at {delay}s"
        assert len(load_ensemble(active).members) in (2, 3)
        ptr = json.loads((root / "active.json").read_text())
        assert ptr["active"] == active.name
    store.clean_partial()
    assert not [d for d in (root / "ensembles").iterdir() if d.name.startswith(".incoming")]


def test_install_refuses_broken_candidate_and_keeps_active(tmp_path):
    from lesion_desktop.errors import BundleError

    good = make_tiny_ensemble(tmp_path / "good")
    store = ModelStore(tmp_path / "store")
    installed = store.install(good)
    broken = make_tiny_ensemble(tmp_path / "broken")
    (broken / "tiny1" / "weights.safetensors").write_bytes(b"\x80\x04junk")
    with pytest.raises(BundleError, match="pickle"):
        store.install(broken)
    assert store.active() == installed
    load_ensemble(store.active())
