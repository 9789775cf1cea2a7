"""Validation of create/update bodies against a type's fields (gdapi's 422 error codes).

Unknown and read-only fields are ignored, as gdapi does. Whether referenced rows exist is
checked later, inside the write's transaction.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .gdapi import ApiError
from .resources import RESOURCE_TYPES, Field, ResourceType


@dataclass
class Changes:
    columns: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    # (referenced type, row id, field name) to check inside the transaction
    refs: list[tuple[ResourceType, int, str]] = field(default_factory=list)
    # column -> value the row must hold for an update to apply (the lab's compare-and-set)
    expect: dict[str, Any] = field(default_factory=dict)


def _check(f: Field, value: Any) -> Any:
    if value is None:
        if f.required or not f.nullable:
            raise ApiError(422, "MissingRequired", f"{f.name} is required", field_name=f.name)
        return None
    target = f.reference
    if target is not None:
        rt = RESOURCE_TYPES[target]
        if not isinstance(value, str) or rt.parse_id(value) is None:
            raise ApiError(422, "InvalidReference", f"{f.name} must be a {target} id", field_name=f.name)
        return value
    if f.type == "string":
        if not isinstance(value, str):
            raise ApiError(422, "InvalidFormat", f"{f.name} must be a string", field_name=f.name)
        if f.max_length is not None and len(value) > f.max_length:
            raise ApiError(422, "MaxLengthExceeded", f"{f.name} is longer than {f.max_length}", field_name=f.name)
        return value
    if f.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(422, "InvalidFormat", f"{f.name} must be an integer", field_name=f.name)
        if f.minimum is not None and value < f.minimum:
            raise ApiError(422, "MinLimitExceeded", f"{f.name} is below {f.minimum}", field_name=f.name)
        if f.maximum is not None and value > f.maximum:
            raise ApiError(422, "MaxLimitExceeded", f"{f.name} is above {f.maximum}", field_name=f.name)
        return value
    if f.type == "json":
        if not isinstance(value, (dict, list)):
            raise ApiError(422, "InvalidFormat", f"{f.name} must be a JSON object or array", field_name=f.name)
        return value
    return value


def _put(changes: Changes, f: Field, value: Any) -> None:
    target = f.reference
    if target is not None and value is not None:
        rt = RESOURCE_TYPES[target]
        row_id = rt.parse_id(value)
        assert row_id is not None  # checked by _check
        changes.refs.append((rt, row_id, f.name))
        value = row_id if f.column else value
    if f.column:
        changes.columns[f.column] = value
    else:
        changes.data[f.name] = value


def for_create(rt: ResourceType, body: Any, default_account: int | None) -> Changes:
    if not isinstance(body, Mapping):
        raise ApiError(422, "InvalidFormat", "the request body must be a JSON object")
    changes = Changes()
    for f in rt.all_fields():
        if not f.create:
            continue
        if f.name in body:
            value = _check(f, body[f.name])
        elif f.required:
            raise ApiError(422, "MissingRequired", f"{f.name} is required", field_name=f.name)
        else:
            value = f.default
        if f.name == "uuid" and value is None:
            value = str(uuidlib.uuid4())
        if f.name == "accountId" and value is None and default_account is not None:
            changes.columns["account_id"] = default_account
            continue
        if value is None and f.default is None and f.name not in body:
            continue
        _put(changes, f, value)
    return changes


# A lab extension cattle did not have: `{"halabExpect": {"description": "old"}, "description": "new"}`
# applies only while the row still holds "old" (else 409 ExpectationFailed): a real compare-and-set
# for the register workload. Plain columns only, which a row compares without decoding `data`.
EXPECT = "halabExpect"


def for_update(rt: ResourceType, body: Any) -> Changes:
    if not isinstance(body, Mapping):
        raise ApiError(422, "InvalidFormat", "the request body must be a JSON object")
    changes = Changes()
    for f in rt.all_fields():
        if f.update and f.name in body:
            _put(changes, f, _check(f, body[f.name]))
    expect = body.get(EXPECT, {})
    if not isinstance(expect, Mapping):
        raise ApiError(422, "InvalidFormat", f"{EXPECT} must be a JSON object", field_name=EXPECT)
    for name, value in expect.items():
        compared = rt.field(name)
        if compared is None or not compared.update or compared.column is None or compared.reference is not None:
            raise ApiError(422, "InvalidOption", f"{EXPECT} cannot compare {name!r}", field_name=EXPECT)
        changes.expect[compared.column] = None if value is None else _check(compared, value)
    return changes
