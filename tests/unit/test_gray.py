"""Gray failures without Docker: their specs, the delay's plan (who slows which packets, which
rules) and the checks that judge the measurements."""

from __future__ import annotations

import json
import subprocess
import time
from types import SimpleNamespace
from typing import Any

import pytest

from lab import faults
from lab.cluster.topology import make_topology
from lab.core.errors import BadInput, FaultNotEffective
from lab.faults import DB, LB, FaultSpec, gray, make_spec

T3 = make_topology(3, lab="g3")


@pytest.mark.parametrize(
    "spec,match",
    [
        (make_spec("delay", sides=[["dc-a"], ["dc-b"]]), r"^fault\.delay: delay needs a delay"),
        (make_spec("delay", sides=[["dc-a"], ["dc-b"]], delay=60.0), r"needs a delay from 1ms to 10s"),
        (make_spec("delay", sides=[["dc-a"], ["dc-b"]], delay=0.1, jitter=0.2), r"^fault\.jitter: from 0 to"),
        (make_spec("delay", delay=0.1), r"^fault\.sides: delay takes two sides"),
        (make_spec("delay", sides=[["a1"], ["zz"]], delay=0.1), r"no node, db or lb 'zz'"),
        (make_spec("delay", sides=[["dc-a"], ["dc-b"]], delay=0.1, one_way=True), r"only split, partition"),
        (make_spec("stall", ["a1"]), r"^fault\.process: stall needs a process"),
        (make_spec("stall", ["a1"], process="mysqld"), r"zookeeper, server, redis; got 'mysqld'"),
        (make_spec("stall", ["db"], process="zookeeper"), r"no node 'db'"),
        (make_spec("cpu", ["a1"]), r"^fault\.cpus: cpu needs the CPUs"),
        (make_spec("cpu", ["a1"], cpus=1.5), r"below 1"),
        (make_spec("kill", ["a1"], cpus=0.5), r"^fault\.cpus: only cpu takes it"),
        (make_spec("split", delay=0.2), r"^fault\.delay: only delay takes it"),
        (make_spec("cpu", ["a1"], cpus=0.5, process="server"), r"^fault\.process: only stall takes it"),
        (make_spec("clock", ["a1"]), r"^fault\.offset: clock needs an offset"),
        (make_spec("clock", ["a1"], offset=2 * 86400.0), r"up to a day"),
        (make_spec("clock", ["db"], offset=10.0), r"no node 'db'"),
        (make_spec("io", ["db"]), r"^fault\.io_rate: io needs a rate"),
        (make_spec("io", ["lb"], io_iops=1), r"the load balancer has no data disk"),
    ],
)
def test_gray_validation_names_the_field(spec, match):
    with pytest.raises(BadInput, match=match) as e:
        faults.validate(spec, T3)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "spec",
    [
        make_spec("delay", sides=[["dc-a"], ["dc-b"]], delay=0.2, jitter=0.05),
        make_spec("delay", sides=[["dc-b"]], delay=0.02),
        make_spec("delay", sides=[["a1"], ["db", "lb"]], delay=0.01),
        make_spec("stall", ["leader"], process="zookeeper"),
        make_spec("stall", ["a1", "b1"], process="redis"),
        make_spec("cpu", ["db"], cpus=0.25),
        make_spec("cpu", ["follower"], cpus=0.1),
        make_spec("clock", ["a1"], offset=-10.0),
        make_spec("io", ["db"], io_iops=1),
        make_spec("io", ["db", "a1"], io_bps=1024**2, io_iops=50),
    ],
)
def test_valid_gray_specs_round_trip(spec):
    faults.validate(spec, T3)
    assert FaultSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_describe_says_the_asked_effect():
    assert make_spec("delay", sides=[["dc-a"], ["dc-b"]], delay=0.2, jitter=0.05).describe() == (
        "delay dc-a | dc-b (0.2s ± 0.05s)"
    )
    assert make_spec("stall", ["a1"], process="zookeeper").describe() == "stall zookeeper of a1"
    assert make_spec("cpu", ["db"], cpus=0.25).describe() == "cpu db (0.25 CPUs)"
    assert make_spec("clock", ["a1"], offset=-10.0).describe() == "clock a1 (-10s)"
    assert make_spec("io", ["db"], io_bps=1024**2, io_iops=1).describe() == "io db (1mb/s, 1 iops)"


