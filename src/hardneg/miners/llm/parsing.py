"""Defensive parsing of what small LLMs write, and a tally of what was dropped and why.

Tiny models number their answers, wrap them in quotes or markdown, prefix them with "Query:",
open with "Here is a question:", refuse, copy the passage, or stop mid-sentence. The cleaners
strip the decoration and either return a usable text or the reason it is not one.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from hardneg.core.negatives import GENERATED_PREFIX
from hardneg.miners.llm.client import LLMError

# drop reasons (stable strings: they appear in reports)
LLM_ERROR = "llm_error"
EMPTY = "empty"
REFUSAL = "refusal"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
META = "meta"  # about the passage or the prompt instead of the topic ("what is this text about?")
REPETITIVE = "repetitive"  # degenerate loops: "1.1.1.1", "miRNA - miRNA - miRNA"
ECHOES_SOURCE = "echoes_source"  # a query copied from its passage
ECHOES_QUERY = "echoes_query"  # a negative that only repeats the query
DUPLICATE = "duplicate"
ROUND_TRIP = "round_trip"
NEAR_DUPLICATE_POSITIVE = "near_duplicate_positive"
ANSWERS_QUERY = "answers_query"

_FENCE = re.compile(r"```[a-zA-Z]*")
_MARKUP = re.compile(r"\*\*|__|`")
_BULLET = re.compile(r"^(?:\(?\d{1,2}[.):\]]|\(?[a-zA-Z][.)]|[-*•#>]+)\s*")
_LABEL = re.compile(
    r"^(?:(?:generated|search|example|new|negative|hard|sample|your|the|original|different)\s+)*"
    r"(?:query|question|q|a|search|passage|text|answer|output|response|sentence)"
    r"\s*\d*\s*[:：\-–]\s*",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(
    r"^(?:sure|okay|ok|certainly|here(?:'s| is| are)|below is|this is)\b.*[:!.]$",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"^(?:i'?m sorry|sorry|i cannot|i can'?t|i am unable|i'm unable|as an ai|i apologi[sz]e)",
    re.IGNORECASE,
)
_META = re.compile(
    r"\b(?:(?:this|the|given|following|above) (?:passage|text|abstract|article|document|excerpt)"
    r"|(?:this|given|following|above) (?:study|paper|question)"
    r"|search engine|search query|the question|your answer)\b",
    re.IGNORECASE,
)
_LEAD_IN = re.compile(
    r"^[^:?]{0,80}\b(?:write|query|question|answer|ask|search|type)\w*\b[^:?]{0,40}:\s+(?=\S)",
    re.IGNORECASE,
)
_PERSONA = re.compile(  # "A researcher would search for ...", echoing the prompt's persona
    r"^(?:(?:a|the|one)\s+)?(?:researcher|scientist|person|user|reader)s?\s+"
    r"(?:would|might|could|can|may|will|should)\s+(?:search|look|ask)(?:\s+for)?\s*:?\s*",
    re.IGNORECASE,
)
_META_WORDS = frozenset(
    [
        "text",
        "passage",
        "abstract",
        "article",
        "document",
        "excerpt",
        "study",
        "paper",
        "question",
        "query",
        "search",
        "engine",
        "answer",
        "researcher",
        "scientist",
        "person",
        "write",
        "find",
        "information",
        "about",
    ]
)
_QUOTES = "\"'“”‘’«»`"
_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def normalize(text: str) -> str:
    """Lower-cased words joined by single spaces (for duplicate and echo checks)."""
    return " ".join(words(text))


def generated_id(text: str) -> str:
    """``gen:<hash>`` of the normalised text: the same text always gets the same id."""
    return GENERATED_PREFIX + hashlib.sha256(normalize(text).encode()).hexdigest()[:16]


def token_jaccard(a: str, b: str) -> float:
    left, right = set(words(a)), set(words(b))
    if not left or not right:
        return 0.0
    return len(left & right) / len(left | right)


def _strip_decoration(line: str) -> str:
    previous = None
    line = line.strip()
    while line != previous:  # labels, bullets and quotes can nest: '1. Query: "..."'
        previous = line
        line = _BULLET.sub("", line, count=1).strip()
        line = _LABEL.sub("", line, count=1).strip()
        line = _LEAD_IN.sub("", line, count=1).strip()
        line = _PERSONA.sub("", line, count=1).strip()
        line = line.strip(_QUOTES).strip()
    return line


def _content_lines(raw: str) -> list[str]:
    text = _MARKUP.sub("", _FENCE.sub("", raw))
    lines = [_strip_decoration(line) for line in text.splitlines()]
    return [line for line in lines if line and not _PREAMBLE.match(line) and not line.endswith(":")]


_AFTER_QUESTION = re.compile(r"(?<=\?)\s+(?=\S)")


def split_questions(raw: str, limit: int) -> list[str]:
    """The first ``limit`` questions of a generation asked for a list, one per line: its content
    lines (bullets, labels and preambles stripped), a line holding several questions cut after
    each ``?``. ``[raw]`` when there are none, so the caller's cleaning names why."""
    pieces = [
        piece
        for line in _content_lines(raw)
        for piece in _AFTER_QUESTION.split(line)
        if piece.strip()
    ]
    return pieces[:limit] or [raw]


def whole(raw: str) -> list[str]:
    """A generation taken as one text (the split of a generation asked for one item)."""
    return [raw]


def is_repetitive(text: str, min_unique: float = 0.5) -> bool:
    """Mostly the same few tokens again and again, or barely any letters."""
    tokens = words(text)
    if len(tokens) < 6:
        return False
    letters = sum(c.isalpha() for c in text)
    return len(set(tokens)) / len(tokens) < min_unique or letters < 0.5 * len(text.replace(" ", ""))


