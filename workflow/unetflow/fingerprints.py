"""Short, stable hashes of settings, of store contents and of the code that computes results
(standard library and PyYAML only: the workflow imports this while it builds the DAG)."""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any


def settings_fingerprint(settings: Any) -> str:
    """A short hash of JSON-able settings, independent of key order."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def store_fingerprint(path: Path) -> str:
    """A hash of the content of a store (every file under it, by relative name and bytes).

    A checkpoint is resumed only onto the same data: a store rewritten with other
    samples, labels or weights has another fingerprint even at the same path.
    """
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    digest = hashlib.blake2b(digest_size=16)
    for file in files:
        digest.update(str(file.relative_to(root) if root.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "blake2b").digest())
    return digest.hexdigest()


PACKAGE = Path(__file__).resolve().parent
SCHEMA = PACKAGE.parent / "schemas" / "config.schema.yaml"

# Modules that say how a step runs or reports, never what it computes: argument parsing and
# the top-level error handler (cli), logging and progress (progress), Dask scheduling and
# task progress (parallel), GPU slot claims (gpu_slots), the error type (errors) and figures
# for people (plots: a curve drawn differently is the same result). A module belongs here
# when no value it returns can reach a step's result files; its edits rerun nothing
# (figures are redrawn by the next run that recomputes them). The modules they import
# still count: cli reads the schema's defaults through settings.
PLUMBING = frozenset({"cli.py", "progress.py", "parallel.py", "gpu_slots.py", "errors.py", "plots.py"})
# Libraries (import names) that read the config or report, never compute a result.
PLUMBING_LIBRARIES = frozenset({"yaml", "jsonschema", "tqdm", "matplotlib"})


def code_fingerprint(step: str) -> str:
    """A hash of the code a step runs, and of the libraries that run it.

    It covers ``steps/<step>.py`` and every module of this package it imports, directly or not
    (lazy imports inside functions included), except the :data:`PLUMBING` modules; the schema of
    the config sections the step reads through :mod:`unetflow.settings` (its defaults, types and
    ranges: :func:`schema_sections_read`), so that a new segmentation setting retrains no model;
    and the installed
    version of every third-party distribution those modules import (torch, scikit-image, ...).
    Each module counts by its syntax tree without docstrings, so an edit that can change what
    the step computes makes its results stale, and a comment, a docstring or reformatting does
    not. The versions are those of the environment that builds the DAG; under ``--sdm conda``
    Snakemake's ``software-env`` trigger covers the jobs' own environments.
    """
    digest = hashlib.sha256()
    modules = sorted(imported_modules(PACKAGE / "steps" / f"{step}.py"))
    computing = [module for module in modules if module.relative_to(PACKAGE).as_posix() not in PLUMBING]
    for module in computing:
        digest.update(str(module.relative_to(PACKAGE)).encode())
        digest.update(_code_without_docstrings(module.read_text()).encode())
    if PACKAGE / "settings.py" in computing:
        digest.update(json.dumps(schema_part(schema_sections_read(modules)), sort_keys=True).encode())
    digest.update(json.dumps(library_versions(computing), sort_keys=True).encode())
    return digest.hexdigest()[:16]


# unetflow.settings functions whose first argument names the config section they read
SECTION_READERS = frozenset({"section", "default", "section_schema", "runtime_keys", "without_runtime", "only_runtime"})


def schema_sections_read(modules: set[Path] | list[Path]) -> set[str] | None:
    """The top-level config keys whose schema ``modules`` read through :mod:`unetflow.settings`:
    the first argument of calls such as ``settings.section("train")`` or ``settings.default("segment",
    "h")``. None (the whole schema) where a call names its section by a variable, reads the schema
    otherwise (``settings.schema()``), or a module imports a settings function by name."""
    sections: set[str] = set()
    for module in modules:
        if module == PACKAGE / "settings.py":
            continue
        tree = _tree(module.read_text())
        aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level and node.module in (None, "settings"):
                for alias in node.names:
                    if node.module == "settings":
                        return None  # from .settings import section: calls we do not follow
                    if alias.name == "settings":
                        aliases.add(alias.asname or alias.name)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in aliases):
                if node.func.attr not in _settings_functions():
                    continue  # a local variable of the same name (a dict's .pop)
                first = node.args[0] if node.args else None
                if node.func.attr not in SECTION_READERS or not (isinstance(first, ast.Constant)
                                                                and isinstance(first.value, str)):
                    return None
                sections.add(first.value)
    return sections


@functools.cache
def _settings_functions() -> frozenset[str]:
    tree = _tree((PACKAGE / "settings.py").read_text())
    return frozenset(node.name for node in tree.body if isinstance(node, ast.FunctionDef))


def schema_part(sections: set[str] | None) -> Any:
    """The schema without descriptions (:func:`schema_defaults`) of ``sections`` only (None: all of it)."""
    whole = schema_defaults()
    if sections is None:
        return whole
    return {name: whole["properties"][name] for name in sorted(sections)}


def schema_defaults() -> Any:
    """The config schema without its descriptions: the defaults, types and ranges a step reads."""
    return _schema_without_descriptions(SCHEMA.read_text())


@functools.cache  # keyed by the schema's text
def _schema_without_descriptions(text: str) -> Any:
    import yaml  # Snakemake's own dependency, so there where the DAG is built

    def without_descriptions(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: without_descriptions(value) for key, value in node.items() if key != "description"}
        if isinstance(node, list):
            return [without_descriptions(value) for value in node]
        return node
    return without_descriptions(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


def library_versions(modules: list[Path]) -> dict[str, str]:
    """Distribution -> installed version, of every third-party package the modules import."""
    distributions = _distributions_of_packages()
    names = {name for module in modules for name in _top_level_imports(module)}
    return {dist: metadata.version(dist) for name in names for dist in distributions.get(name, ())}


@functools.cache
def _distributions_of_packages() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _top_level_imports(module: Path) -> set[str]:
    names = set()
    for node in ast.walk(_tree(module.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names - {PACKAGE.name} - PLUMBING_LIBRARIES


def imported_modules(start: Path) -> set[Path]:
    """``start`` and the package's modules it imports, transitively (package ``__init__`` files too)."""
    seen: set[Path] = set()
    pending = [start]
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        pending.extend(_package_imports(module))
    return seen


def _package_imports(module: Path) -> list[Path]:
    tree = _tree(module.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.parent
                for _ in range(node.level - 1):
                    base = base.parent
            elif (node.module or "").split(".")[0] == PACKAGE.name:
                base = PACKAGE.parent
            else:
                continue
            target = base.joinpath(*node.module.split(".")) if node.module else base
            found += _existing(target)
            found += [path for alias in node.names for path in _existing(target / alias.name)]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE.name:
                    found += _existing(PACKAGE.parent.joinpath(*alias.name.split(".")))
    return found


def _existing(target: Path) -> list[Path]:
    """The module file of a dotted target: ``target.py`` or ``target/__init__.py``, if either exists."""
    candidates = [target.with_suffix(".py"), target / "__init__.py"]
    return [path for path in candidates if path.is_file() and PACKAGE in path.parents][:1]


@functools.cache  # keyed by the source text, so an edited module is parsed again
def _tree(source: str) -> ast.Module:
    return ast.parse(source)


@functools.cache
def _code_without_docstrings(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)
