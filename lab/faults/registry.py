"""The lab's active faults (`faults.json` in its state directory) and the per-lab file locks, so
that any process, `halab heal` included, sees and heals what another applied."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lab.cluster import state

REGISTRY_FILE = "faults.json"

# Held while rules of a fault change (apply, reapply, heal), so that a reapply never puts back the
# rules of a fault being healed; a file lock, as `halab heal` may run in another process.
RULES_LOCK = "rules.lock"

LOG_FILE = "faults.jsonl"  # every healed fault of the lab, whoever applied it


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path`. Each call opens the file anew, so threads of one process
    exclude each other as other processes do; it is not reentrant."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def rules_lock(lab: str) -> contextlib.AbstractContextManager[None]:
    return _flock(state.lab_dir(lab) / RULES_LOCK)


class Registry:
    """The lab's active faults in `<lab dir>/faults.json`, read and written under an flock so that
    `halab heal` in another process sees what a run applied."""

    def __init__(self, lab: str) -> None:
        self.dir = state.lab_dir(lab)
        self.path = self.dir / REGISTRY_FILE

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        with _flock(self.dir / "faults.lock"):
            try:
                data = json.loads(self.path.read_text())
            except (FileNotFoundError, ValueError):
                data = {"next": 1, "active": {}}
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, indent=2))
                os.replace(tmp, self.path)

    def add(self, entry: dict[str, Any]) -> str:
        with self._locked() as data:
            fault_id = f"f{data['next']}"
            data["next"] += 1
            data["active"][fault_id] = {**entry, "id": fault_id}
        return fault_id

    def update(self, fault_id: str, **changes: Any) -> None:
        with self._locked() as data:
            if fault_id in data["active"]:
                data["active"][fault_id].update(changes)

    def remove(self, fault_id: str) -> dict[str, Any] | None:
        with self._locked() as data:
            removed: dict[str, Any] | None = data["active"].pop(fault_id, None)
        return removed

    def active(self) -> list[dict[str, Any]]:
        with self._locked() as data:
            return sorted(data["active"].values(), key=lambda e: int(e["id"][1:]))


def active(lab: str) -> list[dict[str, Any]]:
    return Registry(lab).active()
