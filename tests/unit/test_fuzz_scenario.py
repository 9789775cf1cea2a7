"""Fuzzing the scenario parser with a bounded budget (hypothesis): whatever a file holds (generated
scenario-shaped documents, mutations of the shipped scenarios, broken text and bytes),
`scenario.load` either returns a scenario that can be planned and run, or raises BadInput whose
one line names the file and a field path of that document (or the line of a file that cannot be
read). Any other exception fails the test with its traceback. The topology strings the CLI passes
(`--nodes`, `--layout`, `--db-dc`) go through the same validation and are fuzzed too."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.chaos import scenario
from lab.cluster.topology import make_topology
from lab.core import paths
from lab.core.errors import BadInput
from lab.faults import CONTAINER_KINDS, KINDS

SCENARIOS = paths.SCENARIOS
SHIPPED = sorted(p for p in SCENARIOS.glob("*.yaml") if p.name != "claims.yaml")

# A bounded budget for CI on two shared cores: a few seconds per test. The deadline only catches
# a pathological slowdown (one example takes a few milliseconds).
FUZZ = settings(
    max_examples=800,
    deadline=timedelta(seconds=5),
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------------------- strategies

# The parser's vocabulary, so that generated documents get past the first check and reach deep.
WORDS = (
    "a1",
    "a2",
    "a3",
    "b1",
    "b2",
    "c1",
    "c9",
    "db",
    "lb",
    "dc-a",
    "dc-b",
    "dc-c",
    "dc-q",
    "external",
    "leader",
    "follower",
    "random",
    *scenario.ASSERTIONS,
    *scenario.BEFORE_AFTER_CHECKS,
    *scenario.DURING_CHECKS,
    *KINDS,
    "ApiUser",
)
KEYS = (
    "name",
    "description",
    "seed",
    "topology",
    "load",
    "duration",
    "faults",
    "checks",
    "assert",
    "nodes",
    "layout",
    "db_dc",
    "users",
    "spawn_rate",
    "user_classes",
    "processes",
    "at",
    "jitter",
    "hold",
    "kind",
    "target",
    "sides",
    "one_way",
    "loss",
    "before",
    "during",
    "after",
    "settle",
    "within",
    "colour",
)

huge_ints = st.integers(min_value=10**300, max_value=10**400) | st.integers(max_value=-(10**300))
numbers = st.integers(-3, 120) | st.integers() | huge_ints | st.floats(allow_nan=True, allow_infinity=True)
text = st.text(max_size=40) | st.text(min_size=2000, max_size=5000)  # odd characters; very long strings
scalars = st.none() | st.booleans() | numbers | st.sampled_from(WORDS) | text
keys = st.sampled_from(KEYS) | st.text(max_size=12) | st.integers(-5, 5) | st.none() | st.booleans()
junk = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=12
)


def shaped(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any] = junk) -> st.SearchStrategy[Any]:
    """Nine times in ten a plausible value, else a wrong one: most documents get past most checks."""
    return st.integers(0, 9).flatmap(lambda i: bad if i == 0 else good)


def loose(good: st.SearchStrategy[dict[Any, Any]]) -> st.SearchStrategy[Any]:
    """Mappings from `good`, now and then with one key too many (or not a mapping at all)."""
    return shaped(good, st.tuples(good, keys, junk).map(lambda t: {**t[0], t[1]: t[2]}))


def record(required: dict[str, Any] | None = None, **optional: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A mapping with these fields, the optional ones drawn or not."""
    return loose(st.fixed_dictionaries(required or {}, optional=optional))


