"""Locust users of a Rancher 1.x server, through the lab's load balancer.

- `ApiUser` (plain HTTP, `--host` or `HALAB_HTTP_URL`): browses projects, stacks and services,
  and creates, renames and deletes its own, always through the v1 API (`links.self` for one).
- `AgentUser` (HTTPS to `HALAB_HTTPS_URL` whatever `--host` says, verified against the lab CA
  `HALAB_CA_FILE`, or its text `HALAB_CA_PEM` where the file is not at hand: a Locust worker
  on a swarm host, lab/record/distributed.py): gets a registration token, registers a host through its registration URL,
  then checks in every `HALAB_CHECKIN` seconds with the agent credentials it was given. Without a
  CA file the class is abstract: agents never fall back to unverified TLS.
- `RegisterUser` (registers.py): reads, writes and compare-and-sets a few projects' descriptions,
  recorded as register operations for the linearizability and session checkers.

Every create carries a fresh client-chosen uuid, so each acknowledged write can be found in MySQL;
recording.py turns each request into a history record and each acknowledged write into a ledger
entry. Traffic only ever goes to the configured base URLs: links the server returns are followed
by their path. Knobs (environment): `HALAB_WAIT` ("min,max" seconds between an API user's tasks,
default "0.5,1.5"), `HALAB_OWNED` (resources of each type one user keeps before it deletes,
default 3), `HALAB_CHECKIN` (agent check-in period, default 5).

Run by lab/load.py; by hand: `HALAB_CA_FILE=<lab>/tls/ca.crt locust -f loadtests/rancher.py`.
"""

from __future__ import annotations

import os
import random
import ssl
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from locust import FastHttpUser, between, constant_pacing, task
from recording import Ack, Api
from registers import RegisterUser  # noqa: F401  (the register workload, mixed in with these users)

HTTP_URL = os.environ.get("HALAB_HTTP_URL", "http://127.0.0.1:80")
HTTPS_URL = os.environ.get("HALAB_HTTPS_URL", "https://127.0.0.1:443")
CA_FILE = os.environ.get("HALAB_CA_FILE", "")
CA_PEM = os.environ.get("HALAB_CA_PEM", "")
WAIT = tuple(float(x) for x in os.environ.get("HALAB_WAIT", "0.5,1.5").split(","))
OWNED = int(os.environ.get("HALAB_OWNED", "3"))
CHECKIN = float(os.environ.get("HALAB_CHECKIN", "5"))

# gdapi type -> collection; stacks are the API's `environment`.
COLLECTIONS = {"project": "projects", "environment": "environments", "service": "services"}


def path_of(link: str) -> str:
    """The path (and query) of a server-given link: requests stay on our own base URL."""
    parts = urlsplit(link)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def fresh_uuid() -> str:
    return str(uuidlib.uuid4())


@dataclass(frozen=True)
class Owned:
    type: str
    id: str
    uuid: str
    path: str  # of links.self


