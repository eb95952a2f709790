"""Training losses (``train.loss``): ``loss(logits, labels, weights) -> scalar tensor``.

``logits`` are (N, K, h, w) in any autocast precision, ``labels`` (N, h, w) class indices,
``weights`` (N, h, w) the U-Net weight map (paper eq. 2). Pixels whose class is unknown
(sparse annotations) are labelled ``IGNORE`` and weigh 0: a loss gives them no gradient.
Add one with ``@loss("name")``. A network with affinity outputs adds
:func:`weighted_affinity_loss` on those channels.
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


def weighted_affinity_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
                           weights: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of each affinity channel's sigmoid against its target, weighted by the
    weight map at the edge's first pixel and averaged over the known edges.

    ``logits``, ``targets`` and ``valid`` are (N, A, h, w), one channel per offset
    (:func:`unetflow.label_targets.affinity_targets`); ``weights`` (N, h, w) is the U-Net weight
    map (paper eq. 2): an edge from a pixel between two touching cells weighs what that pixel
    weighs in the class loss. Unknown edges add exactly 0; computed in float32.
    """
    per_edge = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    weighted = torch.where(valid, per_edge * weights.unsqueeze(1), torch.zeros_like(per_edge))
    return weighted.sum() / valid.sum().clamp(min=1)
