"""Training of a U-Net on augmented samples: weighted loss, checkpoints, resume, metrics.

Loss: pixel-wise softmax cross-entropy weighted by the U-Net weight map,
``mean_x w(x) * -log p_label(x)(x)``; a network with affinity outputs adds their weighted
binary cross-entropy on targets made from each batch's class tiles (validation scores the
classes only). Optimiser: SGD with momentum 0.99 as in
the paper (Adam as an option), gradients clipped to ``grad_clip``. A step whose
loss or gradient is not finite is skipped (see :mod:`unetflow.optimisation`);
``max_nonfinite_steps`` of them in a row stop training with an error, and no
model with a non-finite weight is ever written. Training stops at
``iterations`` or after ``max_minutes`` of training time, whichever comes
first, and the learning-rate schedule follows whichever of the two is further
along. A checkpoint every ``checkpoint_every`` iterations holds the model,
optimiser, grad scaler, RNG states and iteration, so rerunning an interrupted
job resumes where it stopped and, on the CPU, ends with the same weights as an
uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from . import checkpoint, io, model_versions, start_model
from . import settings as settings_module
from .augmentation import OnlineSamples
from .errors import InputError
from .geometry import format_size, sample_shape, size_of
from .fingerprints import code_fingerprint, settings_fingerprint
from .inference import (
    autocast,
    autocast_dtype,
    describe_precision,
    load_weights,
    make_forward,
    resolve_device,
    tile_geometry,
)
from .methods.architectures import Architecture
from .label_targets import affinity_targets
from .methods.losses import LOSSES, weighted_affinity_loss
from .methods.metrics import foreground_iou, pixel_error
from .model import center_crop, non_finite_tensors
from .optimisation import (
    DivergenceGuard,
    StepOutcome,
    StepStats,
    divergence_error,
    fused_on,
    learning_rate,
    make_optimizer,
    optimisation_step,
)
from .selection import Selection
from .tiling import predict_whole
from .training_data import IterationBatches, SampleBank, collate
from .training_outputs import write_failed_run, write_outputs

log = logging.getLogger(__name__)

VALIDATION_TILE = 128


@dataclass(frozen=True)
class TrainSettings:
    """The config's ``train`` section (defaults: the schema's, see :meth:`from_config`)."""

    iterations: int
    max_minutes: float | None
    batch_size: int
    loss: str
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    schedule: str
    warmup: float
    grad_clip: float | None
    max_nonfinite_steps: int
    precision: str
    device: str
    seed: int
    validate_every: int
    keep: str
    checkpoint_every: int
    log_every: int
    workers: int

    @classmethod
    def from_config(cls, values: dict) -> TrainSettings:
        """From the config's ``train`` keys in ``values``, the schema's defaults for the rest."""
        return cls(**settings_module.section("train", values))

    def learning_rate(self, progress: float) -> float:
        return learning_rate(progress, lr=self.lr, schedule=self.schedule, warmup=self.warmup)


class IntervalLog:
    """Time since the last metrics row, and the part of it spent waiting for data."""

    def __init__(self):
        self.data_wait = 0.0
        self.start = time.perf_counter()

    def row(self, figures: dict[str, float], *, iteration: int, lr: float, seconds: float) -> dict[str, float]:
        """A metrics row from the step figures of :meth:`StepStats.read`."""
        return {"iteration": iteration, "loss": figures["loss"], "lr": lr, "seconds": seconds,
                "grad_norm": figures["grad_norm"], "grad_norm_max": figures["grad_norm_max"],
                "skipped_steps": figures["skipped_steps"],
                "data_wait_fraction": self.data_wait / max(1e-9, time.perf_counter() - self.start)}


def validate(model: nn.Module, architecture: Architecture, slices: list, device: torch.device,
             dtype: torch.dtype | None) -> dict[str, float]:
    """Mean loss (unweighted cross-entropy), pixel error and foreground IoU over whole slices (or
    volumes), predicted tile by tile as the predict rule does."""
    model.eval()
    losses, errors, ious = [], [], []
    for image, classes in slices:
        geometry = tile_geometry(architecture, VALIDATION_TILE, image.shape[1:])  # images are (c, ...)
        forward = make_forward(model, device, dtype, geometry.tile, num_classes=architecture.num_classes)
        outputs = predict_whole(forward, image, tile=geometry.tile, margin=geometry.margin,
                                num_classes=architecture.output_channels, blend=geometry.blend, align=geometry.align)
        probabilities = outputs[:architecture.num_classes]  # the classes (affinities follow them)
        known = io.known(classes)  # sparse annotations: scored where the class is known
        picked = np.take_along_axis(probabilities, np.where(known, classes, 0)[None].astype(np.int64), axis=0)[0]
        losses.append(float(-np.log(np.clip(picked[known], 1e-7, 1.0)).mean()))
        predicted = probabilities.argmax(axis=0)
        errors.append(pixel_error(predicted[known], classes[known]))
        ious.append(foreground_iou(predicted[known], classes[known]))
    model.train()
    return {"val_loss": float(np.mean(losses)), "val_pixel_error": float(np.mean(errors)),
            "val_foreground_iou": float(np.mean(ious))}


@dataclass
class TrainingState:
    """Everything a checkpoint holds: the network, its optimiser and grad scaler, and how far
    training got (iteration, training seconds, metrics rows so far)."""

    model: nn.Module
    architecture: Architecture
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    selection: Selection
    iteration: int = 0
    elapsed: float = 0.0
    rows: list[dict] = field(default_factory=list)

    @classmethod
    def start(cls, architecture: Architecture, settings: TrainSettings, device: torch.device,
              dtype: torch.dtype | None) -> TrainingState:
        torch.manual_seed(settings.seed)
        model = architecture.network().to(device)
        optimizer = make_optimizer(model, optimizer=settings.optimizer, lr=settings.lr, momentum=settings.momentum,
                                   weight_decay=settings.weight_decay, fused=fused_on(device))
        return cls(model, architecture, optimizer, torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
                   Selection(settings.keep))

    def resume(self, saved: dict) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scaler.load_state_dict(saved["scaler"])
        checkpoint.restore_rng_states(saved["rng"])
        self.selection = Selection.from_state(saved["selection"])
        self.iteration, self.elapsed, self.rows = saved["iteration"], saved["elapsed"], saved["metrics"]

    def save(self, path: Path, fingerprint: str) -> None:
        checkpoint.save(path, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": checkpoint.rng_states(), "iteration": self.iteration,
            "elapsed": self.elapsed, "metrics": self.rows, "selection": self.selection.state(),
            "fingerprint": fingerprint,
        })


def training_step(state: TrainingState, batch: tuple[torch.Tensor, ...], *, loss_function: Callable,
                  device: torch.device, dtype: torch.dtype | None, grad_clip: float | None) -> StepOutcome:
    """Forward, loss (weighted by the weight map) and the guarded optimisation step on one batch;
    a network with affinity outputs adds their loss (:func:`unetflow.methods.losses.weighted_affinity_loss`)
    on targets made from the batch's labels."""
    offsets = state.architecture.affinities
    targets = [torch.from_numpy(array) for array in affinity_targets(batch[1].numpy(), offsets)] if offsets else []
    image, labels, weights, *targets = (tensor.to(device, non_blocking=True) for tensor in (*batch, *targets))
    with autocast(device, dtype):
        logits = state.model(image)
    # same-size models may produce a few more pixels than the label tile (Architecture.input_size)
    logits = center_crop(logits, labels.shape[1:])
    classes = state.architecture.num_classes
    loss = loss_function(logits[:, :classes], labels, weights)
    if offsets:
        loss = loss + weighted_affinity_loss(logits[:, classes:], *targets, weights)
    return optimisation_step(state.model, state.optimizer, state.scaler, loss, grad_clip=grad_clip)


