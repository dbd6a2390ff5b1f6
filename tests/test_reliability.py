"""Reliability of the core and the CLI (issue points 1, 3 and 5): hostile images in one batch, tampered
models (including a pickle that would run code), installed models damaged after installation, and a
read-only or full models folder. The GUI side is in test_reliability_gui.py."""

from __future__ import annotations

import csv
import errno
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lesion_desktop import cli, paths
from lesion_desktop.bundle import MANIFEST, WEIGHTS, load_bundle, load_ensemble, save_bundle, sha256_file
from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.cli import CSV_COLUMNS, main
from lesion_desktop.errors import BundleError
from lesion_desktop.imageio import load_image
from lesion_desktop.inference import load_engine, open_engine
from lesion_desktop.preprocess import PreprocessConfig
from lesion_desktop.registry import BaselineCNN
from lesion_desktop.store import ModelStore
from tests.bad_images import ACCEPTED, BOMB_SIDE, NON_ASCII_NAME, REFUSED, make_bad_images
from tests.helpers import HAM, TINY_SIZE, make_tiny_ensemble, require_data

PROBS = CSV_COLUMNS[2:9]


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == CSV_COLUMNS
        return {r["path"]: r for r in reader}


def _ham(n: int, start: int = 0) -> list[Path]:
    require_data()
    return sorted((HAM / "images").glob("*.jpg"))[start : start + n]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_ensemble(tmp_path_factory.mktemp("tiny") / "ens")


# ---- 1. bad images: one CLI call, every row says what is wrong, the good ones are still classified ------


def test_cli_batch_of_every_bad_image_still_classifies_the_good_ones(tmp_path, tiny, capsys, monkeypatch):
    bad = make_bad_images(tmp_path / "bad")
    good = []
    for i, src in enumerate(_ham(3, start=40)):
        good.append(tmp_path / "good" / f"good{i}.jpg")
        good[-1].parent.mkdir(exist_ok=True)
        shutil.copy(src, good[-1])
    # a very long path: nested folders and a 200-character name, past Windows' 260-character MAX_PATH
    deep = tmp_path.joinpath(*[f"dossier_patient_{i:02d}_éè" for i in range(8)])
    deep.mkdir(parents=True)
    long_path = deep / ("lesion_" + "x" * 189 + ".jpg")
    shutil.copy(_ham(1, start=50)[0], long_path)
    assert len(str(long_path)) > 300
    victim = tmp_path / "queued" / "deleted_while_queued.jpg"
    victim.parent.mkdir()
    shutil.copy(_ham(1, start=51)[0], victim)

    listed = cli.iter_inputs

    def list_then_delete(paths_: list[str]):  # the file disappears after it was queued, before it is read
        yield from listed(paths_)
        victim.unlink()

    monkeypatch.setattr(cli, "iter_inputs", list_then_delete)
    inputs = [*bad.values(), *good, long_path, victim]
    out = tmp_path / "preds.csv"
    code = main(["classify", *map(str, inputs), "-o", str(out), "--models", str(tiny), "--device", "cpu"])
    assert code == 0
    rows = _rows(out)
    assert set(rows) == {str(p) for p in inputs}, "every input gets exactly one row"
    for name, word in REFUSED.items():
        row = rows[str(bad[name])]
        assert row["prediction"] == "" and all(row[c] == "" for c in PROBS)
        assert word in row["warnings"].lower() and name in row["warnings"], (name, row["warnings"])
    assert f"{BOMB_SIDE:,} x {BOMB_SIDE:,}" in rows[str(bad["bomb.png"])]["warnings"]
    gone = rows[str(victim)]["warnings"]
    assert "not found" in gone and "deleted" in gone and victim.name in gone

    engine = load_engine(tiny, "cpu")
    classified = [*(bad[n] for n in ACCEPTED if n != NON_ASCII_NAME), bad[NON_ASCII_NAME], *good, long_path]
    for path in classified:
        row = rows[str(path)]
        probs = np.array([float(row[c]) for c in PROBS])
        assert row["prediction"] in CLASS_CODES and abs(probs.sum() - 1) < 1e-4
        if path.exists():  # batching with bad files does not change a good image's result
            alone = engine.predict_one(load_image(path)).probabilities
            np.testing.assert_allclose(probs, alone, atol=2e-6)
    assert "too small" not in rows[str(good[0])]["warnings"]
    assert "only 64 x 48 pixels" in rows[str(bad["alpha.png"])]["warnings"]  # quality warning, still classified
    n_bad = len(REFUSED) + 1
    assert f"{len(classified)} classified, {n_bad} could not be read" in capsys.readouterr().err


