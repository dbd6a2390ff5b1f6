"""Checkpoints: an interrupted training goes on where it stopped, and only under the settings that began it.

A checkpoint holds the weights, the optimiser, schedule and mixed-precision scaler states, the torch random
state and a `TrainState`, all loadable with `torch.load(weights_only=True)` (plain containers, no pickled
classes). One written by another configuration, or for images brought to another effective size, is set
aside rather than resumed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.config import PhasePlan, TrainConfig
from training.progress import Progress

CHECKPOINT = "checkpoint.pt"
LEGACY_EFFECTIVE_SIZE = [150, 200]  # what every checkpoint written before the size was measured trained at


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint (as a plain dict, so `weights_only` loads it)."""

    phase: int = 0  # index into the phases
    epoch: int = 0  # epochs done in that phase
    best: float = -1.0  # best validation balanced accuracy so far
    since_best: int = 0  # epochs counted towards patience
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per epoch, all runs
    runs: list[dict[str, Any]] = field(default_factory=list)  # each invocation: command, seconds, epochs
    # fine-tuning a trained model: its validation figures as it started, which every epoch had to beat
    start: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass
class Resume:
    """A checkpoint being resumed, and the phases the run that wrote it was given."""

    checkpoint: dict[str, Any]
    old_phases: list[PhasePlan]

    def optimiser_phase(self) -> str:
        ck = self.checkpoint
        return ck.get("opt_phase_name") or self.old_phases[int(ck.get("opt_phase", -1))].name

    def same_length(self, phase: PhasePlan) -> bool:
        return {p.name: p.epochs for p in self.old_phases}.get(phase.name) == phase.epochs


def load_checkpoint(path: Path, cfg: TrainConfig, effective_size: tuple[int, int],
                    progress: Progress | None) -> Resume | None:
    """The checkpoint at `path` if this configuration may go on from it; None to start afresh."""
    if not path.is_file():
        return None
    ck = torch.load(path, map_location="cpu", weights_only=True)
    same_pixels = ck.get("effective_size", LEGACY_EFFECTIVE_SIZE) == list(effective_size)
    if not same_pixels or comparable(ck.get("config", {})) != comparable(asdict(cfg)):
        # Another configuration trained here before: keep its checkpoint aside and start afresh.
        os.replace(path, path.with_suffix(".other-config.pt"))
        if progress is not None:
            progress.report(0.0, "A checkpoint from a different configuration was set aside")
        return None
    old_phases = TrainConfig(**{**ck["config"], "input_size": cfg.input_size}).phases()
    return Resume(ck, old_phases)


def comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    """The settings that must match for a checkpoint to be resumed (not the lengths: those may change)."""
    ignored = ("command", "device", "eval_batch_size", "epochs_head", "epochs_top", "epochs_all", "patience",
               "workers")
    # A checkpoint written before a setting existed ran with that setting's default (jpeg_quality: "auto"
    # gives what older versions did for full-size data, and the recorded quality for copies they never
    # re-encoded; the effective size is compared as measured, in load_checkpoint), so a run can still be
    # resumed across an upgrade.
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    return {k: v for k, v in json.loads(json.dumps({**defaults, **cfg})).items() if k not in ignored}


def resume_position(state: TrainState, phases: list[PhasePlan], old_phases: list[PhasePlan],
                    progress: Progress | None) -> None:
    """Where to go on, from the epochs done per phase, so a resumed run may also be given more (or fewer)
    epochs than it started with."""
    done_per_phase = Counter(h["phase"] for h in state.history)
    pos = next((i for i, p in enumerate(phases) if done_per_phase[p.name] < p.epochs), len(phases))
    state.phase = pos
    state.epoch = done_per_phase[phases[pos].name] if pos < len(phases) else 0
    if old_phases != phases:
        state.since_best = 0
    if progress is not None and pos < len(phases):
        progress.report(0.0, f"Resuming {phases[pos].name} at epoch {state.epoch + 1}")


def record_run(state: TrainState, cfg: TrainConfig, t0: float) -> None:
    """Every run of this command on this folder (first, resumed, lengthened) is recorded, so the manifest's
    time is the whole training's, not just the last run's."""
    if not state.runs and state.history:
        state.runs.append({"command": "(not recorded: checkpoint predates run records)",
                           "seconds": round(sum(h["seconds"] for h in state.history), 1),
                           "epochs": len(state.history)})
    state.runs.append({"command": cfg.command or " ".join(sys.argv), "seconds": 0.0, "epochs": 0,
                       "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))})


def save_checkpoint(path: Path, cfg: TrainConfig, model: nn.Module, opt: torch.optim.Optimizer,
                    sched: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler, state: TrainState,
                    phase: PhasePlan, effective_size: tuple[int, int], ema: nn.Module | None = None) -> None:
    save_atomic({"config": json.loads(json.dumps(asdict(cfg))), "arch": cfg.architecture,
                 "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "scaler": scaler.state_dict(), "state": asdict(state), "opt_phase_name": phase.name,
                 "torch_rng": torch.get_rng_state(), "effective_size": list(effective_size),
                 "ema": ema.state_dict() if ema is not None else {}}, path)


def save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
