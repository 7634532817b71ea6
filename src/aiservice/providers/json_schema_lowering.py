"""JSON Schema to the compiler's intermediate form (json_schema_ir), one schema document at a
time.

A document is a schema as the client sent it (a response_format's schema, one tool's
parameters): its `$ref`s resolve against its own root, so two tools' `#/$defs/A` never meet.
What cannot be enforced is refused with the keyword and its place in the request; what only
describes (title, description, default, examples, $schema, $id, ...) and keywords JSON Schema
does not define are ignored, as validators ignore them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiservice.providers.json_schema_gbnf import MAX_REPEAT
from aiservice.providers.json_schema_ir import (
    NEVER,
    Alt,
    Expr,
    Lit,
    Ref,
    Repeat,
    SchemaRefused,
    Seq,
    Text,
    optional,
)
from aiservice.providers.json_schema_merge import (
    ALL_TYPES,
    FAMILIES,
    canonical,
    disjoint,
    implied_types,
    merged,
)
from aiservice.providers.json_schema_pattern import pattern_expr, pattern_node, within_length
from aiservice.providers.json_schema_scalars import (
    FORMATS,
    bounds,
    complement,
    integer_expr,
    json_chars,
    number_expr,
    subtract,
)
from aiservice.providers.json_schema_values import value_fits

REFUSED = frozenset(
    {
        "patternProperties",
        "propertyNames",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "if",
        "then",
        "else",
        "not",
        "contains",
        "minContains",
        "maxContains",
        "unevaluatedItems",
        "$dynamicRef",
        "$recursiveRef",
    }
)
_UNDERSTOOD = frozenset({"$ref", "allOf", "anyOf", "oneOf", "enum", "const", "type"}).union(
    *FAMILIES.values()
)
MAX_SCHEMA_DEPTH = 64
_MAX_NAME = 256  # longest declared property name an additional property's key is kept apart from

WS = optional(Lit(" "))  # one space at most: a small model free to pad may never stop
SEP = Seq([Lit(","), WS])


@dataclass
class Document:
    root: Any  # the schema as sent
    path: str  # where it sits in the request, for messages ("tools[0].function.parameters")
    label: str  # its rules' name prefix in the grammar


@dataclass
class Lowering:
    document: Document
    _refs: dict[str, Ref] = field(default_factory=dict)
    _merges: dict[tuple[int, ...], Ref] = field(default_factory=dict)
    _rests: dict[int, dict[str, Any]] = field(default_factory=dict)
    _beside_unions: dict[int, dict[str, Any]] = field(default_factory=dict)
    _kept: list[Any] = field(default_factory=list)  # alive while their ids key _merges
    _one_ofs: list[tuple[list[Any], str]] = field(default_factory=list)
    _any: Ref | None = None
    _depth: int = 0

    def root(self, within: dict[str, Any] | None = None) -> Expr:
        """The document's expression; `within`: a schema it must also satisfy."""
        document = self.document
        if within is None:
            expr = self.lower(document.root, document.path)
        else:
            expr = self.all_of([document.root, within], document.path)
        for branches, where in self._one_ofs:
            self._check_one_of(branches, where)
        return expr

    def lower(self, schema: Any, where: str) -> Expr:
        self._depth += 1
        try:
            if self._depth > MAX_SCHEMA_DEPTH:
                raise SchemaRefused(f"The schema nests deeper than {MAX_SCHEMA_DEPTH} at {where}")
            return self._lower(schema, where)
        finally:
            self._depth -= 1

    def _lower(self, schema: Any, where: str) -> Expr:
        if schema is True:
            return self.any_value()
        if schema is False:
            return NEVER
        if not isinstance(schema, dict):
            raise SchemaRefused(f"Invalid schema at {where}: expected an object or a boolean")
        check_keywords(schema, where)
        if "allOf" in schema or ("$ref" in schema and self._rest(schema)):
            return self.all_of([schema], where)
        if "$ref" in schema:
            return self._ref(schema["$ref"], where)
        if "anyOf" in schema and "oneOf" in schema:
            raise SchemaRefused(f"Unsupported schema: both 'anyOf' and 'oneOf' at {where}")
        for word in ("anyOf", "oneOf"):
            if word in schema:
                return self._union(schema, word, where)
        if "enum" in schema or "const" in schema:
            return self._values(schema, where)
        return self._typed(schema, where)

    # --- references and combinations ----------------------------------------------------------

    def resolve(self, ref: Any, where: str) -> tuple[Any, str]:
        """The schema a `$ref` points at in this document, and its place for messages."""
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SchemaRefused(
                f"Unsupported $ref {json.dumps(ref)} at {where}: only references inside the "
                "schema ('#', '#/$defs/...', '#/definitions/...') are supported"
            )
        pointer = unquote(ref[1:])
        if pointer and not pointer.startswith("/"):
            raise SchemaRefused(f"Unsupported $ref {json.dumps(ref)} at {where}: anchors")
        node, place = self.document.root, self.document.path
        for token in pointer.split("/")[1:] if pointer else []:
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node, place = node[token], f"{place}.{token}"
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node, place = node[int(token)], f"{place}[{token}]"
            else:
                raise SchemaRefused(f"Unresolvable $ref {json.dumps(ref)} at {where}")
        return node, place

    def _ref(self, ref: str, where: str) -> Expr:
        target, place = self.resolve(ref, where)
        key = ref if ref != "#/" else "#"
        if key not in self._refs:
            name = re.sub(r"[^A-Za-z0-9]+", "-", ref[1:]).strip("-") or "root"
            self._refs[key] = node = Ref(f"{self.document.label}-{name[-40:]}")
            node.target = self.lower(target, place)
        return self._refs[key]

    def all_of(self, schemas: list[Any], where: str) -> Expr:
        """What satisfies every schema of `schemas` (refs and allOfs in them followed)."""
        parts: list[Any] = []
        for schema in schemas:
            parts += self._parts(schema, where, frozenset())
        if any(part is False for part in parts):
            return NEVER
        parts = [part for part in parts if part is not True and part]
        if not parts:
            return self.any_value()
        # Named by its parts, as a $ref target is: a part may lead back here (a recursive
        # model written `allOf: [{"$ref": ...}]`), and then meets this node, not a new copy.
        key = tuple(id(part) for part in parts)
        if key not in self._merges:
            self._kept.append(parts)
            self._merges[key] = node = Ref(f"{self.document.label}-all{len(self._merges)}")
            node.target = self.lower(parts[0] if len(parts) == 1 else merged(parts, where), where)
        return self._merges[key]

    def _parts(self, schema: Any, where: str, seen: frozenset[str]) -> list[Any]:
        if not isinstance(schema, dict):
            if not isinstance(schema, bool):
                raise SchemaRefused(f"Invalid schema at {where}: expected an object or a boolean")
            return [schema]
        check_keywords(schema, where)
        parts: list[Any] = []
        if "$ref" in schema:
            ref = schema["$ref"]
            if ref in seen:
                raise SchemaRefused(
                    f"Unsupported $ref at {where}: it includes itself through allOf"
                )
            target, place = self.resolve(ref, where)
            parts += self._parts(target, place, seen | {ref})
        for i, part in enumerate(schema.get("allOf", [])):
            parts += self._parts(part, f"{where}.allOf[{i}]", seen)
        rest = self._rest(schema)
        if rest:
            parts.append(rest if ("$ref" in schema or "allOf" in schema) else schema)
        return parts

    def _rest(self, schema: dict[str, Any]) -> dict[str, Any]:
        """What a schema asserts besides $ref and allOf (a stable object: its id keys merges)."""
        if id(schema) not in self._rests:
            self._rests[id(schema)] = {
                key: value
                for key, value in schema.items()
                if key in _UNDERSTOOD and key not in ("$ref", "allOf")
            }
        return self._rests[id(schema)]

    def _union(self, schema: dict[str, Any], word: str, where: str) -> Expr:
        branches = schema[word]
        # The schema's other keywords hold in every branch: one stable object for all of them.
        if id(schema) not in self._beside_unions:
            rest = {key: value for key, value in self._rest(schema).items() if key != word}
            self._beside_unions[id(schema)] = rest
        rest = self._beside_unions[id(schema)]
        options = []
        for i, branch in enumerate(branches):
            place = f"{where}.{word}[{i}]"
            options.append(
                self.all_of([rest, branch], place) if rest else self.lower(branch, place)
            )
        if word == "oneOf":
            self._one_ofs.append((branches, where))
        return Alt(options)

    def _check_one_of(self, branches: list[Any], where: str) -> None:
        for i, first in enumerate(branches):
            for j in range(i + 1, len(branches)):
                if not disjoint(first, branches[j], lambda s: self._flat(s, where)):
                    raise SchemaRefused(
                        f"Unsupported 'oneOf' at {where}: branches {i} and {j} may match the "
                        "same document (use anyOf, or a required property with a different "
                        "const in each branch)"
                    )

    def _flat(self, schema: Any, where: str) -> Any:
        """`schema` with its $ref and allOf folded in, for a look at what it asserts."""
        parts = self._parts(schema, where, frozenset())
        if any(part is False for part in parts):
            return False
        parts = [part for part in parts if part is not True and part]
        return True if not parts else parts[0] if len(parts) == 1 else merged(parts, where)

    # --- values and types ----------------------------------------------------------------------

    def _values(self, schema: dict[str, Any], where: str) -> Expr:
        values = schema["enum"] if "enum" in schema else [schema["const"]]
        if "enum" in schema and "const" in schema:
            values = [v for v in values if canonical(v) == canonical(schema["const"])]
        texts = [
            json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            for value in values
            if value_fits(value, schema, where)
        ]
        options: list[Expr] = [Lit(text) for text in dict.fromkeys(texts)]
        return NEVER if not options else options[0] if len(options) == 1 else Alt(options)

    def _typed(self, schema: dict[str, Any], where: str) -> Expr:
        types = schema.get("type", implied_types(schema))
        if types is None:
            return self.any_value()
        names = [types] if isinstance(types, str) else list(dict.fromkeys(types))
        if "number" in names and "integer" in names:
            names.remove("integer")
        options = [self._of_type(name, schema, where) for name in names]
        return NEVER if not options else options[0] if len(options) == 1 else Alt(options)

    def _of_type(self, name: str, schema: dict[str, Any], where: str) -> Expr:
        if name == "null":
            return Lit("null")
        if name == "boolean":
            return Alt([Lit("true"), Lit("false")])
        if name in ("integer", "number"):
            step = schema.get("multipleOf")
            if step is not None and step != 1:
                raise SchemaRefused(f"Unsupported schema keyword 'multipleOf' at {where}")
            if name == "integer" or step == 1:
                return integer_expr(schema)
            return number_expr(schema)
        if name == "string":
            return self._string(schema, where)
        if name == "array":
            return self._array(schema, where)
        return self._object(schema, where)

    def _string(self, schema: dict[str, Any], where: str) -> Expr:
        least, most = schema.get("minLength", 0), schema.get("maxLength")
        if least > MAX_REPEAT:
            raise SchemaRefused(f"Unsupported 'minLength' above {MAX_REPEAT} at {where}")
        if most is not None and most < least:
            return NEVER
        pattern, form = schema.get("pattern"), schema.get("format")
        if pattern is not None:
            if form in FORMATS:
                raise SchemaRefused(f"Unsupported: both 'pattern' and 'format' at {where}")
            node = within_length(
                pattern_node(pattern, where), least, float("inf") if most is None else most
            )
            if node is None:
                raise SchemaRefused(
                    f"Unsupported: 'pattern' with 'minLength'/'maxLength' at {where} (only a "
                    "pattern whose one variable part is a run of single characters is bounded)"
                )
            content = pattern_expr(node)
        elif form in FORMATS:
            build, (shortest, longest) = FORMATS[form]
            if least > shortest or (most is not None and most < longest):
                raise SchemaRefused(f"Unsupported: 'format' {form} with lengths at {where}")
            content = build()
        else:
            content = Text(least, most)
        return Seq([Lit('"'), content, Lit('"')])

    def _array(self, schema: dict[str, Any], where: str) -> Expr:
        least, most = schema.get("minItems", 0), schema.get("maxItems")
        if least > MAX_REPEAT:
            raise SchemaRefused(f"Unsupported 'minItems' above {MAX_REPEAT} at {where}")
        if most is not None and most < least:
            return NEVER
        if schema.get("uniqueItems") is True and (most is None or most > 1):
            raise SchemaRefused(f"Unsupported schema keyword 'uniqueItems' at {where}")
        items, prefix, prefix_word = (
            schema.get("items"),
            schema.get("prefixItems", []),
            "prefixItems",
        )
        if isinstance(items, list):  # draft 7's tuple form
            prefix, items, prefix_word = items, schema.get("additionalItems"), "items"
        rest_word = "additionalItems" if prefix_word == "items" else "items"
        taken = len(prefix) if most is None else min(len(prefix), most)
        body: list[Expr] = [Lit("[")]
        for i, item in enumerate(prefix[:taken]):
            body += [SEP] if i else []
            body.append(self.lower(item, f"{where}.{prefix_word}[{i}]"))
        rest_least = max(0, least - taken)
        rest_most = None if most is None else most - taken
        if items is False:
            rest_most = 0
        elif items is None and prefix:
            rest_most = rest_least  # more items are allowed, but none are needed
        if rest_most is None or rest_most > 0:
            value = self.any_value() if items is None else self.lower(items, f"{where}.{rest_word}")
            if taken:
                body.append(Repeat(Seq([SEP, value]), rest_least, rest_most))
            else:
                body.append(Repeat(value, rest_least, rest_most, SEP))
        elif rest_least:
            return NEVER
        body.append(Lit("]"))
        return Seq(body)

    def _object(self, schema: dict[str, Any], where: str) -> Expr:
        properties: dict[str, Any] = schema.get("properties", {})
        required = list(dict.fromkeys(schema.get("required", [])))
        additional = schema.get("additionalProperties", schema.get("unevaluatedProperties"))
        extra_value: Expr | None = None
        if isinstance(additional, dict) or additional is True:
            extra_value = self.lower(additional, f"{where}.additionalProperties")
        elif additional is None and not properties:
            extra_value = self.any_value()  # no property named: any object
        # Required properties first, in the schema's order, then the optional ones.
        names = [name for name in properties if name in required]
        names += [name for name in required if name not in properties]
        names += [name for name in properties if name not in required]
        members: list[tuple[Expr, bool]] = []
        for name in names:
            if name in properties:
                value = self.lower(properties[name], f"{where}.properties.{name}")
            elif additional is False:
                value = NEVER
            else:  # required but not declared: any value additionalProperties allows
                value = extra_value or self.any_value()
            member = Seq([Lit(json.dumps(name, ensure_ascii=False) + ":"), WS, value])
            members.append((member, name in required))
        self._check_property_counts(schema, where, len(required), len(names), extra_value)
        extra = None
        if extra_value is not None:
            key = _key_except(names, where)
            extra = Seq([Lit('"'), key, Lit('":'), WS, extra_value])
        return _object_expr(members, extra)

    @staticmethod
    def _check_property_counts(
        schema: dict[str, Any], where: str, required: int, declared: int, extra: Expr | None
    ) -> None:
        least, most = schema.get("minProperties", 0), schema.get("maxProperties")
        if least > required:
            raise SchemaRefused(f"Unsupported schema keyword 'minProperties' at {where}")
        if most is not None and (extra is not None or declared > most):
            raise SchemaRefused(f"Unsupported schema keyword 'maxProperties' at {where}")

    def any_value(self) -> Ref:
        """Any JSON value (the `true` schema, a property with no schema)."""
        if self._any is None:
            self._any = node = Ref(f"{self.document.label}-any")
            string = Seq([Lit('"'), Text(0, None), Lit('"')])
            entry = Seq([Lit('"'), Text(0, None), Lit('":'), WS, node])
            array = Seq([Lit("["), Repeat(node, 0, None, SEP), Lit("]")])
            obj = Seq([Lit("{"), Repeat(entry, 0, None, SEP), Lit("}")])
            scalars = [Lit("null"), Lit("true"), Lit("false"), number_expr({}), string]
            node.target = Alt([*scalars, array, obj])
        return self._any


