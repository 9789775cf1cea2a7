"""Check of the NFQUEUE packet delayer (lab/agent/nfqdelay.py) on real packets: root only, no Docker.

Creates two network namespaces joined by a veth pair (A 10.99.0.1/24, B 10.99.0.2/24). Before any
delay it measures the ICMP round trip from A to B and one TCP transfer each way; then for each
delay case (default 100 ± 25 ms and 200 ± 50 ms) and each place of the NFQUEUE rule in A,

    output: iptables -w -I OUTPUT -d 10.99.0.2/32 -j NFQUEUE --queue-num Q --queue-bypass
    input:  iptables -w -I INPUT -s 10.99.0.2/32 -j NFQUEUE --queue-num Q --queue-bypass

(either adds the one-way delay once to every round trip), it

1. installs the rule and starts the delayer bound to queue Q in A (this Python, PYTHONPATH=the
   repository, waited for until it prints `ready`);
2. measures the ICMP round trip: `--probes` echo requests `--interval` s apart from a raw socket
   in A, on ping's schedule (a probe every interval whether or not the last reply came), summed up
   as ping does (min/avg/max/mdev), like `ping -c 20 -i 0.2`;
3. times one TCP connection per direction carrying `--tcp-mb` MB, from connect to the receiver's
   byte count coming back (A->B) or to the last byte (B->A), stopping after `--tcp-seconds`;
4. sends SIGTERM to the delayer (it must exit 0 within 10 s; its statistics line is shown),
   measures the round trip again with the rule still in place (nothing bound: --queue-bypass must
   let packets through undelayed), then removes the rule.

It fails (exit 1) when a case's average added round trip is not within 20 % of the asked delay, a
probe is lost, the delayer does not exit 0, the round trip after is not back within 5 ms of
before, or a TCP transfer does not complete in time, except one: A's own TCP data delayed on A's
OUTPUT, which is expected to crawl (tens of kB/s). TCP small queues: a TCP socket may have only
about a millisecond's worth of its pacing rate (at least two packets) in its host's queues and
devices, and a packet held in an NFQUEUE is still charged to its socket until the packet leaves
the host, so the sender stalls for the whole delay every couple of packets (netem avoids this by
orphaning the packets it delays, which userspace cannot do). Delaying on the receiving side's
INPUT does not have the problem; nor do ACKs and replies on OUTPUT (their sockets send little).
The namespaces are removed in any case.

    sudo .venv/bin/python bench/nfqdelay_netns.py [--cases 100:25,200:50] [--placements output,input]
        [--probes 20] [--interval 0.2] [--tcp-mb 5] [--tcp-seconds 15] [--queue 7]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
ADDR_A, ADDR_B = "10.99.0.1", "10.99.0.2"
TCP_PORT = 5201


# ------------------------------------------------------------------ run inside a namespace


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmp_ping(dest: str, count: int, interval: float, timeout: float = 3.0) -> dict[str, Any]:
    """Echo requests every `interval` s from a raw socket; round trips in ms by sequence number."""
    ident = os.getpid() & 0xFFFF
    sent: dict[int, float] = {}
    rtts: dict[int, float] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        start = time.monotonic()
        seq = 0
        while True:
            now = time.monotonic()
            if seq < count and now >= start + seq * interval:
                header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
                payload = b"nfqdelay-probe".ljust(56, b".")
                packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload
                sent[seq] = time.monotonic()
                s.sendto(packet, (dest, 0))
                seq += 1
                continue
            if seq >= count and (len(rtts) == count or now > sent[count - 1] + timeout):
                break
            wake = start + seq * interval if seq < count else sent[count - 1] + timeout
            if select.select([s], [], [], max(0.0, wake - now))[0]:
                data = s.recv(2048)
                received = time.monotonic()
                ihl = (data[0] & 0x0F) * 4
                icmp_type, _code, _sum, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
                if icmp_type == 0 and rid == ident and rseq in sent and rseq not in rtts:
                    rtts[rseq] = (received - sent[rseq]) * 1000
    return {"sent": count, "rtts_ms": [rtts[i] for i in sorted(rtts)]}


def tcp_server(bind: str, port: int) -> None:
    """One connection: a header (direction, size); receives (b"U") or sends (b"D") up to that many
    bytes, then answers with the byte count it received or waits for the client's."""
    with socket.create_server((bind, port)) as srv:
        print("listening", flush=True)
        conn, _ = srv.accept()
        with conn:
            header = conn.recv(9, socket.MSG_WAITALL)
            direction, size = header[:1], struct.unpack("!Q", header[1:])[0]
            if direction == b"U":
                got = 0
                while chunk := conn.recv(1 << 20):
                    got += len(chunk)
                conn.sendall(struct.pack("!Q", got))
            else:
                block = b"\0" * (1 << 16)
                left = size
                try:
                    while left:
                        left -= conn.send(block[: min(left, len(block))])
                    conn.shutdown(socket.SHUT_WR)
                    conn.recv(8, socket.MSG_WAITALL)
                except OSError:
                    pass  # the client hung up at its time limit


