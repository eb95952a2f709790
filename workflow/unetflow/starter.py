"""A lab's first config, from a folder of images: ``unetflow init FOLDER``.

The folder is surveyed (which files are images, which are their labels, their axes, data
types and voxel sizes from the TIFF/OME metadata), and a commented config is written that
runs as is: the labelled stacks split into training and validation (the segmentation is
tuned on the latter), the unlabelled ones predicted and segmented, and a model preset sized
for the machine that will train it (CPU or GPU).

Layouts understood (what labs and nnU-Net/StarDist/Cellpose datasets use):

- ``FOLDER/images/`` with ``FOLDER/labels/`` (or ``masks/``): labels by the same file name;
- image files in ``FOLDER`` with labels beside them as ``<name>_labels.tif`` (or ``_label``,
  ``_mask``, ``_masks``);
- ``--labels OTHER_FOLDER``: labels there, by the same file name.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from .errors import InputError
from .readers import tiff_voxel_size
from .stack_files import natural_key
from .voxel_size import VoxelSize

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
LABEL_FOLDERS = ("labels", "masks")
LABEL_SUFFIXES = ("_labels", "_label", "_masks", "_mask")
SERIAL_SECTIONS = 5.0  # z spacing >= this x the pixel size: sections, segmented slice by slice (the paper's ssTEM)
VALIDATION_SHARE = 0.2  # of the labelled stacks (or slices of a single labelled stack)


@dataclass(frozen=True)
class Stack:
    """One image file of the folder and what its metadata says."""

    name: str
    images: Path
    labels: Path | None
    shape: tuple[int, ...]  # without axes of size one and channels
    axes: str  # tifffile's letters for `shape`: YX, ZYX, IYX (pages of unknown kind), ...
    dtype: np.dtype
    voxel_size: VoxelSize | None
    channels: int = 1  # the file's C axis (ImageJ hyperstack, OME-TIFF)

    @property
    def slices(self) -> int:
        return 1 if len(self.shape) == 2 else self.shape[0]

    def describe(self) -> str:
        size = " x ".join(map(str, self.shape))
        where = self.voxel_size.describe() if self.voxel_size else "voxel size not in the file (1 px)"
        channels = f", {self.channels} channels" if self.channels > 1 else ""
        return f"{size} {self.dtype} ({self.axes}){channels}, {where}"


def survey(folder: str | Path, labels: str | Path | None = None) -> list[Stack]:
    """The image stacks of `folder` with their labels, in natural name order.

    Raises
    ------
    InputError
        If the folder holds no images, a file has colour samples (RGB) or time points, the
        images differ in channels, or a label file does not match its image's shape.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder; give the folder that holds your images")
    image_folder = folder / "images" if (folder / "images").is_dir() else folder
    label_folder = Path(labels) if labels else next(
        (folder / name for name in LABEL_FOLDERS if (folder / name).is_dir()), None)
    if label_folder is not None and not label_folder.is_dir():
        raise InputError(f"{label_folder}: no such folder; give the folder that holds the labels")
    files = sorted((f for f in image_folder.iterdir() if is_image_file(f) and not is_label_name(f)),
                   key=lambda f: natural_key(f.name))
    if not files:
        raise InputError(f"{image_folder}: holds no TIFF or PNG images; put your images there (or in "
                         f"{folder}/images/, with their labels in {folder}/labels/)")
    names = unique_names([dataset_name(f) for f in files])
    stacks = [read_stack(name, f, find_labels(f, image_folder, label_folder)) for name, f in zip(names, files)]
    for stack in stacks:
        if stack.labels is not None:
            check_labels(stack)
    channels = {stack.channels for stack in stacks}
    if len(channels) > 1:
        listed = ", ".join(f"{stack.images.name} {stack.channels}" for stack in stacks)
        raise InputError(f"{image_folder}: the images have different numbers of channels ({listed}); one model takes "
                         "one kind of image: put each kind in a folder of its own")
    return stacks


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def is_label_name(path: Path) -> bool:
    return stem(path).lower().endswith(LABEL_SUFFIXES)


def stem(path: Path) -> str:
    """The name without its suffix, ``.ome.tif`` counted as one suffix."""
    name = path.name[: -len(path.suffix)] if path.suffix else path.name
    return name[:-4] if name.lower().endswith(".ome") else name


