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
from torch import nn

from .errors import InputError


def learning_rate(progress: float, *, lr: float, schedule: str, warmup: float) -> float:
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


def make_optimizer(model: nn.Module, *, optimizer: str, lr: float, momentum: float,
                   weight_decay: float, fused: bool = False) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's, 0.99) or Adam; ``fused`` kernels (one launch for all
    weights, and a skip decided on the device: see :func:`optimisation_step`)."""
    options = {"fused": True} if fused else {}
    if optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, **options)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, **options)


def fused_on(device: torch.device) -> bool:
    """Fused optimisers on GPUs: they skip a non-finite step without a host round-trip. The CPU
    keeps the default kernels (a host read costs nothing there, and fused ones round differently,
    so CPU runs stay bit-identical to earlier ones)."""
    return device.type == "cuda"


@dataclass(frozen=True)
class StepOutcome:
    """What one step did, as 0-d tensors on the step's device (reading them synchronises a GPU,
    so :class:`StepStats` adds them up there): the loss, the global gradient norm before
    clipping, and whether the update was applied (False when either was not finite)."""

    loss: torch.Tensor
    grad_norm: torch.Tensor
    applied: torch.Tensor


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
        Loss, gradient norm and whether the step was applied, left on the device.

    Notes
    -----
    Gradients are unscaled before the norm is taken, so clipping acts on the true
    gradient under fp16 loss scaling. A non-finite loss gives non-finite gradients,
    so one test of the norm covers both. A fused optimiser is told ``found_inf``
    and skips on the device (weights and state untouched, no host round-trip);
    otherwise the finiteness is read on the host.
    """
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    max_norm = grad_clip if grad_clip is not None else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm, error_if_nonfinite=False).detach().float()
    loss = loss.detach().float()
    finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
    if optimizer.defaults.get("fused") and not scaler.is_enabled():
        optimizer.found_inf = (~finite).float()
        optimizer.step()
    elif finite.item():
        scaler.step(optimizer)
    optimizer.zero_grad(set_to_none=True)  # a skipped step's gradients are not kept either
    scaler.update()
    return StepOutcome(loss, grad_norm, finite)


class StepStats:
    """Running totals of step outcomes, kept on the device and read in one transfer.

    Per interval (since the last :meth:`read`): loss and gradient norm of the
    applied steps, the largest gradient norm, and the skipped steps; over the run:
    skipped steps in a row, and the most in a row within the interval (what
    :class:`DivergenceGuard` stops on).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.in_a_row = torch.zeros((), device=device)
        self.last_loss, self.last_grad_norm = torch.zeros((), device=device), torch.zeros((), device=device)
        self._start_interval()

    def _start_interval(self) -> None:
        zero = lambda: torch.zeros((), device=self.device)  # noqa: E731
        self.loss_sum, self.grad_norm_sum, self.applied, self.skipped = zero(), zero(), zero(), zero()
        self.grad_norm_max = torch.full((), -math.inf, device=self.device)
        self.most_in_a_row = self.in_a_row.clone()

    def add(self, outcome: StepOutcome) -> None:
        applied = outcome.applied
        self.loss_sum += torch.where(applied, outcome.loss, 0.0)
        self.grad_norm_sum += torch.where(applied, outcome.grad_norm, 0.0)
        self.grad_norm_max = torch.maximum(self.grad_norm_max, torch.where(applied, outcome.grad_norm, -math.inf))
        self.applied += applied
        self.skipped += ~applied
        self.in_a_row = torch.where(applied, 0.0, self.in_a_row + 1)
        self.most_in_a_row = torch.maximum(self.most_in_a_row, self.in_a_row)
        self.last_loss, self.last_grad_norm = outcome.loss, outcome.grad_norm

    def read(self) -> dict[str, float]:
        """The interval's figures (one device-to-host transfer); starts the next interval."""
        (loss_sum, norm_sum, norm_max, applied, skipped, in_a_row, most, last_loss, last_norm) = torch.stack([
            self.loss_sum, self.grad_norm_sum, self.grad_norm_max, self.applied, self.skipped, self.in_a_row,
            self.most_in_a_row, self.last_loss, self.last_grad_norm]).tolist()
        self._start_interval()
        return {"loss": loss_sum / applied if applied else math.nan,
                "grad_norm": norm_sum / applied if applied else math.nan,
                "grad_norm_max": norm_max if applied else math.nan, "skipped_steps": int(skipped),
                "in_a_row": int(in_a_row), "most_in_a_row": int(most), "last_loss": last_loss,
                "last_grad_norm": last_norm}


class DivergenceGuard:
    """Stops training once ``max_in_a_row`` steps in a row were skipped (non-finite)."""

    def __init__(self, max_in_a_row: int):
        self.max_in_a_row = max_in_a_row
        self.in_a_row = self.most_in_a_row = self.total = 0

    def record(self, interval: dict[str, float]) -> None:
        """Take in an interval's figures from :meth:`StepStats.read`."""
        self.total += interval["skipped_steps"]
        self.in_a_row, self.most_in_a_row = interval["in_a_row"], interval["most_in_a_row"]

    @property
    def diverged(self) -> bool:
        return self.most_in_a_row >= self.max_in_a_row


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