def train(
    *,
    architecture: Architecture,
    settings: TrainSettings,
    samples: SampleBank | OnlineSamples,
    validation: list[tuple[np.ndarray, np.ndarray]],
    out_dir: Path,
    fingerprint_of: dict,
    on_iteration: Callable[[int], None] | None = None,
    start_from: start_model.StartModel | None = None,
) -> pd.DataFrame:
    """Train (or resume training) and write ``model.pt``, ``metrics.csv`` and ``loss.png``,
    also kept as a version of their own (:mod:`unetflow.model_versions`).

    ``on_iteration(i)`` is called after iteration ``i`` and its checkpoint (tests use
    it to interrupt a run). Raises :class:`~unetflow.errors.InputError` when training
    diverges (see :class:`~unetflow.optimisation.DivergenceGuard`); then no
    ``model.pt`` exists and the last good checkpoint stays. With ``start_from`` the network starts
    from that model's weights (fine-tuning), and ``model.pt`` records which.
    """
    model_name = out_dir.name
    check_sample_sizes(model_name, architecture, samples)
    if settings.keep == "best" and not validation:
        raise InputError(f"models.{model_name}.train.keep is best, but there is no validation data to choose the "
                         "iterate by; name labelled datasets in validate_on, or set keep: last")
    loss_function = LOSSES.get(settings.loss)
    device = resolve_device(settings.device)
    dtype = autocast_dtype(settings.precision, device)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    state = TrainingState.start(architecture, settings, device, dtype)
    if start_from is not None:
        load_weights(Path(start_from.path), state.model, start_from.state_dict)
        log.info("starting from the weights of %s (sha256 %s)", start_from.path, start_from.sha256[:12])
    checkpoint_path = out_dir / "checkpoint.pt"
    key = checkpoint_key(fingerprint_of, architecture, settings, start_from)
    saved = checkpoint.load(checkpoint_path, key)
    checkpointed = None
    if saved is not None:
        state.resume(saved)
        checkpointed = state.iteration
        log.info("resuming from %s at iteration %d", checkpoint_path, state.iteration)
    start = state.iteration
    # an in-memory bank is a gather: workers would each hold a copy of it and bring no speed
    workers = 0 if isinstance(samples, SampleBank) and samples.in_memory else settings.workers
    loader = DataLoader(
        samples, num_workers=workers, pin_memory=device.type == "cuda", collate_fn=collate,
        batch_sampler=IterationBatches(seed=settings.seed, start=start, stop=settings.iterations,
                                       batch_size=settings.batch_size, count=len(samples)),
        generator=torch.Generator().manual_seed(settings.seed),
    )
    precision = describe_precision(settings.precision, device, dtype)
    log.info("training on %s, precision %s", device, precision)
    guard = DivergenceGuard(settings.max_nonfinite_steps)
    lr = state.optimizer.param_groups[0]["lr"]

    def diverged(problem: str) -> InputError:
        kept = (f"the last good checkpoint (iteration {checkpointed}) is kept in {checkpoint_path}"
                if checkpointed is not None else "no checkpoint had been written yet")
        write_failed_run(out_dir, pd.DataFrame(state.rows))
        return divergence_error(model_name, iteration=state.iteration, lr=lr, precision=precision,
                                mixed_precision=dtype is not None, grad_clip=settings.grad_clip, problem=problem,
                                kept=kept)

    budget = settings.max_minutes * 60 if settings.max_minutes else math.inf
    # step figures stay on the device and are read every read_every steps (one transfer)
    read_every = min(settings.log_every, settings.max_nonfinite_steps)
    stats = StepStats(device)
    state.model.train()
    interval = IntervalLog()
    batches = iter(loader)
    while state.iteration < settings.iterations and state.elapsed < budget:
        step_start = time.perf_counter()
        lr = settings.learning_rate(max(state.iteration / settings.iterations, state.elapsed / budget))
        for group in state.optimizer.param_groups:
            group["lr"] = lr
        batch = next(batches)
        interval.data_wait += time.perf_counter() - step_start
        stats.add(training_step(state, batch, loss_function=loss_function, device=device, dtype=dtype,
                                grad_clip=settings.grad_clip))
        state.iteration += 1
        state.elapsed += time.perf_counter() - step_start
        finished = state.iteration == settings.iterations or state.elapsed >= budget
        validated = bool(validation) and (state.iteration % settings.validate_every == 0 or finished)
        checkpointed_now = state.iteration % settings.checkpoint_every == 0 and not finished
        if state.iteration % read_every == 0 or finished or validated or checkpointed_now:
            figures = stats.read()
            guard.record(figures)
            if figures["skipped_steps"]:
                log.warning("iteration %d: %d steps skipped since the last report (non-finite loss or gradient; "
                            "last loss %s, gradient norm %s), %d in a row", state.iteration,
                            figures["skipped_steps"], figures["last_loss"], figures["last_grad_norm"], guard.in_a_row)
            if guard.diverged:
                state.rows.append(interval.row(figures, iteration=state.iteration, lr=lr, seconds=state.elapsed))
                raise diverged(f"{guard.most_in_a_row} steps in a row had a non-finite loss or gradient (last: "
                               f"loss {figures['last_loss']}, gradient norm {figures['last_grad_norm']}) and were "
                               "skipped")
            state.rows.append(metrics_row(state, figures, interval, lr, settings.iterations,
                                          validation if validated else [], device, dtype))
            if validated:
                state.selection.offer(state.iteration, state.rows[-1]["val_loss"], state.model)
            interval = IntervalLog()
            if checkpointed_now and guard.in_a_row == 0:
                refuse_non_finite_weights(state.model, diverged)
                state.save(checkpoint_path, key)
                checkpointed = state.iteration
        if on_iteration is not None:
            on_iteration(state.iteration)
    recorded = {"normalization": samples.normalization,
                "selection": state.selection.apply(state.model, state.iteration)}
    refuse_non_finite_weights(state.model, diverged)
    metrics = pd.DataFrame(state.rows)
    metrics["kept"] = metrics["iteration"] == recorded["selection"]["kept_iteration"]
    if guard.total:
        log.warning("%d of %d steps were skipped (non-finite loss or gradient); see skipped_steps in metrics.csv",
                    guard.total, state.iteration - start)
    if start_from is not None:
        recorded["started_from"] = start_from.describe()
    write_outputs(out_dir, state.architecture, state.model, metrics=metrics, train_settings=asdict(settings),
                  iterations=state.iteration, sample_output_size=samples.output_size, **recorded)
    model_versions.keep(out_dir)
    checkpoint_path.unlink(missing_ok=True)
    return metrics


