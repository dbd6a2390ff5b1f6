"""Retraining for a clinic (issue 16): members start from the active models, original images are mixed in only
from those the active models were trained on, the original data's unseen images give a second comparison, and
small classes get a sentence instead of a recall. Tiny models and a few real HAM10000 images: seconds each."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from lesion_desktop.bundle import load_bundle, load_ensemble, save_bundle, save_ensemble
from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.errors import LesionError
from lesion_desktop.manifest import validate_member
from lesion_desktop.preprocess import PreprocessConfig
from lesion_desktop.registry import build_model
from lesion_desktop.store import ModelStore
from tests.helpers import HAM, make_tiny_bundle
from tests.training_data import ham_rows, make_ham_subset, write_ham_folder
from training.cli import build_parser, recall_table
from training.comparison import MIN_VALIDATION_LESIONS, compare_on_unseen, install_verdict
from training.data import read_dataset
from training.mixing import draw_mix, prepare_retrain_data, reference_images
from training.pipeline import RetrainConfig, RetrainResult, install_candidate, member_config, member_start, retrain
from training.splits import load_split
from training.trainer import predict_probs, setup

ARCH = "baseline_cnn"


def _original_data(folder: Path, avoid: set[str], lesions_per_class: int = 6) -> tuple[Path, set[str]]:
    """A HAM10000-layout stand-in for the original training data (lesions with two images each where HAM has
    them, none of `avoid`'s images), and the ids of the half of its lesions 'the active models trained on'."""
    by_lesion: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in ham_rows():
        by_lesion[r["lesion_id"]].append(r)
    rows: list[dict[str, str]] = []
    trained: set[str] = set()
    for code in CLASS_CODES:
        lesions = sorted(lid for lid, rs in by_lesion.items() if rs[0]["dx"] == code
                         and not {r["image_id"] for r in rs} & avoid)
        lesions.sort(key=lambda lid: -min(len(by_lesion[lid]), 2))  # repeat photos first: lesion-awareness shows
        for k, lid in enumerate(lesions[:lesions_per_class]):
            chosen = by_lesion[lid][:2]
            rows += chosen
            if k % 2 == 0:
                trained |= {r["image_id"] for r in chosen}
    return write_ham_folder(folder, rows), trained


def _active(folder: Path, trained: set[str], arch: str = ARCH) -> Path:
    """A tiny active ensemble of two members whose manifest records the images it was trained on."""
    for i in range(2):
        if arch == ARCH:
            make_tiny_bundle(folder / f"m{i}", seed=10 + i)
        else:
            torch.manual_seed(i)
            save_bundle(build_model(arch), folder / f"m{i}", architecture=arch,
                        preprocess=PreprocessConfig(input_size=(48, 64)))
    return save_ensemble(folder, [("m0", 0.5), ("m1", 0.5)], name="tiny-active",
                         training={"trained_image_ids": sorted(trained)})


def _cfg(data: Path, work: Path, **kw) -> RetrainConfig:
    base = dict(data=str(data), architectures=[ARCH], work_dir=str(work), epochs_head=1, epochs_top=1,
                epochs_all=1, input_size=(48, 64), imagenet="none", batch_size=8, max_batches=1,
                export_onnx=False, fit_scope=False)
    base.update(kw)
    return RetrainConfig(**base)


@pytest.fixture
def clinic_and_original(tmp_path: Path) -> tuple[Path, Path, set[str], Path]:
    clinic = make_ham_subset(tmp_path / "clinic", per_class=8)
    clinic_ids = {p.stem for p in (clinic / "images").iterdir()}
    original, trained = _original_data(tmp_path / "original", clinic_ids)
    return clinic, original, trained, _active(tmp_path / "active", trained)


def test_init_active_starts_from_the_active_member_before_any_step(tmp_path, clinic_and_original):
    """The fine-tuned network's first logits are the active member's: not ImageNet's, not random numbers."""
    clinic, _, _, active = clinic_and_original
    cfg = _cfg(clinic, tmp_path / "work")
    data = prepare_retrain_data(cfg.data, tmp_path / "work", seed=0)
    start = member_start(cfg, ARCH, active, [])
    assert start.init == "active" and Path(str(start.init_from)) == active / "m0"
    tc = member_config(cfg, ARCH, start, data, tmp_path / "work")
    run = setup(tc, None, time.time())
    member = load_bundle(active / "m0")
    images = run.data.images(run.data.val)[:6]
    logits, _ = predict_probs(run.model, images, run.data.preprocess, torch.device("cpu"))
    expected, _ = predict_probs(member.model, images, member.preprocess, torch.device("cpu"))
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)
    other, _ = predict_probs(load_bundle(active / "m1").model, images, member.preprocess, torch.device("cpu"))
    assert np.abs(logits - other).max() > 1e-3  # the check can tell two networks apart
    # its preprocessing and schedule: the member's own, no new-head phase, a tenth of the rates
    assert run.data.preprocess == member.preprocess
    assert [(p.name, p.lr) for p in run.phases] == [("top", pytest.approx(3e-5)), ("all", pytest.approx(1e-5))]


