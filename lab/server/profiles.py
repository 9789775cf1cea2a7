"""Node profiles: how a simulated server node behaves when ZooKeeper, the database or its peers fail.

`rancher-1.0` (the default) fails the way Rancher server v1.0.1 to v1.1.4 really failed, as read
from its released code (cattle v0.159 to v0.165, Curator 2.10, cluster-manager v0.1.5,
dropwizard metrics 3.0.1); `tuned` is the lab's earlier node, which fences itself as quorum
arithmetic predicts: what a hardened deployment could do. docs/architecture.md "Node profiles"
has the table.

Pure and standalone: the server builds its configuration from it (lab/server/config.py) and the
harness imports it to render a lab (load balancer checks, restart policy), never the reverse.
A setting is a field of `Profile`; its metadata says who applies it: `env` names the server's
variable that overrides it one by one, `harness` marks what the lab renders around the node.
Adding one: a field here, its value and its one-line "why" in both profiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, get_type_hints

DEFAULT_PROFILE = "rancher-1.0"


def _env(name: str, minimum: float | None = None) -> Any:
    return field(metadata={"env": name, "min": minimum})


def _harness() -> Any:
    return field(metadata={"harness": True})


def _default_of(name: str) -> Any:
    """The default of a server variable that config.py reads itself."""
    return field(metadata={"default_of": name})


@dataclass(frozen=True)
class Profile:
    name: str = field(metadata={"identity": True})
    summary: str = field(metadata={"identity": True})
    # -- the server (overridable by its variable) --
    ping_gate: bool = _env("HALAB_PING_GATE")
    state_gate: bool = _env("HALAB_STATE_GATE")
    commit_fence: bool = _env("HALAB_COMMIT_FENCE")
    cache_reads: bool = _env("HALAB_CACHE_READS")
    exit_on_session_loss: bool = _env("HALAB_EXIT_ON_SESSION_LOSS")
    restart_server: bool = _env("HALAB_RESTART_SERVER")
    zk_wait_tries: int = _env("HALAB_ZK_WAIT_TRIES", 0)
    zk_wait_interval: float = _env("HALAB_ZK_WAIT_INTERVAL", 0.1)
    zk_tick_ms: int = _env("HALAB_ZK_TICK_MS", 50)
    zk_init_limit: int = _env("HALAB_ZK_INIT_LIMIT", 1)
    zk_sync_limit: int = _env("HALAB_ZK_SYNC_LIMIT", 1)
    zk_connect_to_leader_limit: int = _env("HALAB_ZK_CONNECT_TO_LEADER_LIMIT", 0)
    zk_election_connect_timeout_ms: int = _env("HALAB_ZK_ELECTION_CONNECT_TIMEOUT_MS", 100)
    zk_max_notification_interval_ms: int = _env("HALAB_ZK_MAX_NOTIFICATION_INTERVAL_MS", 200)
    zk_leader_connect_delay_ms: int = _env("HALAB_ZK_LEADER_CONNECT_DELAY_MS", 10)
    zk_max_wait_for_epoch_ms: int = _env("HALAB_ZK_MAX_WAIT_FOR_EPOCH_MS", -1)
    zk_session_timeout: float = _env("HALAB_ZK_SESSION_TIMEOUT", 0.5)
    zk_connection_timeout: float = _env("HALAB_ZK_CONNECTION_TIMEOUT", 0.1)
    zk_client_connect_timeout: float = _env("HALAB_ZK_CLIENT_CONNECT_TIMEOUT", 0.0)
    zk_retry_tries: int = _env("HALAB_ZK_RETRY_TRIES", 0)
    zk_retry_delay: float = _env("HALAB_ZK_RETRY_DELAY", 0.0)
    zk_retry_backoff: float = _env("HALAB_ZK_RETRY_BACKOFF", 1.0)
    zk_retry_jitter: bool = _env("HALAB_ZK_RETRY_JITTER")
    lock_timeout: float = _env("HALAB_LOCK_TIMEOUT", 0.1)
    lock_no_session_status: int = _env("HALAB_LOCK_NO_SESSION_STATUS", 500)
    cluster_heartbeat: float = _env("HALAB_CLUSTER_HEARTBEAT", 0.1)
    process_replay_period: float = _env("HALAB_PROCESS_REPLAY_PERIOD", 0.1)
    process_replay_after: float = _env("HALAB_PROCESS_REPLAY_AFTER", 0.0)
    changelog_lock_stale: float = _env("HALAB_CHANGELOG_LOCK_STALE", 0.0)
    host_clock_times: bool = _env("HALAB_HOST_CLOCK_TIMES")
    migration_max_wait: float = _env("HALAB_MIGRATION_MAX_WAIT", 1.0)
    cluster_manager: bool = _env("HALAB_CLUSTER_MANAGER")
    heap_baseline: int = _env("HALAB_HEAP_BASELINE", 0)
    heap_per_resource: int = _env("HALAB_HEAP_PER_RESOURCE", 0)
    db_pool_max_total: int = _default_of("CATTLE_DB_CATTLE_MAXTOTAL")
    db_pool_max_wait_ms: int = _default_of("CATTLE_DB_CATTLE_MAXWAIT")
    # -- around the node (rendered by the lab) --
    lb_check_inter_ms: int = _harness()
    lb_check_fastinter_ms: int = _harness()
    lb_check_downinter_ms: int = _harness()
    lb_check_timeout_ms: int = _harness()
    lb_check_fall: int = _harness()
    lb_check_rise: int = _harness()
    lb_observe_errors: bool = _harness()
    lb_retry_on: str = _harness()
    container_restart: str = _harness()
    # setting -> one line: its source in the real code, or why the lab differs
    why: Mapping[str, str] = field(default_factory=dict, metadata={"identity": True})

    def __post_init__(self) -> None:
        missing = [f.name for f in settings() if not self.why.get(f.name)]
        if missing:
            raise ValueError(f"profile {self.name}: no 'why' for {', '.join(missing)}")

    @property
    def session_loss_after(self) -> float:
        """Seconds without a connection after which the session counts as lost (exit_on_session_loss).

        What Curator 2.10 does on SUSPENDED: a background sync that waits up to the connection
        timeout for a connection, then RetryNTimes retries it; when they are exhausted it posts
        LOST, on which cattle calls System.exit(3)."""
        return self.zk_connection_timeout + self.zk_retry_tries * self.zk_retry_delay

    def lb_check(self) -> str:
        """HAProxy `default-server` health-check options."""
        opts = (
            f"inter {self.lb_check_inter_ms}ms fastinter {self.lb_check_fastinter_ms}ms "
            f"downinter {self.lb_check_downinter_ms}ms fall {self.lb_check_fall} rise {self.lb_check_rise}"
        )
        return opts + (" observe layer4 error-limit 1 on-error fastinter" if self.lb_observe_errors else "")

    def values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in settings()}


def settings() -> tuple[Any, ...]:
    """The dataclass fields that are settings (not the name, summary or reasons)."""
    return tuple(f for f in fields(Profile) if not f.metadata.get("identity"))


def server_settings() -> tuple[Any, ...]:
    return tuple(f for f in settings() if "env" in f.metadata)


def harness_settings() -> tuple[Any, ...]:
    return tuple(f for f in settings() if f.metadata.get("harness"))


RANCHER_1_0 = Profile(
    name="rancher-1.0",
    summary="Rancher server v1.0.1-v1.1.4 as released: /ping always pong, exit(3) on a lost ZooKeeper session",
    ping_gate=False,
    state_gate=False,
    commit_fence=False,
    cache_reads=True,
    exit_on_session_loss=True,
    restart_server=True,
    zk_wait_tries=31,
    zk_wait_interval=2.0,
    zk_tick_ms=2000,
    zk_init_limit=10,
    zk_sync_limit=5,
    zk_connect_to_leader_limit=0,
    zk_election_connect_timeout_ms=5000,
    zk_max_notification_interval_ms=60000,
    zk_leader_connect_delay_ms=1000,
    zk_max_wait_for_epoch_ms=-1,
    zk_session_timeout=30.0,
    zk_connection_timeout=30.0,
    zk_client_connect_timeout=0.0,
    zk_retry_tries=3,
    zk_retry_delay=1.0,
    zk_retry_backoff=1.0,
    zk_retry_jitter=False,
    lock_timeout=10.0,
    lock_no_session_status=500,
    cluster_heartbeat=5.0,
    process_replay_period=15.0,
    process_replay_after=0.0,
    changelog_lock_stale=0.0,
    host_clock_times=True,
    migration_max_wait=300.0,
    cluster_manager=True,
    heap_baseline=128 << 20,
    heap_per_resource=2969 << 10,
    db_pool_max_total=1000,
    db_pool_max_wait_ms=1000,
    lb_check_inter_ms=1000,
    lb_check_fastinter_ms=1000,
    lb_check_downinter_ms=1000,
    lb_check_timeout_ms=1000,
    lb_check_fall=2,
    lb_check_rise=1,
    lb_observe_errors=False,
    lb_retry_on="conn-failure",
    container_restart="unless-stopped",
    why={
        "ping_gate": "dropwizard's PingServlet answers 200 pong whatever ZooKeeper, Redis or MySQL do",
        "state_gate": "cattle has no HA state: it serves reads and tries writes until it exits",
        "commit_fence": "cattle commits without re-checking its ZooKeeper session (no fencing token)",
        "cache_reads": "cattle answers reads from its in-memory cache, kept by the events each node's Redis"
        " carries: a node cut off from the others keeps answering from it (stale reads, docs/survivability.md)",
        "exit_on_session_loss": "cattle's ZooKeeper listener logs 'Lost Connection to ZooKeeper!' and calls "
        "System.exit(3) on LOST",
        "restart_server": "the cattle container runs with a restart policy; its zk container is a separate "
        "container and keeps running",
        "zk_wait_tries": "rancher/server's launcher asks the first ZooKeeper host for ruok 31 times before it "
        "starts cattle",
        "zk_wait_interval": "the launcher sleeps 2 s between ruok tries",
        "zk_tick_ms": "the zk container runs ZooKeeper with tickTime=2000",
        "zk_init_limit": "ZooKeeper's sample configuration (zoo_sample.cfg) for tickTime 2000",
        "zk_sync_limit": "ZooKeeper's sample configuration (zoo_sample.cfg) for tickTime 2000",
        "zk_connect_to_leader_limit": "0: ZooKeeper's default, a follower's connect to its leader may take initLimit"
        " ticks (20 s)",
        "zk_election_connect_timeout_ms": "ZooKeeper's default zookeeper.cnxTimeout; the zk container did not set it",
        "zk_max_notification_interval_ms": "ZooKeeper 3.4's election: notification back-off doubles up to 60 s",
        "zk_leader_connect_delay_ms": "ZooKeeper 3.4's follower tries the elected leader 5 times, 1 s apart",
        "zk_max_wait_for_epoch_ms": "ZooKeeper 3.4 has no such limit: a leader whose voters left waits initLimit"
        " ticks (20 s)",
        "zk_session_timeout": "cattle's Curator client: session timeout 30,000 ms",
        "zk_connection_timeout": "cattle's Curator client: connection timeout 30,000 ms",
        "zk_client_connect_timeout": "0: ZooKeeper's Java client gives a TCP connect the session timeout divided by"
        " the number of hosts (10 s each for 3 hosts)",
        "zk_retry_tries": "cattle's Curator client: RetryNTimes(3, 1000 ms)",
        "zk_retry_delay": "cattle's Curator client: RetryNTimes(3, 1000 ms)",
        "zk_retry_backoff": "RetryNTimes sleeps the same time before every retry",
        "zk_retry_jitter": "RetryNTimes sleeps exactly its delay",
        "lock_timeout": "cattle waits 10,000 ms for a resource lock, then RESOURCE_BUSY (409)",
        "lock_no_session_status": "a Curator error while locking is an IllegalStateException: HTTP 500",
        "cluster_heartbeat": "cluster-manager heartbeats the cluster table every 5 s",
        "process_replay_period": "cattle's process.replay task runs every 15 s (task.process.replay.schedule=15)",
        "process_replay_after": "0: the replay dispatches every unfinished process, however young"
        " (JooqProcessRecordDao.pendingTasks has no age condition)",
        "host_clock_times": "cattle stamps a process's start and end with its own host's clock"
        " (ProcessRecord: new Date()), so a skewed host writes skewed times",
        "changelog_lock_stale": "0: never taken over; Liquibase's DATABASECHANGELOGLOCK left by a node killed"
        " mid-migration hangs every later start until cleared by hand (rancher/rancher #4072, #6057, #8305)",
        "migration_max_wait": "Liquibase waits changeLogLockWaitTimeInMinutes (5) for the lock, then 'Could not"
        " acquire change log lock': cattle exits and its restart policy starts it again",
        "cluster_manager": "cluster-manager v0.1.5 gives slots, tunnels each slot and runs this host's ZooKeeper and"
        " Redis in its slot; cattle's events go over every node's Redis",
        "heap_baseline": "modelled bytes an idle cattle holds: the launcher's -Xms128m (docs/rancher-1.0-behaviour.md)",
        "heap_per_resource": "modelled bytes per live resource: 1 GiB exhausted at ~306 resources"
        " (rancher/rancher #2339)",
        "db_pool_max_total": "cattle v0.159.8: db.maxtotal=1000 (the guide's 50 per node sized MySQL, not the pool)",
        "db_pool_max_wait_ms": "cattle v0.159.8: global.pool.maxwait=1000",
        "lb_check_inter_ms": "the management stack's load balancer checks /ping every 1,000 ms",
        "lb_check_fastinter_ms": "the management stack's load balancer has one check interval",
        "lb_check_downinter_ms": "the management stack's load balancer has one check interval",
        "lb_check_timeout_ms": "the management stack's check times out after 1,000 ms",
        "lb_check_fall": "the management stack's check: unhealthy after 2 failures",
        "lb_check_rise": "the management stack's check: healthy after 1 success",
        "lb_observe_errors": "the management stack's HAProxy marks a server down by its checks only",
        "lb_retry_on": "the management stack's HAProxy (1.x) retries connection failures only",
        "container_restart": "Rancher's HA containers run with a restart policy; a stopped or killed one stays down",
    },
)

TUNED = Profile(
    name="tuned",
    summary="the lab's hardened node: fenced by quorum within seconds (/ping 503, writes refused, fenced commits)",
    ping_gate=True,
    state_gate=True,
    commit_fence=True,
    cache_reads=False,
    exit_on_session_loss=False,
    restart_server=False,
    zk_wait_tries=0,
    zk_wait_interval=2.0,
    zk_tick_ms=500,
    zk_init_limit=10,
    zk_sync_limit=4,
    zk_connect_to_leader_limit=2,
    zk_election_connect_timeout_ms=1000,
    zk_max_notification_interval_ms=1000,
    zk_leader_connect_delay_ms=500,
    zk_max_wait_for_epoch_ms=1000,
    zk_session_timeout=4.0,
    zk_connection_timeout=4.0,
    zk_client_connect_timeout=0.5,
    zk_retry_tries=3,
    zk_retry_delay=0.05,
    zk_retry_backoff=2.0,
    zk_retry_jitter=True,
    lock_timeout=3.0,
    lock_no_session_status=503,
    cluster_heartbeat=1.0,
    process_replay_period=1.0,
    process_replay_after=2.0,
    changelog_lock_stale=15.0,
    host_clock_times=False,
    migration_max_wait=600.0,
    cluster_manager=False,
    heap_baseline=0,
    heap_per_resource=0,
    db_pool_max_total=50,
    db_pool_max_wait_ms=2000,
    lb_check_inter_ms=250,
    lb_check_fastinter_ms=150,
    lb_check_downinter_ms=500,
    lb_check_timeout_ms=400,
    lb_check_fall=2,
    lb_check_rise=2,
    lb_observe_errors=True,
    lb_retry_on="conn-failure empty-response response-timeout 503",
    container_restart="no",
    why={
        "ping_gate": "a node that is not active (quorum, database, schema) leaves the load balancer at once",
        "state_gate": "a node that is not active refuses writes (503 NOT_ACTIVE) and replays no process",
        "cache_reads": "reads by id come from the database: a node cut off from the others serves no value"
        " older than the newest committed one (the cache served stale reads before it noticed the cut)",
        "commit_fence": "a COMMIT re-checks that the session that took the lock is still connected, and the"
        " database refuses it when a newer holder of the lock registered a higher token (the lock znode's zxid)",
        "exit_on_session_loss": "the node stays up, fenced, and becomes active again when its session is back",
        "restart_server": "nothing exits on session loss, so nothing needs restarting",
        "zk_wait_tries": "the node starts at once; its HA state waits for ZooKeeper",
        "zk_wait_interval": "unused while zk_wait_tries is 0",
        "zk_tick_ms": "short ticks detect a lost leader or follower in about 2 s",
        "zk_init_limit": "followers connect and sync within 5 s",
        "zk_sync_limit": "a follower that hears nothing from the leader for 2 s drops out",
        "zk_connect_to_leader_limit": "a follower gives up a leader it cannot reach after 2 ticks (1 s), not initLimit"
        " (5 s): behind a one-way cut, members follow a leader whose notifications reach them but that their"
        " own packets cannot (docs/survivability.md)",
        "zk_election_connect_timeout_ms": "an election does not hang 5 s on an unreachable peer",
        "zk_max_notification_interval_ms": "a member that went back to LOOKING hears the new leader within 1 s, not"
        " after a back-off of 3.2 s, 6.4 s, ... (docs/survivability.md, leader-side blackout)",
        "zk_leader_connect_delay_ms": "a voter keeps trying a leader that has not started leading for ~2.5 s instead of"
        " 0.5 s, so it does not change its mind (ZOOKEEPER-3109)",
        "zk_max_wait_for_epoch_ms": "a leader whose voter went back to LOOKING quits after 1 s instead of waiting"
        " initLimit (5 s) for it: ZOOKEEPER-3109's opt-in fix",
        "zk_session_timeout": "a dead node's locks pass to a survivor within seconds",
        "zk_connection_timeout": "unused: a tuned node never exits on session loss",
        "zk_client_connect_timeout": "a reconnect does not hang on a member cut off behind a DROP rule: kazoo would"
        " give each TCP connect the whole 4 s session (the leader-side blackout)",
        "zk_retry_tries": "kazoo retries a command a few times on a flaky connection",
        "zk_retry_delay": "short exponential backoff keeps retries inside a request",
        "zk_retry_backoff": "short exponential backoff keeps retries inside a request",
        "zk_retry_jitter": "kazoo's default jitter on retry delays",
        "lock_timeout": "a write gives up on a busy resource in 3 s, well inside the load balancer's timeout",
        "lock_no_session_status": "no quorum is the node's state, not a server error: 503 NO_QUORUM",
        "cluster_heartbeat": "membership follows failures within seconds",
        "process_replay_period": "a dead node's unfinished processes are taken over within seconds of its session",
        "process_replay_after": "only processes unfinished for 2 s are replayed: a young one is left to the node"
        " that dispatched it",
        "host_clock_times": "process times come from the database's clock, one clock for every node",
        "changelog_lock_stale": "the owner heartbeats the change-log lock; one silent for 15 s by the database's"
        " clock is taken over with a compare-and-set (lab/server/migrations.py)",
        "migration_max_wait": "a node waits up to 10 minutes for a live migration",
        "cluster_manager": "ZooKeeper members are fixed by the lab; processes run where they were asked for, no Redis",
        "heap_baseline": "the earlier model: only the cache and requests in flight",
        "heap_per_resource": "the earlier model: only the cache and requests in flight",
        "db_pool_max_total": "the guide's 50 connections per node, enforced by the pool",
        "db_pool_max_wait_ms": "a request waits 2 s for a connection, then 503 POOL_EXHAUSTED",
        "lb_check_inter_ms": "drains a dead or fenced node in about half a second",
        "lb_check_fastinter_ms": "checks faster while a server changes state",
        "lb_check_downinter_ms": "finds a recovered server within a second",
        "lb_check_timeout_ms": "a hung node fails its check quickly",
        "lb_check_fall": "two failed checks mark a server down",
        "lb_check_rise": "two good checks before a server takes traffic again",
        "lb_observe_errors": "a failed connection on live traffic speeds up the checks",
        "lb_retry_on": "idempotent requests that meet a 503 or a dead connection go to another node",
        "container_restart": "a node that exits stays down: the lab sees every exit",
    },
)

PROFILES: Mapping[str, Profile] = {p.name: p for p in (RANCHER_1_0, TUNED)}


def profile(name: str) -> Profile:
    """The profile called `name`; ValueError naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown node profile {name!r}: known profiles are {', '.join(PROFILES)}") from None


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _parse(kind: Any, name: str, raw: str, minimum: float | None) -> Any:
    if kind is bool:
        if raw.lower() in _TRUE + _FALSE:
            return raw.lower() in _TRUE
        raise ValueError(f"{name}={raw!r} is not a boolean (true or false)")
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not {'an integer' if kind is int else 'a number'}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={value} is below {minimum:g}")
    return value


def from_env(env: Mapping[str, str]) -> Profile:
    """The node's settings: HALAB_PROFILE's (default rancher-1.0), each replaced by its own
    variable when that is set. ValueError names a bad value. The harness calls it with a node's
    environment to show what the node runs with."""
    base = profile(env.get("HALAB_PROFILE", "").strip() or DEFAULT_PROFILE)
    kinds = get_type_hints(Profile)
    values = {}
    for f in server_settings():
        raw = env.get(f.metadata["env"], "").strip()
        if raw:
            values[f.name] = _parse(kinds[f.name], f.metadata["env"], raw, f.metadata["min"])
    if values.get("lock_no_session_status", 500) not in (500, 503):
        raise ValueError("HALAB_LOCK_NO_SESSION_STATUS must be 500 or 503")
    return replace(base, **values)


def effective(p: Profile) -> dict[str, Any]:
    """The profile's name, its server settings' values and those the environment overrode."""
    base = profile(p.name)
    return {
        "profile": p.name,
        "settings": {f.name: getattr(p, f.name) for f in server_settings()},
        "sessionLossAfterSeconds": p.session_loss_after,
        "overridden": sorted(f.name for f in server_settings() if getattr(p, f.name) != getattr(base, f.name)),
    }
