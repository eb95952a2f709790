"""Step: an ensemble's probabilities, the mean of its members' prediction stores
(:mod:`unetflow.ensemble`), written as a prediction store like the predict step's."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import cli
from ..ensemble import write_ensemble
from ..parallel import dask_config


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unetflow.steps.ensemble", description=__doc__.splitlines()[0])
    parser.add_argument("members", type=Path, nargs="+", help="the members' prediction stores")
    parser.add_argument("--out", type=Path, required=True, help="the ensemble's prediction store")
    cli.add_dask_options(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with dask_config(args.scheduler, args.workers):
        write_ensemble(args.members, args.out)


if __name__ == "__main__":
    cli.run(main)
