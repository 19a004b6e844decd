"""The JSON Schemas of the files ftmb-instrument writes, and a checker for them.

`ftmb-report-1.schema.json` documents the ftmb-report/1 format field by field. `check` validates
a parsed document against it with the subset of JSON Schema 2020-12 that the schema uses, so that
reading a report needs no third-party validator and every problem names the field it is about.
A keyword the checker does not know is an error, never silently ignored.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

REPORT_SCHEMA = "ftmb-report-1.schema.json"

# Keywords that only document; they constrain nothing.
_ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description", "examples", "default"}

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


@functools.cache
def load_schema(name: str = REPORT_SCHEMA) -> dict[str, Any]:
    """The parsed schema file shipped in this package."""
    return json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


def check(instance: Any, schema: dict[str, Any] | None = None) -> list[str]:
    """Problems of `instance` against `schema` (the report schema by default), each naming its
    place as a JSON path ("variables[3].class: ..."); empty when it conforms."""
    root = load_schema() if schema is None else schema
    problems: list[str] = []
    _check(instance, root, root, "", problems)
    return problems


def _check(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str, out: list[str]) -> None:
    place = where or "(top level)"
    for key, arg in schema.items():
        if key in _ANNOTATIONS or key in ("$defs", "then", "else"):
            continue
        if key == "$ref":
            _check(value, _resolve(arg, root), root, where, out)
        elif key == "type":
            if not any(_is_type(value, t) for t in ([arg] if isinstance(arg, str) else arg)):
                out.append(f"{place}: expected {arg if isinstance(arg, str) else ' or '.join(arg)}, "
                           f"found {_json_type(value)}")
                return
        elif key == "const":
            if not _same(value, arg):
                out.append(f"{place}: expected {json.dumps(arg)}, found {json.dumps(value)}")
        elif key == "enum":
            if not any(_same(value, a) for a in arg):
                out.append(f"{place}: {json.dumps(value)} is not one of {', '.join(json.dumps(a) for a in arg)}")
        elif key == "pattern":
            if isinstance(value, str) and not re.search(arg, value):
                out.append(f"{place}: {json.dumps(value)} does not match {arg}")
        elif key == "minLength":
            if isinstance(value, str) and len(value) < arg:
                out.append(f"{place}: must not be empty" if arg == 1 else f"{place}: shorter than {arg}")
        elif key == "minimum":
            if _is_type(value, "number") and value < arg:
                out.append(f"{place}: {value} is less than {arg}")
        elif key == "required":
            if isinstance(value, dict):
                out.extend(f"{place}: missing field {name!r}" for name in arg if name not in value)
        elif key == "properties":
            if isinstance(value, dict):
                for name, sub in arg.items():
                    if name in value:
                        _check(value[name], sub, root, f"{where}.{name}" if where else name, out)
        elif key == "additionalProperties":
            if arg is not False:
                raise ValueError(f"schema checker: only additionalProperties: false is supported, at {place}")
            if isinstance(value, dict):
                known = schema.get("properties", {})
                out.extend(f"{place}: unknown field {name!r}" for name in value if name not in known)
        elif key == "items":
            if isinstance(value, list):
                for i, item in enumerate(value):
                    _check(item, arg, root, f"{where}[{i}]", out)
        elif key == "allOf":
            for sub in arg:
                _check(value, sub, root, where, out)
        elif key == "if":
            branch = schema.get("then" if not _errors(value, arg, root) else "else")
            if branch is not None:
                _check(value, branch, root, where, out)
        else:
            raise ValueError(f"schema checker: unsupported keyword {key!r} at {place}")


def _errors(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> list[str]:
    out: list[str] = []
    _check(value, schema, root, "", out)
    return out


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"schema checker: only local references are supported, not {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def _same(a: Any, b: Any) -> bool:
    # JSON equality: true is not 1, unlike Python's.
    return type(a) is type(b) and a == b or (_is_type(a, "number") and _is_type(b, "number") and a == b)


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_type(value, name):
            return name
    return type(value).__name__