def _object_expr(members: list[tuple[Expr, bool]], extra: Expr | None) -> Expr:
    """`{`, the members in order (an optional one may be left out), any extra entries, `}`."""
    if any(is_required for _, is_required in members):
        body: list[Expr] = [members[0][0]]
        for member, is_required in members[1:]:
            body.append(Seq([SEP, member]) if is_required else optional(Seq([SEP, member])))
        if extra is not None:
            body.append(Repeat(Seq([SEP, extra]), 0, None))
        return Seq([Lit("{"), *body, Lit("}")])
    # Nothing required: a choice of which member comes first (no comma before it), each
    # followed by any of the later ones. Flat, so that many properties nest no deeper.
    later = [optional(Seq([SEP, member])) for member, _ in members]
    extras = [Repeat(Seq([SEP, extra]), 0, None)] if extra is not None else []
    options: list[Expr] = [
        Seq([member, *later[i + 1 :], *extras]) for i, (member, _) in enumerate(members)
    ]
    options.append(Repeat(extra, 0, None, SEP) if extra is not None else Lit(""))
    return Seq([Lit("{"), Alt(options), Lit("}")])


_NOT_RAW = [(0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0x7F, 0x7F)]


def _key_except(names: list[str], where: str) -> Expr:
    """The key of an additional property: any string but the declared names, written without
    escapes (so that no two spellings decode to the same name)."""
    if any(len(name) > _MAX_NAME for name in names):
        raise SchemaRefused(
            f"Unsupported: additional properties beside a property name longer than {_MAX_NAME} "
            f"characters at {where}"
        )
    trie: dict[str, Any] = {}
    for name in names:
        if all(_raw(char) for char in name):
            node = trie
            for char in name:
                node = node.setdefault(char, {})
            node[""] = {}
    return _trie_expr(trie)


