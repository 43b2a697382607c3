"""Declaring a setting once: its name, type, default, environment variable, pipeline.json key, range and meaning.

A section of the settings is a frozen dataclass whose fields are made with `setting()`, as Faust declares each
of its settings once and Quix Streams keeps one pydantic model. From those declarations alone, `pipeline_schema`
gives the JSON schema the pipeline file is checked against (with each key's description and default, for
editors), and `read_sections` builds the sections: the environment over the file over the default, each
environment value converted and range-checked with a one-line `ConfigError` naming the variable.
"""

from __future__ import annotations

import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

_DECLARATION = "airq.setting"
_JSON_TYPES: dict[Any, str] = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "string"}


class ConfigError(ValueError):
    """The pipeline file or an environment variable is invalid; one line naming the field and the problem."""


@dataclass(frozen=True)
class Declaration:
    """What a field declares besides its name, type and default (see `setting`)."""

    doc: str
    env: str | None = None
    file: bool | str = True
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    expected: str | None = None
    min_length: int | None = None
    min_items: int | None = None
    unique: bool = False
    key_pattern: str | None = None
    auto: str | None = None
    secret: bool = False
    strip: bool = True
    aliases: tuple[str, ...] = ()
    check: Callable[[Any], Any] | None = None
    derive: Callable[[Mapping[str, Any]], Any] | None = None


def setting(
    default: Any,
    doc: str,
    *,
    env: str | None = None,
    file: bool | str = True,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: float | None = None,
    choices: tuple[str, ...] | None = None,
    pattern: str | None = None,
    expected: str | None = None,
    min_length: int | None = None,
    min_items: int | None = None,
    unique: bool = False,
    key_pattern: str | None = None,
    auto: str | None = None,
    secret: bool = False,
    strip: bool = True,
    aliases: tuple[str, ...] = (),
    check: Callable[[Any], Any] | None = None,
    derive: Callable[[Mapping[str, Any]], Any] | None = None,
) -> Any:
    """A settings field.

    `file`: True for the key of the field's name in its section's part of pipeline.json, "section.key" for
    another place there, False for the environment only. The range (`minimum`, `maximum`, `exclusive_minimum`),
    `choices`, `pattern` (`expected` says in words what matches) and `min_length` apply to a value, or to each
    item of a list or value of a mapping; `min_items`, `unique` and `key_pattern` to the list or mapping.
    `auto` is a word standing for None ("auto"). A `secret` is left out of the repr; `aliases` are file keys
    refused with a pointer to its variable. Text is stripped unless `strip` is False. `check` normalises a value
    from the file or the environment, or raises ValueError saying what is wrong with it; `derive` computes the
    default from the other sections (the field holds None until `read_sections` has done so).
    """
    declaration = Declaration(
        doc,
        env,
        file,
        minimum,
        maximum,
        exclusive_minimum,
        choices,
        pattern,
        expected,
        min_length,
        min_items,
        unique,
        key_pattern,
        auto,
        secret,
        strip,
        aliases,
        check,
        derive,
    )
    metadata = {_DECLARATION: declaration}
    if isinstance(default, Mapping):
        frozen = types.MappingProxyType(dict(default))
        return field(default_factory=lambda: frozen, repr=not secret, metadata=metadata)
    return field(default=default, repr=not secret, metadata=metadata)


@dataclass(frozen=True)
class Declared:
    """One declared field of a section class: its place in the file (None: environment only) and its rules."""

    section: str
    name: str
    type: Any
    default: Any
    rules: Declaration

    @property
    def key(self) -> str | None:
        """`section.key` in pipeline.json, or None."""
        if self.rules.file is False:
            return None
        return self.rules.file if isinstance(self.rules.file, str) else f"{self.section}.{self.name}"

    @property
    def path(self) -> str:
        """`section.name` in the settings (`settings.output.finish_idle_s`)."""
        return f"{self.section}.{self.name}"


