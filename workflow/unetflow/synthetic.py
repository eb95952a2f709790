"""Synthetic EM-like stacks with exact ground truth, for the demo and the tests.

Two modes:

``em``
    Cells of a warped Voronoi tessellation separated by dark membranes whose
    width varies smoothly from 1 to 6 px, textured interiors, a few dark
    organelles inside cells, blur, uneven illumination and noise. Labels as in
    ISBI 2012: 255 = cell interior (organelles included), 0 = membrane.
``touching``
    Bright cells on a dark background that touch each other along faint
    contact lines, with instance labels: the case the U-Net weight map is for.

Every slice is drawn from its own ``numpy.random.Generator`` seeded with
``(seed, split, index)``, so a stack is the same whatever order or subset of
slices is generated.

:func:`generate_volume` makes a near-isotropic 3-D EM-like volume (``--dims 3``):
cells of a warped 3-D Voronoi tessellation, elongated along z like neurites cut
across, separated by dark membranes one or two voxels thick, with the 2-D mode's
texture, blur, uneven illumination and noise. Each cell runs through many slices and
is one face-connected (6-connected) object of the instance labels, with one ID in
every slice; a volume is drawn from one generator seeded with ``(seed, split)``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.measure import label as connected_components

SPLITS = {"train": 0, "test": 1}
MEMBRANE_WIDTH_RANGE = (1.0, 6.0)


def smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise scaled to zero mean and unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-12)


def spaced_points(shape: tuple[int, int], count: int, min_distance: float, rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` random points at least ``min_distance`` apart (dart throwing)."""
    points: list[np.ndarray] = []
    for _ in range(count * 30):
        candidate = rng.uniform((0, 0), shape)
        if all(np.hypot(*(candidate - p)) >= min_distance for p in points):
            points.append(candidate)
            if len(points) == count:
                break
    return np.array(points)


