"""hardneg: hard negatives, STAR/ADORE training and BEIR evaluation for dense retrievers."""

from __future__ import annotations

__version__ = "0.1.0"
