"""Physical voxel size of a stack: from the config, or from the files' own metadata.

A voxel size is (z, y, x) in one unit, an NGFF space unit (``nanometer``,
``micrometer``, ...). The config's ``datasets.<name>.voxel_size`` wins; without
one, ingestion reads the images' metadata (OME-TIFF ``PhysicalSize*``, ImageJ
TIFF resolution and ``spacing``, OME-Zarr ``coordinateTransformations``); a
stack with neither gets 1 per voxel and no unit, which viewers show as pixels.

Only the standard library is imported: Snakemake imports this module to check
the config while it builds the DAG.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Any

from .errors import InputError

log = logging.getLogger(__name__)

# The NGFF space units (UDUNITS-2 names), as ome-zarr-py lists them (ome_zarr.axes.KNOWN_SPATIAL_UNITS);
# copied so that checking a config does not import ome-zarr and its dependencies.
SPACE_UNITS = (
    "angstrom", "attometer", "centimeter", "decimeter", "exameter", "femtometer", "foot", "gigameter",
    "hectometer", "inch", "kilometer", "megameter", "meter", "micrometer", "mile", "millimeter", "nanometer",
    "parsec", "petameter", "picometer", "terameter", "yard", "yoctometer", "yottameter", "zeptometer",
    "zettameter",
)
# How OME-XML, ImageJ and people write the common ones.
UNIT_ALIASES = {
    "nm": "nanometer", "um": "micrometer", "µm": "micrometer", "μm": "micrometer", "micron": "micrometer",
    "microns": "micrometer", "mm": "millimeter", "cm": "centimeter", "m": "meter", "pm": "picometer",
    "å": "angstrom", "\\u00b5m": "micrometer",
}
# OME-XML's symbols (UnitsLength) of the NGFF units
OME_SYMBOLS = {
    "angstrom": "Å", "attometer": "am", "centimeter": "cm", "decimeter": "dm", "exameter": "Em", "femtometer": "fm",
    "foot": "ft", "gigameter": "Gm", "hectometer": "hm", "inch": "in", "kilometer": "km", "megameter": "Mm",
    "meter": "m", "micrometer": "µm", "mile": "mi", "millimeter": "mm", "nanometer": "nm", "parsec": "pc",
    "petameter": "Pm", "picometer": "pm", "terameter": "Tm", "yard": "yd", "yoctometer": "ym", "yottameter": "Ym",
    "zeptometer": "zm", "zettameter": "Zm",
}
NO_UNITS = ("", "pixel", "pixels", "px")
OME_DEFAULT_UNIT = "micrometer"  # OME-XML's default for PhysicalSize* without a unit
AXES = ("z", "y", "x")


@dataclass(frozen=True)
class VoxelSize:
    """Size of one voxel along z (slice spacing), y and x, in ``unit`` (None: unknown, pixels)."""

    z: float = 1.0
    y: float = 1.0
    x: float = 1.0
    unit: str | None = None

    def as_config(self) -> dict[str, Any]:
        return {"z": self.z, "y": self.y, "x": self.x, "unit": self.unit}

    def describe(self) -> str:
        return f"{self.z:g} x {self.y:g} x {self.x:g} {self.unit or 'pixel'} (z, y, x)"

    def in_x_pixels(self) -> tuple[float, float, float]:
        """The (z, y, x) size in units of the x size, ``(z / x, y / x, 1)``: how 3-D steps measure
        distances, so that settings in pixels (weights.sigma, segment.h, elastic sigma) keep
        their meaning in the x pixels of the slices."""
        return (self.z / self.x, self.y / self.x, 1.0)


UNKNOWN = VoxelSize()


def normalize_unit(unit: str | None, where: str) -> str | None:
    """The NGFF name of a length unit (``nm`` -> ``nanometer``); None for pixels."""
    if unit is None or unit.strip().lower() in NO_UNITS:
        return None
    name = unit.strip()
    name = UNIT_ALIASES.get(name.lower(), name.lower())
    if name not in SPACE_UNITS:
        raise InputError(f"{where}: unknown length unit {unit!r}; use an NGFF unit name such as nanometer or "
                         "micrometer (nm, µm/um/micron and mm are understood too)")
    return name


def ome_symbol(unit: str) -> str:
    """OME-XML's symbol of an NGFF unit name (``nanometer`` -> ``nm``)."""
    return OME_SYMBOLS[unit]


def from_config(entry: dict | None, where: str) -> VoxelSize | None:
    """The voxel size a config entry ``{z, y, x, unit}`` gives, checked; None if there is none."""
    if entry is None:
        return None
    sizes = {axis: entry.get(axis) for axis in AXES}
    for axis, size in sizes.items():
        if not isinstance(size, (int, float)) or isinstance(size, bool) or not math.isfinite(size) or size <= 0:
            raise InputError(f"{where}.{axis}: voxel size {size!r} is not a positive number; give the size of "
                             "one voxel along z (slice spacing), y and x, e.g. {z: 50, y: 4, x: 4, unit: nanometer}")
    return VoxelSize(**{axis: float(size) for axis, size in sizes.items()},
                     unit=normalize_unit(entry.get("unit"), f"{where}.unit"))


