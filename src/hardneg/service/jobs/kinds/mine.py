"""The ``mine`` job kind: hard negatives for one split of a corpus (``pipelines.mine``).

Its params are :class:`hardneg.miners.spec.MineSpec`, as ``hardneg mine`` takes them. The
pipeline writes its output folder whole or not at all; every file in it is an artifact
(``mined.jsonl`` is the one paged by ``/results``), and the folder is also offered as
``mined.tar.gz``. Candidate lists (and LLM outputs, for ``llm``) go through the Redis cache.
Model references are the API's (hub id, ``job:<id>``, or a path under the allowed roots); the
``llm`` method uses the server's LLM settings, never an endpoint named in the request.
"""

from __future__ import annotations

from hardneg.miners.spec import MINED_FILE, MineSpec
from hardneg.service.jobs.context import (
    JobContext,
    JobOutcome,
    require_corpus,
    resolve_model_refs,
)

MINED_FOLDER = "mined"
MODEL_FIELDS = ("model", "cross_encoder")


def run(spec: MineSpec, context: JobContext) -> JobOutcome:
    from hardneg.service.pipelines.mine import run_mining

    corpus = require_corpus(context)
    settings = context.settings
    spec = resolve_model_refs(spec, MODEL_FIELDS, settings)
    spec = spec.model_copy(update={"backend": settings.llm_config()})
    folder = context.output_dir / MINED_FOLDER
    result = run_mining(spec, str(corpus.path), context.pipeline(folder))
    artifacts = {path.name: path for path in result.files.values()}
    artifacts[MINED_FOLDER] = folder  # published last, as mined.tar.gz
    return JobOutcome(
        stats=dict(result.stats) | {"method": spec.method, "seconds": dict(result.seconds)},
        artifacts=artifacts,
        results=MINED_FILE,
    )
