"""Light, pure building blocks: BEIR IO, encoders, indexes, metrics, the cache protocol.

``core`` imports nothing else from hardneg.
"""

from __future__ import annotations
