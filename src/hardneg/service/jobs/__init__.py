"""Jobs on RQ + Redis: records, submission, the runner that workers execute, and recovery.

The job record in Redis (``<prefix>:job:<id>``) is the source of truth the API reads; RQ only
carries ``(job id, attempt)`` to a worker.
"""

from __future__ import annotations
