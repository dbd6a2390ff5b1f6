"""`python -m training` / `lesion-train`: split, train, evaluate, ensemble, install, roll back."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from lesion_desktop.errors import LesionError

if TYPE_CHECKING:
    from training.comparison import Comparison


def _pair(text: str) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, e.g. 150x200, got {text!r}") from None
    return h, w


def _jpeg_quality(text: str) -> int | str:
    if text.lower() in ("auto", "none"):
        return text.lower()
    try:
        q = int(text)
    except ValueError:
        q = 0
    if not 1 <= q <= 100:
        raise argparse.ArgumentTypeError(f"expected 'auto', 'none' or a quality 1..100, not {text!r}")
    return q


def cmd_split(a: argparse.Namespace) -> int:
    from training.data import fingerprint, read_dataset
    from training.splits import lesion_grouped_split, save_split, split_counts

    ds = read_dataset(a.data)
    split = lesion_grouped_split(ds.records, seed=a.seed, fractions=(a.train, a.val, 1 - a.train - a.val))
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    save_split(Path(a.output), split, seed=a.seed, data_fingerprint=fingerprint(ds.records))
    print(ds.summary())
    for p in ds.problems[:20]:
        print("  ", p)
    for name, counts in split_counts(ds.records, split).items():
        print(f"{name:5s} {sum(counts.values()):6d}  " + " ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from training.progress import TerminalProgress
    from training.trainer import TrainConfig, train

    names = {f.name for f in fields(TrainConfig)}
    kw = {k: v for k, v in vars(a).items() if k in names and v is not None}
    kw["command"] = "python -m training " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    cfg = TrainConfig(**kw)
    import os

    rank = int(os.environ.get("RANK", "0"))
    prog = TerminalProgress(f"train {cfg.architecture}" + (f" [rank {rank}]" if rank else ""))
    try:
        res = train(cfg, prog)
    finally:
        prog.close()
    from training.metrics import headline

    if res is None:  # a non-zero rank of a distributed run: rank 0 reports
        return 0
    print(f"bundle: {res.bundle}")
    print(f"validation: {headline(res.val_metrics)}")
    if res.test_metrics:
        print(f"test:       {headline(res.test_metrics)}")
    return 0


def _cache_dir(a: argparse.Namespace) -> Path:
    from training.data import default_cache_dir

    return Path(a.cache_dir) if a.cache_dir else default_cache_dir()


def cmd_scope(a: argparse.Namespace) -> int:
    from training.scope import cmd_scope as run

    return run(a, _cache_dir(a))


def cmd_evaluate(a: argparse.Namespace) -> int:
    from training.ensemble import evaluate_models
    from training.metrics import headline
    from training.progress import TerminalProgress
    from training.report import write_report

    prog = TerminalProgress("evaluate")
    try:
        m = evaluate_models(Path(a.models), data=a.data, split_file=a.split_file, which=a.which,
                            cache_dir=_cache_dir(a), progress=prog, tta=a.tta)
    finally:
        prog.close()
    print(f"{a.which}{' with TTA' if a.tta else ''}: {headline(m)}")
    if a.report:
        print(f"report: {write_report(m, Path(a.report), f'{Path(a.models).name} on {a.which}')}")
    return 0


def cmd_ensemble(a: argparse.Namespace) -> int:
    from training.ensemble import build_ensemble
    from training.metrics import headline
    from training.progress import TerminalProgress
    from training.report import write_report

    prog = TerminalProgress("ensemble")
    command = "python -m training " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    training: dict = {"command": command}
    if a.members_command:
        training["member_commands"] = a.members_command
    try:
        built = build_ensemble([Path(m) for m in a.members], Path(a.output), data=a.data,
                               split_file=a.split_file, cache_dir=_cache_dir(a), name=a.name,
                               progress=prog, training=training)
    finally:
        prog.close()
    print(f"ensemble: {built.path}")
    print(f"validation: {headline(built.val_metrics)}")
    write_report(built.val_metrics, Path(a.output).parent / f"{Path(a.output).name}-report-val",
                 "Ensemble, validation split")
    if built.test_metrics:
        print(f"test:       {headline(built.test_metrics)}")
        write_report(built.test_metrics, Path(a.output).parent / f"{Path(a.output).name}-report-test",
                     "Ensemble, test split")
    return 0


def cmd_install(a: argparse.Namespace) -> int:
    from lesion_desktop.paths import model_store_dir
    from lesion_desktop.store import ModelStore

    store = ModelStore(Path(a.store) if a.store else model_store_dir())
    if not a.unvalidated:
        print("error: `install` compares nothing, so the models it installs have not been shown to be at least as "
              "good as the active ones. Use `python -m training retrain ... --install` (compares on validation "
              "images neither trained on), or pass --unvalidated to install them marked UNVALIDATED.",
              file=sys.stderr)
        return 2
    path = store.install(Path(a.models), comparison="Installed with `python -m training install --unvalidated`: "
                         "not compared with the models it replaced.", by_override=True)
    print(f"installed and active, marked unvalidated until rolled back: {path}")
    return 0


def cmd_rollback(a: argparse.Namespace) -> int:
    from lesion_desktop.paths import bundled_models_dir, model_store_dir
    from lesion_desktop.store import ModelStore

    store = ModelStore(Path(a.store) if a.store else model_store_dir())
    active = store.rollback()
    print(f"active models now: {active or bundled_models_dir()} ")
    return 0


def cmd_retrain(a: argparse.Namespace) -> int:
    from lesion_desktop.paths import active_models_dir, model_store_dir
    from lesion_desktop.store import ModelStore
    from training.metrics import headline
    from training.pipeline import RetrainConfig, compared_figures, install_candidate, retrain
    from training.progress import TerminalProgress

    architectures = a.architectures or active_architectures(active_models_dir())
    if not architectures:
        print("error: no active models to take the architectures from: name them with --architectures",
              file=sys.stderr)
        return 2
    cfg = RetrainConfig(data=a.data, architectures=architectures, work_dir=a.work_dir, epochs_head=a.epochs_head,
                        epochs_top=a.epochs_top, epochs_all=a.epochs_all, input_size=a.input_size,
                        imagenet=a.imagenet, batch_size=a.batch_size, max_batches=a.max_batches, device=a.device,
                        init=a.init, mix_data=a.mix_data, mix_ratio=a.mix_ratio,
                        command="python -m training " + " ".join(shlex.quote(x) for x in sys.argv[1:]))
    prog = TerminalProgress("retrain")
    try:
        res = retrain(cfg, prog, active_dir=active_models_dir())
    finally:
        prog.close()
    print(f"candidate: {res.ensemble_dir}")
    print(f"candidate validation: {headline(res.metrics)}")
    for title, c in (("clinic validation", res.comparison), ("original data", res.reference)):
        if c is not None and c.candidate and c.active:
            print(f"{title}, {c.n_images} images ({c.n_lesions} lesions) neither trained on:")
            print(f"  new:    {headline(c.candidate)}")
            print(f"  active: {headline(c.active)}")
            print("  " + compared_figures(c))
            print("  recall per class, new / active: " + recall_table(c))
    print(res.verdict.summary)
    if a.install or a.install_even_if_worse:
        if res.verdict.needs_override and not a.install_even_if_worse:
            print("not installed: the new models are not shown to be better than the active ones; "
                  "--install-even-if-worse installs them anyway, marked as unvalidated")
            return 1
        installed = install_candidate(res, ModelStore(model_store_dir()), override=a.install_even_if_worse)
        print(f"installed: {installed}" + (" (by override: marked as unvalidated until rolled back)"
                                           if res.verdict.needs_override else ""))
    return 0


def active_architectures(active_dir: Path | None) -> list[str]:
    """The active ensemble's member architectures in its order (what the dialog ticks by default); [] if none."""
    from lesion_desktop.errors import BundleError
    from lesion_desktop.manifest import validate_ensemble

    if active_dir is None:
        return []
    try:
        return list(dict.fromkeys(m.architecture for m in validate_ensemble(Path(active_dir)).members))
    except BundleError:
        return []