durations = shaped(
    st.sampled_from(["5s", "500ms", "2m", "1.5s", "0s", " 3 s "]) | st.integers(0, 60) | st.floats(0, 60),
    st.sampled_from(["-2s", "1e3s", "soon", "", "1h2m"])
    | numbers
    | st.from_regex(r"\d{300,400}(ms|s|m|h)?", fullmatch=True),
)
names = shaped(st.sampled_from(WORDS))
name_lists = shaped(names | st.lists(names, min_size=1, max_size=3))
LAYOUTS = {1: ["dc-a:1"], 3: ["dc-a:2,dc-b:1", "dc-a:1,dc-b:1,dc-c:1"], 5: ["dc-a:3,dc-b:2", "dc-a:1,dc-b:2,dc-c:2"]}


def topology(nodes: int) -> st.SearchStrategy[Any]:
    return record(
        {"nodes": shaped(st.just(nodes), st.sampled_from([0, 2, 4, -1, "3", "three", "\u00b3", "--3"]))},
        layout=shaped(
            st.sampled_from(LAYOUTS[nodes]),
            st.sampled_from(["dc-a:\u00b2,dc-b:1", "dc-a:-1", "a:1,a:2", "x", "dc-a:0,dc-b:3"]),
        ),
        db_dc=shaped(st.sampled_from(["dc-a", "dc-b", "external"]), names),
    )


topologies = st.sampled_from(sorted(LAYOUTS)).flatmap(topology)
TARGETS = ("a1", "a2", "b1", "leader", "follower", "random", "db", "lb")
SIDES = ("dc-a", "dc-b", "a1", "a2", "b1", "db")


def one_or_more(choices: tuple[str, ...]) -> st.SearchStrategy[Any]:
    good = st.sampled_from(choices)
    return shaped(good | st.lists(good, min_size=1, max_size=2), names)


def fault(kind: str) -> st.SearchStrategy[Any]:
    """A fault of `kind` with the fields that kind takes; now and then those of other kinds."""
    target = {"target": one_or_more(TARGETS)}
    sides = {"sides": shaped(st.lists(one_or_more(SIDES), min_size=2, max_size=3)), "one_way": shaped(st.booleans())}
    takes, other = (target, sides) if kind in CONTAINER_KINDS or kind == "isolate" else (sides, target)
    if kind == "flaky":
        takes = {**takes, "loss": shaped(st.integers(1, 100) | st.floats(1, 100), numbers)}
    fields = shaped(st.fixed_dictionaries(takes), st.fixed_dictionaries({**other, "loss": numbers}))
    common = st.fixed_dictionaries(
        {"at": durations, "kind": shaped(st.just(kind), st.just("nuke"))},
        optional={"jitter": durations, "hold": durations},
    )
    return loose(st.tuples(common, fields).map(lambda t: {**t[0], **t[1]}))


faults = st.sampled_from(KINDS).flatmap(fault)
checks = record(before=name_lists, during=name_lists, after=name_lists, settle=durations, within=durations)
loads = record(
    {"users": shaped(st.integers(1, 50), numbers)},
    spawn_rate=shaped(st.floats(0.1, 50), numbers),
    user_classes=name_lists,
    processes=shaped(st.integers(1, 4), numbers),
)
asserts = record(
    **{k: shaped(st.booleans() | durations | st.floats(0, 1) | st.integers(0, 100)) for k in scenario.ASSERTIONS}
)
documents = record(
    {"topology": topologies, "faults": shaped(st.lists(faults, max_size=4))},
    name=shaped(st.sampled_from(WORDS), text),
    description=shaped(text),
    seed=shaped(numbers),
    load=loads,
    duration=durations,
    checks=checks,
    **{"assert": asserts},
)


# ------------------------------------------------------------------------------- the property


def locations(doc: Any, at: str = "") -> Iterator[tuple[str, Any]]:
    """(field path as messages show it, value) for every node of a parsed document."""
    yield at, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            for shown in {str(k), repr(k)}:  # keys that are not plain text may be shown quoted
                yield from locations(v, f"{at}.{shown}" if at else shown)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from locations(v, f"{at}[{i}]")