@pytest.mark.parametrize("text,n", [("1mb", 1024**2), ("512kb", 512 * 1024), ("1.5MB", 1572864), (8192, 8192)])
def test_io_rates_are_dockers_units(text, n):
    assert faults.parse_bytes(text, "io_rate") == n


@pytest.mark.parametrize("text", ["1 megabyte", "-1mb", "100b"])
def test_io_rates_refuse_what_is_no_rate(text):
    with pytest.raises(BadInput, match=r"^io_rate: "):
        faults.parse_bytes(text, "io_rate")


def test_the_io_probe_takes_about_two_seconds_under_the_limit():
    assert gray.io_probe(make_spec("io", ["db"], io_iops=1)) == (4096, 3)
    assert gray.io_probe(make_spec("io", ["db"], io_iops=10)) == (4096, 20)
    # The throttle lets a burst through at once (64 writes passed 500 iops in 0.01 s): two seconds' worth.
    assert gray.io_probe(make_spec("io", ["db"], io_iops=500)) == (4096, 1000)
    assert gray.io_probe(make_spec("io", ["db"], io_bps=1024**2)) == (65536, 32)


def test_the_io_check_wants_the_writes_to_take_what_the_limit_allows():
    spec = make_spec("io", ["db"], io_iops=10)
    ok = gray.check_io(spec, 4096, 20, {"db": 0.05}, {"db": 1.9})
    assert ok["write_s_after"] == {"db": 1.9}
    with pytest.raises(
        FaultNotEffective, match=r"20 direct writes of 4096 bytes took 0\.06 s \(db\), not at least 1\.44 s"
    ):
        gray.check_io(spec, 4096, 20, {"db": 0.05}, {"db": 0.06})


@pytest.mark.parametrize(
    "text,seconds", [("10s", 10.0), ("+1m", 60.0), ("-10s", -10.0), (-2.5, -2.5), ("-500ms", -0.5)]
)
def test_clock_offsets_carry_a_sign(text, seconds):
    assert faults.signed_duration(text, "offset") == seconds


def _read(at: float, offset: float, error: float = 0.02) -> gray.ClockReading:
    return gray.ClockReading(at, offset, error)


def test_the_clock_check_wants_the_offset_within_a_second():
    spec = make_spec("clock", ["a1"], offset=10.0)
    assert gray.check_clock(spec, 100.0, {"a1": _read(100.5, 10.4)})["offset_s"] == {"a1": 10.4}
    with pytest.raises(FaultNotEffective, match=r"the clock is \+0\.01 s off \(a1\), not \+10 s ± 1$"):
        gray.check_clock(spec, 100.0, {"a1": _read(100.5, 0.01)})


def test_the_clock_check_wants_a_drift_within_a_fifth_over_its_window():
    spec = make_spec("clock", ["a1"], drift=0.1)  # gains 100 ms a second from t = 100
    assert gray.drift_window(spec) == 10.0 and gray.drift_window(make_spec("clock", ["a1"], drift=0.5)) == 2.0
    first, later = {"a1": _read(101.0, 0.1)}, {"a1": _read(111.0, 1.08)}
    assert gray.check_clock(spec, 100.0, first, later)["drift_ms_per_s"] == {"a1": 98.0}
    # Where the drift put it at the first read is the offset asked for: 0.1 s at 101, 3 s at 130.
    assert gray.clock_set(spec, 100.0, {"a1": _read(130.0, 3.2)})
    assert not gray.clock_set(spec, 100.0, {"a1": _read(130.0, 0.0)})
    with pytest.raises(FaultNotEffective, match=r"the clock drifted \+50\.0 ms/s \(a1\), not \+100 ms/s ± 20%"):
        gray.check_clock(spec, 100.0, first, {"a1": _read(111.0, 0.6)})
    with pytest.raises(FaultNotEffective):  # a drift nobody read twice is not verified
        gray.check_clock(spec, 100.0, first, None)


@pytest.mark.parametrize("text,rate", [("50ms/s", 0.05), ("-20ms/s", -0.02), ("0.1s/s", 0.1), (0.2, 0.2)])
def test_drifts_read_as_seconds_a_second(text, rate):
    assert faults.parse_drift(text, "drift") == pytest.approx(rate)


