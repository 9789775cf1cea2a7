"""SQL for resources: rows to API values, lists with filters/sort/pagination, inserts, reads.

Everything here runs in a worker thread on a driver connection (db.py; autocommit; callers open
transactions explicitly with `conn.begin()`).
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .db import DictCursor, IntegrityError
from .gdapi import ApiError
from .resources import (
    AGENT,
    CONTAINER,
    HOST,
    PROCESS_INSTANCE,
    RESOURCE_TYPES,
    Field,
    ResourceType,
    is_transitioning,
)

AGENT_IMAGE = "rancher/agent:v0.11.0"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
SORTABLE = ("id", "name", "state", "created")

Row = dict[str, Any]


@dataclass(frozen=True)
class Context:
    """What row rendering needs beyond the row itself."""

    registration_url: str


def iso(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def epoch_ms(value: dt.datetime | None) -> int | None:
    if value is None:
        return None
    return calendar.timegm(value.utctimetuple()) * 1000 + value.microsecond // 1000


def load_data(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _field_value(f: Field, row: Row, data: Mapping[str, Any]) -> Any:
    raw = row.get(f.column) if f.column else data.get(f.name)
    if raw is None:
        return None
    target = f.reference
    if target is not None:
        return RESOURCE_TYPES[target].format_id(int(raw)) if f.column else raw
    if f.type == "date" and isinstance(raw, dt.datetime):
        return iso(raw)
    return raw


def values(rt: ResourceType, row: Row, ctx: Context) -> dict[str, Any]:
    """API field values of a row, `id` first."""
    if not rt.common:
        return _process_values(row)
    data = load_data(row.get("data"))
    out: dict[str, Any] = {}
    for f in rt.all_fields():
        if f.name == "id":
            out["id"] = rt.format_id(row["id"])
        elif f.name == "createdTS":
            out["createdTS"] = epoch_ms(row.get("created"))
        elif f.name == "transitioning":
            out["transitioning"] = is_transitioning(row["state"])
        elif f.name == "transitioningMessage":
            t = is_transitioning(row["state"])
            out["transitioningMessage"] = "In Progress" if t == "yes" else data.get("transitioningMessage")
        else:
            out[f.name] = _field_value(f, row, data)
    if rt.name == "registrationToken" and out.get("token"):
        url = f"{ctx.registration_url}/v1/scripts/{out['token']}"
        out["registrationUrl"] = url
        out["image"] = AGENT_IMAGE
        out["command"] = (
            "sudo docker run -d --privileged -v /var/run/docker.sock:/var/run/docker.sock "
            f"-v /var/lib/rancher:/var/lib/rancher {AGENT_IMAGE} {url}"
        )
    if rt.name == "apiKey":
        out["secretValue"] = None  # shown once, in the create response
    return out


def _process_values(row: Row) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in PROCESS_INSTANCE.all_fields():
        if f.name == "id":
            out["id"] = PROCESS_INSTANCE.format_id(row["id"])
            continue
        out[f.name] = _field_value(f, row, {})
    target = RESOURCE_TYPES.get(row.get("resource_type") or "")
    rid = row.get("resource_id")
    if target is not None and rid and str(rid).isdigit():
        out["resourceId"] = target.format_id(int(rid))
    return out


def _kind_clause(rt: ResourceType) -> tuple[str, list[Any]]:
    if not rt.common:
        return "1=1", []
    return "kind = %s", [rt.kind]


def read_row(conn: Any, rt: ResourceType, row_id: int, for_update: bool = False) -> Row | None:
    where, args = _kind_clause(rt)
    sql = f"SELECT * FROM `{rt.table}` WHERE id = %s AND {where}" + (" FOR UPDATE" if for_update else "")
    with conn.cursor(DictCursor) as cur:
        cur.execute(sql, [row_id, *args])
        row: Row | None = cur.fetchone()
        return row


def exists(conn: Any, rt: ResourceType, row_id: int) -> bool:
    row = read_row(conn, rt, row_id)
    return row is not None and row.get("state") not in ("removing", "removed")


@dataclass(frozen=True)
class Condition:
    field: Field
    modifier: str  # eq | ne
    value: str


@dataclass(frozen=True)
class ListQuery:
    conditions: tuple[Condition, ...] = ()
    sort: str = "id"
    order: str = "asc"
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def parse_list_query(rt: ResourceType, params: Sequence[tuple[str, str]]) -> ListQuery:
    """Filters `<field>=v` / `<field>_ne=v`, `sort`, `order`, `limit`, `marker` (opaque offset)."""
    conds: list[Condition] = []
    sort, order, limit, offset = "id", "asc", DEFAULT_LIMIT, 0
    for key, value in params:
        if key == "sort":
            if value not in SORTABLE:
                raise ApiError(422, "InvalidOption", f"cannot sort by {value!r}", field_name="sort")
            sort = value
        elif key == "order":
            if value not in ("asc", "desc"):
                raise ApiError(422, "InvalidOption", "order must be asc or desc", field_name="order")
            order = value
        elif key == "limit":
            if not (value.isascii() and value.isdigit()):  # int() refuses '²'
                raise ApiError(422, "InvalidFormat", "limit must be a positive integer", field_name="limit")
            limit = max(1, min(MAX_LIMIT, int(value)))
        elif key == "marker":
            # ASCII digits (int() refuses '²'), at most 18 of them (an OFFSET that MySQL takes)
            if not (value.startswith("m") and value[1:].isascii() and value[1:].isdigit() and len(value) < 20):
                raise ApiError(422, "InvalidFormat", "bad marker", field_name="marker")
            offset = int(value[1:])
        else:
            name, modifier = key, "eq"
            if key.endswith("_ne"):
                name, modifier = key[:-3], "ne"
            f = rt.field(name)
            if f is None or not f.filter or (not f.column and f.name != "id"):
                continue  # gdapi ignores unknown filters
            conds.append(Condition(f, modifier, value))
    return ListQuery(tuple(conds), sort, order, limit, offset)


def _condition_sql(rt: ResourceType, c: Condition) -> tuple[str, Any]:
    value: Any = c.value
    target = c.field.reference
    if target is not None:
        parsed = RESOURCE_TYPES[target].parse_id(c.value)
        value = parsed if parsed is not None else -1
    elif c.field.name == "resourceId" and rt is PROCESS_INSTANCE:
        m = re.fullmatch(r"1[a-z]+(\d+)", c.value)  # an API id: rows store the bare number
        value = m.group(1) if m else c.value
    op = "=" if c.modifier == "eq" else "<>"
    return f"`{c.field.column}` {op} %s", value


def list_rows(conn: Any, rt: ResourceType, q: ListQuery) -> tuple[tuple[str, ...], list[tuple[Any, ...]], bool]:
    """The column names, the rows of one page as tuples in that order, and whether more follow.

    Tuples, not dicts: a listed row is looked up by its values (api.py caches its body), so a dict
    per row was built by the driver and taken apart again on the API server's one thread (issue 18)."""
    where, args = _kind_clause(rt)
    clauses = [where]
    for c in q.conditions:
        sql, value = _condition_sql(rt, c)
        clauses.append(sql)
        args.append(value)
    if rt.common and not any(c.field.name == "state" for c in q.conditions):
        clauses.append("state <> 'removed'")  # removed resources are listed only when asked for
    sort_col = q.sort if rt.common or q.sort == "id" else "id"
    direction = "DESC" if q.order == "desc" else "ASC"
    sql = (
        f"SELECT * FROM `{rt.table}` WHERE {' AND '.join(clauses)} "
        f"ORDER BY `{sort_col}` {direction}, id {direction} LIMIT %s OFFSET %s"
    )
    with conn.cursor() as cur:
        cur.execute(sql, [*args, q.limit + 1, q.offset])
        columns = tuple(d[0] for d in cur.description)
        rows = list(cur.fetchall())
    return columns, rows[: q.limit], len(rows) > q.limit