def resolve(configured: VoxelSize | None, from_file: VoxelSize | None, where: str) -> tuple[VoxelSize, str]:
    """The voxel size to use and where it came from (``config``, ``file`` or ``none``)."""
    if configured is not None:
        if from_file is not None and from_file != configured:
            log.warning("%s: the config's voxel size %s overrides the file's %s", where, configured.describe(),
                        from_file.describe())
        return configured, "config"
    if from_file is not None:
        log.info("%s: voxel size %s, from the file's metadata", where, from_file.describe())
        return from_file, "file"
    log.warning("%s: no voxel size in the config or the file's metadata; stores get 1 pixel per voxel. Set "
                "the dataset's voxel_size (e.g. {z: 50, y: 4, x: 4, unit: nanometer}) for physical scale",
                where)
    return UNKNOWN, "none"


def from_ome_xml(xml: str, where: str) -> VoxelSize | None:
    """The first image's ``PhysicalSizeZ/Y/X`` (and units) of OME-XML, converted to one unit."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as error:
        log.warning("%s: its OME-XML metadata cannot be read (%s); ignoring it", where, error)
        return None
    pixels = next((node for node in root.iter() if node.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None or "PhysicalSizeX" not in pixels.attrib:
        return None
    sizes = {}
    for axis in AXES:
        value = pixels.attrib.get(f"PhysicalSize{axis.upper()}")
        unit = normalize_unit(pixels.attrib.get(f"PhysicalSize{axis.upper()}Unit", OME_DEFAULT_UNIT), where)
        sizes[axis] = None if value is None else (float(value), unit)
    return _in_one_unit(sizes, where)


def from_imagej(metadata: dict, resolution: tuple[float, float] | None, where: str) -> VoxelSize | None:
    """The voxel size an ImageJ TIFF states: x/y from its resolution tags (pixels per unit),
    z from ``spacing``, all in its ``unit``; None when it states no length unit."""
    unit = normalize_unit(str(metadata.get("unit", "")), where)
    if unit is None or not resolution or not all(resolution):
        return None
    y_per_unit, x_per_unit = resolution
    spacing = metadata.get("spacing")
    z = float(spacing) if spacing else None
    return _in_one_unit({"z": None if z is None else (z, unit), "y": (1 / y_per_unit, unit),
                         "x": (1 / x_per_unit, unit)}, where)


def from_ngff(multiscale: dict, where: str) -> VoxelSize | None:
    """The (z, y, x) scale and unit of an NGFF multiscale's first dataset (its last three axes)."""
    axes = multiscale.get("axes", [])
    transforms = multiscale.get("datasets", [{}])[0].get("coordinateTransformations", [])
    scale = next((t["scale"] for t in transforms if t.get("type") == "scale"), None)
    if scale is None or len(axes) < 3 or len(scale) != len(axes):
        return None
    units = {normalize_unit(axis.get("unit"), where) for axis in axes[-3:] if isinstance(axis, dict)}
    if len(units) > 1:
        raise InputError(f"{where}: the axes have different units ({sorted(map(str, units))}); unetflow needs "
                         "one length unit for z, y and x: set the dataset's voxel_size in the config")
    z, y, x = (float(value) for value in scale[-3:])
    return VoxelSize(z, y, x, units.pop() if units else None)


def _in_one_unit(sizes: dict[str, tuple[float, str | None] | None], where: str) -> VoxelSize:
    """Sizes given per axis, possibly in different units, in the unit of x. A missing z (a file
    that gives no slice spacing) is taken as x's size, with a warning naming the fix."""
    unit = sizes["x"][1]
    converted = {axis: None if size is None else _convert(size[0], size[1], unit, where)
                 for axis, size in sizes.items()}
    if converted["z"] is None:
        log.warning("%s: the file gives no slice spacing (z); taking it equal to x. Set the dataset's "
                    "voxel_size in the config if the slices are thicker", where)
        converted["z"] = converted["x"]
    return VoxelSize(converted["z"], converted["y"], converted["x"], unit)


METERS = {"angstrom": 1e-10, "picometer": 1e-12, "nanometer": 1e-9, "micrometer": 1e-6, "millimeter": 1e-3,
          "centimeter": 1e-2, "decimeter": 1e-1, "meter": 1.0, "inch": 0.0254}


def _convert(value: float, unit: str | None, target: str | None, where: str) -> float:
    if unit == target:
        return value
    if unit not in METERS or target not in METERS:
        raise InputError(f"{where}: the axes are in different units ({unit}, {target}); set the dataset's "
                         "voxel_size in the config")
    return value * METERS[unit] / METERS[target]
