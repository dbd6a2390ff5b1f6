"""Every test runs with Qt offscreen and every user path (settings, data, logs, models) in a tmp folder."""

from __future__ import annotations

import os
import sys
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
def qapp(qapp: Any) -> Any:
    """pytest-qt's application, with the app's guard: cyclic garbage (widgets of earlier tests among it) is
    collected in the GUI thread only, never by a worker thread loading models (lesion_desktop.qt.gc_guard)."""
    from lesion_desktop.qt.gc_guard import install_main_thread_collector

    undo = install_main_thread_collector()
    yield qapp
    undo()


@pytest.fixture(autouse=True)
def _collect_between_tests() -> Any:
    """What the guard's timer would collect, collected after each test in this (the GUI) thread: tests that
    run no event loop would otherwise leave the collector off."""
    yield
    gc_guard = sys.modules.get("lesion_desktop.qt.gc_guard")  # never imports Qt for a test that did not
    collector = gc_guard.installed() if gc_guard is not None else None
    if collector is not None:
        collector.collect_if_due()


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
