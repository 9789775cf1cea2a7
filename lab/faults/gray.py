"""Gray failures: a slow or narrow link, one stopped process, a starved CPU, a slow disk, a database
out of connections. Each is verified by measuring its effect before and after, like a cut is by
connects.

- `delay`: every packet crossing between two sides waits, without the kernel's `netem` (missing
  here and on many hosts). Each node on the link runs userspace delayers (lab/agent/nfqdelay.py)
  bound to NFQUEUEs, and iptables rules queue the packets it receives from across the link
  (`carriers`): from a peer node half the delay each way, from the database or the load balancer
  (which hold no rules) all of it on the way back, so a round trip across the link takes `delay`
  longer either way. Connections stay end to end (a relay would end and reopen them); packets
  keep their order (the jitter varies smoothly in time rather than per packet, so it never
  reorders them and its mean stays the asked delay). The rules are appended after any drop rule,
  since a packet the delayer releases skips the rest of its chain, and carry `--queue-bypass`: a
  delayer that dies lets packets through at once rather than blackholing them. Verified by the median TCP handshake time
  from each node to a peer across the link, before and after.
- `stall`: SIGSTOP to one process of a node, its ZooKeeper member, its API server or its Redis,
  while the rest of the host runs on (the half-dead host: `/ping` may still answer). Verified by
  the process state (`T`) in /proc; healed by SIGCONT. A restart of the container is a reboot:
  the stall ends with it.
- `cpu`: the container's CFS quota cut to `cpus` CPUs (`docker update --cpu-quota`); it survives restarts, being
  the container's configuration. Verified by a fixed CPU-bound loop in the container: the quota
  held it back, and the container used no more than the asked CPUs meanwhile (its cgroup's counters).
- `clock`: a node's wall clock set `offset` seconds off and/or drifting `drift` seconds a second
  from then on, as its server and cluster-manager see it
  (lab/server/hostclock.py: they read CLOCK_FILE at most once a second; the monotonic clocks, the
  ZooKeeper JVM and Redis keep the true time, see there why that is enough). Writing the file is a
  jump; held from the start, a skew. It is in the container's file system, so it holds across
  restarts of the node's processes and of its container. Verified by the server's own clock in
  its status against the harness's; a drift by two such reads a window apart (`drift_window`).
- `io`: the data disk of the database (or of a node's ZooKeeper member) throttled to `io_bps`
  bytes and/or `io_iops` operations a second, reads and writes each (1 iops: a stalled disk), by
  the block I/O controller of the container's cgroup (v1 `blkio.throttle.*`, v2 `io.max`),
  written by the harness as root, or else from a privileged helper container (a user in the docker
  group needs no root; some Docker hosts, this one included, refuse privileged containers). It limits what
  the container's processes submit: direct I/O and fsyncs, which is what a database waits on
  (buffered writes reach the disk later, through the kernel's own threads). Part of the
  container's cgroup, it ends with a restart of the container. Verified by timing direct writes
  of a fixed size in the data directory, before and after.
- `bandwidth`: each host's packets across two sides limited to `rate` bits a second, by a token
  bucket (TBF) behind an IFB device in the nodes on the link: a node's packets to its peers across
  it on its egress, and what the database or the load balancer (which hold nothing) send it on its
  ingress; u32 filters on the peers' addresses pick the packets, so nothing else on the interface
  is touched. Held like delay: shaped again on a node that restarts. Verified by a timed transfer
  from each node across the link (to a peer node, else with the database, else through the load
  balancer), before and after: within a fifth of the rate, and faster before.
- `exhaust`: a rogue client takes the database's free connections, all but `leave`, and keeps
  taking what is freed (lab/agent/connhold.py), in a container of its own labelled with the lab
  and the fault, so that `halab heal` finds and removes it, connections and all, whoever started
  it; a database restart does not end it (the client takes the slots again). Verified by the
  database's Threads_connected against max_connections and, with none left, a new connection
  refused with `1040 Too many connections`.

Every command reaches the container where it runs (backend.place): by this machine's Docker on a
compose lab, by the Docker of the task's host and the container's id on a swarm lab; `io` and
`exhaust` act from this machine and are a compose lab's only (spec.SWARM_REFUSED).
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lab.cluster import addressing, compose, docker, probes, state
from lab.cluster.compose import container_name
from lab.cluster.docker import ContainerState
from lab.cluster.engine import Place
from lab.cluster.topology import Topology
from lab.core.errors import FaultNotEffective, RuntimeFailure
from lab.faults import backend
from lab.faults.netmodel import Cut, path_ip
from lab.faults.spec import DB, FaultSpec

QUEUE_BASE = 3000  # NFQUEUE numbers used by delay faults: QUEUE_BASE + a hash of the fault id

# A delay's measured round trip may miss the asked one by this share (the 20 %) plus
# TOLERANCE_FLOOR seconds (a handshake's own time varies by a millisecond or so).
TOLERANCE, TOLERANCE_FLOOR = 0.2, 0.003
RTT_SAMPLES = 9


def queue_of(fault_id: str) -> int:
    return QUEUE_BASE + zlib.crc32(fault_id.encode()) % 1000


# ------------------------------------------------------------------------------ delay: the plan


def carriers(links: Sequence[Cut], nodes: Collection[str]) -> dict[str, list[tuple[str, float]]]:
    """node -> [(peer, share of the delay)]: the packets each node holds back, only ones it receives
    (INPUT). From a peer node half the delay (the peer holds back the other half, the other way);
    from the database or the load balancer, which hold no rules, all of it.

    Never on OUTPUT: a packet held there is still charged to its TCP socket, and TCP small queues
    then let the socket send only every couple of packets per delay (bulk sends fell from 4 MB/s
    to 0.03 MB/s at 100 ms; lab/agent/nfqdelay.py)."""
    out: dict[str, list[tuple[str, float]]] = {}
    for c in links:
        entry = (c.src, 0.5 if c.src in nodes else 1.0)
        if c.dst in nodes and entry not in out.setdefault(c.dst, []):
            out[c.dst].append(entry)
    return out


def queue_for(base: int, share: float) -> int:
    """A fault's queues: `base` holds half the delay, base + 1000 all of it."""
    return base if share < 1.0 else base + 1000