def names_a_field(rest: str, doc: Any) -> bool:
    """`rest` (the message after `file:`) starts with a field path of `doc`: an existing field,
    or a missing one under an existing mapping."""
    if not isinstance(doc, dict):
        return rest.startswith(" must be a mapping")
    for at, value in locations(doc):
        if at and rest.startswith((f" {at}:", f" {at} ")):
            return True
        if isinstance(value, dict) and re.match(rf" {re.escape(at + '.' if at else '')}[a-z_]+:", rest):
            return True
    return False


def check_file(path: Path) -> None:
    try:
        sc = scenario.load(path)
    except BadInput as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.startswith(f"{path}:"), msg
        rest = msg[len(f"{path}:") :]
        if re.match(r" (line \d+: )?not valid (YAML|UTF-8)", rest):
            return  # the file cannot be read as a document: the line is the location
        doc = yaml.safe_load(path.read_text())
        assert names_a_field(rest, doc), msg
        return
    check_runnable(sc)


def check_runnable(sc: scenario.Scenario) -> None:
    """What `halab run` relies on: finite, non-negative times, a method long enough for every heal,
    a usable lab name, a plan it can print."""
    times = [sc.duration, sc.checks.settle, sc.checks.within] + [x for f in sc.faults for x in (f.at, f.jitter, f.hold)]
    times += [v for k, v in sc.assertions.items() if scenario.ASSERTIONS[k] in ("seconds", "fraction")]
    assert all(math.isfinite(x) and x >= 0 for x in times), times
    assert all(sc.duration >= f.at + f.jitter + f.hold for f in sc.faults)
    if sc.load:
        assert 1 <= sc.load.users <= 1000 and 0 < sc.load.spawn_rate < math.inf
    sc.topology.build(scenario.lab_name_for(sc))
    assert scenario.plan_lines(sc, scenario.lab_name_for(sc))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "fuzzed.yaml"


def write(target: Path, data: bytes | str | Any) -> Path:
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, bytes):
        data = yaml.safe_dump(data, allow_unicode=True).encode()
    target.write_bytes(data)
    return target


@FUZZ
@given(doc=documents)
def test_generated_documents(target, doc):
    check_file(write(target, doc))


def mutate(doc: Any, draw: Any) -> None:
    """One edit at a random place: replace a value, drop it, or add a sibling (a new key in a
    mapping, a copy of the item in a list)."""
    holder, key = draw(st.sampled_from(list(_containers(doc))))
    edit = draw(st.sampled_from(["replace", "drop", "add"]))
    if edit == "replace":
        holder[key] = draw(junk)
    elif edit == "drop":
        del holder[key]
    elif isinstance(holder, dict):
        holder[draw(keys)] = draw(junk)
    else:
        holder.insert(key, holder[key])


