"""One model against the ensemble of folds on ISBI 2012 (issue 33): the ISBI config's cpu30_cv
(3 folds of 10 minutes each) run by the workflow, then, on the report slices 18-21, each fold's
model alone and the ensemble, segmented with the settings the tune rule chose on the held-out
slabs; and the ensemble with each method's best settings of that sweep (its lowest score:
the tune rule's choice may be another candidate, within its 0.001 tolerance, of lower pixel
error). Also the time of the ensemble step (averaging the members' probabilities) against
the predict step's, and the challenge's V_Rand of other ways to combine the folds' maps
(median, minimum, geometric mean), for comparison only: a rule chosen on these slices would
be a choice on the report slices.

Run: python benchmarks/isbi_ensemble.py [--out DIR] [--run CHECKOUT]

Without ``--run`` the workflow runs in a copy of the checkout (``snakemake --configfile
config/isbi2012.yaml png.yaml``, png.yaml pointing at ../shared's PNG folders and running only
cpu30_cv, predicting 18-21); with it, the results of a checkout where that ran are read. The
rows' segmentations and scores are made with this checkout's segment and evaluate steps in a
scratch folder, never in the run's results (so a run of older code is scored as today's code
scores it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from common import REPO, checkout_of, isbi_png_datasets, machine, REPORT_COLUMNS, report_scores, snapshot

sys.path.insert(0, str(REPO / "workflow"))
from unetflow import io, isbi_scores  # noqa: E402

MODEL = "cpu30_cv"
SETTING_KEYS = ["method", "threshold", "seeds", "h", "min_size", "mask", "merge", "bias"]


def png_config() -> dict:
    """The ISBI datasets from the PNG folders; cpu30_cv alone, predicting the report slices."""
    datasets = isbi_png_datasets()
    return {"datasets": datasets, "predict_on": ["isbi_report"], "run_models": [MODEL]}


def scores(checkout: Path, model: str, settings: dict, scratch: Path) -> dict:
    """The row's columns of ``model``'s report slices segmented with ``settings``."""
    row = report_scores(checkout, model, settings, scratch)
    return {column: row[column] for column in REPORT_COLUMNS}


def best_of_each_method(sweep: pd.DataFrame) -> dict[str, dict]:
    """Each method's lowest-scoring candidate of the tune rule's sweep, as segment settings."""
    best = {}
    for method, candidates in sweep.groupby("method", sort=False):
        row = candidates.loc[candidates["score"].idxmin()]
        best[method] = {key: row[key].item() if hasattr(row[key], "item") else row[key]
                        for key in SETTING_KEYS if pd.notna(row[key])}
    return best


def benchmark_seconds(checkout: Path, rule: str, model: str) -> float:
    return float(pd.read_csv(checkout / f"benchmarks/runs/{rule}/{model}/isbi_report.tsv", sep="\t")["s"].iloc[0])


COMBINATIONS = {"mean (the ensemble)": lambda maps: maps.mean(0), "median": lambda maps: np.median(maps, 0),
                "minimum": lambda maps: maps.min(0),
                "geometric mean": lambda maps: np.exp(np.log(np.clip(maps, 1e-6, 1)).mean(0))}


def combined_v_rand(checkout: Path, folds: list[str]) -> dict[str, dict]:
    """The challenge's V_Rand and V_Info (best threshold of its sweep) of each fold's foreground
    map of the report slices and of each combination of them."""
    results = checkout / "results"
    maps = [io.open_probabilities(results / "predictions" / fold / "isbi_report.zarr")[1] for fold in folds]
    truth = io.open_labels(io.open_store(results / "isbi_report/data.zarr"), "objects")[:]
    candidates = {fold: foreground for fold, foreground in zip(folds, maps)}
    candidates |= {name: combine(np.stack(maps).astype(np.float64)) for name, combine in COMBINATIONS.items()}
    return {name: isbi_scores.best_scores([isbi_scores.slice_scores(plane, truth[z]) for z, plane in
                                           enumerate(foreground)]) for name, foreground in candidates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/unetflow-isbi-ensemble"))
    parser.add_argument("--run", type=Path, help="a checkout where the workflow ran cpu30_cv on png.yaml")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    checkout = args.run or checkout_of(snapshot(args.out), args.out / "checkout")
    if not args.run:
        (checkout / "png.yaml").write_text(yaml.safe_dump(png_config()))
        subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/isbi2012.yaml",
                        "png.yaml"], cwd=checkout, check=True)
    tuning = checkout / "results/tuning" / MODEL
    chosen = json.loads((tuning / "segment.json").read_text())["settings"]
    folds = sorted(path.name for path in (checkout / "results/models").glob(f"{MODEL}-fold*"))
    rows = [{"model": fold, "segmentation": f"{chosen['method']} (the ensemble's)",
             **scores(checkout, fold, chosen, args.out)} for fold in folds]
    (args.out / "chosen").mkdir(exist_ok=True)
    rows.append({"model": MODEL, "segmentation": f"{chosen['method']} (the tune rule's choice)",
                 **scores(checkout, MODEL, chosen, args.out / "chosen")})
    # each method's lowest score on the slabs; the choice may differ from its method's best, as the
    # tune rule takes the lowest pixel error among candidates within 0.001 of the best
    for method, settings in best_of_each_method(pd.read_csv(tuning / "sweep.csv")).items():
        rows.append({"model": MODEL, "segmentation": f"{method} (its best on the slabs)",
                     **scores(checkout, MODEL, settings, args.out)})
    print(f"{machine()}; {checkout}\n{pd.DataFrame(rows).to_string(index=False, float_format=lambda value: f'{value:.4f}')}")
    predict = [benchmark_seconds(checkout, "predict", fold) for fold in folds]
    ensemble = benchmark_seconds(checkout, "ensemble", MODEL)
    for name, best in combined_v_rand(checkout, folds).items():
        print(f"{name}: V_Rand {best['v_rand']:.4f} (threshold {best['v_rand_threshold']}), "
              f"V_Info {best['v_info']:.4f}")
    print(f"4 report slices: predict {', '.join(f'{s:.1f}' for s in predict)} s per fold model; ensemble "
          f"{ensemble:.2f} s ({ensemble / sum(predict):.3f}x their predictions)")


if __name__ == "__main__":
    main()
