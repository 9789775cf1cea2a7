"""`halab capacity`: where a sizing breaks, measured. A grid over node heap (`-Xmx`, the node's
container memory limit derived from it), pool size per node, the database's `max_connections`,
memory and buffer pool, cluster size and load (Locust users); one fresh lab per grid point.

Per point: throughput of successful requests, latency percentiles, errors by kind, connections in
use at the database (its own `SHOW GLOBAL STATUS` counters, sampled during the load), memory per
container (`docker stats`, sampled during the load), and what became of each node (out-of-memory
exit, kernel OOM kill, degraded by memory). Output: `capacity.json`, `capacity.md` (table,
saturation points, sizing recommendation beside the guide's rules, the heap model's scaling) and
`plots/*.png`.

Modules, in the order data flows through them:

- `spec`: the grid (dimensions, `Point`, `Settings`, `Grid`) and its validation from YAML and flags.
- `sweep`: runs each point on a fresh lab; `sampler` samples the database, containers and nodes
  during its load.
- `measurement`: what a point measured, derived from request records and node states.
- `analysis`: saturation, what broke, the sizing recommendation.
- `report` (and `plots`): the table, `capacity.json`, `capacity.md` and `plots/*.png`.
"""
