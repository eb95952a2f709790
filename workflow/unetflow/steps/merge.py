"""Merge step: the store a split predict or segment filled, renamed to its output once
every part is done (see :mod:`unetflow.parts`); a volume segmented in parts is stitched
and written here (:func:`unetflow.blockwise.merge_parts`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import blockwise, cli, fragments, parts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unetflow.steps.merge", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the output store the parts filled")
    parser.add_argument("--parts", type=int, required=True)
    cli.add_dask_options(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if fragments.is_shared(args.out):
        blockwise.merge_parts(args.out, args.parts, scheduler=args.scheduler, workers=args.workers)
    else:
        parts.merge(args.out, args.parts)


if __name__ == "__main__":
    cli.run(main)
