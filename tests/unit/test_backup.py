"""`halab backup` / `restore` with Docker faked: where the dump is read, the causal read before it,
the manifest, the refusals, and the restore's place in a lab's start (before the nodes)."""

from __future__ import annotations

import json
from functools import partial

import pytest

from lab.cli.main import main
from lab.cluster import backup, lifecycle
from lab.cluster.topology import make_topology
from lab.core.errors import BadInput, RuntimeFailure

GALERA = make_topology(3, lab="g", db="galera:3")
SINGLE = make_topology(3, lab="s")
MARK = {"db_epoch": "1000.5", "db_utc": "1970-01-01 00:16:40.500000", "gtid": "", "seqno": "72"}


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """The members' readiness, the front's writer and the SQL and docker commands run."""
    monkeypatch.setenv("HALAB_HOME", str(tmp_path / "home"))
    seen: dict = {"sql": [], "docker": [], "ready": {"db1", "db2", "db3"}, "writer": "db1"}
    monkeypatch.setattr(backup.galera_life, "front_target", lambda t: seen["writer"])
    monkeypatch.setattr(
        backup.galera_life, "member_problem", lambda t, m: None if m in seen["ready"] else f"{m}: Joining"
    )
    monkeypatch.setattr(
        backup.probes, "query_in", lambda t, m, sql, timeout: seen["sql"].append((m, sql)) or [dict(MARK)]
    )

    def run(args, what, timeout=None, input=None):
        seen["docker"].append((args, input))
        return "-- dump\nINSERT INTO account VALUES (1);\n"

    monkeypatch.setattr(backup.docker, "run", run)
    monkeypatch.setattr(backup.engine, "place", lambda t, s: backup.engine.Place(("docker",), f"{t.lab}-{s}-1"))
    return seen


def test_galera_dumps_from_a_synced_member_that_is_not_the_writer_after_a_causal_read(fake, tmp_path):
    m, folder = backup.take(GALERA, tmp_path / "b")
    assert (m.member, m.writer, m.method, m.seqno, m.gtid) == ("db2", "db1", backup.METHOD, 72, "")
    assert (
        m.db_started_at == 1000.5 and m.started_at <= m.finished_at and m.size == len((folder / "dump.sql").read_text())
    )
    assert fake["sql"][0][0] == "db2" and fake["sql"][0][1].startswith("SET SESSION wsrep_sync_wait = 1; SELECT")
    dump = fake["docker"][0][0]
    assert dump[:4] == ["docker", "exec", "-i", "g-db2-1"] and "--single-transaction" in dump
    assert "--ignore-table-data=cattle.cluster" in dump and dump[-1] == "cattle"
    assert backup.read(folder) == m


def test_only_the_writer_synced_is_dumped_from_and_none_synced_is_refused(fake, tmp_path):
    fake["ready"] = {"db1"}
    assert backup.take(GALERA, tmp_path / "b")[0].member == "db1"
    fake["ready"] = set()
    with pytest.raises(RuntimeFailure, match="no member of g's database is Synced"):
        backup.take(GALERA, tmp_path / "c")


def test_a_single_database_is_dumped_from_db_without_wsrep(fake, tmp_path):
    fake["sql"].clear()
    m, _ = backup.take(SINGLE, tmp_path / "b")
    assert (m.member, m.writer, m.db) == ("db", None, "single")
    assert not fake["sql"][0][1].startswith("SET SESSION wsrep_sync_wait")


def test_the_default_folder_is_a_new_run_directory_and_a_used_folder_is_refused(fake, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, folder = backup.take(SINGLE)
    assert folder.resolve().parent == tmp_path / "runs" and folder.name.endswith("-backup-s")
    with pytest.raises(BadInput, match=r"--out: .* is not empty"):
        backup.take(SINGLE, folder)


def test_a_restore_needs_a_backup_and_a_lab_of_the_same_kind(fake, tmp_path):
    with pytest.raises(BadInput, match=r"--from: .* holds no backup"):
        backup.read(tmp_path)
    m, _ = backup.take(GALERA, tmp_path / "b")
    with pytest.raises(BadInput, match=r"--db: the backup is of a galera database .* --db galera:3"):
        backup.check_target(SINGLE, m)
    backup.check_target(make_topology(3, lab="new", db="galera:3"), m)


def test_the_dump_is_loaded_into_the_first_member(fake, tmp_path):
    _, folder = backup.take(GALERA, tmp_path / "b")
    backup.load(GALERA, folder)
    args, given = fake["docker"][-1]
    assert (
        args == ["docker", "exec", "-i", "g-db1-1", "labsql", "cattle"] and given == (folder / "dump.sql").read_text()
    )


def test_the_cli_refuses_another_database_kind_in_one_line(fake, tmp_path, capsys):
    backup.take(SINGLE, tmp_path / "b")
    code = main(["restore", "--name", "new", "--db", "galera:3", "--from", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "--db: the backup is of a single database" in err[0], err


def test_backup_prints_its_manifest_with_json(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(backup.docker, "require_docker", lambda: None)
    monkeypatch.setattr("lab.cluster.state.load_topology", lambda name: GALERA)
    assert main(["--json", "backup", "--name", "g", "--out", str(tmp_path / "b")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["member"] == "db2" and out["dir"] == str(tmp_path / "b")


def test_a_restore_loads_before_the_nodes_start(monkeypatch, tmp_path):
    steps: list = []

    class Project:
        compose = property(lambda self: self)

        def up(self, services=None, **kw):
            steps.append(("up", tuple(services or ("all",))))

    monkeypatch.setattr(lifecycle.docker, "require_docker", lambda: None)
    monkeypatch.setattr(lifecycle, "running_containers", lambda lab: [])
    monkeypatch.setattr(lifecycle.preflight, "enforce", lambda t, allow: None)
    monkeypatch.setattr(lifecycle.images, "build", lambda only: {})
    monkeypatch.setattr(lifecycle.addressing, "used_subnets", lambda: [])
    monkeypatch.setattr(lifecycle.state, "materialize", lambda t, d, tags, plan: tmp_path / "compose.yaml")
    monkeypatch.setattr(lifecycle.docker, "client", lambda lab, f: Project())
    monkeypatch.setattr(lifecycle.probes, "db_alive", lambda t: steps.append("db answers") or True)
    monkeypatch.setattr(lifecycle, "wait_healthy", lambda t, timeout: steps.append("healthy"))
    lifecycle.up(SINGLE, before_nodes=partial(lambda t, folder: steps.append(("restore", t.lab, folder)), folder="b"))
    assert steps == [("up", ("db",)), "db answers", ("restore", "s", "b"), ("up", ("all",)), "healthy"]


def test_a_restore_refuses_a_missing_run_directory_before_starting_a_lab(fake, tmp_path, capsys):
    backup.take(GALERA, tmp_path / "b")
    args = ["restore", "--name", "new", "--db", "galera:3", "--from", str(tmp_path / "b"), "--check", "nowhere"]
    assert main(args) != 0
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("--check: nowhere is not a run directory (halab load writes one under runs/)")
    )