def test_cli_reports_a_folder_without_images_instead_of_ignoring_it(tmp_path, tiny):
    empty = tmp_path / "scans"
    (empty / "notes").mkdir(parents=True)
    (empty / "notes" / "readme.txt").write_text("no images here")
    out = tmp_path / "p.csv"
    assert main(["classify", str(empty), "-o", str(out), "--models", str(tiny), "--device", "cpu"]) == 1
    assert "is a folder, not an image file" in _rows(out)[str(empty)]["warnings"]


# ---- 3. tampered models ------------------------------------------------------------------------------------


class PlantsMarker:
    """Unpickling this object calls os.makedirs(marker): proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _payloads(marker: Path, tmp: Path) -> dict[str, bytes]:
    """Every way a pickle could arrive: raw pickles of each protocol and PyTorch checkpoints (.pt/.pth)."""
    state = {"features.0.weight": PlantsMarker(marker)}
    out = {f"pickle-protocol-{p}": pickle.dumps(state, protocol=p) for p in range(0, pickle.HIGHEST_PROTOCOL + 1)}
    torch.save(state, tmp / "model.pth")
    out["torch.save zip (.pth renamed)"] = (tmp / "model.pth").read_bytes()
    torch.save(state, tmp / "model.pt", _use_new_zipfile_serialization=False)
    out["torch.save legacy (.pt renamed)"] = (tmp / "model.pt").read_bytes()
    return out


def _rehash(bundle: Path, weights_file: str = WEIGHTS) -> None:
    """Make the manifest agree with the tampered file, as an attacker would: only the format check is left."""
    m = json.loads((bundle / MANIFEST).read_text())
    m["weights_file"] = weights_file
    m["weights_sha256"] = sha256_file(bundle / weights_file)
    (bundle / MANIFEST).write_text(json.dumps(m))


def _reseal(ensemble: Path) -> None:
    """Recompute the members' manifest digests in the ensemble manifest, as an attacker would."""
    m = json.loads((ensemble / MANIFEST).read_text())
    for e in m["members"]:
        e["manifest_sha256"] = sha256_file(ensemble / e["path"] / MANIFEST)
    (ensemble / MANIFEST).write_text(json.dumps(m))


def test_the_malicious_pickle_really_runs_code_when_unpickled(tmp_path):
    """The check below is only meaningful if these payloads are live: unpickling them must create the marker."""
    kinds = list(_payloads(tmp_path / "unused", tmp_path))
    for i, kind in enumerate(kinds):
        marker = tmp_path / f"ran-{i}"
        payload = _payloads(marker, tmp_path)[kind]
        if kind.startswith("torch"):
            (tmp_path / "live.pt").write_bytes(payload)
            torch.load(tmp_path / "live.pt", weights_only=False)
        else:
            pickle.loads(payload)
        assert marker.is_dir(), kind
    assert not (tmp_path / "unused").exists()


