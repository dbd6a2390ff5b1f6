"""Reproducible screenshot of the main window: start the app on a real image and save the window.

    python scripts/screenshot.py [--image PATH] [--out docs/screenshot-main.png] [--models DIR]

Without a display it starts Xvfb (apt-get install -y xvfb libxcb-cursor0 libxkbcommon-x11-0 libegl1)
and uses the real xcb platform, not offscreen, so fonts and styles are what a user sees. A temporary
LESION_DESKTOP_HOME keeps the user's history, settings and window geometry out of it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# A histology-confirmed melanoma: shows the warning a benign top label must not hide.
DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "ham10000_fullres_sample" / "images" / "ISIC_0024516.jpg"


def start_xvfb(display: str = ":97", size: str = "1600x1000x24") -> subprocess.Popen[bytes]:
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        sys.exit("Xvfb is not installed: apt-get install -y xvfb libxcb-cursor0 libxkbcommon-x11-0 libegl1")
    proc = subprocess.Popen([xvfb, display, "-screen", "0", size, "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(50):
        if Path(f"/tmp/.X11-unix/X{display.lstrip(':')}").exists():
            return proc
        time.sleep(0.1)
    proc.terminate()
    sys.exit("Xvfb did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot-main.png")
    parser.add_argument("--models", type=Path, help="model folder (default: the active/bundled models)")
    parser.add_argument("--size", default="1440x900")
    args = parser.parse_args()
    env = dict(os.environ)
    xvfb = None
    if not env.get("DISPLAY"):
        xvfb = start_xvfb()
        env["DISPLAY"] = ":97"
    env["QT_QPA_PLATFORM"] = "xcb"
    with tempfile.TemporaryDirectory(prefix="lesion-screenshot-") as home:
        env["LESION_DESKTOP_HOME"] = home
        cmd = [sys.executable, "-m", "lesion_desktop", "--open", str(args.image), "--screenshot", str(args.out),
               "--quit-after-result", "--size", args.size]
        if args.models:
            cmd += ["--models", str(args.models)]
        try:
            code = subprocess.run(cmd, cwd=REPO, env=env, timeout=300).returncode
        finally:
            if xvfb is not None:
                xvfb.terminate()
                xvfb.wait(10)
    if code == 0:
        print(f"saved {args.out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