def test_a_clock_fault_needs_an_offset_or_a_drift_in_bounds():
    t = make_topology(3)
    faults.validate(make_spec("clock", ["a1"], drift=-0.05), t)
    for spec, match in [
        (make_spec("clock", ["a1"]), "an offset .* a drift"),
        (make_spec("clock", ["a1"], drift=0.001), "drift: a drift from 10ms/s"),
        (make_spec("clock", ["a1"], offset=5.0, drift=2.0), "drift"),
    ]:
        with pytest.raises(BadInput, match=match):
            faults.validate(spec, t)
    with pytest.raises(BadInput, match="50ms/s"):
        faults.parse_drift("fast", "drift")


def test_a_delay_between_datacenters_takes_the_database_and_lb_where_they_were_placed():
    spec = make_spec("delay", sides=[["dc-a"], ["dc-b"]], delay=0.2)
    assert faults.groups(spec, T3) == (frozenset({"a1", "a2", DB}), frozenset({"b1"}))
    with_lb = make_topology(3, lab="g3", lb_dc="dc-b")
    assert faults.groups(spec, with_lb) == (frozenset({"a1", "a2", DB}), frozenset({"b1", LB}))


def test_a_delay_between_named_endpoints_leaves_the_other_nodes_alone():
    assert faults.groups(make_spec("delay", sides=[["a1"], ["db"]], delay=0.1), T3) == (
        frozenset({"a1"}),
        frozenset({DB}),
    )
    # One side named: against the other nodes.
    assert faults.groups(make_spec("delay", sides=[["b1"]], delay=0.1), T3) == (
        frozenset({"b1"}),
        frozenset({"a1", "a2"}),
    )


def test_each_direction_is_slowed_once_where_it_is_received():
    links = faults.cuts(make_spec("delay", sides=[["dc-a"], ["dc-b"]], delay=0.2), T3)
    plan = gray.carriers(links, set(T3.node_names))
    # Half the delay per direction between nodes; the database's packets hold all of it where they
    # arrive; nothing is held on the way out (a held outgoing packet stalls its TCP socket).
    assert {n: set(e) for n, e in plan.items()} == {
        "a1": {("b1", 0.5)},
        "a2": {("b1", 0.5)},
        "b1": {("a1", 0.5), ("a2", 0.5), (DB, 1.0)},
    }
    for a, b in [("a1", "b1"), ("a2", "b1"), ("b1", DB)]:  # a round trip holds the whole delay once
        held = sum(share for n, entries in plan.items() for peer, share in entries if {n, peer} == {a, b})
        assert held == 1.0, (a, b)


def test_delay_rules_queue_received_packets_after_any_drop_rule_and_pass_when_no_delayer_is_bound():
    plan = {"b1": [("a1", 0.5), (DB, 1.0)]}
    ips = {"a1": {"interdc": "10.0.1.2", "dc-a": "10.0.2.2"}, DB: {"db": "10.0.3.2"}}

    def rule(ip: str, queue: str) -> list[str]:
        return [
            *("-A", "INPUT", "-s", ip, "-m", "comment", "--comment", "halab:g3:f1"),
            *("-j", "NFQUEUE", "--queue-num", queue, "--queue-bypass"),
        ]

    assert gray.delay_rules(plan, ips, "halab:g3:f1", 3007) == {
        "b1": [rule("10.0.1.2", "3007"), rule("10.0.2.2", "3007"), rule("10.0.3.2", "4007")]
    }


def test_probes_go_to_the_port_the_peer_listens_on_by_the_path_the_node_uses():
    plan = {"b1": [("a1", 0.5)], "a1": [(DB, 1.0)]}
    ips = {"a1": {"interdc": "10.0.1.2"}, DB: {"db": "10.0.3.2"}}
    assert gray.probe_targets(T3, plan, ips) == {"b1": ("a1", "10.0.1.2", 2181), "a1": (DB, "10.0.3.2", 3306)}


def test_queue_numbers_are_stable_per_fault():
    assert gray.queue_of("f1") == gray.queue_of("f1")
    assert all(gray.QUEUE_BASE <= gray.queue_of(f"f{i}") < gray.QUEUE_BASE + 1000 for i in range(50))


def test_the_delay_check_wants_the_asked_round_trip_within_a_fifth():
    spec = make_spec("delay", sides=[["dc-a"], ["dc-b"]], delay=0.2)
    ok = gray.check_delay(spec, {"a1": 0.0004, "b1": 0.0005}, {"a1": 0.2104, "b1": 0.1905})
    assert ok["rtt_after_ms"] == {"a1": 210.4, "b1": 190.5}
    with pytest.raises(FaultNotEffective, match=r"grew by 0\.1 ms \(b1\), not 200 ms"):
        gray.check_delay(spec, {"a1": 0.0004, "b1": 0.0005}, {"a1": 0.2004, "b1": 0.0006})
    with pytest.raises(FaultNotEffective):  # nothing measured is no pass
        gray.check_delay(spec, {}, {})