def warped_nearest_seed(
    shape: tuple[int, int], seeds: np.ndarray, warp: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest seed (1-based) and the distance to it, on a smoothly warped grid."""
    rows, cols = np.indices(shape, dtype=np.float64)
    rows += warp * smooth_noise(shape, 12, rng)
    cols += warp * smooth_noise(shape, 12, rng)
    distance, nearest = cKDTree(seeds).query(np.stack([rows.ravel(), cols.ravel()], axis=1))
    return (nearest + 1).reshape(shape).astype(np.int32), distance.reshape(shape)


def interfaces(regions: np.ndarray) -> np.ndarray:
    """One-pixel lines (surfaces in 3-D) where a region meets a different one further along an axis
    (below or to the right in a slice)."""
    line = np.zeros(regions.shape, dtype=bool)
    for axis in range(regions.ndim):
        here = tuple(slice(None, -1) if index == axis else slice(None) for index in range(regions.ndim))
        ahead = tuple(slice(1, None) if index == axis else slice(None) for index in range(regions.ndim))
        line[here] |= regions[here] != regions[ahead]
    return line


def uniform_field(shape: tuple[int, int], low: float, high: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth field whose values are spread uniformly over [low, high] (rank transform)."""
    noise = smooth_noise(shape, sigma, rng)
    ranks = np.argsort(np.argsort(noise, axis=None)).reshape(shape)
    return low + (high - low) * ranks / (noise.size - 1)


def em_labels(shape: tuple[int, int], rng: np.random.Generator, cell_diameter: float = 40.0) -> np.ndarray:
    """Instance labels of cells separated by membranes (0) of 1-6 px width."""
    count = int(shape[0] * shape[1] / cell_diameter**2 * 1.3)
    seeds = spaced_points(shape, count, 0.6 * cell_diameter, rng)
    cells, _ = warped_nearest_seed(shape, seeds, warp=cell_diameter / 5, rng=rng)
    width = uniform_field(shape, *MEMBRANE_WIDTH_RANGE, sigma=cell_diameter / 2, rng=rng)
    membrane = ndimage.distance_transform_edt(~interfaces(cells)) <= width / 2 - 0.25
    return connected_components(np.where(membrane, 0, cells), background=0, connectivity=1)


def organelles(instances: np.ndarray, rng: np.random.Generator, per_cell: float = 0.3) -> np.ndarray:
    """Mask of a few dark round organelles, each well inside one cell."""
    depth = ndimage.distance_transform_edt(instances > 0)
    mask = np.zeros(instances.shape, dtype=bool)
    rows, cols = np.indices(instances.shape)
    candidates = np.argwhere(depth > 6)
    if len(candidates) == 0:
        return mask
    for index in rng.choice(len(candidates), size=int(per_cell * instances.max()) + 1):
        row, col = candidates[index]
        radius = min(rng.uniform(2.5, 7.0), depth[row, col] - 3)
        aspect = rng.uniform(0.6, 1.0)
        mask |= ((rows - row) / radius) ** 2 + ((cols - col) / (radius * aspect)) ** 2 <= 1
    return mask


def render(base: np.ndarray, rng: np.random.Generator, noise: float = 0.05) -> np.ndarray:
    """Texture, blur, uneven illumination and noise over base intensities, as an 8-bit image."""
    shape = base.shape
    image = base + 0.06 * smooth_noise(shape, 1.5, rng)
    image = ndimage.gaussian_filter(image, 1.0)
    image *= 1.0 + 0.2 * smooth_noise(shape, max(shape) / 4, rng)
    image += noise * rng.standard_normal(shape)
    return np.clip(np.round(255 * image), 0, 255).astype(np.uint8)


def em_slice(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One EM-like slice: image (uint8), binary labels (255 interior, 0 membrane), instances."""
    instances = em_labels(shape, rng)
    cell_brightness = rng.uniform(0.58, 0.75, size=instances.max() + 1)
    base = np.where(instances > 0, cell_brightness[instances], rng.uniform(0.12, 0.2))
    base = np.where(organelles(instances, rng), 0.3, base)
    image = render(base, rng)
    binary = np.where(instances > 0, 255, 0).astype(np.uint8)
    return image, binary, instances.astype(np.uint16)


def touching_slice(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bright cells on a dark background, touching along faint lines; instance labels."""
    cell_diameter = 36.0
    count = int(shape[0] * shape[1] / cell_diameter**2 * 0.8)
    seeds = spaced_points(shape, count, 0.7 * cell_diameter, rng)
    nearest, distance = warped_nearest_seed(shape, seeds, warp=cell_diameter / 8, rng=rng)
    radii = rng.uniform(0.45, 0.75, size=len(seeds) + 1) * cell_diameter
    inside = distance <= radii[nearest]
    instances = connected_components(np.where(inside, nearest, 0), background=0, connectivity=1)
    contact = interfaces(instances) & ndimage.binary_erosion(instances > 0)
    cell_brightness = rng.uniform(0.55, 0.85, size=instances.max() + 1)
    base = np.where(instances > 0, cell_brightness[instances], 0.12)
    base = np.where(contact, 0.42, base)
    image = render(base, rng, noise=0.04)
    binary = np.where(instances > 0, 255, 0).astype(np.uint8)
    return image, binary, instances.astype(np.uint16)


def generate_stack(
    slices: int, size: int, *, seed: int, split: str = "train", mode: str = "em"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stack of synthetic slices: images, binary labels and instance labels, each (z, y, x)."""
    make_slice = {"em": em_slice, "touching": touching_slice}[mode]
    results = [make_slice((size, size), np.random.default_rng([seed, SPLITS[split], index])) for index in range(slices)]
    return tuple(np.stack(parts) for parts in zip(*results))


VOLUME_CELL_DIAMETER = 12.0  # voxels across a cell in y and x
VOLUME_ELONGATION = 2.5  # a cell is this many times longer in z than across
MIN_OBJECT_VOXELS = 30  # smaller pieces of a cell (cut off by its warped border) become membrane


def jittered_grid(shape: tuple[float, ...], spacing: float, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """One point per cell of a grid of ``spacing`` over ``shape``, each moved by up to ``jitter``
    times ``spacing`` along every axis: random seeds, none closer than ``(1 - 2 jitter) spacing``."""
    axes = [np.arange(spacing / 2, edge + spacing / 2, spacing) for edge in shape]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(shape))
    return centres + rng.uniform(-jitter, jitter, size=centres.shape) * spacing


def elongated_cells(shape: tuple[int, int, int], rng: np.random.Generator, cell_diameter: float,
                    elongation: float) -> np.ndarray:
    """Cells (1-based) of a warped 3-D Voronoi tessellation whose cells are ``elongation`` times
    longer in z than their ``cell_diameter`` across: distances are taken with z shrunk by it."""
    scale = np.array([1.0 / elongation, 1.0, 1.0])
    seeds = jittered_grid(tuple(np.array(shape) * scale), cell_diameter, 0.3, rng)
    coordinates = np.indices(shape, dtype=np.float64)
    for axis in range(3):
        coordinates[axis] += cell_diameter / 5 * smooth_noise(shape, cell_diameter / 3, rng)
    _, nearest = cKDTree(seeds).query(coordinates.reshape(3, -1).T * scale)
    return (nearest + 1).reshape(shape).astype(np.int32)


def membranes(cells: np.ndarray, rng: np.random.Generator, cell_diameter: float) -> np.ndarray:
    """Membranes between cells: one voxel on the near side of every interface everywhere, and the
    far side too where a smooth random field is positive (two voxels, about half the area)."""
    near = interfaces(cells)
    far = np.flip(interfaces(np.flip(cells)))
    return near | (far & (smooth_noise(cells.shape, cell_diameter / 2, rng) > 0))


def volume_instances(shape: tuple[int, int, int], rng: np.random.Generator, *,
                     cell_diameter: float = VOLUME_CELL_DIAMETER,
                     elongation: float = VOLUME_ELONGATION) -> np.ndarray:
    """Instance labels of cells separated by membranes (0), each one 6-connected object.

    The near side of every interface is membrane, so no two cells touch across a face;
    a cell whose warped border cuts it in pieces keeps its pieces as separate objects,
    and pieces under ``MIN_OBJECT_VOXELS`` become membrane.
    """
    cells = elongated_cells(shape, rng, cell_diameter, elongation)
    objects = connected_components(np.where(membranes(cells, rng, cell_diameter), 0, cells), background=0,
                                   connectivity=1)
    objects[np.bincount(objects.ravel())[objects] < MIN_OBJECT_VOXELS] = 0
    return connected_components(objects > 0, connectivity=1)


def generate_volume(depth: int, size: int, *, seed: int, split: str = "train") -> tuple[np.ndarray, np.ndarray,
                                                                                         np.ndarray]:
    """A near-isotropic EM-like volume of ``depth`` slices of ``size`` x ``size`` voxels: the image
    (uint8), binary labels (255 interior, 0 membrane) and instance labels (uint16), each (z, y, x)."""
    rng = np.random.default_rng([seed, SPLITS[split]])
    instances = volume_instances((depth, size, size), rng)
    cell_brightness = rng.uniform(0.58, 0.75, size=instances.max() + 1)
    base = np.where(instances > 0, cell_brightness[instances], rng.uniform(0.12, 0.2))
    image = render(base, rng)
    binary = np.where(instances > 0, 255, 0).astype(np.uint8)
    return image, binary, instances.astype(np.uint16)