def _default(f: Field[Any]) -> Any:
    return f.default_factory() if f.default is MISSING and f.default_factory is not MISSING else f.default


@cache
def declared(section: str, cls: type) -> tuple[Declared, ...]:
    """The declared fields of a section class, in declaration order (fields without `setting` are built from
    them, like the Kafka section's `security`)."""
    hints = typing.get_type_hints(cls)
    return tuple(
        Declared(section, f.name, hints[f.name], _default(f), f.metadata[_DECLARATION])
        for f in fields(cls)
        if _DECLARATION in f.metadata
    )


def _optional(tp: Any) -> tuple[Any, bool]:
    """(T, whether None is allowed) of `T | None`."""
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _collection(tp: Any) -> tuple[str, Any, int | None] | None:
    """("array", item type, fixed length or None) or ("object", value type, None) for a tuple or mapping type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        fixed = None if len(args) == 2 and args[1] is Ellipsis else len(args)
        return "array", args[0], fixed
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return "object", args[1], None
    return None


# -- the JSON schema -------------------------------------------------------------------------------------------


def _scalar_schema(tp: Any, rules: Declaration) -> dict[str, Any]:
    base, optional = _optional(tp)
    schema: dict[str, Any]
    if rules.choices is not None:
        schema = {"enum": [*rules.choices, *([None] if optional else [])]}
    elif rules.auto is not None:
        schema = {"type": [_JSON_TYPES[base], "string"], "pattern": f"^{re.escape(rules.auto)}$"}
    else:
        schema = {"type": [_JSON_TYPES[base], "null"] if optional else _JSON_TYPES[base]}
    for keyword, value in (
        ("pattern", rules.pattern),
        ("minLength", rules.min_length),
        ("minimum", rules.minimum),
        ("exclusiveMinimum", rules.exclusive_minimum),
        ("maximum", rules.maximum),
    ):
        if value is not None:
            schema[keyword] = value
    return schema


def _value_schema(tp: Any, rules: Declaration) -> dict[str, Any]:
    base, optional = _optional(tp)
    shape = _collection(base)
    if shape is None:
        return _scalar_schema(tp, rules)
    kind, inner, fixed = shape
    schema: dict[str, Any] = {"type": kind}
    if kind == "array":
        if fixed is not None:
            schema.update(minItems=fixed, maxItems=fixed)
        if rules.min_items is not None:
            schema["minItems"] = rules.min_items
        if rules.unique:
            schema["uniqueItems"] = True
        schema["items"] = _scalar_schema(inner, rules)
    else:
        if rules.key_pattern is not None:
            schema["propertyNames"] = {"pattern": rules.key_pattern}
        schema["additionalProperties"] = _scalar_schema(inner, rules)
    return {"oneOf": [{"type": "null"}, schema]} if optional else schema


def to_json(value: Any, auto: str | None = None) -> Any:
    """A value as pipeline.json would hold it (tuples as lists, paths as text, None as the `auto` word)."""
    if value is None:
        return auto
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def pipeline_schema(sections: Mapping[str, type], title: str) -> dict[str, Any]:
    """The JSON schema of the pipeline file: one object per section, every key declared, nothing else allowed."""
    properties: dict[str, Any] = {"$schema": {"type": "string"}}
    keys = {d.key: d for name, cls in sections.items() for d in declared(name, cls) if d.key is not None}
    for key, d in keys.items():
        section, name = key.split(".", 1)
        part = properties.setdefault(section, {"type": "object", "additionalProperties": False, "properties": {}})
        schema = {"description": d.rules.doc, **_value_schema(d.type, d.rules)}
        if d.rules.derive is None:
            schema["default"] = to_json(d.default, d.rules.auto)
        part["properties"][name] = schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://airq.example/pipeline.schema.json",
        "title": title,
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }


def dump_json(value: Any, indent: int = 0, taken: int = 0, width: int = 120) -> str:
    """JSON text with each value on one line when it fits in `width` (the schema file stays readable)."""
    one = json.dumps(value, ensure_ascii=False)
    if indent + taken + len(one) <= width or not isinstance(value, dict | list) or not value:
        return one
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            key = json.dumps(k, ensure_ascii=False)
            items.append(f"{pad}{key}: {dump_json(v, indent + 2, len(key) + 2, width)}")
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [f"{pad}{dump_json(v, indent + 2, 0, width)}" for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


# -- reading values --------------------------------------------------------------------------------------------


def _number_in_range(name: str, value: float, rules: Declaration, integer: bool) -> None:
    low, high = rules.minimum, rules.maximum
    if integer and low is not None and high is not None:
        if not low <= value <= high:
            raise ConfigError(f"{name}: {value} is out of range ({low}..{high})")
        return
    shown = (lambda x: x) if integer else float
    if rules.exclusive_minimum is not None and not value > rules.exclusive_minimum:
        raise ConfigError(f"{name}: {value} must be more than {shown(rules.exclusive_minimum)}")
    if low is not None and not value >= low:
        raise ConfigError(f"{name}: {value} must be at least {shown(low)}")
    if high is not None and not value <= high:
        raise ConfigError(f"{name}: {value} must be at most {shown(high)}")


def _scalar_from_text(name: str, raw: str, tp: Any, rules: Declaration) -> Any:
    if tp is int:
        try:
            value: Any = int(raw)
        except ValueError:
            raise ConfigError(f"{name}: {raw!r} is not an integer") from None
        _number_in_range(name, value, rules, integer=True)
        return value
    if tp is float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}: {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise ConfigError(f"{name}: {raw!r} is not a finite number")
        _number_in_range(name, value, rules, integer=False)
        return value
    if tp is bool:
        word = raw.lower()
        if word not in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            raise ConfigError(f"{name}: {raw!r} is not true or false")
        return word in ("true", "1", "yes", "on")
    if rules.pattern is not None and not re.search(rules.pattern, raw):
        what = rules.expected or f"matching {rules.pattern!r}"
        raise ConfigError(f"{name}: {raw!r} is not {what}")
    return Path(raw) if tp is Path else raw


def _from_env(name: str, raw: str, d: Declared) -> Any:
    """The value of an environment variable (set and not blank), converted and checked."""
    rules = d.rules
    text = raw.strip() if rules.strip else raw
    base, _ = _optional(d.type)
    if rules.auto is not None and text.lower() == rules.auto:
        return None
    shape = _collection(base)
    if shape is not None:
        if shape[0] != "array" or shape[2] is not None:
            raise TypeError(f"{d.path}: only lists of any length can come from the environment")
        return tuple(_scalar_from_text(name, part.strip(), shape[1], rules) for part in text.split(",") if part.strip())
    return _scalar_from_text(name, text, base, rules)


def _from_file(value: Any, d: Declared) -> Any:
    """A value from the (already schema-checked) pipeline file, as the field's type."""
    rules = d.rules
    if value is None or (rules.auto is not None and value == rules.auto):
        return None
    base, _ = _optional(d.type)
    shape = _collection(base)
    if shape is not None:
        if shape[0] == "array":
            return tuple(_scalar_from_json(v, shape[1]) for v in value)
        return types.MappingProxyType({k: _scalar_from_json(v, shape[1]) for k, v in value.items()})
    return _scalar_from_json(value.strip() if isinstance(value, str) and rules.strip else value, base)