def _containers(node: Any) -> Iterator[tuple[Any, Any]]:
    """(container, key or index) of every value below `node`."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in list(items):
        yield node, k
        yield from _containers(v)


@FUZZ
@given(path=st.sampled_from(SHIPPED), data=st.data())
def test_mutations_of_the_shipped_scenarios(target, path, data):
    doc = yaml.safe_load(path.read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        if not list(_containers(doc)):
            break
        mutate(doc, data.draw)
    check_file(write(target, doc))


SPLICES = st.binary(max_size=8) | st.sampled_from(
    [
        b":",
        b"- ",
        b"[",
        b"{",
        b"\n  ",
        b"\t",
        b"&a ",
        b"*a",
        b"\xff",
        b"''",
        b'"\\ud800"',
        b"!!binary ",
        b"!!int ",
        b"!!timestamp ",
        b"2001-13-45",
        b".nan",
        b"9" * 400,
    ]
)


@FUZZ
@given(path=st.sampled_from(SHIPPED), data=st.data())
def test_broken_text_of_the_shipped_scenarios(target, path, data):
    raw = path.read_bytes()
    for _ in range(data.draw(st.integers(1, 4))):  # replace a span of up to 40 bytes
        i = data.draw(st.integers(0, len(raw)))
        j = data.draw(st.integers(i, min(len(raw), i + 40)))
        raw = raw[:i] + data.draw(SPLICES) + raw[j:]
    check_file(write(target, raw))


GOOD = "topology: {nodes: 3}\nfaults: [{at: 1s, kind: kill, target: a1}]\n"


@pytest.mark.parametrize(
    "raw,match",
    [
        (b"topology: " + b"[" * 5000 + b"]" * 5000, r": not valid YAML: nested too deeply"),
        (GOOD.encode() + b"name: \xff\xfe\n", r": line 3: not valid UTF-8 text"),
        (GOOD.encode() + b"\x07", r": not valid YAML: unacceptable character"),
        (GOOD + "seed: !!int abc\n", r": line 3: not valid YAML: 'abc' is not a valid int"),
        (GOOD + "name: 2001-13-45\n", r": line 3: not valid YAML: '2001-13-45' is not a valid timestamp"),
        (
            GOOD + f"seed: {'9' * 5000}\n",
            r": line 3: not valid YAML: '9{20}\.\.\.\(5000 characters\)' is not a valid int",
        ),
        (
            GOOD + f"load: {{users: 2, spawn_rate: {'9' * 400}}}\n",
            r": load\.spawn_rate: 9{20}\.\.\.\(400 characters\) is not a finite number",
        ),
        (GOOD.replace("1s", ".inf"), r": faults\[0\]\.at: inf is not a finite number"),
        (
            GOOD.replace("1s", f"{'9' * 400}s"),
            r": faults\[0\]\.at: 9{20}\.\.\.\(400 characters\) is not a finite number",
        ),
        (GOOD + "assert: {min_availability: .nan}\n", r": assert\.min_availability: nan is not a finite number"),
        (GOOD + '"two\\nlines": 1\n', r": 'two\\nlines': unknown key"),
        (GOOD + '"": 1\n', r": '': unknown key"),
        (
            GOOD.replace("nodes: 3", "nodes: 3, layout: 'dc-a:\u00b2,dc-b:1'"),
            r": topology\.layout: 'dc-a:\u00b2' is not",
        ),
        (GOOD + "checks: {during: vibes}\n", r": checks\.during: 'vibes' is not one of"),
    ],
    ids=[
        "deep",
        "not-utf8",
        "control-char",
        "bad-tagged-int",
        "bad-date",
        "5000-digit-int",
        "400-digit-rate",
        "inf",
        "400-digit-duration",
        "nan",
        "newline-key",
        "empty-key",
        "superscript-layout",
        "one-name-not-a-list",
    ],
)
def test_what_fuzzing_found(target, raw, match):
    """Each once escaped as another exception, was accepted, or named no field of the file."""
    path = write(target, raw)
    with pytest.raises(BadInput, match=re.escape(str(path)) + match):
        scenario.load(path)
    check_file(path)


@FUZZ
@given(
    nodes=st.text(max_size=6) | st.sampled_from(["3", " 3", "-3", "--3", "\u00b3", "\u0663"]),
    layout=st.none() | st.text(max_size=20) | st.sampled_from(["dc-a:\u00b2,dc-b:1", "dc-a:2,dc-b:1"]),
    db_dc=st.none() | st.text(max_size=6) | st.sampled_from(["dc-a", "external"]),
)
def test_topology_text_as_the_cli_passes_it(nodes, layout, db_dc):
    """`--nodes`, `--layout` and `--db-dc` are strings from the command line: a topology or BadInput."""
    try:
        t = make_topology(nodes, layout=layout, db_dc=db_dc)
    except BadInput as exc:
        assert "\n" not in str(exc) and str(exc).startswith(("--nodes:", "--layout:", "--db-dc:")), str(exc)
    else:
        assert t.size == int(nodes) and sum(len(t.nodes_in(dc)) for dc in t.datacenters) == t.size
