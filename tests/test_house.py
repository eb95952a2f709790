"""The house rules as tests: steps are thin leaves, the package has no import circle, every
rule's conda environment holds what its step imports, CPU steps import without torch, code
edits change the code fingerprint and plumbing edits do not."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter

import pytest
import yaml
from unetflow import fingerprints
from unetflow.fingerprints import PACKAGE, code_fingerprint, imported_modules

from conftest import REPO, copy_workflow

STEPS = sorted(path.stem for path in (PACKAGE / "steps").glob("*.py") if path.stem != "__init__")
# import name -> conda-forge package, where they differ
CONDA_NAMES = {"skimage": "scikit-image", "PIL": "pillow", "yaml": "pyyaml", "matplotlib": "matplotlib-base",
               "torch": "pytorch", "ome_zarr": "ome-zarr", "bioimageio": "bioimageio.spec"}
OPTIONAL = {"distributed"}  # imported only when dask.scheduler names a distributed scheduler


def rules() -> dict[str, tuple[str, str]]:
    """Rule -> (the step its shell runs, its conda environment file)."""
    found = {}
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^\s*rule ", path.read_text(), flags=re.MULTILINE)[1:]:
            name = block.split(":")[0]
            step = re.search(r"python -m unetflow\.steps\.(\w+)", block).group(1)
            env = re.search(r'conda:\s+"([^"]+)"', block).group(1)
            found[name] = (step, (path.parent / env).resolve())
    return found


def third_party_imports(step: str) -> set[str]:
    """Top-level names of the packages a step's modules import (lazy imports included)."""
    names = set()
    for module in imported_modules(PACKAGE / "steps" / f"{step}.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name not in ("unetflow", "__future__")}


def test_every_rule_runs_a_step_module_named_after_it():
    found = rules()
    assert set(found) == {"demo_data", "ingest", "weights", "augment", "train", "predict", "ensemble", "tune", "segment", "evaluate",
                          "report", "export", "merge_predictions", "merge_segmentation", "view", "tiff"}
    # the merge rules of a split stack (predict.parts) share one step
    assert all(rule == step or (rule.startswith("merge_") and step == "merge") for rule, (step, _) in found.items())
    assert sorted({step for step, _ in found.values()}) == STEPS


@pytest.mark.parametrize("step", STEPS)
def test_a_step_imports_no_other_step(step):
    modules = imported_modules(PACKAGE / "steps" / f"{step}.py")
    assert [m.name for m in modules if m.parent.name == "steps" and m.stem not in (step, "__init__")] == []


@pytest.mark.parametrize("rule", sorted(rules()))
def test_each_rules_conda_environment_holds_what_its_step_imports(rule):
    step, env = rules()[rule]
    entries = yaml.safe_load(env.read_text())["dependencies"]
    from_pip = [entry for listed in entries if isinstance(listed, dict) for entry in listed.get("pip", [])]
    listed = {re.split(r"[ <>=]", entry)[0] for entry in [*entries, *from_pip] if isinstance(entry, str)}
    needed = {CONDA_NAMES.get(name, name) for name in third_party_imports(step) - OPTIONAL}
    assert needed - listed == set(), f"{env.name} lacks what unetflow.steps.{step} imports"


def test_the_cpu_steps_import_without_torch():
    cpu_steps = sorted({step for step, env in rules().values() if env.name == "cpu.yaml"})
    assert {"tune", "segment", "evaluate", "weights", "augment"} <= set(cpu_steps)
    script = ("import sys; sys.modules['torch'] = None\n"  # `import torch` now raises ImportError
              + "".join(f"import unetflow.steps.{step}\n" for step in cpu_steps)
              + "assert 'torch' not in [m.split('.')[0] for m in sys.modules if sys.modules[m] is not None]")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


STEP_LINES = 250  # a step parses, calls library modules and writes: more is library code in the wrong place
COMMON_SMK_LINES = 150  # rules/common.smk reads the plan (unetflow.plan); the plan is Python, tested as such


@pytest.mark.parametrize("step", STEPS)
def test_a_step_module_is_thin(step):
    lines = len((PACKAGE / "steps" / f"{step}.py").read_text().splitlines())
    assert lines <= STEP_LINES, f"steps/{step}.py has {lines} lines: move what it computes into a library module"


def test_common_smk_is_short():
    lines = len((REPO / "workflow/rules/common.smk").read_text().splitlines())
    assert lines <= COMMON_SMK_LINES, f"rules/common.smk has {lines} lines: the plan belongs in unetflow/plan.py"


def test_no_import_circle_in_the_package():
    graph = {module: set(fingerprints._package_imports(module)) - {module} for module in PACKAGE.rglob("*.py")}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as error:
        circle = " -> ".join(str(module.relative_to(PACKAGE)) for module in error.args[1])
        pytest.fail(f"import circle: {circle}")


def test_the_code_fingerprint_follows_the_imports_of_a_step():
    weights = {path.relative_to(PACKAGE).as_posix() for path in imported_modules(PACKAGE / "steps" / "weights.py")}
    assert {"steps/weights.py", "distances.py", "io.py", "parallel.py", "settings.py"} <= weights
    assert not weights & {"model.py", "steps/ingest.py", "inference.py"}
    train = {path.relative_to(PACKAGE).as_posix() for path in imported_modules(PACKAGE / "steps" / "train.py")}
    assert {"methods/losses.py", "methods/architectures.py", "model.py", "augmentation.py"} <= train


def test_the_code_fingerprint_changes_with_code_but_not_with_comments_or_docstrings(tmp_path, monkeypatch):
    package = copy_workflow(tmp_path / "copy") / "workflow" / "unetflow"
    monkeypatch.setattr(fingerprints, "PACKAGE", package)
    before = {step: code_fingerprint(step) for step in STEPS}
    distances = package / "distances.py"
    source = distances.read_text()
    distances.write_text(source.replace('"""', '"""Another word. ', 1) + "\n# a comment\n")
    assert {step: code_fingerprint(step) for step in STEPS} == before
    distances.write_text(source + "\nEXTRA = 1\n")
    changed = {step for step in STEPS if code_fingerprint(step) != before[step]}
    assert changed == {"weights"}  # the only step that computes distances


def test_plumbing_edits_change_no_code_fingerprint(tmp_path, monkeypatch):
    package = copy_workflow(tmp_path / "copy") / "workflow" / "unetflow"
    monkeypatch.setattr(fingerprints, "PACKAGE", package)
    before = {step: code_fingerprint(step) for step in STEPS}
    assert fingerprints.PLUMBING <= {path.relative_to(package).as_posix() for path in package.glob("*.py")}
    for name in fingerprints.PLUMBING:  # a reworded message, a new function: how steps run or report
        (package / name).write_text((package / name).read_text() + "\ndef unused():\n    return 'reworded'\n")
    assert {step: code_fingerprint(step) for step in STEPS} == before


def test_a_schema_section_counts_for_the_steps_that_read_it_and_descriptions_do_not(tmp_path, monkeypatch):
    schema = tmp_path / "config.schema.yaml"
    source = fingerprints.SCHEMA.read_text()
    monkeypatch.setattr(fingerprints, "SCHEMA", schema)
    schema.write_text(source)
    before = {step: code_fingerprint(step) for step in STEPS}
    assert 'description: "the image stack' in source
    schema.write_text(source.replace('description: "the image stack', 'description: "the stack of images'))
    assert {step: code_fingerprint(step) for step in STEPS} == before

    def changed_by(section: str, key: str, default) -> set[str]:
        tree = yaml.safe_load(source)
        tree["properties"][section]["properties"][key]["default"] = default
        schema.write_text(yaml.safe_dump(tree))
        return {step for step in STEPS if code_fingerprint(step) != before[step]}

    # a segmentation setting added or changed reruns tuning and segmentation, never training or ingest
    assert changed_by("segment", "bias", 0.25) == {"tune", "segment"}
    assert changed_by("train", "lr", 0.5) == {"train"}
    reading = {step for step in STEPS if PACKAGE / "settings.py" in imported_modules(PACKAGE / "steps" / f"{step}.py")}
    assert changed_by("dask", "scheduler", "processes") == reading  # every step's command line reads it (cli)


def test_a_step_that_reads_the_schema_by_a_variable_section_counts_all_of_it(tmp_path):
    reader = tmp_path / "reader.py"
    reader.write_text("from . import settings\n\ndef read(name):\n    return settings.section(name)\n")
    assert fingerprints.schema_sections_read([reader]) is None
    reader.write_text("from . import settings\n\ndef read(settings=None):\n    settings = {}\n    settings.pop('a', 0)\n"
                      "    return settings.section('train')\n")
    assert fingerprints.schema_sections_read([reader]) == {"train"}


def test_a_library_version_changes_the_fingerprint_of_the_steps_that_import_it(monkeypatch):
    before = {step: code_fingerprint(step) for step in STEPS}
    installed = fingerprints.metadata.version
    monkeypatch.setattr(fingerprints.metadata, "version",
                        lambda name: "99.0" if name == "torch" else installed(name))
    changed = {step for step in STEPS if code_fingerprint(step) != before[step]}
    assert {"train", "predict"} <= changed and not changed & {"tune", "segment", "evaluate", "weights", "ingest"}
    assert changed == {step for step in STEPS if "torch" in third_party_imports(step)}


def test_a_step_reports_an_input_error_once_and_exits_1(tmp_path):
    missing = tmp_path / "no-such-stack.tif"
    result = subprocess.run([sys.executable, "-m", "unetflow.steps.ingest", "--images", str(missing), "--out",
                             str(tmp_path / "data.zarr")], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.count(str(missing)) == 1, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "data.zarr").exists()
