"""Sparse annotations: which label pixels are known.

Labs paint a few objects, or scribbles, on some slices and leave the rest. Counting the
rest as background would teach the network that unpainted cells are background, so such
pixels are *unknown*: ``labels/classes`` holds :data:`unetflow.io.IGNORE` there and
``labels/objects`` 0. A dataset says which pixels are unknown by an ``ignore_label`` (the
value painted on them) and by ``labelled_slices`` (the slices annotated at all).

Downstream, unknown pixels weigh 0 in the loss (its gradient there is exactly zero) and in
the weight map (no class weight, no border term), tiles with no known pixel are not drawn,
and validation, tuning and evaluation score known pixels only (object scores already leave
out the truth's background, objects 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Annotation:
    """What is known of a label stack.

    ``ignore_label``: the value of unknown pixels (None: none); ``labelled``: positions of the
    annotated slices in the stack as read (None: every slice).
    """

    ignore_label: int | None = None
    labelled: frozenset[int] | None = None

    @property
    def sparse(self) -> bool:
        return self.ignore_label is not None or self.labelled is not None

    def slice_known(self, index: int) -> bool:
        """Slice ``index`` was annotated at all."""
        return self.labelled is None or index in self.labelled

    def unknown(self, labels: np.ndarray, start: int = 0) -> np.ndarray | None:
        """Unknown pixels of ``labels``, a run of (z, y, x) slices from position ``start``;
        None where every pixel is known."""
        if not self.sparse:
            return None
        unknown = labels == self.ignore_label if self.ignore_label is not None else np.zeros(labels.shape, bool)
        for offset in range(labels.shape[0]):
            if not self.slice_known(start + offset):
                unknown[offset] = True
        return unknown

    def known_values(self, values: np.ndarray) -> np.ndarray:
        """The distinct label values of a slice without the ignore label."""
        return values if self.ignore_label is None else values[values != self.ignore_label]

    def check(self, kind: str, num_classes: int, where: str) -> None:
        """The ignore label is no value that means something for labels of ``kind``."""
        if self.ignore_label is None:
            return
        if kind in ("binary", "instance") and self.ignore_label == 0:
            raise InputError(f"{where}: ignore_label is 0, which is the background of {kind} labels; paint the "
                             "unknown pixels with a value of their own (e.g. 65535, or 255 in 8-bit binary masks "
                             "of 0/1) and give that, or give labelled_slices for whole unlabelled slices")
        if kind == "classes" and self.ignore_label < num_classes:
            raise InputError(f"{where}: ignore_label is {self.ignore_label}, which is the class index "
                             f"{self.ignore_label} of num_classes {num_classes}; give a value >= {num_classes} "
                             "(e.g. 255)")


def from_options(ignore_label: int | None, labelled_slices: Sequence[int] | None,
                 selected: Sequence[int]) -> Annotation:
    """The annotation of a label stack read at the stack's slices ``selected``, with
    ``labelled_slices`` numbered in the whole stack (None: all)."""
    labelled = None
    if labelled_slices is not None:
        wanted = set(labelled_slices)
        labelled = frozenset(position for position, z in enumerate(selected) if z in wanted)
    return Annotation(ignore_label, labelled)
