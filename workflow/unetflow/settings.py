"""Settings of a step from the config schema, the one place their defaults live.

Snakemake validates the config against ``workflow/schemas/config.schema.yaml``
and fills its defaults; a step run by hand gets the same defaults from
:func:`section`. Keys the schema marks ``x-runtime: true`` (device, workers,
logging and checkpoint intervals, the Dask scheduler) say how a step runs, not
what it computes: they are no rerun trigger and not part of a checkpoint's
fingerprint (:func:`without_runtime`).
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import InputError

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


@cache
def schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def section_schema(name: str) -> dict:
    return schema()["properties"][name]


def with_defaults(subschema: dict, values: Any) -> Any:
    """``values`` with every missing key that ``subschema`` gives a default filled in, recursively."""
    if not isinstance(values, dict):
        return values
    filled = dict(values)
    properties = subschema.get("properties", {})
    for key, child in properties.items():
        if key not in filled and "default" in child:
            filled[key] = copy.deepcopy(child["default"])
        if key in filled:
            filled[key] = with_defaults(child, filled[key])
    entries = subschema.get("additionalProperties")
    if isinstance(entries, dict):  # a mapping of named entries (datasets, models): each entry's defaults
        for key in filled.keys() - properties.keys():
            filled[key] = with_defaults(entries, filled[key])
    return filled


def whole_config(values: dict) -> dict:
    """A whole config with the schema's defaults, validated as Snakemake validates it; raises
    :class:`InputError` naming the key and the problem."""
    return validated(with_defaults(schema(), values), schema())


def validated(filled: Any, subschema: dict, *where: str) -> Any:
    """``filled`` if it matches ``subschema``, else an :class:`InputError` naming the key
    (``where``: the path of ``subschema`` in the config) and the problem."""
    try:
        jsonschema.validate(filled, subschema)
    except jsonschema.ValidationError as error:
        path = ".".join(str(part) for part in (*where, *error.absolute_path)) or "top level"
        raise InputError(f"config: {path}: {error.message}") from None
    return filled


def section(name: str, values: dict | None = None) -> dict:
    """The config section ``name`` (e.g. ``"train"``) from ``values`` with the schema's defaults,
    validated; raises :class:`InputError` naming the key and the problem."""
    subschema = section_schema(name)
    return validated(with_defaults(subschema, values or {}), subschema, name)


def default(*path: str) -> Any:
    """The schema's default at ``path``, e.g. ``("num_classes",)`` or ``("datasets", "*", "slices")``
    (``*``: any key of a mapping)."""
    node = schema()
    for key in path:
        node = node["additionalProperties"] if key == "*" else node["properties"][key]
    return copy.deepcopy(node["default"])


def runtime_keys(name: str, values: dict | None = None) -> tuple[str, ...]:
    """Keys of section ``name`` that change how a step runs but not its results: those marked
    ``x-runtime``, and those marked ``x-runtime-when: {key: value}`` while ``values`` hold it
    (``validate_every`` decides nothing about the model while ``keep`` is ``last``)."""
    properties = section_schema(name).get("properties", {})
    values = values or {}
    return tuple(key for key, child in properties.items() if child.get("x-runtime") or (
        "x-runtime-when" in child and all(values.get(k) == v for k, v in child["x-runtime-when"].items())))


def without_runtime(name: str, values: dict) -> dict:
    """Section ``name``'s settings that change results (the rerun trigger and fingerprint)."""
    runtime = runtime_keys(name, values)
    return {key: value for key, value in values.items() if key not in runtime}


def only_runtime(name: str, values: dict) -> dict:
    runtime = runtime_keys(name, values)
    return {key: value for key, value in values.items() if key in runtime}