def test_candidate_records_where_it_started_and_what_it_saw(tmp_path, clinic_and_original):
    clinic, _, trained, active = clinic_and_original
    res = retrain(_cfg(clinic, tmp_path / "work"), active_dir=active)
    ens = load_ensemble(res.ensemble_dir)
    member = ens.members[0].manifest["training"]
    start = member["initialised_from"]
    assert start["init"] == "model" and start["ensemble"] == "tiny-active" and start["member"] == "m0"
    assert start["weights_sha256"] == validate_member(active / "m0").weights_sha256
    assert ens.manifest["training"]["init"] == "active"
    assert ens.manifest["training"]["initialised_from"][ARCH] == {
        "init": "active", "from": str(active / "m0"), "ensemble": "tiny-active", "member": "m0",
        "weights_sha256": start["weights_sha256"]}
    # what the active models saw, the candidate saw too (it started from them)
    split = load_split(tmp_path / "work" / "split.json")
    assert set(member["trained_image_ids"]) == trained | set(split["train"])
    assert res.reference is None and res.comparison is not None


def test_without_the_architecture_active_falls_back_to_imagenet_logged_and_recorded(tmp_path, caplog):
    clinic = make_ham_subset(tmp_path / "clinic", per_class=8)
    active = _active(tmp_path / "active", set(), arch="mobilenet_v2")
    with caplog.at_level(logging.WARNING, logger="training.pipeline"):
        res = retrain(_cfg(clinic, tmp_path / "work"), active_dir=active)
    assert any("does not start from the active models" in r.getMessage() for r in caplog.records)
    record = load_ensemble(res.ensemble_dir).manifest["training"]["initialised_from"][ARCH]
    assert record["init"] == "imagenet" and "no baseline_cnn member" in record["fallback_from_active"]
    # baseline_cnn has no ImageNet weights, so the member truly started from random numbers, and says so
    assert load_ensemble(res.ensemble_dir).members[0].manifest["training"]["initialised_from"] == {"init": "random"}
    assert any("started from ImageNet weights, not from the active models" in n for n in res.notes)
    assert "started from ImageNet weights" in res.verdict.summary


def test_init_imagenet_and_random_ignore_the_active_models(tmp_path, clinic_and_original):
    clinic, _, _, active = clinic_and_original
    for init in ("imagenet", "random"):
        start = member_start(_cfg(clinic, tmp_path, init=init), ARCH, active, [])
        assert start.init == init and start.init_from is None
    with pytest.raises(LesionError, match="init must be one of"):
        retrain(_cfg(clinic, tmp_path / "w", init="pretrained"), active_dir=active)


def test_mixed_in_images_come_only_from_the_active_models_training_images(tmp_path, clinic_and_original):
    clinic, original, trained, active = clinic_and_original
    data = prepare_retrain_data(str(clinic), tmp_path / "w", mix_data=str(original), mix_ratio=0.25,
                                allowed=trained)
    split = load_split(data.split_file)
    clinic_train = [i for i in split["train"] if i not in set(data.mixed_ids)]
    assert len(data.mixed_ids) == round(0.25 * len(clinic_train)) > 0
    assert set(data.mixed_ids) <= trained
    assert set(data.mixed_ids) <= set(split["train"]) and not set(data.mixed_ids) & set(split["val"] + split["test"])
    # the folder the members read holds the clinic's images and the mixed ones, from where they lie
    combined = read_dataset(data.data_dir)
    assert {r.image_id for r in combined.records} == {r.image_id for r in data.clinic.records} | set(data.mixed_ids)
    # asking for more than there are: all of them, and a sentence says so
    more = prepare_retrain_data(str(clinic), tmp_path / "w2", mix_data=str(original), mix_ratio=50, allowed=trained)
    assert set(more.mixed_ids) == trained and "could be mixed in" in more.notes[0]


