"""`halab ui` without Docker: the picture's model, the guard, and the server over real HTTP on
127.0.0.1 with a lab that answers from memory."""

from __future__ import annotations

import http.client
import json
import os
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from lab.cluster.topology import make_topology
from lab.core.errors import BadInput, FaultNotEffective
from lab.faults import make_spec
from lab.ui import guard, server, view

T5 = make_topology(5)  # dc-a: a1 a2 a3 (and the database), dc-b: b1 b2; the load balancer outside


def _entry(fault_id: str, spec: Any, targets: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"id": fault_id, "spec": spec.to_dict(), "targets": list(targets), "t0": 100.0, "phase": "active"}


def _links(spec: Any) -> list[tuple[str, str, bool]]:
    links = view.cut_links(T5, spec)
    assert links is not None
    return sorted((link["a"], link["b"], link["one_way"]) for link in links)


def test_a_split_of_datacenters_cuts_every_link_between_what_is_placed_in_them_each_once():
    nodes = [(a, b, False) for a in ("a1", "a2", "a3") for b in ("b1", "b2")]
    both = [*nodes, ("b1", "db", False), ("b2", "db", False)]  # a both-ways link once, its ends in name order
    assert _links(make_spec("split", sides=[["dc-a"], ["dc-b"]])) == both
    # One way: each link from the first side to the other, in that direction only.
    one_way = [(a, b, True) for a in ("a1", "a2", "a3", "db") for b in ("b1", "b2")]
    assert _links(make_spec("split", sides=[["dc-a"], ["dc-b"]], one_way=True)) == one_way


def test_isolate_and_delay_take_the_links_the_injector_cuts_or_slows_not_the_load_balancer():
    # Isolate cuts a node from its peers and the database, not from the load balancer (netmodel.groups).
    assert _links(make_spec("isolate", ["b1"])) == [(n, "b1", False) for n in ("a1", "a2", "a3")] + [
        ("b1", "b2", False),
        ("b1", "db", False),
    ]
    # One side of a delay named: against the other nodes.
    assert _links(make_spec("delay", sides=[["db"]], delay=0.1)) == [(n, "db", False) for n in T5.node_names]
    assert view.cut_links(T5, make_spec("kill", ["a1"])) is None


def test_the_view_draws_cuts_and_badges_and_lists_every_fault():
    status = {
        "nodes": [
            {"name": n, "zk_mode": "follower", "ha_state": "active", "lb": "UP", "container": "running"}
            for n in T5.node_names
        ],
        "db": {"answers": True, "container": "running"},
        "lb": {"container": "running"},
    }
    faults = [
        _entry("f1", make_spec("split", sides=[["dc-a"], ["dc-b"]], one_way=True)),
        _entry("f2", make_spec("stall", ["leader"], process="zookeeper"), ("a2",)),
    ]
    v = view.lab_view(T5, status, faults, now=130.0)
    assert [d["name"] for d in v["datacenters"]] == ["dc-a", "dc-b", "outside"]
    assert v["datacenters"][2]["endpoints"] == ["lb"]
    assert v["cuts"] == [
        {
            "id": "f1",
            "kind": "split",
            "links": [{"a": a, "b": b, "one_way": True} for a in ("a1", "a2", "a3", "db") for b in ("b1", "b2")],
            "label": "f1 split dc-a > dc-b",
        }
    ]
    assert v["badges"] == {"a2": ["f2 stall zookeeper of leader"]}  # on the node it was resolved to
    assert [(f["id"], f["age_s"]) for f in v["faults"]] == [("f1", 30), ("f2", 30)]


def test_load_rates_are_counter_differences_and_none_across_a_restart():
    rows = [{"pxname": "api", "svname": "FRONTEND", "req_tot": "1000", "hrsp_5xx": "10", "ereq": "2"}]
    first = view.lb_counters(rows, 10.0)
    later = view.lb_counters([{**rows[0], "req_tot": "1500", "hrsp_5xx": "30"}], 12.0)
    assert view.load_rates(first, later) == {"requests_per_s": 250.0, "errors_per_s": 10.0}
    assert view.load_rates(None, later) is None
    assert view.load_rates(later, view.lb_counters([{**rows[0], "req_tot": "3"}], 13.0)) is None  # restarted
    assert view.lb_counters([{"pxname": "nodes", "svname": "BACKEND"}], 1.0) is None


