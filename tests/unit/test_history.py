import json
import multiprocessing
import threading

from hypothesis import given
from hypothesis import strategies as st

from lab.record.history import (
    HISTORY_FILE,
    LEDGER_FILE,
    FaultRecord,
    History,
    JsonlWriter,
    LedgerEntry,
    ProbeRecord,
    RequestRecord,
    load_run,
    merge_parts,
    part_paths,
    read_jsonl,
    record_from_dict,
)


def req(t0: float, **kw) -> RequestRecord:
    return RequestRecord(
        **{"t0": t0, "t1": t0 + 0.01, "method": "GET", "name": "/v1/projects", "status": 200, "ok": True, **kw}
    )


RECORDS = [
    req(1.0, node="a1", worker="p1"),
    ProbeRecord(t0=1.5, t1=1.6, node="a2", ping=503, state="degraded", zk_mode=None),
    FaultRecord(t0=2.0, t1=9.0, fault="kill", targets=("a2",), id="f1", detail={"signal": "KILL"}),
    LedgerEntry(t0=3.0, t1=3.2, op="create", type="project", id="1a5", uuid="u-1", node="a1"),
]


def test_records_round_trip_through_dicts_and_json():
    for r in RECORDS:
        d = json.loads(json.dumps(r.to_dict()))
        assert d["kind"] == r.kind
        assert record_from_dict(d) == r


def test_fault_targets_stay_a_tuple_and_unknown_fields_are_ignored():
    d = RECORDS[2].to_dict() | {"future_field": 1}
    assert d["targets"] == ("a2",)
    back = record_from_dict(json.loads(json.dumps(d)))
    assert back.targets == ("a2",)


@given(st.floats(0, 2e9), st.floats(0, 10), st.integers(0, 599), st.booleans(), st.text(max_size=20))
def test_request_round_trip_any_values(t0, dt, status, ok, name):
    r = RequestRecord(t0=t0, t1=t0 + dt, method="POST", name=name, status=status, ok=ok, write=True, uuid=name)
    assert record_from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_reader_skips_a_torn_last_line_and_counts_it(tmp_path):
    path = tmp_path / HISTORY_FILE
    with JsonlWriter(path) as w:
        w.extend(RECORDS[:2])
    with open(path, "a") as f:
        f.write('{"kind":"request","t0":1')  # a writer killed mid-line
    records, skipped = read_jsonl(path)
    assert records == RECORDS[:2] and skipped == 1


def _append_many(path, worker, n):
    w = JsonlWriter(path)
    for i in range(n):
        w.append(req(float(i), worker=worker, name="/v1/" + "x" * 300))  # longer than one small write
    w.close()


def test_concurrent_threads_and_processes_never_interleave_lines(tmp_path):
    path = tmp_path / HISTORY_FILE
    threads = [threading.Thread(target=_append_many, args=(path, f"t{i}", 200)) for i in range(4)]
    procs = [
        multiprocessing.get_context("fork").Process(target=_append_many, args=(path, f"p{i}", 200)) for i in range(3)
    ]
    for x in [*threads, *procs]:
        x.start()
    for x in [*threads, *procs]:
        x.join(timeout=60)
    records, skipped = read_jsonl(path)
    assert skipped == 0
    assert len(records) == 7 * 200
    assert {r.worker for r in records} == {"t0", "t1", "t2", "t3", "p0", "p1", "p2"}


def test_a_writer_shared_across_fork_reopens_in_the_child(tmp_path):
    path = tmp_path / "h.jsonl"
    w = JsonlWriter(path)
    w.append(RECORDS[0])
    child = multiprocessing.get_context("fork").Process(target=w.append, args=(RECORDS[1],))
    child.start()
    child.join(timeout=30)
    w.append(RECORDS[3])
    w.close()
    assert read_jsonl(path) == ([*RECORDS[:2], RECORDS[3]], 0)


def test_merge_parts_moves_acks_to_the_ledger_and_keeps_what_is_already_there(tmp_path):
    with JsonlWriter(tmp_path / HISTORY_FILE) as w:  # e.g. the probe loop of a scenario
        w.append(RECORDS[1])
    hist, ledger = part_paths(tmp_path / "parts", "p7")
    with JsonlWriter(hist) as h, JsonlWriter(ledger) as lg:
        h.append(RECORDS[0])
        lg.append(RECORDS[3])
    before = load_run(tmp_path)  # readable before the merge too
    assert merge_parts(tmp_path) == 2
    assert not list((tmp_path / "parts").glob("*.jsonl"))
    after = load_run(tmp_path)
    assert after == before
    assert read_jsonl(tmp_path / LEDGER_FILE) == ([RECORDS[3]], 0)
    assert after.requests == (RECORDS[0],) and after.probes == (RECORDS[1],) and after.acks == (RECORDS[3],)


def test_history_sorts_each_kind_and_knows_its_span():
    h = History.of([req(5.0), req(1.0), RECORDS[2]])
    assert [r.t0 for r in h.requests] == [1.0, 5.0]
    assert h.span == (1.0, 9.0)
    assert History().span is None