def test_pickled_weights_are_refused_everywhere_and_never_run(tmp_path, tiny, capsys):
    marker = tmp_path / "PWNED"
    store = ModelStore(tmp_path / "store")
    active = store.install(tiny, name="good")
    for kind, payload in _payloads(marker, tmp_path).items():
        cand = Path(shutil.copytree(tiny, tmp_path / "cand" / kind.replace(" ", "_")))
        (cand / "tiny1" / WEIGHTS).write_bytes(payload)
        _rehash(cand / "tiny1")
        _reseal(cand)
        with pytest.raises(BundleError, match="(pickle|not a safetensors file)") as refused:
            load_bundle(cand / "tiny1")
        assert "tiny1" in str(refused.value) or WEIGHTS in str(refused.value)
        with pytest.raises(BundleError, match="(pickle|not a safetensors file)"):
            store.install(cand)
        with pytest.raises(BundleError):
            load_engine(cand, "cpu")
        assert main(["classify", str(_ham(1)[0]), "-o", str(tmp_path / "p.csv"), "--models", str(cand)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and ("pickle" in err or "not a safetensors file" in err), (kind, err)
        assert store.active() == active and len(load_ensemble(active).members) == 2
        assert not marker.exists(), f"the {kind} payload ran code"
    # the zip and protocol-2+ pickles are named for what they are
    cand = tmp_path / "cand" / "torch.save_zip_(.pth_renamed)"
    with pytest.raises(BundleError, match="pickle/PyTorch checkpoint, which can run code"):
        load_bundle(cand / "tiny1")
    # a manifest pointing at the .pth itself is refused by name, before the file is even opened
    b = Path(shutil.copytree(tiny / "tiny0", tmp_path / "pth"))
    shutil.copy(tmp_path / "model.pth", b / "weights.pth")
    _rehash(b, "weights.pth")
    with pytest.raises(BundleError, match=r"must be a \.safetensors file"):
        load_bundle(b)
    assert not marker.exists()
    assert sorted(p.name for p in (tmp_path / "store" / "ensembles").iterdir()) == ["good"]


def _tampered(tiny: Path, where: Path, kind: str) -> Path:
    ens = Path(shutil.copytree(tiny, where / kind))
    w = ens / "tiny1" / WEIGHTS
    if kind == "sha-mismatch":
        data = bytearray(w.read_bytes())
        data[-5] ^= 0x01  # one bit of one weight
        w.write_bytes(bytes(data))
    elif kind == "truncated":
        w.write_bytes(w.read_bytes()[: w.stat().st_size * 2 // 3])
    elif kind == "missing-member":
        shutil.rmtree(ens / "tiny1")
    elif kind == "missing-weights":
        w.unlink()
    elif kind == "class-count-manifest":  # a 6-class manifest, digests recomputed
        m = json.loads((ens / "tiny1" / MANIFEST).read_text())
        m["classes"] = list(CLASS_CODES[:6])
        (ens / "tiny1" / MANIFEST).write_text(json.dumps(m))
        _reseal(ens)
    elif kind == "class-count-ensemble":
        m = json.loads((ens / MANIFEST).read_text())
        m["classes"] = [*CLASS_CODES, "extra"]
        (ens / MANIFEST).write_text(json.dumps(m))
    elif kind == "class-count-weights":  # a 6-way head saved under a correct-looking manifest
        torch.manual_seed(0)
        save_bundle(BaselineCNN(num_classes=6), ens / "tiny1", architecture="baseline_cnn",
                    preprocess=PreprocessConfig(input_size=TINY_SIZE))
        _reseal(ens)
    else:
        raise AssertionError(kind)
    return ens


TAMPERING = {
    "sha-mismatch": "has been modified or damaged",
    "truncated": "truncated",
    "missing-member": "member 'tiny1' is missing",
    "missing-weights": "weights file weights.safetensors is missing",
    "class-count-manifest": "do not match this software's",
    "class-count-ensemble": "the ensemble's classes",
    "class-count-weights": r"tensor classifier\.4\.\w+ has shape \(6\b.*expected \(7\b",
}


@pytest.mark.parametrize("kind", sorted(TAMPERING))
def test_tampered_candidate_is_refused_and_the_active_models_stay(tmp_path, tiny, kind, capsys):
    store = ModelStore(tmp_path / "store")
    active = store.install(tiny, name="good")
    cand = _tampered(tiny, tmp_path, kind)
    with pytest.raises(BundleError, match=TAMPERING[kind]):
        store.install(cand)
    assert store.active() == active and store.pointer_names() == ("good", None)
    assert sorted(p.name for p in store.ensembles.iterdir()) == ["good"]
    assert main(["classify", str(_ham(1)[0]), "-o", str(tmp_path / "p.csv"), "--models", str(cand)]) == 2
    assert "error: " in capsys.readouterr().err
    # the models in use still classify
    engine, notes = open_engine(device="cpu", store=store, bundled=tmp_path / "no-default")
    assert engine.ensemble.path == active and notes == []
    assert engine.predict_one(load_image(_ham(1)[0])).probabilities.sum() == pytest.approx(1.0)


# ---- 3. installed models damaged after installation: fall back, and say so -------------------------------------


def _damage(folder: Path) -> None:
    w = folder / "tiny0" / WEIGHTS
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))


@pytest.fixture
def two_installed(tmp_path, monkeypatch):
    """A store in the (tmp) user data folder with A installed, then B (active, A previous); the bundled
    default is a third tiny ensemble."""
    default = make_tiny_ensemble(tmp_path / "default", members=1)
    monkeypatch.setattr(paths, "bundled_models_dir", lambda: default)
    store = ModelStore(paths.model_store_dir())
    a = store.install(make_tiny_ensemble(tmp_path / "a", members=2), name="A")
    b = store.install(make_tiny_ensemble(tmp_path / "b", members=3), name="B")
    assert store.pointer_names() == ("B", "A")
    return store, a, b, default


def test_damaged_active_falls_back_to_previous_then_to_the_bundled_default(two_installed):
    store, a, b, default = two_installed
    engine, notes = open_engine(device="cpu")
    assert engine.ensemble.path == b and notes == []

    _damage(b)
    engine, notes = open_engine(device="cpu")
    assert engine.ensemble.path == a and len(engine.members) == 2
    assert "installed models 'B' could not be used" in notes[0] and "modified or damaged" in notes[0]
    assert notes[-1] == "Using the previous installed models 'A' (tiny-test-ensemble) instead."
    assert store.pointer_names() == ("B", "A"), "the fallback never changes what the user installed"

    shutil.rmtree(a / "tiny1")
    engine, notes = open_engine(device="cpu")
    assert engine.ensemble.path == default
    assert "'B'" in notes[0] and "'A'" in notes[1] and "member 'tiny1' is missing" in notes[1]
    assert notes[-1].startswith("Using the bundled default models")
    assert engine.predict_one(load_image(_ham(1)[0])).probabilities.sum() == pytest.approx(1.0)

    (default / MANIFEST).write_text("{")
    with pytest.raises(BundleError, match="No usable models") as none:
        open_engine(device="cpu")
    assert all(s in str(none.value) for s in ("'B'", "'A'", "bundled default", "not valid JSON"))


def test_deleted_active_folder_and_damaged_default_after_roll_back(two_installed, tmp_path):
    store, a, b, default = two_installed
    shutil.rmtree(b)
    engine, notes = open_engine(device="cpu")
    assert engine.ensemble.path == a and "installed models 'B'" in notes[0] and "missing" in notes[0]
    # rolled back to the bundled default, which is then damaged: the installed one takes over
    other = ModelStore(tmp_path / "other-store")
    only = other.install(make_tiny_ensemble(tmp_path / "c"), name="C")
    assert other.rollback() is None and other.pointer_names() == (None, "C")
    engine, notes = open_engine(device="cpu", store=other)
    assert engine.ensemble.path == default and notes == []
    _damage(default)
    engine, notes = open_engine(device="cpu", store=other)
    assert engine.ensemble.path == only and "bundled default models could not be used" in notes[0]
    assert notes[-1] == "Using the previous installed models 'C' (tiny-test-ensemble) instead."


def test_an_explicit_models_folder_is_never_silently_replaced(two_installed, tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        open_engine(models_dir=tmp_path / "typo", device="cpu")
    from lesion_desktop.settings import Settings

    with pytest.raises(BundleError, match="does not exist"):
        open_engine(Settings(models_dir=str(tmp_path / "typo"), device="cpu"))
    engine, notes = open_engine(Settings(device="cpu", tta=True))
    assert engine.tta and engine.ensemble.path.name == "B" and notes == []


def test_cli_falls_back_and_says_so(two_installed, tmp_path, capsys):
    store, a, b, default = two_installed
    _damage(b)
    img = _ham(1)[0]
    out = tmp_path / "p.csv"
    assert main(["classify", str(img), "-o", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "note: The installed models 'B' could not be used" in err
    assert "note: Using the previous installed models 'A'" in err
    assert _rows(out)[str(img)]["prediction"] in CLASS_CODES


def test_damaged_pointer_file_is_reported_not_silently_ignored(two_installed):
    store, a, b, default = two_installed
    (store.root / "active.json").write_text('{"active": "B", "prev')  # cut short by a disk error
    engine, notes = open_engine(device="cpu")
    assert engine.ensemble.path == default
    assert "record of the installed models could not be used" in notes[0] and "active.json is damaged" in notes[0]
    assert notes[-1].startswith("Using the bundled default models")


# ---- 5. read-only or full models folder -----------------------------------------------------------------------


def _copy_then_fail(code: int, after: int):
    """A copy function that writes `after` files, then fails as a read-only or full disk would."""
    copied = {"n": 0}

    def copy(src: str, dst: str, *args, **kwargs):
        if copied["n"] >= after:
            raise OSError(code, os.strerror(code), dst)
        copied["n"] += 1
        return shutil.copy2(src, dst)

    return copy


@pytest.mark.parametrize(("code", "words"), [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only")])
@pytest.mark.parametrize("after", [0, 2])
def test_full_or_read_only_models_folder(tmp_path, tiny, monkeypatch, code, words, after):
    import lesion_desktop.store as store_module

    store = ModelStore(tmp_path / "store")
    active = store.install(tiny, name="good")
    new = make_tiny_ensemble(tmp_path / "new", members=3)
    real_copytree, failing = shutil.copytree, _copy_then_fail(code, after)

    def copytree(src, dst, *args, **kwargs):  # copytree calls itself (positionally) for sub-folders
        if args or kwargs:
            return real_copytree(src, dst, *args, **kwargs)
        return real_copytree(src, dst, copy_function=failing)

    monkeypatch.setattr(store_module.shutil, "copytree", copytree)
    with pytest.raises(BundleError) as failed:
        store.install(new, name="new")
    message = str(failed.value)
    assert words in message and str(store.root) in message and "models in use are unchanged" in message
    assert "[Errno" not in message and "('" not in message  # no raw exception text
    monkeypatch.undo()
    assert store.active() == active and store.pointer_names() == ("good", None)
    assert sorted(p.name for p in store.ensembles.iterdir()) == ["good"], "nothing half-installed is left"
    engine, _ = open_engine(device="cpu", store=store, bundled=tmp_path / "none")
    assert engine.ensemble.path == active
    assert store.install(new, name="new") == store.ensembles / "new"  # works once the disk is writable again


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_failure_writing_the_pointer_leaves_no_orphan_copy(tmp_path, tiny, monkeypatch, code):
    store = ModelStore(tmp_path / "store")
    active = store.install(tiny, name="good")

    def fail(data):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(store, "_write_pointer", fail)
    with pytest.raises(BundleError, match="models in use are unchanged"):
        store.install(make_tiny_ensemble(tmp_path / "new"), name="new")
    assert store.active() == active and sorted(p.name for p in store.ensembles.iterdir()) == ["good"]


def test_read_only_store_root_is_a_clear_error(tmp_path, tiny, monkeypatch):
    store = ModelStore(tmp_path / "store")
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self == store.ensembles:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(BundleError, match="read-only"):
        store.install(tiny)


# ---- 5. a CUDA device asked for but absent ------------------------------------------------------------------------


def test_missing_cuda_falls_back_to_cpu_and_the_cli_says_so(tmp_path, tiny, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    img = _ham(1)[0]
    out = tmp_path / "p.csv"
    assert main(["classify", str(img), "-o", str(out), "--models", str(tiny), "--device", "cuda"]) == 0
    err = capsys.readouterr().err
    assert "note: CUDA was requested but no CUDA device is available: using the CPU." in err
    assert _rows(out)[str(img)]["prediction"] in CLASS_CODES
    engine, _ = open_engine(device="cuda:1", models_dir=tiny)
    assert engine.device_type == "cpu" and "no CUDA device" in engine.device_note

