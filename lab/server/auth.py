"""HTTP basic authentication with API keys and agent keys (table `credential`).

Access control is off, Rancher's default: a request without credentials is served, and so is one
with the credentials `None:None`, which gdapi-python / `cattle.Client` created without keys sends.
Any other credentials must be a live key, else 401.

Secrets are stored as SHA-256 digests. Successful look-ups are cached for `CACHE_TTL` seconds,
so a deleted key may keep working that long on nodes that had just used it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from .db import Database
from .gdapi import ApiError
from .store import load_data

CACHE_TTL = 10.0
_CACHE_MAX = 10_000


@dataclass(frozen=True)
class Principal:
    kind: str  # anonymous | apiKey | agent
    credential_id: int | None = None
    agent_id: int | None = None


ANONYMOUS = Principal("anonymous")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key_pair() -> tuple[str, str]:
    """(public value, secret value) in the shape of cattle's keys."""
    return secrets.token_hex(10).upper(), secrets.token_urlsafe(30)


def parse_basic(header: str) -> tuple[str, str]:
    scheme, _, payload = header.partition(" ")
    if scheme.lower() != "basic" or not payload:
        raise ApiError(401, "Unauthorized", "only HTTP basic authentication is supported")
    try:
        decoded = base64.b64decode(payload.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, or text that is not ASCII at all
        raise ApiError(401, "Unauthorized", "malformed basic credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise ApiError(401, "Unauthorized", "malformed basic credentials")
    return user, password


def _lookup(conn: Any, public: str) -> dict[str, Any] | None:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, kind, secret_value, state, data FROM credential"
            " WHERE public_value = %s AND kind IN ('apiKey', 'agentApiKey')",
            (public,),
        )
        row = cur.fetchone()
    if row is None:
        return None
    cid, kind, secret_hash, state, data = row
    return {"id": cid, "kind": kind, "secret": secret_hash, "state": state, "data": data}


class Authenticator:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[tuple[str, str], tuple[Principal, float]] = {}

    async def authenticate(self, header: str | None) -> Principal:
        if not header:
            return ANONYMOUS
        public, secret = parse_basic(header)
        if public == secret == "None":  # gdapi-python's str(None) keys: access control is off, so serve it
            return ANONYMOUS
        digest = hash_secret(secret)
        key = (public, digest)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        row = await self._db.run(_lookup, public)
        if (
            row is None
            or row["state"] in ("removing", "removed")
            or not hmac.compare_digest(str(row["secret"]), digest)
        ):
            raise ApiError(401, "Unauthorized", "invalid API credentials")
        if row["kind"] == "agentApiKey":
            agent_id = load_data(row["data"]).get("agentId")
            principal = Principal("agent", int(row["id"]), int(agent_id) if agent_id else None)
        else:
            principal = Principal("apiKey", int(row["id"]))
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[key] = (principal, now + CACHE_TTL)
        return principal