def test_draw_mix_avoids_the_clinics_images_and_lesions(tmp_path):
    clinic = make_ham_subset(tmp_path / "clinic", per_class=6)
    mix = read_dataset(HAM)
    clinic_ds = read_dataset(clinic)
    allowed = {r.image_id for r in mix.records[:3000]}
    drawn = draw_mix(mix, 500, allowed, clinic_ds, seed=3)
    lesion_of = {r.image_id: r.lesion_id for r in mix.records}
    assert len(drawn) == 500 and set(drawn) <= allowed
    assert not {lesion_of[i] for i in drawn} & {r.lesion_id for r in clinic_ds.records}
    assert drawn == draw_mix(mix, 500, allowed, clinic_ds, seed=3)  # seeded


def test_reference_images_leave_out_every_lesion_either_model_saw():
    mix = read_dataset(HAM)
    by_lesion: dict[str, list[str]] = defaultdict(list)
    for r in mix.records:
        by_lesion[r.lesion_id].append(r.image_id)
    repeated = [lid for lid, ids in by_lesion.items() if len(ids) >= 2][:50]
    seen = {by_lesion[lid][0] for lid in repeated}  # one photo of each: the lesion's others are not new either
    clinic = mix.subset([by_lesion[lid][0] for lid in list(by_lesion)[-20:]])
    ids, left_out = reference_images(mix, seen, clinic, limit=100_000)
    lesions = {r.lesion_id for r in mix.records if r.image_id in set(ids)}
    assert not lesions & set(repeated) and not lesions & {r.lesion_id for r in clinic.records}
    assert len(ids) + left_out == len(mix.records) and len(ids) > 9000
    capped, _ = reference_images(mix, seen, clinic, limit=500, seed=1)
    assert 450 < len(capped) <= 500
    capped_lesions = {r.lesion_id for r in mix.records if r.image_id in set(capped)}
    assert len(capped) == sum(len(by_lesion[lid]) for lid in capped_lesions)  # whole lesions


def test_retrain_with_original_data_compares_on_original_images_neither_saw(tmp_path, clinic_and_original):
    clinic, original, trained, active = clinic_and_original
    res = retrain(_cfg(clinic, tmp_path / "work", mix_data=str(original), mix_ratio=0.5), active_dir=active)
    split = load_split(tmp_path / "work" / "split.json")
    mixed = set(split["train"]) - {r.image_id for r in read_dataset(clinic).records}
    assert mixed and mixed <= trained
    ref = res.reference
    assert ref is not None and ref.candidate is not None
    compared = load_split(tmp_path / "work" / "reference-split.json")["val"]
    original_ds = read_dataset(original)
    lesion_of = {r.image_id: r.lesion_id for r in original_ds.records}
    seen_lesions = {lesion_of[i] for i in trained}
    assert compared and not {lesion_of[i] for i in compared} & seen_lesions
    assert ref.n_images == len(compared) == len(original_ds.records) - len(trained)
    assert ref.n_excluded == len(trained)
    # the verdict says what the original images show
    assert f"Images of the original training data: Only {ref.n_images} validation images" in res.verdict.summary
    assert load_ensemble(res.ensemble_dir).manifest["training"]["mixed_images"] == len(mixed)


def test_mix_ratio_zero_compares_on_original_images_without_mixing(tmp_path, clinic_and_original):
    clinic, original, _, active = clinic_and_original
    res = retrain(_cfg(clinic, tmp_path / "work", mix_data=str(original), mix_ratio=0), active_dir=active)
    split = load_split(tmp_path / "work" / "split.json")
    assert set(split["train"]) <= {r.image_id for r in read_dataset(clinic).records}
    assert res.reference is not None and res.reference.n_images > 0


