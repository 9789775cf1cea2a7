"""A Chaos Toolkit extension: `chaos run experiment.json` drives a running lab.

The experiment names the lab in its `configuration` (`halab_lab`; `halab_runs`, the folder for run
directories, default `runs`; `halab_seed`, for `follower` and `random` targets) and uses:

- actions (`lab.chaostoolkit.actions`): `fault` (the fields of a scenario file's fault, plus `hold`),
  `heal`, `start_load` (Locust, bounded in users and duration) and `stop_load`;
- probes (`lab.chaostoolkit.probes`): `steady_state` (every node active and the watch client's
  writes through the load balancer succeeding), `writes_succeed` (the latter alone),
  `cluster_status`, `zookeeper_modes`, `lb_stats`, `checker_verdict` (the checker over the run so far);
- the control (`lab.chaostoolkit.control`): opens the experiment's run directory and watches the lab
  from before the first activity; after the last one it stops the load, heals what the experiment
  left, judges the run, writes its report and journal, and adds the experiment to the lab's
  `experiments.jsonl`.

Chaos Toolkit runs every activity in the `chaos` process, so what an experiment holds between
activities (run directory, watch, faults, the Locust process) lives there, in `session`. Nothing
here imports chaoslib: the package stays importable without it (docs/chaostoolkit.md).
"""