def _topical_words(query: str, passage: str) -> int:
    """Content words of ``query`` (not prompt vocabulary) that also occur in ``passage``."""
    source = set(words(passage))
    return sum(1 for w in set(words(query)) if len(w) >= 4 and w not in _META_WORDS and w in source)


@dataclass(frozen=True)
class Parsed:
    text: str | None
    reason: str | None = None  # set when text is None


@dataclass(frozen=True)
class QueryLimits:
    min_words: int = 3
    max_words: int = 32
    echo_min_words: int = 6  # a query this long found verbatim in its passage is an echo
    echo_run_words: int = 8  # so is one that copies this many consecutive passage words


def shares_run(text: str, source: str, length: int) -> bool:
    """Whether ``text`` and ``source`` share ``length`` consecutive words."""
    text_words, source_words = words(text), words(source)
    if len(text_words) < length:
        return False
    runs = {tuple(source_words[i : i + length]) for i in range(len(source_words) - length + 1)}
    return any(
        tuple(text_words[i : i + length]) in runs for i in range(len(text_words) - length + 1)
    )


def _unusable(text: str) -> str | None:
    """Why a generated query or passage is dropped whatever it is about: a refusal, or text
    that repeats itself."""
    if _REFUSAL.match(text):
        return REFUSAL
    return REPETITIVE if is_repetitive(text) else None


def _word_count(count: int, low: int, high: int) -> str | None:
    return TOO_SHORT if count < low else TOO_LONG if count > high else None


def clean_query(raw: str, passage: str, limits: QueryLimits | None = None) -> Parsed:
    """The first usable line of ``raw`` as a query, or why there is none."""
    limits = limits or QueryLimits()
    lines = _content_lines(raw)
    if not lines:
        return Parsed(None, EMPTY)
    query = " ".join(lines[0].split())
    reason = _unusable(query)
    if reason is None and _META.search(query) and _topical_words(query, passage) < 2:
        reason = META
    count = len(words(query))
    reason = reason or _word_count(count, limits.min_words, limits.max_words)
    if reason is not None:
        return Parsed(None, reason)
    if count >= limits.echo_min_words and normalize(query) in normalize(passage):
        return Parsed(None, ECHOES_SOURCE)
    if shares_run(query, passage, limits.echo_run_words):
        return Parsed(None, ECHOES_SOURCE)
    return Parsed(query)


@dataclass(frozen=True)
class PassageLimits:
    min_words: int = 12
    max_words: int = 300


def _trim_unfinished(text: str, min_words: int) -> str:
    """Cut a passage that stopped mid-sentence (token limit) back to its last full sentence."""
    if text.endswith((".", "!", "?", '"', ")")):
        return text
    cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
    if cut > 0 and len(words(text[: cut + 1])) >= min_words:
        return text[: cut + 1]
    return text


def clean_passage(raw: str, query: str, limits: PassageLimits | None = None) -> Parsed:
    """``raw`` as one passage (lines joined), or why it is not usable."""
    limits = limits or PassageLimits()
    lines = _content_lines(raw)
    if not lines:
        return Parsed(None, EMPTY)
    passage = _trim_unfinished(" ".join(" ".join(lines).split()), limits.min_words)
    count = len(words(passage))
    reason = _unusable(passage)
    normalized, query_words = normalize(passage), normalize(query)
    echoes = normalized == query_words or (
        query_words in normalized and count <= len(words(query)) + 3
    )
    if reason is None and echoes:
        reason = ECHOES_QUERY
    reason = reason or _word_count(count, limits.min_words, limits.max_words)
    return Parsed(passage) if reason is None else Parsed(None, reason)


@dataclass
class DropReport:
    """Counts of kept and dropped generations, by reason, with a few examples of each."""

    max_examples: int = 3
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def keep(self, count: int = 1) -> None:
        self.kept += count

    def drop(self, reason: str, example: str = "") -> None:
        self.dropped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if example and len(shown) < self.max_examples:
            shown.append(example[:300])

    @property
    def total(self) -> int:
        return self.kept + sum(self.dropped.values())

    def to_json(self) -> dict[str, object]:
        total = self.total
        return {
            "total": total,
            "kept": self.kept,
            "dropped": dict(self.dropped.most_common()),
            "dropped_fraction": {
                reason: count / total for reason, count in self.dropped.most_common()
            },
            "examples": self.examples,
        }


def usable_outputs(
    outputs: Sequence[str | LLMError],
    per_source: int,
    clean: Callable[[int, str], Parsed],
    skip_failures: bool,
    report: DropReport,
    split: Callable[[str], list[str]] = whole,
) -> Iterator[tuple[int, str]]:
    """``(source, text)`` of every usable generation, in order; output ``i`` was written for
    source ``i // per_source``, ``split`` into items (one, unless a list was asked for), each
    cleaned by ``clean(source, item)``. A failed call is raised (or, with ``skip_failures``,
    counted); unusable items and a source's repeats are counted in ``report`` with their reason
    and passed over."""
    seen: set[tuple[int, str]] = set()
    for index, output in enumerate(outputs):
        source = index // per_source
        if isinstance(output, LLMError):
            if not skip_failures:
                raise output
            report.drop(LLM_ERROR, str(output))
            continue
        for item in split(output):
            parsed = clean(source, item)
            if parsed.text is None:
                report.drop(parsed.reason or "unknown", item)
                continue
            key = (source, normalize(parsed.text))
            if key in seen:
                report.drop(DUPLICATE, parsed.text)
                continue
            seen.add(key)
            yield source, parsed.text