def _one_hot(pred: np.ndarray) -> np.ndarray:
    p = np.full((len(pred), len(CLASS_CODES)), 0.1 / (len(CLASS_CODES) - 1))
    p[np.arange(len(pred)), pred] = 0.9
    return p


def _validation(lesions: dict[str, int]) -> tuple[np.ndarray, list[str], list[str]]:
    labels, groups = [], []
    for code, n in lesions.items():
        for k in range(n):
            labels += [CLASS_CODES.index(code)] * 3
            groups += [f"{code}-{k}"] * 3
    return np.array(labels), groups, [f"I{i}" for i in range(len(labels))]


def test_a_class_with_too_few_lesions_gets_a_sentence_not_a_recall():
    counts = {"akiec": 8, "bcc": 8, "bkl": 8, "df": 2, "mel": 12, "nv": 20, "vasc": 0}
    labels, groups, ids = _validation(counts)
    rng = np.random.default_rng(0)
    active = _one_hot(np.where(rng.random(len(labels)) < 0.7, labels, 5))
    candidate = _one_hot(labels)
    c = compare_on_unseen(active, candidate, labels, groups, ids, set())
    assert c.few_lesions == {"df": 2, "vasc": 0} and not c.problem
    assert c.candidate is not None and c.candidate["per_class"]["df"]["recall"] is None
    assert c.candidate["per_class"]["bcc"]["recall"] == 1.0
    res = RetrainResult(Path("x"), {}, None, c, notes=[])
    from training.comparison import small_class_notes

    res.notes = small_class_notes(c.few_lesions)
    assert res.notes == [f"df: only 2 validation lesions, too few to judge its recall (at least "
                         f"{MIN_VALIDATION_LESIONS} are needed).", "vasc: no validation lesions, so its recall is "
                                                                   "not measured."]
    assert all(n in res.verdict.summary for n in res.notes) and all(n in res.verdict.detail for n in res.notes)
    table = recall_table(c)
    assert "df not judged (2 lesions)" in table and "vasc not judged (0 lesions)" in table and "bcc 1.00/" in table
    # melanoma with too few lesions: the comparison cannot judge the candidate at all
    counts["mel"] = 4
    labels, groups, ids = _validation(counts)
    c = compare_on_unseen(_one_hot(labels), _one_hot(labels), labels, groups, ids, set())
    assert "melanoma lesions" in c.problem and c.candidate is not None and c.candidate["melanoma_recall"] is None
    assert install_verdict(c).needs_override and "melanoma recall" not in install_verdict(c).figures


def test_a_candidate_validation_cannot_tell_apart_needs_the_override(tmp_path):
    labels, groups, ids = _validation({c: 10 for c in CLASS_CODES})
    same = _one_hot(np.where(np.arange(len(labels)) % 4 == 0, 5, labels))
    c = compare_on_unseen(same, same.copy(), labels, groups, ids, set())
    assert not c.problem and c.difference is not None
    res = RetrainResult(tmp_path / "cand", {}, None, c)
    assert res.verdict.needs_override and not res.verdict.worse
    assert "cannot tell the new models from the active ones" in res.verdict.summary
    with pytest.raises(LesionError, match="Not installed"):
        install_candidate(res, ModelStore(tmp_path / "store"))


def test_a_candidate_worse_on_the_original_images_needs_the_override():
    labels, groups, ids = _validation({c: 10 for c in CLASS_CODES})
    rng = np.random.default_rng(1)
    old = _one_hot(np.where(rng.random(len(labels)) < 0.6, labels, 5))
    clinic = compare_on_unseen(old, _one_hot(labels), labels, groups, ids, set())  # better on the clinic's images
    assert not install_verdict(clinic).needs_override
    forgot = compare_on_unseen(_one_hot(labels), old, labels, groups, ids, set())  # forgot the original data
    v = install_verdict(clinic, forgot, ["df: a note"])
    assert v.needs_override and v.worse and "images of the original training data" in v.summary
    assert "WORSE" in v.summary and v.summary.endswith("df: a note")