def checkpoint_key(fingerprint_of: dict, architecture: Architecture, settings: TrainSettings,
                   start_from: start_model.StartModel | None) -> str:
    """What a checkpoint must have been written with to be resumed: the same inputs
    (``fingerprint_of``), training code and library versions (:func:`code_fingerprint`, so a
    run never resumes weights of other code), architecture, settings and start model."""
    return settings_fingerprint({
        **fingerprint_of, "code": code_fingerprint("train"),
        "architecture": [architecture.name, architecture.to_dict()],
        "train": settings_module.without_runtime("train", asdict(settings)),
        "start_from": None if start_from is None else start_from.sha256,
    })


def metrics_row(state: TrainingState, figures: dict[str, float], interval: IntervalLog, lr: float, iterations: int,
                validation: list, device: torch.device, dtype: torch.dtype | None) -> dict[str, float]:
    """The interval's metrics row (validated on ``validation`` if given), also logged."""
    row = interval.row(figures, iteration=state.iteration, lr=lr, seconds=state.elapsed)
    if validation:
        validation_start = time.perf_counter()
        row.update(validate(state.model, state.architecture, validation, device, dtype))
        state.elapsed += time.perf_counter() - validation_start  # the budget is wall-clock time
    log.info("iteration %d/%d loss %.4f lr %.2e grad norm %.3g%s %.1f s%s", state.iteration, iterations, row["loss"], lr,
             row["grad_norm"], f" skipped {row['skipped_steps']}" if row["skipped_steps"] else "", state.elapsed,
             "".join(f" {k} {v:.4f}" for k, v in row.items() if k.startswith("val_")))
    return row


