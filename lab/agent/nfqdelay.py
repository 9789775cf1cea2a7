"""Delay packets in userspace through the kernel's NFQUEUE: network delay without `netem`.

    python3 -m lab.agent.nfqdelay --queue N --delay-ms D [--jitter-ms J] [--seed S]

Binds NFQUEUE number N over a raw netlink socket (standard library only: no libnetfilter_queue,
no ctypes) and holds every packet the kernel queues there for D ms ± a uniform jitter of J ms
before accepting it. It prints `ready` on stdout once bound; on SIGTERM or SIGINT it accepts
every held packet, unbinds and exits 0.

It installs no iptables rule: the caller chooses what to delay, for example

    iptables -w -I OUTPUT -d 10.0.0.2/32 -j NFQUEUE --queue-num 7 --queue-bypass

and removes the rule afterwards. `--queue-bypass` matters: while no program is bound to the queue
the kernel lets the packets pass, so a delayer that dies never blackholes traffic (the packets it
held when it died are dropped, and TCP retransmits them).

Where to queue: on INPUT (`-s peer`) where possible. On OUTPUT, a packet of a local TCP socket is
still charged to that socket while it is held (only leaving the host frees it), and TCP small
queues let a socket have only about a millisecond of its sending rate (at least two packets) in
the host: the sender stalls for the whole delay every couple of packets. A bulk transfer then
crawls at tens of kB/s (measured: 5 MB through 100 ms on OUTPUT, 0.03 MB/s; on INPUT, 3.9 MB/s);
ACKs, replies and other small exchanges are not hurt. netem avoids this by orphaning the packets
it delays, which userspace cannot do. bench/nfqdelay_netns.py measures both places.

Order: packets leave in the order they came; TCP reads reordering as loss, which a real WAN
link's jitter rarely causes. So the jitter is not drawn per packet but varies smoothly with time:
a line between random points in [-jitter, +jitter], a new point every 4 x jitter, so it changes at
most half as fast as time passes and a later packet is never due before an earlier one. (Drawn per
packet and then held in order, a packet would wait for the latest draw before it: under steady
traffic the delay tends to delay + jitter; a bulk transfer through 100 +- 25 ms got 110-115 ms.)
Over any few hundred milliseconds the delay is spread over the whole range, and its mean is the
asked delay. Release times are still clamped to be non-decreasing against rounding.
The statistics line printed on exit shows the mean delay actually scheduled.

Limits: the queue holds at most 20,000 packets and is configured fail-open, so packets beyond
that (or that the kernel cannot hand to this program when its socket buffer is full: ENOBUFS,
logged) pass undelayed rather than being dropped. Segmentation-offload packets are queued whole
(NFQA_CFG_F_GSO), so a bulk TCP flow is a few packets per window, not one per MSS.
"""

from __future__ import annotations

import argparse
import errno
import logging
import math
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, NoReturn, TextIO

log = logging.getLogger("nfqdelay")

# ----------------------------------------------------------------- netlink and nfnetlink_queue ABI
# From <linux/netlink.h>, <linux/netfilter/nfnetlink.h>, <linux/netfilter/nfnetlink_queue.h>.

NETLINK_NETFILTER = 12
SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>; the socket module does not export it

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLA_TYPE_MASK = 0x3FFF  # drops NLA_F_NESTED and NLA_F_NET_BYTEORDER

NFNETLINK_V0 = 0
NFNL_SUBSYS_QUEUE = 3

NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3

NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2

NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5

NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_CFG_CMD_PF_BIND = 3
NFQNL_CFG_CMD_PF_UNBIND = 4

NFQNL_COPY_NONE = 0
NFQNL_COPY_META = 1
NFQNL_COPY_PACKET = 2

NFQA_CFG_F_FAIL_OPEN = 0x1
NFQA_CFG_F_GSO = 0x4