def _scalar_from_json(value: Any, tp: Any) -> Any:
    base, _ = _optional(tp)
    if value is None:
        return None
    if base is float:
        return float(value)
    if base is Path:
        return Path(value)
    return value


def _checked(where: str, value: Any, d: Declared) -> Any:
    if d.rules.check is not None and value is not None:
        try:
            value = d.rules.check(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if d.rules.choices is not None and value is not None and value not in d.rules.choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(d.rules.choices)}")
    return value


def _read(d: Declared, data: Mapping[str, Any], env: Mapping[str, str], file_name: str) -> tuple[Any, str]:
    """(value, where it came from) of one field: a variable that is set and not blank wins over the file, the file
    over the declared default."""
    raw = env.get(d.rules.env) if d.rules.env else None
    if d.rules.env and raw is not None and raw.strip():
        return _checked(d.rules.env, _from_env(d.rules.env, raw, d), d), d.rules.env
    if d.key is not None:
        section, item = d.key.split(".", 1)
        if item in data.get(section, {}):
            where = f"{file_name}: {d.key}"
            return _checked(where, _from_file(data[section][item], d), d), f"{file_name} {d.key}"
    return d.default, "default"


def read_sections(
    sections: Mapping[str, type], data: Mapping[str, Any], env: Mapping[str, str], file_name: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every section, and where each value came from (`section.name` -> the variable, `<file> section.key` or
    "default"). `data` is the pipeline file, already checked against `pipeline_schema`; derived defaults are
    computed once every section is read."""
    built: dict[str, Any] = {}
    sources: dict[str, str] = {}
    derived: list[Declared] = []
    for name, cls in sections.items():
        values: dict[str, Any] = {}
        for d in declared(name, cls):
            value, sources[d.path] = _read(d, data, env, file_name)
            if sources[d.path] != "default":
                values[d.name] = value
            elif d.rules.derive is not None:
                derived.append(d)
        built[name] = cls(**values)
    for d in derived:
        assert d.rules.derive is not None
        built[d.section] = replace(built[d.section], **{d.name: d.rules.derive(built)})
    return built, sources


class Declarations:
    """The sections of a program's settings, and what follows from their declarations: each field by its path
    (`output.finish_idle_s`), the pipeline file's keys and JSON schema, and the checking and reading of values."""

    def __init__(self, sections: Mapping[str, type], title: str) -> None:
        self.sections = dict(sections)
        self.fields = {d.path: d for name, cls in self.sections.items() for d in declared(name, cls)}
        self.file_keys = {d.key: d for d in self.fields.values() if d.key is not None}
        self.schema = pipeline_schema(self.sections, title)
        self._validator = Draft202012Validator(self.schema)

    def __getitem__(self, path: str) -> Declared:
        return self.fields[path]

    def check(self, data: Any, file_name: str) -> None:
        """ConfigError with the pipeline file's first problem, as `<file>: section.key: problem`."""
        error = best_match(self._validator.iter_errors(data))
        if error is not None:
            raise ConfigError(f"{file_name}: {self._describe(error)}")

    def read(
        self, data: Mapping[str, Any], env: Mapping[str, str], file_name: str
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Every section from checked file data and the environment (see `read_sections`)."""
        return read_sections(self.sections, data, env, file_name)

    def environment_value(self, path: str, env: Mapping[str, str]) -> Any:
        """One setting from the environment alone: its variable, else its default."""
        return _read(self[path], {}, env, "")[0]

    def _describe(self, error: ValidationError) -> str:
        where = _field_path(error)
        if error.validator == "additionalProperties":
            variable = self._refused(where)
            if variable:
                return f"{where}: not allowed here: set {variable} in the environment or .env"
            return f"{where}: unknown key"
        if error.validator == "oneOf":
            declaration = self.file_keys.get(where)
            expected = declaration.rules.expected if declaration is not None else "?"
            return f"{where}: {json.dumps(error.instance)} is not a valid value (expected null or {expected})"
        return f"{where}: {error.message}"

    def _refused(self, where: str) -> str | None:
        """The variable a secret is read from, when `where` (`kafka.password`) is a file key refused for it."""
        section, _, key = where.partition(".")
        for d in self.fields.values():
            if d.section == section and d.rules.secret and key in (d.name, *d.rules.aliases):
                return d.rules.env
        return None


def _field_path(error: ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        parts.append(extra[0] if extra else "?")
        return ".".join(parts)
    if error.validator == "required":
        return ".".join(parts)
    return ".".join(parts) or "(top level)"
