"""The API's resource types: fields, tables, ids, links and actions (one registry, no behaviour).

Naming follows Rancher v1: the UI's "Environment" is the API's `project` (table `account`), the
UI's "Stack" is the API's `environment`. Ids are cattle-style strings: a type prefix and the row id
(`1a5` is project 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# States in which a resource is "transitioning" (a process is under way).
TRANSITIONING_STATES = frozenset({"requested", "registering", "activating", "updating", "removing"})


@dataclass(frozen=True)
class Field:
    name: str
    type: str = "string"
    column: str | None = None  # None: kept in the row's `data` JSON
    create: bool = False
    update: bool = False
    required: bool = False
    nullable: bool = True
    default: Any = None
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    options: tuple[str, ...] | None = None
    filter: bool = False
    # The referenced type's name (`reference[host]` -> host), else None; parsed once, read per row.
    reference: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        t = self.type
        ref = t[len("reference[") : -1] if t.startswith("reference[") and t.endswith("]") else None
        object.__setattr__(self, "reference", ref)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "create": self.create,
            "update": self.update,
            "nullable": self.nullable,
            "required": self.required,
        }
        if self.default is not None:
            out["default"] = self.default
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        if self.minimum is not None:
            out["min"] = self.minimum
        if self.maximum is not None:
            out["max"] = self.maximum
        if self.options is not None:
            out["options"] = list(self.options)
        return out


@dataclass(frozen=True)
class Action:
    input: str | None
    output: str


@dataclass(frozen=True)
class ResourceType:
    name: str
    plural: str
    table: str
    kind: str
    prefix: str
    fields: tuple[Field, ...] = ()
    creatable: bool = True
    updatable: bool = False
    deletable: bool = True
    actions: Mapping[str, Action] = field(default_factory=dict)
    # link name -> (child type, child field holding this resource's id)
    children: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    account_scoped: bool = True
    cacheable: bool = True
    common: bool = True  # has cattle's common columns (name, uuid, state, ...)
    # Derived once: every row of every response walks them (building them per call cost more than
    # the MySQL query of a list).
    _all_fields: tuple[Field, ...] = field(init=False, repr=False, compare=False)
    _by_name: Mapping[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.common:
            names = {f.name for f in self.fields}
            common = tuple(f for f in _common_fields(self.account_scoped) if f.name not in names)
            every = common + self.fields
        else:
            every = (Field("id", "string", "id", nullable=False), *self.fields)
        object.__setattr__(self, "_all_fields", every)
        object.__setattr__(self, "_by_name", {f.name: f for f in every})

    @property
    def collection(self) -> str:
        return self.plural.lower()

    def format_id(self, row_id: int) -> str:
        return f"{self.prefix}{row_id}"

    def parse_id(self, text: str) -> int | None:
        if text.startswith(self.prefix):
            rest = text[len(self.prefix) :]
            if rest.isascii() and rest.isdigit() and len(rest) < 19:  # int() refuses '²', MySQL 2**63
                return int(rest)
        return None

    def all_fields(self) -> tuple[Field, ...]:
        return self._all_fields

    def field(self, name: str) -> Field | None:
        return self._by_name.get(name)


def _common_fields(account_scoped: bool) -> tuple[Field, ...]:
    out = [
        Field("id", "string", "id", nullable=False),
        Field("name", "string", "name", create=True, update=True, max_length=255, filter=True),
        Field("description", "string", "description", create=True, update=True, max_length=1024),
        Field("uuid", "string", "uuid", create=True, max_length=128, filter=True),
        Field("kind", "string", "kind", filter=True),
        Field(
            "state",
            "enum",
            "state",
            options=tuple(sorted(TRANSITIONING_STATES | {"active", "removed", "error"})),
            filter=True,
        ),
        Field("created", "date", "created"),
        Field("createdTS", "int", None),
        Field("removed", "date", "removed"),
        Field("removeTime", "date", "remove_time"),
        Field("transitioning", "enum", None, options=("yes", "no", "error")),
        Field("transitioningMessage", "string", None),
    ]
    if account_scoped:
        out.append(Field("accountId", "reference[project]", "account_id", create=True, filter=True))
    return tuple(out)


PROJECT = ResourceType(
    "project",
    "projects",
    "account",
    "project",
    "1a",
    updatable=True,
    account_scoped=False,
    children={
        "environments": ("environment", "accountId"),
        "services": ("service", "accountId"),
        "containers": ("container", "accountId"),
        "hosts": ("host", "accountId"),
        "registrationTokens": ("registrationToken", "accountId"),
    },
)
API_KEY = ResourceType(
    "apiKey",
    "apiKeys",
    "credential",
    "apiKey",
    "1c",
    fields=(
        Field("publicValue", "string", "public_value", filter=True),
        Field("secretValue", "password", None),
    ),
    cacheable=False,
)
REGISTRATION_TOKEN = ResourceType(
    "registrationToken",
    "registrationTokens",
    "credential",
    "registrationToken",
    "1c",
    fields=(
        Field("token", "string", "public_value", filter=True),
        Field("registrationUrl", "string", None),
        Field("command", "string", None),
        Field("image", "string", None),
    ),
)
ENVIRONMENT = ResourceType(
    "environment",
    "environments",
    "environment",
    "environment",
    "1e",
    fields=(
        Field(
            "name",
            "string",
            "name",
            create=True,
            update=True,
            required=True,
            nullable=False,
            max_length=255,
            filter=True,
        ),
    ),
    updatable=True,
    children={"services": ("service", "environmentId")},
)
SERVICE = ResourceType(
    "service",
    "services",
    "service",
    "service",
    "1s",
    fields=(
        Field(
            "name",
            "string",
            "name",
            create=True,
            update=True,
            required=True,
            nullable=False,
            max_length=255,
            filter=True,
        ),
        Field(
            "environmentId",
            "reference[environment]",
            "environment_id",
            create=True,
            required=True,
            nullable=False,
            filter=True,
        ),
        Field("scale", "int", "scale", create=True, update=True, default=1, minimum=0, maximum=1000, nullable=False),
        Field("launchConfig", "json", None, create=True, update=True),
    ),
    updatable=True,
)
CONTAINER = ResourceType(
    "container",
    "containers",
    "instance",
    "container",
    "1i",
    fields=(
        Field(
            "imageUuid", "string", "image_uuid", create=True, required=True, nullable=False, max_length=255, filter=True
        ),
        Field("hostId", "reference[host]", "host_id", create=True, filter=True),
    ),
    updatable=True,
)
HOST = ResourceType(
    "host",
    "hosts",
    "host",
    "host",
    "1h",
    fields=(
        Field("hostname", "string", None),
        Field("agentId", "reference[agent]", "agent_id", filter=True),
    ),
    creatable=False,
    updatable=True,
    children={"containers": ("container", "hostId")},
)
AGENT = ResourceType(
    "agent",
    "agents",
    "agent",
    "agent",
    "1ag",
    fields=(
        Field("uri", "string", "uri"),
        Field("hostId", "reference[host]", None),
        Field("lastCheckin", "date", "last_checkin"),
    ),
    creatable=False,
    deletable=False,
    actions={"checkin": Action(None, "agent")},
    cacheable=False,  # changes on every check-in
)

PROCESS_INSTANCE = ResourceType(
    "processInstance",
    "processInstances",
    "process_instance",
    "",
    "1pi",
    fields=(
        Field("processName", "string", "process_name", filter=True),
        Field("resourceType", "string", "resource_type", filter=True),
        Field("resourceId", "string", "resource_id", filter=True),
        Field("startTime", "date", "start_time"),
        Field("endTime", "date", "end_time"),
        Field("result", "string", "result", filter=True),
        Field("exitReason", "string", "exit_reason"),
        Field("phase", "string", "phase", filter=True),
        Field("priority", "int", "priority"),
        Field("startProcessServerId", "string", "start_process_server_id", filter=True),
        Field("runningProcessServerId", "string", "running_process_server_id", filter=True),
    ),
    creatable=False,
    deletable=False,
    account_scoped=False,
    cacheable=False,
    common=False,
)

RESOURCE_TYPES: dict[str, ResourceType] = {
    t.name: t
    for t in (PROJECT, API_KEY, REGISTRATION_TOKEN, ENVIRONMENT, SERVICE, CONTAINER, HOST, AGENT, PROCESS_INSTANCE)
}
BY_COLLECTION: dict[str, ResourceType] = {t.collection: t for t in RESOURCE_TYPES.values()}


def is_transitioning(state: str) -> str:
    if state in TRANSITIONING_STATES:
        return "yes"
    if state == "error":
        return "error"
    return "no"
