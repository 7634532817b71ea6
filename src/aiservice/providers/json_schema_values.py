"""Whether an `enum`/`const` value also meets the other keywords of its schema: the grammar
offers only the values that do."""

from __future__ import annotations

import re
from typing import Any

from aiservice.providers.json_schema_ir import SchemaRefused
from aiservice.providers.json_schema_scalars import bounds

_STRUCTURE_WORDS = (
    "properties",
    "additionalProperties",
    "items",
    "prefixItems",
    "patternProperties",
)


def value_fits(value: Any, schema: dict[str, Any], where: str) -> bool:
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        if not any(_is_of_type(value, name) for name in names):
            return False
    if isinstance(value, str):
        return _string_fits(value, schema, where)
    if _is_number(value):
        return _number_fits(value, schema, where)
    if isinstance(value, dict | list):
        if value and any(word in schema for word in _STRUCTURE_WORDS):
            raise SchemaRefused(
                f"Unsupported: 'enum'/'const' of objects or arrays with keywords on their "
                f"contents at {where}"
            )
        if isinstance(value, list):
            return schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value))
        return all(name in value for name in schema.get("required", []))
    return True


def _string_fits(value: str, schema: dict[str, Any], where: str) -> bool:
    if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
        return False
    pattern = schema.get("pattern")
    if pattern is None:
        return True
    try:
        return re.search(pattern, value) is not None
    except re.error:
        raise SchemaRefused(f"Unsupported 'pattern' beside 'enum'/'const' at {where}") from None


def _number_fits(value: float, schema: dict[str, Any], where: str) -> bool:
    low, high, low_open, high_open = bounds(schema)
    if low is not None and (value <= low if low_open else value < low):
        return False
    if high is not None and (value >= high if high_open else value > high):
        return False
    step = schema.get("multipleOf")
    if step is None:
        return True
    if isinstance(value, int) and isinstance(step, int):
        return value % step == 0
    raise SchemaRefused(f"Unsupported schema keyword 'multipleOf' at {where}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_of_type(value: Any, name: str) -> bool:
    if name == "integer":
        return _is_number(value) and float(value).is_integer()
    if name == "number":
        return _is_number(value)
    kinds = {"null": type(None), "boolean": bool, "string": str, "array": list, "object": dict}
    return isinstance(value, kinds.get(name, ()))
