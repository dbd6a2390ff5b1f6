#!/usr/bin/env bash
# Create .venv and install the program (and, with "test", the test tools). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
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
  || { echo "installation failed" >&2; exit 1; }
