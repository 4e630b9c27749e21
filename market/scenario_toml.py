"""A scenario written back as a TOML scenario file, whole and standalone (`base = ""`).

What `gpumarket calibrate` writes: every field of the resolved scenario, so the file runs the
same market wherever it goes, whatever the built-in scenarios become. Reading it back with
`load_scenario` gives an equal scenario (tested).
"""

from __future__ import annotations

import json
import math
from typing import Any

from market.scenario import Scenario


def scenario_toml(scenario: Scenario, comment: str = "") -> str:
    """`scenario` as a standalone TOML scenario file, `comment` (lines) at its head."""
    data = scenario.model_dump(mode="json", exclude_none=True)
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    lines.append('base = ""  # standalone: every field is here')
    lines += _table(data, [])
    return "\n".join(lines).strip("\n") + "\n"


def _table(data: dict[str, Any], path: list[str]) -> list[str]:
    """Key = value lines for the scalars and arrays of `data`, then its sub-tables and
    arrays of tables under their headers."""
    lines = [f"{_key(key)} = {_value(value)}" for key, value in data.items()
             if not _is_table(value) and not _is_table_array(value)]
    for key, value in data.items():
        if _is_table(value):
            lines += ["", f"[{'.'.join(_key(part) for part in [*path, key])}]"]
            lines += _table(value, [*path, key])
        elif _is_table_array(value):
            for entry in value:
                lines += ["", f"[[{'.'.join(_key(part) for part in [*path, key])}]]"]
                lines += _table(entry, [*path, key])
    return lines


def _is_table(value: Any) -> bool:
    return isinstance(value, dict)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
    return key if bare else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # the shortest text that reads back as the same float
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string is JSON's
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):  # a table inside an array: inline
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {type(value).__name__}")
