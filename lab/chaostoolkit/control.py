"""The Chaos Toolkit control that records an experiment in the lab's history:

    "controls": [{"name": "halab", "provider": {"type": "python", "module": "lab.chaostoolkit.control"}}]

Before the experiment: a run directory `<halab_runs>/<UTC timestamp>-ctk-<title>/` and a watch
recording every node's probes and a client's writes and reads through the load balancer into its
history (lab/chaos/watch.py), and a `started` line in the lab's `experiments.jsonl`. A lab that
cannot be watched interrupts the experiment before it touches anything.

After it (Chaos Toolkit calls this after the rollbacks, whatever the experiment's status): the load
is stopped, the faults the experiment left are healed, the watch stops; the lab's faults of the
run's window are added to its history; the run is judged against the objective (database snapshot
included) and reported (`report.html`, as `halab load`); `journal.json` gets Chaos Toolkit's
journal with the lab's verdict beside it; an `ended` line goes to `experiments.jsonl`; and the
journal Chaos Toolkit writes gets a `halab` entry (run directory, report, verdict).
Chaos Toolkit only logs a control's exception at debug level: failures here are logged as errors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from lab.chaos.faultlog import record_faults
from lab.chaos.judge import lab_query, objective_config
from lab.chaostoolkit import session
from lab.chaostoolkit.probes import verdict_dict
from lab.cluster import lifecycle
from lab.core.errors import LabError
from lab.record import metrics
from lab.record.history import write_json
from lab.record.report import build_report

log = logging.getLogger("halab.chaostoolkit.control")


def configure_control(**kwargs: Any) -> None:
    """Show the lab's progress messages on stderr, as `halab` does, unless something configured them."""
    from lab.cli.main import configure_logging

    if not logging.getLogger("halab").handlers:
        configure_logging()


def before_experiment_control(
    context: Mapping[str, Any], configuration: Mapping[str, Any] | None = None, **kwargs: Any
) -> None:
    try:
        s = session.open_session(configuration, str(context.get("title") or "experiment"))
    except LabError as exc:  # Chaos Toolkit logs the interruption's message
        from chaoslib.exceptions import InterruptExecution  # only ever called by Chaos Toolkit

        raise InterruptExecution(f"halab control: {exc}") from exc
    s.log_experiment("started", lab=s.t.lab)


def after_experiment_control(
    context: Mapping[str, Any],
    state: dict[str, Any] | None = None,
    configuration: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    s = session.end_session(configuration)
    if s is None:
        return
    journal = state if state is not None else {}
    problems = []
    try:
        s.close()
    except LabError as exc:  # still judge and record what ran
        problems.append(f"tearing down: {exc}")
    try:
        summary = finish(s, journal)
    except (LabError, OSError, ValueError) as exc:
        problems.append(f"recording: {exc}")
        summary = {"run_dir": str(s.run_dir), "verdict": "failed"}
    if problems:
        summary["error"] = "; ".join(problems)
        log.error(f"halab control: {summary['error']} (experiment {s.title!r}, {s.run_dir})")
    status, deviated = journal.get("status", "unknown"), bool(journal.get("deviated"))
    s.log_experiment("ended", status=status, deviated=deviated, **{k: v for k, v in summary.items() if k != "run_dir"})
    journal["halab"] = summary


def cleanup_control() -> None:
    """Chaos Toolkit's last call, on every path: nothing of an experiment outlives it."""
    session.close_all()


def finish(s: session.Session, journal: Mapping[str, Any]) -> dict[str, Any]:
    """Record, judge and report a closed session; return the short summary for the journals."""
    ended = time.time()
    for f in record_faults(s.run_dir, s.t.lab, s.started, ended):
        log.info(f"fault {f.id} ({f.fault} {' '.join(f.targets)}) happened during the experiment")
    metrics.record(s.t, s.run_dir, s.started, ended)  # with monitoring: the series the report plots
    files = build_report(s.run_dir, query=lab_query(s.t), config=objective_config())
    checks = verdict_dict(files.result)
    status, deviated = journal.get("status", "unknown"), bool(journal.get("deviated"))
    verdict = "passed" if status == "completed" and not deviated and files.result.passed else "failed"
    summary = {
        "run_dir": str(s.run_dir),
        "report": str(files.html),
        "verdict": verdict,
        "checks": checks["verdict"],
    }
    experiment = dict(journal.get("experiment") or {})
    experiment.pop("secrets", None)  # what the experiment declared as secret stays out of the lab's files
    write_json(
        s.run_dir / "journal.json",
        {
            "experiment": {"title": s.title, "description": experiment.get("description", "")},
            "lab": {"name": s.t.lab, "size": s.t.size, "db_dc": s.t.db_dc, "profile": s.t.profile},
            "run_dir": str(s.run_dir),
            "started": _iso(s.started),
            "ended": _iso(ended),
            "seconds": round(ended - s.started, 1),
            "status": status,
            "deviated": deviated,
            "verdict": verdict,
            "checks": checks,
            "loads": [session.load_dict(r) for r in s.loads],
            "server_restarts": lifecycle.server_restarts(s.t),
            "chaostoolkit": {**journal, "experiment": experiment},
        },
    )
    log.info(
        f"experiment {s.title!r}: {status}{', deviated' if deviated else ''}; checks {checks['verdict']}; "
        f"report: {files.html}"
    )
    return summary


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")