def _raw(char: str) -> bool:
    """Whether JSON may hold `char` unescaped in a string (and our grammars let it)."""
    point = ord(char)
    return point > 0x1F and char not in '"\\\x7f' and not 0xD800 <= point <= 0xDFFF


def _trie_expr(trie: dict[str, Any]) -> Expr:
    free = Text(0, None, escapes=False)
    taken = [(ord(char), ord(char)) for char in trie if char]
    options: list[Expr] = [] if "" in trie else [Lit("")]
    others = subtract(complement(taken), _NOT_RAW)
    if others:
        options.append(Seq([json_chars(others), free]))
    for char, below in trie.items():
        if char:
            options.append(Seq([Lit(char), _trie_expr(below)]))
    return Alt(options) if len(options) > 1 else options[0]


def check_keywords(schema: dict[str, Any], where: str) -> None:
    """Refuse what cannot be enforced, and values of the wrong type for keywords we read."""
    for word in schema:
        if word in REFUSED:
            raise SchemaRefused(f"Unsupported schema keyword '{word}' at {where}")
    for word, expected, test in _VALUE_CHECKS:
        if word in schema and not test(schema[word]):
            raise SchemaRefused(f"Invalid schema at {where}: '{word}' must be {expected}")
    types = schema.get("type")
    if types is not None:
        for name in [types] if isinstance(types, str) else types:
            if name not in ALL_TYPES:
                raise SchemaRefused(f"Invalid schema at {where}: unknown type {json.dumps(name)}")
    low, high, _, _ = bounds(schema)
    for bound in (low, high):
        if isinstance(bound, int) and len(str(abs(bound))) > 100:
            raise SchemaRefused(f"Unsupported: a bound of more than 100 digits at {where}")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _schema(value: Any) -> bool:
    return isinstance(value, dict | bool)


