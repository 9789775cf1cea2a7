"""A case's evidence: node log lines (as `docker logs --timestamps` prints them) to one timeline."""

from __future__ import annotations

from lab.chaos import evidence

T0 = evidence.stamp("2026-11-30T19:03:28.500000000Z x")

A3 = [
    "2026-11-30T19:03:28.675041210Z 2026-11-30 19:03:28,670 zookeeper WARN  [QuorumPeer[myid=3]:Follower@128] - "
    "Exception when following the leader",
    "2026-11-30T19:03:28.682110249Z 2026-11-30 19:03:28,678 WARNING halab.zk: ZooKeeper session SUSPENDED",
    "2026-11-30T19:03:28.680719718Z 2026-11-30 19:03:28,680 zookeeper INFO  [QuorumPeer[myid=3]:QuorumPeer@917] - "
    "Peer state changed: looking",
    "2026-11-30T19:03:28.683014654Z 2026-11-30 19:03:28,682 WARNING halab.node: HA state active -> degraded (no "
    "ZooKeeper session with quorum)",
    "2026-11-30T19:03:28.686909891Z java.net.ConnectException: Connection refused",
    "2026-11-30T19:03:28.686913549Z 	at java.base/sun.nio.ch.Net.pollConnectNow(Net.java:684)",
    "2026-11-30T19:03:29.026370566Z 2026-11-30 19:03:29,025 zookeeper WARN  [LeaderConnector-b2.interdc/<unresolved>"
    ":2888:Learner$LeaderConnector@448] - Unexpected exception, tries=0, remaining init limit=1000, connecting to "
    "b2.interdc/<unresolved>:2888",
    "2026-11-30T19:03:29.026386674Z java.net.UnknownHostException: b2.interdc",
    "2026-11-30T19:03:29.030000000Z java.net.UnknownHostException: b2.interdc",
    "2026-11-30T19:03:29.530000000Z 2026-11-30 19:03:29,530 zookeeper ERROR [LeaderConnector-b2.interdc/<unresolved>"
    ":2888:Learner$LeaderConnector@432] - Unexpected exception, connectToLeader exceeded. tries=1, remaining init "
    "limit=500, connecting to b2.interdc/<unresolved>:2888",
    "2026-11-30T19:04:00.000000000Z 2026-11-30 19:04:00,000 zookeeper INFO  [QuorumPeer[myid=3]:QuorumPeer@917] - "
    "Peer state changed: following - broadcast",
]
B2 = [
    "2026-11-30T19:03:30.240000000Z 2026-11-30 19:03:30,240 zookeeper INFO  [WorkerReceiver[myid=5]:Leader@1395] - "
    "Quit leading due to voter changed mind.",
    "2026-11-30T19:03:29.040000000Z 2026-11-30 19:03:29,040 zookeeper INFO  [QuorumPeer[myid=5]:Leader@588] - "
    "LEADING - LEADER ELECTION TOOK - 306 MS",
    "2026-11-30T19:03:30.240000000Z org.apache.zookeeper.server.quorum.QuorumPeer$QuorumPeerException: Timeout while "
    "waiting for epoch from quorum",
]


def test_timestamps_are_read_to_the_microsecond():
    assert T0 is not None
    t = evidence.stamp("2026-11-30T19:03:28.682110249Z x")
    assert t is not None and round(t - T0, 6) == 0.18211
    assert evidence.stamp("\tat java.base/...") is None
    assert evidence.stamp("2026-11-30T19:03:28Z whole second") == T0 - 0.5


def test_one_node_timeline_sorted_deduplicated_and_windowed():
    assert T0 is not None
    evs = evidence.events("a3", A3, T0, T0 + 5)
    assert [e.what for e in evs] == [
        "zk lost its leader",
        "zk looking",
        "client session SUSPENDED",
        "node active -> degraded",
        "zk connect to leader b2.interdc failed (try 0)",
        "zk cannot resolve b2.interdc",  # said twice in the log, once here
        "zk gave up connecting to leader b2.interdc",
    ]
    assert all(e.node == "a3" for e in evs)  # the broadcast at +31.5 s is outside the window


def test_nodes_merge_in_time_and_render_relative_to_the_fault():
    assert T0 is not None
    merged = evidence.timeline(
        {"a3": evidence.events("a3", A3, T0, T0 + 5), "b2": evidence.events("b2", B2, T0, T0 + 5)}
    )
    assert [e.t for e in merged] == sorted(e.t for e in merged)
    lines = evidence.render(merged, T0)
    assert "+0.54 s b2: zk election took 306 ms" in lines
    assert set(lines[-2:]) == {  # the same instant: the leader quits because its voters left
        "+1.74 s b2: zk leader quit: a voter changed its mind",
        "+1.74 s b2: zk leader gave up waiting for its voters' epochs",
    }
    short = evidence.render(merged, T0, limit=3)
    assert len(short) == 4 and short[-1] == f"... {len(merged) - 3} more event(s)"


def test_lines_that_say_nothing_known_are_left_out():
    assert evidence.classify("2026-11-30 19:03:28,686 zookeeper WARN  Cannot open channel to 2") is None
    assert evidence.classify("server exited with status 3; restart 2 in 1.0 s") == (
        "supervisor restarts the server (exit 3, restart 2)"
    )
    redis = "halab.redis WARNING publish process.execute to Redis 127.0.0.1:6381 failed after 2.0 s (TimeoutError)"
    assert evidence.classify(redis) == "event publish to Redis 127.0.0.1:6381 lost 2.0 s (TimeoutError)"
    gossip = 'msg="memberlist: Marking 12d842f25054 as failed, suspect timeout reached (0 peer confirmations)"'
    assert evidence.classify(gossip) == "swarm gossip marks host 12d842f25054 failed"
    back = 'level=info msg="Node 12d842f25054/172.21.0.4, joined gossip cluster"'
    assert evidence.classify(back) == "swarm gossip: host 12d842f25054 joined"
    forget = "forgetting cluster member 9f1c (id 3, 172.30.0.13, slot 3)"
    assert evidence.classify(forget) == "cluster-manager forgets member 172.30.0.13"
