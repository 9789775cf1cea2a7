"""The NFQUEUE packet delayer without root or Docker: the netlink messages it sends (byte layout)
and decodes, the release scheduler, the command line, and its loop against a fake kernel (a
datagram socket pair standing in for the netlink socket)."""

from __future__ import annotations

import errno
import itertools
import math
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.agent import nfqdelay as nfq
from lab.agent.nfqdelay import Options, ReleaseScheduler

REPO = Path(__file__).resolve().parents[2]


def native16(n: int) -> bytes:
    return n.to_bytes(2, sys.byteorder)


def native32(n: int) -> bytes:
    return n.to_bytes(4, sys.byteorder)


def nlmsghdr(length: int, msg_type: int, flags: int, seq: int, portid: int = 0) -> bytes:
    """Written out by hand (not with the module's structs), so the tests check the layout."""
    return native32(length) + native16(msg_type) + native16(flags) + native32(seq) + native32(portid)


def attr(attr_type: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return native16(length) + native16(attr_type) + payload + b"\0" * (-length % 4)


# ------------------------------------------------------------------------------------ encoding


def test_bind_config_message_layout():
    msg = nfq.config_message(
        7,
        42,
        command=nfq.NFQNL_CFG_CMD_BIND,
        copy_mode=nfq.NFQNL_COPY_META,
        maxlen=20000,
        flags=nfq.NFQA_CFG_F_FAIL_OPEN | nfq.NFQA_CFG_F_GSO,
    )
    attrs = (
        native16(8) + native16(1) + bytes([1, 0, 0, 0])  # NFQA_CFG_CMD: BIND, pad, pf 0 (big-endian)
        + native16(9) + native16(2) + bytes([0, 0, 0, 0, 1, 0, 0, 0])  # PARAMS: range 0, META; 3 pad bytes
        + native16(8) + native16(3) + bytes([0, 0, 0x4E, 0x20])  # QUEUE_MAXLEN 20000, big-endian
        + native16(8) + native16(5) + bytes([0, 0, 0, 5])  # FLAGS: FAIL_OPEN | GSO
        + native16(8) + native16(4) + bytes([0, 0, 0, 5])  # MASK: the same flags
    )  # fmt: skip
    body = bytes([0, 0, 0, 7]) + attrs  # nfgenmsg: AF_UNSPEC, version 0, queue 7 big-endian
    assert msg == nlmsghdr(16 + len(body), 0x0302, nfq.NLM_F_REQUEST | nfq.NLM_F_ACK, 42) + body
    assert len(msg) == 64


def test_pf_bind_and_unbind_messages():
    pf_bind = nfq.config_message(0, 1, command=nfq.NFQNL_CFG_CMD_PF_BIND, pf=socket.AF_INET)
    assert pf_bind == nlmsghdr(28, 0x0302, 5, 1) + bytes([0, 0, 0, 0]) + attr(1, bytes([3, 0, 0, 2]))
    unbind = nfq.config_message(65535, 2, command=nfq.NFQNL_CFG_CMD_UNBIND)
    assert unbind == nlmsghdr(28, 0x0302, 5, 2) + bytes([0, 0, 0xFF, 0xFF]) + attr(1, bytes([2, 0, 0, 0]))


def test_flags_with_explicit_mask():
    msg = nfq.config_message(1, 1, flags=0, mask=nfq.NFQA_CFG_F_FAIL_OPEN)
    assert msg.endswith(attr(5, bytes(4)) + attr(4, bytes([0, 0, 0, 1])))


def test_verdict_batch_message_layout():
    msg = nfq.verdict_batch_message(7, 9, 1234)
    body = bytes([0, 0, 0, 7]) + attr(2, bytes([0, 0, 0, 1, 0, 0, 0x04, 0xD2]))  # NF_ACCEPT, id 1234
    assert msg == nlmsghdr(32, 0x0303, nfq.NLM_F_REQUEST, 9) + body


def test_verdict_batch_id_wraps_to_32_bits():
    # Ids are 32-bit serial numbers; the shutdown verdict adds 2**30 to the last one read.
    assert nfq.verdict_batch_message(0, 1, 2**32 + 5) == nfq.verdict_batch_message(0, 1, 5)


def test_attribute_padding():
    assert nfq.nlattr(1, b"abcde") == native16(9) + native16(1) + b"abcde\0\0\0"
    assert nfq.nlattr(1, b"abcd") == native16(8) + native16(1) + b"abcd"
    assert nfq.nlattr(1, b"") == native16(4) + native16(1)


# ------------------------------------------------------------------------------------ decoding


def packet_message(packet_id: int, queue: int = 7, seq: int = 0, *, hook: int = 3) -> bytes:
    """A message as the kernel sends it in NFQNL_COPY_META mode."""
    body = bytes([socket.AF_INET, 0]) + struct.pack(">H", queue)
    body += attr(1, struct.pack(">IHB", packet_id, 0x0800, hook))  # NFQA_PACKET_HDR: 7 bytes, padded
    body += attr(3, struct.pack(">I", 0x2A))  # NFQA_MARK
    body += attr(0x8000 | 11, attr(1, b"\0" * 4))  # a nested attribute (flag bit set): skipped
    body += attr(6, struct.pack(">I", 2))  # NFQA_IFINDEX_OUTDEV
    return nlmsghdr(16 + len(body), 0x0300, 0, seq) + body


def error_message(err: int, seq: int) -> bytes:
    body = struct.pack("=i", -err) + nlmsghdr(32, 0x0303, 1, seq)
    return nlmsghdr(16 + len(body), nfq.NLMSG_ERROR, 0, 0) + body


def test_decode_packet_message():
    (msg,) = nfq.iter_messages(packet_message(0xDEADBEEF, queue=513))
    assert msg.type == (nfq.NFNL_SUBSYS_QUEUE << 8) | nfq.NFQNL_MSG_PACKET
    assert nfq.parse_packet(msg.body) == nfq.QueuedPacket(queue=513, packet_id=0xDEADBEEF, hw_protocol=0x0800, hook=3)


def test_attributes_mask_flag_bits():
    (msg,) = nfq.iter_messages(packet_message(1))
    attrs = nfq.parse_attributes(msg.body, 4)
    assert sorted(attrs) == [1, 3, 6, 11]
    assert attrs[1] == struct.pack(">IHB", 1, 0x0800, 3)  # length excludes the padding
    assert attrs[3] == struct.pack(">I", 0x2A)


def test_several_messages_in_one_datagram():
    data = packet_message(1, seq=1) + error_message(0, 5) + packet_message(2, seq=2)
    msgs = list(nfq.iter_messages(data))
    assert [m.type for m in msgs] == [0x0300, nfq.NLMSG_ERROR, 0x0300]
    assert [nfq.parse_packet(msgs[i].body).packet_id for i in (0, 2)] == [1, 2]
    assert nfq.parse_error(msgs[1].body) == (0, 5)


def test_error_message():
    (msg,) = nfq.iter_messages(error_message(errno.EBUSY, 77))
    assert nfq.parse_error(msg.body) == (errno.EBUSY, 77)


@pytest.mark.parametrize(
    "data",
    [
        packet_message(1)[:-4],  # the header says more than the datagram holds
        nlmsghdr(8, 0x0300, 0, 0),  # shorter than a netlink header
    ],
)
def test_truncated_message_is_an_error(data):
    with pytest.raises(ValueError, match="bad netlink message length"):
        list(nfq.iter_messages(data))


def test_packet_without_header_is_an_error():
    with pytest.raises(ValueError, match="NFQA_PACKET_HDR"):
        nfq.parse_packet(bytes([2, 0, 0, 7]) + attr(3, bytes(4)))
    with pytest.raises(ValueError, match="bad netlink attribute length"):
        nfq.parse_attributes(native16(40) + native16(1) + bytes(4))


# ----------------------------------------------------------------------------------- scheduler


class Draws(random.Random):
    """uniform() returns the given fractions of the range, in turn: -1 is -jitter, 1 is +jitter."""

    def __init__(self, *fractions: float) -> None:
        super().__init__(0)
        self.fractions = list(fractions)

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * (self.fractions.pop(0) + 1) / 2


def test_delay_zero_releases_at_arrival():
    s = ReleaseScheduler(0.0)
    assert s.arrive(1, 10.0) == 10.0
    assert s.next_release() == 10.0
    assert s.pop_due(10.0) == 1
    assert len(s) == 0 and s.next_release() is None and s.pop_due(11.0) is None


def test_fixed_delay():
    s = ReleaseScheduler(0.1)
    assert s.arrive(1, 5.0) == pytest.approx(5.1)
    assert s.pop_due(5.09) is None
    assert s.pop_due(5.1) == 1


def test_release_times_never_decrease_and_the_mean_stays_the_asked_delay_under_a_flood():
    s = ReleaseScheduler(0.1, 0.05, random.Random(7))
    releases = [s.arrive(i, i * 1e-3) for i in range(20000)]  # 1,000 packets a second for 20 s
    assert releases == sorted(releases)
    # The jitter varies smoothly, so holding packets in order costs nothing: the mean is the
    # asked delay (a per-packet draw held in order tends to delay + jitter, 0.15 s here).
    assert s.total_delay_s / s.scheduled == pytest.approx(0.1, abs=0.01)


def test_the_jitter_uses_its_whole_range_and_changes_slower_than_time():
    def delays(seed: int) -> list[float]:
        s = ReleaseScheduler(0.2, 0.05, random.Random(seed))
        return [s.arrive(i, i * 0.01) - i * 0.01 for i in range(20000)]  # a packet every 10 ms, 200 s

    d = delays(1)
    assert all(0.15 - 1e-9 <= x <= 0.25 + 1e-9 for x in d)
    assert min(d) < 0.16 and max(d) > 0.24  # the whole range is used
    assert sum(d) / len(d) == pytest.approx(0.2, abs=0.005)
    assert max(abs(b - a) for a, b in itertools.pairwise(d)) <= 0.5 * 0.01 + 1e-9  # slope at most 1/2
    assert delays(1) == d and delays(2) != d  # reproducible with the seed


def test_after_an_idle_time_the_jitter_starts_afresh():
    s = ReleaseScheduler(0.2, 0.05, random.Random(3))
    s.arrive(1, 0.0)
    assert 0.15 <= s.arrive(2, 1000.0) - 1000.0 <= 0.25  # no walk through 1000 s of lines


def test_pop_all_and_summary_counts():
    s = ReleaseScheduler(1.0)
    for i in (5, 6, 7):
        s.arrive(i, 0.0)
    assert s.pop_all() == 7
    assert len(s) == 0 and s.pop_all() is None
    assert s.scheduled == 3 and s.total_delay_s == pytest.approx(3.0)


@pytest.mark.parametrize("delay,jitter", [(-0.1, 0.0), (0.1, -0.01), (0.1, 0.2)])
def test_scheduler_refuses_bad_settings(delay, jitter):
    with pytest.raises(ValueError):
        ReleaseScheduler(delay, jitter)


# ---------------------------------------------------------------------------------- arguments


def test_parse_args():
    assert nfq.parse_args(["--queue", "7", "--delay-ms", "100", "--jitter-ms", "25", "--seed", "3"]) == Options(
        7, 100.0, 25.0, 3
    )
    assert nfq.parse_args(["--queue", "0", "--delay-ms", "0"]) == Options(0, 0.0, 0.0, None)
    assert nfq.parse_args(["--queue", "65535", "--delay-ms", "2.5", "--jitter-ms", "2.5"]).jitter_ms == 2.5


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--queue", "7", "--delay-ms", "-1"], "argument --delay-ms: must be between 0 and 3600000 ms, not '-1'"),
        (["--queue", "7", "--delay-ms", "nan"], "argument --delay-ms: must be between 0 and 3600000 ms, not 'nan'"),
        (["--queue", "7", "--delay-ms", "inf"], "argument --delay-ms: must be between 0 and 3600000 ms, not 'inf'"),
        (["--queue", "7", "--delay-ms", "ten"], "argument --delay-ms: not a number of milliseconds: 'ten'"),
        (["--queue", "7", "--delay-ms", "10", "--jitter-ms", "-2"], "argument --jitter-ms: must be between 0"),
        (["--queue", "7", "--delay-ms", "10", "--jitter-ms", "20"], "--jitter-ms (20) must not exceed --delay-ms (10)"),
        (["--queue", "65536", "--delay-ms", "10"], "argument --queue: must be 0..65535, not 65536"),
        (["--queue", "x", "--delay-ms", "10"], "argument --queue: not a queue number: 'x'"),
        (["--delay-ms", "10"], "the following arguments are required: --queue"),
        (["--queue", "1", "--delay-ms", "10", "--seed", "s"], "argument --seed: invalid int value: 's'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        nfq.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nfqdelay: error: ")
    assert message in err


def test_command_line_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "lab.agent.nfqdelay", "--queue", "7", "--delay-ms", "5", "--jitter-ms", "6"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == "nfqdelay: error: --jitter-ms (6) must not exceed --delay-ms (5)\n"


# --------------------------------------------------------------------- the loop, fake kernel


class FakeKernel:
    """The kernel's end of a datagram socket pair: acknowledges config requests, records the rest."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.settimeout(5)

    def request(self) -> tuple[nfq.NetlinkMessage, dict[int, bytes]]:
        (msg,) = nfq.iter_messages(self.sock.recv(65536))
        return msg, nfq.parse_attributes(msg.body, 4)

    def config(self, err: int = 0) -> tuple[int, int]:
        """Answers one config request; returns its (command, protocol family)."""
        msg, attrs = self.request()
        assert msg.type == 0x0302 and msg.flags == nfq.NLM_F_REQUEST | nfq.NLM_F_ACK
        self.sock.send(error_message(err, msg.seq))
        command, pf = struct.unpack(">BxH", attrs[nfq.NFQA_CFG_CMD])
        return command, pf

    def verdict(self) -> tuple[int, int]:
        msg, attrs = self.request()
        assert msg.type == 0x0303
        verdict, packet_id = struct.unpack(">II", attrs[nfq.NFQA_VERDICT_HDR])
        return verdict, packet_id


def in_thread(fn: Callable[[], None]) -> tuple[threading.Thread, list[Exception]]:
    failure: list[Exception] = []

    def target() -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - the test thread checks it
            failure.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, failure


def test_loop_against_a_fake_kernel():
    kernel_end, delayer_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    stop_r, stop_w = socket.socketpair()
    kernel = FakeKernel(kernel_end)
    delayer = nfq.Delayer(7, ReleaseScheduler(0.05), sock=delayer_end)

    def serve() -> None:
        delayer.open()
        delayer.run(stop_r.fileno())
        delayer.close()

    thread, failure = in_thread(serve)
    try:
        assert kernel.config() == (nfq.NFQNL_CFG_CMD_PF_UNBIND, socket.AF_INET)
        assert kernel.config(errno.EEXIST) == (nfq.NFQNL_CFG_CMD_PF_BIND, socket.AF_INET)  # ignored
        # A packet queued between the bind and its acknowledgement is held too.
        msg, attrs = kernel.request()
        assert struct.unpack(">BxH", attrs[nfq.NFQA_CFG_CMD])[0] == nfq.NFQNL_CFG_CMD_BIND
        assert struct.unpack(">IB", attrs[nfq.NFQA_CFG_PARAMS]) == (0, nfq.NFQNL_COPY_META)
        start = time.monotonic()
        kernel.sock.send(packet_message(1) + packet_message(2))
        kernel.sock.send(error_message(0, msg.seq))
        kernel.sock.send(packet_message(3))
        assert kernel.verdict() == (nfq.NF_ACCEPT, 3)  # one batch for the three
        assert time.monotonic() - start >= 0.05
        kernel.sock.send(error_message(errno.ENOENT, 999))  # a refused verdict: logged, not fatal

        kernel.sock.send(packet_message(4))
        time.sleep(0.01)
        stop_w.send(b"\0")  # what the signal handler's wakeup does
        # Shutdown: everything queued, read or not, then unbind.
        assert kernel.verdict() == (nfq.NF_ACCEPT, 4 + 2**30)
        assert kernel.config() == (nfq.NFQNL_CFG_CMD_UNBIND, 0)
        thread.join(5)
        assert not thread.is_alive() and not failure
        assert delayer.scheduler.scheduled == 4 and delayer.batches == 2 and delayer.errors == 1
    finally:
        for s in (kernel_end, stop_r, stop_w):
            s.close()


def test_bind_refused_when_the_queue_is_taken():
    kernel_end, delayer_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    kernel = FakeKernel(kernel_end)
    delayer = nfq.Delayer(3, ReleaseScheduler(0.0), sock=delayer_end)
    thread, failure = in_thread(delayer.open)
    try:
        kernel.config()
        kernel.config()
        kernel.config(errno.EBUSY)
        thread.join(5)
        (e,) = failure
        assert isinstance(e, nfq.NetlinkError) and e.errno == errno.EBUSY
        assert e.strerror == "bound by another program"
    finally:
        kernel_end.close()
        delayer_end.close()


def test_bind_without_the_capability():
    # nfnetlink refuses every command with EPERM, PF_BIND included, so the BIND is not even sent.
    kernel_end, delayer_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    kernel = FakeKernel(kernel_end)
    delayer = nfq.Delayer(3, ReleaseScheduler(0.0), sock=delayer_end)
    thread, failure = in_thread(delayer.open)
    try:
        kernel.config(errno.EPERM)
        kernel.config(errno.EPERM)
        thread.join(5)
        (e,) = failure
        assert isinstance(e, nfq.NetlinkError) and e.errno == errno.EPERM
        assert "needs CAP_NET_ADMIN" in str(e)
    finally:
        kernel_end.close()
        delayer_end.close()


def test_mean_is_finite_for_no_packets():
    d = nfq.Delayer(1, ReleaseScheduler(0.0), sock=socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)[0])
    try:
        assert "0 packets delayed (mean 0.0 ms" in d.summary()
        assert math.isfinite(d.scheduler.total_delay_s)
    finally:
        d.sock.close()
