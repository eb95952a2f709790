"""How an exported bioimage.io package normalises its input: the preprocessing that matches the
normalisation the model was trained with (:mod:`unetflow.intensity`), as spec 0.5 descriptions
and as the same arithmetic in numpy (for the package's test tensors).

=================  ==========================================================================
trained with       the package's preprocessing (per channel)
=================  ==========================================================================
z-score, image     ``zero_mean_unit_variance`` over (y, x): ``(x - mean) / (std + eps)``
percentile, image  ``scale_range`` over (y, x): ``(x - p_low) / (p_high - p_low + eps)``
z-score, dataset   ``fixed_zero_mean_unit_variance`` with the training data's mean and std
percentile,        ``scale_linear`` with gain ``1 / (p_high - p_low)`` and offset
dataset            ``-p_low * gain`` of the training data
=================  ==========================================================================

Per image, a package normalises any image exactly as training did. Per dataset, bioimage.io has
no statistics of a whole dataset, so the package fixes those of the (first) training dataset:
exact on it, and on new data as far as its intensities match. Models of older unetflow record
no normalisation; they were trained per dataset with z-scores and export per image, as before.
"""

from __future__ import annotations

import numpy as np

from .intensity import setting_in

EPS = 1e-6  # bioimage.io's default eps of zero_mean_unit_variance and scale_range


def kind(recorded: dict | None) -> str:
    """Which preprocessing the package applies (the table above)."""
    setting = setting_in(recorded)
    fixed = setting["scope"] == "dataset" and recorded is not None and "offset" in recorded
    if setting["method"] == "zscore":
        return "fixed_zero_mean_unit_variance" if fixed else "zero_mean_unit_variance"
    return "scale_linear" if fixed else "scale_range"


def normalize(tile: np.ndarray, recorded: dict | None) -> np.ndarray:
    """A raw (c, y, x) tile normalised as the package's preprocessing does, float32."""
    values = tile.astype(np.float64)
    flat = values.reshape(len(values), -1)
    column = (lambda row: np.asarray(row, np.float64).reshape(-1, 1, 1))
    applied = kind(recorded)
    if applied == "zero_mean_unit_variance":
        result = (values - column(flat.mean(axis=1))) / (column(flat.std(axis=1)) + EPS)
    elif applied == "scale_range":
        low, high = np.percentile(flat, recorded["percentiles"], axis=1)
        result = (values - column(low)) / (column(high - low) + EPS)
    elif applied == "fixed_zero_mean_unit_variance":
        result = (values - column(recorded["offset"])) / (column(recorded["scale"]) + EPS)
    else:
        gain = 1 / np.asarray(recorded["scale"], np.float64)
        result = values * column(gain) + column(-np.asarray(recorded["offset"]) * gain)
    return result.astype(np.float32)


def describe(recorded: dict | None):
    """The spec 0.5 preprocessing description of :func:`kind`."""
    from bioimageio.spec.model import v0_5 as spec

    axes = [spec.AxisId("y"), spec.AxisId("x")]
    channel = spec.AxisId("channel")
    applied = kind(recorded)
    if applied == "zero_mean_unit_variance":
        return spec.ZeroMeanUnitVarianceDescr(kwargs=spec.ZeroMeanUnitVarianceKwargs(axes=axes, eps=EPS))
    if applied == "scale_range":
        low, high = recorded["percentiles"]
        return spec.ScaleRangeDescr(kwargs=spec.ScaleRangeKwargs(axes=axes, min_percentile=low, max_percentile=high,
                                                                 eps=EPS))
    if applied == "fixed_zero_mean_unit_variance":
        return spec.FixedZeroMeanUnitVarianceDescr(kwargs=spec.FixedZeroMeanUnitVarianceAlongAxisKwargs(
            mean=list(recorded["offset"]), std=[max(value, EPS) for value in recorded["scale"]], axis=channel))
    gain = [1 / value for value in recorded["scale"]]
    return spec.ScaleLinearDescr(kwargs=spec.ScaleLinearAlongAxisKwargs(
        axis=channel, gain=gain, offset=[-low * g for low, g in zip(recorded["offset"], gain)]))
