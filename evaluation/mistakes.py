"""The N most confident wrong predictions, kept while streaming with bounded memory.

A min-heap of at most ``capacity`` entries, ordered by confidence: a new mistake enters only
when it is more confident than the least confident one kept. Each entry owns a *copy* of its
image (a view would keep the whole batch alive), so at most ``capacity`` images are held however
large the split is.
"""

from __future__ import annotations

import heapq
import itertools

import numpy as np


class WorstMistakes:
    def __init__(self, capacity: int):
        self.capacity = max(int(capacity), 0)
        self._heap: list[tuple[float, int, dict]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def would_keep(self, confidence: float) -> bool:
        if self.capacity == 0:
            return False
        return len(self._heap) < self.capacity or confidence > self._heap[0][0]

    def offer(self, confidence: float, entry: dict, image: np.ndarray) -> None:
        """Keep ``entry`` (plus a copy of ``image`` under ``"image"``) if it ranks among the
        worst; call :meth:`would_keep` first to avoid building entries that are dropped."""
        if not self.would_keep(confidence):
            return
        item = (float(confidence), next(self._order), {**entry, "image": np.array(image)})
        if len(self._heap) < self.capacity:
            heapq.heappush(self._heap, item)
        else:
            heapq.heapreplace(self._heap, item)

    def worst_first(self) -> list[dict]:
        return [entry for _, _, entry in sorted(self._heap, key=lambda t: (-t[0], t[1]))]
