"""Segmentation methods side by side on one ISBI 2012 model's predictions (issue 33): each
method tuned on the validation slices 15-17 only, scored on the report slices 18-21, and its
time per 512 x 512 slice.

Run: python benchmarks/isbi_methods.py [--out DIR] [--minutes 30] [--run CHECKOUT] [--model cpu30]
     python benchmarks/isbi_methods.py --rescore --out DIR [--run CHECKOUT] [--model cpu30]

The workflow itself runs in a copy of the checkout (``snakemake --configfile
config/isbi2012.yaml png.yaml``: the ``--model`` preset of the ISBI config, cpu30 or
cpu30_aff (cpu30 with affinity outputs), trained for ``--minutes``, predicting 15-17 and
18-21). Then, on the same predictions, each method's entries of the ISBI config's
``tune.grid`` (the schema's default and the mutex watershed) become the grid
(``method.yaml``): only tune, segment, evaluate and report rerun, which the run's job counts
show. The ``all`` row is that whole grid, the tune rule choosing among the methods. Every
row's scores are the dataset row of ``results/evaluation/<model>/isbi_report.csv``; the timing
segments the four report slices with each method's tuned settings (and the predicted
affinities, where the model has them), one after another, in this process.

``--rescore`` scores an earlier run's rows again with this checkout's code (new columns,
such as the V_Rand of the objects): each row's chosen settings segment the report slices of
the run's predictions (``--run``, or ``--out``'s ``run``) by this checkout's segment and
evaluate steps in a scratch folder; nothing is trained or tuned again, and the rows keep their
choices, tuning scores and times. It writes ``rescored.json`` beside ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from common import ISBI, REPO, checkout_of, isbi_png_datasets, machine, REPORT_COLUMNS, report_scores, snapshot

sys.path.insert(0, str(REPO / "workflow"))
from unetflow import io  # noqa: E402
from unetflow.methods.segmenters import segment, settings_of  # noqa: E402



def png_config(minutes: float, model: str) -> dict:
    """The ISBI datasets from the PNG folders, predicting the validation and report slices."""
    datasets = isbi_png_datasets()
    return {"datasets": datasets, "predict_on": ["isbi_report"], "run_models": [model],
            "models": {model: {"train": {"max_minutes": minutes}}}}


def method_grids(model: str) -> dict[str, list[dict]]:
    """Each method's entries of the ISBI config's tune grid, and the whole grid as ``all``; for a
    model with affinities also the mutex watershed's entries on estimated affinities (the same
    classes, its affinity channels left unread)."""
    config = yaml.safe_load((REPO / "config" / "isbi2012.yaml").read_text())
    grid = config["tune"]["grid"]
    methods = dict.fromkeys(method for entry in grid for method in entry["method"])
    grids = {method: [entry for entry in grid if method in entry["method"]] for method in methods}
    if config["models"][model].get("affinities"):
        grids["mutex_watershed (estimated affinities)"] = [{**entry, "affinities": ["estimated"]}
                                                           for entry in grids["mutex_watershed"]]
    return {**grids, "all": grid}


def run(checkout: Path, *configs: str) -> tuple[float, int]:
    """Run the workflow; seconds and the number of jobs it ran."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile",
                           "config/isbi2012.yaml", *configs], cwd=checkout, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"snakemake failed in {checkout}:\n{done.stderr[-4000:]}")
    counted = re.findall(r"(\d+) of (\d+) steps \(100%\) done", done.stderr)
    return time.perf_counter() - start, int(counted[-1][1]) if counted else 0


def seconds_per_slice(checkout: Path, model: str, chosen: dict) -> float:
    """Mean time to segment one report slice with ``chosen`` settings."""
    probabilities = io.open_probabilities(checkout / f"results/predictions/{model}/isbi_report.zarr")
    options = dict(chosen)
    method = options.pop("method")
    slices = [(io.foreground_probability(probabilities, z), io.affinity_plane(probabilities, z))
              for z in range(probabilities.shape[1])]
    start = time.perf_counter()
    for foreground, affinities in slices:
        segment(foreground, method, options, predicted=affinities)
    return (time.perf_counter() - start) / len(slices)


def rescore(out: Path, model: str, checkout: Path) -> list[dict]:
    """The rows of ``out/results.json``, whose run is ``checkout``, scored again by this checkout's
    steps (see the module's notes)."""
    earlier = json.loads((out / "results.json").read_text())
    rows = []
    for row in earlier["rows"]:
        scratch = out / "rescore" / re.sub(r"\W+", "_", row["method"])
        scratch.mkdir(parents=True, exist_ok=True)
        scores = report_scores(checkout, model, row["chosen"], scratch)
        rows.append({**row, **{column: float(scores[column]) for column in REPORT_COLUMNS}})
        print(json.dumps(rows[-1]), flush=True)
    (out / "rescored.json").write_text(json.dumps({"machine": earlier["machine"], "rows": rows}, indent=1))
    return rows


def print_table(rows: list[dict]) -> None:
    for row in rows:
        settings_text = ", ".join(f"{key} {value}" for key, value in
                                  settings_of(row["chosen"]["method"], row["chosen"]).items())
        print(f"| {row['method']} | {row['chosen']['method']}: {settings_text} ({row['tuning_score']:.4f}) | "
              + " | ".join(f"{row[column]:.4f}" for column in REPORT_COLUMNS)
              + f" | {row['seconds_per_slice']:.2f} s | {row['jobs']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/unetflow-isbi-methods"))
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget (the cpu30 preset's 30)")
    parser.add_argument("--run", type=Path, help="a checkout of this repository where the workflow ran with "
                        "this script's png.yaml: its model and predictions are reused (stale steps rerun)")
    parser.add_argument("--model", default="cpu30", help="the ISBI config's model to train (cpu30, cpu30_aff)")
    parser.add_argument("--rescore", action="store_true", help="score the rows of --out's results.json again "
                        "with this checkout's code, reusing --out's run (nothing trained or tuned)")
    args = parser.parse_args()
    if args.rescore:
        print_table(rescore(args.out, args.model, args.run or args.out / "run"))
        return
    if not (ISBI / "train" / "label").is_dir():
        sys.exit(f"ISBI 2012 data not found at {ISBI}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.run:
        checkout = args.run  # an earlier run: only what the code changed since reruns
    else:
        checkout = checkout_of(snapshot(args.out), args.out / "run")
    (checkout / "png.yaml").write_text(yaml.safe_dump(png_config(args.minutes, args.model)))
    seconds, jobs = run(checkout, "png.yaml")
    print(f"trained and predicted: {seconds:.0f} s, {jobs} jobs", flush=True)
    rows = []
    for method, grid in method_grids(args.model).items():
        (checkout / "method.yaml").write_text(yaml.safe_dump({"tune": {"grid": grid}}))
        seconds, jobs = run(checkout, "png.yaml", "method.yaml")
        table = pd.read_csv(checkout / f"results/evaluation/{args.model}/isbi_report.csv", dtype={"slice": str})
        scores = table[table["slice"] == "all"].iloc[0]
        choice = json.loads((checkout / f"results/tuning/{args.model}/segment.json").read_text())
        rows.append({"method": method, "chosen": choice["settings"], "tuning_score": choice["score"],
                     **{column: float(scores[column]) for column in REPORT_COLUMNS},
                     "seconds_per_slice": seconds_per_slice(checkout, args.model, choice["settings"]), "jobs": jobs,
                     "run_seconds": round(seconds, 1)})
        print(json.dumps(rows[-1]), flush=True)
    (args.out / "results.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    print_table(rows)


if __name__ == "__main__":
    main()
