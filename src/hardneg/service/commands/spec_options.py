"""A command's options, generated from its operation's spec (:mod:`hardneg.core.spec`).

Every command that runs an operation takes the same three kinds of input, applied in order:
the spec's defaults (and the settings' environment defaults: a spec's LLM is the settings'), then
``--config FILE`` (JSON or YAML, flat or nested), then ``--set key=value`` (any field, by flat
or dotted name, repeatable), then the flags of the common fields, each generated from the
field's type and description. Values reach pydantic as given: it converts and checks them.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from hardneg.core.spec import Section, build_spec, flat_fields, parse_assignments, read_spec_file
from hardneg.miners.llm.backends import BackendConfig
from hardneg.service.commands.errors import reported

if TYPE_CHECKING:  # loads the workspace (faiss) when a command runs, not for --help
    from hardneg.service.settings import Settings


@dataclass(frozen=True)
class Flag:
    """A flag for the spec field ``field`` (a flat name), named ``--<name>`` (default: field)."""

    field: str
    name: str | None = None

    @property
    def option(self) -> str:
        return "--" + (self.name or self.field).replace("_", "-").replace(".", "-")

    @property
    def parameter(self) -> str:
        return "flag_" + (self.name or self.field).replace("-", "_").replace(".", "_")


Flags = Sequence[str | Flag]
Run = Callable[[Any, "Settings", dict[str, Any]], None]


def _flag(entry: str | Flag) -> Flag:
    return entry if isinstance(entry, Flag) else Flag(entry)


def _options(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        return tuple(a for a in typing.get_args(annotation) if a is not type(None))
    return (annotation,)


def _click_type(annotation: Any) -> tuple[Any, str]:
    """The type a flag parses to (pydantic converts the rest), and the choices for its help."""
    (first, *_) = _options(annotation)
    origin = typing.get_origin(first)
    if origin in (list, tuple):
        (item, *_) = typing.get_args(first)
        choices = typing.get_args(item) if typing.get_origin(item) is Literal else ()
        named = f"; one of {', '.join(map(str, choices))}" if choices else ""
        return list[str] | None, f" (repeat{named})"
    if origin is Literal:
        return str | None, f" (one of {', '.join(map(str, typing.get_args(first)))})"
    if first in (bool, int, float):
        return first | None, ""
    return str | None, ""


def _help(field: Any, choices: str) -> str:
    text = field.info.description or field.name.replace("_", " ")
    default = field.info.get_default(call_default_factory=True)
    shown = "" if isinstance(default, Section) else f" (default: {default})"
    return f"{text}{choices}{shown}"


def _parameter(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)  # fmt: skip


def spec_command(
    spec: type[Section],
    flags: Flags,
    run: Run,
    extra: Sequence[inspect.Parameter] = (),
    doc: str = "",
) -> Callable[..., None]:
    """A typer command: ``extra`` parameters (``--data``, ``--output`` ...), ``--home``,
    ``--config``, ``--set`` and one flag per entry of ``flags``; it builds the spec and calls
    ``run(spec, settings, extra values)``. A spec's LLM (a :class:`BackendConfig` field) starts
    from the settings' (``HARDNEG_LLM_*``)."""
    fields = flat_fields(spec)
    llms = [name for name, info in spec.model_fields.items() if info.annotation is BackendConfig]
    chosen = [_flag(entry) for entry in flags]
    unknown = [flag.field for flag in chosen if flag.field not in fields]
    if unknown:
        raise TypeError(f"{spec.__name__} has no fields {unknown}")
    parameters = list(extra)
    for flag in chosen:
        field = fields[flag.field]
        kind, choices = _click_type(field.info.annotation)
        option = typer.Option(flag.option, help=_help(field, choices), show_default=False)
        parameters.append(_parameter(flag.parameter, Annotated[kind, option]))
    parameters += [
        _parameter(
            "config",
            Annotated[Path | None, typer.Option(help="JSON or YAML file of spec fields")],
        ),
        _parameter(
            "set_",
            Annotated[
                list[str] | None,
                typer.Option("--set", help="any spec field: key=value (repeatable)"),
            ],
        ),
        _parameter(
            "home",
            Annotated[Path | None, typer.Option(help="data directory (default $HARDNEG_HOME)")],
        ),
    ]

    def command(**values: Any) -> None:
        from hardneg.service.settings import Settings

        home = values.pop("home")
        settings = Settings(home=home) if home else Settings()
        given = {f.field: values.pop(f.parameter) for f in chosen}
        config, assignments = values.pop("config"), values.pop("set_")
        layers: list[Mapping[str, object]] = [
            {name: settings.llm_config() for name in llms},
            read_spec_file(config) if config is not None else {},
            parse_assignments(assignments or []),
            {name: value for name, value in given.items() if value is not None},
        ]
        source = f"{config} and the command line" if config is not None else "command line"
        run(build_spec(spec, layers, source), settings, values)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = doc
    return reported(command)


def option(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    """An ``extra`` parameter of :func:`spec_command` (``Annotated[type, typer.Option(...)]``)."""
    return _parameter(name, annotation, default)


def data_option(help: str = "BEIR folder, or a BEIR dataset name") -> inspect.Parameter:
    """``--data``: the dataset a command reads (required)."""
    return option("data", Annotated[str, typer.Option(help=help)])


def output_option(help: str) -> inspect.Parameter:
    """``--output``: the folder a command writes (required)."""
    return option("output", Annotated[Path, typer.Option(help=help)])
