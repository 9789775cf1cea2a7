"""Reading the lab's YAML files (claims, scenarios) strictly: unknown keys are rejected and every
error is one BadInput line that names the file and the field, e.g.
`scenarios/x.yaml: faults[1].target: no node 'c9' ...`.

A location (`where`) is the file followed by the field path: `at(path)` starts one, `sub(where,
'faults')` and `sub(where, 1)` extend it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from lab.core.durations import finite, short
from lab.core.errors import BadInput


def at(path: str | Path) -> str:
    return f"{path}:"


def sub(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where} {key}" if where.endswith(":") else f"{where}.{key}"


def load(path: str | Path) -> Any:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise BadInput(f"{p}: no such file") from None
    except OSError as exc:
        raise BadInput(f"{p}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise BadInput(f"{p}: line {line}: not valid UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at_line = f": line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BadInput(f"{p}{at_line}: not valid YAML: {problem}") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise BadInput(f"{p}: not valid YAML: nested too deeply") from None


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a value its constructors cannot convert (`!!int abc`, a
    date like 2001-13-45, an integer of 5000 digits) is a YAML error at that value's line, not a
    ValueError, KeyError or AttributeError from inside PyYAML."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise yaml.constructor.ConstructorError(
                None, None, f"{short(node.value)!r} is not a valid {node.tag.rsplit(':', 1)[-1]}", node.start_mark
            ) from None


def mapping(value: Any, where: str, required: Iterable[str] = (), optional: Iterable[str] = ()) -> dict[str, Any]:
    """A mapping with exactly the allowed keys (all of `required`, any of `optional`)."""
    required, optional = tuple(required), tuple(optional)
    if not isinstance(value, Mapping):
        raise BadInput(f"{where} must be a mapping with {', '.join(required + optional)}, got {_kind(value)}")
    allowed = required + optional
    for key in value:
        if key not in allowed:
            raise BadInput(f"{sub(where, _shown_key(key))}: unknown key (allowed here: {', '.join(allowed)})")
    for key in required:
        if key not in value:
            raise BadInput(f"{sub(where, key)}: missing")
    return dict(value)


def sequence(value: Any, where: str, *, allow_empty: bool = False) -> list[Any]:
    if not isinstance(value, list):
        raise BadInput(f"{where} must be a list, got {_kind(value)}")
    if not value and not allow_empty:
        raise BadInput(f"{where} must not be empty")
    return value


def string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{where} must be a non-empty string, got {_kind(value)}")
    return value


def strings(value: Any, where: str) -> tuple[str, ...]:
    """A string or a list of strings."""
    if isinstance(value, str):
        return (string(value, where),)
    return tuple(string(v, sub(where, i)) for i, v in enumerate(sequence(value, where)))


def choice(value: Any, where: str, choices: Iterable[str]) -> str:
    options = tuple(choices)
    if value not in options:
        raise BadInput(f"{where}: {value!r} is not one of {', '.join(options)}")
    return options[options.index(value)]


def integer(value: Any, where: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"{where} must be a whole number, got {_kind(value)}")
    _bounds(value, where, minimum, maximum)
    return value


def number(value: Any, where: str, minimum: float | None = None, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadInput(f"{where} must be a number, got {_kind(value)}")
    _bounds(value, where, minimum, maximum)
    return finite(value, where)


def _bounds(value: float, where: str, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise BadInput(f"{where}: {short(value)} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise BadInput(f"{where}: {short(value)} is above the maximum {maximum}")


def boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise BadInput(f"{where} must be true or false, got {_kind(value)}")
    return value


def _shown_key(key: Any) -> str:
    """A key as a field path shows it: text quoted when it is blank or has control characters."""
    if not isinstance(key, str):
        return str(key)
    return key if key and key.strip() == key and key.isprintable() else repr(key)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: f"{value!r}", bool: f"{value!r}"}.get(type(value), repr(value))
