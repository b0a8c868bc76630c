"""LLM-made training data: queries generated from passages, and corpus-free hard negatives.

Backends implement the small :class:`hardneg.miners.llm.client.LLMClient` protocol: an
OpenAI-compatible HTTP endpoint (``openai_client``) or an in-process GGUF model
(``llama_cpp_client``). Every output is cached under a key that includes the model fingerprint,
the prompt version and the sampling parameters (``generation``).
"""

from __future__ import annotations
