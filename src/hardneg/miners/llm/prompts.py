"""Versioned prompt templates, built in or loaded from a user's TOML file.

A template is a system message and a user message with ``$field`` placeholders
(``string.Template`` syntax, so braces in JSON examples need no escaping; write ``$$`` for a
literal dollar), optionally after worked examples: ``turns``, literal (user, assistant) exchanges
shown before the user message, the chat form of a few-shot prompt. Its ``version`` goes into
every cache key: bump it whenever the wording changes. (The rendered text is in the key too, so
an edit without a bump cannot return stale outputs either.) A template file looks like::

    version = "my-doc2query-2"
    system = "You write search queries."
    user = '''Passage: $passage

    Write one question this passage answers.'''
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hardneg.miners.llm.client import ChatMessage

QUERY_FIELDS = frozenset({"passage", "title"})
NEGATIVE_FIELDS = frozenset({"query", "positive"})


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    user: str
    system: str = ""
    turns: tuple[tuple[str, str], ...] = ()  # literal (user, assistant) examples, in order

    def __post_init__(self) -> None:
        if not self.version.strip():
            raise ValueError(f"prompt {self.name!r}: 'version' must not be empty")
        if not self.user.strip():
            raise ValueError(f"prompt {self.name!r}: 'user' must not be empty")
        for part in (self.system, self.user):
            if not string.Template(part).is_valid():
                raise ValueError(f"prompt {self.name!r}: invalid $placeholder in {part[:60]!r}")

    @property
    def fields(self) -> frozenset[str]:
        """The ``$field`` names the template uses."""
        names: set[str] = set()
        for part in (self.system, self.user):
            names.update(string.Template(part).get_identifiers())
        return frozenset(names)

    def check_fields(self, allowed: frozenset[str], required: frozenset[str]) -> None:
        unknown = self.fields - allowed
        if unknown:
            raise ValueError(
                f"prompt {self.name!r} uses unknown fields {sorted(unknown)}; "
                f"available: {sorted(allowed)}"
            )
        missing = required - self.fields
        if missing:
            raise ValueError(f"prompt {self.name!r} must use {sorted('$' + m for m in missing)}")

    def render(self, values: Mapping[str, str]) -> tuple[ChatMessage, ...]:
        """The chat messages with every placeholder filled; KeyError names a missing field."""
        messages = []
        if self.system.strip():
            messages.append(ChatMessage("system", string.Template(self.system).substitute(values)))
        for asked, answered in self.turns:
            messages += [ChatMessage("user", asked), ChatMessage("assistant", answered)]
        messages.append(ChatMessage("user", string.Template(self.user).substitute(values)))
        return tuple(messages)


def load_template(path: Path) -> PromptTemplate:
    """Read a TOML template (keys ``version``, ``user``, optional ``system`` and ``name``)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"prompt file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    unknown = set(data) - {"name", "version", "system", "user"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    for key in ("version", "user"):
        if not isinstance(data.get(key), str):
            raise ValueError(f"{path}: {key!r} must be a string")
    if not isinstance(data.get("system", ""), str) or not isinstance(data.get("name", ""), str):
        raise ValueError(f"{path}: 'system' and 'name' must be strings")
    try:
        return PromptTemplate(
            name=data.get("name") or path.stem,
            version=data["version"],
            user=data["user"],
            system=data.get("system", ""),
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


DOC2QUERY = PromptTemplate(
    name="doc2query",
    version="doc2query-v1",
    system="You are a researcher searching a library.",
    user=(
        "Read this text:\n$passage\n\n"
        "Write the question a researcher would search for to find this text. "
        "Reply with the question only."
    ),
)
"""Doc2query-style query generation (Nogueira et al., "Document Expansion by Query Prediction",
2019; the instruction-prompted form of InPars, Bonifacio et al., SIGIR 2022)."""

NEGATIVE = PromptTemplate(
    name="negative",
    version="negative-v1",
    system="You write short encyclopedic passages. Answer with the passage only.",
    user=(
        "Search query: $query\n\n"
        "A passage that answers it:\n$positive\n\n"
        "Write a different passage of two or three sentences on the same topic, using the same "
        "key terms, that does NOT answer the query. Reply with the passage only."
    ),
)
"""Corpus-free hard negatives: a passage that looks relevant to the query but does not answer it
("Don't Retrieve, Generate: Prompting LLMs for Synthetic Training Data in Dense Retrieval",
Sinha, 2025)."""


NEGATIVE_QUERY_ONLY = PromptTemplate(
    name="negative-query-only",
    version="negative-query-only-v1",
    system="You write short encyclopedic passages. Answer with the passage only.",
    user=(
        "Search query: $query\n\n"
        "Write a passage of two or three sentences on the topic of this query, using its key "
        "terms, that looks relevant but does NOT answer it. Reply with the passage only."
    ),
)
"""The paper's corpus-free negative, written from the query alone (Sinha, 2025, first version);
:data:`NEGATIVE` is its later variant, which also shows the LLM the positive."""

NegativeVariant = Literal["query+positive", "query-only"]
NEGATIVE_VARIANTS: dict[NegativeVariant, PromptTemplate] = {
    "query+positive": NEGATIVE,
    "query-only": NEGATIVE_QUERY_ONLY,
}


def query_template(path: Path | None = None) -> PromptTemplate:
    template = load_template(path) if path is not None else DOC2QUERY
    template.check_fields(QUERY_FIELDS, frozenset({"passage"}))
    return template


def negative_template(
    path: Path | None = None, variant: NegativeVariant = "query+positive"
) -> PromptTemplate:
    """A user's template file, else the built-in prompt of ``variant``."""
    if variant not in NEGATIVE_VARIANTS:
        raise ValueError(f"unknown negative prompt {variant!r}; choose {list(NEGATIVE_VARIANTS)}")
    template = load_template(path) if path is not None else NEGATIVE_VARIANTS[variant]
    template.check_fields(NEGATIVE_FIELDS, frozenset({"query"}))
    return template
