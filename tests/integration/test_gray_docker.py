"""Gray failures on a real 3-node lab (the default rancher-1.0 node): each kind applied, its effect
measured, healed, and the effect measured gone; a delay, a bandwidth limit and a rogue database
client held by a SIGKILLed `halab fault` are undone by `halab heal` from another process."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import heal_from_another_process, kill_fault_holder

from lab import faults
from lab.cluster.compose import container_name
from lab.core.errors import RuntimeFailure
from lab.core.wait import wait_for
from lab.faults import DB, LB, backend, gray, make_spec

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# The unfaulted round trip inside one Docker host is well under a millisecond; 20 ms is far from
# both it and the 200 ms asked.
UNDELAYED = 0.02


def rtt(t: Any, node: str, peer: str) -> float:
    ips = faults.addresses(t, backend.containers(t))
    return gray.measure_rtt(t, gray.probe_targets(t, {node: [(peer, 1.0)]}, ips))[node]


def no_delay_left(t: Any) -> bool:
    counts = gray.stop_delayers(t, t.node_names, None, only_count=True)
    return faults.leftovers(t)["rules"] == {} and not any(counts.values())


def test_a_delay_between_datacenters_adds_the_asked_round_trip_and_heals(lab3, halab_faults):
    inj = halab_faults(lab3)
    fault = inj.apply(make_spec("delay", sides=[["dc-a"], ["dc-b"]], delay=0.2, jitter=0.05))
    # Verified on apply: every node on the link, its handshake to a peer across it.
    assert set(fault.detail["rtt_after_ms"]) == {"a1", "a2", "b1"}
    # Measured again on paths the check did not use: b1 to the database (held back at b1), a2 to b1
    # (half at each end); a1 to a2, same side, is not slowed.
    assert 0.16 <= rtt(lab3, "b1", DB) <= 0.24
    assert 0.16 <= rtt(lab3, "a2", "b1") <= 0.24
    assert rtt(lab3, "a1", "a2") < UNDELAYED
    inj.heal(fault)
    assert rtt(lab3, "b1", DB) < UNDELAYED
    assert no_delay_left(lab3)


def test_a_delay_held_by_a_killed_harness_is_undone_by_heal(lab3):
    kill_fault_holder(lab3.lab, "delay", "dc-a", "dc-b", "--delay", "100ms")
    assert rtt(lab3, "b1", DB) > 0.08  # still slowed: nobody healed it
    heal_from_another_process(lab3.lab)
    assert no_delay_left(lab3)
    assert rtt(lab3, "b1", DB) < UNDELAYED


def ping_inside(t: Any, node: str) -> str:
    """What the node's own /ping answers, asked inside its container (2 s limit)."""
    script = (
        "import urllib.request\n"
        "try: print(urllib.request.urlopen('http://127.0.0.1:8080/ping', timeout=2).read().decode())\n"
        "except Exception as e: print(type(e).__name__)\n"
    )
    return backend.exec_in(container_name(t, node), ["python3", "-c", script], f"ping {node}").strip()


@pytest.mark.parametrize("process", ["zookeeper", "server", "redis"])
def test_stalling_one_process_stops_only_it_and_heal_resumes_it(lab3, halab_faults, process):
    inj = halab_faults(lab3)
    node = "b1"
    fault = inj.apply(make_spec("stall", [node], process=process))
    assert fault.detail["stopped"][node] and set(fault.detail["stopped"][node].values()) == {"T"}
    # The half-dead host: with only its ZooKeeper member or Redis stopped, its server still says
    # pong; with the server stopped, nothing answers.
    assert ping_inside(lab3, node) == ("TimeoutError" if process == "server" else "pong")
    inj.heal(fault)
    states = gray.signal_process(lab3, node, process, "0")  # signal 0: only reads the state
    assert "T" not in states.values()
    assert ping_inside(lab3, node) == "pong"


def test_stalling_the_leaders_zookeeper_is_verified_on_the_leader(lab3, halab_faults):
    inj = halab_faults(lab3)
    leader = next(n for n, mode in backend.roles(lab3).items() if mode == "leader")
    fault = inj.apply(make_spec("stall", ["leader"], process="zookeeper"))
    assert fault.targets == (leader,)
    inj.heal(fault)


def test_a_cpu_quota_slows_the_database_and_heal_lifts_it(lab3, halab_faults):
    inj = halab_faults(lab3)
    fault = inj.apply(make_spec("cpu", [DB], cpus=0.2))
    # Verified on apply: held back by the quota, at most a quarter over the asked share.
    assert fault.detail["throttled_s"][DB] > 0
    assert fault.detail["cpus_used"][DB] <= 0.25
    assert gray.cpu_quota(lab3, DB) == 20_000  # microseconds of each 100 ms
    inj.heal(fault)
    assert gray.cpu_quota(lab3, DB) <= 0
    assert gray.busy_loop(lab3, DB).throttled_s == 0


def test_a_clock_jump_moves_the_nodes_clock_and_heal_puts_it_back(lab3, halab_faults):
    inj = halab_faults(lab3)
    fault = inj.apply(make_spec("clock", ["a2"], offset=10.0))
    assert abs(fault.detail["offset_s"]["a2"] - 10.0) <= 1.0  # verified on apply
    assert abs(gray.read_clock(lab3, "a2").offset - 10.0) <= 1.0
    assert abs(gray.read_clock(lab3, "a1").offset) <= 1.0  # the other nodes keep the true time
    inj.heal(fault)
    wait_for("a2's clock back", lambda: abs(gray.read_clock(lab3, "a2").offset) <= 1.0, 5)  # re-read each second