def _schemas(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_schema(item) for item in value)


_VALUE_CHECKS = [
    *((word, "a non-negative integer", _count) for word in ("minLength", "maxLength")),
    *((word, "a non-negative integer", _count) for word in ("minItems", "maxItems")),
    *((word, "a non-negative integer", _count) for word in ("minProperties", "maxProperties")),
    *((word, "a number", _number) for word in ("minimum", "maximum")),
    *(
        (w, "a number or a boolean", lambda v: _number(v) or isinstance(v, bool))
        for w in (
            "exclusiveMinimum",
            "exclusiveMaximum",
        )
    ),
    ("multipleOf", "a positive number", lambda v: _number(v) and v > 0),
    (
        "properties",
        "an object of schemas",
        lambda v: isinstance(v, dict) and all(map(_schema, v.values())),
    ),
    (
        "required",
        "a list of strings",
        lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v),
    ),
    ("additionalProperties", "a schema", _schema),
    ("unevaluatedProperties", "a schema", _schema),
    ("items", "a schema or a list of schemas", lambda v: _schema(v) or _schemas(v)),
    ("additionalItems", "a schema", _schema),
    ("prefixItems", "a list of schemas", _schemas),
    ("allOf", "a non-empty list of schemas", _schemas),
    ("anyOf", "a non-empty list of schemas", _schemas),
    ("oneOf", "a non-empty list of schemas", _schemas),
    ("enum", "a list", lambda v: isinstance(v, list)),
    ("type", "a type name or a list of them", lambda v: isinstance(v, str | list)),
    ("pattern", "a string", lambda v: isinstance(v, str)),
    ("format", "a string", lambda v: isinstance(v, str)),
    ("uniqueItems", "a boolean", lambda v: isinstance(v, bool)),
]
