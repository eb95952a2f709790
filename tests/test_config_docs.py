"""config/README.md documents every setting of the schema, as the schema states it.

Its reference part is made from the schema; after changing the schema, rewrite it with
``python tests/test_config_docs.py`` (the test says so when they differ).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "config" / "README.md"
MARKER = "<!-- reference: made from workflow/schemas/config.schema.yaml by tests/test_config_docs.py -->"


def described(node: dict) -> str:
    return " ".join(node.get("description", "").split())


def value_type(node: dict) -> str:
    if "enum" in node:
        return " / ".join(f"`{value}`" for value in node["enum"])
    if "oneOf" in node:
        return " or ".join(f"`{option['const']}`" if "const" in option else option["type"] for option in node["oneOf"])
    kind = node.get("type", "")
    return " or ".join(kind) if isinstance(kind, list) else kind


def default_of(node: dict) -> str:
    if "default" not in node or node["default"] in ({},):
        return ""
    return f"`{yaml.safe_dump(node['default'], default_flow_style=True).strip().removesuffix('...').strip()}`"


def rows(node: dict, prefix: str) -> list[str]:
    lines = []
    for key, child in node.get("properties", {}).items():
        runtime = " *Runtime: changing it reruns nothing.*" if child.get("x-runtime") else ""
        if "x-runtime-when" in child:
            held = " and ".join(f"`{key}` is `{value}`" for key, value in child["x-runtime-when"].items())
            runtime = f" *Runtime while {held}: changing it then reruns nothing.*"
        lines.append(f"| `{prefix}{key}` | {value_type(child)} | {default_of(child)} | {described(child)}{runtime} |")
        lines += rows(child, f"{prefix}{key}.")
    return lines


def reference() -> str:
    parts = [MARKER]
    for section, node in yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())["properties"].items():
        parts.append(f"\n### `{section}`\n\n{described(node)}\n")
        entries = node.get("additionalProperties") if section in ("datasets", "models") else node
        table = rows(entries, f"{section}.<name>." if entries is not node else f"{section}.")
        if table:
            parts.append("| key | type | default | meaning |\n|---|---|---|---|\n" + "\n".join(table) + "\n")
        else:
            parts.append(f"Type {value_type(node)}; default {default_of(node) or 'none'}.\n")
    return "\n".join(parts)


def test_the_config_readme_documents_every_setting_as_the_schema_states_it():
    written = DOC.read_text().split(MARKER)
    assert len(written) == 2, f"{DOC} lacks the marker line {MARKER}"
    assert MARKER + written[1] == reference(), "config/README.md is out of date: run python tests/test_config_docs.py"


if __name__ == "__main__":
    introduction = DOC.read_text().split(MARKER)[0] if DOC.exists() else ""
    DOC.write_text(introduction + reference())
    sys.exit(0)