def test_a_clock_drift_runs_the_nodes_clock_off_and_heal_puts_it_back(lab3, halab_faults):
    inj = halab_faults(lab3)
    fault = inj.apply(make_spec("clock", ["b1"], drift=-0.25))  # loses 250 ms a second
    # Verified on apply: two reads 4 s apart (drift_window), the drift within a fifth.
    assert abs(fault.detail["drift_ms_per_s"]["b1"] + 250) <= 50
    first = gray.read_clock(lab3, "b1")
    later = wait_for(
        "b1's clock a second further behind",
        lambda: (r := gray.read_clock(lab3, "b1")).offset < first.offset - 1 and r,
        30,
    )
    assert abs((later.offset - first.offset) / (later.at - first.at) + 0.25) <= 0.05
    assert abs(gray.read_clock(lab3, "a1").offset) <= 1.0  # the other nodes keep the true time
    inj.heal(fault)
    wait_for("b1's clock back", lambda: abs(gray.read_clock(lab3, "b1").offset) <= 1.0, 5)


def test_a_stalled_database_disk_slows_its_direct_writes_and_heal_lifts_it(lab3, halab_faults):
    inj = halab_faults(lab3)
    fault = inj.apply(make_spec("io", [DB], io_iops=5))
    # Verified on apply: 10 direct writes took at least (10 - 2) / 5 s less a fifth.
    assert fault.detail["write_s_after"][DB] >= 1.28
    inj.heal(fault)
    assert gray.write_time(lab3, DB, 4096, 10) < 1.0


MBIT = 10**6
UNSHAPED = 5 * MBIT  # a transfer inside one Docker host runs at hundreds of mbit/s: far from 1 mbit/s


def rate(t: Any, node: str, direction: str, peer: str) -> float:
    """Bits per second of a 1 mbit/s probe's transfer from (`e`) or to (`i`) the node."""
    ips = faults.addresses(t, backend.containers(t))
    return gray.measure_rates(t, {node: (direction, peer)}, ips, MBIT)[node]


def test_a_bandwidth_limit_between_datacenters_holds_across_a_restart_and_heals(lab3, halab_faults):
    inj = halab_faults(lab3)
    fault = inj.apply(make_spec("bandwidth", sides=[["dc-a"], ["dc-b"]], rate=MBIT))
    # Verified on apply: a transfer from each node across the link ran at 1 mbit/s ± 20 %.
    assert set(fault.detail["mbit_after"]) == {"a1", "a2", "b1"}
    # Paths the check did not use: the database's answers to b1 (shaped where they arrive); a1 to
    # a2, same side, is not shaped.
    assert abs(rate(lab3, "b1", "i", DB) - MBIT) <= 0.2 * MBIT
    assert rate(lab3, "a1", "e", "a2") > UNSHAPED
    # A restart gives b1 a fresh network namespace; the watcher shapes it again.
    backend.act(lab3, ["docker", "restart", "--time", "1"], ["b1"], "restart b1", timeout=60)
    wait_for("b1 shaped again", lambda: faults.leftovers(lab3)["shapers"].get("b1"), 30)
    assert abs(rate(lab3, "b1", "e", "a1") - MBIT) <= 0.2 * MBIT
    inj.heal(fault)
    assert rate(lab3, "b1", "i", DB) > UNSHAPED
    assert faults.leftovers(lab3)["shapers"] == {}


def test_an_exhausted_database_refuses_new_connections_even_after_a_restart_and_heal_gives_them_back(
    lab3, halab_faults
):
    inj = halab_faults(lab3)
    fault = inj.apply(make_spec("exhaust", [DB]))
    most = fault.detail["max_connections"]
    # Verified on apply: every slot taken, and one more connection refused for lack of them.
    assert fault.detail["connections_after"] >= most
    assert fault.detail["new_connection"].startswith("1040 ")
    assert faults.leftovers(lab3)["rogues"] == [gray.rogue_name(lab3, fault.id)]
    # A database restart drops every connection; the rogue takes the free ones again.
    backend.act(lab3, ["docker", "restart"], [DB], "restart the database", timeout=120)
    wait_for(
        "the rogue holding every slot of the restarted database",
        lambda: gray.db_connections(lab3)[0] - 1 >= most,
        60,
        interval=0.5,
        not_yet=(RuntimeFailure,),  # the database not answering yet
    )
    assert gray.rogue_probe(lab3, fault.id, fault.detail["db_ip"]).startswith("1040 ")
    inj.heal(fault)
    wait_for("the rogue's connections closed", lambda: gray.db_connections(lab3)[0] - 1 < most / 2, 30)
    assert faults.leftovers(lab3)["rogues"] == []


def test_a_bandwidth_limit_and_a_rogue_client_held_by_a_killed_harness_are_undone_by_heal(lab3):
    # Verified on apply by a body a1 posts through the load balancer to another node.
    kill_fault_holder(lab3.lab, "bandwidth", "a1", "lb", "--rate", "1mbit")
    assert faults.leftovers(lab3)["shapers"] == {"a1": 2}  # still shaped, both ways: nobody healed it
    assert abs(rate(lab3, "a1", "e", LB) - MBIT) <= 0.2 * MBIT
    heal_from_another_process(lab3.lab)
    assert faults.leftovers(lab3)["shapers"] == {}
    assert rate(lab3, "a1", "e", LB) > UNSHAPED

    kill_fault_holder(lab3.lab, "exhaust", "db")
    assert faults.leftovers(lab3)["rogues"]
    heal_from_another_process(lab3.lab)
    assert faults.leftovers(lab3)["rogues"] == []
    most = gray.db_connections(lab3)[1]
    wait_for("the rogue's connections closed", lambda: gray.db_connections(lab3)[0] - 1 < most / 2, 30)
