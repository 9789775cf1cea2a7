"""Host registration and agent check-ins: the flow a load test's agent user follows.

1. Get a registration token (once per project; any API user may do it, no credentials needed
   while access control is off):

       POST /v1/registrationtokens            body {} or {"accountId": "1a5"}
       -> 201 {"type": "registrationToken", "id": "1c3", "token": "<T>",
               "registrationUrl": "<CATTLE_HA_HOST_REGISTRATION_URL>/v1/scripts/<T>",
               "command": "sudo docker run ... rancher/agent:v0.11.0 <registrationUrl>", ...}

   The token works as soon as the POST has answered (it need not be `active` yet).

2. (Optional, what a real host runs) fetch the registration script:

       GET /v1/scripts/<T>                    -> 200 text/plain shell script

3. Register the host (no credentials needed: the token is the credential):

       POST /v1/scripts/<T>                   body {"hostname": "h-17", "uuid": "<host uuid>"}
       -> 201 {"type": "agentRegistration", "hostId": "1h4", "agentId": "1ag4",
               "accessKey": "<A>", "secretKey": "<S>",
               "checkinUrl": "<base>/v1/agents/1ag4?action=checkin", "checkinInterval": 10}

   `uuid` is optional (a fresh one is made). Registering again with the uuid of a live host
   answers 200 with the same hostId/agentId and a new key pair, as a restarted agent would get.
   Unknown or removed token: 404. Host and agent go through `requested -> activating -> active`.

4. Check in periodically with the agent's key pair as HTTP basic credentials:

       POST /v1/agents/1ag4?action=checkin    Authorization: Basic base64(<A>:<S>), body {} or none
       -> 200 the agent resource, `lastCheckin` updated

   Wrong or missing credentials: 401; another agent's key: 403. Like every write, a check-in is
   refused with 503 by a node that is not active.
"""

from __future__ import annotations

import json
import secrets
import uuid as uuidlib
from typing import Any

from . import store
from .auth import hash_secret, new_key_pair
from .gdapi import ApiError
from .processes import ProcessEngine
from .resources import AGENT, HOST

CHECKIN_INTERVAL = 10


def new_token() -> str:
    return secrets.token_hex(20)


def script(token: str, registration_url: str) -> str:
    url = f"{registration_url}/v1/scripts/{token}"
    return f"""#!/bin/sh
# Rancher agent registration (ha-lab simulation of Rancher server v1.0/v1.1).
set -e
CATTLE_REGISTRATION_URL='{url}'
HOST_UUID="${{CATTLE_HOST_UUID:-$(cat /proc/sys/kernel/random/uuid)}}"
curl -fsS -X POST -H 'Content-Type: application/json' \\
  -d "{{\\"hostname\\": \\"$(hostname)\\", \\"uuid\\": \\"$HOST_UUID\\"}}" \\
  "$CATTLE_REGISTRATION_URL"
"""


def find_token(conn: Any, token: str) -> dict[str, Any]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, account_id FROM credential WHERE public_value = %s AND kind = 'registrationToken'"
            " AND state NOT IN ('removing', 'removed')",
            (token,),
        )
        row = cur.fetchone()
    if row is None:
        raise ApiError(404, "RESOURCE_NOT_FOUND", "unknown or removed registration token")
    return {"id": int(row[0]), "account_id": row[1]}


def register_txn(
    conn: Any, engine: ProcessEngine, token: str, hostname: str, host_uuid: str | None
) -> tuple[dict[str, Any], bool]:
    """Returns (registration, created); runs in a worker thread."""
    coord, timeout, server = engine.coord, engine.cfg.profile.lock_timeout, engine.server_id
    tok = find_token(conn, token)
    host_uuid = host_uuid or str(uuidlib.uuid4())
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, agent_id FROM host WHERE uuid = %s AND state NOT IN ('removing', 'removed')",
            (host_uuid,),
        )
        existing = cur.fetchone()
    access, secret = new_key_pair()
    if existing is not None:
        host_id, agent_id = int(existing[0]), int(existing[1])
        with coord.hold(AGENT.name, agent_id, timeout) as fence:
            conn.begin()
            _insert_agent_key(conn, tok["account_id"], agent_id, access, secret)
            fence.check()
            conn.commit()
        return _registration(host_id, agent_id, access, secret), False
    conn.begin()
    agent_id = store.insert_resource(
        conn,
        AGENT,
        {
            "name": hostname,
            "uuid": str(uuidlib.uuid4()),
            "account_id": tok["account_id"],
            "uri": f"event:///hostname={hostname}",
        },
        {},
    )
    host_id = store.insert_resource(
        conn,
        HOST,
        {"name": hostname, "uuid": host_uuid, "account_id": tok["account_id"], "agent_id": agent_id},
        {"hostname": hostname},
    )
    store.update_resource(conn, AGENT, agent_id, {"data": json.dumps({"hostId": HOST.format_id(host_id)})})
    _insert_agent_key(conn, tok["account_id"], agent_id, access, secret)
    with coord.hold(AGENT.name, agent_id, timeout), coord.hold(HOST.name, host_id, timeout) as fence:
        store.insert_process(conn, AGENT, agent_id, "create", server)
        store.insert_process(conn, HOST, host_id, "create", server)
        fence.check()
        conn.commit()
    return _registration(host_id, agent_id, access, secret), True


def _insert_agent_key(conn: Any, account_id: Any, agent_id: int, access: str, secret: str) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO credential (name, account_id, kind, uuid, state, created, data, public_value, secret_value)"
            " VALUES (%s, %s, 'agentApiKey', %s, 'active', NOW(6), %s, %s, %s)",
            (
                f"agent-{agent_id}",
                account_id,
                str(uuidlib.uuid4()),
                json.dumps({"agentId": agent_id}),
                access,
                hash_secret(secret),
            ),
        )


def _registration(host_id: int, agent_id: int, access: str, secret: str) -> dict[str, Any]:
    return {
        "type": "agentRegistration",
        "hostId": HOST.format_id(host_id),
        "agentId": AGENT.format_id(agent_id),
        "accessKey": access,
        "secretKey": secret,
        "checkinInterval": CHECKIN_INTERVAL,
    }


def checkin_txn(conn: Any, engine: ProcessEngine, agent_id: int) -> dict[str, Any]:
    with engine.coord.hold(AGENT.name, agent_id, engine.cfg.profile.lock_timeout) as fence:
        conn.begin()
        with conn.cursor() as cur:
            n = cur.execute(
                "UPDATE agent SET last_checkin = NOW(6) WHERE id = %s AND state NOT IN ('removing', 'removed')",
                (agent_id,),
            )
        if n == 0:
            raise ApiError(404, "RESOURCE_NOT_FOUND", f"agent {AGENT.format_id(agent_id)} not found")
        fence.check()
        conn.commit()
    row = store.read_row(conn, AGENT, agent_id)
    assert row is not None
    return row