_NFQUEUE = ("-j", "NFQUEUE", "--queue-num")


def delay_rules(
    plan: Mapping[str, Sequence[tuple[str, float]]], ips: Mapping[str, Mapping[str, str]], tag: str, base: int
) -> dict[str, list[list[str]]]:
    """node -> iptables argument lists queueing the packets it receives across the link."""
    out: dict[str, list[list[str]]] = {}
    for node, entries in plan.items():
        for peer, share in entries:
            for ip in sorted(ips.get(peer, {}).values()):
                rule = ["-A", "INPUT", "-s", ip, "-m", "comment", "--comment", tag]
                out.setdefault(node, []).append([*rule, *_NFQUEUE, str(queue_for(base, share)), "--queue-bypass"])
    return out


def probe_targets(
    t: Topology, plan: Mapping[str, Sequence[tuple[str, float]]], ips: Mapping[str, Mapping[str, str]]
) -> dict[str, tuple[str, str, int]]:
    """node -> (peer, address, port) whose handshake shows the delay: the node's first peer across
    the link, reached the way the node reaches it."""
    out = {}
    for node, entries in plan.items():
        peer = entries[0][0]
        ip = path_ip(peer, ips, t.node(node).dc)
        if ip:
            out[node] = (peer, ip, backend.PORTS.get(peer, backend.ZK_PORT))
    return out


# ------------------------------------------------------------------------- delay: in the nodes

# Median TCP handshake time (seconds) to ip:port over n connects; a refused connect counts (its
# RST crosses the link just the same).
_RTT = r"""
import socket, statistics, sys, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = []
for _ in range(n):
    s = socket.socket(); s.settimeout(15)
    t0 = time.perf_counter()
    try: s.connect((ip, port))
    except ConnectionRefusedError: pass
    out.append(time.perf_counter() - t0)
    s.close()
print(statistics.median(out))
"""

# Starts the delayer in the background (tini reaps it) and waits for its `ready`.
_START_DELAYER = """set -eu
log=/tmp/halab-nfqdelay-$1.log
python3 -m lab.agent.nfqdelay --queue "$1" --delay-ms "$2" --jitter-ms "$3" >"$log" 2>&1 &
i=0
until grep -q ready "$log"; do
  kill -0 $! 2>/dev/null || { cat "$log" >&2; exit 1; }
  i=$((i+1)); [ $i -lt 100 ] || { echo "delayer not ready after 10 s" >&2; exit 1; }
  sleep 0.1
done
"""

# Stops this host's delayers of some queues ("3007,4007"; "" for every queue) and prints how many:
# SIGTERM releases what they hold. With "list", only counts them.
_STOP_DELAYERS = r"""
import os, signal, sys
wants, only_count = [q.encode() for q in sys.argv[1].split(',') if q], sys.argv[2:] == ['list']
n = 0
for p in filter(str.isdigit, os.listdir('/proc')):
    try: cmd = open(f'/proc/{p}/cmdline', 'rb').read().split(b'\0')
    except OSError: continue
    if b'lab.agent.nfqdelay' in cmd and (not wants or any(q in cmd for q in wants)):
        n += 1
        if not only_count: os.kill(int(p), signal.SIGTERM)
print(n)
"""


def measure_rtt(t: Topology, targets: Mapping[str, tuple[str, str, int]]) -> dict[str, float]:
    """node -> median handshake time (s) to its probe target."""
    where = backend.places(t, targets)

    def one(node: str) -> tuple[str, float]:
        _, ip, port = targets[node]
        out = backend.exec_in(
            where[node],
            ["python3", "-c", _RTT, ip, str(port), str(RTT_SAMPLES)],
            f"measure the round trip from {node} to {ip}",
            timeout=120,
        )
        return node, float(out.strip())

    with ThreadPoolExecutor(max(1, len(targets))) as ex:
        return dict(ex.map(one, targets))


def start_delayers(t: Topology, plan: Mapping[str, Sequence[tuple[str, float]]], base: int, spec: FaultSpec) -> None:
    """In each node of `plan`, a delayer per share of the delay it holds back."""
    todo = [(node, share) for node, entries in plan.items() for share in sorted({s for _, s in entries})]
    where = backend.places(t, plan)

    def one(job: tuple[str, float]) -> None:
        node, share = job
        delay_ms, jitter_ms = (spec.delay or 0) * share * 1000, (spec.jitter or 0) * share * 1000
        backend.exec_in(
            where[node],
            ["sh", "-s", "--", str(queue_for(base, share)), f"{delay_ms:.3f}", f"{jitter_ms:.3f}"],
            f"start a delayer in {node}",
            root=True,
            input=_START_DELAYER,
        )

    with ThreadPoolExecutor(max(1, len(todo))) as ex:
        list(ex.map(one, todo))


def stop_delayers(t: Topology, nodes: Sequence[str], base: int | None, *, only_count: bool = False) -> dict[str, int]:
    """Stop the delayers of the fault with queue `base` (None: every delayer) in the running
    `nodes`; node -> how many there were (a node that is not running has none: they went with it)."""
    queues = "" if base is None else f"{queue_for(base, 0.5)},{queue_for(base, 1.0)}"
    args = ["python3", "-c", _STOP_DELAYERS, queues, *(["list"] if only_count else [])]
    where = backend.places(t, nodes)

    def one(node: str) -> tuple[str, int]:
        try:
            out = backend.exec_in(
                where[node], args, f"{'count' if only_count else 'stop'} the delayers in {node}", root=True
            )
        except RuntimeFailure:
            return node, 0
        return node, int(out.strip() or 0)

    with ThreadPoolExecutor(max(1, len(nodes))) as ex:
        return dict(ex.map(one, nodes))


def require(
    spec: FaultSpec,
    measured: Mapping[str, float],
    missed: Mapping[str, float],
    what: str,
    show: Callable[[float], str],
    expected: str,
) -> None:
    """FaultNotEffective unless something was measured and nothing missed the asked effect; the
    message names the misses (or, nothing measured right, everything measured)."""
    if measured and not missed:
        return
    shown = ", ".join(f"{show(v)} ({n})" for n, v in sorted((missed or measured).items()))
    raise FaultNotEffective(f"{spec.describe()}: {what} {shown}, {expected}")


