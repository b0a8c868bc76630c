"""Every field of every operation's spec is settable from the CLI (``--set``, the way every
generated command reads it) and from the API (a job's ``params``), and the settings with an
environment default reach the job kinds that use them."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from hardneg.core.spec import (
    FlatField,
    build_spec,
    flat_dump,
    flat_fields,
    parse_assignments,
    refused_fields,
)
from hardneg.service.jobs.registry import KINDS
from hardneg.service.settings import Settings

PUBLIC = {name: kind for name, kind in KINDS.items() if kind.public}
# fields another field's value requires: a teacher "cross-encoder" names one, and validation
# every eval_steps fits in any number of steps
REQUIRED = {
    "train": {"negatives_job": "j" + "0" * 32},
    "adapt": {"cross_encoder": "a-cross-encoder", "train.eval_steps": 1},
}


def sample(field: FlatField) -> Any:
    """A valid value other than the default where the type allows one."""
    annotation = field.info.annotation
    kind = annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kind = next(a for a in typing.get_args(annotation) if a is not type(None))
    default = field.info.get_default(call_default_factory=True)
    if typing.get_origin(kind) is Literal:
        values = typing.get_args(kind)
        return next((v for v in values if v != default), values[0])
    if typing.get_origin(kind) in (list, tuple):
        (item, *_) = typing.get_args(kind)
        return [typing.get_args(item)[0]] if typing.get_origin(item) is Literal else ["x"]
    if kind is bool:
        return not default if isinstance(default, bool) else True
    if kind is int:
        low = next((m.ge for m in field.info.metadata if hasattr(m, "ge")), 1)
        return max(int(low), 1) + (1 if default == max(int(low), 1) else 0)
    if kind is float:
        return 0.5 if default != 0.5 else 0.25
    if kind is Path:
        return "some/file.toml"
    if field.name == "negatives_job":
        return "j" + "1" * 32
    return "value" if field.name != "name" else "a corpus"


CASES = [
    (name, field)
    for name, kind in sorted(PUBLIC.items())
    for field in flat_fields(kind.params).values()  # type: ignore[arg-type]
]


def _leaf(spec: BaseModel, path: tuple[str, ...]) -> Any:
    value: Any = spec
    for step in path:
        value = getattr(value, step)
    return value


@pytest.mark.parametrize(("kind", "field"), CASES, ids=[f"{k}.{f.name}" for k, f in CASES])
def test_every_field_is_settable_from_the_cli_and_from_the_api(kind: str, field: FlatField) -> None:
    model = PUBLIC[kind].params
    value = sample(field)
    if field.path[-1] in ("max_score", "min_score") or field.name == "range_max":
        value = 10 if field.name != "min_score" else -10.0
    if field.name == "llm_backend":
        return  # openai needs a model: covered with llm_model below
    base = REQUIRED.get(kind, {})
    if field.name == "processes":
        base = base | {"method": "dense"}  # several processes shard dense mining only
    # the CLI: --set key=value, as text, then pydantic
    text = json.dumps(value) if not isinstance(value, str) else value
    from_cli = build_spec(model, [base, parse_assignments([f"{field.name}={text}"])])
    # the API: the flat JSON of a request
    from_api = model.model_validate(base | {field.name: value})
    expected = _leaf(from_api, field.path)
    assert _leaf(from_cli, field.path) == expected
    assert expected != field.info.get_default(call_default_factory=True) or isinstance(value, bool)
    refused = refused_fields(from_api)
    assert (field.name in refused) == field.server_owned
    if not field.server_owned:  # stored as the request's JSON, and read back the same
        assert model.model_validate(flat_dump(from_api, server_owned=False)) == from_api


def test_the_llm_backend_is_the_servers_and_reaches_every_kind_that_uses_one() -> None:
    settings = Settings(
        llm_backend="openai",
        llm_model="served",
        llm_timeout_seconds=7.5,
        llm_max_retries=2,
        llm_base_url="http://llm:9/v1",
    )
    llm = settings.llm_config()
    assert (llm.timeout_s, llm.max_retries, llm.model, llm.base_url) == (
        7.5,
        2,
        "served",
        "http://llm:9/v1",
    )
    users = {}
    for name, kind in PUBLIC.items():
        owned = {f.path[0] for f in flat_fields(kind.params).values() if f.path[0] != f.name}
        for field_name, info in kind.params.model_fields.items():
            if info.annotation is type(llm):
                users[name] = field_name
                assert field_name in owned
                source = Path(__import__(kind.run.split(":")[0], fromlist=["x"]).__file__)
                assert f'"{field_name}": settings.llm_config()' in source.read_text(), name
    assert set(users) == {"mine", "generate", "experiment", "adapt"}


def test_an_experiment_can_override_every_profile_field_but_its_name() -> None:
    from dataclasses import fields

    from hardneg.service.pipelines.experiment.profiles import Profile
    from hardneg.service.pipelines.experiment.request import ExperimentSpec, ProfileOverrides

    assert set(ProfileOverrides.model_fields) == {f.name for f in fields(Profile)} - {"name"}
    spec = build_spec(ExperimentSpec, [parse_assignments(["overrides.generate_passages=7"])])
    assert spec.recipe.generate_passages == 7 and spec.recipe.star_steps == 80
