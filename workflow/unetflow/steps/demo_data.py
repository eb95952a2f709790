"""The demo's data: synthetic EM-like stacks with ground truth written as TIFFs
(see :mod:`unetflow.synthetic`).

Writes ``train-volume.tif``, ``train-labels.tif`` (255 interior, 0 membrane) and
``train-instances.tif``, and the same three of ``test``, into ``--out-dir``: with
``--dims 2`` stacks of independent slices (``--train-slices``, ``--test-slices``), with
``--dims 3`` two near-isotropic volumes of ``--depth`` slices whose cells run through z
(the train and the test volume drawn from different generators).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tifffile

from .. import cli, io, settings
from ..errors import InputError
from ..plots import pyplot, save_figure
from ..synthetic import generate_stack, generate_volume

def write_tiff(path: Path, stack: np.ndarray) -> None:
    """Write a multi-page TIFF (ImageJ-compatible) atomically."""
    with io.atomic_store(path) as temporary:
        tifffile.imwrite(temporary, stack, imagej=True, compression="zlib", metadata={"axes": "ZYX"})


def write_preview(path: Path, image: np.ndarray, binary: np.ndarray, instances: np.ndarray) -> None:
    """A PNG of one slice beside its binary and instance labels."""
    figure, axes = pyplot().subplots(1, 3, figsize=(12, 4.3))
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=255)
    axes[1].imshow(binary, cmap="gray", vmin=0, vmax=255)
    axes[2].imshow(np.ma.masked_equal(instances % 20 + (instances > 0), 0), cmap="tab20", interpolation="nearest")
    for axis, title in zip(axes, ("synthetic image", "binary labels (255 = cell)", "instance labels")):
        axis.set_title(title)
        axis.axis("off")
    save_figure(figure, path, dpi=90)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unetflow.steps.demo_data", description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--mode", choices=("em", "touching"), default="em")
    demo = settings.section("demo")
    parser.add_argument("--seed", type=int, default=demo["seed"])
    parser.add_argument("--train-slices", type=int, default=demo["train_slices"])
    parser.add_argument("--test-slices", type=int, default=demo["test_slices"])
    parser.add_argument("--size", type=int, default=demo["size"])
    parser.add_argument("--preview", type=Path, help="also write a PNG of the first training slice")
    cli.add_dims_option(parser, help="2: stacks of independent slices; 3: volumes whose cells run through z (em)")
    parser.add_argument("--depth", type=int, default=demo["depth"],
                        help="slices of each 3-D volume (--dims 3; --train-slices and --test-slices are for 2-D)")
    args = parser.parse_args(argv)
    if args.dims == 3 and args.mode != "em":
        raise InputError(f"demo_data: --mode {args.mode} makes 2-D slices only; use --mode em with --dims 3")
    if args.dims == 3 and args.depth < 1:
        raise InputError(f"demo_data: --depth is {args.depth}; give the slices of each volume, at least 1")
    return args


def generate(args: argparse.Namespace, split: str, slices: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The images, binary and instance labels of ``split``: a volume (``--dims 3``) or a stack."""
    if args.dims == 3:
        return generate_volume(args.depth, args.size, seed=args.seed, split=split)
    return generate_stack(slices, args.size, seed=args.seed, split=split, mode=args.mode)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for split, slices in (("train", args.train_slices), ("test", args.test_slices)):
        images, binary, instances = generate(args, split, slices)
        write_tiff(args.out_dir / f"{split}-volume.tif", images)
        write_tiff(args.out_dir / f"{split}-labels.tif", binary)
        write_tiff(args.out_dir / f"{split}-instances.tif", instances)
        if split == "train" and args.preview:
            write_preview(args.preview, images[0], binary[0], instances[0])


if __name__ == "__main__":
    cli.run(main)
