"""The study's two-part fine-tuning, done honestly.

Part A trains a new 7-way head on a frozen ImageNet backbone, then unfreezes the top block; Part B
trains all layers. Every epoch is scored on the lesion-grouped validation split and checkpointed, so
an interrupted run resumes; the model kept is the one with the best validation balanced accuracy.
Each phase runs a one-cycle schedule; the all-layers phase stops early after `patience` epochs without
a new best, counted from the phase's midpoint (before it the rate is high and the scores are noisy).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lesion_desktop.classes import NUM_CLASSES
from lesion_desktop.engine import tta_probs
from lesion_desktop.errors import DatasetError
from lesion_desktop.preprocess import PreprocessConfig, normalise_batch
from lesion_desktop.registry import build_model, get_spec, set_trainable
from training.augment import augment_batch, training_transform
from training.calibrate import fit_temperature
from training.data import ImageCache, build_cache, estimate_jpeg_quality, read_dataset
from training.metrics import evaluate, headline
from training.progress import Progress, ScaledProgress, check_cancel
from training.splits import check_no_leak, indices_for, lesion_grouped_split, load_split, save_split

CHECKPOINT = "checkpoint.pt"
BEST = "best.safetensors"


@dataclass
class TrainConfig:
    architecture: str
    data: str
    out_dir: str
    input_size: tuple[int, int] | None = None  # None: the architecture's native size
    epochs_head: int = 1
    epochs_top: int = 2
    epochs_all: int = 6
    batch_size: int = 32
    lr_head: float = 1e-3
    lr_top: float = 3e-4
    lr_all: float = 1e-4
    weight_decay: float = 1e-4
    class_weight_power: float = 1.0  # 1: inverse-frequency loss weights; 0: none
    patience: int = 3
    seed: int = 0
    imagenet: str = "auto"  # "auto": torch cache if present; "none"; or a weights file path
    color_constancy: bool = False
    hair_removal: bool = False
    # "auto": the training images' own quality (estimate_jpeg_quality); None or "none": no re-encoding
    jpeg_quality: int | str | None = "auto"
    device: str = "auto"
    split_file: str | None = None
    cache_dir: str | None = None
    max_batches: int | None = None  # limit batches per epoch (smoke tests)
    eval_batch_size: int = 64
    half_weights: bool = False
    command: str = ""

    def phases(self) -> list[tuple[str, int, float]]:
        p = [("head", self.epochs_head, self.lr_head), ("top", self.epochs_top, self.lr_top),
             ("all", self.epochs_all, self.lr_all)]
        return [x for x in p if x[1] > 0]


@dataclass
class TrainResult:
    bundle: Path
    val_metrics: dict[str, Any]
    test_metrics: dict[str, Any] | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DatasetError("CUDA was requested but no CUDA device is available.")
    return torch.device(name)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def predict_probs(
    model: nn.Module, images: np.ndarray, cfg: PreprocessConfig, device: torch.device,
    batch_size: int = 64, temperature: float = 1.0, progress: Progress | None = None, tta: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and softmax probabilities for preprocessed uint8 images (the engine's own path).

    With `tta` the probabilities are averaged over the engine's six views (lesion_desktop.engine.tta_probs);
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
    return logits.numpy(), torch.softmax(logits / temperature, dim=1).numpy()


def _class_weights(labels: np.ndarray, power: float) -> torch.Tensor:
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    w = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1) / NUM_CLASSES) ** power, 0.0)
    w = w / (w * counts).sum() * counts.sum()  # mean weight per sample is 1
    return torch.tensor(w, dtype=torch.float32)


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _save_best(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)


def _bare(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _freeze_bn_of_frozen(model: nn.Module) -> None:
    """Frozen layers keep their ImageNet batch-norm statistics (as Keras does for frozen layers)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()


