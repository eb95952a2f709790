"""Post-processing choices measured on one probability map: which segmentation settings work best.

Run: python benchmarks/segment_sweep.py PREDICTIONS.zarr DATA.zarr
Scores every method/threshold/h on the labelled slices of DATA.zarr (adapted
Rand error of the objects, pixel error of the threshold), so that segment
settings are chosen on validation slices, never on training slices.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import pandas as pd

from unetflow import io
from unetflow.io import foreground_probability
from unetflow.methods.metrics import object_scores
from unetflow.io import open_probabilities
from unetflow.methods.segmenters import components, watershed_fill


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("predictions")
    parser.add_argument("data")
    args = parser.parse_args()
    probabilities = open_probabilities(args.predictions)
    store = io.open_store(args.data)
    truth, classes = io.open_labels(store, "objects"), io.open_labels(store, "classes")
    rows = []
    settings = [("components", t, 0.0, "-") for t in (0.3, 0.5, 0.7)]
    settings += [("watershed", t, h, seeds) for t, h, seeds in itertools.product((0.3, 0.5, 0.7), (1.0, 2.0, 3.0), ("distance",))]
    settings += [("watershed", 0.5, h, "probability") for h in (0.05, 0.1, 0.2)]
    for method, threshold, h, seeds in settings:
        errors, pixel_errors = [], []
        for z in range(truth.shape[0]):
            foreground = foreground_probability(probabilities, z)
            if method == "components":
                objects = components(foreground, threshold=threshold, min_size=0)
            else:
                objects = watershed_fill(foreground, threshold=threshold, h=h, seeds=seeds, min_size=0)
            errors.append(object_scores(truth[z], objects)["adapted_rand_error"])
            pixel_errors.append(np.mean((foreground >= threshold) != (classes[z] > 0)))
        rows.append({"method": method, "seeds": seeds, "threshold": threshold, "h": h,
                     "adapted_rand_error": np.mean(errors), "pixel_error": np.mean(pixel_errors)})
    print(pd.DataFrame(rows).sort_values("adapted_rand_error").to_markdown(index=False, floatfmt=".4f"))


if __name__ == "__main__":
    main()
