"""A small LRU with a time limit for the action page's viewer-independent part (the loaded action,
its ledger verified, the rendered history). Keys carry the action's version and last ledger seq,
so any change shows at once; the time limit bounds how long a verification is trusted (an entry
edited behind Countersign's back shows as broken within it; `countersign audit verify` always sees)."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
TRUST_FOR = timedelta(seconds=60)


class PageCache(Generic[K, V]):
    def __init__(self, size: int = 256, ttl: timedelta = TRUST_FOR) -> None:
        self.size, self.ttl = size, ttl
        self._items: OrderedDict[K, tuple[datetime, V]] = OrderedDict()

    def get(self, key: K, now: datetime) -> V | None:
        found = self._items.get(key)
        if found is None or now - found[0] > self.ttl or now < found[0]:
            self._items.pop(key, None)
            return None
        self._items.move_to_end(key)
        return found[1]

    def put(self, key: K, value: V, now: datetime) -> None:
        self._items[key] = (now, value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
