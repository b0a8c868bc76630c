"""The retrievers' parameters as spec sections (no numpy, faiss or torch): BM25's and the dense
index's. ``hardneg.core.bm25`` and ``hardneg.core.dense`` build indexes from them; a dense
search takes its index with the rest of its settings as one :class:`DenseSearch`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from hardneg.core.spec import Section

BM25Method = Literal["lucene", "robertson", "atire", "bm25l", "bm25+"]
IndexKind = Literal["flat", "ivf", "hnsw"]


class BM25Params(Section):
    """Defaults are bm25s's (Lucene scoring, k1=1.5, b=0.75, Snowball stemming, stopwords)."""

    flat_prefix = "bm25_"
    flat_names: ClassVar[dict[str, str]] = {"k1": "k1", "b": "b"}

    k1: float = Field(1.5, ge=0, description="BM25 k1")
    b: float = Field(0.75, ge=0, le=1, description="BM25 b")
    method: BM25Method = Field("lucene", description="BM25 variant")
    stemmer: str | None = Field("english", description="Snowball stemmer (null: none)")
    stopwords: str | None = Field("en", description="stopword list (null: none)")


class DenseIndexConfig(Section):
    """A FAISS index over corpus embeddings; ``"hnsw"`` alone stands for ``{"kind": "hnsw"}``."""

    flat_prefix = "index_"
    flat_names: ClassVar[dict[str, str]] = {"kind": "index"}

    kind: IndexKind = Field("flat", description="FAISS index kind (dense)")
    nlist: int = Field(1024, ge=1, description="IVF cells (capped at rows // 39)")
    nprobe: int = Field(32, ge=1, description="IVF cells visited per query")
    hnsw_m: int = Field(32, ge=1, description="HNSW neighbours per node")
    ef_search: int = Field(256, ge=1, description="HNSW search breadth")
    use_gpu: bool | None = Field(None, description="null: use GPUs when FAISS sees any")

    @model_validator(mode="before")
    @classmethod
    def _kind_alone(cls, data: Any) -> Any:
        return {"kind": data} if isinstance(data, str) else data

    def structure(self) -> dict[str, object]:
        """The build-time knobs; search-time ones (nprobe, efSearch, GPU use) may vary freely."""
        return {"kind": self.kind, "nlist": self.nlist, "hnsw_m": self.hnsw_m}


@dataclass(frozen=True)
class DenseSearch:
    """How a bi-encoder searches a corpus, besides the model: the FAISS index, the texts put
    before every query and every document, and the encoding batch size. Miners, evaluators and
    trainers take it whole (from a spec's fields) instead of one parameter each."""

    index: DenseIndexConfig = field(default_factory=DenseIndexConfig)
    query_prompt: str = ""
    corpus_prompt: str = ""
    batch_size: int = 64