def test_retrain_command_line_options():
    p = build_parser()
    a = p.parse_args(["retrain", "D", "-a", "mobilenet_v2", "--work-dir", "W"])
    assert (a.init, a.mix_data, a.mix_ratio, a.imagenet) == ("active", None, 1.0, "auto")
    a = p.parse_args(["retrain", "D", "-a", "mobilenet_v2", "efficientnet_lite0", "--work-dir", "W", "--init",
                      "imagenet", "--mix-data", "HAM", "--mix-ratio", "0.5", "--imagenet", "f.pth"])
    assert (a.init, a.mix_data, a.mix_ratio, a.imagenet) == ("imagenet", "HAM", 0.5, "f.pth")
    assert a.architectures == ["mobilenet_v2", "efficientnet_lite0"]
    with pytest.raises(SystemExit):
        p.parse_args(["retrain", "D", "-a", "x", "--work-dir", "W", "--init", "pretrained"])


def test_retrain_command_runs_from_the_active_models_and_prints_the_report(tmp_path, clinic_and_original,
                                                                           monkeypatch, capsys):
    from training import cli

    clinic, original, _, active = clinic_and_original
    monkeypatch.setattr("lesion_desktop.paths.active_models_dir", lambda: active)
    # no -a: the active models' architectures, as the dialog ticks them
    rc = cli.main(["retrain", str(clinic), "--work-dir", str(tmp_path / "w"), "--mix-data",
                   str(original), "--mix-ratio", "0.5", "--epochs-top", "1", "--epochs-all", "0", "--max-batches",
                   "1", "--batch-size", "8"])
    out = capsys.readouterr().out
    assert rc == 0 and "original data," in out and "recall per class, new / active:" in out
    training = json.loads((tmp_path / "w" / "candidate" / "manifest.json").read_text())["training"]
    assert training["init"] == "active" and training["initialised_from"][ARCH]["init"] == "active"
    assert (training["mix_data"], training["mix_ratio"]) == (str(original), 0.5) and training["mixed_images"] > 0
    assert training["architectures"] == [ARCH]


def test_retrain_command_without_architectures_or_active_models_says_what_to_do(tmp_path, monkeypatch, capsys):
    from training import cli

    monkeypatch.setattr("lesion_desktop.paths.active_models_dir", lambda: tmp_path / "no-models")
    assert cli.main(["retrain", str(tmp_path), "--work-dir", str(tmp_path / "w")]) == 2
    assert "--architectures" in capsys.readouterr().err


def test_agreement_between_two_model_folders_on_the_same_photos(tmp_path, capsys):
    from tests.helpers import FULLRES, make_tiny_ensemble
    from training.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted((FULLRES / "images").iterdir())[:6]:
        shutil.copy(p, photos)
    a = make_tiny_ensemble(tmp_path / "a")
    b = _active(tmp_path / "b", set())
    assert main(["agreement", str(a), str(photos), "--against", str(a)]) == 0
    assert "6 photos: top class agrees for 100.0%" in capsys.readouterr().out
    from training.robustness import model_agreement

    r = model_agreement(a, b, photos)
    assert r.n == 6 and r.mean_abs_difference > 0
    assert len(r.disagreements) == round((1 - r.agreement) * 6)
    assert main(["agreement", str(a), str(photos)]) == 2  # neither copies nor --against


def test_members_from_the_active_models_keep_the_active_ensembles_weights(tmp_path):
    from training.pipeline import MemberStart, active_weights

    make_tiny_bundle(tmp_path / "active" / "m0", seed=1)
    make_tiny_bundle(tmp_path / "active" / "m1", seed=2)
    active = save_ensemble(tmp_path / "active", [("m0", 0.7), ("m1", 0.3)], name="a")
    starts = [MemberStart("active", str(active / "m1")), MemberStart("active", str(active / "m0"))]
    assert active_weights(starts, active) == pytest.approx([0.3, 0.7])
    assert active_weights([starts[0], MemberStart("imagenet")], active) is None  # chosen on validation then
    assert active_weights(starts, None) is None
    # end to end: two architectures, weights off the 0.1 grid that choosing on validation searches
    make_tiny_bundle(tmp_path / "mixed" / "a", seed=3)
    torch.manual_seed(0)
    save_bundle(build_model("mobilenet_v2"), tmp_path / "mixed" / "b", architecture="mobilenet_v2",
                preprocess=PreprocessConfig(input_size=(48, 64)))
    mixed = save_ensemble(tmp_path / "mixed", [("a", 0.65), ("b", 0.35)], name="m",
                          training={"trained_image_ids": []})
    clinic = make_ham_subset(tmp_path / "clinic", per_class=8)
    res = retrain(_cfg(clinic, tmp_path / "work", architectures=["mobilenet_v2", ARCH], epochs_top=0,
                       epochs_all=0), active_dir=mixed)
    assert load_ensemble(res.ensemble_dir).weights == pytest.approx([0.35, 0.65])


