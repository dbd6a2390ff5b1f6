"""Where things live: user data and settings in the platform's folders, never next to the code.

`LESION_DESKTOP_HOME` moves every user path under one folder (tests point it at a temporary one).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

APP_NAME = "LesionDesktop"


def _home_override() -> Path | None:
    v = os.environ.get("LESION_DESKTOP_HOME")
    return Path(v) if v else None


def config_dir() -> Path:
    home = _home_override()
    if home is not None:
        return home / "config"
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME, appauthor=False))


def data_dir() -> Path:
    home = _home_override()
    if home is not None:
        return home / "data"
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False))


def model_store_dir() -> Path:
    """Installed (retrained) ensembles, with the previous one kept for roll-back."""
    return data_dir() / "models"


def bundled_models_dir() -> Path:
    """The default ensemble shipped with the program (works frozen: collected under its package path)."""
    return Path(str(resources.files("lesion_desktop.resources") / "models" / "default"))


def active_models_dir() -> Path:
    """The ensemble in use: the installed one if a retrain was installed, else the bundled default."""
    from lesion_desktop.store import ModelStore

    active = ModelStore(model_store_dir()).active()
    return active if active is not None else bundled_models_dir()
