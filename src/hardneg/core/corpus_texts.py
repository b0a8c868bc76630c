"""Where a :class:`hardneg.core.beir.Corpus` keeps its titles and texts.

- :class:`MemoryTexts`: two tuples (a corpus built from documents, or read from a gzip file,
  which cannot be read back at an offset).
- :class:`FileTexts`: nothing but each document's line (byte offset and length) in an
  uncompressed ``corpus.jsonl``, 12 bytes a document; a document is parsed again from its line
  when asked for (``os.pread``: no shared file position, so threads and forked processes can
  read at once), a run of documents from one contiguous read. The file must not change while
  the corpus is in use: its size and modification time are checked when it is (re)opened, and
  the open descriptor keeps the loaded file readable even if it is replaced by a rename.
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, overload

import numpy as np
import numpy.typing as npt

TitleText = tuple[str, str]


class Texts(Protocol):
    def __len__(self) -> int: ...

    def get(self, position: int) -> TitleText: ...

    def run(self, start: int, stop: int) -> list[TitleText]:
        """Documents ``[start, stop)``, in order."""
        ...


@dataclass(frozen=True)
class MemoryTexts:
    titles: tuple[str, ...]
    texts: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def get(self, position: int) -> TitleText:
        return self.titles[position], self.texts[position]

    def run(self, start: int, stop: int) -> list[TitleText]:
        return list(zip(self.titles[start:stop], self.texts[start:stop], strict=True))


def _title_text(line: bytes) -> TitleText:
    """A line the loader already checked: its title and text ("" when absent or null)."""
    obj = json.loads(line.decode("utf-8"))
    return obj.get("title") or "", obj.get("text") or ""


class FileChangedError(RuntimeError):
    """The corpus file is not the one that was loaded (its size or modification time differ)."""


class FileTexts:
    """Documents read back from their lines of an uncompressed JSONL file."""

    def __init__(self, path: Path, starts: npt.NDArray[np.int64], lengths: npt.NDArray[np.uint32]):
        self.path = path
        self.starts = starts  # (n_docs,) byte offset of each document's line
        self.lengths = lengths  # (n_docs,) bytes of that line
        stat = path.stat()
        self._identity = (stat.st_size, stat.st_mtime_ns)
        self._fd = self._open()

    def _open(self) -> int:
        fd = os.open(self.path, os.O_RDONLY)
        stat = os.fstat(fd)
        if (stat.st_size, stat.st_mtime_ns) != self._identity:
            os.close(fd)
            raise FileChangedError(f"{self.path} changed since the corpus was loaded")
        weakref.finalize(self, os.close, fd)
        return fd

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "_fd"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self._fd = self._open()

    def __len__(self) -> int:
        return len(self.starts)

    def get(self, position: int) -> TitleText:
        length = int(self.lengths[position])
        return _title_text(os.pread(self._fd, length, int(self.starts[position])))

    def run(self, start: int, stop: int) -> list[TitleText]:
        if stop <= start:
            return []
        first = int(self.starts[start])
        block = os.pread(
            self._fd, int(self.starts[stop - 1]) + int(self.lengths[stop - 1]) - first, first
        )
        at = (self.starts[start:stop] - first).tolist()
        ends = (self.starts[start:stop] - first + self.lengths[start:stop]).tolist()
        return [_title_text(block[a:b]) for a, b in zip(at, ends, strict=True)]


class Column(Sequence[str]):
    """A read-only view of one column (0: titles, 1: texts) of a corpus's documents."""

    def __init__(self, texts: Texts, column: int) -> None:
        self._texts = texts
        self._column = column

    def __len__(self) -> int:
        return len(self._texts)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            rows = self._texts.run(start, stop) if step == 1 else None
            if rows is None:
                return [self._texts.get(i)[self._column] for i in range(start, stop, step)]
            return [row[self._column] for row in rows]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._texts.get(index)[self._column]
