"""A name -> implementation table that a decorator fills, and the names it holds read from
the source, so Snakemake checks a config's method names without importing torch or scikit-image."""

from __future__ import annotations

import ast
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Generic, TypeVar

from ..errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Implementations of one kind of method by name (``kind`` names the config key in messages)."""

    def __init__(self, kind: str, setting: str):
        self.kind, self.setting = kind, setting
        self.entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@registry.register("name")`` adds the function or class under ``name``."""

        def add(entry: T) -> T:
            if name in self.entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self.entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        if name not in self.entries:
            raise InputError(f"{self.setting}: no {self.kind} named {name!r}; known: {', '.join(sorted(self.entries))}")
        return self.entries[name]

    def __iter__(self):
        return iter(self.entries)


def _registrations(module: str, decorator: str) -> list[ast.Call]:
    """The ``@<decorator>("name", ...)`` calls in ``methods/<module>.py`` that name a method."""
    tree = ast.parse((Path(__file__).parent / f"{module}.py").read_text())
    return [call for node in ast.walk(tree) for call in getattr(node, "decorator_list", [])
            if isinstance(call, ast.Call) and ast.unparse(call.func) == decorator and call.args
            and isinstance(call.args[0], ast.Constant)]


@cache
def registered_names(module: str, decorator: str) -> tuple[str, ...]:
    """Names registered with ``@<decorator>("name")`` in ``methods/<module>.py``, from its source."""
    return tuple(call.args[0].value for call in _registrations(module, decorator))


@cache
def registered_keyword(module: str, decorator: str, keyword: str) -> dict[str, object]:
    """Name -> the literal value of ``keyword`` in each ``@<decorator>("name", keyword=...)`` of
    ``methods/<module>.py`` that gives it, from its source."""
    return {call.args[0].value: ast.literal_eval(given.value) for call in _registrations(module, decorator)
            for given in call.keywords if given.arg == keyword}


def check_name(name: str, module: str, decorator: str, setting: str) -> None:
    """Refuse a method name that ``methods/<module>.py`` does not register (config checks)."""
    known = registered_names(module, decorator)
    if name not in known:
        raise InputError(f"config: {setting} is {name!r}, which methods/{module}.py does not define; "
                         f"use one of {', '.join(known)} or register it there")
