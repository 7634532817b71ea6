"""`allOf` as one schema, and whether two `oneOf` branches can match the same document.

`merged(parts)` folds schemas that must all hold into one: properties are united (a property
in several parts must satisfy each), bounds tightened, types intersected, and a union inside a
part distributed over the rest. Only keywords the compiler knows are merged; the caller refuses
the others beforehand.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiservice.providers.json_schema_ir import SchemaRefused

_LARGER = {"minLength", "minItems", "minProperties", "minimum"}
_SMALLER = {"maxLength", "maxItems", "maxProperties", "maximum"}
_SAME = {"pattern", "format", "multipleOf"}
_OBJECT_WORDS = {"properties", "required", "additionalProperties", "unevaluatedProperties"}
_OBJECT_WORDS |= {"minProperties", "maxProperties"}
_ARRAY_WORDS = {"items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems"}
_STRING_WORDS = {"minLength", "maxLength", "pattern", "format"}
_NUMBER_WORDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
FAMILIES = {
    "object": _OBJECT_WORDS,
    "array": _ARRAY_WORDS,
    "string": _STRING_WORDS,
    "number": _NUMBER_WORDS,
}
ALL_TYPES = ("null", "boolean", "object", "array", "string", "integer", "number")
_KINDS_OF_TYPE = {"integer": {"integer"}, "number": {"integer", "fraction"}}
_ALL_KINDS = frozenset({"null", "boolean", "integer", "fraction", "string", "array", "object"})


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def implied_types(schema: dict[str, Any]) -> list[str] | None:
    """The types a schema without `type` constrains (None: it constrains none, any value)."""
    types = [name for name, words in FAMILIES.items() if words & schema.keys()]
    return types or None


def merged(parts: list[dict[str, Any]], where: str) -> dict[str, Any]:
    """One schema holding exactly when every part does."""
    for i, part in enumerate(parts):
        for word in ("anyOf", "oneOf"):
            if word in part:
                rest = {key: value for key, value in part.items() if key != word}
                others = [*parts[:i], rest, *parts[i + 1 :]]
                return {word: [{"allOf": [*others, branch]} for branch in part[word]]}
    result: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if key == "const":
                key, value = "enum", [value]
            result[key] = _combined(key, result[key], value, where) if key in result else value
    _apply_additional(parts, result)
    if isinstance(result.get("type"), set):
        result["type"] = [name for name in ALL_TYPES if name in result["type"]]
    return result


def _combined(key: str, first: Any, second: Any, where: str) -> Any:
    if key == "type":
        return _types(first) & _types(second)
    if key == "enum":
        allowed = {canonical(value) for value in second}
        return [value for value in first if canonical(value) in allowed]
    if key == "properties":
        both = dict(first)
        for name, schema in second.items():
            both[name] = {"allOf": [both[name], schema]} if name in both else schema
        return both
    if key == "required":
        return list(dict.fromkeys([*first, *second]))
    if key in ("additionalProperties", "unevaluatedProperties", "items", "additionalItems"):
        if isinstance(first, list) or isinstance(second, list):
            raise SchemaRefused(f"Unsupported 'allOf' at {where}: two tuple forms of '{key}'")
        if first is False or second is False:
            return False
        return second if first is True else first if second is True else {"allOf": [first, second]}
    if key in _LARGER or (key == "exclusiveMinimum" and not _has_bool(first, second)):
        return max(first, second)
    if key in _SMALLER or (key == "exclusiveMaximum" and not _has_bool(first, second)):
        return min(first, second)
    if key == "uniqueItems":
        return bool(first or second)
    if key in _SAME and first == second:
        return first
    raise SchemaRefused(f"Unsupported 'allOf' at {where}: its parts give two different '{key}'")


def _has_bool(first: Any, second: Any) -> bool:
    return isinstance(first, bool) or isinstance(second, bool)


def _types(value: Any) -> set[str]:
    names = set(value) if isinstance(value, list | set) else {value}
    if "number" in names:
        names.add("integer")
    return names


def _apply_additional(parts: list[dict[str, Any]], result: dict[str, Any]) -> None:
    """A property one part declares is an additional property to another part: it must also
    satisfy that part's additionalProperties (false: it cannot appear)."""
    names = list(dict.fromkeys([*result.get("properties", {}), *result.get("required", [])]))
    for part in parts:
        additional = part.get("additionalProperties", True)
        if additional is True:
            continue
        declared = part.get("properties", {})
        for name in names:
            if name in declared:
                continue
            properties = result.setdefault("properties", {})
            if additional is False:
                properties[name] = False
            else:
                properties[name] = {"allOf": [properties.get(name, True), additional]}


def disjoint(first: Any, second: Any, resolve: Callable[[Any], Any]) -> bool:
    """True when no document can match both schemas, as far as a quick look can tell: their
    types differ, their constants differ, or a property required by both has constants that
    differ (a discriminator), or one requires a property the other forbids."""
    first, second = resolve(first), resolve(second)
    if not _kinds(first, resolve) & _kinds(second, resolve):
        return True
    values = _values(first), _values(second)
    if values[0] is not None and values[1] is not None:
        return not values[0] & values[1]
    if not isinstance(first, dict) or not isinstance(second, dict):
        return False
    if _kinds(first, resolve) & _kinds(second, resolve) != {"object"}:
        return False
    for name in set(first.get("required", [])) & set(second.get("required", [])):
        ours = _values(resolve(first.get("properties", {}).get(name, True)))
        theirs = _values(resolve(second.get("properties", {}).get(name, True)))
        if ours is not None and theirs is not None and not ours & theirs:
            return True
    return _forbids(first, second) or _forbids(second, first)


def _forbids(schema: dict[str, Any], other: dict[str, Any]) -> bool:
    if schema.get("additionalProperties") is not False:
        return False
    declared = schema.get("properties", {})
    return any(
        name not in declared or declared[name] is False for name in other.get("required", [])
    )


def _values(schema: Any) -> set[str] | None:
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return {canonical(schema["const"])}
    if "enum" in schema and isinstance(schema["enum"], list):
        return {canonical(value) for value in schema["enum"]}
    return None


def _kinds(schema: Any, resolve: Callable[[Any], Any]) -> set[str]:
    if schema is True or not isinstance(schema, dict):
        return set(_ALL_KINDS) if schema is not False else set()
    values = _values(schema)
    if values is not None:
        return {_kind_of(json.loads(text)) for text in values}
    for word in ("anyOf", "oneOf"):
        if word in schema:
            found: set[str] = set()
            for branch in schema[word]:
                found |= _kinds(resolve(branch), resolve)
            return found
    types = schema.get("type", implied_types(schema))
    if types is None:
        return set(_ALL_KINDS)
    kinds: set[str] = set()
    for name in [types] if isinstance(types, str) else types:
        kinds |= _KINDS_OF_TYPE.get(name, {name})
    return kinds


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "fraction"
    return {str: "string", list: "array", dict: "object"}[type(value)]
