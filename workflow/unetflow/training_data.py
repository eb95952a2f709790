"""What training reads: augmented samples in a fixed, resumable order, and validation slices."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import zarr
from torch.utils.data import Sampler

from . import io
from .errors import InputError


IN_MEMORY_LIMIT_BYTES = 2 * 1024**3


class SampleBank:
    """Precomputed samples of one or more ``augmented.zarr`` stores, as one map-style dataset.

    Stores are opened lazily, so the object can be sent to data-loader workers.
    Sample banks up to ``in_memory_limit`` bytes are read into memory once, so
    training steps never wait on reads; larger ones are read a batch at a time.
    """

    def __init__(self, paths: list[Path], *, in_memory_limit: int = IN_MEMORY_LIMIT_BYTES):
        self.paths = [Path(path) for path in paths]
        groups = [self._open(path) for path in self.paths]
        self.in_memory = sum(group[name].nbytes for group in groups for name in ("image", "labels", "weights")) <= in_memory_limit
        self.sizes = [group["image"].shape[0] for group in groups]
        shapes = {(group["image"].shape[1], group["labels"].shape[1]) for group in groups}
        if len(shapes) != 1:
            raise InputError(f"{', '.join(map(str, self.paths))}: sample stores have different tile sizes {shapes}; "
                             "rerun augment for all training datasets")
        self.input_size, self.output_size = shapes.pop()
        self._groups: list | None = None

    @staticmethod
    def _open(path: Path) -> zarr.Group:
        group = io.open_store(path)
        if not {"image", "labels", "weights"} <= set(group.array_keys()):
            raise InputError(f"{path}: not an augmented sample store (image/labels/weights missing); rerun augment")
        for name in ("image", "labels", "weights"):
            io.checked_array(group, name)
        return group

    def __len__(self) -> int:
        return sum(self.sizes)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """A whole batch with one read per array and store (the data loader calls this)."""
        if self._groups is None:
            self._groups = [self._open(path) for path in self.paths]
            if self.in_memory:
                self._groups = [{name: group[name][:] for name in ("image", "labels", "weights")}
                                for group in self._groups]
        located = [self._locate(index) for index in indices]
        found: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for store in sorted({store for store, _ in located}):
            wanted = sorted({offset for s, offset in located if s == store})
            group = self._groups[store]
            arrays = [group[name][wanted] if self.in_memory else group[name].get_orthogonal_selection((wanted,))
                      for name in ("image", "labels", "weights")]
            for position, offset in enumerate(wanted):
                found[store, offset] = tuple(array[position] for array in arrays)
        return [found[key] for key in located]

    def _locate(self, index: int) -> tuple[int, int]:
        if index < 0:
            raise IndexError(index)
        for store, size in enumerate(self.sizes):
            if index < size:
                return store, index
            index -= size
        raise IndexError(index)


def batch_indices(seed: int, iteration: int, batch_size: int, count: int) -> list[int]:
    """Sample indices of one iteration: a fresh seeded permutation per pass over the samples.

    A pure function of its arguments, so a resumed run reads exactly what an
    uninterrupted run would have read.
    """
    positions = iteration * batch_size + np.arange(batch_size)
    indices = []
    for position in positions:
        epoch, offset = divmod(int(position), count)
        indices.append(int(np.random.default_rng([seed, epoch]).permutation(count)[offset]))
    return indices


class IterationBatches(Sampler):
    """Batch sampler for iterations ``start .. stop-1`` (see :func:`batch_indices`)."""

    def __init__(self, *, seed: int, start: int, stop: int, batch_size: int, count: int):
        self.seed, self.start, self.stop, self.batch_size, self.count = seed, start, stop, batch_size, count

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for iteration in range(self.start, self.stop):
            yield batch_indices(self.seed, iteration, self.batch_size, self.count)


def load_validation(paths: list[Path]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(normalised image, class labels) of every slice of the validation stores."""
    slices = []
    for path in paths:
        store = io.open_store(path)
        classes = io.open_labels(store, "classes")
        if classes is None:
            raise InputError(f"{path}: validation data needs labels; add labels to it or remove it from validate_on")
        raw = io.open_raw(store)
        stats = io.normalization(raw)
        slices += [(io.normalize(raw[z], stats), classes[z]) for z in range(raw.shape[0])]
    return slices
