"""One way of finding or making hard negatives per module, plus filters and output writers.

Miners import only ``hardneg.core``; they never import trainers or the service.
"""

from __future__ import annotations
