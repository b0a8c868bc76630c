"""Many sequences through one llama.cpp context at once (continuous batching, in process).

llama-cpp-python's ``Llama`` decodes one sequence at a time. Here a second context over the same
loaded weights holds ``concurrency`` sequences, each with its own KV-cache stream and its own
sampler chain; every step puts the next token of each running sequence (and prompt chunks of
newly admitted ones) into one ``llama_decode``, so the weights are read once per step for all of
them. A finished sequence frees its slot for the next request at once.

Each request's prompt, stop strings and sampler settings are taken from ``create_chat_completion``
itself (its chat handler is run up to the point where it would start generating), and a sequence
stops the way ``Llama._create_completion`` stops it (end-of-generation token, a stop string,
``max_tokens`` cut to the context), so a batched output is the sequential one up to the float
rounding of a several-row matrix product (62 of 64 texts equal at concurrency 8, 57 of 64 at 16:
bench/results/performance.json, llm).

Failures stay with their request: a prompt that does not fit, a decode error (the step is retried
one sequence at a time, so only the sequence that fails is lost) or a broken output each give that
request an ``LLMError``. The progress callback is called once per finished request; when it raises
(a cancelled job), every running sequence is dropped and the context is left empty.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hardneg.core.progress import Progress, no_progress
from hardneg.miners.llm.client import LLMError, LLMRequest

logger = logging.getLogger(__name__)

STAGE = "llm: generating"
_UTF8_LEADS = ((2, 0xC0), (3, 0xE0), (4, 0xF0))  # (sequence length, lead-byte pattern)


class _Captured(Exception):  # noqa: N818 - a control-flow signal, not an error
    def __init__(self, arguments: dict[str, Any]) -> None:
        super().__init__("captured")
        self.arguments = arguments


class _CompletionCapture:
    """Stands in for the ``Llama`` inside its own chat handler: everything is the real model's,
    except that ``create_completion`` hands back its arguments instead of generating."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def create_completion(self, **arguments: Any) -> None:
        raise _Captured(arguments)


@dataclass(frozen=True)
class PreparedPrompt:
    """What ``create_chat_completion`` would generate from: tokens, stops, sampler settings."""

    tokens: tuple[int, ...]
    stop: tuple[bytes, ...]
    max_tokens: int
    sampling: dict[str, Any]


_SAMPLING_KEYS = (
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "seed",
    "repeat_penalty",
    "frequency_penalty",
    "presence_penalty",
)
_UNSUPPORTED = ("grammar", "logits_processor", "logit_bias", "logprobs")


def prepare_prompt(llm: Any, request: LLMRequest) -> PreparedPrompt:
    """The request as the sequential path would feed it to the model; ``LLMError`` when it cannot
    be generated (prompt longer than the context, a template error)."""
    import llama_cpp

    params = request.params
    try:
        llama_cpp.Llama.create_chat_completion(
            _CompletionCapture(llm),  # type: ignore[arg-type]
            messages=[m.to_json() for m in request.messages],  # type: ignore[misc]
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=list(params.stop),
        )
    except _Captured as captured:
        arguments = captured.arguments
    except (ValueError, RuntimeError, KeyError) as exc:
        raise LLMError(f"chat template failed ({exc})") from None
    else:  # pragma: no cover - only if llama-cpp-python stops calling create_completion
        raise LLMError("the chat handler generated without create_completion")
    if mirostat := arguments.get("mirostat_mode"):
        raise LLMError(f"mirostat_mode={mirostat} is not supported by batched generation")
    for name in _UNSUPPORTED:
        if arguments.get(name):
            raise LLMError(f"{name} is not supported by batched generation")
    tokens = tuple(int(t) for t in arguments["prompt"])
    n_ctx = llm.n_ctx()
    if len(tokens) >= n_ctx:  # the same check and message as Llama._create_completion
        raise LLMError(
            f"generation failed (Requested tokens ({len(tokens)}) exceed context window of {n_ctx})"
        )
    max_tokens = min(int(arguments["max_tokens"]), n_ctx - len(tokens))
    stop = tuple(s.encode("utf-8") for s in arguments.get("stop") or [])
    sampling = {key: arguments.get(key) for key in _SAMPLING_KEYS}
    return PreparedPrompt(tokens, stop, max_tokens, sampling)