def prepare_data(cfg: TrainConfig, progress: Progress | None) -> tuple[ImageCache, dict[str, np.ndarray], dict]:
    spec = get_spec(cfg.architecture)
    ds = read_dataset(cfg.data)
    quality = None if cfg.jpeg_quality == "none" else cfg.jpeg_quality
    if quality == "auto":
        quality = estimate_jpeg_quality(ds.records, PreprocessConfig().effective_size)
    elif quality is not None and not (isinstance(quality, int) and 1 <= quality <= 100):
        raise DatasetError(f"jpeg_quality must be 'auto', None or 1..100, not {quality!r}")
    pre = PreprocessConfig(
        input_size=tuple(cfg.input_size or spec.input_size), mean=spec.mean, std=spec.std,  # type: ignore[arg-type]
        color_constancy=cfg.color_constancy, hair_removal=cfg.hair_removal, jpeg_quality=quality,
    )
    cache_dir = Path(cfg.cache_dir or Path(cfg.out_dir) / "cache")
    cache = build_cache(ds, pre, cache_dir, progress)
    out = Path(cfg.out_dir)
    split_path = Path(cfg.split_file) if cfg.split_file else out / "split.json"
    if split_path.is_file():
        split = load_split(split_path)
    else:
        split = lesion_grouped_split(cache.records, seed=cfg.seed)
        save_split(split_path, split, seed=cfg.seed, data_fingerprint=cache.fingerprint)
    check_no_leak(cache.records, split)
    idx = {k: indices_for(cache.records, v) for k, v in split.items()}
    if len(idx["train"]) == 0 or len(idx["val"]) == 0:
        raise DatasetError("The split leaves no training or no validation images.")
    info = {"preprocess": pre, "dataset": ds, "split_file": str(split_path)}
    return cache, idx, info


