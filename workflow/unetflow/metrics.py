"""Segmentation metrics on label arrays."""

from __future__ import annotations

import numpy as np


def pixel_error(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of pixels whose class differs from the ground truth (ISBI 2012's pixel error)."""
    return float(np.mean(np.asarray(predicted) != np.asarray(truth)))


def foreground_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of the foreground (class > 0); 1.0 when both are empty."""
    predicted, truth = np.asarray(predicted) > 0, np.asarray(truth) > 0
    union = np.count_nonzero(predicted | truth)
    return 1.0 if union == 0 else float(np.count_nonzero(predicted & truth) / union)


def foreground_dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient of the foreground (class > 0); 1.0 when both are empty."""
    predicted, truth = np.asarray(predicted) > 0, np.asarray(truth) > 0
    total = np.count_nonzero(predicted) + np.count_nonzero(truth)
    return 1.0 if total == 0 else float(2 * np.count_nonzero(predicted & truth) / total)
