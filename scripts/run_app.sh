#!/usr/bin/env bash
# Install (first time) and start the desktop app with its bundled default models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/lesion-desktop "$@"