def recall_table(c: Comparison) -> str:
    """'akiec 0.70/0.65, ..., df not judged (2 lesions), ...' for a comparison's per-class recalls."""
    parts = []
    new, old, few = c.candidate or {}, c.active or {}, c.few_lesions
    for code, row in new.get("per_class", {}).items():
        if code in few:
            parts.append(f"{code} not judged ({few[code]} lesions)")
        else:
            parts.append(f"{code} {row['recall']:.2f}/{old['per_class'][code]['recall']:.2f}")
    return ", ".join(parts)


def cmd_agreement(a: argparse.Namespace) -> int:
    from training.progress import TerminalProgress
    from training.robustness import model_agreement, size_agreement

    if (a.copies is None) == (a.against is None):
        print("error: give either a folder of copies (full size vs copy) or --against MODELS (two model folders "
              "on the same photos)", file=sys.stderr)
        return 2
    prog = TerminalProgress("agreement")
    try:
        if a.against:
            r = model_agreement(Path(a.models), Path(a.against), Path(a.full), device=a.device, tta=a.tta,
                                progress=prog)
        else:
            r = size_agreement(Path(a.models), Path(a.full), Path(a.copies), device=a.device, tta=a.tta,
                               progress=prog)
    finally:
        prog.close()
    for problem in r.problems[:20]:
        print("  skipped:", problem)
    first, second = ("these models", "the others") if a.against else ("full size", "copy")
    for name, big, small in r.disagreements:
        print(f"  {name}: {first} {big}, {second} {small}")
    met = r.met(a.min_agreement, a.max_difference)
    print(f"{r.n} {'photos' if a.against else 'pairs'}: top class agrees for {r.agreement:.1%} (target "
          f"{a.min_agreement:.0%}), mean absolute probability difference {r.mean_abs_difference:.4f} (target "
          f"{a.max_difference}): " + ("met" if met else "NOT met"))
    return 0 if met else 1