def train(cfg: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Run (or resume) one member's training; returns its calibrated bundle and metrics."""
    t0 = time.time()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rank, world = _distributed()
    device = pick_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    if rank != 0:
        torch.distributed.barrier()  # rank 0 decodes the cache and writes the split first
    cache, idx, info = prepare_data(cfg, ScaledProgress(progress, 0.0, 0.05) if progress else None)
    if world > 1 and rank == 0:
        torch.distributed.barrier()
    outer, progress = progress, (ScaledProgress(progress, 0.05, 0.95) if progress else None)
    pre: PreprocessConfig = info["preprocess"]
    labels = cache.labels()
    imagenet: bool | str
    if cfg.imagenet == "none":
        imagenet = False
    elif cfg.imagenet == "auto":
        from lesion_desktop.registry import find_imagenet_weights

        imagenet = find_imagenet_weights(cfg.architecture) is not None
    else:
        imagenet = cfg.imagenet
    model = build_model(cfg.architecture, imagenet=imagenet).to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    loss_fn = nn.CrossEntropyLoss(weight=_class_weights(labels[idx["train"]], cfg.class_weight_power).to(device))
    transform = training_transform(pre.input_size)

    state: dict[str, Any] = {"phase": 0, "epoch": 0, "best": -1.0, "since_best": 0, "history": []}
    ckpt_path = out / CHECKPOINT
    resume = None
    if ckpt_path.is_file():
        resume = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if _comparable(resume.get("config", {})) != _comparable(asdict(cfg)):
            # Another configuration trained here before: keep its checkpoint aside and start afresh.
            os.replace(ckpt_path, ckpt_path.with_suffix(".other-config.pt"))
            if progress is not None:
                progress.report(0.0, "A checkpoint from a different configuration was set aside")
            resume = None
    phases = cfg.phases()
    old_phases: list[tuple[str, int, float]] = []
    if resume is not None:
        model.load_state_dict(resume["model"])
        state = resume["state"]
        torch.set_rng_state(resume["torch_rng"])
        # Where to go on is derived from the epochs done per phase, so a resumed run may also be
        # given more (or fewer) epochs than it started with.
        old_phases = TrainConfig(**{**resume["config"], "input_size": cfg.input_size}).phases()
        done_per_phase = Counter(h["phase"] for h in state["history"])
        pos = next((i for i, (n, e, _) in enumerate(phases) if done_per_phase[n] < e), len(phases))
        state["phase"] = pos
        state["epoch"] = done_per_phase[phases[pos][0]] if pos < len(phases) else 0
        if old_phases != phases:
            state["since_best"] = 0
        if progress is not None and pos < len(phases):
            progress.report(0.0, f"Resuming {phases[pos][0]} at epoch {state['epoch'] + 1}")
    # Every run of this command on this folder (first, resumed, lengthened) is recorded, so the manifest's
    # time is the whole training's, not just the last run's.
    runs = state.setdefault("runs", [])
    if not runs and state["history"]:
        runs.append({"command": "(not recorded: checkpoint predates run records)",
                     "seconds": round(sum(h["seconds"] for h in state["history"]), 1),
                     "epochs": len(state["history"])})
    runs.append({"command": cfg.command or " ".join(sys.argv), "seconds": 0.0, "epochs": 0,
                 "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))})
    total_epochs = sum(p[1] for p in phases)
    n_train = len(idx["train"])
    per_rank = int(math.ceil(n_train / world))
    batches = int(math.ceil(per_rank / cfg.batch_size))
    if cfg.max_batches:
        batches = min(batches, cfg.max_batches)
    rng = np.random.default_rng(cfg.seed + 1000 * len(state["history"]))
    done_epochs = len(state["history"])
    epoch_times: list[float] = []
    stop = False
    for pi in range(state["phase"], len(phases)):
        pname, pepochs, lr = phases[pi]
        trainable = set_trainable(_bare(model), cfg.architecture, pname)  # type: ignore[arg-type]
        net: nn.Module = model
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
        start_epoch = state["epoch"] if pi == state["phase"] else 0
        if start_epoch == 0:
            state["since_best"] = 0
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=pepochs * batches, pct_start=0.15)
        if resume is not None and start_epoch > 0:
            saved_phase = resume.get("opt_phase_name") or old_phases[int(resume.get("opt_phase", -1))][0]
            same_length = dict((n, e) for n, e, _ in old_phases).get(pname) == pepochs
            if saved_phase == pname:
                opt.load_state_dict(resume["optimizer"])
            if saved_phase == pname and same_length:
                sched.load_state_dict(resume["scheduler"])
            else:  # a phase lengthened on resume: a short warm restart at half the rate over what is left
                sched = torch.optim.lr_scheduler.OneCycleLR(
                    opt, max_lr=lr / 2, total_steps=(pepochs - start_epoch) * batches, pct_start=0.05)
        scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
        for ep in range(start_epoch, pepochs):
            te = time.time()
            net.train()
            _freeze_bn_of_frozen(model)
            order = rng.permutation(idx["train"])[rank::world]
            running = 0.0
            for b in range(batches):
                check_cancel(progress)
                bi = np.sort(order[b * cfg.batch_size : (b + 1) * cfg.batch_size])
                if len(bi) == 0:
                    break
                x = augment_batch(torch.from_numpy(np.ascontiguousarray(cache.images[bi])), transform)
                x = normalise_batch(x, pre).to(device, non_blocking=True)
                if device.type == "cpu":
                    x = x.contiguous(memory_format=torch.channels_last)
                y = torch.from_numpy(labels[bi]).to(device)
                with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                    loss = loss_fn(net(x).float(), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                running += loss.item()
                if progress is not None and (b % 5 == 0 or b == batches - 1):
                    frac = (done_epochs + (b + 1) / batches) / max(total_epochs, 1)
                    elapsed = time.time() - t0
                    eta = _eta(epoch_times, te, b + 1, batches, total_epochs - done_epochs)
                    progress.report(frac, f"{pname} epoch {ep + 1}/{pepochs} batch {b + 1}/{batches} "
                                          f"loss {running / (b + 1):.3f} ETA {eta:.0f}s")
                    progress.partial({"event": "batch", "phase": pname, "epoch": ep + 1, "batch": b + 1,
                                      "batches": batches, "loss": running / (b + 1), "eta_s": eta,
                                      "elapsed_s": elapsed})
            improved = False
            metrics: dict[str, Any] = {}
            if rank == 0:
                val_images = cache.images[idx["val"]]
                _, probs = predict_probs(model, val_images, pre, device, cfg.eval_batch_size, 1.0, progress)
                metrics = evaluate(probs, labels[idx["val"]])
                improved = metrics["balanced_accuracy"] > state["best"]
                if improved:
                    state["best"] = metrics["balanced_accuracy"]
                    state["since_best"] = 0
                    _save_best(model, out / BEST)
                elif ep + 1 > pepochs // 2:
                    # One-cycle: the first half of a phase runs at a high rate and is judged by where it
                    # leads, so epochs without improvement count towards patience only from the midpoint.
                    state["since_best"] += 1
            epoch_times.append(time.time() - te)
            done_epochs += 1
            entry = {"phase": pname, "epoch": ep + 1, "global_epoch": done_epochs, "loss": running / max(batches, 1),
                     "val_balanced_accuracy": metrics.get("balanced_accuracy"),
                     "val_melanoma_recall": metrics.get("melanoma_recall"), "val_accuracy": metrics.get("accuracy"),
                     "seconds": epoch_times[-1], "trainable_params": trainable}
            state["history"].append(entry)
            runs[-1]["seconds"] = round(time.time() - t0, 1)
            runs[-1]["epochs"] += 1
            state["phase"], state["epoch"] = (pi, ep + 1) if ep + 1 < pepochs else (pi + 1, 0)
            if rank == 0:
                _save_atomic({"config": json.loads(json.dumps(asdict(cfg))), "arch": cfg.architecture,
                              "model": _bare(model).state_dict(), "optimizer": opt.state_dict(),
                              "scheduler": sched.state_dict(), "state": state, "opt_phase_name": pname,
                              "torch_rng": torch.get_rng_state()}, ckpt_path)
                if progress is not None:
                    progress.partial({"event": "epoch", **entry})
                    progress.report(done_epochs / max(total_epochs, 1),
                                    f"{pname} epoch {ep + 1}/{pepochs}: {headline(metrics)}")
            stop = pname == "all" and state["since_best"] >= cfg.patience
            if world > 1:
                flag = torch.tensor([1.0 if stop else 0.0], device=device)
                torch.distributed.broadcast(flag, 0)
                stop = bool(flag.item())
            if stop:
                break
        if stop:
            break
    if progress is not None:
        progress.report(1.0, "Calibrating and scoring the best epoch")
    if state.get("runs"):
        state["runs"][-1]["seconds"] = round(time.time() - t0, 1)
    result = finish(cfg, model, cache, idx, pre, state, time.time() - t0, info, outer) if rank == 0 else None
    if world > 1:
        torch.distributed.barrier()
    return result  # type: ignore[return-value]


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    ignored = ("command", "device", "eval_batch_size", "epochs_head", "epochs_top", "epochs_all", "patience")
    # A checkpoint written before a setting existed ran with that setting's default (jpeg_quality: "auto"
    # gives what older versions did for full-size data, and the recorded quality for copies they never
    # re-encoded), so a run can still be resumed across an upgrade.
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    return {k: v for k, v in json.loads(json.dumps({**defaults, **cfg})).items() if k not in ignored}


def _eta(epoch_times: list[float], te: float, b: int, batches: int, remaining_epochs: int) -> float:
    per_epoch = float(np.median(epoch_times)) if epoch_times else (time.time() - te) / b * batches * 1.15
    return max(0.0, per_epoch * remaining_epochs - (time.time() - te))


def finish(cfg: TrainConfig, model: nn.Module, cache: ImageCache, idx: dict[str, np.ndarray], pre: PreprocessConfig,
           state: dict[str, Any], seconds: float, info: dict, progress: Progress | None) -> TrainResult:
    """Restore the best epoch, fit its temperature on validation, score val and test, write the bundle."""
    from safetensors.torch import load_file

    from lesion_desktop.bundle import save_bundle

    out = Path(cfg.out_dir)
    device = next(model.parameters()).device
    best = out / BEST
    if best.is_file():
        model.load_state_dict({k: v.to(device) for k, v in load_file(str(best)).items()})
    labels = cache.labels()
    val_logits, _ = predict_probs(model, cache.images[idx["val"]], pre, device, cfg.eval_batch_size, 1.0, progress)
    temperature = fit_temperature(val_logits, labels[idx["val"]])
    val_probs = torch.softmax(torch.from_numpy(val_logits) / temperature, 1).numpy()
    val_metrics = evaluate(val_probs, labels[idx["val"]], _lesions(cache, idx["val"]))
    test_metrics = None
    if len(idx["test"]):
        _, test_probs = predict_probs(model, cache.images[idx["test"]], pre, device, cfg.eval_batch_size,
                                      temperature, progress)
        test_metrics = evaluate(test_probs, labels[idx["test"]], _lesions(cache, idx["test"]))
    ds = info["dataset"]
    training = {
        "command": cfg.command or " ".join(sys.argv),
        "data": str(cfg.data),
        "data_fingerprint": cache.fingerprint,
        "split_file": info["split_file"],
        "counts": ds.counts(),
        "seconds": round(seconds + sum(r["seconds"] for r in state.get("runs", [])[:-1]), 1),
        "runs": state.get("runs", []),
        "history": state["history"],
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("command",)},
    }
    bundle = save_bundle(
        model.float().to("cpu").to(memory_format=torch.contiguous_format), out / "bundle",
        architecture=cfg.architecture, preprocess=pre, temperature=temperature,
        metrics={"val": _brief(val_metrics), "test": _brief(test_metrics) if test_metrics else None},
        training=training, half=cfg.half_weights,
    )
    (out / "metrics.json").write_text(json.dumps({"val": val_metrics, "test": test_metrics}, indent=1))
    if progress is not None:
        progress.report(1.0, f"Done: validation {headline(val_metrics)}")
    return TrainResult(bundle, val_metrics, test_metrics, state["history"], seconds)


def _lesions(cache: ImageCache, index: np.ndarray) -> list[str]:
    return [cache.records[i].lesion_id for i in index]


def _brief(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "balanced_accuracy", "melanoma_recall", "accuracy", "macro_auc", "ece", "nll")
    brief = {k: m[k] for k in keys} | {"recall": {c: v["recall"] for c, v in m["per_class"].items()}}
    for key in ("malignancy_warning", "intervals"):
        if key in m:
            brief[key] = m[key]
    return brief
