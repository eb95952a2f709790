"""The run's plan (unetflow.plan): roles, provenance from the one table, and `unetflow check`."""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from unetflow import plan_checks, settings
from unetflow.errors import InputError
from unetflow.plan import Plan
from unetflow.provenance import STAGES, Node

DEMO = yaml.safe_load((REPO / "config/config.yaml").read_text())


def plan_of(**changes) -> Plan:
    """The demo's plan with ``changes`` (section -> keys) on top."""
    config = copy.deepcopy(DEMO)
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values} if isinstance(values, dict) else values
    return Plan(settings.whole_config(config))


def upstream(plan: Plan) -> dict[str, str]:
    """The upstream hash of every job of the demo's plan."""
    model, test, val = "small", "demo_test", "demo_val"
    return {"weights": plan.upstream_hash("weights", dataset="demo_train"),
            "augment": plan.upstream_hash("augment", dataset="demo_train"),
            "train": plan.upstream_hash("train", model=model),
            "predict": plan.upstream_hash("predict", model=model, dataset=test),
            "predict val": plan.upstream_hash("predict", model=model, dataset=val),
            "tune": plan.upstream_hash("tune", model=model),
            "segment": plan.upstream_hash("segment", model=model, dataset=test),
            "evaluate": plan.upstream_hash("evaluate", model=model, dataset=test),
            "report": plan.upstream_hash("report")}


def changed(before: Plan, after: Plan) -> set[str]:
    first, second = upstream(before), upstream(after)
    return {job for job in first if first[job] != second[job]}


def test_a_setting_changes_the_provenance_of_what_reads_its_outputs_and_nothing_before():
    demo = plan_of()
    assert changed(demo, plan_of()) == set()
    # a setting is in its own rule's params; its upstream hash is that of the rules below
    assert changed(demo, plan_of(weights={"w0": 5})) == {"augment", "train", "predict", "predict val", "tune",
                                                        "segment", "evaluate", "report"}
    assert changed(demo, plan_of(train={"lr": 0.01})) == {"predict", "predict val", "tune", "segment", "evaluate",
                                                         "report"}
    assert changed(demo, plan_of(predict={"tile": 124})) == {"tune", "segment", "evaluate", "report"}
    assert changed(demo, plan_of(tune={"metric": "variation_of_information"})) == {"segment", "evaluate", "report"}


def test_runtime_keys_change_no_provenance():
    demo = plan_of()
    assert changed(demo, plan_of(train={"workers": 3, "log_every": 1, "validate_every": 7},
                                 predict={"batch_size": 2}, dask={"scheduler": "synchronous"})) == set()
    assert changed(demo, plan_of(train={"keep": "best"})) >= {"predict", "segment"}  # keep best: the model changes


def test_every_rule_with_an_upstream_param_is_in_the_table():
    rules = "".join(path.read_text() for path in (REPO / "workflow/rules").glob("*.smk"))
    used = set(re.findall(r'(?:upstream|made_with)\("(\w+)"', rules))
    assert used <= set(STAGES) and {"ingest", "train", "predict", "tune", "segment", "evaluate"} <= used
    assert Node.of("segment", model="m", dataset="d") == Node.of("segment", dataset="d", model="m")


def test_roles_and_their_refusals():
    demo = plan_of()
    assert demo.trained_models() == ["small"] and demo.evaluated_datasets() == ["demo_test"]
    assert [row["use"] for row in demo.data_split()] == ["train", "validate + tune", "report"]
    with pytest.raises(InputError, match="train_on names 'nowhere', which is not in datasets"):
        plan_checks.check(plan_of(train_on=["nowhere"]))
    with pytest.raises(InputError, match="keep is best, but validate_on is empty"):
        plan_checks.check(plan_of(train={"keep": "best"}, validate_on=[], segment={"settings": "fixed"}))
    plan_checks.check(plan_of(tune={"metric": "v_rand"}))  # the challenge's score of 2-D slices
    with pytest.raises(InputError, match="tune.metric is v_info, the ISBI 2012 challenge's score of 2-D slices"):
        plan_checks.check(plan_of(dims=3, tune={"metric": "v_info"}))


def test_unetflow_check_prints_the_plan_or_the_problem(tmp_path):
    command = [sys.executable, "-m", "unetflow.command", "check"]
    accepted = subprocess.run([*command, "config/config.yaml"], cwd=REPO, capture_output=True, text=True)
    assert accepted.returncode == 0, accepted.stderr
    assert "train on:    demo_train" in accepted.stdout and "samples 188 -> 100" in accepted.stdout
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"predict_on": ["demo_tset"]}))
    refused = subprocess.run([*command, "config/config.yaml", str(wrong)], cwd=REPO, capture_output=True, text=True)
    assert refused.returncode == 1
    assert "predict_on names 'demo_tset', which is not in datasets" in refused.stderr


def test_block_jobs_request_memory_for_the_most_demanding_method_they_may_run():
    halo = settings.default("blocks", "halo")
    plane = (settings.default("blocks", "plane_edge") + 2 * halo) ** 2
    volume = (settings.default("blocks", "edge") + 2 * halo) ** 3
    assert plan_of().segmentation_methods("tune") == {"watershed", "components", "agglomeration"}
    assert plan_of().block_worker_mb("tune") == int(plane * 140 / 1e6) + 250  # the watershed's 140 bytes a pixel
    mutex = plan_of(tune={"grid": [{"method": ["watershed"]}, {"method": ["mutex_watershed"], "bias": [0.1]}]})
    assert mutex.block_worker_mb("tune") == mutex.block_worker_mb("segment") == int(plane * 1400 / 1e6) + 250
    fixed = plan_of(dims=3, segment={"settings": "fixed", "method": "components"})
    assert fixed.segmentation_methods("segment") == {"components"}
    assert fixed.block_worker_mb("segment") == int(volume * 13 / 1e6) + 250
    assert fixed.block_worker_mb("tune") == int(volume * 140 / 1e6) + 250  # tune sweeps the default grid


def test_the_working_memory_read_from_the_source_is_what_the_methods_register():
    from unetflow.methods.registry import registered_keyword
    from unetflow.methods.segmenters import WORKING_BYTES

    assert registered_keyword("segmenters", "segmenter", "bytes_per_voxel") == WORKING_BYTES
    assert WORKING_BYTES["mutex_watershed"] > 5 * WORKING_BYTES["watershed"]
