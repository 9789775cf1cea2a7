"""The lab platform on real Docker: labs come up healthy, answer through the load balancer on
HTTP and verified TLS, report status, and leave nothing behind when they go down."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from email.message import Message

import pytest

from lab.cluster import docker, lifecycle, state
from lab.core.errors import BadInput

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def get(url: str, cafile: str | None = None) -> tuple[int, Message, dict]:
    """GET and parse JSON; headers stay case-insensitive (HAProxy sends them in lower case)."""
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    with urllib.request.urlopen(url, timeout=10, context=ctx) as resp:
        return resp.status, resp.headers, json.loads(resp.read())


def halab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=120)


def leftovers(name: str) -> dict[str, list[str]]:
    return {kind: docker.labelled(kind, name) for kind in ("container", "network", "volume")}


@pytest.mark.parametrize("nodes", [1, 3])
def test_lab_comes_up_answers_and_goes_down(halab_lab_factory, nodes):
    t = halab_lab_factory(nodes)
    ca = str(state.ca_path(t.lab))

    status, headers, body = get(f"http://127.0.0.1:{t.ports.http}/v1")
    assert status == 200 and body["type"] == "apiVersion"
    assert headers["X-Rancher-Node"] in t.node_names
    assert "X-API-Schemas" in headers

    status, _, body = get(f"https://127.0.0.1:{t.ports.https}/v1/projects", cafile=ca)
    assert status == 200 and body["type"] == "collection"
    # Links follow the scheme and port the client used, so they work through the LB.
    assert body["links"]["self"].startswith(f"https://127.0.0.1:{t.ports.https}/")

    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        get(f"https://127.0.0.1:{t.ports.https}/v1", cafile=ssl.get_default_verify_paths().cafile)

    st = halab("--json", "status", "--name", t.lab)
    assert st.returncode == 0, st.stderr
    report = json.loads(st.stdout)
    assert [n["ha_state"] for n in report["nodes"]] == ["active"] * nodes
    assert [n["lb"] for n in report["nodes"]] == ["UP"] * nodes
    modes = sorted(n["zk_mode"] for n in report["nodes"])
    assert modes == (["standalone"] if nodes == 1 else ["follower"] * (nodes - 1) + ["leader"])
    assert report["db"]["answers"] is True

    down = halab("down", "--name", t.lab)
    assert down.returncode == 0, down.stderr
    assert leftovers(t.lab) == {"container": [], "network": [], "volume": []}


def test_second_up_of_a_running_lab_is_refused(halab_lab_factory):
    t = halab_lab_factory(1)
    with pytest.raises(BadInput, match="already up"):
        lifecycle.up(t)
    assert len(lifecycle.running_containers(t.lab)) == 3


def test_down_keep_data_keeps_only_the_database_volume(halab_lab_factory):
    t = halab_lab_factory(1)
    lifecycle.down(t.lab, keep_data=True)
    left = leftovers(t.lab)
    assert left["container"] == [] and left["network"] == [] and len(left["volume"]) == 1
    lifecycle.down(t.lab)
    assert leftovers(t.lab)["volume"] == []
