"""The lab's state directory: who can read the secrets, as root and as a user without root."""

from __future__ import annotations

import stat

import pytest

from lab.cluster import addressing, state
from lab.cluster.topology import make_topology


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HALAB_HOME", str(tmp_path / "halab"))
    return tmp_path / "halab"


def modes(directory):
    return {p.relative_to(directory).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in directory.rglob("*")}


TAGS = {"db": "halab/db:x", "lb": "halab/lb:x", "node": "halab/node:x"}


def test_as_root_the_container_files_are_0600_and_given_to_the_containers_uid(home, monkeypatch):
    owners: dict[str, int] = {}
    monkeypatch.setattr(state, "can_chown", lambda: True)
    monkeypatch.setattr(state.os, "chown", lambda p, uid, gid: owners.__setitem__(str(p), uid))
    t = make_topology(3, lab="st1")
    state.materialize(t, state.lab_dir(t.lab), TAGS, addressing.choose(t, []))
    m = modes(state.lab_dir(t.lab))
    assert m["secrets"] == m["tls"] == 0o700 and stat.S_IMODE(state.lab_dir(t.lab).stat().st_mode) == 0o700
    assert m["secrets/db_password"] == m["secrets/db_root_password"] == m["tls/server.pem"] == 0o600
    assert m["tls/ca.crt"] == 0o400 and m["tls/ca.key"] == 0o600
    assert sorted(p.rsplit("/", 1)[1] for p, uid in owners.items() if uid == state.CONTAINER_UID) == [
        "db_password",
        "db_root_password",
        "server.pem",
    ]


def test_without_root_they_are_readable_behind_0700_directories_and_the_ca_key_stays_private(home, monkeypatch):
    monkeypatch.setattr(state, "can_chown", lambda: False)
    monkeypatch.setattr(state.os, "chown", lambda *a: pytest.fail("chown without root"))
    t = make_topology(1, lab="st2")
    state.materialize(t, state.lab_dir(t.lab), TAGS, addressing.choose(t, []))
    m = modes(state.lab_dir(t.lab))
    assert m["secrets/db_password"] == m["secrets/db_root_password"] == m["tls/server.pem"] == 0o644
    assert m["secrets"] == m["tls"] == 0o700 and stat.S_IMODE(state.lab_dir(t.lab).stat().st_mode) == 0o700
    assert m["tls/ca.key"] == 0o600 and m["tls/ca.crt"] == 0o400


def test_a_kept_secret_is_reused_and_a_new_lab_gets_another(home):
    a = make_topology(1, lab="st3")
    state.materialize(a, state.lab_dir(a.lab), TAGS, addressing.choose(a, []))
    first = (state.lab_dir(a.lab) / "secrets" / "db_password").read_text()
    state.materialize(a, state.lab_dir(a.lab), TAGS, addressing.choose(a, []))
    assert (state.lab_dir(a.lab) / "secrets" / "db_password").read_text() == first
    b = make_topology(1, lab="st4")
    state.materialize(b, state.lab_dir(b.lab), TAGS, addressing.choose(b, []))
    assert (state.lab_dir(b.lab) / "secrets" / "db_password").read_text() != first