def check_delay(spec: FaultSpec, before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, Any]:
    """The measured effect per node; FaultNotEffective when one misses the asked delay."""
    want = spec.delay or 0.0
    added = {n: after[n] - before[n] for n in after if n in before}
    off = {n: a for n, a in added.items() if abs(a - want) > TOLERANCE * want + TOLERANCE_FLOOR}
    require(
        spec,
        added,
        off,
        "the round trip grew by",
        lambda a: f"{a * 1000:.1f} ms",
        f"not {want * 1000:g} ms ± {TOLERANCE:.0%}",
    )
    return {
        "rtt_before_ms": {n: round(v * 1000, 2) for n, v in before.items()},
        "rtt_after_ms": {n: round(v * 1000, 2) for n, v in after.items()},
    }


# ------------------------------------------------------------------------------------- stall

# Signals the processes of one kind on this host and prints {pid: state} from /proc; exit 3 when
# there is none. The server is the supervisor's child `python3 -m lab.server serve`.
_SIGNAL_PROCESS = r"""
import json, os, signal, sys
kind, sig = sys.argv[1], int(sys.argv[2]) if sys.argv[2].isdigit() else getattr(signal, sys.argv[2])
def matches(cmd):
    if kind == 'zookeeper': return any(a.endswith(b'.QuorumPeerMain') for a in cmd)
    if kind == 'redis': return cmd[0].split(b' ')[0].endswith(b'redis-server')  # it retitles itself
    return cmd[1:4] == [b'-m', b'lab.server', b'serve']
found = {}
for p in filter(str.isdigit, os.listdir('/proc')):
    try: cmd = open(f'/proc/{p}/cmdline', 'rb').read().split(b'\0')
    except OSError: continue
    if matches(cmd):
        os.kill(int(p), sig)
        found[p] = None
if not found: sys.exit(3)
import time; time.sleep(0.2)
for p in found:
    try: found[p] = open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[0]
    except OSError: found[p] = 'gone'
print(json.dumps(found))
"""


def signal_process(t: Topology, node: str, process: str, signal_name: str) -> dict[str, str]:
    """pid -> process state after sending the signal to every `process` of the node."""
    try:
        out = backend.exec_in(
            backend.place(t, node),
            ["python3", "-c", _SIGNAL_PROCESS, process, signal_name],
            f"{signal_name} the {process} of {node}",
            # As the processes' own user: the container's root has no CAP_KILL (compose drops it).
        )
    except RuntimeFailure as exc:
        if exc.return_code == 3:
            raise RuntimeFailure(f"{node} runs no {process} (this profile's nodes may not have one)") from exc
        raise
    found: dict[str, str] = json.loads(out)
    return found


# ------------------------------------------------------------------------------------- clock

CLOCK_FILE = "/tmp/halab-clock"  # lab/server/hostclock.py's
CLOCK_TOLERANCE = 1.0  # seconds: the bound; a read takes a few milliseconds
# The offset file is read at most once a second: a check waits that long after writing it.
CLOCK_REREAD = 1.0

# A drift is verified over a window in which it moves the clock by DRIFT_SHOWN, within these bounds.
DRIFT_SHOWN, DRIFT_WINDOW = 1.0, (2.0, 10.0)
DRIFT_TOLERANCE = 0.2  # the share of the asked drift the measured one may miss, plus the reads' error

# Prints the node's server's wall clock, from its status.
_READ_CLOCK = (
    "import json, urllib.request\n"
    "print(json.load(urllib.request.urlopen('http://127.0.0.1:8080/status.json', timeout=5))['clock'])\n"
)
# Replaces the offset file in one rename, so that a process never reads half of it.
_SET_CLOCK = f'printf "%s\\n" "$1" > {CLOCK_FILE}.new && mv {CLOCK_FILE}.new {CLOCK_FILE}'


@dataclass(frozen=True)
class ClockReading:
    at: float  # the harness's clock at the read's midpoint
    offset: float  # the node's server's clock minus the harness's, seconds
    error: float  # half the read's duration: how far the server's own read may be from `at`


def set_clock(t: Topology, node: str, offset: float, drift: float = 0.0, since: float = 0.0) -> None:
    """The node's clock offset (`+10`, `-2.5`: seconds), in its server's and cluster-manager's eyes;
    with a drift, the offset at true time `since`, growing by `drift` seconds a second from there."""
    text = f"{offset:+g} {drift:+g} {since:.6f}" if drift else f"{offset:+g}"
    backend.exec_in(
        backend.place(t, node), ["sh", "-c", _SET_CLOCK, "clock", text], f"set the clock of {node}", root=True
    )


def read_clock(t: Topology, node: str, found: Mapping[str, ContainerState] | None = None) -> ClockReading:
    """The node's server's clock against the harness's; `found`: the lab's containers as just read
    (backend.containers), so that the read's own time holds only the read."""
    where = backend.place(t, node, found)
    t0 = time.time()
    out = backend.exec_in(where, ["python3", "-c", _READ_CLOCK], f"read the clock of {node}")
    t1 = time.time()
    return ClockReading((t0 + t1) / 2, float(out.strip()) - (t0 + t1) / 2, (t1 - t0) / 2)


def expected_offset(spec: FaultSpec, since: float, at: float) -> float:
    return (spec.offset or 0.0) + (spec.drift or 0.0) * (at - since)


def clock_set(spec: FaultSpec, since: float, readings: Mapping[str, ClockReading]) -> bool:
    return bool(readings) and all(
        abs(r.offset - expected_offset(spec, since, r.at)) <= CLOCK_TOLERANCE for r in readings.values()
    )


def drift_window(spec: FaultSpec) -> float:
    """Seconds between the two reads that verify a drift."""
    low, high = DRIFT_WINDOW
    return min(high, max(low, DRIFT_SHOWN / abs(spec.drift))) if spec.drift else 0.0