def test_the_cpu_check_wants_the_quota_to_hold_a_busy_loop_to_the_asked_share():
    spec = make_spec("cpu", ["a1"], cpus=0.25)
    held = gray.BusyLoop(wall_s=2.0, used_s=0.52, throttled_s=1.4)
    assert gray.check_cpu(spec, {"a1": held})["cpus_used"] == {"a1": 0.26}
    # A loaded machine slows the loop without a quota: it used little, but nothing held it back.
    with pytest.raises(FaultNotEffective, match=r"held a busy loop back for 0\.00 s \(a1\)"):
        gray.check_cpu(spec, {"a1": gray.BusyLoop(wall_s=2.0, used_s=0.4, throttled_s=0.0)})
    with pytest.raises(FaultNotEffective, match=r"used 0\.90 CPUs \(a1\), expected at most 0\.25"):
        gray.check_cpu(spec, {"a1": gray.BusyLoop(wall_s=1.0, used_s=0.9, throttled_s=0.1)})
    with pytest.raises(FaultNotEffective):  # nothing measured is no pass
        gray.check_cpu(spec, {})


def test_the_host_clock_adds_the_offset_file_to_the_wall_clock_only(tmp_path, monkeypatch):
    from lab.server import hostclock

    clock_file = tmp_path / "clock"
    monkeypatch.setattr(hostclock, "CLOCK_FILE", str(clock_file))
    monkeypatch.setattr(hostclock, "REREAD", 0.0)
    assert hostclock.offset() == 0.0  # no file: the true time
    clock_file.write_text("+10\n")
    assert hostclock.offset() == 10.0
    assert abs(hostclock._time() - time.time() - 10.0) < 0.5
    assert abs(hostclock._time_ns() / 1e9 - time.time() - 10.0) < 0.5
    clock_file.write_text("-2.5\n")
    assert hostclock.offset() == -2.5
    clock_file.write_text("nonsense")
    assert hostclock.offset() == 0.0
    # A drift: 1 s ahead at true time 1000, gaining 50 ms a second from there.
    clock_file.write_text("+1 +0.05 1000\n")
    assert hostclock.offset(1000.0) == 1.0
    assert hostclock.offset(1100.0) == pytest.approx(6.0)
    assert hostclock.offset(900.0) == pytest.approx(-4.0)
    assert hostclock.parse("+1 +0.05") == (0.0, 0.0, 0.0)  # half a drift is none


# ------------------------------------------------------------------- bandwidth and exhaust


@pytest.mark.parametrize(
    "spec,match",
    [
        (make_spec("bandwidth", sides=[["dc-a"], ["dc-b"]]), r"^fault\.rate: bandwidth needs a rate"),
        (make_spec("bandwidth", rate=10**6), r"^fault\.sides: bandwidth takes two sides"),
        (make_spec("bandwidth", sides=[["a1"], ["db"]], rate=10**6, delay=0.1), r"^fault\.delay: only delay"),
        (make_spec("delay", sides=[["a1"], ["db"]], delay=0.1, rate=10**6), r"^fault\.rate: only bandwidth"),
        (make_spec("exhaust", ["a1"]), r"^fault\.target: exhaust takes the database: db"),
        (make_spec("exhaust"), r"^fault\.target: exhaust takes the database"),
        (make_spec("exhaust", ["db"], rate=10**6), r"^fault\.rate: only bandwidth takes it"),
        (make_spec("kill", ["db"], leave=2), r"^fault\.leave: only exhaust takes it"),
    ],
)
def test_bandwidth_and_exhaust_validation_names_the_field(spec, match):
    with pytest.raises(BadInput, match=match):
        faults.validate(spec, T3)


