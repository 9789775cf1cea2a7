import math
from dataclasses import replace

from lab.record.indeterminate import resolve_info_writes
from lab.record.ops import Op, Value


def op(f: str, value: object, type: str = "info", key: str = "x") -> Op:
    return Op("p1", key, f, value, type, 0.0, 1.0 if type != "info" else math.inf)  # type: ignore[arg-type]


HISTORY = [
    replace(o, index=i)
    for i, o in enumerate(
        [
            op("write", "a"),  # committed
            op("write", "b"),  # not committed
            op("cas", ("a", "c")),  # committed, by its new value
            op("write", "z", key="y"),  # the snapshot does not cover y
            op("write", "d", type="ok"),  # ok writes are not in question
            op("read", None),  # an info read changes nothing
            op("write", "e", type="fail"),
        ]
    )
]
SNAPSHOT = {"x": {"a", "c", "d"}}


def test_resolves_info_writes_against_a_mapping_snapshot():
    result = resolve_info_writes(HISTORY, SNAPSHOT)
    assert result.committed == (HISTORY[0], HISTORY[2])
    assert result.not_committed == (HISTORY[1],)
    assert result.unknown == (HISTORY[3],)
    assert result.counts() == {"committed": 2, "not committed": 1, "unknown": 1} and result.total == 4


def test_resolves_against_a_callable_that_may_not_know():
    def committed(key: str, value: Value) -> bool | None:
        return None if value == "b" else value in SNAPSHOT.get(key, ())

    result = resolve_info_writes(HISTORY, committed)
    assert result.counts() == {"committed": 2, "not committed": 1, "unknown": 1}
    assert result.unknown == (HISTORY[1],)


def test_a_value_another_write_also_carried_proves_nothing():
    history = [op("write", "a"), op("write", "a", type="ok"), op("write", "b"), op("write", "b", type="fail")]
    result = resolve_info_writes(history, {"x": {"a"}})
    assert result.unknown == (history[0],) and result.not_committed == (history[2],)


def test_no_info_writes():
    assert resolve_info_writes([op("write", "a", type="ok")], SNAPSHOT).total == 0
