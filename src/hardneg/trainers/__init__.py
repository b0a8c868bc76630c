"""Training and evaluating retrievers. Trainers read negatives files; they never import miners.

- ``star``, ``adore``, ``baseline``, ``reranker``: one ``train_*(config, workspace, progress)``
  each, returning the run summary and writing a model folder (``output``).
- ``config``: dataclass arguments, flags or one JSON/YAML file; ``launch``: torchrun driver.
- ``losses``: STAR, ADORE, MultipleNegativesRankingLoss and listwise reranker losses.
- ``data`` (seeded batches from a mined file), ``loop`` (the shared training loop),
  ``checkpoint``, ``distributed``, ``encoding``, ``optim``, ``evaluation``.
"""

from __future__ import annotations
