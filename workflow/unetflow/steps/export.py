"""Step: a trained U-Net as a bioimage.io model package (model spec 0.5), one zip file
(:mod:`unetflow.bioimageio_package` says what the package holds)."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from .. import cli, io
from ..bioimageio_package import (
    DEFAULT_TAGS,
    PAPER_OUTPUT_TILE,
    check_exportable,
    check_license,
    check_name,
    default_name,
    describe,
    example_edge,
    example_tile,
    exported_network,
    input_sizes,
    output_halo,
    stage_files,
)
from ..errors import InputError
from ..inference import read_model_file
from ..model import count_parameters

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unetflow.steps.export", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="model.pt written by the train rule")
    parser.add_argument("out", type=Path, help="the package to write (.zip)")
    parser.add_argument("--name", help="the model's name (default: unetflow U-Net <the model's folder>)")
    parser.add_argument("--author", action="append", help="an author's name (repeat for more; default: unetflow)")
    parser.add_argument("--license", default="MIT", help="SPDX license identifier of the weights (default: MIT)")
    parser.add_argument("--tag", action="append", default=[], help="a tag to add, e.g. electron-microscopy")
    parser.add_argument("--data", type=Path, help="data.zarr to take the test tile from (default: synthetic)")
    parser.add_argument("--tile", type=int, default=PAPER_OUTPUT_TILE,
                        help=f"output edge of the test tile, rounded up to a valid size (default {PAPER_OUTPUT_TILE})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic test tile")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        from bioimageio.spec import save_bioimageio_package
        from pydantic import ValidationError
    except ImportError as error:
        raise InputError("export: bioimageio.spec is not installed; install unetflow[bioimageio] (or use the "
                         "conda environment envs/bioimageio.yaml)") from error
    saved, architecture = read_model_file(args.model)
    check_exportable(architecture, args.model)
    name = check_name(args.name or default_name(args.model))
    check_license(args.license)
    input_range, halo = input_sizes(architecture), output_halo(architecture)
    tile = example_tile(example_edge(architecture, args.tile), data=args.data, seed=args.seed,
                        channels=architecture.in_channels)
    network = exported_network(args.model, architecture, saved["state_dict"])
    with tempfile.TemporaryDirectory(prefix="unetflow-export-") as staging:
        files = stage_files(Path(staging), architecture=architecture, saved=saved, network=network,
                            source=args.model, name=name, tile=tile, input_range=input_range, halo=halo)
        try:
            description = describe(name=name, authors=args.author or ["unetflow"], license_id=args.license,
                                   tags=sorted({*DEFAULT_TAGS, *args.tag}), architecture=architecture, saved=saved,
                                   files=files, input_range=input_range, halo=halo,
                                   parameters=count_parameters(network))
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, problem['loc']))}: {problem['msg'][:200]}"
                                 for problem in error.errors())
            raise InputError(f"export: the package description of {args.model} is invalid ({problems}); check "
                             "--name, --author, --license (an SPDX identifier such as MIT or CC-BY-4.0) and "
                             "--tag") from error
        with io.atomic_store(args.out) as temporary:
            save_bioimageio_package(description, output_path=temporary)
    log.info("wrote %s: %s, input %d + n x %d px, test tile %d px", args.out, name, *input_range, tile.shape[-1])


if __name__ == "__main__":
    cli.run(main)
