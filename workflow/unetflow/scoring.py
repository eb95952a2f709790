"""Counts that scores are computed from, added up block by block, so that an image of any size
is scored in bounded memory and exactly as in one piece.

:class:`Confusion` holds the pixel counts of a foreground prediction against the true
foreground (pixel metrics); :class:`Contingency` the voxel counts of every (true object,
segmented object) pair, the true background as object 0 (object metrics: adapted Rand
error and variation of information are functions of its rows of true objects,
Arganda-Carreras et al. 2015, Meila 2007; the detection scores need the background's row
too, for the whole extent of each segmented object). Both are sums over voxels, so adding
the counts of disjoint blocks gives the counts of their union, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

LABEL_BITS = 32  # object numbers are uint32: a pair is one uint64 key


@dataclass(frozen=True)
class Confusion:
    """Pixels of a boolean prediction against the boolean truth."""

    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0
    true_negative: int = 0

    @classmethod
    def of(cls, predicted: np.ndarray, truth: np.ndarray) -> Confusion:
        predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
        true_positive = int(np.count_nonzero(predicted & truth))
        predicted_count, truth_count = int(np.count_nonzero(predicted)), int(np.count_nonzero(truth))
        return cls(true_positive, predicted_count - true_positive, truth_count - true_positive,
                   predicted.size - predicted_count - truth_count + true_positive)

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(self.true_positive + other.true_positive, self.false_positive + other.false_positive,
                         self.false_negative + other.false_negative, self.true_negative + other.true_negative)

    @property
    def total(self) -> int:
        return self.true_positive + self.false_positive + self.false_negative + self.true_negative


class Contingency:
    """Voxels of each (true object, segmented object) pair, the true background (0) and the
    unsegmented voxels (object 0) included; voxels of unknown label (sparse annotations) are
    not counted."""

    def __init__(self) -> None:
        self._keys = np.zeros(0, np.uint64)
        self._counts = np.zeros(0, np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []

    @classmethod
    def of(cls, truth: np.ndarray, objects: np.ndarray, known: np.ndarray | None = None) -> Contingency:
        table = cls()
        table.add(truth, objects, known)
        return table

    def add(self, truth: np.ndarray, objects: np.ndarray, known: np.ndarray | None = None) -> None:
        """Count the voxels of one block (any shape; ``truth`` and ``objects`` alike), only those
        where ``known`` holds if given."""
        truth, objects = np.ravel(truth), np.ravel(objects)
        if known is not None:
            known = np.ravel(known)
            truth, objects = truth[known], objects[known]
        keys = (truth.astype(np.uint64) << np.uint64(LABEL_BITS)) | objects.astype(np.uint64)
        unique, counts = np.unique(keys, return_counts=True)
        self._pending.append((unique, counts.astype(np.int64)))
        if sum(len(keys) for keys, _ in self._pending) > 4 * max(len(self._keys), 1 << 16):
            self._collapse()

    def __iadd__(self, other: Contingency) -> Contingency:
        other._collapse()
        self._pending.append((other._keys, other._counts))
        return self

    def _collapse(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys, *(keys for keys, _ in self._pending)])
        counts = np.concatenate([self._counts, *(counts for _, counts in self._pending)])
        self._keys, inverse = np.unique(keys, return_inverse=True)
        self._counts = np.bincount(inverse, weights=counts, minlength=len(self._keys)).astype(np.int64)
        self._pending = []

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(true object, segmented object, voxels) of every pair that shares a voxel, background
        (0) included on both sides."""
        self._collapse()
        rows = (self._keys >> np.uint64(LABEL_BITS)).astype(np.int64)
        columns = (self._keys & np.uint64(2**LABEL_BITS - 1)).astype(np.int64)
        return rows, columns, self._counts

    @property
    def voxels(self) -> int:
        """The voxels of the true objects (those the object metrics score)."""
        rows, _, counts = self.pairs()
        return int(counts[rows > 0].sum())

    def table(self, *, normalize: bool = False) -> sparse.csr_array:
        """The table of the true objects as skimage's ``contingency_table`` gives it with the
        true background ignored (rows: true objects, columns: segmented objects), counts or, with
        ``normalize``, fractions of the voxels of true objects."""
        rows, columns, counts = self.pairs()
        scored = rows > 0
        rows, columns, values = rows[scored], columns[scored], counts[scored].astype(np.float64)
        if normalize:
            values = values / values.sum()
        shape = (int(rows.max(initial=0)) + 1, int(columns.max(initial=0)) + 1)
        return sparse.csr_array((values, (rows, columns)), shape=shape)
