"""What training reads: augmented samples in a fixed, resumable order, and validation slices."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import zarr
from torch.utils.data import Sampler, default_collate

from . import io
from .errors import InputError
from .intensity import NormalizedImage, setting_in
from .geometry import size_of

IN_MEMORY_SHARE = 0.5  # of the memory available when training starts


class SampleBatch(NamedTuple):
    """A batch of samples as arrays with the batch axis first."""

    image: np.ndarray
    labels: np.ndarray
    weights: np.ndarray


def collate(batch: SampleBatch | list) -> tuple[torch.Tensor, ...]:
    """Tensors of a batch: a :class:`SampleBatch` as it is (no copy), else PyTorch's default."""
    if isinstance(batch, SampleBatch):
        return tuple(torch.from_numpy(array) for array in batch)
    return default_collate(batch)


def available_memory_bytes() -> int:
    """Memory this process may still use: the system's available memory, or less under a
    cgroup limit (a SLURM job, a container)."""
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        meminfo = Path("/proc/meminfo").read_text()
        available = int(meminfo.split("MemAvailable:")[1].split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            available = min(available, int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(available, 0)


class SampleBank:
    """Precomputed samples of one or more ``augmented.zarr`` stores, as one map-style dataset.

    Stores are opened lazily, so the object can be sent to data-loader workers.
    A bank that fits in ``in_memory_limit`` bytes (default: half the memory
    available when training starts) is read into memory once, so training steps
    never wait on reads; a larger one is read a batch at a time, one Zarr read
    per array (data-loader workers read ahead in parallel).
    """

    def __init__(self, paths: list[Path], *, in_memory_limit: int | None = None):
        self.paths = [Path(path) for path in paths]
        groups = [self._open(path) for path in self.paths]
        self.nbytes = sum(group[name].nbytes for group in groups for name in io.SAMPLE_ARRAYS)
        limit = in_memory_limit if in_memory_limit is not None else IN_MEMORY_SHARE * available_memory_bytes()
        self.in_memory = self.nbytes <= limit
        self.sizes = [group["image"].shape[0] for group in groups]
        shapes = {(group["image"].shape[1:], group["labels"].shape[1:]) for group in groups}
        if len(shapes) != 1:
            raise InputError(f"{', '.join(map(str, self.paths))}: sample stores have different tile sizes or "
                             f"channels {shapes}; rerun augment for all training datasets")
        image_shape, label_shape = shapes.pop()
        self.channels = image_shape[0]  # images are (sample, channel, *tile)
        self.input_size, self.output_size = size_of(image_shape[1:]), size_of(label_shape)
        self.normalization = self._normalization(groups)
        self._groups: list | None = None

    def _normalization(self, groups: list[zarr.Group]) -> dict:
        """The normalisation of the images the samples were drawn from (the augment step records it;
        per dataset, the first store's statistics, as :attr:`OnlineSamples.normalization`)."""
        recorded = [group.attrs.get("unetflow", {}).get("normalization") for group in groups]
        found = {json.dumps(setting_in(one), sort_keys=True) for one in recorded}
        if None in recorded or len(found) != 1:
            raise InputError(f"{', '.join(map(str, self.paths))}: the sample stores record no normalisation or "
                             f"different ones ({sorted(found)}); rerun augment for all training datasets")
        return recorded[0]

    @staticmethod
    def _open(path: Path) -> zarr.Group:
        group = io.open_store(path)
        if not set(io.SAMPLE_ARRAYS) <= set(group.array_keys()):
            raise InputError(f"{path}: not an augmented sample store (image/labels/weights missing); rerun augment")
        for name in io.SAMPLE_ARRAYS:
            io.checked_array(group, name)
        return group

    def __len__(self) -> int:
        return sum(self.sizes)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(array[0] for array in self.__getitems__([index]))

    def __getitems__(self, indices: list[int]) -> SampleBatch:
        """A whole batch, one read (or one gather in memory) per array and store; the data loader
        calls this and :func:`collate` turns it into tensors without another copy."""
        if self._groups is None:
            self._groups = [self._open(path) for path in self.paths]
            if self.in_memory:
                self._groups = [{name: group[name][:] for name in io.SAMPLE_ARRAYS} for group in self._groups]
        located = [self._locate(index) for index in indices]
        stores = sorted({store for store, _ in located})
        if len(stores) == 1:  # the common case: gather straight into the batch
            offsets = [offset for _, offset in located]
            return SampleBatch(*(self._read(stores[0], name, offsets) for name in io.SAMPLE_ARRAYS))
        parts = {store: [offset for s, offset in located if s == store] for store in stores}
        read = {store: [self._read(store, name, offsets) for name in io.SAMPLE_ARRAYS] for store, offsets in parts.items()}
        order = [(store, parts[store].index(offset)) for store, offset in located]
        return SampleBatch(*(np.stack([read[store][i][position] for store, position in order])
                             for i in range(len(io.SAMPLE_ARRAYS))))

    def _read(self, store: int, name: str, offsets: list[int]) -> np.ndarray:
        array = self._groups[store][name]
        if self.in_memory:
            return array[offsets]
        # Zarr reads each chunk once, in sorted order; then restore the batch's order
        unique, inverse = np.unique(offsets, return_inverse=True)
        return array.get_orthogonal_selection((unique,))[inverse]

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


def load_validation(paths: list[Path], dims: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """(normalised (c, ...) image, class labels) of every slice of the validation stores, or of
    every volume for a 3-D network (``dims`` 3); slices without a known label (sparse
    annotations) are left out."""
    slices = []
    for path in paths:
        store = io.open_store(path)
        classes = io.open_labels(store, "classes")
        if classes is None:
            raise InputError(f"{path}: validation data needs labels; add labels to it or remove it from validate_on")
        image = NormalizedImage.of(io.open_raw(store))
        if dims == 3:
            slices.append((image[:], classes[:]))
        else:
            labelled = [(z, classes[z]) for z in range(image.shape[0])]
            slices += [(image[z], plane) for z, plane in labelled if io.known(plane).any()]
    return slices