def tcp_client(dest: str, port: int, direction: str, size: int, limit_s: float) -> dict[str, Any]:
    """Up to `size` bytes in one direction, stopping after `limit_s` seconds; timed from connect to
    the receiver's byte count (upload) or to the last byte (download)."""
    start = time.monotonic()
    deadline = start + limit_s
    with socket.create_connection((dest, port), timeout=limit_s + 60) as c:
        c.sendall(direction.encode() + struct.pack("!Q", size))
        if direction == "U":
            block = b"\0" * (1 << 16)
            left = size
            c.settimeout(0.5)
            while left and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    left -= c.send(block[: min(left, len(block))])
            c.settimeout(limit_s + 60)
            c.shutdown(socket.SHUT_WR)
            got = struct.unpack("!Q", c.recv(8, socket.MSG_WAITALL))[0]
            seconds = time.monotonic() - start
        else:
            got = 0
            c.settimeout(0.5)
            while got < size and time.monotonic() < deadline:
                try:
                    chunk = c.recv(1 << 20)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                got += len(chunk)
            seconds = time.monotonic() - start
            if got == size:
                c.settimeout(limit_s + 60)
                c.sendall(struct.pack("!Q", got))
    return {"bytes": got, "seconds": seconds, "mb_per_s": got / seconds / 1e6}


# ------------------------------------------------------------------------ the check itself


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, text=True, capture_output=True)


def in_ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


def self_cmd(ns: str, *args: str) -> list[str]:
    return in_ns(ns, sys.executable, str(Path(__file__).resolve()), *args)


