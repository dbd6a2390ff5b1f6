"""The ONNX export in a child process (the window's retrain): graphs written, failures reported, cancel stops it."""

from __future__ import annotations

import pytest

from lesion_desktop.errors import CancelledError
from lesion_desktop.inference.export import export_members_isolated
from lesion_desktop.manifest import onnx_graph, validate_member
from tests.helpers import make_tiny_bundle


def test_graphs_are_written_and_a_failure_is_reported_not_raised(tmp_path):
    good = make_tiny_bundle(tmp_path / "good")
    bad = make_tiny_bundle(tmp_path / "bad", seed=1)
    (bad / "weights.safetensors").write_bytes(b"not the weights the manifest names")
    failures = export_members_isolated([good, bad])
    assert onnx_graph(validate_member(good)) is not None  # verified against the weights' sha256
    assert set(failures) == {str(bad)} and "BundleError" in failures[str(bad)]  # the reason, for the log
    assert not (bad / "onnx.json").exists()


def test_cancel_stops_the_child_and_raises(tmp_path):
    folder = make_tiny_bundle(tmp_path / "m")
    with pytest.raises(CancelledError):
        export_members_isolated([folder], cancelled=lambda: True)
    assert not (folder / "onnx.json").exists()
    assert not list(folder.glob("*.part-*"))
