from __future__ import annotations

import json
import logging
from dataclasses import fields

import pytest

from lesion_desktop.paths import config_dir
from lesion_desktop.settings import Settings, load_settings, save_settings, settings_path, updated


def test_defaults_when_no_file():
    assert not settings_path().exists()
    assert load_settings() == Settings()


def test_round_trip_is_readable_json_in_config_dir():
    s = Settings(device="cpu", tta=True, warning_threshold=0.42, camera_index=2, camera_resolution=(640, 480),
                 models_dir="/somewhere", show_heatmap=False)
    path = save_settings(s)
    assert path.parent == config_dir()
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["warning_threshold"] == 0.42 and data["camera_resolution"] == [640, 480]
    assert load_settings() == s
    # saving again keeps the previous version beside it
    save_settings(updated(s, tta=False))
    assert load_settings().tta is False
    assert json.loads(path.with_name(path.name + ".bak").read_text())["tta"] is True
    assert not path.with_name(path.name + ".tmp").exists()


def test_corrupt_file_falls_back_to_defaults_and_keeps_a_copy(caplog):
    p = settings_path()
    p.parent.mkdir(parents=True)
    p.write_bytes(b'{"device": "cpu", "tta": tru')
    with caplog.at_level(logging.WARNING):
        assert load_settings() == Settings()
    assert "unreadable" in caplog.text
    assert p.with_name("settings.json.bad").read_bytes() == p.read_bytes()


def test_invalid_values_fall_back_individually(caplog):
    p = settings_path()
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps({"device": "tpu", "tta": "yes", "warning_threshold": 7, "camera_index": 1,
                             "camera_resolution": [1, "x"], "colour": "blue", "show_heatmap": False}))
    with caplog.at_level(logging.WARNING):
        s = load_settings()
    assert s == Settings(camera_index=1, show_heatmap=False)
    for name in ("device", "tta", "warning_threshold", "camera_resolution", "colour"):
        assert name in caplog.text


def test_non_object_json_gives_defaults():
    p = settings_path()
    p.parent.mkdir(parents=True)
    p.write_text("[1, 2]")
    assert load_settings() == Settings()


def test_updated_validates():
    with pytest.raises(ValueError):
        updated(Settings(), warning_threshold=1.5)
    with pytest.raises(ValueError):
        updated(Settings(), nonsense=1)
    assert updated(Settings(), device="cuda:1").device == "cuda:1"


def test_every_field_has_form_metadata():
    for f in fields(Settings):
        assert f.metadata["label"], f.name
        assert f.metadata["group"], f.name
