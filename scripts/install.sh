#!/usr/bin/env bash
# Create .venv and install the program (and, with "test", the test tools). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
# torch's CUDA build and its libraries need about 6.5 GB; a full disk shows up later only as a broken import
free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
if [ -n "$free_kb" ] && [ "$free_kb" -lt 7000000 ] && [ ! -x .venv/bin/python ]; then
  echo "warning: only $((free_kb / 1024)) MB free here; the installation needs about 6.5 GB" >&2
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "^WARNING: Location" || true
if [ "$extra" = "test" ]; then
  python -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
else
  python -m pip install -q --disable-pip-version-check -e . 2>&1 | grep -v "^WARNING: Location" || true
fi
python -c "import torch, torchvision, PySide6, cv2, timm, lesion_desktop, training" \
  || { echo "installation failed (see pip's messages above; df -h . shows the free disk space)" >&2; exit 1; }
