"""Step: choose the segmentation settings on held-out labelled slices (:mod:`unetflow.tuning`),
written as JSON (read by the segment step when ``segment.settings: tuned``) and the whole
sweep as CSV (plotted by the report)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from .. import cli, io, settings
from ..tuning import candidates, choose, sweep

log = logging.getLogger(__name__)


def plain(value):
    """A table cell as a JSON-ready Python value (numpy scalars are not)."""
    return value.item() if isinstance(value, np.generic) else value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unetflow.steps.tune", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="labelled data.zarr stores (validate_on)")
    parser.add_argument("--predictions", type=Path, nargs="+", required=True, help="their predictions, in order")
    parser.add_argument("--out", type=Path, required=True, help="the chosen settings (JSON)")
    parser.add_argument("--table", type=Path, required=True, help="the whole sweep (CSV)")
    cli.add_settings_option(parser, "tune")
    cli.add_blocks_option(parser)
    cli.add_dask_options(parser)
    cli.add_dims_option(parser, help="2: score slice by slice; 3: segment and score each dataset as one volume")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    options = settings.section("tune", json.loads(args.settings))
    trials = candidates(options["grid"], settings.section("segment"))
    log.info("tuning %d candidate settings on %s by %s", len(trials), ", ".join(map(str, args.data)), options["metric"])
    table = sweep(args.data, args.predictions, trials, metric=options["metric"], dims=args.dims,
                  scheduler=args.scheduler, workers=args.workers, blocks=json.loads(args.blocks),
                  workspace=args.out.parent / f".{args.out.name}.blocks")
    best = choose(table, options["tolerance"])
    table.insert(0, "chosen", table.index == best)
    chosen = {key: plain(value) for key, value in trials[best].items()}
    result = {"settings": chosen, "metric": options["metric"],
              "score": float(table.at[best, "score"]), "candidates": len(trials),
              "tuned_on": [str(path) for path in args.data], "slices": table.attrs["slices"]}
    if args.dims == 3:
        result |= {"dims": 3, "volumes": table.attrs["volumes"]}
    with io.atomic_store(args.table) as temporary:
        table.to_csv(temporary, index=False)
    with io.atomic_store(args.out) as temporary:
        temporary.write_text(json.dumps(result, indent=2) + "\n")
    log.info("chose %s: %s %.4f on %d slices%s", result["settings"], options["metric"], result["score"],
             result["slices"], " (scored as volumes)" if args.dims == 3 else "")


if __name__ == "__main__":
    cli.run(main)