NF_DROP = 0
NF_ACCEPT = 1

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, portid: host byte order
_NLATTR = struct.Struct("=HH")  # len, type: host byte order
_NFGENMSG = struct.Struct(">BBH")  # family, version, res_id (the queue number, big-endian)
_CFG_CMD = struct.Struct(">BxH")  # command, pad, protocol family
_CFG_PARAMS = struct.Struct(">IB")  # copy_range, copy_mode: a packed 5-byte struct
_PACKET_HDR = struct.Struct(">IHB")  # packet_id, hw_protocol, hook: a packed 7-byte struct
_VERDICT_HDR = struct.Struct(">II")  # verdict, packet_id
_BE32 = struct.Struct(">I")
_NLMSGERR = struct.Struct("=i")  # -errno (0: an acknowledgement), then the request's header

QUEUE_MAXLEN = 20_000
MAX_DELAY_MS = 3_600_000  # an hour: far beyond any use, and keeps select() timeouts in range
RCVBUF_BYTES = 16 * 1024 * 1024
# Batch verdicts compare packet ids in serial-number arithmetic (the kernel's nfq_id_after), so an
# id this far past the last one read covers every packet queued so far, read or not.
_ID_WINDOW = 1 << 30


def _align4(n: int) -> int:
    return (n + 3) & ~3


# ------------------------------------------------------------------------------------- encoding


