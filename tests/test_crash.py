"""A process killed (SIGKILL) mid-training or mid-installation leaves working models and can resume."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lesion_desktop.bundle import load_bundle, load_ensemble
from lesion_desktop.store import ModelStore
from tests.helpers import REPO, make_tiny_ensemble
from tests.training_data import make_ham_subset

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _train_command(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "training", "train", str(data), "-a", "baseline_cnn", "-o", str(out),
            "--input-size", "96x128", "--imagenet", "none", "--epochs-head", "1", "--epochs-top", "1",
            "--epochs-all", "6", "--patience", "99", "--batch-size", "4"]


def _history(checkpoint: Path) -> list[dict[str, object]]:
    import torch

    return list(torch.load(checkpoint, map_location="cpu", weights_only=True)["state"]["history"])


def test_training_killed_then_resumed_continues_where_it_stopped(tmp_path):
    """SIGKILL after the second epoch's checkpoint; the rerun must continue, not start again.

    Continuing: the killed run's epoch records (their measured seconds included) are kept, not redone; the
    rerun trains only the epochs that were left; and it ends with the model an uninterrupted run makes (the
    weights, optimiser, schedule, random state and batch order all come back from the checkpoint).
    """
    from safetensors.torch import load_file

    data = make_ham_subset(tmp_path / "data", per_class=10)
    reference = subprocess.run(_train_command(data, tmp_path / "uninterrupted"), env=_env(), capture_output=True,
                               text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr[-2000:]

    out = tmp_path / "run"
    ckpt = out / "checkpoint.pt"
    proc = subprocess.Popen(_train_command(data, out), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    first = ckpt.stat().st_mtime_ns
    while ckpt.stat().st_mtime_ns == first and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "training finished before it could be killed; make the run longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "bundle").exists()
    before = _history(ckpt)
    done = len(before)
    assert 2 <= done < 8, done

    rerun = subprocess.run(_train_command(data, out), env=_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    training = load_bundle(out / "bundle").manifest["training"]
    history = training["history"]
    assert [h["global_epoch"] for h in history] == list(range(1, 9))
    assert history[:done] == before, "the epochs done before the kill were trained again"
    assert [r["epochs"] for r in training["runs"]] == [done, 8 - done]

    expected = load_bundle(tmp_path / "uninterrupted" / "bundle").manifest["training"]["history"]
    assert [h["loss"] for h in history] == pytest.approx([h["loss"] for h in expected], rel=1e-6)
    resumed = load_file(str(out / "bundle" / "weights.safetensors"))
    uninterrupted = load_file(str(tmp_path / "uninterrupted" / "bundle" / "weights.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    for key, value in resumed.items():
        assert (value.float() - uninterrupted[key].float()).abs().max().item() <= 1e-6, key


# A helper process imports everything once, then forks one child per kill: the child installs and, through an
# audit hook, stops itself (SIGSTOP) just before its k-th change to the file system, where the test SIGKILLs it.
# Fork keeps each kill cheap (no 2-5 s torch import per kill); POSIX only.
INSTALL_HELPER = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    from lesion_desktop.store import ModelStore

    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    CHANGES = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.utime", "os.chmod", "os.truncate",
               "shutil.rmtree", "shutil.move"}

    def changes_disk(event, args):
        if event == "open":
            mode, flags = args[1], args[2]
            return (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(flags & WRITE_FLAGS)
        return event in CHANGES

    def say(*words):
        print(*words, flush=True)

    def stop_before(k):
        count = 0
        def hook(event, args):
            nonlocal count
            if changes_disk(event, args):
                count += 1
                say("change", count, event, str(args[0]) if args else "")
                if count == k:
                    say("stopped", os.getpid())
                    os.kill(os.getpid(), signal.SIGSTOP)  # the test kills this process here
        sys.addaudithook(hook)

    def child(command, root, candidates):
        if command == "stop":
            k, candidates = int(candidates[0]), candidates[1:]
            stop_before(k)
            ModelStore(Path(root)).install(Path(candidates[0]))
            say("completed")
        else:  # "loop": install the candidates in turn until killed
            say("looping", os.getpid())
            for i in range(10**9):
                ModelStore(Path(root)).install(Path(candidates[i % len(candidates)]))

    scratch, *warm = sys.argv[1:]
    for c in warm:  # every import and first-call cost is paid here, before any kill
        ModelStore(Path(scratch)).install(Path(c))
    started = time.perf_counter()
    for c in warm:
        ModelStore(Path(scratch)).install(Path(c))
    say("ready", (time.perf_counter() - started) / len(warm))
    for line in sys.stdin:
        command, root, *candidates = line.split()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            try:
                child(command, root, candidates)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        say("reaped")
""")


