"""Helpers shared by the benchmark scripts: data sets and the machine's description."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.measure import label as connected_components

ISBI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isbi2012"


def machine() -> str:
    """CPU model and core count (or the GPU's name where torch sees one)."""
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores"


def isbi_training_labels() -> tuple[str, np.ndarray, np.ndarray] | None:
    """(name, classes, objects) of the 22 ISBI training slices, or None where absent."""
    folder = ISBI / "train" / "label"
    if not folder.is_dir():
        return None
    labels = np.stack([np.asarray(Image.open(path)) for path in sorted(folder.glob("*.png"))])
    classes = (labels == 255).astype(np.uint8)
    objects = np.stack([connected_components(plane, connectivity=1) for plane in classes]).astype(np.uint32)
    return "ISBI 2012 training labels (22 x 512 x 512)", classes, objects
