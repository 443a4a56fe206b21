"""Typed records that read and write themselves as JSON objects, and describe themselves as JSON Schema.

A manifest is a tree of these. Why not plain dicts: six modules used to write keys that four others read
back by string, so a typo or a renamed key failed silently far from its cause. A record declares its fields
once; reading checks their types and names the field that is wrong; keys a newer vit-edge wrote that this
one does not know are kept in ``extra`` and written back, so a round trip loses nothing.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field

from vit_edge.errors import ArtifactError

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}


@dataclass(kw_only=True)
class Record:
    """Base class. Subclasses are ``@dataclass(kw_only=True)`` whose fields default to None.

    ``ALWAYS`` names the fields written even when None (as ``null``); every other None field is left out,
    which is how the manifests of earlier versions look on disk."""

    ALWAYS: typing.ClassVar[tuple] = ()
    extra: dict = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict:
        out = {}
        for f in _fields(type(self)):
            value = getattr(self, f.name)
            if value is None and f.name not in self.ALWAYS:
                continue
            out[f.name] = _dump(value)
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data, where: str = ""):
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise _wrong(where or cls.__name__, "an object", data)
        hints = typing.get_type_hints(cls)
        known, extra = {}, {}
        for key, value in data.items():
            if key in cls.__dataclass_fields__ and key != "extra":
                known[key] = _load(hints[key], value, f"{where}.{key}" if where else key)
            else:
                extra[key] = value
        return cls(**known, extra=extra)

    @classmethod
    def json_schema(cls) -> dict:
        hints = typing.get_type_hints(cls)
        props = {f.name: _schema(hints[f.name]) for f in _fields(cls)}
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        return {"type": "object", "description": " ".join(doc.split()), "properties": props,
                "additionalProperties": True}


def _fields(cls) -> list:
    return [f for f in dataclasses.fields(cls) if f.name != "extra"]


def _dump(value):
    if isinstance(value, Record) or hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def _wrong(where: str, expected: str, value) -> ArtifactError:
    got = "null" if value is None else type(value).__name__
    return ArtifactError(f"manifest field {where!r} should be {expected}, not {got}",
                         hint="the manifest was edited or damaged; re-run vit-edge convert")


def _split_optional(hint):
    """``X | None`` -> (X, True); anything else -> (hint, False)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return hint, False


def _load(hint, value, where: str):
    inner, _ = _split_optional(hint)
    if value is None:
        return None  # every field may be absent; the fields a reader needs are checked by the record's owner
    origin = typing.get_origin(inner) or inner
    if isinstance(origin, type) and issubclass(origin, Record):
        return origin.from_dict(value, where)
    if isinstance(origin, type) and hasattr(origin, "from_dict"):  # e.g. PreprocessConfig
        if not isinstance(value, dict):
            raise _wrong(where, "an object", value)
        try:
            return origin.from_dict(value)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"manifest field {where!r} is not a valid {origin.__name__} ({exc})",
                                hint="the manifest was edited or damaged; re-run vit-edge convert") from None
        except ArtifactError:
            raise
        except Exception as exc:  # its own validation (InputError and friends)
            message = getattr(exc, "message", str(exc))
            raise ArtifactError(f"manifest field {where!r}: {message}",
                                hint="the manifest was edited or damaged; re-run vit-edge convert") from None
    if origin is typing.Any:
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise _wrong(where, "a list", value)
        (item,) = typing.get_args(inner) or (typing.Any,)
        return [_load(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(where, "an object", value)
        args = typing.get_args(inner)
        return {k: _load(args[1], v, f"{where}.{k}") for k, v in value.items()} if args else value
    if origin is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _wrong(where, "a number", value)
        return value
    if origin is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong(where, "an integer", value)
        return value
    if origin in (str, bool):
        if not isinstance(value, origin):
            raise _wrong(where, f"a {_JSON_TYPES[origin]}", value)
        return value
    return value


def _schema(hint) -> dict:
    inner, nullable = _split_optional(hint)
    origin = typing.get_origin(inner) or inner
    if isinstance(origin, type) and issubclass(origin, Record):
        schema = origin.json_schema()
    elif isinstance(origin, type) and hasattr(origin, "from_dict") and dataclasses.is_dataclass(origin):
        schema = {"type": "object", "properties": {f.name: _schema(h) for f, h in
                                                   ((f, typing.get_type_hints(origin)[f.name])
                                                    for f in dataclasses.fields(origin) if f.compare)}}
    elif origin in (list, tuple):
        args = [a for a in typing.get_args(inner) if a is not Ellipsis]
        schema = {"type": "array"}
        if len(set(args)) == 1:
            schema["items"] = _schema(args[0])
    elif origin is dict:
        args = typing.get_args(inner)
        schema = {"type": "object"}
        if args and args[1] is not typing.Any:
            schema["additionalProperties"] = _schema(args[1])
    elif origin in _JSON_TYPES:
        schema = {"type": _JSON_TYPES[origin]}
    else:
        schema = {}
    if nullable and "type" in schema:
        schema = {**schema, "type": [schema["type"], "null"]}
    return schema
