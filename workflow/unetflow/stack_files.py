"""Which files make up a raw stack on disk (standard library only: the workflow asks while it
builds the DAG, so a stray file never makes a stack stale and every slice read is an input)."""

from __future__ import annotations

import re
from pathlib import Path

SLICE_SUFFIXES = (".png", ".tif", ".tiff")


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders embedded numbers by value: ``s2`` before ``s10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_zarr(path: Path) -> bool:
    """A Zarr store (v2 or v3), by its name or its metadata file."""
    return path.suffix.lower() == ".zarr" or (path / ".zgroup").exists() or (path / "zarr.json").exists()


def slice_files(folder: Path) -> list[Path]:
    """The slices of a folder of 2-D images, in natural sort order: its PNG and TIFF files that
    are not hidden (a ``.DS_Store``, a ``Thumbs.db``, a ``notes.txt`` or a ``._00.png`` of macOS
    are not slices)."""
    return sorted(
        (file for file in folder.iterdir()
         if file.is_file() and file.suffix.lower() in SLICE_SUFFIXES and not file.name.startswith(".")),
        key=lambda file: natural_key(file.name),
    )


def stack_files(path: Path) -> list[Path]:
    """The files a stack's reader reads: every file of a Zarr store, the slices of a folder, or
    the file itself."""
    path = Path(path)
    if path.is_dir() and is_zarr(path):
        return sorted(file for file in path.rglob("*") if file.is_file())
    if path.is_dir():
        return slice_files(path)
    return [path]