def test_a_fine_tune_no_epoch_of_which_beats_the_start_gives_back_the_start(tmp_path, clinic_and_original,
                                                                              monkeypatch):
    """The model as it starts competes with its epochs on validation (here every epoch scores worse)."""
    from safetensors.torch import load_file

    from training import trainer

    clinic, _, _, active = clinic_and_original
    scores = iter([0.9, 0.5, 0.6, 0.7])
    real = trainer.evaluate_epoch
    monkeypatch.setattr(trainer, "evaluate_epoch", lambda run: {**real(run), "balanced_accuracy": next(scores)})
    res = retrain(_cfg(clinic, tmp_path / "work", epochs_top=1, epochs_all=2, max_batches=2), active_dir=active)
    ens = load_ensemble(res.ensemble_dir)
    assert ens.weights == [1.0] and ens.manifest["training"]["member_weights"] == "the active ensemble's"
    # the manifest shows the score every epoch had to beat, and the epochs that did not
    member = ens.members[0].manifest["training"]
    assert member["start_validation"]["val_balanced_accuracy"] == 0.9
    assert [h["val_balanced_accuracy"] for h in member["history"]] == [0.5, 0.6, 0.7]
    got = load_file(str(res.ensemble_dir / f"0-{ARCH}" / "weights.safetensors"))
    start = load_file(str(active / "m0" / "weights.safetensors"))
    assert set(got) == set(start) and all(torch.equal(got[k], start[k]) for k in start)


def test_a_metadata_csv_may_name_where_each_image_lies(tmp_path):
    """The `path` column (relative to the folder, or absolute) that a retrain's mix of two folders is read by."""
    folder = tmp_path / "data"
    (folder / "pics").mkdir(parents=True)
    rows = [r for r in ham_rows() if r["dx"] == "nv"][:6]
    for r in rows[:3]:
        shutil.copy(HAM / "images" / f"{r['image_id']}.jpg", folder / "pics" / f"x{r['image_id']}.jpg")
    with open(folder / "my_metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lesion_id", "image_id", "dx", "path"])
        for r in rows[:3]:
            w.writerow([r["lesion_id"], r["image_id"], "nv", f"pics/x{r['image_id']}.jpg"])
        for r in rows[3:5]:
            w.writerow([r["lesion_id"], r["image_id"], "nv", str(HAM / "images" / f"{r['image_id']}.jpg")])
        w.writerow([rows[5]["lesion_id"], rows[5]["image_id"], "nv", "pics/missing.jpg"])
    ds = read_dataset(folder, min_per_class=0)
    assert [r.image_id for r in ds.records] == [r["image_id"] for r in rows[:5]]
    assert ds.records[0].path == folder / "pics" / f"x{rows[0]['image_id']}.jpg"
    assert ds.records[3].path == HAM / "images" / f"{rows[3]['image_id']}.jpg"
    assert ds.problems == ["my_metadata.csv line 7: image 'pics/missing.jpg' not found, skipped"]


def test_the_same_retrain_again_trains_nothing_more(tmp_path, clinic_and_original):
    """What the docs promise for installing after reading the report: the finished members resume, done."""
    clinic, _, _, active = clinic_and_original
    cfg = _cfg(clinic, tmp_path / "work")
    first = load_ensemble(retrain(cfg, active_dir=active).ensemble_dir).members[0].manifest["training"]
    again = load_ensemble(retrain(cfg, active_dir=active).ensemble_dir).members[0].manifest["training"]
    assert again["history"] == first["history"] and len(first["history"]) == 2
    assert again["trained_image_ids"] == first["trained_image_ids"]
