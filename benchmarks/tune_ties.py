"""How the tune rule's tie tolerance and metric choose, judged on tuning slices it did not see.

The tune rule ranks every candidate by its mean score on the held-out slices and breaks near
ties (within ``tune.tolerance``) by the lowest pixel error. Whether that tie-break helps cannot
be judged on the report slices without tuning on them, so this script judges it inside the
tuning data: a cross-validation run's tuning slices are three slabs (each fold's held-out
slices). For each slab, every rule chooses on the other two slabs, and its choice is scored on
this one; nothing of the report slices is read. Every candidate's per-slice scores are computed
once (the tune rule's own code, ``unetflow.tuning.slice_scores``) and saved, so the rules are
compared on the same numbers.

    python benchmarks/tune_ties.py --run RUN_FOLDER --model cpu30_cv --out OUT
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import yaml

from common import machine
from unetflow import settings
from unetflow.methods.metrics import OBJECTIVES
from unetflow.methods.segmenters import settings_of
from unetflow.parallel import dask_config
from unetflow.tuning import candidates, choose, slice_scores, tuning_slices

TOLERANCES = (0.0, 0.0005, 0.001, 0.002, 0.005)
METRICS = ("adapted_rand_error", "v_rand")


def tuning_pairs(run: Path, model: str) -> tuple[list[Path], list[Path]]:
    """The held-out slabs of a cross-validated model's folds and their predictions."""
    data = sorted((run / "results").glob(f"{model}-fold*-heldout-*/data.zarr"))
    if not data:
        raise SystemExit(f"{run}: no held-out slabs of {model}'s folds (results/{model}-fold*-heldout-*)")
    predictions = [run / "results" / "predictions" / path.parent.name.split("-heldout-")[0] / f"{path.parent.name}.zarr"
                   for path in data]
    return data, predictions


def per_slice_table(run: Path, model: str, grid: list[dict], workers: int) -> pd.DataFrame:
    """One row per (slab, slice, candidate) with the candidate's scores on that slice."""
    data, predictions = tuning_pairs(run, model)
    trials = candidates(grid, settings.section("segment"))
    with dask_config("threads", workers):
        per_slice, _ = slice_scores(data, predictions, trials)
    slab_of = {str(path): number for number, path in enumerate(data)}
    rows = []
    for number, ((store, _), scores) in enumerate(zip(tuning_slices(data, predictions), per_slice)):
        rows += [{"slab": slab_of[store], "slice": number, "candidate": index, **row} for index, row in enumerate(scores)]
    return pd.DataFrame(rows)


def chosen_on(table: pd.DataFrame, metric: str, tolerance: float) -> int:
    """The candidate the tune rule chooses from per-slice rows (their means, as it ranks)."""
    means = table.groupby("candidate").mean(numeric_only=True)
    means["score"] = [OBJECTIVES[metric].of(row) for row in means.to_dict("records")]
    return int(means.index[choose(means.reset_index(drop=True), tolerance)])


def nested(table: pd.DataFrame) -> pd.DataFrame:
    """Per metric, tolerance and held-out slab: the choice on the other slabs, scored on this one."""
    rows = []
    for metric in METRICS:
        for tolerance in TOLERANCES:
            for slab in sorted(table["slab"].unique()):
                candidate = chosen_on(table[table["slab"] != slab], metric, tolerance)
                held = table[(table["slab"] == slab) & (table["candidate"] == candidate)].mean(numeric_only=True)
                rows.append({"metric": metric, "tolerance": tolerance, "slab": slab, "candidate": candidate,
                             "adapted_rand_error": held["adapted_rand_error"], "objects_v_rand": held["objects_v_rand"]})
    return pd.DataFrame(rows)


def described(candidate: dict) -> str:
    """A candidate's method and the settings it takes."""
    taken = settings_of(candidate["method"], candidate)
    return ", ".join([candidate["method"], *(f"{key} {value}" for key, value in taken.items())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run of a model with folds")
    parser.add_argument("--model", default="cpu30_cv")
    parser.add_argument("--config", type=Path, default=Path(__file__).resolve().parents[1] / "config/isbi2012.yaml",
                        help="the config whose tune grid is swept")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cached = args.out / "per_slice.csv"
    # the workflow passes the grid as JSON with sorted keys, which orders its candidates
    grid = json.loads(json.dumps(yaml.safe_load(args.config.read_text())["tune"]["grid"], sort_keys=True))
    started = time.time()
    if not cached.exists():  # the sweep, once; the rules are compared from the saved scores
        per_slice_table(args.run, args.model, grid, args.workers).to_csv(cached, index=False)
        (args.out / "run.json").write_text(json.dumps({"machine": machine(), "run": str(args.run),
                                                       "sweep seconds": round(time.time() - started)}, indent=2) + "\n")
    table = pd.read_csv(cached)
    result = nested(table)
    summary = result.groupby(["metric", "tolerance"])[["adapted_rand_error", "objects_v_rand"]].mean()
    summary["choices (slab 0, 1, 2)"] = result.groupby(["metric", "tolerance"])["candidate"].apply(
        lambda chosen: ", ".join(map(str, chosen)))
    trials = candidates(grid, settings.section("segment"))
    for candidate in sorted(result["candidate"].unique()):
        print(f"candidate {candidate}: {described(trials[candidate])}")
    result.to_csv(args.out / "nested.csv", index=False)
    print(summary.reset_index().to_markdown(index=False, floatfmt=".4f"))


if __name__ == "__main__":
    main()
