"""Issue 15's backup must-show: a 3-member Galera lab under load, `halab backup` taken while the load
runs, the load ends, the backup restored into a new lab (its nodes serve it), and the restored rows
checked against the load's history: every write acknowledged before the backup began is there,
none that was never sent. The source lab is gone before the new one starts (one lab at a time on a
small machine); both are torn down on every path. Asserts on recorded data only."""

from __future__ import annotations

import json
from functools import partial

import pytest
from helpers import load_spec, recorded, wait_recorded

from lab.chaos.judge import lab_query
from lab.cli.main import main
from lab.cluster import backup, lifecycle
from lab.cluster.preflight import free_ports
from lab.cluster.state import unique_lab_name
from lab.cluster.topology import make_topology
from lab.record.history import load_run
from lab.record.load import LoadRun, make_run_dir
from lab.record.registers import load_keys
from lab.record.restored import check_restored, fetch_restored

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_a_backup_taken_under_load_restores_every_write_acknowledged_before_it(tmp_path, halab_profile, capsys):
    source = make_topology(3, lab=unique_lab_name("gal3bk"), ports=free_ports(), profile=halab_profile, db="galera:3")
    target = make_topology(3, lab=unique_lab_name("gal3rs"), ports=free_ports(), profile=halab_profile, db="galera:3")
    run_dir = make_run_dir("it-galera-backup", root=tmp_path)
    try:
        lifecycle.up(source)
        # 180 s is the bound: the load is stopped once the writes after the backup are recorded.
        spec = load_spec(source, "it-galera-backup", 8, 180)
        with LoadRun(spec, run_dir) as load:
            wait_recorded(run_dir, "ledger", 12, load)
            manifest, folder = backup.take(source, tmp_path / "backup")
            wait_recorded(run_dir, "ledger", recorded(run_dir, "ledger") + 12, load)
            load.stop()
        lifecycle.down(source.lab)
        # A member that is not the writer, while one was Synced beside it.
        assert manifest.member != manifest.writer and manifest.seqno and manifest.size > 0, manifest

        lifecycle.up(target, before_nodes=partial(backup.load, folder=folder))
        history = load_run(run_dir)
        found = check_restored(
            history, fetch_restored(lab_query(target), history), manifest.started_at, load_keys(run_dir)
        )
        assert found.passed, found.lines()
        assert found.outcomes[0].checked > 0 and found.acks_after > 0, found.lines()  # writes on both sides
        # The command line says the same (exit 0, --json).
        code = main(["--json", "check-backup", "--name", target.lab, "--from", str(folder), "--run", str(run_dir)])
        assert code == 0 and json.loads(capsys.readouterr().out)["passed"] is True
    finally:
        for lab in (source.lab, target.lab):
            lifecycle.down(lab)