def check_clock(
    spec: FaultSpec,
    since: float,
    first: Mapping[str, ClockReading],
    later: Mapping[str, ClockReading] | None = None,
) -> dict[str, Any]:
    """The clock is where the fault put it (offset, plus the drift since it was set) within
    CLOCK_TOLERANCE; with a drift, it also gained the asked drift between `first` and `later`."""
    off = {
        n: r.offset for n, r in first.items() if abs(r.offset - expected_offset(spec, since, r.at)) > CLOCK_TOLERANCE
    }
    want = spec.offset or 0.0
    require(
        spec,
        {n: r.offset for n, r in first.items()},
        off,
        "the clock is",
        lambda v: f"{v:+.2f} s off",
        f"not {want:+g} s ± {CLOCK_TOLERANCE:g}" + (" plus its drift" if spec.drift else ""),
    )
    detail: dict[str, Any] = {"offset_s": {n: round(r.offset, 3) for n, r in first.items()}}
    if not spec.drift:
        return detail
    later = later or {}
    rates: dict[str, float] = {}
    missed: dict[str, float] = {}
    for n, r in first.items():
        if n not in later or later[n].at <= r.at:
            continue
        span = later[n].at - r.at
        gained = later[n].offset - r.offset
        rates[n] = gained / span
        if abs(gained - spec.drift * span) > DRIFT_TOLERANCE * abs(spec.drift) * span + r.error + later[n].error:
            missed[n] = rates[n]
    require(
        spec,
        rates,
        missed,
        "the clock drifted",
        lambda v: f"{v * 1000:+.1f} ms/s",
        f"not {spec.drift * 1000:+g} ms/s ± {DRIFT_TOLERANCE:.0%}",
    )
    return {**detail, "drift_ms_per_s": {n: round(v * 1000, 2) for n, v in rates.items()}}


# ---------------------------------------------------------------------------------------- io

IO_PROBE_WRITES = 2000  # at most, for an operations limit
DATA_DIRS = {"db": "/var/lib/mysql"}  # a node's: its ZooKeeper member's
NODE_DATA_DIR = "/var/lib/halab"

# Writes the throttle for one container (by id) and one device into its cgroup, whichever the
# host has: v1 blkio (cgroupfs or systemd layout) or v2 io.max. A partition maps to its disk (the
# throttle is per disk). 0 lifts a limit. Run in a privileged container that sees /sys.
_THROTTLE = r"""set -eu
id=$1 dev=$2 bps=$3 iops=$4
[ -e /sys/dev/block/$dev/partition ] && dev=$(cat /sys/dev/block/$dev/../dev)
for d in /sys/fs/cgroup/blkio/docker/$id /sys/fs/cgroup/blkio/system.slice/docker-$id.scope; do
  [ -d "$d" ] || continue
  for f in read_bps_device write_bps_device; do echo "$dev $bps" > "$d/blkio.throttle.$f"; done
  for f in read_iops_device write_iops_device; do echo "$dev $iops" > "$d/blkio.throttle.$f"; done
  exit 0
done
for d in /sys/fs/cgroup/docker/$id /sys/fs/cgroup/system.slice/docker-$id.scope; do
  [ -d "$d" ] || continue
  echo "$dev rbps=$bps wbps=$bps riops=$iops wiops=$iops" | sed -E 's/=0( |$)/=max\1/g' > "$d/io.max"
  exit 0
done
echo "no cgroup of container $id under /sys/fs/cgroup" >&2; exit 1
"""

# Times `count` direct writes of `size` bytes over a file laid out beforehand in the data
# directory, seconds: one I/O each. (New blocks would cost journal writes too, and under 1 iops,
# which the database's own writes share, the check alone held the disk for 12 s.)
_DIRECT_WRITES = """set -eu
f="$1/.halab-io-probe"
[ -s "$f" ] || dd if=/dev/zero of="$f" bs="$2" count="$3" 2>/dev/null
a=$(date +%s%N)
dd if=/dev/zero of="$f" bs="$2" count="$3" oflag=direct conv=notrunc 2>/dev/null
b=$(date +%s%N)
[ "$4" = keep ] || rm -f "$f"
echo $(( (b-a)/1000 ))
"""


# The host's cgroup tree in a throwaway root container (a user in the docker group needs no root).
_PRIVILEGED = (
    *("docker", "run", "--rm", "--privileged", "--cgroupns", "host", "--network", "none", "-u", "root"),
    *("-v", "/sys/fs/cgroup:/sys/fs/cgroup", "--entrypoint", "sh"),
)


def data_dir(service: str) -> str:
    return DATA_DIRS.get(service, NODE_DATA_DIR)


def data_device(t: Topology, service: str) -> str:
    """MAJOR:MINOR of the disk under the service's data directory."""
    out = backend.exec_in(
        backend.place(t, service), ["stat", "-c", "%Hd:%Ld", data_dir(service)], f"find {service}'s data disk"
    ).strip()
    if out.startswith("0:"):
        raise RuntimeFailure(f"{service}'s data directory is on no block device ({out}): an io fault needs one")
    return out


def throttle(t: Topology, service: str, device: str, bps: int, iops: int) -> None:
    from lab.cluster import images

    where = backend.place(t, service)
    cid = docker.run(where.command("inspect", "--format", "{{.Id}}", where.container), f"find {service}")
    # As root, on this host's cgroup tree (some Docker hosts refuse privileged containers); else
    # from a privileged container, so that a user in the docker group needs no root.
    runner = ["sh"] if os.geteuid() == 0 else [*_PRIVILEGED, images.image_tags()["node"]]
    args = [*runner, "-c", _THROTTLE, "throttle", cid.strip(), device, str(bps), str(iops)]
    docker.run(args, f"throttle the disk of {service}", timeout=60)


def write_time(t: Topology, service: str, size: int, count: int, *, keep: bool = False) -> float:
    """Seconds `count` direct writes of `size` bytes take in the service's data directory; with
    `keep`, their file stays for the next measurement to overwrite."""
    out = backend.exec_in(
        backend.place(t, service),
        ["sh", "-c", _DIRECT_WRITES, "io", data_dir(service), str(size), str(count), "keep" if keep else "-"],
        f"time direct writes in {service}",
        timeout=300,
    )
    return int(out.strip()) / 1e6