def ping(ns: str, probes: int, interval: float) -> dict[str, Any]:
    out = subprocess.run(
        self_cmd(ns, "_ping", ADDR_B, str(probes), str(interval)), check=True, text=True, capture_output=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    r = result["rtts_ms"]
    result["lost"] = result["sent"] - len(r)
    if r:
        result.update(min=min(r), avg=statistics.fmean(r), max=max(r), mdev=statistics.pstdev(r))
    return result


def fmt_ping(p: dict[str, Any]) -> str:
    if not p["rtts_ms"]:
        return f"{p['sent']} sent, all lost"
    return (
        f"min/avg/max/mdev {p['min']:.2f}/{p['avg']:.2f}/{p['max']:.2f}/{p['mdev']:.2f} ms, "
        f"{p['sent'] - p['lost']}/{p['sent']} answered"
    )


def tcp(ns_a: str, ns_b: str, direction: str, size: int, limit_s: float) -> dict[str, Any]:
    server = subprocess.Popen(self_cmd(ns_b, "_tcp_server", ADDR_B, str(TCP_PORT)), stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "listening":
            raise RuntimeError("TCP server did not start")
        out = subprocess.run(
            self_cmd(ns_a, "_tcp_client", ADDR_B, str(TCP_PORT), direction, str(size), str(limit_s)),
            check=True,
            text=True,
            capture_output=True,
            timeout=limit_s + 120,
        )
        server.wait(timeout=30)
        result: dict[str, Any] = json.loads(out.stdout)
        return result
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def start_delayer(ns: str, queue: int, delay_ms: float, jitter_ms: float, log: IO[str]) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = in_ns(ns, sys.executable, "-m", "lab.agent.nfqdelay", "--queue", str(queue))
    cmd += ["--delay-ms", f"{delay_ms:g}", "--jitter-ms", f"{jitter_ms:g}", "--seed", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    assert proc.stdout is not None
    if not select.select([proc.stdout], [], [], 10)[0] or proc.stdout.readline().strip() != "ready":
        proc.kill()
        proc.wait()
        log.seek(0)
        raise RuntimeError(f"delayer did not print ready: {log.read().strip()}")
    return proc


# Where the NFQUEUE rule goes in A. OUTPUT delays A's packets to B before they leave A; INPUT
# delays B's packets to A once they arrived. Either adds the delay once to every round trip.
PLACEMENTS = {
    "output": ["OUTPUT", "-d", f"{ADDR_B}/32"],
    "input": ["INPUT", "-s", f"{ADDR_B}/32"],
}


def run_case(
    ns_a: str,
    ns_b: str,
    args: argparse.Namespace,
    placement: str,
    delay_ms: float,
    jitter_ms: float,
    before: dict[str, Any],
) -> list[str]:
    """One delay case with the rule in one place; returns its failures."""
    name = f"{delay_ms:g} ± {jitter_ms:g} ms on {placement}"
    failures: list[str] = []
    rule = [*PLACEMENTS[placement], "-j", "NFQUEUE", "--queue-num", str(args.queue), "--queue-bypass"]
    print(f"\n== {name}: in A, iptables -w -I {' '.join(rule)}")
    sh(*in_ns(ns_a, "iptables", "-w", "-I", *rule))
    proc: subprocess.Popen[str] | None = None
    try:
        with tempfile.TemporaryFile("w+") as log:
            proc = start_delayer(ns_a, args.queue, delay_ms, jitter_ms, log)
            with_delay = ping(ns_a, args.probes, args.interval)
            print(f"   ICMP RTT with delay: {fmt_ping(with_delay)}")
            size = int(args.tcp_mb * 1e6)
            for direction in ("U", "D"):
                t = tcp(ns_a, ns_b, direction, size, args.tcp_seconds)
                print(f"   {fmt_tcp(t, direction, size)}")
                if t["bytes"] != size:
                    if placement == "output" and direction == "U":
                        print("     (expected: see 'TCP small queues' in this script's docstring)")
                    else:
                        failures.append(f"{name}: TCP {direction} carried {t['bytes']} of {size} bytes")
            proc.send_signal(signal.SIGTERM)
            try:
                code: int | None = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                code = None
            print(f"   delayer exit status after SIGTERM: {code}")
            log.seek(0)
            for line in log.read().strip().splitlines():
                print(f"   | {line}")
            if code != 0:
                failures.append(f"{name}: delayer exited {code} after SIGTERM")
        after = ping(ns_a, args.probes, args.interval)
        print(f"   ICMP RTT after (rule kept, nothing bound): {fmt_ping(after)}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        sh(*in_ns(ns_a, "iptables", "-w", "-D", *rule), check=False)

    for label, p in (("with delay", with_delay), ("after", after)):
        if p["lost"]:
            failures.append(f"{name}: {p['lost']} probes lost {label}")
    if with_delay["rtts_ms"]:
        added = with_delay["avg"] - before["avg"]
        error = (added - delay_ms) / delay_ms if delay_ms else 0.0
        print(f"   added RTT: {added:.2f} ms for {delay_ms:g} ms asked ({error:+.1%})")
        if abs(error) > 0.20:
            failures.append(f"{name}: added RTT {added:.2f} ms is not within 20 % of {delay_ms:g} ms")
    if after["rtts_ms"] and after["avg"] > before["avg"] + 5:
        failures.append(f"{name}: RTT after {after['avg']:.2f} ms, before {before['avg']:.2f} ms")
    return failures


def fmt_tcp(t: dict[str, Any], direction: str, size: int) -> str:
    what = "A->B" if direction == "U" else "B->A"
    done = "" if t["bytes"] == size else f" (stopped at {t['bytes'] / 1e6:.2f} MB)"
    return (
        f"TCP {size / 1e6:g} MB {what}: {t['seconds']:.2f} s, {t['mb_per_s']:.2f} MB/s "
        f"({t['mb_per_s'] * 8:.1f} Mbit/s){done}"
    )


def parse_cases(text: str) -> list[tuple[float, float]]:
    cases = []
    for part in text.split(","):
        delay, _, jitter = part.partition(":")
        cases.append((float(delay), float(jitter or 0)))
    return cases


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):  # a helper run inside a namespace
        cmd, rest = sys.argv[1], sys.argv[2:]
        if cmd == "_ping":
            print(json.dumps(icmp_ping(rest[0], int(rest[1]), float(rest[2]))))
        elif cmd == "_tcp_server":
            tcp_server(rest[0], int(rest[1]))
        elif cmd == "_tcp_client":
            print(json.dumps(tcp_client(rest[0], int(rest[1]), rest[2], int(rest[3]), float(rest[4]))))
        return 0

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=parse_cases, default=parse_cases("100:25,200:50"), help="delay:jitter ms,...")
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--tcp-mb", type=float, default=5.0)
    parser.add_argument("--tcp-seconds", type=float, default=15.0, help="time limit of one transfer")
    parser.add_argument("--placements", type=lambda t: t.split(","), default=list(PLACEMENTS), help="output,input")
    parser.add_argument("--queue", type=int, default=7)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("nfqdelay_netns: needs root (network namespaces, iptables, NFQUEUE)", file=sys.stderr)
        return 2

    tag = f"nfqd{os.getpid()}"
    ns_a, ns_b = f"{tag}a", f"{tag}b"
    failures: list[str] = []
    try:
        sh("ip", "netns", "add", ns_a)
        sh("ip", "netns", "add", ns_b)
        sh("ip", "link", "add", f"{tag}a", "type", "veth", "peer", "name", f"{tag}b")
        for ns, addr in ((ns_a, ADDR_A), (ns_b, ADDR_B)):
            sh("ip", "link", "set", ns, "netns", ns)  # the veth ends are named after their namespace
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", ns)
            sh("ip", "-n", ns, "link", "set", ns, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        print(f"namespaces {ns_a} ({ADDR_A}) and {ns_b} ({ADDR_B}), veth pair; kernel {os.uname().release}")
        print(f"ICMP: {args.probes} echo requests {args.interval:g} s apart from a raw socket in {ns_a}, like ping")
        before = ping(ns_a, args.probes, args.interval)
        print(f"\n== no delay\n   ICMP RTT: {fmt_ping(before)}")
        size = int(args.tcp_mb * 1e6)
        for direction in ("U", "D"):
            print(f"   {fmt_tcp(tcp(ns_a, ns_b, direction, size, args.tcp_seconds), direction, size)}")
        if before["lost"]:
            failures.append(f"{before['lost']} probes lost before any delay")
        for delay_ms, jitter_ms in args.cases:
            for placement in args.placements:
                failures += run_case(ns_a, ns_b, args, placement, delay_ms, jitter_ms, before)
    finally:
        for ns in (ns_a, ns_b):
            sh("ip", "netns", "del", ns, check=False)  # takes its veth end with it
    print()
    for f in failures:
        print(f"FAIL: {f}")
    print("FAIL" if failures else "OK: every case within 20 % of the asked delay")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
