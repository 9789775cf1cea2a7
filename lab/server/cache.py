"""The in-memory resource cache for reads by id, kept coherent across nodes through ZooKeeper.

Every write of a resource, on any node, creates and deletes a child of the resource's lock
directory `/cattle/locks/<type>/<id>` (see coord.py). A node filling its cache sets a one-shot
children watch there *before* reading the row, so a write committed after that read fires the
watch (at the latest when the writer releases the lock, after its COMMIT) and drops the entry; a
fill that raced with an invalidation is discarded. Only settled resources (not transitioning,
not removed) are cached, and the whole cache is dropped whenever the ZooKeeper session is not
connected, since watches cannot be trusted then. Cattle had Redis eventing for the same purpose.

Entries are gdapi JSON templates (see gdapi.BASE); their bytes count against the heap model's
cache share, evicting least recently used entries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from .heap import HeapModel

Key = tuple[str, int]
_ENTRY_OVERHEAD = 160  # key tuple, dict slot and bytes header, roughly, in CPython


class ResourceCache:
    def __init__(self, heap: HeapModel) -> None:
        self._heap = heap
        self._lock = threading.Lock()
        self._entries: OrderedDict[Key, bytes] = OrderedDict()
        self._filling: dict[Key, list[int]] = {}  # key -> [fills in flight, invalidated flag]
        self._enabled = False
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> bytes | None:
        with self._lock:
            tpl = self._entries.get(key)
            if tpl is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return tpl

    def begin_fill(self, key: Key) -> None:
        """Call before setting the watch and reading the row."""
        with self._lock:
            slot = self._filling.setdefault(key, [0, 0])
            slot[0] += 1

    def finish_fill(self, key: Key, template: bytes | None) -> None:
        """Store `template` (None: nothing to store) unless invalidated since begin_fill."""
        with self._lock:
            slot = self._filling.get(key)
            stale = slot is None or slot[1] == 1
            if slot is not None:
                slot[0] -= 1
                if slot[0] == 0:
                    del self._filling[key]
            if template is None or stale or not self._enabled:
                return
            self._store(key, template)

    def _store(self, key: Key, template: bytes) -> None:
        size = len(template) + _ENTRY_OVERHEAD
        if size > self._heap.cache_limit:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._heap.cache_changed(-(len(old) + _ENTRY_OVERHEAD))
        need = self._heap.cache_room(size)
        while need > 0 and self._entries:
            _, victim = self._entries.popitem(last=False)
            freed = len(victim) + _ENTRY_OVERHEAD
            self._heap.cache_changed(-freed)
            self.evictions += 1
            need -= freed
        self._entries[key] = template
        self._heap.cache_changed(size)

    def invalidate(self, key: Key) -> None:
        """From any thread (ZooKeeper watch callbacks run on kazoo's thread)."""
        with self._lock:
            slot = self._filling.get(key)
            if slot is not None:
                slot[1] = 1
            old = self._entries.pop(key, None)
            if old is not None:
                self._heap.cache_changed(-(len(old) + _ENTRY_OVERHEAD))

    def set_enabled(self, enabled: bool) -> None:
        """Disabled (and emptied) while the ZooKeeper session is not connected."""
        with self._lock:
            self._enabled = enabled
            if not enabled:
                for slot in self._filling.values():
                    slot[1] = 1
                freed = sum(len(v) + _ENTRY_OVERHEAD for v in self._entries.values())
                self._entries.clear()
                self._heap.cache_changed(-freed)
