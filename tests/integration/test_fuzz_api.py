"""Fuzzing the simulated server's API input on a real 1-node lab, through its load balancer, with a
bounded budget (hypothesis): generated bodies (malformed JSON, wrong types, unknown fields, huge
strings, nested junk, oversized), paths (unknown resources, ids, links, actions, query
parameters), methods and Authorization headers. Every answer comes from the node, is below 500
(503 only when the node says it is not active) and, when an error, a gdapi error body; afterwards
the node still answers /ping with pong, is active, and has logged no traceback. That includes
method tokens aiohttp's HTTP parser refuses before any handler runs (lab/server/listener.py)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from helpers import basic, problems_with, send, tracebacks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.cluster import probes
from lab.cluster.topology import Topology
from lab.server.api import MAX_BODY
from lab.server.resources import RESOURCE_TYPES

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# A bounded budget for CI on two shared cores (a request through the LB takes a few ms; the few
# oversized bodies longer). The deadline only catches a request that hangs.
FUZZ = settings(
    max_examples=1200,
    deadline=timedelta(seconds=20),
    print_blob=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # a falsifying example stays readable with a 2 MiB body
        body = self.body if self.body is None or len(self.body) <= 300 else self.body[:300] + b"..."
        return f"Request({self.method!r}, {self.path[:300]!r}, {body!r} ({len(self.body or b'')} B), {self.headers!r})"


def fuzz(t: Topology, requests: st.SearchStrategy[Request]) -> None:
    """Send what `requests` draws; each answer must pass problems_with(); the node survives it all."""
    before = tracebacks(t, "a1")

    @FUZZ
    @given(req=requests)
    def one(req: Request) -> None:
        answer = send(t, req.method, req.path, req.body, req.headers)
        assert not problems_with(answer, req.method), problems_with(answer, req.method)

    one()
    ping = send(t, "GET", "/ping")
    assert (ping.status, ping.body) == (200, b"pong")
    assert probes.node_view(t, "a1").active
    assert tracebacks(t, "a1") == before


# ------------------------------------------------------------------------------------- pieces

TYPES = list(RESOURCE_TYPES.values())
FIELDS = sorted({f.name for rt in TYPES for f in rt.all_fields()} | {"hostname"})
IDS = [f"{rt.prefix}{n}" for rt in TYPES for n in (0, 1, 2)]

huge_ints = st.integers(min_value=10**18, max_value=10**300)  # past int64, past a double's range
long_text = st.integers(300, 200_000).map(lambda n: "\u00e9" * n)  # past every maxLength, in 2-byte UTF-8
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats()
    | st.text(max_size=30)
    | long_text
    | st.sampled_from(IDS)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)
objects = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), json_values, max_size=6)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity as Python writes them: not JSON, yet parsed


bodies = st.one_of(
    objects.map(dumps),
    json_values.map(dumps),
    objects.map(dumps).flatmap(lambda b: st.integers(0, max(0, len(b) - 1)).map(lambda n: b[:n])),  # cut short
    st.binary(max_size=200),
    st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),  # nested past any recursion limit
    st.sampled_from([b"\\ud800", b"\\udfff", b"\\u0000", b"\\ud83d\\ude00"]).map(
        lambda escape: b'{"name": "' + escape + b'"}'
    ),  # lone surrogates, NUL, a pair
    st.integers(4301, 20_000).map(lambda n: b'{"scale": ' + b"9" * n + b"}"),  # more digits than Python reads
    st.integers(MAX_BODY + 1, 2 * MAX_BODY).map(lambda n: b" " * n),  # over the 1 MiB limit
)
WRITES = (
    [("POST", f"/v1/{rt.collection}") for rt in TYPES]
    + [("PUT", f"/v1/{rt.collection}/{rt.prefix}1") for rt in TYPES]
    + [("POST", "/v1/agents/1ag1?action=checkin"), ("POST", "/v1/scripts/no-such-token")]
)


def segment(words: list[str]) -> st.SearchStrategy[str]:
    """A path segment: a known word or any text, percent-encoded as a client must send it."""
    return (st.sampled_from(words) | st.text(max_size=12)).map(lambda s: quote(s, safe=""))


any_segment = st.text(max_size=12).map(lambda s: quote(s, safe=""))
collections = segment([rt.collection for rt in TYPES] + ["schemas", "scripts", "Projects"])
ids = segment([*IDS, "1a\u00b2", "1a" + "9" * 30, "1a-1", "1a 1"])
links = segment(sorted({link for rt in TYPES for link in rt.children}))
queries = st.lists(
    st.tuples(
        st.sampled_from(
            ["action", "limit", "marker", "sort", "order", "name", "state", "id", "accountId", "name_ne", "uuid"]
        )
        | st.text(max_size=8),
        st.sampled_from(["1", "m1", "m" + "9" * 30, "\u00b2", "name", "desc", "checkin"]) | st.text(max_size=12),
    ),
    max_size=4,
).map(lambda q: f"?{urlencode(q)}" if q else "")
paths = st.builds(
    lambda parts, q: "/v1/" + "/".join(parts) + q,
    st.tuples(collections)
    | st.tuples(collections, ids)
    | st.tuples(collections, ids, links)
    | st.lists(any_segment, max_size=5),
    queries,
) | st.sampled_from(["/", "/v1", "/ping", "/metrics", "/status.json", "/v2/projects", "/v1/schemas/project"])
# HAProxy itself answers CONNECT and PRI (HTTP/2's preface); every other token reaches the node.
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE")
methods = st.sampled_from(METHODS) | st.from_regex(r"[A-Z]{3,10}", fullmatch=True).filter(
    lambda m: m not in ("CONNECT", "PRI")
)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
authorizations = st.one_of(
    st.builds(basic, st.text(max_size=20), st.text(max_size=20)),
    header_text.map(lambda s: "Basic " + s),
    st.binary(max_size=30).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    st.sampled_from(["Basic", "Basic ", "basic Tm9uZTpOb25l", "Bearer abc", "Digest x", "Basic Tm9uZTpOb25l===="]),
    header_text,
)


# -------------------------------------------------------------------------------------- tests


def test_bodies(halab_lab_factory):
    t = halab_lab_factory(1)
    fuzz(
        t,
        st.builds(
            lambda target, body, ctype: Request(*target, body, ctype),
            st.sampled_from(WRITES),
            bodies,
            st.sampled_from([{"Content-Type": "application/json"}, {"Content-Type": "text/plain"}, {}]),
        ),
    )


def test_paths_methods_and_queries(halab_lab_factory):
    t = halab_lab_factory(1)
    fuzz(t, st.builds(Request, methods, paths, st.none() | st.just(b"{}")))


def test_authorization_headers(halab_lab_factory):
    t = halab_lab_factory(1)
    targets = st.sampled_from(
        [
            ("GET", "/v1/projects"),
            ("GET", "/v1"),
            ("POST", "/v1/projects"),
            ("GET", "/v1/projects/1a1"),
            ("POST", "/v1/agents/1ag1?action=checkin"),
        ]
    )
    fuzz(
        t,
        st.builds(
            lambda target, auth: Request(*target, b"{}" if target[0] == "POST" else None, {"Authorization": auth}),
            targets,
            authorizations,
        ),
    )
