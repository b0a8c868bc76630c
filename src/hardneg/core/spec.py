"""Operation specs: one pydantic model per operation, read the same way by the CLI, the REST API
and the pipelines.

A :class:`Spec` is made of plain fields and typed parts (:class:`Section`: filters, BM25
parameters, an index, an LLM backend ...). Every field of a spec has one *flat name*, unique in
the spec: a plain field's own name, a section field's name behind the section's ``flat_prefix``
(``llm_`` + ``model`` = ``llm_model``) unless the section renames it (``flat_names``). A spec
accepts its fields nested (``{"filters": {"num_negatives": 5}}``), flat (``{"num_negatives": 5}``)
or dotted (``{"filters.num_negatives": 5}``), and :func:`flat_dump` writes it flat again: the
REST API's JSON shape. A field whose type is itself a :class:`Spec` (a training config inside a
train job) stays one nested object in both.

Fields marked :func:`server_owned` are filled by the service from its settings and refused in
API requests. Types are pydantic's: no value is converted by hand here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo

from hardneg.core.beir import DataError

SERVER_OWNED = "server_owned"


def server_owned(reason: str) -> JsonDict:
    """``json_schema_extra`` of a field set by the service (from its settings), never a request."""
    return {SERVER_OWNED: reason}


class Section(BaseModel):
    """A typed part of a spec: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    flat_prefix: ClassVar[str] = ""
    flat_names: ClassVar[dict[str, str]] = {}  # field -> flat name, where the prefix would not do


@dataclass(frozen=True)
class FlatField:
    """One field of a spec under its flat name; ``path`` leads to it through the sections."""

    name: str
    path: tuple[str, ...]
    info: FieldInfo
    owner: type[BaseModel]  # the model that declares the field
    server_owned: bool = False  # the field, or a section holding it, is the service's

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def _marked(info: FieldInfo) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and SERVER_OWNED in extra


def _part(annotation: Any) -> type[Section] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, Section) else None


@functools.cache
def flat_fields(model: type[Section]) -> dict[str, FlatField]:
    """Every leaf field of ``model`` by flat name (a nested spec's fields by dotted name)."""
    found: dict[str, FlatField] = {}
    for name, info in model.model_fields.items():
        part = _part(info.annotation)
        marked = _marked(info)
        if part is None:
            entries = [FlatField(name, (name,), info, model, marked)]
        elif issubclass(part, Spec):  # a document of its own: addressed as "config.max_steps"
            entries = [
                FlatField(
                    f"{name}.{inner.name}",
                    (name, *inner.path),
                    inner.info,
                    inner.owner,
                    marked or inner.server_owned,
                )
                for inner in flat_fields(part).values()
            ]
        else:
            entries = [
                FlatField(
                    part.flat_names.get(inner.name, part.flat_prefix + inner.name),
                    (name, *inner.path),
                    inner.info,
                    inner.owner,
                    marked or inner.server_owned,
                )
                for inner in flat_fields(part).values()
            ]
        for entry in entries:
            if entry.name in found:
                raise TypeError(f"{model.__name__}: flat name {entry.name!r} is used twice")
            found[entry.name] = entry
    return found


def _nest(model: type[Section], data: Mapping[str, Any]) -> dict[str, Any]:
    """Flat and dotted keys moved into their sections; anything unknown is left for pydantic."""
    fields = flat_fields(model)
    nested: dict[str, Any] = {}
    for key, value in data.items():
        declared = model.model_fields.get(key)
        if declared is not None and (_part(declared.annotation) is None or _is_part_value(value)):
            target: tuple[str, ...] = (key,)
        elif key in fields:
            target = fields[key].path
        elif "." in key:
            target = tuple(key.split("."))
        else:
            target = (key,)
        _put(nested, target, value)
    return nested


def _is_part_value(value: object) -> bool:
    return isinstance(value, Mapping | BaseModel)


def _put(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    *parents, leaf = path
    for name in parents:
        child = tree.get(name)
        if isinstance(child, BaseModel):
            child = child.model_dump()
        if not isinstance(child, dict):
            child = {}
        tree[name] = child
        tree = child
    existing = tree.get(leaf)
    if isinstance(existing, BaseModel) and isinstance(value, Mapping):
        existing = existing.model_dump()
    if isinstance(existing, dict) and isinstance(value, Mapping):
        tree[leaf] = {**existing, **value}
    else:
        tree[leaf] = value


class Spec(Section):
    """An operation's whole spec (or a document nested in one, such as a training config)."""

    @model_validator(mode="before")
    @classmethod
    def _accept_flat_keys(cls, data: Any) -> Any:
        return _nest(cls, data) if isinstance(data, Mapping) else data


def flat_dump(spec: BaseModel, server_owned: bool = True) -> dict[str, Any]:
    """The spec as flat JSON: one key per flat name; a nested spec as one object. Without
    ``server_owned``, the fields the server fills in are left out (what a request may ask)."""
    dumped = spec.model_dump(mode="json")
    out: dict[str, Any] = {}
    for field in flat_fields(type(spec)).values():
        if field.server_owned and not server_owned:
            continue
        if "." not in field.name:
            leaf: Any = dumped
            for step in field.path:
                leaf = leaf[step]
            out[field.name] = leaf
    for name, info in type(spec).model_fields.items():
        part = _part(info.annotation)
        if part is not None and issubclass(part, Spec):
            out[name] = flat_dump(getattr(spec, name), server_owned)
    return out


def given_fields(spec: BaseModel, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The paths of the fields that were set explicitly (not left to their defaults)."""
    given: set[tuple[str, ...]] = set()
    for name in spec.model_fields_set:
        value = getattr(spec, name)
        if isinstance(value, Section):
            given |= given_fields(value, (*prefix, name)) or {(*prefix, name)}
        else:
            given.add((*prefix, name))
    return given


def refused_fields(spec: BaseModel) -> list[str]:
    """The server-owned fields a request set (their flat names)."""
    given = given_fields(spec)
    return sorted(
        field.name
        for field in flat_fields(type(spec)).values()
        if field.server_owned and any(path[: len(field.path)] == field.path for path in given)
    )


def parse_assignments(pairs: Iterable[str]) -> dict[str, object]:
    """``key=value`` strings (``--set``); values are JSON when they parse (numbers, null, lists)."""
    values: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value, got {pair!r}")
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return values


def read_spec_file(path: Path) -> dict[str, object]:
    """A JSON or YAML file holding a mapping of field names to values (YAML needs PyYAML)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise DataError(path, None, "YAML configs need PyYAML (pip install pyyaml)") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            raise DataError(path, None if line is None else line + 1, "malformed YAML") from None
    else:
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(path, exc.lineno, f"malformed JSON ({exc.msg})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise DataError(path, None, "expected a mapping of option names to values")
    return loaded


def validation_message(exc: ValidationError) -> str:
    """A pydantic error as one line per field: ``filters.num_negatives: ...``."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "value"
        given = error.get("input")
        shown = "" if isinstance(given, Mapping | list | tuple) else f" (got {given!r})"
        lines.append(f"{where}: {error['msg']}{shown}")
    return "; ".join(lines)


S = TypeVar("S", bound=Section)


def build_spec(model: type[S], layers: Iterable[Mapping[str, object]], source: str = "config") -> S:
    """``model`` from mappings applied in order (later ones win), naming the field at fault."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in _nest(model, layer).items():
            _put(merged, (key,), value)
    try:
        return model.model_validate(merged)
    except ValidationError as exc:
        raise DataError(source, None, validation_message(exc)) from None
