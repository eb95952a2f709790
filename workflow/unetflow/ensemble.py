"""Ensembles: the per-class probabilities of several models averaged before segmentation.

An ensemble (``models.<name>.ensemble: [members]``, or the fold models of ``folds: k``,
:mod:`unetflow.folds`) predicts nothing itself: its probabilities are the voxel-wise mean of its
members' prediction stores, which must agree in shape, classes, dtype and voxel size. The mean
streams chunk by chunk with Dask (memory is a few chunks per worker, whatever the data) and is
taken in float64, so an ensemble of identical members gives back exactly the members' values;
uint8 stores are averaged as stored (probability x 255) and rounded back.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import dask.array as da
import numpy as np
import zarr

from . import io, ngff
from .errors import InputError
from .parallel import TaskProgress

log = logging.getLogger(__name__)
# members' attrs["unetflow"] that must agree
MATCHED_ATTRIBUTES = ("dims", "dtype", "scale", "num_classes", "affinity_offsets")


def check_members(members: list[zarr.Array], paths: list[Path]) -> None:
    """The members' stores can be averaged: same shape, dtype, prediction settings and voxel size."""
    first, first_path = members[0], paths[0]
    for member, path in zip(members[1:], paths[1:]):
        differences = [f"shape {member.shape} against {first.shape}"] if member.shape != first.shape else []
        differences += [f"{key} {member.attrs['unetflow'].get(key)!r} against {first.attrs['unetflow'].get(key)!r}"
                        for key in MATCHED_ATTRIBUTES
                        if member.attrs["unetflow"].get(key) != first.attrs["unetflow"].get(key)]
        if differences:
            raise InputError(f"ensemble: {path} cannot be averaged with {first_path}: {'; '.join(differences)}; an "
                             "ensemble's members must predict the same classes (and affinities) of the same data "
                             "with the same dims and predict.dtype")


def mean_probabilities(members: list[zarr.Array]) -> da.Array:
    """The members' (c, z, y, x) level 0 averaged voxel by voxel, in the members' dtype."""
    stacked = da.stack([da.from_zarr(member) for member in members]).astype(np.float64)
    mean = stacked.mean(axis=0)
    if np.dtype(members[0].dtype) == np.uint8:
        return da.round(mean).astype(np.uint8)
    return mean.astype(members[0].dtype)


def write_ensemble(paths: list[Path], out: Path) -> None:
    """Write the mean of the prediction stores ``paths`` to the prediction store ``out``
    (an OME-Zarr image with its pyramid, as the predict step writes), atomically."""
    stores = [io.open_store(path) for path in paths]
    members = [io.open_probabilities(path) for path in paths]
    check_members(members, paths)
    voxel_sizes = [ngff.voxel_size_of(store) for store in stores]
    for path, voxel_size in zip(paths[1:], voxel_sizes[1:]):
        if voxel_size != voxel_sizes[0]:
            raise InputError(f"ensemble: {path} has voxels of {voxel_size.describe()}, {paths[0]} of "
                             f"{voxel_sizes[0].describe()}; an ensemble's members must predict the same data")
    first = members[0].attrs["unetflow"]
    attributes = {**{key: first[key] for key in MATCHED_ATTRIBUTES if key in first},
                  "model": "ensemble", "members": [member.attrs["unetflow"].get("model") for member in members]}
    log.info("averaging %d members' probabilities of shape %s: %s", len(paths), members[0].shape,
             ", ".join(map(str, paths)))
    with io.atomic_store(out) as temporary:
        group = ngff.create_probabilities(temporary, members[0].shape, members[0].dtype, attributes, voxel_sizes[0],
                                          channel_names=ngff.channel_names(stores[0]), volume=first.get("dims") == 3,
                                          zarr_format=io.zarr_format_of(stores[0]))
        target = io.level0_to_write(group)
        mean = mean_probabilities(members).rechunk(io.write_unit(target))
        with TaskProgress(total=math.prod(mean.numblocks), desc="averaged", unit="chunks", prefix="store-map"):
            da.store(mean, target, lock=False)  # each task writes whole chunks (shards): no two write one
        ngff.write_pyramid(group)
