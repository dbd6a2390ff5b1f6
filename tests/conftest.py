"""Every test runs with Qt offscreen and every user path (settings, data, logs, models) in a tmp folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("LESION_DESKTOP_HOME", str(home))
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    return home


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fast untrained 2-member ensemble (48x64 inputs) for GUI tests."""
    from tests.helpers import make_tiny_ensemble

    return make_tiny_ensemble(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture
def make_window(qtbot: Any, tiny_models: Path) -> Callable[..., Any]:
    """Build a MainWindow (tiny models unless settings say otherwise), wait for its models; closed at teardown."""
    from lesion_desktop.qt.main_window import MainWindow
    from lesion_desktop.settings import Settings

    def make(settings: Settings | None = None, **kwargs: Any) -> MainWindow:
        s = settings if settings is not None else Settings(models_dir=str(tiny_models), device="cpu")
        kwargs.setdefault("camera_retry_s", 0.05)
        window = MainWindow(s, **kwargs)
        qtbot.addWidget(window)
        qtbot.waitUntil(lambda: window.idle, timeout=300000)
        return window

    return make