class ApiUser(FastHttpUser):
    host = HTTP_URL
    weight = 4
    wait_time = between(*WAIT)

    def on_start(self) -> None:
        self.api = Api(self.client)
        self.owned: dict[str, dict[str, Owned]] = {t: {} for t in COLLECTIONS}  # by id, oldest first
        # Ids last seen with transitioning "no". Like the gdapi client's wait_success, a user only
        # changes settled resources: the server refuses (409) to change one a process is running on.
        self.settled: set[str] = set()
        self.stack_of: dict[str, str] = {}  # service id -> its stack id (stacks are deleted empty)

    def mine(self, type_: str | None = None, settled: bool = False) -> list[Owned]:
        types = [type_] if type_ else list(COLLECTIONS)
        return [o for t in types for o in self.owned[t].values() if not settled or o.id in self.settled]

    def observe(self, o: Owned, data: dict[str, Any] | None) -> None:
        if data is not None and data.get("transitioning") == "no":
            self.settled.add(o.id)
        else:
            self.settled.discard(o.id)

    # ----------------------------------------------------------------- reads

    @task(6)
    def list_projects(self) -> None:
        self.api.call("GET", "/v1/projects", "/v1/projects")

    @task(6)
    def list_services(self) -> None:
        self.api.call("GET", "/v1/services", "/v1/services")

    @task(2)
    def list_stacks(self) -> None:
        self.api.call("GET", "/v1/environments", "/v1/environments")

    @task(4)
    def get_one(self) -> None:
        waiting = [o for o in self.mine() if o.id not in self.settled]
        if waiting or self.mine():
            o = random.choice(waiting or self.mine())
            self.observe(o, self.api.call("GET", o.path, f"/v1/{COLLECTIONS[o.type]}/[id]", resource_id=o.id))

    # ----------------------------------------------------------------- writes

    @task(2)
    def churn_project(self) -> None:
        self.churn("project", lambda: self.create("project", {}))

    @task(1)
    def churn_stack(self) -> None:
        # Never delete a stack with services: that would remove them behind the ledger's back.
        self.churn(
            "environment",
            lambda: self.create("environment", {}),
            [s for s in self.mine("environment", settled=True) if s.id not in self.stack_of.values()],
        )

    @task(3)
    def churn_service(self) -> None:
        def make() -> None:
            stacks = self.mine("environment", settled=True)
            if stacks:
                stack = random.choice(stacks)
                made = self.create(
                    "service",
                    {"environmentId": stack.id, "scale": 1, "launchConfig": {"imageUuid": "docker:nginx:1.25"}},
                )
                if made:
                    self.stack_of[made.id] = stack.id
            elif not self.mine("environment"):
                self.create("environment", {})

        self.churn("service", make)

    @task(2)
    def rename(self) -> None:
        ready = self.mine(settled=True)
        if ready:
            o = random.choice(ready)
            name = f"halab-{o.type}-{fresh_uuid()[:8]}"
            self.observe(
                o,
                self.api.call(
                    "PUT",
                    o.path,
                    f"/v1/{COLLECTIONS[o.type]}/[id]",
                    {"name": name},
                    Ack("update", o.type, o.uuid, name),
                    resource_id=o.id,
                ),
            )

    def churn(self, type_: str, make: Callable[[], Any], deletable: list[Owned] | None = None) -> None:
        """Below OWNED resources of a type make one, at OWNED delete the oldest settled one."""
        if len(self.owned[type_]) < OWNED:
            make()
            return
        candidates = self.mine(type_, settled=True) if deletable is None else deletable
        if candidates:
            self.delete(candidates[0])

    def create(self, type_: str, fields: dict[str, Any]) -> Owned | None:
        uuid = fresh_uuid()
        plural = COLLECTIONS[type_]
        body = {"name": f"halab-{type_}-{uuid[:8]}", "uuid": uuid, **fields}
        data = self.api.call("POST", f"/v1/{plural}", f"/v1/{plural}", body, Ack("create", type_, uuid))
        if not data or "id" not in data:
            return None
        o = Owned(type_, data["id"], uuid, path_of(data.get("links", {}).get("self", f"/v1/{plural}/{data['id']}")))
        self.owned[type_][o.id] = o
        self.observe(o, data)
        return o

    def delete(self, o: Owned) -> None:
        # Forget it whatever the answer: a failed delete is indeterminate, never retried blindly.
        del self.owned[o.type][o.id]
        self.settled.discard(o.id)
        self.stack_of.pop(o.id, None)
        self.api.call(
            "DELETE", o.path, f"/v1/{COLLECTIONS[o.type]}/[id]", ack=Ack("delete", o.type, o.uuid), resource_id=o.id
        )


def lab_tls_context() -> ssl.SSLContext:
    """Verify the load balancer's certificate against the lab CA (and its name: 127.0.0.1, or lb
    on the lab's network)."""
    import gevent.ssl  # Locust's client uses gevent's ssl module

    return gevent.ssl.create_default_context(cafile=CA_FILE or None, cadata=CA_PEM or None)


class AgentUser(FastHttpUser):
    host = HTTPS_URL
    weight = 1
    abstract = not (CA_FILE or CA_PEM)
    insecure = False
    ssl_context_factory = staticmethod(lab_tls_context)
    wait_time = constant_pacing(CHECKIN)

    def __init__(self, environment: Any) -> None:
        self.host = HTTPS_URL  # agents speak TLS whatever --host says
        super().__init__(environment)

    def on_start(self) -> None:
        self.api = Api(self.client)
        self.agent_id: str | None = None
        self.agent_uuid: str | None = None  # the server makes it; read once after registering
        self.checkin_path = ""
        self.auth: tuple[str, str] | None = None

    def register(self) -> None:
        token_uuid = fresh_uuid()
        token = self.api.call(
            "POST",
            "/v1/registrationtokens",
            "/v1/registrationtokens",
            {"uuid": token_uuid},
            Ack("create", "registrationToken", token_uuid),
        )
        if not token or not token.get("token"):
            return
        host_uuid = fresh_uuid()
        reg = self.api.call(
            "POST",
            f"/v1/scripts/{token['token']}",
            "/v1/scripts/[token]",
            {"hostname": f"halab-agent-{host_uuid[:8]}", "uuid": host_uuid},
            Ack("create", "host", host_uuid, id_key="hostId"),
        )
        if reg and reg.get("agentId"):
            self.agent_id = reg["agentId"]
            self.auth = (reg["accessKey"], reg["secretKey"])
            self.checkin_path = path_of(reg.get("checkinUrl") or f"/v1/agents/{self.agent_id}?action=checkin")

    @task
    def check_in(self) -> None:
        # One step a period: register, learn the agent's uuid, then check in; a step that failed
        # (e.g. during a fault) is simply taken again next period.
        if self.agent_id is None:
            self.register()
        elif self.agent_uuid is None:
            agent = self.api.call(
                "GET", f"/v1/agents/{self.agent_id}", "/v1/agents/[id]", auth=self.auth, resource_id=self.agent_id
            )
            self.agent_uuid = (agent or {}).get("uuid")
        else:
            self.api.call(
                "POST",
                self.checkin_path,
                "/v1/agents/[id]?action=checkin",
                {},
                Ack("checkin", "agent", self.agent_uuid),
                resource_id=self.agent_id,
                auth=self.auth,
            )
