"""Which iterate of a training run becomes the model (``train.keep``).

``last`` (default) keeps the final iterate, as the paper does: the learning-rate schedules
end annealed (cosine and poly reach 0 at the end of the iterations or of the time budget),
and the validation slices are few (ISBI 2012: 3), so the lowest of their noisy losses
would be chosen partly by chance, on the slices that then tune the segmentation too.
``best`` keeps the iterate of the lowest validation loss (checked every
``validate_every`` iterations), for runs whose validation loss rises again before the end
(a long constant learning rate on few slices). Either way the run records the iterate it
kept and the lowest validation loss with its iteration (``kept`` in metrics.csv, model.pt's
``selection``), and the report shows both, so a run shows whether the choice mattered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

KEEP = ("last", "best")


@dataclass
class Selection:
    """The lowest validation loss so far, its iteration, and with ``keep: best`` its weights."""

    keep: str
    best_iteration: int | None = None
    best_loss: float = math.inf
    weights: dict[str, torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.keep not in KEEP:
            raise ValueError(f"train.keep: {self.keep!r} is not one of {', '.join(KEEP)}")

    def offer(self, iteration: int, validation_loss: float, model: nn.Module) -> None:
        """Note a validated iterate; a lower finite loss becomes the best (its weights copied with ``best``)."""
        if not math.isfinite(validation_loss) or validation_loss >= self.best_loss:
            return
        self.best_iteration, self.best_loss = iteration, validation_loss
        if self.keep == "best":
            self.weights = {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}

    def state(self) -> dict:
        """What a checkpoint holds of it, so a resumed run selects as an uninterrupted one."""
        return {"keep": self.keep, "best_iteration": self.best_iteration, "best_loss": self.best_loss,
                "weights": self.weights}

    @classmethod
    def from_state(cls, saved: dict) -> Selection:
        return cls(saved["keep"], saved["best_iteration"], saved["best_loss"], saved["weights"])

    def apply(self, model: nn.Module, last_iteration: int) -> dict:
        """Load the kept iterate's weights into ``model`` and return the record of the choice."""
        kept = last_iteration
        if self.keep == "best" and self.weights is not None:
            model.load_state_dict(self.weights)
            kept = self.best_iteration
        return {"keep": self.keep, "kept_iteration": kept, "best_iteration": self.best_iteration,
                "best_val_loss": None if self.best_iteration is None else self.best_loss}