def insert_resource(conn: Any, rt: ResourceType, columns: Mapping[str, Any], data: Mapping[str, Any]) -> int:
    cols = dict(columns)
    cols.update({"kind": rt.kind, "state": "requested", "data": json.dumps(dict(data))})
    names = ", ".join(f"`{k}`" for k in cols)
    marks = ", ".join(["%s"] * len(cols))
    with conn.cursor() as cur:
        try:
            cur.execute(f"INSERT INTO `{rt.table}` ({names}, created) VALUES ({marks}, NOW(6))", list(cols.values()))
        except IntegrityError as e:
            if e.args and e.args[0] == 1062:
                raise ApiError(
                    422, "NotUnique", "a resource with this uuid already exists", field_name="uuid"
                ) from None
            raise
        return int(cur.lastrowid)


def update_resource(conn: Any, rt: ResourceType, row_id: int, columns: Mapping[str, Any]) -> None:
    if not columns:
        return
    sets = ", ".join(f"`{k}` = %s" for k in columns)
    with conn.cursor() as cur:
        cur.execute(f"UPDATE `{rt.table}` SET {sets} WHERE id = %s", [*columns.values(), row_id])


def stamp(now: float | None) -> tuple[str, tuple[float, ...]]:
    """SQL for a process time: the server's own clock (`now`, epoch seconds) or the database's."""
    return ("FROM_UNIXTIME(%s)", (round(now, 6),)) if now is not None else ("NOW(6)", ())


def insert_process(conn: Any, rt: ResourceType, row_id: int, action: str, server: str, now: float | None = None) -> int:
    at, args = stamp(now)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO process_instance (start_time, data, priority, process_name, resource_type,"
            f" resource_id, phase, start_process_server_id) VALUES ({at}, '{{}}', 0, %s, %s, %s, 'requested', %s)",
            (*args, f"{rt.name}.{action}", rt.name, str(row_id), server),
        )
        return int(cur.lastrowid)


def default_project_id(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM account WHERE uuid = 'adminProject'")
        row = cur.fetchone()
    if row is None:
        raise RuntimeError("the Default project is missing: schema not migrated?")
    return int(row[0])


# The resources whose weight the heap calibration measured (heap.py's per-resource cost): #2339's
# environment was ~275 containers on 7 hosts with their agents. Projects, stacks and services are
# rows cattle reads, not objects it keeps per container; counting them at a container's weight made
# a lab's own test client (a project every 0.1 s) exhaust a 1 GB heap in minutes.
MANAGED = (CONTAINER, HOST, AGENT)


def count_managed(conn: Any) -> int:
    """Live (not removed) containers, hosts and agents."""
    total = 0
    with conn.cursor() as cur:
        for rt in MANAGED:
            kind = " AND kind = %s" if rt.table == "account" else ""
            cur.execute(f"SELECT COUNT(*) FROM `{rt.table}` WHERE removed IS NULL{kind}", (rt.kind,) if kind else ())
            total += int(cur.fetchone()[0])
    return total