def nlattr(attr_type: int, data: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes (the length field excludes the padding)."""
    length = _NLATTR.size + len(data)
    return _NLATTR.pack(length, attr_type) + data + b"\0" * (_align4(length) - length)


def nfq_message(msg: int, queue: int, seq: int, attrs: bytes, *, flags: int = NLM_F_REQUEST) -> bytes:
    """An nfnetlink_queue request: netlink header, nfgenmsg (family AF_UNSPEC, the queue number), attributes."""
    body = _NFGENMSG.pack(socket.AF_UNSPEC, NFNETLINK_V0, queue) + attrs
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq, 0) + body


def config_message(
    queue: int,
    seq: int,
    *,
    command: int | None = None,
    pf: int = socket.AF_UNSPEC,
    copy_mode: int | None = None,
    copy_range: int = 0,
    maxlen: int | None = None,
    flags: int | None = None,
    mask: int | None = None,
) -> bytes:
    """NFQNL_MSG_CONFIG, acknowledged. The kernel applies the command first, then the other settings
    of the same message, so BIND with everything else in one message leaves no moment in which the
    queue exists with its default copy mode (NONE, which drops packets)."""
    attrs = b""
    if command is not None:
        attrs += nlattr(NFQA_CFG_CMD, _CFG_CMD.pack(command, pf))
    if copy_mode is not None:
        attrs += nlattr(NFQA_CFG_PARAMS, _CFG_PARAMS.pack(copy_range, copy_mode))
    if maxlen is not None:
        attrs += nlattr(NFQA_CFG_QUEUE_MAXLEN, _BE32.pack(maxlen))
    if flags is not None:
        # The kernel refuses flags without a mask saying which flags the message sets.
        attrs += nlattr(NFQA_CFG_FLAGS, _BE32.pack(flags))
        attrs += nlattr(NFQA_CFG_MASK, _BE32.pack(flags if mask is None else mask))
    return nfq_message(NFQNL_MSG_CONFIG, queue, seq, attrs, flags=NLM_F_REQUEST | NLM_F_ACK)


def verdict_batch_message(queue: int, seq: int, packet_id: int, verdict: int = NF_ACCEPT) -> bytes:
    """NFQNL_MSG_VERDICT_BATCH: the verdict for every packet of the queue whose id is <= packet_id.
    Not acknowledged (one per release); the kernel still reports a failure as NLMSG_ERROR."""
    attrs = nlattr(NFQA_VERDICT_HDR, _VERDICT_HDR.pack(verdict, packet_id & 0xFFFFFFFF))
    return nfq_message(NFQNL_MSG_VERDICT_BATCH, queue, seq, attrs)


# ------------------------------------------------------------------------------------- decoding


class NetlinkMessage(NamedTuple):
    type: int
    flags: int
    seq: int
    portid: int
    body: bytes  # everything after the netlink header


class QueuedPacket(NamedTuple):
    queue: int
    packet_id: int
    hw_protocol: int
    hook: int


def iter_messages(data: bytes) -> Iterator[NetlinkMessage]:
    """The netlink messages of one datagram; ValueError on a truncated or malformed one."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, flags, seq, portid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise ValueError(f"bad netlink message length {length} at offset {offset} of {len(data)}")
        yield NetlinkMessage(msg_type, flags, seq, portid, data[offset + _NLMSGHDR.size : offset + length])
        offset += _align4(length)


def parse_attributes(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Attribute type (flags masked off) -> payload; the last one wins if a type repeats."""
    attrs: dict[int, bytes] = {}
    while offset + _NLATTR.size <= len(data):
        length, attr_type = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > len(data):
            raise ValueError(f"bad netlink attribute length {length} at offset {offset} of {len(data)}")
        attrs[attr_type & NLA_TYPE_MASK] = data[offset + _NLATTR.size : offset + length]
        offset += _align4(length)
    return attrs


def parse_packet(body: bytes) -> QueuedPacket:
    """The body of an NFQNL_MSG_PACKET message (nfgenmsg, then attributes)."""
    if len(body) < _NFGENMSG.size:
        raise ValueError("packet message shorter than its nfgenmsg header")
    _family, _version, queue = _NFGENMSG.unpack_from(body)
    header = parse_attributes(body, _NFGENMSG.size).get(NFQA_PACKET_HDR)
    if header is None or len(header) < _PACKET_HDR.size:
        raise ValueError("packet message without NFQA_PACKET_HDR")
    packet_id, hw_protocol, hook = _PACKET_HDR.unpack_from(header)
    return QueuedPacket(queue, packet_id, hw_protocol, hook)


def parse_error(body: bytes) -> tuple[int, int]:
    """(errno, seq of the request) of an NLMSG_ERROR message; errno 0 is an acknowledgement."""
    if len(body) < _NLMSGERR.size + _NLMSGHDR.size:
        raise ValueError("NLMSG_ERROR message too short")
    (negative_errno,) = _NLMSGERR.unpack_from(body)
    seq = _NLMSGHDR.unpack_from(body, _NLMSGERR.size)[3]
    return -negative_errno, seq


# ------------------------------------------------------------------------------------ scheduler


class ReleaseScheduler:
    """When each held packet leaves: first in, first out (see the module docstring).

    Times are time.monotonic() seconds; ids are the kernel's packet ids, increasing in arrival order.
    """

    def __init__(self, delay_s: float, jitter_s: float = 0.0, rng: random.Random | None = None) -> None:
        if delay_s < 0 or jitter_s < 0 or jitter_s > delay_s:
            raise ValueError("need 0 <= jitter <= delay")
        self.delay_s = delay_s
        self.jitter_s = jitter_s
        self._rng = rng if rng is not None else random.Random()
        self._held: deque[tuple[float, int]] = deque()  # (release time, packet id), release times ascending
        self._last_release = -math.inf
        # The jitter's current line: from (t0, v0) to (t1, v1).
        self._period = 4 * jitter_s
        self._t0 = self._t1 = -math.inf
        self._v0 = self._v1 = 0.0
        self.scheduled = 0
        self.total_delay_s = 0.0  # sum of (release - arrival): the delay actually given, clamp included

    def __len__(self) -> int:
        return len(self._held)

    def arrive(self, packet_id: int, now: float) -> float:
        """Hold a packet that arrived at `now`; returns its release time."""
        wanted = now + self.delay_s + (self._jitter(now) if self.jitter_s else 0.0)
        release = max(wanted, self._last_release)
        self._last_release = release
        self._held.append((release, packet_id))
        self.scheduled += 1
        self.total_delay_s += release - now
        return release

    def _jitter(self, now: float) -> float:
        if now >= self._t1:
            if now >= self._t1 + self._period:  # idle for a while: a new line from here
                self._t1, self._v1 = now, self._rng.uniform(-self.jitter_s, self.jitter_s)
            while now >= self._t1:
                self._t0, self._v0 = self._t1, self._v1
                self._t1, self._v1 = self._t0 + self._period, self._rng.uniform(-self.jitter_s, self.jitter_s)
        return self._v0 + (self._v1 - self._v0) * (now - self._t0) / self._period

    def next_release(self) -> float | None:
        return self._held[0][0] if self._held else None

    def pop_due(self, now: float) -> int | None:
        """Forget every packet due by `now`; returns the id of the last (for one batch verdict), or None."""
        last: int | None = None
        while self._held and self._held[0][0] <= now:
            last = self._held.popleft()[1]
        return last

    def pop_all(self) -> int | None:
        """Forget every held packet; returns the id of the last, or None."""
        last = self._held[-1][1] if self._held else None
        self._held.clear()
        return last


# ------------------------------------------------------------------------------------ arguments


@dataclass(frozen=True)
class Options:
    queue: int
    delay_ms: float
    jitter_ms: float
    seed: int | None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, so a caller that captures stderr can show it as is.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of milliseconds: {text!r}") from None
    if not 0 <= value <= MAX_DELAY_MS:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_DELAY_MS} ms, not {text!r}")
    return value


def _queue_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a queue number: {text!r}") from None
    if not 0 <= value <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"must be 0..65535, not {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """The command line; on a bad one, a one-line error on stderr and SystemExit(2)."""
    parser = _Parser(prog="nfqdelay", description="Delay the packets of an NFQUEUE (see the module docstring).")
    parser.add_argument("--queue", type=_queue_number, required=True, help="NFQUEUE number to bind (0-65535)")
    parser.add_argument("--delay-ms", type=_milliseconds, required=True, help="mean added delay, ms")
    parser.add_argument("--jitter-ms", type=_milliseconds, default=0.0, help="uniform ± jitter, ms (<= delay)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the jitter's random numbers")
    ns = parser.parse_args(argv)
    if ns.jitter_ms > ns.delay_ms:
        parser.error(f"--jitter-ms ({ns.jitter_ms:g}) must not exceed --delay-ms ({ns.delay_ms:g})")
    return Options(queue=ns.queue, delay_ms=ns.delay_ms, jitter_ms=ns.jitter_ms, seed=ns.seed)


# ---------------------------------------------------------------------------------- socket loop


class NetlinkError(OSError):
    pass


class Delayer:
    """The bound queue and its single-threaded loop: read packets, release the due ones."""

    _READS_PER_TURN = 512  # bounded, so releases stay on time under a flood of arrivals
    _ENOBUFS_LOG_INTERVAL_S = 10.0

    def __init__(self, queue: int, scheduler: ReleaseScheduler, sock: socket.socket | None = None) -> None:
        """`sock`: a stand-in for the kernel's end, for tests; by default a netlink socket."""
        self.queue = queue
        self.scheduler = scheduler
        if sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            sock.bind((0, 0))  # the kernel picks the port id
        self.sock = sock
        # Non-blocking throughout: reads drain the socket until EAGAIN, waits are select()s.
        self.sock.setblocking(False)
        self._buf = bytearray(65536)
        self._seq = 0
        self._awaited_seq: int | None = None  # the config request waiting for its acknowledgement
        self._answers: dict[int, int] = {}  # its seq -> errno (0: success) once acknowledged
        self._quiet_seqs: set[int] = set()  # requests whose failure is expected
        self.last_id: int | None = None
        self.batches = 0
        self.enobufs = 0
        self._enobufs_logged_at = -math.inf
        self.errors = 0
        self.max_held = 0

    # -- setup and teardown

    def open(self) -> None:
        self._grow_rcvbuf()
        # Older kernels (before 3.8) need the queue handler bound to the protocol family; newer
        # ones ignore both commands. A failed PF_UNBIND only means it was not bound.
        self._request(command=NFQNL_CFG_CMD_PF_UNBIND, pf=socket.AF_INET, check=False)
        if self._request(command=NFQNL_CFG_CMD_PF_BIND, pf=socket.AF_INET, check=False) == errno.EPERM:
            # nfnetlink refuses every command without the capability; BIND's EPERM is ambiguous.
            raise NetlinkError(errno.EPERM, "not permitted: needs CAP_NET_ADMIN in this network namespace")
        try:
            self._request(
                command=NFQNL_CFG_CMD_BIND,
                copy_mode=NFQNL_COPY_META,  # ids are all we need: no payload copied
                maxlen=QUEUE_MAXLEN,
                # FAIL_OPEN: a full queue passes packets rather than drop them. GSO: hand over
                # segmentation-offload packets whole; without it the kernel segments them in
                # software before queueing, which costs CPU and multiplies the packets to handle.
                flags=NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO,
            )
        except NetlinkError as e:
            if e.errno in (errno.EBUSY, errno.EPERM):  # EPERM: bound by another netlink socket
                raise NetlinkError(e.errno, "bound by another program") from None
            raise

    def close(self) -> None:
        """Accept every held packet (and any queued but not yet read), unbind, close the socket.

        Packets queued between the verdict and the unbind (microseconds) are dropped by the kernel
        when it destroys the queue; TCP retransmits them."""
        try:
            # An id far past the last one read covers packets the socket has not handed over yet;
            # the kernel answers ENOENT when nothing was queued, which is fine here.
            self._quiet_seqs.add(self._verdict((self.last_id or 0) + _ID_WINDOW))
            self.scheduler.pop_all()
            self._request(command=NFQNL_CFG_CMD_UNBIND)
        finally:
            self.sock.close()

    def _grow_rcvbuf(self) -> None:
        # FORCE ignores net.core.rmem_max but needs CAP_NET_ADMIN, which binding a queue needs anyway.
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _request(
        self,
        *,
        command: int,
        pf: int = socket.AF_UNSPEC,
        check: bool = True,
        timeout_s: float = 5.0,
        **settings: int,
    ) -> int:
        """Send a config request and wait for its acknowledgement; packets read meanwhile are held.
        Returns the errno (0: done); with `check`, raises NetlinkError instead of returning one."""
        seq = self._next_seq()
        self._awaited_seq = seq
        self.sock.send(config_message(self.queue, seq, command=command, pf=pf, **settings))
        deadline = time.monotonic() + timeout_s
        while seq not in self._answers:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.sock.fileno()], [], [], remaining)[0]:
                raise NetlinkError(errno.ETIMEDOUT, f"no answer from nfnetlink_queue to command {command}")
            self._read_available()
        err = self._answers.pop(seq)
        self._awaited_seq = None
        if err and check:
            raise NetlinkError(err, f"nfnetlink_queue command {command}: {os.strerror(err)}")
        return err

    # -- the loop

    def run(self, stop_fd: int) -> None:
        """Until stop_fd becomes readable: wait for packets or the next release, whichever first."""
        while True:
            due = self.scheduler.next_release()
            timeout = None if due is None else max(0.0, due - time.monotonic())
            readable = select.select([self.sock.fileno(), stop_fd], [], [], timeout)[0]
            if stop_fd in readable:
                return
            if self.sock.fileno() in readable:
                self._read_available()
            last = self.scheduler.pop_due(time.monotonic())
            if last is not None:
                self._verdict(last)

    def _read_available(self) -> None:
        view = memoryview(self._buf)
        for _ in range(self._READS_PER_TURN):
            try:
                n = self.sock.recv_into(self._buf)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                # The socket buffer overflowed: the kernel could not hand over some packets and
                # fail-open let them pass undelayed. The socket itself stays usable.
                self.enobufs += 1
                now = time.monotonic()
                # At most one line per interval: a flood of warnings could fill a stderr pipe
                # nobody reads and block this loop, which would then pass everything undelayed.
                if now >= self._enobufs_logged_at + self._ENOBUFS_LOG_INTERVAL_S:
                    self._enobufs_logged_at = now
                    log.warning("socket buffer full (ENOBUFS, %d so far): packets passed undelayed", self.enobufs)
                continue
            now = time.monotonic()
            try:
                for msg in iter_messages(view[:n].tobytes()):
                    self._handle(msg, now)
            except ValueError as e:
                self.errors += 1
                log.warning("skipped a malformed netlink datagram: %s", e)

    def _handle(self, msg: NetlinkMessage, now: float) -> None:
        if msg.type == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            packet = parse_packet(msg.body)
            self.scheduler.arrive(packet.packet_id, now)
            self.last_id = packet.packet_id
            self.max_held = max(self.max_held, len(self.scheduler))
        elif msg.type == NLMSG_ERROR:
            err, seq = parse_error(msg.body)
            if seq == self._awaited_seq:
                self._answers[seq] = err
            elif seq in self._quiet_seqs:
                self._quiet_seqs.discard(seq)
            elif err:
                # A verdict refused, e.g. ENOENT when the kernel already dropped the held packets
                # (their interface went down): nothing to retry.
                self.errors += 1
                log.warning("nfnetlink_queue refused a verdict: %s", os.strerror(err))
        elif msg.type not in (NLMSG_NOOP, NLMSG_DONE, NLMSG_OVERRUN):
            log.debug("ignored netlink message type %#x", msg.type)

    def _verdict(self, packet_id: int) -> int:
        """Accept every held packet up to packet_id; returns the request's seq."""
        seq = self._next_seq()
        self.sock.send(verdict_batch_message(self.queue, seq, packet_id))
        self.batches += 1
        return seq

    def summary(self) -> str:
        s = self.scheduler
        mean = s.total_delay_s / s.scheduled * 1000 if s.scheduled else 0.0
        return (
            f"queue {self.queue}: {s.scheduled} packets delayed (mean {mean:.1f} ms scheduled, "
            f"at most {self.max_held} held), {self.batches} batch verdicts, {self.enobufs} ENOBUFS, "
            f"{self.errors} errors"
        )


