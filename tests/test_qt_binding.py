"""The Qt binding installed with the app must not corrupt Python's reference counts: PySide6 6.12.0 dropped a
reference to None on every call that returns nothing, and on Python 3.11 the app died after a few thousand."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = (
    "import sys\n"
    "from PySide6.QtWidgets import QApplication, QLabel\n"
    "app = QApplication([])\n"
    "label = QLabel()\n"
    "before = sys.getrefcount(None)\n"
    "for _ in range(50_000):\n"
    "    label.setText('x')\n"
    "print(sys.getrefcount(None) - before)\n"
)


def test_fifty_thousand_qt_calls_leave_none_alone():
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-500:]
    assert abs(int(r.stdout.split()[-1])) < 1000