def check_sample_sizes(model_name: str, architecture: Architecture, samples: SampleBank | OnlineSamples) -> None:
    """Samples must be exactly the model's input and output tiles."""
    output, given = sample_shape(samples.output_size), sample_shape(samples.input_size)
    if len(output) != architecture.dims:
        raise InputError(f"model '{model_name}' is {architecture.dims}-D, its samples are {len(output)}-D; set dims "
                         "to the model's and rerun (the workflow makes samples of the configured dims)")
    needed = architecture.input_shape(output)
    if given != needed:
        needed_size, output_size = format_size(size_of(needed)), format_size(size_of(output))
        raise InputError(
            f"model '{model_name}': its samples are {format_size(size_of(given))} -> {output_size} px, but the "
            f"model needs {needed_size} px of input for {output_size} px of output; rerun augment with "
            f"--input-size {needed_size} (the workflow picks each model's sizes itself)"
        )


def refuse_non_finite_weights(model: nn.Module, error: Callable[[str], InputError]) -> None:
    """Raise ``error(problem)`` if any weight is NaN or infinite: such a model is never written."""
    broken = non_finite_tensors(model)
    if broken:
        raise error(f"{len(broken)} weight tensors hold NaN or infinity ({', '.join(broken[:3])}"
                    f"{', ...' if len(broken) > 3 else ''})")
