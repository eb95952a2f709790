"""View: one OME-Zarr image per model and dataset that viewers open whole, the raw image
with the model's segmentation (and the ground truth, when labelled) as its labels.

napari (napari-ome-zarr) and Fiji find label images in the ``labels`` group of the
image they open, but the raw image (``data.zarr``) and each model's segmentation are
written by different rules into stores of their own. The view store joins them
without copying: its resolution levels and label images are relative symbolic links
into those stores (copies where the file system has no links), and its metadata is
the raw image's with the list of labels. Moving ``results/`` as a whole keeps the
links valid.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path

from .. import cli, io, ngff

log = logging.getLogger(__name__)
SEGMENTATION, GROUND_TRUTH = "segmentation", "ground_truth"
IMAGE_KEYS = ("multiscales", "omero")  # the image metadata a view takes from data.zarr


def link(target: Path, link_path: Path) -> str:
    """Make ``link_path`` a relative symbolic link to ``target``, or a copy of it where links
    cannot be made; return which."""
    try:
        os.symlink(os.path.relpath(target, link_path.parent), link_path, target_is_directory=target.is_dir())
        return "link"
    except OSError as error:  # e.g. Windows without the privilege, or a file system without links
        log.warning("cannot link %s (%s); copying it instead", link_path, error)
        shutil.copytree(target, link_path)
        return "copy"


def write_view(data: Path, segmentation: Path, out: Path, *, name: str) -> None:
    """Write the view store ``out`` of the image in ``data`` with ``segmentation`` as its labels.

    Parameters
    ----------
    data
        A ``data.zarr`` store (the image, and its labels if the dataset is labelled).
    segmentation
        A segmentation store of that image (a label image, see the segment step).
    out
        The view store to write; nothing appears there unless it is complete.
    name
        The image's name in viewers.
    """
    image = io.open_store(data)
    labels = {SEGMENTATION: Path(segmentation)}
    if io.open_labels(image, "objects") is not None:
        labels[GROUND_TRUTH] = Path(data) / "labels" / "objects"
    with io.atomic_store(out) as temporary:
        view = io.create_group(temporary, io.zarr_format_of(image))
        metadata = ngff.ome(image)
        for key in IMAGE_KEYS:
            if key in metadata:
                ngff.set_ome(view, key, metadata[key])
        multiscales = metadata["multiscales"]
        multiscales[0]["name"] = name
        ngff.set_ome(view, "multiscales", multiscales)
        for level in (dataset["path"] for dataset in multiscales[0]["datasets"]):
            link(Path(data) / level, temporary / level)
        labels_group = view.create_group("labels")
        ngff.set_ome(labels_group, "labels", list(labels))
        kinds = {label: link(target, temporary / "labels" / label) for label, target in labels.items()}
        # the links are relative and the temporary store is the output's sibling, so they resolve as they will
        # from the output; a damaged image or segmentation is refused here, not in the viewer (the ground truth
        # was checked by open_labels)
        written = io.open_store(temporary)
        for key in (io.LEVEL0, f"labels/{SEGMENTATION}/{io.LEVEL0}"):
            io.checked_array(written, key)
    log.info("wrote %s: %s with labels %s", out, data, ", ".join(f"{label} ({kind})" for label, kind in kinds.items()))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unetflow.steps.view", description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="data.zarr of the dataset")
    parser.add_argument("segmentation", type=Path, help="a segmentation .zarr of it")
    parser.add_argument("out", type=Path, help="output view .ome.zarr")
    parser.add_argument("--name", help="the image's name in viewers (default: the output's name)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    write_view(args.data, args.segmentation, args.out, name=args.name or args.out.name.split(".")[0])


if __name__ == "__main__":
    cli.run(main)