@pytest.mark.parametrize(
    "spec",
    [
        make_spec("bandwidth", sides=[["dc-a"], ["dc-b"]], rate=10**6),
        make_spec("bandwidth", sides=[["a1"], ["db", "lb"]], rate=500_000),
        make_spec("exhaust", ["db"]),
        make_spec("exhaust", ["db"], leave=3),
    ],
)
def test_valid_bandwidth_and_exhaust_specs_round_trip(spec):
    faults.validate(spec, T3)
    assert FaultSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_bandwidth_and_exhaust_say_the_asked_effect():
    assert make_spec("bandwidth", sides=[["dc-a"], ["dc-b"]], rate=1_500_000).describe() == (
        "bandwidth dc-a | dc-b (1.5mbit)"
    )
    assert make_spec("exhaust", ["db"]).describe() == "exhaust db (every connection)"
    assert make_spec("exhaust", ["db"], leave=2).describe() == "exhaust db (2 left free)"


@pytest.mark.parametrize("text,n", [("1mbit", 10**6), ("500kbit", 500_000), ("1.5Mbit", 1_500_000), (200_000, 200_000)])
def test_rates_are_tcs_units(text, n):
    assert faults.parse_rate(text, "rate") == n


@pytest.mark.parametrize("text", ["1 megabit", "1mb", "10kbit", "2gbit"])
def test_rates_refuse_what_is_no_rate_or_out_of_range(text):
    with pytest.raises(BadInput, match=r"^rate: "):
        faults.parse_rate(text, "rate")


def test_a_scenario_fault_takes_rate_and_leave():
    spec = faults.spec_from_yaml({"kind": "bandwidth", "sides": [["dc-a"], ["dc-b"]], "rate": "1mbit"}, "f")
    assert spec.rate == 10**6
    assert faults.spec_from_yaml({"kind": "exhaust", "target": ["db"], "leave": 2}, "f").leave == 2
    with pytest.raises(BadInput, match=r"^f\.leave: "):
        faults.spec_from_yaml({"kind": "exhaust", "target": ["db"], "leave": -1}, "f")


def test_each_direction_is_shaped_once_at_its_sender_or_where_the_database_or_lb_send_at_the_receiver():
    spec = make_spec("bandwidth", sides=[["dc-a"], ["dc-b"]], rate=10**6)
    t = make_topology(3, lab="g3", lb_dc="dc-b")
    plan = gray.shapers(faults.cuts(spec, t), set(t.node_names))
    assert {n: set(e) for n, e in plan.items()} == {
        "a1": {("e", "b1"), ("e", LB), ("i", LB)},
        "a2": {("e", "b1"), ("e", LB), ("i", LB)},
        "b1": {("e", "a1"), ("e", "a2"), ("e", DB), ("i", DB)},
    }
    # Every direction between two endpoints is shaped exactly once (the database and the load
    # balancer are never both ends: they do not talk to each other).
    for c in faults.cuts(spec, t):
        holders = [
            n
            for n, entries in plan.items()
            for d, p in entries
            if (n, d, p) in ((c.src, "e", c.dst), (c.dst, "i", c.src))
        ]
        assert len(holders) == (0 if {c.src, c.dst} == {DB, LB} else 1), c


def test_shaping_matches_every_address_of_each_peer():
    plan = {"b1": [("e", "a1"), ("i", DB)]}
    ips = {"a1": {"interdc": "10.0.1.2", "dc-a": "10.0.2.2"}, DB: {"db": "10.0.3.2"}}
    assert gray.shaped_addresses(plan, ips) == {"b1": ["e:10.0.1.2", "e:10.0.2.2", "i:10.0.3.2"]}


def test_the_transfer_that_shows_the_shaping_prefers_a_peer_node_then_the_database():
    ips = {
        "a1": {"interdc": "10.0.1.2", "dc-a": "10.0.2.2", "db": "10.0.3.10"},
        "b1": {"interdc": "10.0.1.4"},
        DB: {"db": "10.0.3.3"},
        LB: {"dc-a": "10.0.2.1"},
    }
    plan = {"b1": [("i", DB), ("e", DB), ("e", "a1")], "a1": [("i", LB), ("i", DB)], "a2": [("i", "b1")]}
    assert gray.transfer_probes(T3, plan, ips) == {"b1": ("e", "a1"), "a1": ("i", DB)}


def test_the_probe_is_long_enough_that_the_burst_is_a_small_share():
    assert gray.burst_bytes(10**6) == 4096  # a few frames, more than 10 ms of 1 mbit
    assert gray.probe_bytes(10**6) == 250_000  # 2 s
    assert gray.probe_bytes(100 * 10**6) == 8 * 1024**2  # capped
    assert all(gray.probe_bytes(r) >= 16 * gray.burst_bytes(r) for r in (10**5, 10**6, 10**8))