# Kept here rather than read from lesion_desktop.registry, so that --help does not import torch;
# tests/test_training.py checks the list against the registry.
_ARCH_NAMES = ("mobilenet_v2, efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, inception_v3, "
               "densenet201, inception_resnet_v2, vgg16, baseline_cnn")
_DATA_HELP = "data folder: HAM10000 layout (metadata CSV and images) or one folder per class"
_DEVICE_HELP = "auto (CUDA when there is one, the default), cpu, cuda or cuda:N"
_CACHE_HELP = ("decoded-image cache; only the images scored are decoded (default: the user's cache folder, "
               "e.g. ~/.cache/LesionDesktop/images, or $LESION_DESKTOP_CACHE)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("split", help="write a lesion-grouped, stratified train/val/test split file")
    s.add_argument("data", help="data folder (HAM10000 layout or one folder per class)")
    s.add_argument("--output", "-o", required=True, help="split file to write (JSON; its folder is created)")
    s.add_argument("--seed", type=int, default=0, help="the same seed and data give the same split (default 0)")
    s.add_argument("--train", type=float, default=0.7, help="fraction of lesions for training (default 0.7)")
    s.add_argument("--val", type=float, default=0.15,
                   help="fraction for validation, where models are chosen (default 0.15); the rest is test")
    s.set_defaults(func=cmd_split)

    t = sub.add_parser("train", help="fine-tune one architecture (Part A then Part B) into a bundle")
    t.add_argument("data", help=_DATA_HELP)
    t.add_argument("--architecture", "-a", required=True, help=f"one of: {_ARCH_NAMES}")
    t.add_argument("--out-dir", "-o", dest="out_dir", required=True,
                   help="run folder: checkpoints, metrics and the finished bundle; rerunning resumes it")
    t.add_argument("--input-size", dest="input_size", type=_pair,
                   help="HEIGHTxWIDTH fed to the network, e.g. 192x256 (default: the architecture's own)")
    t.add_argument("--epochs-head", dest="epochs_head", type=int,
                   help="Part A, new head only, backbone frozen (default 1)")
    t.add_argument("--epochs-top", dest="epochs_top", type=int,
                   help="Part A, head and the top block unfrozen (default 2; 0 skips it)")
    t.add_argument("--epochs-all", dest="epochs_all", type=int,
                   help="Part B, all layers (default 6); a larger value than a finished run's continues it")
    t.add_argument("--batch-size", dest="batch_size", type=int, help="images per step (default 32)")
    t.add_argument("--lr-head", dest="lr_head", type=float, help="AdamW learning rate, head phase (default 1e-3)")
    t.add_argument("--lr-top", dest="lr_top", type=float, help="top-block phase (default 3e-4)")
    t.add_argument("--lr-all", dest="lr_all", type=float,
                   help="all-layers phase (default 1e-4); each phase runs a one-cycle schedule: warm-up, "
                        "then cosine decay")
    t.add_argument("--class-weight-power", dest="class_weight_power", type=float,
                   help="loss weight of a class = (1/frequency)**power: 1 balances the classes (default), "
                        "0 weighs every image alike")
    t.add_argument("--sampling-power", dest="sampling_power", type=float,
                   help="class-balanced sampling instead: each epoch draws its images with replacement, an image "
                        "of class c with weight 1/count(c)**power (1 balances the classes; default 0: each image "
                        "once per epoch); use with --class-weight-power 0")
    t.add_argument("--ema-decay", dest="ema_decay", type=float,
                   help="keep an exponential moving average of the weights with this decay per step (e.g. "
                        "0.998) and judge each epoch, and keep the best, by it (default 0: off)")
    t.add_argument("--channel-gain", dest="channel_gain", type=float,
                   help="also tilt each training image's colour balance like another camera's white balance: "
                        "each channel x exp(u), u uniform in [-S, S] (e.g. 0.2; default 0: off)")
    t.add_argument("--patience", type=int,
                   help="stop all-layers training after this many epochs without a new best, counted from its midpoint")
    t.add_argument("--seed", type=int, help="initialisation, augmentation and batch order (default 0)")
    t.add_argument("--imagenet", help="starting weights: 'auto' (torch cache, the default), 'none', or a weights "
                                      "file (ImageNet, or a fine-tuned best.safetensors; its head is replaced)")
    t.add_argument("--color-constancy", dest="color_constancy", action="store_true", default=None,
                   help="Shades-of-Gray colour constancy before the network (recorded in the manifest, so the "
                        "app applies it too)")
    t.add_argument("--hair-removal", dest="hair_removal", action="store_true", default=None,
                   help="remove dark hairs (black-hat and inpainting) before the network, in training and in use")
    t.add_argument("--jpeg-quality", dest="jpeg_quality", type=_jpeg_quality,
                   help="re-encode downsampled inputs at this JPEG quality, as the training copies were: 'auto' "
                        "(default: read from the training images' quantisation tables), 'none', or 1..100")
    t.add_argument("--device", help=_DEVICE_HELP)
    t.add_argument("--split-file", dest="split_file",
                   help="split written by 'split' (default: a new seeded split saved in the run folder)")
    t.add_argument("--cache-dir", dest="cache_dir",
                   help="decoded-image cache (default: inside the run folder); shared runs can share it")
    t.add_argument("--max-batches", dest="max_batches", type=int,
                   help="stop each epoch after this many batches (quick trials and tests, not real training)")
    t.add_argument("--effective-size", dest="effective_size", type=_pair,
                   help="HEIGHTxWIDTH every image is brought to first (default: measured from the training images, "
                        "the most common size, long side at most 800 px)")
    t.add_argument("--workers", type=int,
                   help="DataLoader processes that augment images (default: chosen for the device; 0 on small CPUs)")
    t.add_argument("--half-weights", dest="half_weights", action="store_true", default=None,
                   help="store the bundle's weights as fp16 (half the size on disk)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score an ensemble or bundle on a split and write a report")
    e.add_argument("models", help="ensemble or bundle folder")
    e.add_argument("data", help=_DATA_HELP)
    e.add_argument("--split-file", dest="split_file", required=True, help="split written by 'split'")
    e.add_argument("--which", choices=["train", "val", "test"], default="val",
                   help="which part of the split to score (default val)")
    e.add_argument("--cache-dir", dest="cache_dir", help=_CACHE_HELP)
    e.add_argument("--report", help="folder for metrics.json, report.md and the plots")
    e.add_argument("--tta", action="store_true",
                   help="average over flips and 90-degree rotations, as the app does with TTA on (6x slower)")
    e.set_defaults(func=cmd_evaluate)

    n = sub.add_parser("ensemble", help="combine trained bundles with weights chosen on validation")
    n.add_argument("members", nargs="+", help="bundle folders")
    n.add_argument("--data", required=True, help=_DATA_HELP)
    n.add_argument("--split-file", dest="split_file", required=True,
                   help="split written by 'split'; weights and temperature are fitted on its validation part")
    n.add_argument("--output", "-o", required=True, help="folder for the ensemble")
    n.add_argument("--name", default="ensemble", help="name shown in the app (default 'ensemble')")
    n.add_argument("--cache-dir", dest="cache_dir", help=_CACHE_HELP)
    n.add_argument("--members-command", dest="members_command", action="append",
                   help="record the command that trained a member (repeatable)")
    n.set_defaults(func=cmd_ensemble)

    i = sub.add_parser("install", help="make an ensemble active (the current one is kept for roll-back)")
    i.add_argument("models", help="ensemble folder; it is loaded and checked before it becomes active")
    i.add_argument("--store", help="model store folder (default: the app's data folder)")
    i.add_argument("--unvalidated", action="store_true",
                   help="required: install without a comparison; the models are marked UNVALIDATED (the window "
                        "shows a banner) until rolled back")
    i.set_defaults(func=cmd_install)

    r = sub.add_parser("rollback", help="restore the previously active models")
    r.add_argument("--store", help="model store folder (default: the app's data folder)")
    r.set_defaults(func=cmd_rollback)

    ag = sub.add_parser("agreement", help="do full-size photos get the answer their training-size copies get? "
                                          "(with --against: do two model folders give the same answers?)")
    ag.add_argument("models", help="ensemble or bundle folder")
    ag.add_argument("full", help="folder of full-size images")
    ag.add_argument("copies", nargs="?",
                    help="folder of the same images at training size (matched by file name); not with --against")
    ag.add_argument("--against", metavar="MODELS",
                    help="another ensemble or bundle folder (e.g. the active models, next to a retrained candidate): "
                         "compare the two on the full-size images instead")
    ag.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    ag.add_argument("--tta", action="store_true", help="average over flips and 90-degree rotations")
    ag.add_argument("--min-agreement", dest="min_agreement", type=float, default=0.95,
                    help="fraction of pairs whose top class must agree (default 0.95); exit status 1 below it")
    ag.add_argument("--max-difference", dest="max_difference", type=float, default=0.05,
                    help="largest allowed mean absolute probability difference (default 0.05)")
    ag.set_defaults(func=cmd_agreement)

    sc = sub.add_parser("scope", help="fit and calibrate the scope gate (is this a dermoscopy image the models can "
                                      "judge?) for a model folder, and write it beside the models")
    sc.add_argument("models", help="ensemble or bundle folder")
    sc.add_argument("data", help=_DATA_HELP)
    sc.add_argument("--split-file", dest="split_file", required=True,
                    help="the split the models were trained with: fitted on train, threshold set on val")
    sc.add_argument("--output", "-o", help="folder for scope.json and scope.npz (default: the models folder, whose "
                                           "manifest then records them)")
    sc.add_argument("--cache-dir", dest="cache_dir", help=_CACHE_HELP)
    sc.add_argument("--full-size", dest="full_size", help="folder of full-size dermoscopy photos: report how many "
                                                          "are flagged")
    sc.add_argument("--non-dermoscopy", dest="non_dermoscopy",
                    help="folder of pictures that are not dermoscopy images (benchmarks/ood_images.py writes one): "
                         "report how many are flagged")
    sc.add_argument("--target-rate", dest="target_rate", type=float, default=0.01,
                    help="largest fraction of validation images flagged (default 0.01)")
    sc.add_argument("--components", type=int, default=256,
                    help="principal components of each member's training features kept (default 256)")
    sc.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    sc.set_defaults(func=cmd_scope)

    rt = sub.add_parser("retrain", help="train members, ensemble them and compare with the active models")
    rt.add_argument("data", help=_DATA_HELP)
    rt.add_argument("--architectures", "-a", nargs="+",
                    help=f"one or more of: {_ARCH_NAMES} (default: the active models' architectures, as the dialog)")
    rt.add_argument("--work-dir", dest="work_dir", required=True,
                    help="folder for the split, the member runs and the candidate ensemble")
    rt.add_argument("--epochs-head", dest="epochs_head", type=int, default=1,
                    help="Part A, head only (default 1; not run with --init active, whose head is trained)")
    rt.add_argument("--epochs-top", dest="epochs_top", type=int, default=1, help="Part A, top block (default 1)")
    rt.add_argument("--epochs-all", dest="epochs_all", type=int, default=3, help="Part B, all layers (default 3)")
    rt.add_argument("--input-size", dest="input_size", type=_pair, help="HEIGHTxWIDTH (default: each network's own)")
    rt.add_argument("--init", choices=["active", "imagenet", "random"], default="active",
                    help="where each member starts: 'active' (the default: the active models' member of the same "
                         "architecture, its head, input size and preprocessing, fine-tuned at a tenth of the rates; "
                         "ImageNet, logged and recorded, when the active models have no such member), 'imagenet' "
                         "(the --imagenet weights and a new head) or 'random' (needs far more images)")
    rt.add_argument("--imagenet", default="auto",
                    help="the ImageNet weights for --init imagenet: 'auto' (shipped or in the torch cache), or a file")
    rt.add_argument("--mix-data", dest="mix_data",
                    help="data folder of the original training data (e.g. HAM10000): images the active models were "
                         "trained on are mixed into the training part, so the models keep what they knew; its "
                         "images unseen by both models give a second comparison")
    rt.add_argument("--mix-ratio", dest="mix_ratio", type=float, default=1.0,
                    help="original images drawn per clinic training image (default 1.0)")
    rt.add_argument("--batch-size", dest="batch_size", type=int, default=32, help="images per step (default 32)")
    rt.add_argument("--max-batches", dest="max_batches", type=int,
                    help="stop each epoch after this many batches (quick trials only)")
    rt.add_argument("--device", default="auto", help=_DEVICE_HELP)
    rt.add_argument("--install", action="store_true",
                    help="install the candidate if it is shown better than the active models (the paired 95%% "
                         "interval of the change in balanced accuracy above zero, melanoma recall not shown lower, "
                         "on validation images neither was trained on); exit status 1 when it is not")
    rt.add_argument("--install-even-if-worse", dest="install_even_if_worse", action="store_true",
                    help="install the candidate even when it is worse or cannot be judged: it is then marked as "
                         "unvalidated (a banner in the app and every result say so) until rolled back")
    rt.set_defaults(func=cmd_retrain)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except LesionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last finished epoch is checkpointed and the run can be resumed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