def test_the_token_is_made_once_and_readable_by_its_owner_only(tmp_path):
    first = guard.token(tmp_path / "lab")
    assert guard.token(tmp_path / "lab") == first and len(first) >= 32
    assert os.stat(tmp_path / "lab" / guard.TOKEN_FILE).st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "method,path,headers,status",
    [
        ("GET", "/", {"host": "evil.example:8000"}, 421),  # DNS rebinding
        ("GET", "/api/state", {"host": "127.0.0.1:8000"}, 401),  # no token
        ("GET", "/api/state", {"host": "127.0.0.1:8000", "x-halab-token": "nope"}, 401),
        (
            "GET",
            "/api/state",
            {"host": "127.0.0.1:8000", "x-halab-token": "s3cret", "origin": "http://evil.example"},
            403,
        ),
        ("POST", "/api/heal", {"host": "127.0.0.1:8000", "x-halab-token": "s3cret"}, 403),  # no Origin
    ],
)
def test_the_guard_refuses_other_hosts_origins_and_missing_tokens(method, path, headers, status):
    refused = guard.refusal(method, path, headers, 8000, "s3cret")
    assert refused is not None and refused[0] == status


def test_the_guard_lets_the_page_itself_through():
    own = {"host": "localhost:8000", "x-halab-token": "s3cret", "origin": "http://localhost:8000"}
    assert guard.refusal("POST", "/api/fault", own, 8000, "s3cret") is None
    assert guard.refusal("GET", "/", {"host": "127.0.0.1:8000"}, 8000, "s3cret") is None  # the page needs no token


def test_the_state_probes_the_lab_once_a_window_and_afresh_after_an_action(monkeypatch):
    from lab import faults
    from lab.cluster import lifecycle, probes

    probed: list[str] = []

    def status(t: Any) -> dict[str, Any]:
        probed.append(t.lab)
        return {"nodes": []}

    monkeypatch.setattr(lifecycle, "status", status)
    monkeypatch.setattr(probes, "lb_stats", lambda t: [])
    monkeypatch.setattr(faults, "active", lambda lab: [])
    monkeypatch.setattr(faults, "heal_lab", lambda t: SimpleNamespace(lines=lambda: ["nothing to heal"]))
    now = 100.0
    ui = server.LabUi(T5, clock=lambda: now)
    ui.state()
    now += server.STATUS_TTL - 0.01
    ui.state()
    assert len(probed) == 1  # within the window: the status read before
    now += 0.01
    ui.state()
    assert len(probed) == 2
    # An action, done or refused, shows at once: the next state probes again at the same instant.
    assert ui.heal({}) == {"lines": ["nothing to heal"]}
    ui.state()
    assert len(probed) == 3
    with pytest.raises(BadInput):
        ui.heal({"id": 3})
    ui.state()
    assert probed == [T5.lab] * 4


class MemoryLab(server.LabUi):
    def __init__(self) -> None:
        super().__init__(T5)
        self.applied: list[dict[str, Any]] = []

    def state(self) -> dict[str, Any]:
        return {"lab": "memory", "faults": [{"id": f"f{i}"} for i, _ in enumerate(self.applied)]}

    def fault(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("kind") == "kil":
            raise BadInput("request.kind: unknown kind 'kil'")
        if body.get("kind") == "io":
            raise FaultNotEffective("io db (1 iops): writes took 0.01 s")
        self.applied.append(body)
        return {"id": "f1"}


@pytest.fixture
def running():
    lab = MemoryLab()
    httpd = server.serve(lab, "s3cret")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield lab, httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def _call(port: int, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    sent = {"X-Halab-Token": "s3cret", "Origin": f"http://127.0.0.1:{port}", **headers}
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=sent)
    res = conn.getresponse()
    out = res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    conn.close()
    return out


def test_the_server_serves_the_page_and_the_state_to_its_own_page_only(running):
    _lab, port = running
    status, headers, page = _call(port, "GET", "/")
    assert status == 200 and b"<svg" in page and "frame-ancestors 'none'" in headers["content-security-policy"]
    assert _call(port, "GET", "/api/state")[0] == 200
    assert _call(port, "GET", "/api/state", **{"X-Halab-Token": "guess"})[0] == 401
    assert _call(port, "GET", "/api/state", Host="rebound.example")[0] == 421
    assert _call(port, "OPTIONS", "/api/fault")[0] == 405  # no preflight is ever granted


def test_faults_from_the_page_are_validated_and_errors_come_back_as_one_line(running):
    lab, port = running
    assert _call(port, "POST", "/api/fault", {"kind": "kill", "target": ["a1"]})[0] == 200
    assert lab.applied == [{"kind": "kill", "target": ["a1"]}]
    status, _, body = _call(port, "POST", "/api/fault", {"kind": "kil"})
    assert status == 400 and json.loads(body) == {"error": "request.kind: unknown kind 'kil'"}
    assert _call(port, "POST", "/api/fault", {"kind": "io"})[0] == 409
    assert _call(port, "POST", "/api/fault", ["kill"])[0] == 400  # not an object
    assert _call(port, "POST", "/api/fault", {"kind": "kill"}, Origin="http://evil.example")[0] == 403
    assert len(lab.applied) == 1