def run(options: Options, ready: TextIO = sys.stdout) -> int:
    """Bind, print `ready`, delay until SIGTERM or SIGINT, release everything; the exit status."""
    rng = random.Random(options.seed)
    scheduler = ReleaseScheduler(options.delay_ms / 1000, options.jitter_ms / 1000, rng)
    # The handlers only wake the select: set_wakeup_fd writes to this socket on each signal.
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    previous = {sig: signal.signal(sig, lambda _signum, _frame: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        delayer: Delayer | None = None
        try:
            delayer = Delayer(options.queue, scheduler)
            delayer.open()
        except OSError as e:
            if delayer is not None:
                delayer.sock.close()
            print(f"nfqdelay: cannot bind queue {options.queue}: {e.strerror or e}", file=sys.stderr)
            return 1
        log.info(
            "queue %d bound: delay %g ms ± %g ms%s",
            options.queue,
            options.delay_ms,
            options.jitter_ms,
            "" if options.seed is None else f", seed {options.seed}",
        )
        print("ready", file=ready, flush=True)
        try:
            delayer.run(wake_r.fileno())
        finally:
            delayer.close()
        log.info("%s", delayer.summary())
        return 0
    finally:
        signal.set_wakeup_fd(-1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        wake_r.close()
        wake_w.close()


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="nfqdelay: %(message)s", stream=sys.stderr)
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