def dataset_name(path: Path) -> str:
    """A dataset name the config accepts (letters, digits, _ and -)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem(path)).strip("_") or "stack"


def unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return unique


def find_labels(image: Path, image_folder: Path, label_folder: Path | None) -> Path | None:
    """The label file of `image`: same name in the label folder, or a _labels/_mask sibling."""
    candidates = []
    if label_folder is not None:
        candidates += [label_folder / image.name] + [label_folder / f"{stem(image)}{suffix}"
                                                     for suffix in IMAGE_SUFFIXES]
    candidates += [image_folder / f"{stem(image)}{tag}{suffix}" for tag in LABEL_SUFFIXES for suffix in IMAGE_SUFFIXES]
    return next((path for path in candidates if path.is_file()), None)


def read_stack(name: str, images: Path, labels: Path | None) -> Stack:
    shape, axes, dtype, voxel_size = file_metadata(images)
    channels = shape[axes.index("C")] if "C" in axes else 1
    kept = [(size, axis) for size, axis in zip(shape, axes) if axis != "C"]
    return Stack(name, images, labels, tuple(size for size, _ in kept), "".join(axis for _, axis in kept), dtype,
                 voxel_size, channels)


def file_metadata(path: Path) -> tuple[tuple[int, ...], str, np.dtype, VoxelSize | None]:
    """Shape and axes (size-one axes dropped; C where the file has channels), data type and voxel
    size of an image file."""
    if path.suffix.lower() == ".png":
        with Image.open(path) as image:
            if image.mode not in ("L", "I;16", "I", "F", "1", "P"):
                raise InputError(f"{path}: a {image.mode} PNG has colour channels; save one gray channel")
            return (image.height, image.width), "YX", np.dtype(np.asarray(image).dtype), None
    try:
        with tifffile.TiffFile(path) as tiff:
            series = tiff.series[0]
            kept = [(size, axis) for size, axis in zip(series.shape, series.axes) if size > 1]
            voxel_size = tiff_voxel_size(tiff, str(path))
            dtype = np.dtype(series.dtype)
    except InputError:
        raise
    except Exception as error:  # tifffile raises many types for broken files
        raise InputError(f"{path}: cannot be read ({type(error).__name__}: {error})") from error
    axes = "".join(axis for _, axis in kept)
    if "S" in axes:
        raise InputError(f"{path}: has colour samples (RGB, axes {series.axes}, shape {series.shape}); save it as "
                         "channels (Fiji: Image > Color > Make Composite) or as one gray channel")
    if "T" in axes:
        raise InputError(f"{path}: has {dict(zip(series.axes, series.shape))['T']} time points; save one time "
                         "point per file (Fiji: Image > Stacks > Tools > Reduce)")
    if len(kept) - ("C" in axes) not in (2, 3):
        raise InputError(f"{path}: has shape {series.shape} (axes {series.axes}); expected a 2-D image or a stack")
    return tuple(size for size, _ in kept), axes, dtype, voxel_size


def check_labels(stack: Stack) -> None:
    shape = file_metadata(stack.labels)[0]
    if shape != stack.shape:
        raise InputError(f"{stack.labels}: labels of shape {shape}, but their image {stack.images} has shape "
                         f"{stack.shape}; labels need one value per pixel of the image")


def infer_dims(stacks: list[Stack]) -> tuple[int, str]:
    """2 (slices) or 3 (volumes), and why: volumes when a file states a z axis whose spacing
    is not that of serial sections (>= SERIAL_SECTIONS x the pixel size, segmented slice by
    slice as in the paper)."""
    volumes = [stack for stack in stacks if "Z" in stack.axes]
    if not volumes:
        return 2, "no file states a z axis: its pages are slices"
    sizes = [stack.voxel_size for stack in volumes if stack.voxel_size is not None]
    if sizes and all(size.z >= SERIAL_SECTIONS * size.x for size in sizes):
        return 2, f"z spacing {sizes[0].z:g} is >= {SERIAL_SECTIONS:g}x the pixel size {sizes[0].x:g}: serial sections"
    return 3, f"{volumes[0].images.name} is a z stack ({volumes[0].describe()})"


@dataclass(frozen=True)
class Split:
    """Dataset entries (name -> config entry) and their roles."""

    datasets: dict[str, dict]
    train_on: list[str]
    validate_on: list[str]
    predict_on: list[str]


def split(stacks: list[Stack], *, training: bool = True) -> Split:
    """Training and validation from the labelled stacks, prediction on the rest.

    With several labelled stacks, the last VALIDATION_SHARE of them (at least one) validate;
    a single labelled stack gives its last slices. Without `training` (a model is given),
    the labelled stacks tune its segmentation.
    """
    labelled = [stack for stack in stacks if stack.labels is not None]
    datasets = {stack.name: entry(stack) for stack in stacks}
    predict_on = [stack.name for stack in stacks if stack.labels is None]
    names = [stack.name for stack in labelled]
    if not training:
        return Split(datasets, [], names, predict_on)
    if len(labelled) >= 2:
        count = max(1, round(VALIDATION_SHARE * len(labelled)))
        return Split(datasets, names[:-count], names[-count:], predict_on)
    if len(labelled) == 1 and labelled[0].slices >= 2:
        [stack] = labelled
        cut = stack.slices - max(1, round(VALIDATION_SHARE * stack.slices))
        parts = {f"{stack.name}_train": f"0-{cut - 1}", f"{stack.name}_val": f"{cut}-{stack.slices - 1}"}
        datasets = {name: value for other, one in datasets.items()
                    for name, value in ({other: one} if other != stack.name else
                                        {part: {**one, "slices": slices} for part, slices in parts.items()}).items()}
        return Split(datasets, [f"{stack.name}_train"], [f"{stack.name}_val"], predict_on)
    return Split(datasets, names, [], predict_on)


def entry(stack: Stack) -> dict:
    """The dataset entry of a stack: paths relative to the working folder where they are in it."""
    result = {"images": portable(stack.images)}
    if stack.labels is not None:
        result["labels"] = portable(stack.labels)
    if stack.voxel_size is not None:
        result["voxel_size"] = stack.voxel_size.as_config()
    return result


def portable(path: Path) -> str:
    absolute = path.resolve()
    try:
        return os.path.relpath(absolute) if absolute.is_relative_to(Path.cwd()) else str(absolute)
    except ValueError:  # another drive
        return str(absolute)


def planar_poolings(stacks: list[Stack], depth: int) -> int:
    """For voxels longer in z than in x: the first N poolings leave z (N ~ log2 of the ratio)."""
    ratios = [stack.voxel_size.z / stack.voxel_size.x for stack in stacks if stack.voxel_size is not None]
    if not ratios:
        return 0
    return min(depth - 1, max(0, round(math.log2(max(ratios)))))
