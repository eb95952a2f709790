"""One training step: the weighted loss, the optimiser, the learning-rate schedule, and the guard
that never lets a non-finite step change the weights.

A step runs backward, unscales the gradients (fp16 grad scaler), measures
their global norm, clips it to ``grad_clip`` and applies the update only when
both the loss and the gradient norm are finite. A skipped step leaves the
weights and the optimiser state (momentum, Adam moments, step counts) exactly
as they were; only the fp16 grad scaler lowers its scale, which is its job.
:class:`DivergenceGuard` counts skipped steps in a row and stops training
with a message that says what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError


def learning_rate(progress: float, *, lr: float, schedule: str = "constant", warmup: float = 0.0) -> float:
    """Learning rate at ``progress`` in [0, 1]: linear warm-up over the first ``warmup`` fraction,
    then ``constant``, ``cosine`` (to 0) or ``poly`` (``(1 - t)**0.9``, nnU-Net's)."""
    if warmup > 0 and progress < warmup:
        return lr * progress / warmup
    rest = (progress - warmup) / max(1e-12, 1.0 - warmup)
    rest = min(max(rest, 0.0), 1.0)
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * rest))
    if schedule == "poly":
        return lr * (1.0 - rest) ** 0.9
    return lr


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``mean_x w(x) * -log softmax(logits)[label(x)](x)`` over every pixel of the batch (paper eq. 1),
    computed in float32 whatever the autocast precision."""
    return (F.cross_entropy(logits.float(), labels.long(), reduction="none") * weights).mean()


def make_optimizer(model: nn.Module, *, optimizer: str, lr: float, momentum: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's, 0.99) or Adam."""
    if optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


@dataclass(frozen=True)
class StepOutcome:
    """What one step did: its loss, the global gradient norm before clipping, and whether the
    update was applied (False when either was not finite)."""

    loss: float
    grad_norm: float
    applied: bool


def optimisation_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                      loss: torch.Tensor, *, grad_clip: float | None = None) -> StepOutcome:
    """Backward, unscale, clip to ``grad_clip`` (global L2 norm) and apply, unless not finite.

    Parameters
    ----------
    model, optimizer, scaler
        The network, its optimiser and the grad scaler (disabled except for fp16).
    loss
        The step's scalar loss, not yet backpropagated.
    grad_clip
        Largest global gradient norm applied; larger gradients are scaled down to it
        (None: no clipping).

    Returns
    -------
    StepOutcome
        Loss and gradient norm (read from the device together, one synchronisation).

    Notes
    -----
    Gradients are unscaled before the norm is taken, so clipping acts on the true
    gradient under fp16 loss scaling. A non-finite loss gives non-finite gradients,
    so one test of the norm covers both.
    """
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    max_norm = grad_clip if grad_clip is not None else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm, error_if_nonfinite=False)
    loss_value, norm_value = torch.stack([loss.detach().float(), grad_norm.detach().float()]).tolist()
    applied = math.isfinite(loss_value) and math.isfinite(norm_value)
    if applied:
        scaler.step(optimizer)
    else:
        optimizer.zero_grad(set_to_none=True)
    scaler.update()
    return StepOutcome(loss_value, norm_value, applied)


class DivergenceGuard:
    """Counts skipped (non-finite) steps, in all and in a row; training stops once
    ``max_in_a_row`` steps in a row were skipped."""

    def __init__(self, max_in_a_row: int):
        self.max_in_a_row = max_in_a_row
        self.in_a_row = 0
        self.total = 0

    def record(self, outcome: StepOutcome) -> None:
        if outcome.applied:
            self.in_a_row = 0
            return
        self.in_a_row += 1
        self.total += 1

    @property
    def diverged(self) -> bool:
        return self.in_a_row >= self.max_in_a_row


def divergence_error(model_name: str, *, iteration: int, lr: float, precision: str, mixed_precision: bool,
                     grad_clip: float | None, problem: str, kept: str) -> InputError:
    """The message of a training run that went non-finite: the model, where, why, and the fix."""
    fixes = [f"lower the learning rate (models.{model_name}.train.lr, or train.lr for every model)"]
    fixes.append("set train.grad_clip (e.g. 12)" if grad_clip is None else f"lower train.grad_clip (now {grad_clip})")
    if mixed_precision:
        fixes.append("train in precision: fp32")
    return InputError(
        f"training of model '{model_name}' diverged at iteration {iteration} (learning rate {lr:.3g}, "
        f"precision {precision}): {problem}. No model.pt was written; {kept}. Fix: {', or '.join(fixes)}; "
        "then rerun"
    )