class InstallHelper:
    def __init__(self, scratch: Path, *warm: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", INSTALL_HELPER, str(scratch), *map(str, warm)],
                                     env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        words = self.line().split()
        assert words[0] == "ready", words
        self.install_seconds = float(words[1])

    def line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"the install helper died (exit code {self.proc.wait()})"
        return line.strip()

    def send(self, *words: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(map(str, words)) + "\n")
        self.proc.stdin.flush()

    def stop_before_change(self, k: int, root: Path, candidate: Path) -> list[str] | None:
        """Install, SIGKILLed just before its k-th change to the disk: the changes made (None: it finished)."""
        self.send("stop", root, k, candidate)
        changes: list[str] = []
        while not (line := self.line()).startswith(("stopped", "completed")):
            changes.append(line.split(" ", 2)[2])
        if line.startswith("stopped"):
            os.kill(int(line.split()[1]), signal.SIGKILL)
        assert self.line() == "reaped"
        return changes[:-1] if line.startswith("stopped") else None

    def kill_after(self, seconds: float, root: Path, *candidates: Path) -> None:
        """Install the candidates in turn, SIGKILLed after `seconds`."""
        self.send("loop", root, *candidates)
        line = self.line()
        assert line.startswith("looping"), line
        time.sleep(seconds)
        os.kill(int(line.split()[1]), signal.SIGKILL)
        assert self.line() == "reaped"

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _tree(folder: Path) -> dict[str, object]:
    """Every file's digest; of the top manifest only its members (the store adds an installation record)."""
    tree: dict[str, object] = {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                               for p in sorted(folder.rglob("*")) if p.is_file()}
    tree["manifest.json"] = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["members"]
    return tree


def _check_store(root: Path, expected: Path, why: str) -> None:
    """The pointer parses and names a complete, loadable copy of `expected`; nothing else is active."""
    ptr = json.loads((root / "active.json").read_text(encoding="utf-8"))
    active = ModelStore(root).active()
    assert active is not None and ptr["active"] == active.name, why
    assert _tree(active) == _tree(expected), f"{why}: the active folder is not a complete copy of {expected.name}"
    load_ensemble(active)  # manifests, sha256 of every weights file, shapes


def _check_recovers(root: Path, candidate: Path) -> None:
    """After the crash the next installation works and leaves only the active and the previous copies."""
    store = ModelStore(root)
    installed = store.install(candidate)
    names = {d.name for d in store.ensembles.iterdir()}
    assert names == {n for n in store.pointer_names() if n}, names
    assert store.active() == installed and _tree(installed) == _tree(candidate)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills forked installers (POSIX)")
def test_installation_killed_before_each_change_to_the_disk_leaves_working_models(tmp_path):
    """SIGKILL before every file created, written, renamed or removed by one installation (with pruning)."""
    a = make_tiny_ensemble(tmp_path / "a")
    b = make_tiny_ensemble(tmp_path / "b", members=3)
    snapshot = tmp_path / "snapshot"
    ModelStore(snapshot).install(a)
    ModelStore(snapshot).install(b)  # b active, a previous: installing a again prunes the old a
    helper = InstallHelper(tmp_path / "scratch", a, b)
    root = tmp_path / "store"
    pointer_renamed_at = None
    try:
        for k in range(1, 500):
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(snapshot, root)
            changes = helper.stop_before_change(k, root, a)
            if changes is None:
                break
            switched = any(c.startswith("os.rename") and c.endswith("active.json.tmp") for c in changes)
            if switched and pointer_renamed_at is None:
                pointer_renamed_at = k
            why = f"killed before change {k} (after {changes[-1:] or 'none'})"
            _check_store(root, a if switched else b, why)
            _check_recovers(root, a if k % 2 else b)
    finally:
        helper.close()
    print(f"killed before each of {k - 1} changes; the pointer switched at change {pointer_renamed_at}")
    # a tiny ensemble's install makes about 40 changes: copies, the pointer, pruning the old copy
    assert k > 30 and pointer_renamed_at is not None and 10 < pointer_renamed_at < k, (k, pointer_renamed_at)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills forked installers (POSIX)")
def test_installation_killed_at_random_moments_leaves_working_models(tmp_path):
    """SIGKILL at moments spread over a few installations' measured duration (mid-write included)."""
    a = make_tiny_ensemble(tmp_path / "a")
    b = make_tiny_ensemble(tmp_path / "b", members=3)
    root = tmp_path / "store"
    ModelStore(root).install(a)
    helper = InstallHelper(tmp_path / "scratch", a, b)
    rng = random.Random(0)
    try:
        for _ in range(12):
            helper.kill_after(rng.uniform(0, 4 * helper.install_seconds), root, b, a)
            active = ModelStore(root).active()
            assert active is not None
            _check_store(root, a if _tree(active) == _tree(a) else b, "killed at a random moment")
    finally:
        helper.close()
    _check_recovers(root, a)


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
