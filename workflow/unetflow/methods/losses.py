"""Training losses (``train.loss``): ``loss(logits, labels, weights) -> scalar tensor``.

``logits`` are (N, K, h, w) in any autocast precision, ``labels`` (N, h, w) class indices,
``weights`` (N, h, w) the U-Net weight map (paper eq. 2). Pixels whose class is unknown
(sparse annotations) are labelled ``IGNORE`` and weigh 0: a loss gives them no gradient.
Add one with ``@loss("name")``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..io import IGNORE
from .registry import Registry

LOSSES: Registry = Registry("loss", "train.loss")
loss = LOSSES.register


@loss("weighted_cross_entropy")
def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``mean_x w(x) * -log softmax(logits)[label(x)](x)`` over every pixel of the batch (paper eq. 1),
    computed in float32 whatever the autocast precision; unknown pixels add exactly 0."""
    return (F.cross_entropy(logits.float(), labels.long(), reduction="none", ignore_index=IGNORE) * weights).mean()