def io_probe(spec: FaultSpec) -> tuple[int, int]:
    """(size, count) of the direct writes that show the limit in about two seconds: the
    operations limit needs two seconds' worth of writes (the block throttle lets a burst through
    at once: 64 writes under 500 iops took 0.01 s), the bytes limit enough bytes."""
    if spec.io_bps:
        size = 64 * 1024
        return size, max(4, min(64, 2 * spec.io_bps // size))
    return 4096, max(3, min(IO_PROBE_WRITES, 2 * (spec.io_iops or 1)))


def check_io(
    spec: FaultSpec, size: int, count: int, before: Mapping[str, float], after: Mapping[str, float]
) -> dict[str, Any]:
    """The writes must take at least what the limits allow, less a fifth, and longer than before."""
    floor = max(
        (size * count - 2 * size) / spec.io_bps if spec.io_bps else 0.0,  # a token bucket lets the first through
        (count - 2) / spec.io_iops if spec.io_iops else 0.0,
    ) * (1 - TOLERANCE)
    weak = {s: a for s, a in after.items() if a < floor or a <= before.get(s, 0.0)}
    require(
        spec,
        after,
        weak,
        f"{count} direct writes of {size} bytes took",
        lambda a: f"{a:.2f} s",
        f"not at least {floor:.2f} s",
    )
    return {
        "probe": f"{count} direct writes of {size} bytes",
        "write_s_before": {s: round(v, 3) for s, v in before.items()},
        "write_s_after": {s: round(v, 3) for s, v in after.items()},
    }


# --------------------------------------------------------------------------------------- cpu

# A fixed amount of single-threaded work timed inside the container, in a shell so that it runs in
# every image (the database and load balancer have no Python).
# A fixed busy loop, between two readings of the container's own CPU counters (its cgroup, as the
# container sees it: v2 `cpu.stat`, else v1 `cpuacct.usage` and `cpu.stat`). Prints the loop's wall
# time, the CPU time the container used meanwhile and the time its CFS quota held it back, in
# microseconds. What the container used against the wall clock says what the quota let it have
# whatever else the machine runs; a wall-clock slowdown alone does not (a loaded machine slows the
# loop before the quota does, and the ratio falls short).
_BUSY = r"""
r() {
  if [ -r /sys/fs/cgroup/cpu.stat ] && [ ! -d /sys/fs/cgroup/cpu ]; then
    while read -r k v; do case $k in usage_usec) u=$v;; throttled_usec) h=$v;; esac; done < /sys/fs/cgroup/cpu.stat
  else
    u=$(( $(cat /sys/fs/cgroup/cpuacct/cpuacct.usage) / 1000 ))
    while read -r k v; do case $k in throttled_time) h=$((v / 1000));; esac; done < /sys/fs/cgroup/cpu/cpu.stat
  fi
}
r; u0=$u; h0=$h; a=$(date +%s%N)
i=0; while [ $i -lt "$1" ]; do i=$((i+1)); done
b=$(date +%s%N); r
echo $(( (b-a)/1000 )) $((u-u0)) $((h-h0))
"""
BUSY_LOOPS = 200_000
# With a quota of c CPUs the container may use c of each wall second, plus what one CFS period's
# boundary lets through; held back it must have been, the loop asking for a whole CPU.
CPU_SHARE_SLACK = 0.25


@dataclass(frozen=True)
class BusyLoop:
    wall_s: float  # the loop's wall time
    used_s: float  # CPU seconds the container used meanwhile (the loop and whatever else runs there)
    throttled_s: float  # seconds its CFS quota held it back meanwhile

    @property
    def share(self) -> float:
        """CPUs the container used during the loop."""
        return self.used_s / self.wall_s if self.wall_s > 0 else 0.0


def busy_loop(t: Topology, service: str) -> BusyLoop:
    """A fixed busy loop in the service's container, with the container's CPU counters around it."""
    out = backend.exec_in(
        backend.place(t, service), ["sh", "-c", _BUSY, "busy", str(BUSY_LOOPS)], f"time a busy loop in {service}"
    )
    try:
        wall, used, held = (int(x) / 1e6 for x in out.split())
    except ValueError:
        raise RuntimeFailure(f"time a busy loop in {service}: unreadable counters {out.strip()!r}") from None
    return BusyLoop(wall, used, held)


CPU_PERIOD = 100_000  # microseconds: the CFS period Docker uses


def set_cpu_quota(t: Topology, services: Sequence[str], quota_us: int) -> None:
    """The containers' CFS quota per CPU_PERIOD, microseconds; 0 or less lifts it. (Not `--cpus`:
    Docker cannot take a NanoCpus limit back, `--cpus 0` leaves it as it was.)"""
    args = ["docker", "update", "--cpu-period", str(CPU_PERIOD), "--cpu-quota", str(quota_us if quota_us > 0 else -1)]
    backend.act(t, args, services, "set the CPU quota of", 60)


def cpu_quota(t: Topology, service: str) -> int:
    """The container's CFS quota, microseconds per period; 0 or -1: none."""
    where = backend.place(t, service)
    out = docker.run(
        where.command("inspect", "--format", "{{.HostConfig.CpuQuota}}", where.container),
        f"read the CPU quota of {service}",
    )
    return int(out.strip() or 0)


def check_cpu(spec: FaultSpec, loops: Mapping[str, BusyLoop]) -> dict[str, Any]:
    """The quota holds when a busy loop in the container was held back by it and the container used
    no more than the asked CPUs meanwhile."""
    cap = (spec.cpus or 1.0) * (1 + CPU_SHARE_SLACK)
    over = {s: b.share for s, b in loops.items() if b.share > cap}
    require(
        spec,
        {s: b.share for s, b in loops.items()},
        over,
        "the container used",
        lambda r: f"{r:.2f} CPUs",
        f"expected at most {spec.cpus:g}",
    )
    free = {s: b.throttled_s for s, b in loops.items() if b.throttled_s <= 0}
    require(
        spec,
        {s: b.throttled_s for s, b in loops.items()},
        free,
        "its quota held a busy loop back for",
        lambda r: f"{r:.2f} s",
        "expected it to be held back",
    )
    return {
        "busy_s": {s: round(b.wall_s, 3) for s, b in loops.items()},
        "cpus_used": {s: round(b.share, 3) for s, b in loops.items()},
        "throttled_s": {s: round(b.throttled_s, 3) for s, b in loops.items()},
    }


# ------------------------------------------------------------------------------ bandwidth: the plan

# TBF's bucket (burst): this much of the rate, at least a few full frames (a frame larger than the
# bucket could never leave). Its queue (limit) holds QUEUE_TIME of the rate: a packet that finds it
# full is dropped and TCP resends it (docs/survivability.md, "Bandwidth and connections").
BURST_TIME, BURST_MIN = 0.01, 4096
QUEUE_TIME = 0.1
PROBE_TIME, PROBE_MAX = 2.0, 8 * 1024**2  # a transfer takes about this long, up to this many bytes
PROBE_PORT = 5990  # a node's transfer sink listens on PROBE_PORT + the probe's index


def shapers(links: Sequence[Cut], nodes: Collection[str]) -> dict[str, list[tuple[str, str]]]:
    """node -> [(direction, peer)]: where each direction across the link is shaped, once: on the
    sender's egress (`e`), or on the receiver's ingress (`i`) when the sender cannot hold a shaper
    (the database and the load balancer have no NET_ADMIN and no tc), as `netmodel.rules` places
    a cut. A node's packets to all its peers across the link share one bucket, and so do those it
    receives: the rate is per host and direction, not for the whole link."""
    out: dict[str, list[tuple[str, str]]] = {}
    for c in links:
        if c.src in nodes:
            at, entry = c.src, ("e", c.dst)
        elif c.dst in nodes:
            at, entry = c.dst, ("i", c.src)
        else:
            continue
        if entry not in out.setdefault(at, []):
            out[at].append(entry)
    return out


def shaped_addresses(
    plan: Mapping[str, Sequence[tuple[str, str]]], ips: Mapping[str, Mapping[str, str]]
) -> dict[str, list[str]]:
    """node -> `e:<peer address>` / `i:<peer address>` for the shaping script, every address of each peer."""
    return {
        node: [f"{d}:{ip}" for d, peer in entries for ip in sorted(ips.get(peer, {}).values())]
        for node, entries in plan.items()
    }


def burst_bytes(rate: int) -> int:
    return max(BURST_MIN, round(rate / 8 * BURST_TIME))


def probe_bytes(rate: int) -> int:
    """A transfer long enough that the bucket's burst is a small share of it."""
    return min(PROBE_MAX, max(round(rate / 8 * PROBE_TIME), 16 * burst_bytes(rate)))


# ------------------------------------------------------------------------- bandwidth: in the nodes

# tc runs inside the node, from the node image's iproute2, by `docker exec -u root` as iptables
# does (the container keeps NET_ADMIN for it), rather than the host's tc through `nsenter -t <pid>
# -n`: that would need root on the very host that runs the containers (not Docker Desktop's VM nor a
# remote daemon) and a host with iproute2, while this needs only what every other fault needs.
#
# One fault on one node: an IFB device per shaped direction (hb<id>e, hb<id>i), each with a TBF
# root qdisc; a clsact qdisc on each of the node's interfaces whose u32 filters (preference: the
# fault's number) redirect the packets to or from the peers' addresses into them. Nothing else on
# the interface changes. `set` first clears what the fault had here (a reapply), `clear` removes
# the fault's filters and devices, `sweep` every fault's (f `*`, pref ``); both print how many
# devices they removed, then how many remain. `count` prints how many every fault has here.
_SHAPING = r"""set -eu
mode=$1 f=$2 pref=$3; shift 3
ifbs() { for l in $(ls /sys/class/net); do case $l in hb$f[ei]) echo "$l" ;; esac; done; }
if [ "$mode" = count ]; then ifbs | wc -l; exit 0; fi
# An image without tc has nothing shaped to clear (set fails below, naming what is missing).
command -v tc >/dev/null || [ "$mode" = set ] || { echo "0 0"; exit 0; }
veths=$(ip -br link show type veth | cut -d@ -f1)
for dev in $veths; do
  if [ -z "$pref" ]; then tc qdisc del dev "$dev" clsact 2>/dev/null || true; continue; fi
  for hook in egress ingress; do tc filter del dev "$dev" $hook pref "$pref" 2>/dev/null || true; done
done
removed=0
for l in $(ifbs); do ip link del "$l"; removed=$((removed+1)); done
if [ "$mode" != set ]; then echo "$removed $(ifbs | wc -l)"; exit 0; fi
rate=$1 burst=$2 queue=$3; shift 3
for d in e i; do
  case " $* " in *" $d:"*) ;; *) continue ;; esac
  ip link add "hb$f$d" type ifb
  ip link set "hb$f$d" up
  tc qdisc add dev "hb$f$d" root tbf rate "${rate}bit" burst "$burst" latency "${queue}ms"
done
for dev in $veths; do
  tc qdisc show dev "$dev" | grep -q '^qdisc clsact' || tc qdisc add dev "$dev" clsact
  for e in "$@"; do
    d=${e%%:*} ip=${e#*:}
    if [ "$d" = e ]; then hook=egress key=dst; else hook=ingress key=src; fi
    tc filter add dev "$dev" $hook pref "$pref" protocol ip u32 match ip $key "$ip/32" \
      action mirred egress redirect dev "hb$f$d"
  done
done
"""


def _shaping(t: Topology, node: str, args: Sequence[str], what: str) -> str:
    return backend.root_script(t, node, _SHAPING, args, f"{what} in {node}", {"tc": "iproute2", "ip": "iproute2"})


def shape(t: Topology, shaped: Mapping[str, Sequence[str]], fault_id: str, spec: FaultSpec) -> None:
    """On each node of `shaped` (from shaped_addresses), this fault's shaping, replacing what it had there."""
    rate = spec.rate or 0
    args = [str(rate), str(burst_bytes(rate)), f"{QUEUE_TIME * 1000:g}"]

    def one(node: str) -> None:
        _shaping(t, node, ["set", fault_id, str(queue_of(fault_id)), *args, *shaped[node]], "shape the link")

    with ThreadPoolExecutor(max(1, len(shaped))) as ex:
        list(ex.map(one, shaped))


def unshape(t: Topology, nodes: Sequence[str], fault_id: str | None) -> dict[str, tuple[int, int]]:
    """Remove a fault's shaping (None: every fault's) from the running `nodes`; node -> (devices
    removed, devices left)."""
    args = ["clear", fault_id, str(queue_of(fault_id))] if fault_id else ["sweep", "*", ""]

    def one(node: str) -> tuple[str, tuple[int, int]]:
        removed, left = _shaping(t, node, args, "remove the shaping").split()
        return node, (int(removed), int(left))

    with ThreadPoolExecutor(max(1, len(nodes))) as ex:
        return dict(ex.map(one, nodes))


def count_shapers(t: Topology, nodes: Sequence[str]) -> dict[str, int]:
    """node -> shaping devices of any fault in it (the running `nodes`)."""

    def one(node: str) -> tuple[str, int]:
        return node, int(_shaping(t, node, ["count", "*", ""], "count the shaping").strip() or 0)

    with ThreadPoolExecutor(max(1, len(nodes))) as ex:
        return dict(ex.map(one, nodes))


# Times one transfer of n bytes across a link, printing bytes per second. `sink PORT N` takes one
# connection, reads n bytes and answers one byte; `send IP PORT N` connects (the sink may not listen
# yet) and times from its first byte to that answer. `db-in IP N` / `db-out IP N`: n bytes from or
# to the database in one statement, as the node's own user. `lb IP N NODE`: a body of n bytes
# (at most LB_PROBE_MAX, under the server's limit) that is no JSON, posted through the load
# balancer's `/node/NODE/` route to another node, which reads it whole and refuses it (400),
# creating nothing: one stream out of this node, HAProxy forwarding it as it comes. (Posted to
# the node itself, or fetching its answers, the probe's own data and acknowledgements crossed the
# same buckets both ways and waited behind each other: 0.63 to 0.79 of the rate.)
_TRANSFER = r"""
import socket, sys, time
LB_PROBE_MAX = 900 * 1024
mode, args = sys.argv[1], sys.argv[2:]
def done(n, t0): print(n / (time.perf_counter() - t0))
if mode == "sink":
    port, n = int(args[0]), int(args[1])
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(1); s.settimeout(60)
    c, _ = s.accept(); c.settimeout(60); got = 0
    while got < n:
        b = c.recv(1 << 16)
        if not b: sys.exit("the sender went away")
        got += len(b)
    c.sendall(b"k")
elif mode == "send":
    ip, port, n = args[0], int(args[1]), int(args[2])
    for _ in range(200):
        try: s = socket.create_connection((ip, port), timeout=60); break
        except ConnectionRefusedError: time.sleep(0.05)
    else: sys.exit(f"no sink at {ip}:{port}")
    t0 = time.perf_counter(); s.sendall(b"x" * n); s.recv(1); done(n, t0)
elif mode in ("db-in", "db-out"):
    import os
    from lab.server.db import driver
    from lab.server.config import read_password
    ip, n = args[0], int(args[1])
    c = driver.connect(host=ip, user=os.environ.get("CATTLE_DB_CATTLE_USERNAME", "cattle"),
                        password=read_password(os.environ), read_timeout=120, write_timeout=120)
    cur = c.cursor(); t0 = time.perf_counter()
    if mode == "db-in": cur.execute("SELECT REPEAT('x', %s)", (n,)); cur.fetchall()
    else: cur.execute("SELECT LENGTH(%s)", ("x" * n,)); cur.fetchall()
    done(n, t0)
else:
    import http.client
    ip, n, node = args[0], min(int(args[1]), LB_PROBE_MAX), args[2]
    h = http.client.HTTPConnection(ip, 18080, timeout=120)
    t0 = time.perf_counter()
    h.request("POST", f"/node/{node}/v1/projects", b"x" * n, {"Content-Type": "application/json"})
    answer = h.getresponse(); answer.read()
    if answer.status != 400: sys.exit(f"the body was not read: {answer.status}")
    done(n, t0)
"""


def _transfer(where: Place, node: str, args: Sequence[str], timeout: float) -> str:
    return backend.exec_in(
        where,
        ["python3", "-c", _TRANSFER, *args],
        f"time a transfer in {node} ({args[0]})",
        timeout=timeout,
    )


def transfer_probes(
    t: Topology, plan: Mapping[str, Sequence[tuple[str, str]]], ips: Mapping[str, Mapping[str, str]]
) -> dict[str, tuple[str, str]]:
    """node -> (direction, peer) of the one transfer that shows its shaping: to a peer node (a sink
    runs there), else with the database, else through the load balancer; sending where it can."""
    rank = {"e": 0, "i": 1}
    out = {}
    for node, entries in plan.items():
        # A peer node's packets to this one are shaped here only when that node cannot send them.
        usable = [
            (d, p) for d, p in entries if path_ip(p, ips, t.node(node).dc) and (d == "e" or p not in t.node_names)
        ]
        kind = {p: 0 if p in t.node_names else 1 if p == DB else 2 for _, p in usable}
        if usable:
            out[node] = min(usable, key=lambda e: (kind[e[1]], rank[e[0]]))
    return out


def measure_rates(
    t: Topology, chosen: Mapping[str, tuple[str, str]], ips: Mapping[str, Mapping[str, str]], rate: int
) -> dict[str, float]:
    """node -> bits per second of one transfer (probe_bytes(rate)) in its probe's direction."""
    n = probe_bytes(rate)
    timeout = 30 + 5 * n * 8 / rate
    where = backend.places(t, {*chosen, *(p for _, p in chosen.values() if p in t.node_names)})  # senders, sinks

    def one(job: tuple[int, str]) -> tuple[str, float]:
        i, node = job
        d, peer = chosen[node]
        ip = path_ip(peer, ips, t.node(node).dc) or ""
        if peer in t.node_names:
            port = str(PROBE_PORT + i)
            with ThreadPoolExecutor(1) as ex:
                sink = ex.submit(_transfer, where[peer], peer, ["sink", port, str(n)], timeout)
                out = _transfer(where[node], node, ["send", ip, port, str(n)], timeout)
                sink.result()
        elif peer == DB:
            out = _transfer(where[node], node, [f"db-{'out' if d == 'e' else 'in'}", ip, str(n)], timeout)
        else:  # another node reads the body, so that only the probe's acknowledgements come back
            other = next((x for x in t.node_names if x != node), node)
            out = _transfer(where[node], node, ["lb", ip, str(n), other], timeout)
        return node, float(out.strip()) * 8

    with ThreadPoolExecutor(max(1, len(chosen))) as ex:
        return dict(ex.map(one, enumerate(sorted(chosen))))


def check_rate(spec: FaultSpec, before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, Any]:
    """Each transfer must run at the asked rate ± a fifth, and have run faster than that before."""
    want = spec.rate or 0
    off = {n: r for n, r in after.items() if abs(r - want) > TOLERANCE * want or before.get(n, 0.0) <= r}
    require(
        spec,
        after,
        off,
        "a transfer across the link ran at",
        lambda r: f"{r / 1e6:.3f} mbit/s",
        f"not {want / 1e6:g} mbit/s ± {TOLERANCE:.0%} (and faster before: "
        + ", ".join(f"{before.get(n, 0.0) / 1e6:.3f} ({n})" for n in sorted(off or after))
        + ")",
    )
    return {
        "mbit_before": {n: round(v / 1e6, 3) for n, v in before.items()},
        "mbit_after": {n: round(v / 1e6, 3) for n, v in after.items()},
    }


# ----------------------------------------------------------------------------------- exhaust

# The rogue client of an exhaust fault runs in a container of its own, on the database's network
# at a fixed address, labelled with the lab (so `halab down` removes it) and the fault (so `halab
# heal` finds it, also after the harness that started it was killed). Its connections close with it.
ROGUE_ROLE = "rogue-client"
ROGUE_SETTLE = 30.0  # seconds it may take to open every free connection
ROGUE_LIFETIME = 86400.0  # an orphan gives up after a day


def db_connections(t: Topology) -> tuple[int, int]:
    """(Threads_connected, max_connections), as the database's local admin: the server keeps one
    slot beyond max_connections for it, and its own connection is one of those counted."""
    rows = probes.db_query(
        t,
        "SELECT @@max_connections AS most, VARIABLE_VALUE AS used FROM information_schema.GLOBAL_STATUS "
        "WHERE VARIABLE_NAME = 'THREADS_CONNECTED'",
    )
    return int(rows[0]["used"]), int(rows[0]["most"])


def rogue_name(t: Topology, fault_id: str) -> str:
    return f"{t.lab}-rogue-{fault_id}"


def start_rogue(t: Topology, fault_id: str, leave: int, db_ip: str) -> str:
    """Start the rogue client of fault `fault_id` (lab/agent/connhold.py) against the database at
    `db_ip`; return its container's name."""
    name = rogue_name(t, fault_id)
    # The node image, as the lab's nodes run it: it has Python, the nodes' MySQL driver and the agent.
    image = docker.run(
        ["docker", "inspect", "--format", "{{.Image}}", container_name(t, t.node_names[0])], "find the node image"
    ).strip()
    address = str(ipaddress.ip_network(f"{db_ip}/24", strict=False)[addressing.ROGUE_HOST])
    secret = state.lab_dir(t.lab) / compose.SECRET_FILES["db_password"]
    docker.run(
        [
            *("docker", "run", "-d", "--name", name, "--network", f"{t.lab}_db", "--ip", address),
            *("--label", f"{docker.LAB_LABEL}={t.lab}", "--label", f"halab.role={ROGUE_ROLE}"),
            *("--label", f"halab.fault={fault_id}", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true"),
            *("-e", f"CATTLE_DB_CATTLE_USERNAME={compose.DB_USER}"),
            *("-e", "CATTLE_DB_CATTLE_PASSWORD_FILE=/run/secrets/db_password"),
            *("-v", f"{secret}:/run/secrets/db_password:ro", image),
            *("python3", "-m", "lab.agent.connhold", "--host", db_ip, "--leave", str(leave)),
            *("--until", f"{time.time() + ROGUE_LIFETIME:.0f}"),
        ],
        f"start a rogue database client for {t.lab}",
        timeout=60,
    )
    return name


def rogue_probe(t: Topology, fault_id: str, db_ip: str) -> str:
    """One more connection as the nodes' user, from the rogue client's container: `ok`, or the
    server's refusal (`1040 Too many connections`)."""
    return backend.exec_in(
        rogue_name(t, fault_id),
        ["python3", "-m", "lab.agent.connhold", "--host", db_ip, "--probe"],
        "try one more database connection",
    ).strip()


def stop_rogues(t: Topology, fault_id: str | None, *, only_list: bool = False) -> list[str]:
    """Remove the rogue client of a fault (None: of every fault of the lab); return their names.
    With `only_list`, only name them."""
    filters = [f"label={docker.LAB_LABEL}={t.lab}", f"label=halab.role={ROGUE_ROLE}"]
    if fault_id:
        filters.append(f"label=halab.fault={fault_id}")
    args = ["docker", "ps", "-a", "--format", "{{.Names}}", *(x for f in filters for x in ("--filter", f))]
    names = docker.run(args, f"find rogue database clients of {t.lab}").split()
    if names and not only_list:
        docker.run(["docker", "rm", "-f", *names], "remove rogue database clients", timeout=60)
    return names


def check_exhaust(spec: FaultSpec, used: int, most: int, probe: str) -> dict[str, Any]:
    """The database must hold max_connections less `leave` (besides the admin's own reading), and
    with none left, refuse the next connection."""
    taken = used - 1
    want = most - (spec.leave or 0)
    require(
        spec,
        {DB: float(taken)},
        {DB: float(taken)} if taken < want else {},
        "the database had",
        lambda v: f"{v:.0f} connections",
        f"not {want} of its {most}",
    )
    if not spec.leave and not probe.startswith("1040"):
        raise FaultNotEffective(f"{spec.describe()}: a new connection was not refused for lack of slots: {probe}")
    return {"max_connections": most, "connections_after": taken, "new_connection": probe}