def _sampler_chain(llm: Any, sampling: dict[str, Any]) -> Any:
    """The chain ``Llama._init_sampler`` builds for these settings (mirostat excluded)."""
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

    def add(sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(chain, sampler)

    add(
        llama_cpp.llama_sampler_init_penalties(
            llm.n_vocab(),
            llm.last_n_tokens_size,
            sampling["repeat_penalty"],
            sampling["frequency_penalty"],
            sampling["presence_penalty"],
        )
    )
    seed = sampling["seed"]
    seed = llama_cpp.LLAMA_DEFAULT_SEED if seed is None else int(seed) & 0xFFFFFFFF
    temperature = sampling["temperature"]
    if temperature == 0.0:
        add(llama_cpp.llama_sampler_init_greedy())
        return chain
    if temperature > 0.0:
        add(llama_cpp.llama_sampler_init_top_k(sampling["top_k"]))
        add(llama_cpp.llama_sampler_init_typical(sampling["typical_p"], 1))
        add(llama_cpp.llama_sampler_init_top_p(sampling["top_p"], 1))
        add(llama_cpp.llama_sampler_init_min_p(sampling["min_p"], 1))
        add(llama_cpp.llama_sampler_init_temp(temperature))
    add(llama_cpp.llama_sampler_init_dist(seed))
    return chain


@dataclass
class _Sequence:
    request: int  # index into the requests
    slot: int  # llama.cpp seq_id
    prompt: PreparedPrompt
    sampler: Any
    fed: int = 0  # prompt tokens already decoded
    completion: list[int] = field(default_factory=list)
    pending: int | None = None  # sampled, not yet decoded
    multibyte_fix: int = 0

    @property
    def position(self) -> int:
        return self.fed + len(self.completion) - (1 if self.pending is not None else 0)


@dataclass(frozen=True)
class _Part:
    """One sequence's tokens in a decode step; ``wants_logits``: sample after the last one."""

    sequence: _Sequence
    tokens: tuple[int, ...]
    start: int  # position of the first token
    wants_logits: bool


class BatchedLlama:
    """A context of ``concurrency`` sequences over an open ``llama_cpp.Llama``'s weights.

    Not thread-safe (the caller serialises); ``close`` before the ``Llama`` is closed.
    """

    def __init__(self, llm: Any, concurrency: int) -> None:
        import llama_cpp

        if concurrency < 2:
            raise ValueError(f"batched generation needs concurrency >= 2, got {concurrency}")
        self._llm = llm
        self.concurrency = concurrency
        # the sequential context's own settings (threads, attention kernel, KV types, rope), so
        # the same computation runs; only the room for several sequences differs
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx = llm.n_ctx() * concurrency  # each sequence gets the sequential window
        params.n_seq_max = concurrency
        params.kv_unified = False  # one KV stream per sequence: attention spans its own only
        # every step is a batch (a token per running sequence, or prompt chunks), so it gets the
        # prompt batches' thread count (llama-cpp-python's default: all cores) for all of them.
        # On the quiet 2-core box, 2 threads against 1: 1.84x the outputs per second, the same 32
        # outputs (`python -m bench.llm_threads`: concurrency 8, 32 quick-profile prompts, 51.8 s
        # vs 28.2 s); under heavy load a second spinning thread is slower instead
        # (bench/performance_llm.py), so n_threads stays a setting.
        params.n_threads = params.n_threads_batch
        ctx = llama_cpp.llama_init_from_model(llm.model, params)
        if ctx is None:
            raise LLMError(f"llama.cpp could not create a context for {concurrency} sequences")
        self._ctx = ctx
        self._memory = llama_cpp.llama_get_memory(ctx)
        self._n_batch = llm.n_batch
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._closed = False

    def close(self) -> None:
        import llama_cpp

        if self._closed:
            return
        self._closed = True
        llama_cpp.llama_batch_free(self._batch)
        llama_cpp.llama_free(self._ctx)

    def generate(
        self, requests: Sequence[LLMRequest], progress: Progress = no_progress
    ) -> list[str | LLMError]:
        """One text or ``LLMError`` per request, in request order."""
        results: list[str | LLMError | None] = [None] * len(requests)
        total = len(requests)
        done = 0
        progress(0, total, STAGE)
        waiting: deque[tuple[int, PreparedPrompt]] = deque()
        for index, request in enumerate(requests):
            try:
                waiting.append((index, prepare_prompt(self._llm, request)))
            except LLMError as exc:
                results[index] = LLMError(f"{self._name}: {exc}")
        for index in range(total):
            if results[index] is not None:
                done += 1
                progress(done, total, STAGE)
        running: list[_Sequence] = []
        free = list(range(self.concurrency - 1, -1, -1))
        try:
            while waiting or running:
                while waiting and free:
                    index, prompt = waiting.popleft()
                    sampler = _sampler_chain(self._llm, prompt.sampling)
                    running.append(_Sequence(index, free.pop(), prompt, sampler))
                for sequence, outcome in self._step(running):
                    results[sequence.request] = outcome
                    running.remove(sequence)
                    free.append(self._release(sequence))
                    done += 1
                    progress(done, total, STAGE)
        finally:
            for sequence in running:  # cancelled, or an unexpected error
                self._release(sequence)
        return [r if r is not None else LLMError(f"{self._name}: no output") for r in results]

    @property
    def _name(self) -> str:
        return str(getattr(self._llm, "model_path", "llama.cpp")).rsplit("/", 1)[-1]

    def _release(self, sequence: _Sequence) -> int:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self._memory, sequence.slot, -1, -1)
        llama_cpp.llama_sampler_free(sequence.sampler)
        return sequence.slot

    def _plan(self, running: Sequence[_Sequence]) -> list[_Part]:
        """This step's tokens: each generating sequence's last sample, then prompt chunks of the
        admitted ones in admission order, up to ``n_batch`` tokens."""
        parts: list[_Part] = []
        budget = self._n_batch
        for sequence in running:
            if sequence.pending is not None:
                parts.append(_Part(sequence, (sequence.pending,), sequence.position, True))
                budget -= 1
        for sequence in running:
            left = len(sequence.prompt.tokens) - sequence.fed
            if sequence.pending is not None or left == 0 or budget == 0:
                continue
            take = min(left, budget)
            chunk = sequence.prompt.tokens[sequence.fed : sequence.fed + take]
            parts.append(_Part(sequence, chunk, sequence.fed, take == left))
            budget -= take
        return parts

    def _step(self, running: Sequence[_Sequence]) -> list[tuple[_Sequence, str | LLMError]]:
        """Decode one step and sample; the sequences that finished (or failed) with their result."""
        parts = self._plan(running)
        finished: list[tuple[_Sequence, str | LLMError]] = []
        status = self._decode(parts)
        if status == 0:
            row = 0
            for part in parts:
                row += len(part.tokens)
                outcome = self._advance(part, row - 1)
                if outcome is not None:
                    finished.append((part.sequence, outcome))
            return finished
        logger.warning(
            "llama_decode returned %d for %d sequences; retrying one by one", status, len(parts)
        )
        for part in parts:  # roll back what a failed decode may have kept, then one at a time
            self._forget(part)
        for part in parts:
            status = self._decode([part])
            if status != 0:
                self._forget(part)
                error = LLMError(
                    f"{self._name}: generation failed (llama_decode returned {status})"
                )
                finished.append((part.sequence, error))
                continue
            outcome = self._advance(part, len(part.tokens) - 1)
            if outcome is not None:
                finished.append((part.sequence, outcome))
        return finished

    def _forget(self, part: _Part) -> None:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self._memory, part.sequence.slot, part.start, -1)

    def _decode(self, parts: Sequence[_Part]) -> int:
        import llama_cpp

        batch = self._batch
        row = 0
        for part in parts:
            for offset, token in enumerate(part.tokens):
                batch.token[row] = token
                batch.pos[row] = part.start + offset
                batch.n_seq_id[row] = 1
                batch.seq_id[row][0] = part.sequence.slot
                last = offset == len(part.tokens) - 1
                batch.logits[row] = 1 if (last and part.wants_logits) else 0
                row += 1
        batch.n_tokens = row
        return int(llama_cpp.llama_decode(self._ctx, batch))

    def _advance(self, part: _Part, row: int) -> str | LLMError | None:
        """Book the decoded tokens; sample when the part asked for logits. The output when the
        sequence is done, else None."""
        import llama_cpp

        sequence = part.sequence
        if sequence.pending is not None:
            sequence.pending = None
        else:
            sequence.fed += len(part.tokens)
        if not part.wants_logits:
            return None
        token = int(llama_cpp.llama_sampler_sample(sequence.sampler, self._ctx, row))
        try:
            return self._accept(sequence, token)
        except (UnicodeError, ValueError, RuntimeError) as exc:
            return LLMError(f"{self._name}: generation failed ({exc})")

    def _accept(self, sequence: _Sequence, token: int) -> str | None:
        """``Llama._create_completion``'s stopping rules for one sampled token."""
        import llama_cpp

        llm = self._llm
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            return _text(llm.detokenize(sequence.completion))
        sequence.completion.append(token)
        text = llm.detokenize(sequence.completion)
        for k, byte in enumerate(text[-3:]):  # an unfinished UTF-8 character: keep going
            k = 3 - k
            for length, pattern in _UTF8_LEADS:
                if length > k and pattern & byte == pattern:
                    sequence.multibyte_fix = length - k
        if sequence.multibyte_fix > 0:
            sequence.multibyte_fix -= 1
            sequence.pending = token
            return None
        stops = [s for s in sequence.prompt.stop if s in text]
        if stops:
            return _text(text[: text.index(stops[0])])
        if len(sequence.completion) >= sequence.prompt.max_tokens:
            return _text(text)
        sequence.pending = token
        return None


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="ignore")
