"""Weight maps: the naive method (one distance transform per object) against ours.

Run: python benchmarks/weights.py
On the 22 ISBI 2012 training slices (synthetic touching cells where ../shared
is absent), in one process: seconds per slice of each method with the outputs
checked equal, their ratio, and the Dask speed-up from 1 to 2 workers.
"""

from __future__ import annotations

import sys
import time

import dask.array as da
import numpy as np

from common import isbi_training_labels, machine
from unetflow.synthetic import generate_stack
from unetflow.weight_maps import class_weights, naive_weight_map, weight_map, weight_map_stack

W0, SIGMA = 10.0, 5.0


def dataset() -> tuple[str, np.ndarray, np.ndarray]:
    found = isbi_training_labels()
    if found is not None:
        return found
    _, _, instances = generate_stack(22, 512, seed=0, mode="touching")
    objects = instances.astype(np.uint32)
    return "synthetic touching cells (22 x 512 x 512)", (objects > 0).astype(np.uint8), objects


def seconds_per_slice(method, classes, objects, weights) -> tuple[float, list[np.ndarray]]:
    start = time.perf_counter()
    maps = [method(c, o, class_weight=weights, w0=W0, sigma=SIGMA) for c, o in zip(classes, objects)]
    return (time.perf_counter() - start) / len(classes), maps


def dask_seconds(classes, objects, weights, workers: int) -> float:
    stack_weights = np.repeat(weights[None], len(classes), axis=0)
    stack = weight_map_stack(
        da.from_array(classes, chunks=(1, *classes.shape[1:])),
        da.from_array(objects, chunks=(1, *classes.shape[1:])),
        slice_weights=stack_weights, w0=W0, sigma=SIGMA,
    )
    timings = []
    for _ in range(3):  # best of three: the first run also pays Dask's and numba's one-off set-up
        start = time.perf_counter()
        stack.compute(scheduler="threads", num_workers=workers)
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    name, classes, objects = dataset()
    weights = class_weights(np.bincount(classes.ravel(), minlength=2))
    weight_map(classes[0], objects[0], class_weight=weights, w0=10, sigma=5)  # compile the numba kernels first
    ours, our_maps = seconds_per_slice(weight_map, classes, objects, weights)
    naive, naive_maps = seconds_per_slice(naive_weight_map, classes, objects, weights)
    difference = max(float(np.abs(a - b).max()) for a, b in zip(our_maps, naive_maps))
    if difference > 1e-5:
        sys.exit(f"outputs differ by {difference}")
    one, two = dask_seconds(classes, objects, weights, 1), dask_seconds(classes, objects, weights, 2)
    cells = np.mean([plane.max() for plane in objects])
    print(f"machine: {machine()}")
    print(f"data: {name}, {cells:.0f} objects per slice on average")
    print(f"naive (one EDT per object): {naive:.4f} s/slice")
    print(f"unetflow.weight_maps.weight_map: {ours:.4f} s/slice")
    print(f"ratio naive/ours: {naive / ours:.1f}x (max abs difference {difference:.2e})")
    print(f"dask, 22 slices: 1 worker {one:.3f} s, 2 workers {two:.3f} s, speed-up {one / two:.2f}x")


if __name__ == "__main__":
    main()