def test_the_rate_check_wants_the_asked_rate_within_a_fifth_and_a_faster_link_before():
    spec = make_spec("bandwidth", sides=[["dc-a"], ["dc-b"]], rate=10**6)
    ok = gray.check_rate(spec, {"a1": 8e8, "b1": 9e8}, {"a1": 0.95e6, "b1": 1.1e6})
    assert ok["mbit_after"] == {"a1": 0.95, "b1": 1.1}
    with pytest.raises(FaultNotEffective, match=r"ran at 1\.500 mbit/s \(b1\), not 1 mbit/s ± 20%"):
        gray.check_rate(spec, {"a1": 8e8, "b1": 9e8}, {"a1": 0.95e6, "b1": 1.5e6})
    with pytest.raises(FaultNotEffective, match=r"faster before: 0\.900 \(a1\)"):  # it was already that slow
        gray.check_rate(spec, {"a1": 0.9e6}, {"a1": 0.95e6})
    with pytest.raises(FaultNotEffective):  # nothing measured is no pass
        gray.check_rate(spec, {}, {})


def test_the_shaping_script_is_valid_sh():
    done = subprocess.run(["sh", "-n"], input=gray._SHAPING, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_the_exhaust_check_wants_max_connections_less_leave_and_a_refusal():
    spec = make_spec("exhaust", ["db"])
    # The admin's reading is one of the connections counted: 161 = 160 taken + the reading.
    assert gray.check_exhaust(spec, 161, 160, "1040 Too many connections")["connections_after"] == 160
    with pytest.raises(FaultNotEffective, match=r"the database had 150 connections \(db\), not 160 of its 160"):
        gray.check_exhaust(spec, 151, 160, "1040 Too many connections")
    with pytest.raises(FaultNotEffective, match=r"a new connection was not refused for lack of slots: ok"):
        gray.check_exhaust(spec, 161, 160, "ok")
    assert gray.check_exhaust(make_spec("exhaust", ["db"], leave=5), 156, 160, "ok")["connections_after"] == 155


class FakeMysql:
    """A server with `slots` connections for the rogue client, some taken by others."""

    class Error(Exception):
        pass

    def __init__(self, slots: int, others: int) -> None:
        self.slots, self.others, self.open = slots, others, 0

    def connect(self, host: str, port: int) -> Any:
        if self.open + self.others >= self.slots:
            raise self.Error(1040, "Too many connections")
        self.open += 1
        return self

    def close(self) -> None:
        self.open -= 1


@pytest.mark.parametrize("leave,held", [(0, 7), (2, 5)])
def test_the_rogue_client_takes_every_free_connection_but_leave(monkeypatch, capsys, leave, held):
    from lab.agent import connhold

    server = FakeMysql(slots=10, others=3)
    monkeypatch.setattr(connhold, "_driver", lambda: SimpleNamespace(MySQLError=FakeMysql.Error))
    monkeypatch.setattr(connhold, "connect", server.connect)
    monkeypatch.setattr(connhold, "free_slots", lambda c: server.slots - server.open - server.others)
    monkeypatch.setattr(connhold, "POLL", 0.01)
    connhold.hold("db", 3306, leave, time.time() + 0.1)
    assert server.open == held
    states = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert states[-1]["held"] == held
    assert (states[-1]["refused"] == "1040 Too many connections") == (leave == 0)


def test_the_rogue_client_says_why_a_connection_was_refused():
    from lab.agent.connhold import refusal

    assert refusal(Exception(1040, "Too many connections")) == "1040 Too many connections"
    assert refusal(Exception(2003, "Can't connect")) is None


def test_the_command_line_reads_bandwidth_sides_and_the_exhaust_target():
    from lab.cli.chaos import fault_spec
    from lab.cli.main import build_parser

    def spec(*argv: str) -> FaultSpec:
        return fault_spec(build_parser().parse_args(["fault", *argv]))

    assert spec("bandwidth", "dc-a", "dc-b", "--rate", "1mbit") == make_spec(
        "bandwidth", sides=[["dc-a"], ["dc-b"]], rate=10**6
    )
    assert spec("exhaust", "db", "--leave", "2") == make_spec("exhaust", ["db"], leave=2)
    with pytest.raises(BadInput, match=r"^--rate: "):
        spec("bandwidth", "a1", "db", "--rate", "fast")
